/**
 * Gateway API `HTTPRoute` specs → the route model (`core/model/routes.ts`); what the routing
 * specs share is in `shared.ts`.
 */
import { field, keyPath, list, listField, mapping, string } from '../../validation/check.js';
import type { BackendRef, HeaderModifier, HttpRoute, ParentRef, PathMatch, PathRewrite, RequestMatch, RetryPolicy, RouteFilter, RouteRule, ValueMatch } from '../../model/routes.js';
import { DEFAULT_RETRY_BACKOFF_MS, HOST_RE, MATCH_ALL, MODIFIER_KEYS, REDIRECT_CODES, RouteSpecChecks, sentPathProblem } from './shared.js';

const HTTPROUTE_SPEC_KEYS = ['parentRefs', 'hostnames', 'rules'];
const PARENT_KEYS = ['group', 'kind', 'name', 'namespace', 'port', 'sectionName'];
const RULE_KEYS = ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry'];
const MATCH_KEYS = ['path', 'headers', 'queryParams', 'method'];
const PATH_KEYS = ['type', 'value'];
const VALUE_MATCH_KEYS = ['type', 'name', 'value'];
// With the settings of the filter types upstream defines and waypoints do not implement (their
// `type` is refused as not supported by the mesh, not their key as unknown).
const FILTER_KEYS = ['type', 'requestHeaderModifier', 'responseHeaderModifier', 'requestRedirect', 'urlRewrite', 'requestMirror', 'extensionRef', 'cors'];
const HEADER_KEYS = ['name', 'value'];
const REDIRECT_KEYS = ['scheme', 'hostname', 'path', 'port', 'statusCode'];
const REWRITE_KEYS = ['hostname', 'path'];
const PATH_MODIFIER_KEYS = ['type', 'replaceFullPath', 'replacePrefixMatch'];
const MIRROR_KEYS = ['backendRef', 'percent', 'fraction'];
const FRACTION_KEYS = ['numerator', 'denominator'];
const BACKEND_KEYS = ['group', 'kind', 'name', 'namespace', 'port', 'weight', 'filters'];
const TIMEOUT_KEYS = ['request', 'backendRequest'];
const GW_RETRY_KEYS = ['codes', 'attempts', 'backoff'];

const FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror', 'CORS'] as const;
const CORS_KEYS = ['allowOrigins', 'allowCredentials', 'allowMethods', 'allowHeaders', 'exposeHeaders', 'maxAge'];
// RFC 9110 token characters: a method or header name.
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// An origin (`scheme://host[:port]`) of which one `*` may stand for any characters, or `*` alone.
const ORIGIN_RE = /^(\*|[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#\s]+)$/;
const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Converts HTTPRoute specs, recording problems in `p` under each entry's path. */
export class HttpRouteConverter extends RouteSpecChecks {
  /**
   * Converts an HTTPRoute (`gateway.networking.k8s.io/v1`) spec. Parents must be Services
   * (GAMMA); Gateways (ingress) are not served by waypoints.
   *
   * @example
   * const c = new HttpRouteConverter(problems);
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
    const group = m.group as string | null | undefined;
    if (kind !== 'Service' || (group !== undefined && group !== null && group !== '' && group !== 'core')) {
      this.p.add(
        keyPath(path, 'kind'),
        `parent ${group ? `${group}/` : ''}${kind} is not supported: a waypoint serves routes attached to a Service (GAMMA); set kind: Service and group: ""`,
      );
    }
    if (Object.hasOwn(m, 'sectionName')) this.p.add(keyPath(path, 'sectionName'), 'is not supported for Service parents; use port');
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q));
    const namespace = field(this.p, path, m, 'namespace', (x, q) => this.name(x, q)) ?? routeNamespace;
    const p = (m.port as number | null | undefined) ?? undefined; // the schema's PortNumber: 1-65535
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
    this.filterCombinations(filters, keyPath(path, 'filters'));
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
      (m.codes as number[] | null | undefined) ?? // each 400-599 (the schema's)
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
      const type = (mm.type as PathMatch['type'] | null | undefined) ?? 'PathPrefix';
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
          const type = (em.type as ValueMatch['type'] | null | undefined) ?? 'Exact';
          const n = field(this.p, eq, em, 'name', (y, r) => this.headerName(y, r));
          const value = field(this.p, eq, em, 'value', (y, r) => (type === 'RegularExpression' ? this.regex(y, r) : string(this.p, r, y, 'a value')));
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
    const method = (m.method as RequestMatch['method'] | null | undefined) ?? undefined;
    if (this.p.size > before) return undefined;
    // Gateway API defaults an absent path match to PathPrefix "/".
    return { path: pm ?? { type: 'PathPrefix', value: '/' }, headers, queryParams, ...(method ? { method } : {}) };
  }

  /**
   * A Service reference. With `otherKinds` (a rule's backendRefs), a reference of another group or
   * kind is kept as `invalidKind` instead of refused: Gateway API accepts the route, reports
   * `ResolvedRefs=False, reason InvalidKind` and answers the requests sent to it with 500
   * (upstream conformance: HTTPRouteInvalidBackendRefUnknownKind). A mirror's backendRef has no
   * such rule: another kind is refused there.
   */
  private backendRef(
    m: Record<string, unknown>,
    path: string,
    namespace: string,
    otherKinds: boolean,
  ): { name: string; namespace: string; port?: number; invalidKind?: string } | undefined {
    const before = this.p.size;
    const kind = field(this.p, path, m, 'kind', (x, q) => string(this.p, q, x, 'a kind')) ?? 'Service';
    const group = m.group as string | null | undefined;
    const isService = kind === 'Service' && (group === undefined || group === null || group === '' || group === 'core');
    const invalidKind = isService ? undefined : `${group ? `${group}/` : ''}${kind}`;
    if (invalidKind !== undefined && !otherKinds) {
      this.p.add(keyPath(path, 'kind'), `backend ${invalidKind} is not supported; a backend is a Service (kind: Service, group: "")`);
    }
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q));
    const ns = field(this.p, path, m, 'namespace', (x, q) => this.name(x, q)) ?? namespace;
    // The schema types the port (1-65535); that a Service backend needs one is a CEL rule, so ours.
    const p = field(this.p, path, m, 'port', (x) => x as number, {
      required: isService,
      expected: 'the Service port (required for Service backends)',
    });
    if (this.p.size > before || name === undefined) return undefined;
    return { name, namespace: ns, ...(p !== undefined ? { port: p } : {}), ...(invalidKind !== undefined ? { invalidKind } : {}) };
  }

  private gwBackend(v: unknown, path: string, namespace: string, matches: readonly RequestMatch[]): BackendRef | undefined {
    const m = mapping(this.p, path, v, BACKEND_KEYS, 'a mapping {name, namespace, port, weight, filters}');
    if (!m) return undefined;
    const before = this.p.size;
    const ref = this.backendRef(m, path, namespace, true);
    const weight = (m.weight as number | null | undefined) ?? 1; // 0-1000000 (the schema's)
    // Every filter type a rule takes works on a backend too, applied only to the requests the
    // weighted choice sends to it (upstream: HTTPRouteBackendRequestHeaderModifier,
    // HTTPRouteBackendURLRewrite, HTTPRouteBackendPathRedirect); the per-rule limits hold per backend.
    const filters =
      field(this.p, path, m, 'filters', (x, q) => list(this.p, q, x, (e, eq) => this.gwFilter(e, eq, namespace, matches, true))) ?? [];
    this.filterCombinations(filters, keyPath(path, 'filters'), 'backend');
    if (this.p.size > before || !ref) return undefined;
    return { ...ref, weight, filters };
  }

  /** Gateway API's limits on the filters of one rule, or of one backend (`what`). */
  private filterCombinations(filters: readonly RouteFilter[], path: string, what = 'rule'): void {
    const kinds = filters.map((f) => f.type);
    for (const t of ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'CORS']) {
      if (kinds.filter((k) => k === t).length > 1) this.p.add(path, `${t} may appear once per ${what}`);
    }
    if (kinds.includes('RequestRedirect') && kinds.includes('URLRewrite')) {
      this.p.add(path, 'RequestRedirect and URLRewrite cannot be combined (Gateway API)');
    }
  }

  private gwFilter(v: unknown, path: string, namespace: string, matches: readonly RequestMatch[], onBackend = false): RouteFilter | undefined {
    const m = mapping(this.p, path, v, FILTER_KEYS, 'a mapping {type, ...}');
    if (!m) return undefined;
    const type = m.type as (typeof FILTER_TYPES)[number];
    if (!FILTER_TYPES.includes(type)) {
      this.p.add(keyPath(path, 'type'), `${JSON.stringify(type)} is not supported by the mesh; expected one of ${FILTER_TYPES.join(', ')}`);
      return undefined;
    }
    // CORS answers preflights before any backend is chosen (Envoy's CORS filter is per route).
    if (type === 'CORS' && onBackend) {
      this.p.add(keyPath(path, 'type'), '"CORS" is not supported by the mesh on a backend; set it on the rule');
      return undefined;
    }
    const key = type === 'URLRewrite' ? 'urlRewrite' : type === 'CORS' ? 'cors' : type[0]!.toLowerCase() + type.slice(1);
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
          // scheme, port and statusCode: types and enums are the schema's.
          const scheme = (rm.scheme as 'http' | 'https' | null | undefined) ?? undefined;
          const hostname = field(this.p, q, rm, 'hostname', (y, r) => string(this.p, r, y, 'a hostname'));
          const p = field(this.p, q, rm, 'path', (y, r) => this.pathRewrite(y, r, matches));
          const rport = (rm.port as number | null | undefined) ?? undefined;
          const statusCode = (rm.statusCode as (typeof REDIRECT_CODES)[number] | null | undefined) ?? undefined;
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
        case 'CORS': {
          const cm = mapping(this.p, q, x, CORS_KEYS, 'a mapping {allowOrigins, allowMethods, allowHeaders, exposeHeaders, allowCredentials, maxAge}');
          if (!cm) return undefined;
          const before = this.p.size;
          const strings = (k: string, re: RegExp, what: string) =>
            field(this.p, q, cm, k, (y, r) => list(this.p, r, y, (e, eq) => string(this.p, eq, e, what, (s) => (re.test(s) ? undefined : `${JSON.stringify(s)} is not ${what}`)))) ?? [];
          const allowOrigins = strings('allowOrigins', ORIGIN_RE, 'an origin (scheme://host[:port], one * wildcard) or *');
          const allowMethods = strings('allowMethods', TOKEN_RE, 'a method or *');
          const allowHeaders = strings('allowHeaders', TOKEN_RE, 'a header name or *').map((h) => h.toLowerCase());
          const exposeHeaders = strings('exposeHeaders', TOKEN_RE, 'a header name or *').map((h) => h.toLowerCase());
          const allowCredentials = cm.allowCredentials === true;
          const maxAge = field(this.p, q, cm, 'maxAge', (y, r) => this.integer(y, r, 1, 2_147_483_647)) ?? 5;
          if (this.p.size > before) return undefined;
          return { type, cors: { allowOrigins, allowMethods, allowHeaders, exposeHeaders, allowCredentials, maxAge } };
        }
        case 'RequestMirror': {
          const mm = mapping(this.p, q, x, MIRROR_KEYS, 'a mapping {backendRef, percent}');
          if (!mm) return undefined;
          const before = this.p.size;
          const ref = field(this.p, q, mm, 'backendRef', (y, r) => {
            const bm = mapping(this.p, r, y, ['group', 'kind', 'name', 'namespace', 'port'], 'a mapping {name, namespace, port}');
            return bm ? this.backendRef(bm, r, namespace, false) : undefined;
          }, { required: true, expected: 'the Service to mirror to' });
          let percent = (mm.percent as number | null | undefined) ?? undefined; // 0-100 (the schema's)
          const fraction = field(this.p, q, mm, 'fraction', (y, r) => {
            const fm = mapping(this.p, r, y, FRACTION_KEYS, 'a mapping {numerator, denominator}');
            if (!fm) return undefined;
            const num = field(this.p, r, fm, 'numerator', (z, s) => this.integer(z, s, 0, 1_000_000));
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
          const name = field(this.p, eq, em, 'name', (y, r) => this.headerName(y, r));
          // The schema bounds its length (4096); CR, LF and NUL it lets through, and they would
          // end the header and start another one (header injection).
          const value = field(this.p, eq, em, 'value', (y, r) => this.headerValue(y, r));
          if (name === undefined || (value === undefined && em.value != null)) return undefined;
          return { name: name.toLowerCase(), value: value ?? '' };
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
    const type = m.type as PathRewrite['type'];
    const key = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
    const other = type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
    if (Object.hasOwn(m, other)) this.p.add(keyPath(path, other), `does not go with type ${type}; set ${key}`);
    // The waypoint writes this path into the request line or the Location header: sentPathProblem.
    const value = field(this.p, path, m, key, (x, q) => string(this.p, q, x, 'a path starting with /', sentPathProblem), {
      required: true,
      expected: 'a path starting with /',
    });
    if (type === 'ReplacePrefixMatch' && matches.some((mm) => mm.path?.type !== 'PathPrefix')) {
      this.p.add(keyPath(path, 'type'), 'ReplacePrefixMatch needs every match of the rule to be a PathPrefix path match (Gateway API)');
      return undefined;
    }
    return value === undefined ? undefined : { type, value };
  }
}
