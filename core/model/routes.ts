/**
 * The L7 routing model a waypoint works on: Gateway API `HTTPRoute` (GAMMA: `parentRefs` to a
 * Service) and Istio `VirtualService`, both converted to the same frozen rule shape in exactly
 * one place (`core/kube/routes/`), plus the pure semantics over it: match evaluation,
 * Gateway API precedence, weighted choice, route status.
 *
 * Which resource wins for a service (never merged; see docs/waypoint.md): when at least one
 * HTTPRoute is attached to the service (and port), only HTTPRoutes route it and every
 * VirtualService for the same host is reported as `Accepted=False, reason=Conflicted`; otherwise
 * the VirtualServices for the host apply, in config order, first matching rule wins (Istio).
 *
 * `RegularExpression` matches are RE2, matched against the whole value (`core/model/regex.ts`).
 */
import { regexFullMatch } from './regex.js';
import type { TrafficPolicy } from './traffic-policy.js';

/**
 * Path match: Gateway API's three types, plus `Prefix`, VirtualService's plain string prefix
 * (`/foo` matches `/foobar`, unlike PathPrefix).
 */
export interface PathMatch {
  readonly type: 'Exact' | 'PathPrefix' | 'Prefix' | 'RegularExpression';
  readonly value: string;
}

/** Header or query parameter match. `Prefix` only comes from VirtualService. */
export interface ValueMatch {
  /** Header names are lowercase; query parameter names are case-sensitive. */
  readonly name: string;
  readonly type: 'Exact' | 'Prefix' | 'RegularExpression';
  readonly value: string;
  /** VirtualService `withoutHeaders`: the header must not match. */
  readonly invert?: boolean;
}

/** One match: every present condition must hold (AND). */
export interface RequestMatch {
  readonly path?: PathMatch;
  readonly headers: readonly ValueMatch[];
  readonly queryParams: readonly ValueMatch[];
  /** Uppercase method. */
  readonly method?: string;
  /**
   * The GRPCRoute method match this match was converted from (its path match says what it
   * matches; this says how it ranks: GRPCRoute precedence, `orderHttpRouteMatches`).
   */
  readonly grpcMethod?: GrpcMethodMatch;
}

/** A GRPCRoute method match (`/<service>/<method>`), at least one of the two present. */
export interface GrpcMethodMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly service?: string;
  readonly method?: string;
}

export interface HeaderModifier {
  readonly set: readonly { readonly name: string; readonly value: string }[];
  readonly add: readonly { readonly name: string; readonly value: string }[];
  /** Lowercase names. */
  readonly remove: readonly string[];
}

export interface PathRewrite {
  readonly type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  readonly value: string;
}

export type RouteFilter =
  | { readonly type: 'RequestHeaderModifier'; readonly modifier: HeaderModifier }
  | { readonly type: 'ResponseHeaderModifier'; readonly modifier: HeaderModifier }
  | {
      readonly type: 'RequestRedirect';
      readonly scheme?: 'http' | 'https';
      readonly hostname?: string;
      readonly port?: number;
      readonly path?: PathRewrite;
      readonly statusCode: 301 | 302 | 303 | 307 | 308;
    }
  | { readonly type: 'URLRewrite'; readonly hostname?: string; readonly path?: PathRewrite }
  | { readonly type: 'RequestMirror'; readonly backend: BackendRef; readonly percent: number }
  | { readonly type: 'CORS'; readonly cors: CorsPolicy };

/**
 * A CORS policy (Gateway API `HTTPCORSFilter`, GEP-1767): origins are `scheme://host[:port]`,
 * `*` (any), or with one `*` standing for any characters (dots included); methods and headers
 * may be `*` (any: the request's own are echoed). `maxAge` in seconds.
 */
export interface CorsPolicy {
  readonly allowOrigins: readonly string[];
  /** VirtualService `corsPolicy.allowOrigins` (exact, prefix, regex StringMatch); an origin matching any is allowed too. */
  readonly originMatches?: readonly ValueMatch[];
  readonly allowMethods: readonly string[];
  /** Lowercase names. */
  readonly allowHeaders: readonly string[];
  /** Lowercase names. */
  readonly exposeHeaders: readonly string[];
  readonly allowCredentials: boolean;
  /** Absent: no `access-control-max-age` (Istio without `maxAge`). */
  readonly maxAge?: number;
  /** A preflight from an origin not allowed: forwarded (Envoy's default), or answered 200 without CORS headers (Istio `IGNORE`). */
  readonly unmatchedPreflights?: 'forward' | 'ignore';
}

