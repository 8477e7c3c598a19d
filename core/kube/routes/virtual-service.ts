/**
 * Istio `VirtualService` specs → the route model (`core/model/routes.ts`); what the routing specs
 * share is in `shared.ts`.
 */
import { describe, field, keyPath, list, listField, mapping, oneOf, port, quote, string } from '../../validation/check.js';
import type { BackendRef, FaultPolicy, PathMatch, RequestMatch, RetryPolicy, RouteFilter, RouteRule, ValueMatch, VirtualService } from '../../model/routes.js';
import {
  DEFAULT_RETRY_BACKOFF_MS,
  GRPC_STATUS,
  ISTIO_DEFAULT_RETRY,
  MATCH_ALL,
  MODIFIER_KEYS,
  REDIRECT_CODES,
  RETRY_ON,
  RouteSpecChecks,
  SUBSET_NAME_RE,
  checkHost,
  HEADER_VALUE_MAX,
  PATH_MAX,
  headerNameProblem,
  sentPathProblem,
} from './shared.js';

const VS_SPEC_KEYS = ['hosts', 'gateways', 'http', 'exportTo'];
const VS_HTTP_KEYS = ['name', 'match', 'route', 'redirect', 'rewrite', 'timeout', 'retries', 'fault', 'mirror', 'mirrorPercentage', 'headers', 'corsPolicy'];
const VS_CORS_KEYS = ['allowOrigin', 'allowOrigins', 'allowMethods', 'allowHeaders', 'exposeHeaders', 'maxAge', 'allowCredentials', 'unmatchedPreflights'];
// RFC 9110 token characters: a method or header name.
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const VS_MATCH_KEYS = ['name', 'uri', 'method', 'headers', 'queryParams', 'withoutHeaders'];
const STRING_MATCH_KEYS = ['exact', 'prefix', 'regex'];
const VS_ROUTE_KEYS = ['destination', 'weight', 'headers'];
const DESTINATION_KEYS = ['host', 'port', 'subset'];
const PORT_SELECTOR_KEYS = ['number'];
const VS_HEADERS_KEYS = ['request', 'response'];
const VS_REDIRECT_KEYS = ['uri', 'authority', 'port', 'scheme', 'redirectCode'];
const VS_REWRITE_KEYS = ['uri', 'authority'];
const RETRIES_KEYS = ['attempts', 'perTryTimeout', 'retryOn'];
const FAULT_KEYS = ['delay', 'abort'];
const DELAY_KEYS = ['fixedDelay', 'percentage', 'percent'];
const ABORT_KEYS = ['httpStatus', 'grpcStatus', 'percentage'];
const PERCENTAGE_KEYS = ['value'];
// Fields of the upstream VirtualService that waypoints do not implement: refused as such, not as unknown keys.
const VS_SPEC_UNSUPPORTED = ['tcp', 'tls'];
const VS_HTTP_UNSUPPORTED = ['delegate', 'directResponse', 'mirrors', 'mirrorPercent', 'mirror_percent'];
const VS_MATCH_UNSUPPORTED = ['authority', 'gateways', 'ignoreUriCase', 'port', 'scheme', 'sourceLabels', 'sourceNamespace', 'statPrefix'];

/** Converts VirtualService specs, recording problems in `p` under each entry's path. */
export class VirtualServiceConverter extends RouteSpecChecks {
  /**
   * Converts a VirtualService (`networking.istio.io/v1`) spec: `http` routes with matches,
   * weighted destinations, fault injection, retries, timeouts, header manipulation, rewrites,
   * redirects and mirroring. Only mesh routing is served: `gateways` must be absent or `[mesh]`.
   */
  virtualService(name: string, namespace: string, spec: Record<string, unknown>, path: string): VirtualService | undefined {
    const before = this.p.size;
    mapping(this.p, path, spec, VS_SPEC_KEYS, 'a mapping', VS_SPEC_UNSUPPORTED);
    const hosts = listField(this.p, path, spec, 'hosts', (e, eq) => string(this.p, eq, e, 'a host', checkHost), {
      required: true,
      expected: 'a list of hosts, e.g. [reviews]',
      nonEmpty: 'name the services this VirtualService routes',
    });
    field(this.p, path, spec, 'gateways', (x, q) =>
      list(this.p, q, x, (e, eq) => {
        if (e !== 'mesh') this.p.add(eq, `${describe(e)} is not served by a waypoint; only "mesh" is (or omit gateways)`);
        return e;
      }),
    );
    field(this.p, path, spec, 'exportTo', (x, q) => list(this.p, q, x, (e, eq) => string(this.p, eq, e, 'a namespace or "." or "*"')));
    const rules = field(this.p, path, spec, 'http', (x, q) => list(this.p, q, x, (e, eq) => this.vsRule(e, eq, namespace)), {
      required: true,
      expected: 'a list of HTTP routes',
    });
    if (this.p.size > before || !hosts || !rules) return undefined;
    return { kind: 'VirtualService', name, namespace, hosts, rules };
  }

