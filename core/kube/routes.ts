/**
 * Gateway API `HTTPRoute` and Istio `VirtualService` specs → the frozen internal route model
 * (`core/model/routes.ts`). The only place that reads their wire shapes; the file source and the
 * control plane both call it. Validation collects every problem with its path, like
 * `core/node-config/file.ts`: a regex that is not RE2 (`core/model/regex.ts`), a weight that is not an integer, a
 * duration Envoy could not express are all reported here, never discovered per request.
 */
import { Problems, describe, field, isMapping, keyPath, list, listField, mapping, oneOf, port, string, stringField } from '../validation/check.js';
import { regexProblem } from '../model/regex.js';
import { checkLabel } from './names.js';
import type {
  BackendRef,
  FaultPolicy,
  HeaderModifier,
  HttpRoute,
  ParentRef,
  PathMatch,
  PathRewrite,
  RequestMatch,
  RetryPolicy,
  RouteFilter,
  RouteRule,
  ValueMatch,
  VirtualService,
  DestinationRule,
} from '../model/routes.js';

const HTTPROUTE_SPEC_KEYS = ['parentRefs', 'hostnames', 'rules'];
const PARENT_KEYS = ['group', 'kind', 'name', 'namespace', 'port', 'sectionName'];
const RULE_KEYS = ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry'];
const MATCH_KEYS = ['path', 'headers', 'queryParams', 'method'];
const PATH_KEYS = ['type', 'value'];
const VALUE_MATCH_KEYS = ['type', 'name', 'value'];
const FILTER_KEYS = ['type', 'requestHeaderModifier', 'responseHeaderModifier', 'requestRedirect', 'urlRewrite', 'requestMirror'];
const MODIFIER_KEYS = ['set', 'add', 'remove'];
const HEADER_KEYS = ['name', 'value'];
const REDIRECT_KEYS = ['scheme', 'hostname', 'path', 'port', 'statusCode'];
const REWRITE_KEYS = ['hostname', 'path'];
const PATH_MODIFIER_KEYS = ['type', 'replaceFullPath', 'replacePrefixMatch'];
const MIRROR_KEYS = ['backendRef', 'percent', 'fraction'];
const FRACTION_KEYS = ['numerator', 'denominator'];
const BACKEND_KEYS = ['group', 'kind', 'name', 'namespace', 'port', 'weight', 'filters'];
const TIMEOUT_KEYS = ['request', 'backendRequest'];
const GW_RETRY_KEYS = ['codes', 'attempts', 'backoff'];

const VS_SPEC_KEYS = ['hosts', 'gateways', 'http', 'exportTo'];
const VS_HTTP_KEYS = ['name', 'match', 'route', 'redirect', 'rewrite', 'timeout', 'retries', 'fault', 'mirror', 'mirrorPercentage', 'headers'];
const VS_MATCH_KEYS = ['name', 'uri', 'method', 'headers', 'queryParams', 'withoutHeaders'];
const STRING_MATCH_KEYS = ['exact', 'prefix', 'regex'];
const VS_ROUTE_KEYS = ['destination', 'weight', 'headers'];
const DESTINATION_KEYS = ['host', 'port', 'subset'];
const PORT_SELECTOR_KEYS = ['number'];
const DR_SPEC_KEYS = ['host', 'subsets', 'trafficPolicy', 'exportTo', 'workloadSelector'];
const DR_SUBSET_KEYS = ['name', 'labels', 'trafficPolicy'];
const SUBSET_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VS_HEADERS_KEYS = ['request', 'response'];
const VS_REDIRECT_KEYS = ['uri', 'authority', 'port', 'scheme', 'redirectCode'];
const VS_REWRITE_KEYS = ['uri', 'authority'];
const RETRIES_KEYS = ['attempts', 'perTryTimeout', 'retryOn'];
const FAULT_KEYS = ['delay', 'abort'];
const DELAY_KEYS = ['fixedDelay', 'percentage', 'percent'];
const ABORT_KEYS = ['httpStatus', 'grpcStatus', 'percentage'];
const PERCENTAGE_KEYS = ['value'];

const FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror'] as const;
const PATH_TYPES = ['Exact', 'PathPrefix', 'RegularExpression'] as const;
const VALUE_TYPES = ['Exact', 'RegularExpression'] as const;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
const REDIRECT_CODES = [301, 302, 303, 307, 308] as const;
/** Envoy's retry conditions that a waypoint honours (docs/waypoint.md). */
export const RETRY_ON = ['5xx', 'gateway-error', 'connect-failure', 'reset', 'reset-before-request', 'retriable-status-codes', 'refused-stream'] as const;
/** gRPC status names Istio accepts for `fault.abort.grpcStatus`, with their codes. */
export const GRPC_STATUS: Readonly<Record<string, number>> = Object.freeze({
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
});