/**
 * A backend: a Service by namespace/name (HTTPRoute; VirtualService short hosts), or by DNS
 * hostname (a VirtualService host that is not `<name>[.<namespace>[.svc...]]`).
 */
export interface BackendRef {
  readonly name?: string;
  readonly namespace?: string;
  readonly hostname?: string;
  /** Service port; absent means the port the request arrived on. */
  readonly port?: number;
  /** Relative weight; 0 receives nothing. */
  readonly weight: number;
  /** Per-backend header modifiers (Gateway API backendRefs[].filters). */
  readonly filters: readonly RouteFilter[];
  /** VirtualService `destination.subset`: a subset of a DestinationRule for the same host. */
  readonly subset?: string;
  /**
   * `group/kind` of an HTTPRoute backendRef that is not a Service (e.g. `example.com/Bucket`).
   * Gateway API keeps such a route: it is accepted, its status says `ResolvedRefs=False, reason
   * InvalidKind`, and the requests the weighted choice sends to this backend get 500.
   */
  readonly invalidKind?: string;
}

export interface RetryPolicy {
  /** Retries after the first try (Istio `attempts`, Gateway API `retry.attempts`). */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  /**
   * Envoy retry conditions: `5xx`, `gateway-error`, `connect-failure`, `reset`,
   * `retriable-status-codes`, `refused-stream`, or a status code ("503") which Istio accepts too.
   */
  readonly retryOn: readonly string[];
  /** Status codes retried besides what `retryOn` names. */
  readonly codes: readonly number[];
  readonly backoffMs: number;
}

export interface FaultPolicy {
  readonly delay?: { readonly fixedDelayMs: number; readonly percent: number };
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: number; readonly percent: number };
}

/** One routing rule in the internal form both resources convert to. */
export interface RouteRule {
  /** OR over matches; a rule from a resource with no matches holds one match-everything entry. */
  readonly matches: readonly RequestMatch[];
  readonly filters: readonly RouteFilter[];
  /** Empty with no redirect filter: the rule answers 500 (Gateway API) — see `routeStatus`. */
  readonly backends: readonly BackendRef[];
  /** Whole request, retries included (Gateway API `timeouts.request`, Istio `timeout`). */
  readonly requestTimeoutMs?: number;
  /** One try (Gateway API `timeouts.backendRequest`; Istio `retries.perTryTimeout` goes in `retry`). */
  readonly backendRequestTimeoutMs?: number;
  readonly retry?: RetryPolicy;
  readonly fault?: FaultPolicy;
  /** Rule name (Gateway API `name`, Istio `http[].name`), for logs. */
  readonly name?: string;
}

/** Where an HTTPRoute attaches: a Service (GAMMA), optionally one of its ports. */
export interface ParentRef {
  readonly kind: 'Service';
  readonly name: string;
  readonly namespace: string;
  readonly port?: number;
}

/** What every route resource has: its name, namespace and ordered rules. */
interface RouteResource<K extends string> {
  readonly kind: K;
  readonly name: string;
  readonly namespace: string;
  readonly rules: readonly RouteRule[];
}

/**
 * An HTTPRoute, or a GRPCRoute converted to the same rules (`core/kube/routes/grpc-route.ts`):
 * both attach to Services the same way and are ordered together.
 */
export interface HttpRoute extends RouteResource<'HTTPRoute' | 'GRPCRoute'> {
  readonly parents: readonly ParentRef[];
  /** Lowercase; empty matches every host. */
  readonly hostnames: readonly string[];
}

/**
 * A TCPRoute (Gateway API `v1alpha2`) on Service parents: the connections to the Service, through
 * its waypoint, are split between `backends` by weight, one choice per connection.
 */
export interface TcpRoute {
  readonly kind: 'TCPRoute';
  readonly name: string;
  readonly namespace: string;
  readonly parents: readonly ParentRef[];
  /** Weighted Services (`port` required); `invalidKind` as for HTTPRoute: its connections are closed. */
  readonly backends: readonly BackendRef[];
}

/** A TCPRoute as the one-rule route `routeStatus` judges (parents, then backends). */
export type TcpRouteRules = Omit<HttpRoute, 'kind'> & { readonly kind: 'TCPRoute' };