  /** Istio `corsPolicy` → the CORS filter (waypoint/filters/cors.ts), as Istio hands it to Envoy's CORS filter. */
  private vsCors(v: unknown, path: string): RouteFilter | undefined {
    const m = mapping(this.p, path, v, VS_CORS_KEYS, 'a mapping {allowOrigins, allowMethods, allowHeaders, exposeHeaders, maxAge, allowCredentials}');
    if (!m) return undefined;
    const before = this.p.size;
    const tokens = (k: string, what: string) =>
      field(this.p, path, m, k, (y, r) => list(this.p, r, y, (e, eq) => string(this.p, eq, e, what, (s) => (TOKEN_RE.test(s) ? undefined : `${quote(s)} is not ${what}`)))) ?? [];
    // `allowOrigin` (deprecated): exact origins.
    const exact = field(this.p, path, m, 'allowOrigin', (y, r) => list(this.p, r, y, (e, eq) => string(this.p, eq, e, 'an origin'))) ?? [];
    const matches = field(this.p, path, m, 'allowOrigins', (y, r) => list(this.p, r, y, (e, eq) => this.stringMatch(e, eq, 'origin', false))) ?? [];
    const allowMethods = tokens('allowMethods', 'a method');
    const allowHeaders = tokens('allowHeaders', 'a header name or *').map((h) => h.toLowerCase());
    const exposeHeaders = tokens('exposeHeaders', 'a header name or *').map((h) => h.toLowerCase());
    const maxAgeMs = field(this.p, path, m, 'maxAge', (y, r) => this.duration(y, r));
    const allowCredentials = m.allowCredentials === true;
    const unmatched = field(this.p, path, m, 'unmatchedPreflights', (y, r) => oneOf(this.p, r, y, ['UNSPECIFIED', 'FORWARD', 'IGNORE'] as const));
    if (this.p.size > before) return undefined;
    return {
      type: 'CORS',
      cors: {
        allowOrigins: [],
        originMatches: [...exact.map((value) => ({ name: 'origin', type: 'Exact' as const, value })), ...matches],
        allowMethods,
        allowHeaders,
        exposeHeaders,
        allowCredentials,
        ...(maxAgeMs !== undefined ? { maxAge: Math.floor(maxAgeMs / 1000) } : {}),
        ...(unmatched === 'IGNORE' ? { unmatchedPreflights: 'ignore' as const } : {}),
      },
    };
  }

  private stringMatch(v: unknown, path: string, name: string, lower: boolean): ValueMatch | undefined {
    const m = mapping(this.p, path, v, STRING_MATCH_KEYS, 'a mapping with one of exact, prefix, regex');
    if (!m) return undefined;
    const keys = STRING_MATCH_KEYS.filter((k) => Object.hasOwn(m, k));
    if (keys.length !== 1) {
      this.p.add(path, `set exactly one of ${STRING_MATCH_KEYS.join(', ')}`);
      return undefined;
    }
    const k = keys[0]!;
    // Gateway API's limits for the same matches (PATH_MAX for a uri, HEADER_VALUE_MAX for the rest); Istio sets none.
    const max = name === '' ? PATH_MAX : HEADER_VALUE_MAX;
    const value = field(this.p, path, m, k, (x, q) => {
      if (typeof x === 'string' && x.length > max) {
        this.p.add(q, `${quote(x)} is too long; at most ${max} characters`);
        return undefined;
      }
      return k === 'regex' ? this.regex(x, q) : (x as string);
    });
    if (value === undefined) return undefined;
    const type = k === 'exact' ? 'Exact' : k === 'prefix' ? 'Prefix' : 'RegularExpression';
    return { name: lower ? name.toLowerCase() : name, type, value };
  }