/** Retries of a route that sets none: Istio's default (2 retries on these conditions). */
export const ISTIO_DEFAULT_RETRY: RetryPolicy = Object.freeze({
  attempts: 2,
  // Istio's outbound default plus `reset-before-request`, which Istio's inbound default has
  // (istio/istio#52055): a request the backend provably did not get, or an idempotent one lost
  // to a keep-alive stream the backend was closing, is sent again; nothing else is.
  retryOn: Object.freeze(['connect-failure', 'refused-stream', 'reset-before-request', 'retriable-status-codes']),
  codes: Object.freeze([503]),
  backoffMs: 25,
});
/** Envoy's base retry back-off interval; retries wait a jittered multiple of it. */
export const DEFAULT_RETRY_BACKOFF_MS = 25;

// RFC 7230 token for header names; Gateway API's own pattern is the same character set.
const HEADER_NAME_RE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const HOST_RE = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Why `s` is not a VirtualService/DestinationRule host (any case), or undefined when it is one. */
function checkHost(s: string): string | undefined {
  return HOST_RE.test(s.toLowerCase()) ? undefined : `${JSON.stringify(s)} is not a host name (service short name or FQDN)`;
}
const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(h|ms|m|s)/g;
const DURATION_RE = /^(\d+(?:\.\d+)?(h|ms|m|s))+$/;

/** Parses `10s`, `1.5s`, `250ms`, `1h30m` into milliseconds. */
export function parseDurationMs(s: string): number | undefined {
  if (!DURATION_RE.test(s)) return undefined;
  let ms = 0;
  for (const [, n, unit] of s.matchAll(DURATION_PART_RE)) {
    const v = Number(n);
    ms += unit === 'h' ? v * 3_600_000 : unit === 'm' ? v * 60_000 : unit === 's' ? v * 1000 : v;
  }
  return Math.round(ms);
}

/** Converts the specs of routing resources, recording problems in `p` under each entry's path. */
export class RouteConverter {
  constructor(readonly p: Problems) {}

  // ---- shared -----------------------------------------------------------------------------

  private duration(v: unknown, path: string): number | undefined {
    const ms = typeof v === 'string' ? parseDurationMs(v) : undefined;
    if (ms === undefined) {
      this.p.add(path, `${describe(v)} is not a duration; expected e.g. "10s", "1.5s", "250ms" or "1m"`);
    }
    return ms;
  }

  private regex(v: unknown, path: string): string | undefined {
    const s = string(this.p, path, v, 'a regular expression');
    if (s === undefined) return undefined;
    const problem = regexProblem(s);
    if (problem !== undefined) {
      this.p.add(path, problem);
      return undefined;
    }
    return s;
  }