export interface VirtualService extends RouteResource<'VirtualService'> {
  /** As written; resolved against services with `resolveHost`. */
  readonly hosts: readonly string[];
}

/** A named subset of a service's endpoints (Istio DestinationRule `subsets[]`). */
export interface Subset {
  readonly name: string;
  /** The endpoints whose workload has every one of these labels (in addition to the service's selector). */
  readonly labels: Readonly<Record<string, string>>;
  /** Overrides the DestinationRule's `trafficPolicy` field by field (`mergeTrafficPolicy`). */
  readonly trafficPolicy?: TrafficPolicy;
}

/**
 * Istio `DestinationRule` (`networking.istio.io/v1`), as far as waypoints use it: the subsets
 * a VirtualService destination may name, and the `trafficPolicy` of the host and of each subset.
 */
export interface DestinationRule {
  readonly kind: 'DestinationRule';
  readonly name: string;
  readonly namespace: string;
  /** As written; resolved against services like a VirtualService host. */
  readonly host: string;
  readonly subsets: readonly Subset[];
  /** Load balancing, connection pool and outlier detection for the host (core/model/traffic-policy.ts). */
  readonly trafficPolicy?: TrafficPolicy;
  /**
   * Fields given but not applied by waypoints (`exportTo`, `workloadSelector`, and the parts of
   * `trafficPolicy` not applied: `trafficPolicy.tls`, `subsets[0].trafficPolicy.loadBalancer.localityLbSetting`,
   * ...), as spec paths; shown in the status in `/config_dump`.
   */
  readonly ignored?: readonly string[];
}