  private stringMatchMap(m: Record<string, unknown>, path: string, key: string, lower: boolean, invert = false): ValueMatch[] {
    return (
      field(this.p, path, m, key, (x, q) => {
        const out: ValueMatch[] = [];
        for (const [n, val] of Object.entries(x as Record<string, unknown>)) {
          const nq = keyPath(q, n);
          const bad = headerNameProblem(n);
          if (bad !== undefined) {
            this.p.add(nq, bad);
            continue;
          }
          const sm = this.stringMatch(val, nq, n, lower);
          if (sm) out.push(invert ? { ...sm, invert: true } : sm);
        }
        return out;
      }) ?? []
    );
  }

  private vsMatch(v: unknown, path: string): RequestMatch | undefined {
    const m = mapping(this.p, path, v, VS_MATCH_KEYS, 'a mapping {uri, method, headers, queryParams}', VS_MATCH_UNSUPPORTED);
    if (!m) return undefined;
    const before = this.p.size;
    const uri = field(this.p, path, m, 'uri', (x, q): PathMatch | undefined => {
      const sm = this.stringMatch(x, q, '', false);
      if (!sm) return undefined;
      // Istio's uri prefix is a plain string prefix, not Gateway API's element-wise PathPrefix.
      return { type: sm.type, value: sm.value };
    });
    const method = field(this.p, path, m, 'method', (x, q) => {
      const sm = this.stringMatch(x, q, ':method', false);
      if (sm && sm.type !== 'Exact') this.p.add(q, 'only exact method matches are supported');
      return sm?.value.toUpperCase();
    });
    const headers = [...this.stringMatchMap(m, path, 'headers', true), ...this.stringMatchMap(m, path, 'withoutHeaders', true, true)];
    const queryParams = this.stringMatchMap(m, path, 'queryParams', false);
    if (this.p.size > before) return undefined;
    return { ...(uri ? { path: uri } : {}), headers, queryParams, ...(method ? { method } : {}) };
  }

  private vsHeaders(v: unknown, path: string): RouteFilter[] {
    const m = mapping(this.p, path, v, VS_HEADERS_KEYS, 'a mapping {request, response}');
    if (!m) return [];
    const one = (k: 'request' | 'response'): RouteFilter | undefined =>
      field(this.p, path, m, k, (x, q) => {
        const hm = mapping(this.p, q, x, MODIFIER_KEYS, 'a mapping {set, add, remove}');
        if (!hm) return undefined;
        const pairs = (pk: string) =>
          field(this.p, q, hm, pk, (y, r) => {
            const out: { name: string; value: string }[] = [];
            for (const [n, val] of Object.entries(y as Record<string, unknown>)) {
              const nq = keyPath(r, n);
              const bad = headerNameProblem(n);
              if (bad !== undefined) this.p.add(nq, bad);
              // Istio's ValidateHTTPHeaderValue: CR, LF, NUL would end the header and start another.
              const value = this.headerValue(val, nq);
              if (bad === undefined && value !== undefined) out.push({ name: n.toLowerCase(), value });
            }
            return out;
          }) ?? [];
        const remove = field(this.p, q, hm, 'remove', (y, r) => list(this.p, r, y, (e, eq) => this.headerName(e, eq)?.toLowerCase())) ?? [];
        const modifier = { set: pairs('set'), add: pairs('add'), remove };
        return k === 'request' ? { type: 'RequestHeaderModifier', modifier } : { type: 'ResponseHeaderModifier', modifier };
      });
    return [one('request'), one('response')].filter((f): f is RouteFilter => f !== undefined);
  }