  private headerName(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a header name', (s) =>
      HEADER_NAME_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a valid header name`,
    );
  }

  private integer(v: unknown, path: string, min: number, max: number, what = 'an integer'): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.p.add(path, `${describe(v)} is not allowed; expected ${what} from ${min} to ${max}`);
      return undefined;
    }
    return v;
  }

  private percent(v: unknown, path: string): number | undefined {
    if (typeof v !== 'number' || !(v >= 0 && v <= 100)) {
      this.p.add(path, `${describe(v)} is not a percentage; expected a number from 0 to 100`);
      return undefined;
    }
    return v;
  }

  private name(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a service name', (s) =>
      NAME_RE.test(s) && s.length <= 253 ? undefined : `${JSON.stringify(s)} is not a DNS-1123 name`,
    );
  }

  private modifier(v: unknown, path: string): HeaderModifier | undefined {
    const m = mapping(this.p, path, v, MODIFIER_KEYS, 'a mapping {set, add, remove}');
    if (!m) return undefined;
    const before = this.p.size;
    const pairs = (k: string) =>
      field(this.p, path, m, k, (x, q) =>
        list(this.p, q, x, (e, eq) => {
          const em = mapping(this.p, eq, e, HEADER_KEYS, 'a mapping {name, value}');
          if (!em) return undefined;
          const name = field(this.p, eq, em, 'name', (y, r) => this.headerName(y, r), { required: true, expected: 'a header name' });
          const value = field(this.p, eq, em, 'value', (y, r) =>
            typeof y === 'string' ? y : (this.p.add(r, `expected a string, got ${describe(y)}`), undefined),
          ) ?? '';
          return name === undefined ? undefined : { name: name.toLowerCase(), value };
        }),
      ) ?? [];
    const set = pairs('set');
    const add = pairs('add');
    const remove =
      field(this.p, path, m, 'remove', (x, q) => list(this.p, q, x, (e, eq) => this.headerName(e, eq)?.toLowerCase())) ?? [];
    if (this.p.size > before) return undefined;
    return { set, add, remove };
  }

  private pathRewrite(v: unknown, path: string, matches: readonly RequestMatch[]): PathRewrite | undefined {
    const m = mapping(this.p, path, v, PATH_MODIFIER_KEYS, 'a mapping {type, replaceFullPath | replacePrefixMatch}');
    if (!m) return undefined;
    const type = field(this.p, path, m, 'type', (x, q) => oneOf(this.p, q, x, ['ReplaceFullPath', 'ReplacePrefixMatch'] as const), {
      required: true,
      expected: 'ReplaceFullPath or ReplacePrefixMatch',
    });
    if (type === undefined) return undefined;
    const key = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
    const other = type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
    if (Object.hasOwn(m, other)) this.p.add(keyPath(path, other), `does not go with type ${type}; set ${key}`);
    const value = field(this.p, path, m, key, (x, q) =>
      string(this.p, q, x, 'a path starting with /', (s) => (s.startsWith('/') ? undefined : `${JSON.stringify(s)} does not start with /`)),
      { required: true, expected: 'a path starting with /' },
    );
    if (type === 'ReplacePrefixMatch' && matches.some((mm) => mm.path?.type !== 'PathPrefix')) {
      this.p.add(keyPath(path, 'type'), 'ReplacePrefixMatch needs every match of the rule to be a PathPrefix path match (Gateway API)');
      return undefined;
    }
    return value === undefined ? undefined : { type, value };
  }

  // ---- HTTPRoute --------------------------------------------------------------------------

  /**
   * Converts an HTTPRoute (`gateway.networking.k8s.io/v1`) spec. Parents must be Services
   * (GAMMA); Gateways (ingress) are not served by waypoints.
   *
   * @example
   * const c = new RouteConverter(problems);
   * c.httpRoute('reviews', 'default', {parentRefs: [{kind: 'Service', name: 'reviews'}], rules: [...]}, 'httpRoutes[0].spec');
   */
  httpRoute(name: string, namespace: string, spec: Record<string, unknown>, path: string): HttpRoute | undefined {
    const before = this.p.size;
    mapping(this.p, path, spec, HTTPROUTE_SPEC_KEYS);
    const parents = listField(this.p, path, spec, 'parentRefs', (e, eq) => this.parentRef(e, eq, namespace), {
      required: true,
      expected: 'a list of {kind: Service, name, port}',
      nonEmpty: 'attach the route to a Service',
    });
    const hostnames =
      field(this.p, path, spec, 'hostnames', (x, q) =>
        list(this.p, q, x, (e, eq) =>
          string(this.p, eq, e, 'a hostname', (s) =>
            HOST_RE.test(s.toLowerCase()) ? undefined : `${JSON.stringify(s)} is not a hostname (optionally starting with "*.")`,
          )?.toLowerCase(),
        ),
      ) ?? [];
    const rules =
      field(this.p, path, spec, 'rules', (x, q) => list(this.p, q, x, (e, eq) => this.gwRule(e, eq, namespace))) ?? [];
    const effective = rules.length > 0 ? rules : [{ matches: [MATCH_ALL], filters: [], backends: [] }];
    if (this.p.size > before || !parents) return undefined;
    return { kind: 'HTTPRoute', name, namespace, parents, hostnames, rules: effective };
  }

  private parentRef(v: unknown, path: string, routeNamespace: string): ParentRef | undefined {
    const m = mapping(this.p, path, v, PARENT_KEYS, 'a mapping {group, kind, name, namespace, port}');
    if (!m) return undefined;
    const before = this.p.size;
    const kind = field(this.p, path, m, 'kind', (x, q) => string(this.p, q, x, 'a kind')) ?? 'Gateway';
    const group = field(this.p, path, m, 'group', (x, q) => (typeof x === 'string' ? x : (this.p.add(q, `expected a string, got ${describe(x)}`), undefined)));
    if (kind !== 'Service' || (group !== undefined && group !== '' && group !== 'core')) {
      this.p.add(
        keyPath(path, 'kind'),
        `parent ${group ? `${group}/` : ''}${kind} is not supported: a waypoint serves routes attached to a Service (GAMMA); set kind: Service and group: ""`,
      );
    }
    if (Object.hasOwn(m, 'sectionName')) this.p.add(keyPath(path, 'sectionName'), 'is not supported for Service parents; use port');
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: 'the Service name' });
    const namespace = field(this.p, path, m, 'namespace', (x, q) => this.name(x, q)) ?? routeNamespace;
    const p = field(this.p, path, m, 'port', (x, q) => port(this.p, q, x));
    if (this.p.size > before || name === undefined) return undefined;
    return { kind: 'Service', name, namespace, ...(p !== undefined ? { port: p } : {}) };
  }

  private gwRule(v: unknown, path: string, namespace: string): RouteRule | undefined {
    const m = mapping(this.p, path, v, RULE_KEYS, 'a mapping {matches, filters, backendRefs, timeouts, retry}');
    if (!m) return undefined;
    const before = this.p.size;
    const ruleName = field(this.p, path, m, 'name', (x, q) => string(this.p, q, x, 'a rule name'));
    const matchesIn = field(this.p, path, m, 'matches', (x, q) => list(this.p, q, x, (e, eq) => this.gwMatch(e, eq)));
    const matches = matchesIn && matchesIn.length > 0 ? matchesIn : [MATCH_ALL];
    const filters =
      field(this.p, path, m, 'filters', (x, q) => list(this.p, q, x, (e, eq) => this.gwFilter(e, eq, namespace, matches))) ?? [];
    const kinds = filters.map((f) => f.type);
    for (const t of ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite']) {
      if (kinds.filter((k) => k === t).length > 1) this.p.add(keyPath(path, 'filters'), `${t} may appear once per rule`);
    }
    if (kinds.includes('RequestRedirect') && kinds.includes('URLRewrite')) {
      this.p.add(keyPath(path, 'filters'), 'RequestRedirect and URLRewrite cannot be combined (Gateway API)');
    }
    const backends =
      field(this.p, path, m, 'backendRefs', (x, q) => list(this.p, q, x, (e, eq) => this.gwBackend(e, eq, namespace, matches))) ?? [];
    if (kinds.includes('RequestRedirect') && backends.length > 0) {
      this.p.add(keyPath(path, 'backendRefs'), 'a rule with RequestRedirect answers the redirect itself; remove backendRefs');
    }
    const timeouts = field(this.p, path, m, 'timeouts', (x, q) => {
      const tm = mapping(this.p, q, x, TIMEOUT_KEYS, 'a mapping {request, backendRequest}');
      if (!tm) return undefined;
      const request = field(this.p, q, tm, 'request', (y, r) => this.duration(y, r));
      const backendRequest = field(this.p, q, tm, 'backendRequest', (y, r) => this.duration(y, r));
      if (request && backendRequest && backendRequest > request) {
        this.p.add(keyPath(q, 'backendRequest'), 'must not be longer than request (Gateway API)');
      }
      return { request, backendRequest };
    });
    const retry = field(this.p, path, m, 'retry', (x, q) => this.gwRetry(x, q));
    if (this.p.size > before) return undefined;
    return {
      matches,
      filters,
      backends,
      // 0 means "no timeout" in Gateway API.
      ...(timeouts?.request ? { requestTimeoutMs: timeouts.request } : {}),
      ...(timeouts?.backendRequest ? { backendRequestTimeoutMs: timeouts.backendRequest } : {}),
      ...(retry ? { retry } : {}),
      ...(ruleName !== undefined ? { name: ruleName } : {}),
    };
  }

  private gwRetry(v: unknown, path: string): RetryPolicy | undefined {
    const m = mapping(this.p, path, v, GW_RETRY_KEYS, 'a mapping {attempts, codes, backoff}');
    if (!m) return undefined;
    const attempts = field(this.p, path, m, 'attempts', (x, q) => this.integer(x, q, 0, 100)) ?? 1;
    const codes =
      field(this.p, path, m, 'codes', (x, q) => list(this.p, q, x, (e, eq) => this.integer(e, eq, 400, 599, 'a status code'))) ??
      [500, 502, 503, 504];
    const backoffMs = field(this.p, path, m, 'backoff', (x, q) => this.duration(x, q)) ?? DEFAULT_RETRY_BACKOFF_MS;
    return { attempts, retryOn: ['connect-failure', 'reset', 'retriable-status-codes'], codes, backoffMs };
  }

  private gwMatch(v: unknown, path: string): RequestMatch | undefined {
    const m = mapping(this.p, path, v, MATCH_KEYS, 'a mapping {path, headers, queryParams, method}');
    if (!m) return undefined;
    const before = this.p.size;
    const pm = field(this.p, path, m, 'path', (x, q): PathMatch | undefined => {
      const mm = mapping(this.p, q, x, PATH_KEYS, 'a mapping {type, value}');
      if (!mm) return undefined;
      const type = field(this.p, q, mm, 'type', (y, r) => oneOf(this.p, r, y, PATH_TYPES)) ?? 'PathPrefix';
      const value =
        field(this.p, q, mm, 'value', (y, r) =>
          type === 'RegularExpression'
            ? this.regex(y, r)
            : string(this.p, r, y, 'a path starting with /', (s) => (s.startsWith('/') ? undefined : `${JSON.stringify(s)} does not start with /`)),
        ) ?? '/';
      return { type, value };
    });
    const values = (k: string, lower: boolean) =>
      field(this.p, path, m, k, (x, q) => {
        const seen = new Set<string>();
        return list(this.p, q, x, (e, eq): ValueMatch | undefined => {
          const em = mapping(this.p, eq, e, VALUE_MATCH_KEYS, 'a mapping {type, name, value}');
          if (!em) return undefined;
          const type = field(this.p, eq, em, 'type', (y, r) => oneOf(this.p, r, y, VALUE_TYPES)) ?? 'Exact';
          const n = field(this.p, eq, em, 'name', (y, r) => this.headerName(y, r), { required: true, expected: 'a name' });
          const value = field(this.p, eq, em, 'value', (y, r) =>
            type === 'RegularExpression' ? this.regex(y, r) : string(this.p, r, y, 'a value'),
            { required: true, expected: 'a value' },
          );
          if (n === undefined || value === undefined) return undefined;
          const key = lower ? n.toLowerCase() : n;
          // Gateway API: only the first entry with a given name counts; a repeat is a mistake.
          if (seen.has(key)) this.p.add(keyPath(eq, 'name'), `duplicate match on ${JSON.stringify(n)}`);
          seen.add(key);
          return { name: key, type, value };
        });
      }) ?? [];
    const headers = values('headers', true);
    const queryParams = values('queryParams', false);
    const method = field(this.p, path, m, 'method', (x, q) => oneOf(this.p, q, x, METHODS));
    if (this.p.size > before) return undefined;
    // Gateway API defaults an absent path match to PathPrefix "/".
    return { path: pm ?? { type: 'PathPrefix', value: '/' }, headers, queryParams, ...(method ? { method } : {}) };
  }

  private backendRef(
    m: Record<string, unknown>,
    path: string,
    namespace: string,
    portRequired: boolean,
  ): { name: string; namespace: string; port?: number } | undefined {
    const before = this.p.size;
    const kind = field(this.p, path, m, 'kind', (x, q) => string(this.p, q, x, 'a kind')) ?? 'Service';
    const group = field(this.p, path, m, 'group', (x, q) => (typeof x === 'string' ? x : (this.p.add(q, `expected a string, got ${describe(x)}`), undefined)));
    if (kind !== 'Service' || (group !== undefined && group !== '' && group !== 'core')) {
      this.p.add(keyPath(path, 'kind'), `backend ${group ? `${group}/` : ''}${kind} is not supported; a backend is a Service (kind: Service, group: "")`);
    }
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: 'the Service name' });
    const ns = field(this.p, path, m, 'namespace', (x, q) => this.name(x, q)) ?? namespace;
    const p = field(this.p, path, m, 'port', (x, q) => port(this.p, q, x), {
      required: portRequired,
      expected: 'the Service port (required for Service backends)',
    });
    if (this.p.size > before || name === undefined) return undefined;
    return { name, namespace: ns, ...(p !== undefined ? { port: p } : {}) };
  }

  private gwBackend(v: unknown, path: string, namespace: string, matches: readonly RequestMatch[]): BackendRef | undefined {
    const m = mapping(this.p, path, v, BACKEND_KEYS, 'a mapping {name, namespace, port, weight, filters}');
    if (!m) return undefined;
    const before = this.p.size;
    const ref = this.backendRef(m, path, namespace, true);
    const weight = field(this.p, path, m, 'weight', (x, q) => this.integer(x, q, 0, 1_000_000, 'an integer weight')) ?? 1;
    const filters =
      field(this.p, path, m, 'filters', (x, q) =>
        list(this.p, q, x, (e, eq) => {
          const f = this.gwFilter(e, eq, namespace, matches);
          if (f && f.type !== 'RequestHeaderModifier' && f.type !== 'ResponseHeaderModifier') {
            this.p.add(keyPath(eq, 'type'), `${f.type} is not supported on a backend; put it on the rule`);
            return undefined;
          }
          return f;
        }),
      ) ?? [];
    if (this.p.size > before || !ref) return undefined;
    return { ...ref, weight, filters };
  }

  private gwFilter(v: unknown, path: string, namespace: string, matches: readonly RequestMatch[]): RouteFilter | undefined {
    const m = mapping(this.p, path, v, FILTER_KEYS, 'a mapping {type, ...}');
    if (!m) return undefined;
    const type = field(this.p, path, m, 'type', (x, q) => oneOf(this.p, q, x, FILTER_TYPES), {
      required: true,
      expected: FILTER_TYPES.join(', '),
    });
    if (type === undefined) return undefined;
    const key = type === 'URLRewrite' ? 'urlRewrite' : type[0]!.toLowerCase() + type.slice(1);
    for (const k of FILTER_KEYS) {
      if (k !== 'type' && k !== key && Object.hasOwn(m, k)) this.p.add(keyPath(path, k), `does not go with type ${type}; set ${key}`);
    }
    const body = (x: unknown, q: string): RouteFilter | undefined => {
      switch (type) {
        case 'RequestHeaderModifier':
        case 'ResponseHeaderModifier': {
          const modifier = this.modifier(x, q);
          return modifier ? { type, modifier } : undefined;
        }
        case 'RequestRedirect': {
          const rm = mapping(this.p, q, x, REDIRECT_KEYS, 'a mapping {scheme, hostname, path, port, statusCode}');
          if (!rm) return undefined;
          const before = this.p.size;
          const scheme = field(this.p, q, rm, 'scheme', (y, r) => oneOf(this.p, r, y, ['http', 'https'] as const));
          const hostname = field(this.p, q, rm, 'hostname', (y, r) => string(this.p, r, y, 'a hostname'));
          const p = field(this.p, q, rm, 'path', (y, r) => this.pathRewrite(y, r, matches));
          const rport = field(this.p, q, rm, 'port', (y, r) => port(this.p, r, y));
          const statusCode = field(this.p, q, rm, 'statusCode', (y, r) => oneOf(this.p, r, String(y), REDIRECT_CODES.map(String)));
          if (this.p.size > before) return undefined;
          return {
            type,
            statusCode: Number(statusCode ?? 302) as 301 | 302 | 303 | 307 | 308,
            ...(scheme ? { scheme } : {}),
            ...(hostname ? { hostname } : {}),
            ...(p ? { path: p } : {}),
            ...(rport ? { port: rport } : {}),
          };
        }
        case 'URLRewrite': {
          const rm = mapping(this.p, q, x, REWRITE_KEYS, 'a mapping {hostname, path}');
          if (!rm) return undefined;
          const before = this.p.size;
          const hostname = field(this.p, q, rm, 'hostname', (y, r) => string(this.p, r, y, 'a hostname'));
          const p = field(this.p, q, rm, 'path', (y, r) => this.pathRewrite(y, r, matches));
          if (this.p.size > before) return undefined;
          return { type, ...(hostname ? { hostname } : {}), ...(p ? { path: p } : {}) };
        }
        case 'RequestMirror': {
          const mm = mapping(this.p, q, x, MIRROR_KEYS, 'a mapping {backendRef, percent}');
          if (!mm) return undefined;
          const before = this.p.size;
          const ref = field(this.p, q, mm, 'backendRef', (y, r) => {
            const bm = mapping(this.p, r, y, ['group', 'kind', 'name', 'namespace', 'port'], 'a mapping {name, namespace, port}');
            return bm ? this.backendRef(bm, r, namespace, true) : undefined;
          }, { required: true, expected: 'the Service to mirror to' });
          let percent = field(this.p, q, mm, 'percent', (y, r) => this.percent(y, r));
          const fraction = field(this.p, q, mm, 'fraction', (y, r) => {
            const fm = mapping(this.p, r, y, FRACTION_KEYS, 'a mapping {numerator, denominator}');
            if (!fm) return undefined;
            const num = field(this.p, r, fm, 'numerator', (z, s) => this.integer(z, s, 0, 1_000_000), { required: true });
            const den = field(this.p, r, fm, 'denominator', (z, s) => this.integer(z, s, 1, 1_000_000)) ?? 100;
            if (num !== undefined && num > den) this.p.add(r, 'numerator must not exceed denominator');
            return num === undefined ? undefined : (100 * num) / den;
          });
          if (percent !== undefined && fraction !== undefined) this.p.add(q, 'set percent or fraction, not both');
          percent ??= fraction ?? 100;
          if (this.p.size > before || !ref) return undefined;
          return { type, backend: { ...ref, weight: 1, filters: [] }, percent };
        }
      }
    };
    return field(this.p, path, m, key, body, { required: true, expected: `the ${type} settings` });
  }

  // ---- VirtualService ----------------------------------------------------------------------

  /**
   * Converts a VirtualService (`networking.istio.io/v1`) spec: `http` routes with matches,
   * weighted destinations, fault injection, retries, timeouts, header manipulation, rewrites,
   * redirects and mirroring. Only mesh routing is served: `gateways` must be absent or `[mesh]`.
   */
  virtualService(name: string, namespace: string, spec: Record<string, unknown>, path: string): VirtualService | undefined {
    const before = this.p.size;
    mapping(this.p, path, spec, VS_SPEC_KEYS);
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

  // ---- DestinationRule ---------------------------------------------------------------------

  /**
   * Converts a DestinationRule (`networking.istio.io/v1`) spec: `host` and `subsets` (name +
   * labels), what VirtualService destinations name with `subset`. `trafficPolicy` (top level and
   * per subset), `exportTo` and `workloadSelector` are accepted and not applied: they are listed
   * in `ignored` (paths relative to the spec), which the waypoint shows in the route status of `/config_dump`
   * (docs/waypoint.md, "Not supported").
   *
   * @example
   * new RouteConverter(p).destinationRule('reviews', 'default',
   *   { host: 'reviews', subsets: [{ name: 'v2', labels: { version: 'v2' } }] }, 'spec');
   */
  destinationRule(name: string, namespace: string, spec: Record<string, unknown>, path: string): DestinationRule | undefined {
    const before = this.p.size;
    const ignored: string[] = [];
    mapping(this.p, path, spec, DR_SPEC_KEYS);
    const host = stringField(
      this.p,
      path,
      spec,
      'host',
      'a host',
      (s) =>
        s.startsWith('*')
          ? `${JSON.stringify(s)}: wildcard hosts are not supported; name one service (short name, name.namespace or its FQDN)`
          : checkHost(s),
      { required: true, expected: 'the service host, e.g. reviews' },
    );
    // Relative to the spec, so the model does not depend on where the spec came from (file, manifest, wire).
    for (const k of ['trafficPolicy', 'exportTo', 'workloadSelector']) if (Object.hasOwn(spec, k)) ignored.push(k);
    const subsets =
      field(this.p, path, spec, 'subsets', (x, q) =>
        list(this.p, q, x, (e, eq) => {
          const m = mapping(this.p, eq, e, DR_SUBSET_KEYS, 'a mapping {name, labels}');
          if (!m) return undefined;
          if (Object.hasOwn(m, 'trafficPolicy')) ignored.push(`${eq.slice(path.length + 1)}.trafficPolicy`);
          const subsetName = field(
            this.p,
            eq,
            m,
            'name',
            (y, r) => string(this.p, r, y, 'a subset name', (s) => (SUBSET_NAME_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a subset name; expected up to 63 letters, digits, "-", "_" or "."`)),
            { required: true, expected: 'the subset name, e.g. v2' },
          );
          // No labels: the subset is every endpoint of the service (as in Istio).
          const labels =
            field(this.p, eq, m, 'labels', (y, r) => {
              if (!isMapping(y)) {
                this.p.add(r, `expected a mapping of label: value, got ${describe(y)}`);
                return undefined;
              }
              const out: Record<string, string> = {};
              for (const [k, val] of Object.entries(y)) {
                if (typeof val !== 'string') {
                  this.p.add(keyPath(r, k), `expected a string label value, got ${describe(val)}`);
                  continue;
                }
                const bad = checkLabel(k, val);
                if (bad) this.p.add(keyPath(r, k), bad);
                else out[k] = val;
              }
              return Object.freeze(out);
            }) ?? Object.freeze({});
          return subsetName === undefined ? undefined : Object.freeze({ name: subsetName, labels });
        }),
      ) ?? [];
    const seen = new Map<string, number>();
    subsets.forEach((s, i) => {
      const first = seen.get(s.name);
      if (first !== undefined) this.p.add(`${path}.subsets[${i}].name`, `subset ${JSON.stringify(s.name)} is already defined by subsets[${first}]; subset names must be unique`);
      else seen.set(s.name, i);
    });
    if (this.p.size > before || host === undefined) return undefined;
    return Object.freeze({
      kind: 'DestinationRule' as const,
      name,
      namespace,
      host,
      subsets: Object.freeze(subsets),
      ...(ignored.length > 0 ? { ignored: Object.freeze(ignored) } : {}),
    });
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
    const value = field(this.p, path, m, k, (x, q) =>
      k === 'regex' ? this.regex(x, q) : typeof x === 'string' ? x : (this.p.add(q, `expected a string, got ${describe(x)}`), undefined),
    );
    if (value === undefined) return undefined;
    const type = k === 'exact' ? 'Exact' : k === 'prefix' ? 'Prefix' : 'RegularExpression';
    return { name: lower ? name.toLowerCase() : name, type, value };
  }

  private stringMatchMap(m: Record<string, unknown>, path: string, key: string, lower: boolean, invert = false): ValueMatch[] {
    return (
      field(this.p, path, m, key, (x, q) => {
        if (!isMapping(x)) {
          this.p.add(q, `expected a map of name to {exact | prefix | regex}, got ${describe(x)}`);
          return undefined;
        }
        const out: ValueMatch[] = [];
        for (const [n, val] of Object.entries(x)) {
          const nq = keyPath(q, n);
          if (!HEADER_NAME_RE.test(n)) {
            this.p.add(nq, 'is not a valid name');
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
    const m = mapping(this.p, path, v, VS_MATCH_KEYS, 'a mapping {uri, method, headers, queryParams}');
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
            if (!isMapping(y)) {
              this.p.add(r, `expected a map of header name to value, got ${describe(y)}`);
              return undefined;
            }
            const out: { name: string; value: string }[] = [];
            for (const [n, val] of Object.entries(y)) {
              if (!HEADER_NAME_RE.test(n)) this.p.add(keyPath(r, n), 'is not a valid header name');
              else if (typeof val !== 'string') this.p.add(keyPath(r, n), `expected a string, got ${describe(val)}`);
              else out.push({ name: n.toLowerCase(), value: val });
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
    const host = field(this.p, path, m, 'host', (x, q) => string(this.p, q, x, 'a service host'), {
      required: true,
      expected: 'the destination service host',
    });
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
    const m = mapping(this.p, path, v, VS_HTTP_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    const ruleName = field(this.p, path, m, 'name', (x, q) => string(this.p, q, x, 'a route name'));
    const matchesIn = field(this.p, path, m, 'match', (x, q) => list(this.p, q, x, (e, eq) => this.vsMatch(e, eq)));
    const matches = matchesIn && matchesIn.length > 0 ? matchesIn : [MATCH_ALL];
    const routeList = field(this.p, path, m, 'route', (x, q) =>
      list(this.p, q, x, (e, eq) => {
        const rm = mapping(this.p, eq, e, VS_ROUTE_KEYS, 'a mapping {destination, weight, headers}');
        if (!rm) return undefined;
        const dest = field(this.p, eq, rm, 'destination', (y, r) => this.vsDestination(y, r, namespace), {
          required: true,
          expected: 'a mapping {host, port}',
        });
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
      const uri = field(this.p, q, rm, 'uri', (y, r) => string(this.p, r, y, 'a path starting with /'));
      const authority = field(this.p, q, rm, 'authority', (y, r) => string(this.p, r, y, 'a host'));
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
      const uri = field(this.p, q, rm, 'uri', (y, r) => string(this.p, r, y, 'a path'));
      const authority = field(this.p, q, rm, 'authority', (y, r) => string(this.p, r, y, 'a host'));
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
    const mirror = field(this.p, path, m, 'mirror', (x, q) => this.vsDestination(x, q, namespace));
    const mirrorPercent = field(this.p, path, m, 'mirrorPercentage', (x, q) => this.percentage(x, q)) ?? 100;
    if (this.p.size > before) return undefined;
    const all: RouteFilter[] = [...filters];
    if (redirect) all.push(redirect);
    if (rewrite) all.push(rewrite);
    if (mirror) all.push({ type: 'RequestMirror', backend: { ...mirror, weight: 1, filters: [] }, percent: mirrorPercent });
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

/** The match every request satisfies (PathPrefix "/"). */
const MATCH_ALL: RequestMatch = Object.freeze({
  path: Object.freeze({ type: 'PathPrefix', value: '/' }) as PathMatch,
  headers: Object.freeze([]) as readonly ValueMatch[],
  queryParams: Object.freeze([]) as readonly ValueMatch[],
});