const FIELD_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Whether `s` may be sent as an HTTP field value (a header value, a `Location`): RFC 9110 §5.5
 * (`field-vchar = VCHAR / obs-text`, with SP and HTAB inside), so no CR, LF, NUL or other control
 * character (Istio's `ValidateHTTPHeaderValue` refuses the same ones), and every character one
 * Latin-1 byte, the only ones Node's HTTP stacks write. The converters refuse anything else; the
 * waypoint checks again where it sets a header, so a value that got through another way is
 * dropped, never sent.
 */
export function isFieldValue(s: string): boolean {
  return FIELD_VALUE_RE.test(s);
}

/** What a rule is matched against. */
export interface MatchInput {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** Lowercase names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly query: URLSearchParams;
}

export function valueMatches(m: ValueMatch, v: string | undefined): boolean {
  if (v === undefined) return false;
  switch (m.type) {
    case 'Exact':
      return v === m.value;
    case 'Prefix':
      return v.startsWith(m.value);
    case 'RegularExpression':
      return regexFullMatch(m.value, v);
  }
}

/** Gateway API PathPrefix: element-wise, `/foo` matches `/foo` and `/foo/bar` but not `/foobar`. */
export function pathPrefixMatches(prefix: string, path: string): boolean {
  const p = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (p === '/') return path.startsWith('/');
  return path === p || (path.startsWith(p) && path[p.length] === '/');
}

function pathMatches(m: PathMatch, path: string): boolean {
  switch (m.type) {
    case 'Exact':
      return path === m.value;
    case 'PathPrefix':
      return pathPrefixMatches(m.value, path);
    case 'Prefix':
      return path.startsWith(m.value);
    case 'RegularExpression':
      return regexFullMatch(m.value, path);
  }
}

/** Whether one match holds for a request. */
export function requestMatches(m: RequestMatch, r: MatchInput): boolean {
  if (m.method !== undefined && m.method !== r.method) return false;
  if (m.path && !pathMatches(m.path, r.path)) return false;
  for (const h of m.headers) {
    const raw = r.headers[h.name];
    const v = Array.isArray(raw) ? raw.join(',') : raw;
    if (valueMatches(h, v) === Boolean(h.invert)) return false;
  }
  for (const q of m.queryParams) {
    if (!valueMatches(q, r.query.get(q.name) ?? undefined)) return false;
  }
  return true;
}

/** A match with the rule and route it belongs to, in evaluation order. */
export interface OrderedMatch {
  readonly match: RequestMatch;
  readonly rule: RouteRule;
  readonly route: HttpRoute | VirtualService;
  readonly ruleIndex: number;
}

/**
 * Gateway API precedence across every rule of the HTTPRoutes attached to one parent:
 * Exact path, then the longest PathPrefix (RegularExpression, whose precedence the spec leaves
 * to implementations, ranks after every prefix), then a method match, then more header matches,
 * then more query matches; ties go to the route earlier in config order (the oldest, as
 * creation time would say), then `namespace/name` alphabetically, then rule and match order.
 * A GRPCRoute's matches rank by GRPCRoute's rule instead of their path: the most characters of
 * a matching service, then of a matching method, then more header matches (ranked as PathPrefix
 * matches of that many characters next to an HTTPRoute's on the same Service).
 */
export function orderHttpRouteMatches(routes: readonly HttpRoute[]): OrderedMatch[] {
  const out: (OrderedMatch & { routeIndex: number; matchIndex: number })[] = [];
  routes.forEach((route, routeIndex) =>
    route.rules.forEach((rule, ruleIndex) =>
      rule.matches.forEach((match, matchIndex) => out.push({ match, rule, route, ruleIndex, routeIndex, matchIndex })),
    ),
  );
  const pathRank = (x: OrderedMatch): [number, number, number] => {
    const m = x.match;
    // GRPCRoute: the most characters of a matching service, then of a matching method (its path
    // match, converted, would rank a method-only match, a regex, after a match on no method).
    if (x.route.kind === 'GRPCRoute') return [1, -(m.grpcMethod?.service?.length ?? 0), -(m.grpcMethod?.method?.length ?? 0)];
    const p = m.path;
    if (!p) return [1, -1, 0]; // no path match means PathPrefix "/"
    if (p.type === 'Exact') return [0, -p.value.length, 0];
    if (p.type === 'PathPrefix' || p.type === 'Prefix') return [1, -p.value.length, 0];
    return [2, 0, 0];
  };
  out.sort((a, b) => {
    const [ak, al, as] = pathRank(a);
    const [bk, bl, bs] = pathRank(b);
    if (ak !== bk) return ak - bk;
    if (al !== bl) return al - bl;
    if (as !== bs) return as - bs;
    const am = a.match.method ? 0 : 1;
    const bm = b.match.method ? 0 : 1;
    if (am !== bm) return am - bm;
    if (a.match.headers.length !== b.match.headers.length) return b.match.headers.length - a.match.headers.length;
    if (a.match.queryParams.length !== b.match.queryParams.length) return b.match.queryParams.length - a.match.queryParams.length;
    if (a.routeIndex !== b.routeIndex) {
      // Config order is creation order; the name breaks ties only between distinct routes.
      return a.routeIndex - b.routeIndex;
    }
    if (a.ruleIndex !== b.ruleIndex) return a.ruleIndex - b.ruleIndex;
    return a.matchIndex - b.matchIndex;
  });
  return out.map(({ match, rule, route, ruleIndex }) => ({ match, rule, route, ruleIndex }));
}

/** Istio order for VirtualServices: resources in config order, rules in order, first match wins. */
export function orderVirtualServiceMatches(vss: readonly VirtualService[]): OrderedMatch[] {
  const out: OrderedMatch[] = [];
  for (const route of vss) {
    route.rules.forEach((rule, ruleIndex) => {
      for (const match of rule.matches) out.push({ match, rule, route, ruleIndex });
    });
  }
  return out;
}

/** The first entry of an ordered list that matches the request. */
export function firstMatch(ordered: readonly OrderedMatch[], r: MatchInput): OrderedMatch | undefined {
  for (const m of ordered) if (requestMatches(m.match, r)) return m;
  return undefined;
}

/**
 * Weighted choice: returns the index of the chosen item, or -1 when every weight is 0.
 * `random` is injectable so tests can pin the outcome.
 */
export function pickWeighted(weights: readonly number[], random: () => number = Math.random): number {
  let total = 0;
  for (const w of weights) total += w;
  if (total <= 0) return -1;
  let x = random() * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!;
    if (x < 0) return i;
  }
  // Floating point leftovers land on the last item with a weight.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
  return -1;
}

/**
 * Splits a VirtualService / Istio host into service name and namespace when it has Kubernetes
 * form: `name` (in `defaultNamespace`), `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`.
 * Anything else is a DNS name matched against service hostnames.
 */