  private vsDestination(v: unknown, path: string, namespace: string): Omit<BackendRef, 'weight' | 'filters'> | undefined {
    const m = mapping(this.p, path, v, DESTINATION_KEYS, 'a mapping {host, port: {number}}');
    if (!m) return undefined;
    const before = this.p.size;
    // Istio's validateDestination: `*` is refused, anything else must pass ValidateWildcardDomain.
    const host = field(this.p, path, m, 'host', (x, q) => string(this.p, q, x, 'a service host', checkHost));
    const p = field(this.p, path, m, 'port', (x, q) => {
      const pm = mapping(this.p, q, x, PORT_SELECTOR_KEYS, 'a mapping {number}');
      return pm ? field(this.p, q, pm, 'number', (y, r) => port(this.p, r, y), { required: true }) : undefined;
    });
    const subset = field(this.p, path, m, 'subset', (x, q) =>
      string(this.p, q, x, 'a subset name', (s) => (SUBSET_NAME_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a subset name; expected the name of a DestinationRule subset`)),
    );
    if (this.p.size > before || host === undefined) return undefined;
    const parts = host.toLowerCase().split('.');
    const ref =
      parts.length === 1 ? { name: parts[0]!, namespace } : parts.length === 2 || parts[2] === 'svc' ? { name: parts[0]!, namespace: parts[1]! } : { hostname: host.toLowerCase() };
    return { ...ref, ...(p !== undefined ? { port: p } : {}), ...(subset !== undefined ? { subset } : {}) };
  }

  private vsRule(v: unknown, path: string, namespace: string): RouteRule | undefined {
    const m = mapping(this.p, path, v, VS_HTTP_KEYS, 'a mapping', VS_HTTP_UNSUPPORTED);
    if (!m) return undefined;
    const before = this.p.size;
    const ruleName = field(this.p, path, m, 'name', (x, q) => string(this.p, q, x, 'a route name'));
    const matchesIn = field(this.p, path, m, 'match', (x, q) => list(this.p, q, x, (e, eq) => this.vsMatch(e, eq)));
    const matches = matchesIn && matchesIn.length > 0 ? matchesIn : [MATCH_ALL];
    const routeList = field(this.p, path, m, 'route', (x, q) =>
      list(this.p, q, x, (e, eq) => {
        const rm = mapping(this.p, eq, e, VS_ROUTE_KEYS, 'a mapping {destination, weight, headers}');
        if (!rm) return undefined;
        const dest = field(this.p, eq, rm, 'destination', (y, r) => this.vsDestination(y, r, namespace));
        const weight = field(this.p, eq, rm, 'weight', (y, r) => this.integer(y, r, 0, 100, 'a weight'));
        const filters = field(this.p, eq, rm, 'headers', (y, r) => this.vsHeaders(y, r)) ?? [];
        return dest ? { dest, weight, filters, path: eq } : undefined;
      }, { nonEmpty: 'add a destination, or use redirect' }),
    ) ?? [];
    if (routeList.length > 1) {
      for (const r of routeList) {
        if (r.weight === undefined) this.p.add(keyPath(r.path, 'weight'), 'set a weight on every destination when a route has several');
      }
    }
    const backends: BackendRef[] = routeList.map((r) => ({ ...r.dest, weight: r.weight ?? 100, filters: r.filters }));
    const filters: RouteFilter[] = field(this.p, path, m, 'headers', (x, q) => this.vsHeaders(x, q)) ?? [];
    const redirect = field(this.p, path, m, 'redirect', (x, q): RouteFilter | undefined => {
      const rm = mapping(this.p, q, x, VS_REDIRECT_KEYS, 'a mapping {uri, authority, port, scheme, redirectCode}');
      if (!rm) return undefined;
      // Appended to scheme://host[:port] in Location: without the leading / it would change the host.
      const uri = field(this.p, q, rm, 'uri', (y, r) => string(this.p, r, y, 'a path starting with /', (u) => sentPathProblem(u)));
      const authority = field(this.p, q, rm, 'authority', (y, r) => this.authority(y, r));
      const rport = field(this.p, q, rm, 'port', (y, r) => port(this.p, r, y));
      const scheme = field(this.p, q, rm, 'scheme', (y, r) => oneOf(this.p, r, y, ['http', 'https'] as const));
      const code = field(this.p, q, rm, 'redirectCode', (y, r) => oneOf(this.p, r, String(y), REDIRECT_CODES.map(String)));
      return {
        type: 'RequestRedirect',
        statusCode: Number(code ?? 301) as 301,
        ...(uri ? { path: { type: 'ReplaceFullPath' as const, value: uri } } : {}),
        ...(authority ? { hostname: authority } : {}),
        ...(rport ? { port: rport } : {}),
        ...(scheme ? { scheme } : {}),
      };
    });
    if (redirect && routeList.length > 0) this.p.add(keyPath(path, 'redirect'), 'a route with redirect cannot also have route destinations');
    if (!redirect && routeList.length === 0 && !Object.hasOwn(m, 'route')) {
      this.p.add(path, 'set route (destinations) or redirect');
    }
    const rewrite = field(this.p, path, m, 'rewrite', (x, q): RouteFilter | undefined => {
      const rm = mapping(this.p, q, x, VS_REWRITE_KEYS, 'a mapping {uri, authority}');
      if (!rm) return undefined;
      // Istio lets a prefix rewrite drop the leading /; what is written into the request line is ours to check.
      const uri = field(this.p, q, rm, 'uri', (y, r) => string(this.p, r, y, 'a path', (u) => sentPathProblem(u, false)));
      const authority = field(this.p, q, rm, 'authority', (y, r) => this.authority(y, r));
      // Istio replaces the matched prefix when the match was a prefix, else the whole path.
      const prefix = matches.every((mm) => mm.path?.type === 'Prefix');
      return {
        type: 'URLRewrite',
        ...(uri !== undefined ? { path: { type: prefix ? 'ReplacePrefixMatch' : 'ReplaceFullPath', value: uri } } : {}),
        ...(authority ? { hostname: authority } : {}),
      } as RouteFilter;
    });
    const timeout = field(this.p, path, m, 'timeout', (x, q) => this.duration(x, q));
    const retry = field(this.p, path, m, 'retries', (x, q): RetryPolicy | undefined => {
      const rm = mapping(this.p, q, x, RETRIES_KEYS, 'a mapping {attempts, perTryTimeout, retryOn}');
      if (!rm) return undefined;
      const attempts = field(this.p, q, rm, 'attempts', (y, r) => this.integer(y, r, 0, 100), { required: true, expected: 'the number of retries' });
      const perTry = field(this.p, q, rm, 'perTryTimeout', (y, r) => this.duration(y, r));
      const on = field(this.p, q, rm, 'retryOn', (y, r) => {
        const s = string(this.p, r, y, 'a comma-separated list of retry conditions');
        if (s === undefined) return undefined;
        const items = s.split(',').map((i) => i.trim()).filter((i) => i !== '');
        for (const i of items) {
          if (!(RETRY_ON as readonly string[]).includes(i) && !/^[1-5]\d\d$/.test(i)) {
            this.p.add(r, `${JSON.stringify(i)} is not a supported retry condition; expected ${RETRY_ON.join(', ')} or a status code`);
          }
        }
        return items;
      }) ?? [...ISTIO_DEFAULT_RETRY.retryOn];
      if (attempts === undefined) return undefined;
      const codes = on.filter((i) => /^\d+$/.test(i)).map(Number);
      return {
        attempts,
        retryOn: on.filter((i) => !/^\d+$/.test(i)),
        codes: codes.length > 0 || !on.includes('retriable-status-codes') ? codes : [503],
        backoffMs: DEFAULT_RETRY_BACKOFF_MS,
        ...(perTry !== undefined ? { perTryTimeoutMs: perTry } : {}),
      };
    });
    const fault = field(this.p, path, m, 'fault', (x, q) => this.vsFault(x, q));
    const cors = field(this.p, path, m, 'corsPolicy', (x, q) => this.vsCors(x, q));
    const mirror = field(this.p, path, m, 'mirror', (x, q) => this.vsDestination(x, q, namespace));
    const mirrorPercent = field(this.p, path, m, 'mirrorPercentage', (x, q) => this.percentage(x, q)) ?? 100;
    if (this.p.size > before) return undefined;
    const all: RouteFilter[] = [...filters];
    if (redirect) all.push(redirect);
    if (rewrite) all.push(rewrite);
    if (mirror) all.push({ type: 'RequestMirror', backend: { ...mirror, weight: 1, filters: [] }, percent: mirrorPercent });
    if (cors) all.push(cors);
    return {
      matches,
      filters: all,
      backends,
      // Absent: the waypoint applies Istio's default retry policy (ISTIO_DEFAULT_RETRY).
      ...(retry ? { retry } : {}),
      ...(timeout ? { requestTimeoutMs: timeout } : {}),
      ...(fault ? { fault } : {}),
      ...(ruleName !== undefined ? { name: ruleName } : {}),
    };
  }

  /**
   * A redirect or rewrite `authority`: the Host (`:authority`) the waypoint then sends or writes
   * into `Location`, so a host name with an optional `:port` (Istio's own check of the field is
   * its header value check; a host is what the field means).
   */
  private authority(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a host', (s) => {
      const colon = s.lastIndexOf(':');
      const host = colon === -1 ? s : s.slice(0, colon);
      const p = colon === -1 ? undefined : s.slice(colon + 1);
      const hostProblem = checkHost(host);
      if (hostProblem !== undefined) return hostProblem;
      if (host.startsWith('*') || (p !== undefined && !/^[1-9]\d{0,4}$/.test(p)) || Number(p ?? 1) > 65535) {
        return `${quote(s)} is not a host; expected a host name with an optional :port`;
      }
      return undefined;
    });
  }

  private percentage(v: unknown, path: string): number | undefined {
    const m = mapping(this.p, path, v, PERCENTAGE_KEYS, 'a mapping {value: 0-100}');
    return m ? field(this.p, path, m, 'value', (x, q) => this.percent(x, q), { required: true, expected: 'a number from 0 to 100' }) : undefined;
  }

  private vsFault(v: unknown, path: string): FaultPolicy | undefined {
    const m = mapping(this.p, path, v, FAULT_KEYS, 'a mapping {delay, abort}');
    if (!m) return undefined;
    const delay = field(this.p, path, m, 'delay', (x, q) => {
      const dm = mapping(this.p, q, x, DELAY_KEYS, 'a mapping {fixedDelay, percentage: {value}}');
      if (!dm) return undefined;
      const fixedDelayMs = field(this.p, q, dm, 'fixedDelay', (y, r) => this.duration(y, r), { required: true, expected: 'a duration, e.g. 5s' });
      const pct = field(this.p, q, dm, 'percentage', (y, r) => this.percentage(y, r));
      const legacy = field(this.p, q, dm, 'percent', (y, r) => this.integer(y, r, 0, 100, 'a percentage'));
      if (pct !== undefined && legacy !== undefined) this.p.add(q, 'set percentage or percent, not both');
      return fixedDelayMs === undefined ? undefined : { fixedDelayMs, percent: pct ?? legacy ?? 100 };
    });
    const abort = field(this.p, path, m, 'abort', (x, q) => {
      const am = mapping(this.p, q, x, ABORT_KEYS, 'a mapping {httpStatus | grpcStatus, percentage: {value}}');
      if (!am) return undefined;
      const httpStatus = field(this.p, q, am, 'httpStatus', (y, r) => this.integer(y, r, 200, 599, 'an HTTP status'));
      const grpcName = field(this.p, q, am, 'grpcStatus', (y, r) => oneOf(this.p, r, y, Object.keys(GRPC_STATUS)));
      if ((httpStatus === undefined) === (grpcName === undefined) && !Object.hasOwn(am, 'httpStatus') === !Object.hasOwn(am, 'grpcStatus')) {
        this.p.add(q, 'set exactly one of httpStatus, grpcStatus');
      }
      const pct = field(this.p, q, am, 'percentage', (y, r) => this.percentage(y, r)) ?? 100;
      if (httpStatus === undefined && grpcName === undefined) return undefined;
      return {
        percent: pct,
        ...(httpStatus !== undefined ? { httpStatus } : {}),
        ...(grpcName !== undefined ? { grpcStatus: GRPC_STATUS[grpcName]! } : {}),
      };
    });
    if (!delay && !abort) {
      if (!Object.hasOwn(m, 'delay') && !Object.hasOwn(m, 'abort')) this.p.add(path, 'set delay or abort');
      return undefined;
    }
    return { ...(delay ? { delay } : {}), ...(abort ? { abort } : {}) };
  }
}