export function resolveHost(
  host: string,
  defaultNamespace: string,
): { name: string; namespace: string } | { hostname: string } {
  const parts = host.toLowerCase().split('.');
  if (parts.length === 1) return { name: parts[0]!, namespace: defaultNamespace };
  if (parts.length === 2) return { name: parts[0]!, namespace: parts[1]! };
  if (parts[2] === 'svc') return { name: parts[0]!, namespace: parts[1]! };
  return { hostname: host.toLowerCase() };
}

/** The namespace and name (or hostname) a DestinationRule `host` names, as `resolveHost` reads it. */
function drNamesService(dr: DestinationRule, service: { name: string; namespace: string; hostname: string }): boolean {
  const r = resolveHost(dr.host, dr.namespace);
  return 'hostname' in r ? r.hostname === service.hostname : r.name === service.name && r.namespace === service.namespace;
}

/**
 * The subsets that apply to `service` for a route in `routeNamespace`, or undefined when no
 * DestinationRule names the service.
 *
 * Istio's lookup order, simplified: the first of these namespaces that holds a DestinationRule
 * for the host wins: the route's namespace (Istio: the client's), then the service's, then the
 * root namespace. DestinationRules in any other namespace are not used. Several DestinationRules
 * for the host in the winning namespace are merged in config order; a subset name defined twice
 * keeps its first definition (Istio merges them the same way). `exportTo` is not applied.
 */
export function subsetsFor(
  rules: readonly DestinationRule[],
  service: { name: string; namespace: string; hostname: string },
  routeNamespace: string,
  rootNamespace: string,
): ReadonlyMap<string, Subset> | undefined {
  const inNs = destinationRulesFor(rules, service, routeNamespace, rootNamespace);
  if (inNs.length === 0) return undefined;
  const out = new Map<string, Subset>();
  for (const dr of inNs) for (const s of dr.subsets) if (!out.has(s.name)) out.set(s.name, s);
  return out;
}

/**
 * The DestinationRules that apply to `service` for a route in `routeNamespace`, in config order:
 * those of the first namespace (route's, service's, root) holding one for the host (`subsetsFor`).
 */
export function destinationRulesFor(
  rules: readonly DestinationRule[],
  service: { name: string; namespace: string; hostname: string },
  routeNamespace: string,
  rootNamespace: string,
): readonly DestinationRule[] {
  const forHost = rules.filter((dr) => drNamesService(dr, service));
  for (const ns of [routeNamespace, service.namespace, rootNamespace]) {
    const inNs = forHost.filter((dr) => dr.namespace === ns);
    if (inNs.length > 0) return inNs;
  }
  return [];
}

/** Whether a workload with `labels` belongs to `subset`: it carries every label of the subset. */
export function inSubset(subset: Subset, labels: Readonly<Record<string, string>>): boolean {
  for (const k in subset.labels) if (labels[k] !== subset.labels[k]) return false;
  return true;
}

/** A Kubernetes-style status condition. */
export interface RouteCondition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message?: string;
}

/** What `routeStatus` needs to know about services. */
export interface ServiceLookup {
  byName(namespace: string, name: string): { readonly ports: readonly { readonly port: number }[] } | undefined;
  byHostname(hostname: string): { readonly ports: readonly { readonly port: number }[] } | undefined;
  /**
   * Whether the backend's `subset` is defined for a route in `routeNamespace` (`subsetsFor`).
   * Absent: subsets are not checked.
   */
  hasSubset?(backend: BackendRef, routeNamespace: string): boolean;
  /**
   * Whether the route may use the backend: a Service in another namespace needs a ReferenceGrant
   * (`backendPermitted`, core/model/reference-grant.ts). Absent: every reference is permitted.
   */
  permitted?(route: { readonly kind: string; readonly namespace: string }, backend: BackendRef): boolean;
}

function describeBackend(b: BackendRef): string {
  return b.invalidKind !== undefined ? `${b.invalidKind} ${b.namespace}/${b.name}` : (b.hostname ?? `${b.namespace}/${b.name}`);
}

/**
 * Status conditions of a route, as Gateway API reports them: `Accepted` (its parents exist, and
 * for a VirtualService, no HTTPRoute owns the same service: `conflictedBy`), and `ResolvedRefs`
 * (every backend is a Service, `InvalidKind` otherwise, that exists with the named port,
 * `BackendNotFound` otherwise; in another namespace only with a ReferenceGrant, `RefNotPermitted`
 * otherwise; no rule whose weights all are 0).
 */
export function routeStatus(
  route: HttpRoute | VirtualService | TcpRouteRules,
  services: ServiceLookup,
  conflictedBy?: string,
): RouteCondition[] {
  const out: RouteCondition[] = [];
  const find = (b: { name?: string; namespace?: string; hostname?: string }) =>
    b.hostname !== undefined ? services.byHostname(b.hostname) : services.byName(b.namespace ?? '', b.name ?? '');
  if (route.kind !== 'VirtualService') {
    const missing = route.parents.filter((p) => {
      const s = services.byName(p.namespace, p.name);
      return !s || (p.port !== undefined && !s.ports.some((sp) => sp.port === p.port));
    });
    out.push(
      missing.length === 0
        ? { type: 'Accepted', status: 'True', reason: 'Accepted' }
        : {
            type: 'Accepted',
            status: missing.length === route.parents.length ? 'False' : 'True',
            reason: missing.length === route.parents.length ? 'NoMatchingParent' : 'Accepted',
            message: `parent service ${missing.map((p) => `${p.namespace}/${p.name}${p.port ? `:${p.port}` : ''}`).join(', ')} not found`,
          },
    );
  } else if (conflictedBy !== undefined) {
    out.push({
      type: 'Accepted',
      status: 'False',
      reason: 'Conflicted',
      message: `HTTPRoute ${conflictedBy} routes the same service; HTTPRoutes take precedence and the two are never merged`,
    });
  } else {
    out.push({ type: 'Accepted', status: 'True', reason: 'Accepted' });
  }
  const problems: string[] = [];
  let invalidKind = false;
  let refNotPermitted = false;
  const notPermitted = (b: BackendRef) => services.permitted !== undefined && !services.permitted(route, b);
  route.rules.forEach((rule, i) => {
    for (const b of rule.backends) {
      if (b.invalidKind !== undefined) {
        invalidKind = true;
        problems.push(`rules[${i}]: backend ${describeBackend(b)} is not a Service (the only kind a waypoint forwards to), so requests sent to it answer 500`);
        continue;
      }
      // Before the existence check: without a grant, whether the Service exists in the other
      // namespace is not the route's business (nor said in its status).
      if (notPermitted(b)) {
        refNotPermitted = true;
        problems.push(
          `rules[${i}]: backend ${describeBackend(b)} is in another namespace and no ReferenceGrant in ${b.namespace} lets ${route.kind}s of ${route.namespace} refer to it, so requests sent to it answer 500`,
        );
        continue;
      }
      const s = find(b);
      if (!s) problems.push(`rules[${i}]: backend ${describeBackend(b)} not found`);
      else if (b.port !== undefined && !s.ports.some((sp) => sp.port === b.port)) {
        problems.push(`rules[${i}]: backend ${describeBackend(b)} has no port ${b.port}`);
      } else if (b.subset !== undefined && services.hasSubset && !services.hasSubset(b, route.namespace)) {
        problems.push(`rules[${i}]: backend ${describeBackend(b)} subset ${JSON.stringify(b.subset)} is not defined by a DestinationRule for that host, so the rule answers 503 NC`);
      }
    }
    for (const f of [...rule.filters, ...rule.backends.flatMap((b) => b.filters)]) {
      if (f.type === 'RequestMirror' && notPermitted(f.backend)) {
        refNotPermitted = true;
        problems.push(`rules[${i}]: mirror backend ${describeBackend(f.backend)} is in another namespace and no ReferenceGrant in ${f.backend.namespace} permits it, so nothing is mirrored to it`);
      }
    }
    if (rule.backends.length > 0 && rule.backends.every((b) => b.weight === 0)) {
      problems.push(`rules[${i}]: every backend has weight 0, so the rule answers 500`);
    }
  });
  out.push(
    problems.length === 0
      ? { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs' }
      : // One reason per condition: an unknown kind is named first, as upstream's conformance
        // suite (HTTPRouteInvalidBackendRefUnknownKind) expects InvalidKind whatever else is wrong.
        // RefNotPermitted next (upstream HTTPRouteInvalidCrossNamespaceBackendRef, HTTPRoutePartiallyInvalidViaInvalidReferenceGrant).
        {
          type: 'ResolvedRefs',
          status: 'False',
          reason: invalidKind ? 'InvalidKind' : refNotPermitted ? 'RefNotPermitted' : 'BackendNotFound',
          message: problems.join('; '),
        },
  );
  return out;
}
