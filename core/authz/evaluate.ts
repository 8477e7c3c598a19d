/**
 * Istio's AuthorizationPolicy semantics, once, for every proxy that enforces them: ztunnel (L4,
 * `authorizeConnection`) and the waypoint (L7, `authorizeRequest`, for HTTP requests and for TCP
 * passthrough). The only difference between the callers is what they can see of a connection
 * (the `Layer`); how a policy matches is decided here and nowhere else.
 *
 * Decision (Istio): AUDIT policies never decide, every matching one is reported; any matching
 * DENY denies; otherwise, with no ALLOW policy the connection is allowed; otherwise it is allowed
 * only if some ALLOW policy matches. CUSTOM (external authorization) is refused by both config
 * parsers, so it never reaches this module; a policy whose action is none of ALLOW/DENY/AUDIT is
 * enforced as a DENY (fail closed).
 *
 * A policy matches when any of its rules matches (no rules: matches nothing, so an ALLOW without
 * rules is Istio's allow-nothing); a rule matches when its `from`, `to` and `when` all match;
 * `from`/`to` match when any element matches (an empty list matches everything); every `when`
 * condition must hold. Within an element each present field must match; `x`/`notX` pairs match
 * when (no `x` or some `x` matches) and no `notX` matches.
 *
 * Attributes a layer cannot see ("unknown": HTTP fields at L4 and on a TCP connection) make the
 * result stricter, never looser:
 * - ALLOW: a rule that uses any of them matches nothing. Istio does the same in both proxies:
 *   istiod drops such rules for ztunnel (pilot/pkg/serviceregistry/kube/controller/ambient/
 *   authorization.go, `handleRule`: `if action == ALLOW && l7RuleFound { rules = nil }`) and for
 *   Envoy on TCP (pilot/pkg/security/authz/model/model.go, `checkError` returns the error for
 *   ALLOW, so the rule is skipped).
 * - DENY (and AUDIT): the unknown constraints are dropped and the rest of the rule is enforced,
 *   so it denies more than written; an element or condition left with no constraint matches every
 *   connection. This is Istio's Envoy behaviour (model.go `checkError`: "ignore the error for a
 *   deny or audit policy ... resulting in a wider deny") and istiod's stated intent for ztunnel
 *   ("DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more
 *   restrictive than requested."). Where a `from`/`to` element or a `when` condition holds ONLY
 *   HTTP attributes, Istio's ztunnel differs: istiod sends an empty `Match{}`, which
 *   istio/ztunnel src/rbac.rs `Authorization::matches` skips (`if mg.is_empty() { continue }`), so
 *   that element never matches and such a DENY becomes a no-op (istio/istio#61126; #61166 only
 *   changed the status message). We do not copy that: a DENY that silently stops denying is a
 *   security hole, and the operator is warned either way (`httpAttributesWarning`).
 *
 * Identity: `principals`/`namespaces` (and the `source.principal`/`source.namespace` conditions)
 * need an authenticated peer. A plaintext connection matches none of them, and so it does match
 * `notPrincipals`/`notNamespaces`, as in Istio.
 */
import { cidrContains, parseCidr, parseIp, type Cidr, type IpAddress } from '../model/ip.js';
import { tryParseSpiffeId } from '../identity/spiffe.js';
import type { PolicyCondition, PolicyOperation, PolicyRule, PolicySource } from '../model/types.js';
import { hostMatches, matchesPattern, parsePolicyPort, pathMatches } from './match.js';

/** What the evaluator needs of a policy; both `AuthorizationPolicy` (L4) and `WaypointPolicy` (L7) are one. */
export interface EvaluatedPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT';
  readonly rules: readonly PolicyRule[];
}

/** What ztunnel knows about a connection when it authorizes it. */
export interface ConnectionAttrs {
  /** Full SPIFFE id of the authenticated peer (`spiffe://td/ns/x/sa/y`); undefined for plaintext. */
  readonly sourcePrincipal?: string;
  /**
   * Namespace of `sourcePrincipal`, when the caller has it parsed already; derived from the
   * principal otherwise. Ignored without a principal: an unauthenticated peer has no namespace
   * a policy could trust.
   */
  readonly sourceNamespace?: string;
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
}

/**
 * What a verified JWT says about a request (the waypoint's RequestAuthentication layer,
 * waypoint/filters/jwt.ts): Istio's `request.auth.*` attributes.
 */
export interface RequestAuth {
  /** `<iss>/<sub>`: what `requestPrincipals` and `request.auth.principal` match. */
  readonly principal: string;
  /** The `aud` claim as a list. */
  readonly audiences: readonly string[];
  /** The `azp` claim. */
  readonly presenter?: string;
  /** The payload, space-delimited claims already split into lists (`request.auth.claims[...]`). */
  readonly claims: Readonly<Record<string, unknown>>;
}

/** The HTTP part of a request at the waypoint. */
export interface HttpAttrs {
  readonly host: string;
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The verified JWT; absent when the request carried none (its `request.auth.*` match nothing). */
  readonly auth?: RequestAuth;
}

/** What the waypoint knows when it authorizes (its peers are always authenticated). */
export interface RequestAttrs {
  readonly sourcePrincipal: string;
  /** The client address (`Forwarded` from the source ztunnel); also Istio's `remote.ip` (no trusted proxies). */
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
  /** Absent for TCP passthrough. */
  readonly http?: HttpAttrs;
}

/** The outcome of an authorization. */
export interface AuthzDecision {
  readonly allowed: boolean;
  /** `namespace/name` of the policy that decided; absent when no policy did (default allow/deny). */
  readonly policy?: string;
  /** `namespace/name` of every AUDIT policy that matched, whatever the decision. */
  readonly audit: readonly string[];
  /** Lowercase, human-readable reason for logs and access logs. */
  readonly reason: string;
}

/** `when` keys ztunnel can evaluate (istiod's `l4WhenAttributes`). Any other key is an HTTP attribute. */
export const L4_CONDITION_KEYS: ReadonlySet<string> = new Set([
  'source.ip',
  'source.namespace',
  'source.principal',
  'destination.ip',
  'destination.port',
]);

/** `when` keys a waypoint evaluates; `request.headers[<name>]` too. */
export const WAYPOINT_CONDITION_KEYS: ReadonlySet<string> = new Set([
  'source.ip', 'source.namespace', 'source.principal', 'remote.ip', 'destination.ip', 'destination.port',
  'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'connection.sni',
]);
/** A `request.auth.claims[<name>]...` condition key: one or more `[name]`, each without brackets or controls. */
export const CLAIM_KEY_RE = /^request\.auth\.claims(\[[^\[\]\u0000-\u001f\u007f]+\])+$/;
/** The claim path of a `request.auth.claims[a][b]` key (`['a', 'b']`), or undefined. */
export function conditionClaim(key: string): string[] | undefined {
  if (!CLAIM_KEY_RE.test(key)) return undefined;
  return key.slice('request.auth.claims['.length, -1).split('][');
}
/** A `request.headers[<name>]` condition key; group 1 is the header name. */
export const HEADER_KEY_RE = /^request\.headers\[([A-Za-z0-9!#$%&'*+\-.^_`|~]+)\]$/;
/** The header name of a `request.headers[<name>]` condition key (lowercase), or undefined. */
export function conditionHeader(key: string): string | undefined {
  return HEADER_KEY_RE.exec(key)?.[1]?.toLowerCase();
}

/**
 * What the proxy can see: `l4` ztunnel (no HTTP, no `remote.ip`: istiod treats remoteIpBlocks as
 * HTTP for ztunnel); `l7-tcp` the waypoint on TCP passthrough (L4 plus `remote.ip`); `l7-http`
 * everything (request principals and `request.auth.*` from the verified JWT, absent without one).
 */
type Layer = 'l4' | 'l7-tcp' | 'l7-http';

/** The connection with its attributes parsed once per call. */
interface Attrs {
  /** The principal without `spiffe://`, as Istio policies write it; undefined for plaintext. */
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
  readonly src: IpAddress | undefined;
  readonly dst: IpAddress | undefined;
  readonly port: number;
  readonly http: HttpAttrs | undefined;
}

type Test = (a: Attrs) => boolean;

/** One `from`/`to` element or `when` condition compiled for one layer. */
interface Part {
  /** The constraints the layer can check; all must hold. None: the part matches everything. */
  readonly tests: readonly Test[];
  /** Some constraint needs an attribute the layer cannot see. */
  readonly unknown: boolean;
}

const UNKNOWN: Part = { tests: [], unknown: true };
const SPIFFE_SCHEME = 'spiffe://';

const present = (l: readonly unknown[] | undefined): boolean => l !== undefined && l.length > 0;

/** Positive/negative pair; undefined when both lists are absent or empty (no constraint). */
function pair<T>(
  pos: readonly T[] | undefined,
  neg: readonly T[] | undefined,
  test: (item: T, a: Attrs) => boolean,
): Test | undefined {
  const p = present(pos) ? pos : undefined;
  const n = present(neg) ? neg : undefined;
  if (!p && !n) return undefined;
  return (a) => (!p || p.some((x) => test(x, a))) && (!n || !n.some((x) => test(x, a)));
}

const known = (...tests: (Test | undefined)[]): Part => ({ tests: tests.filter((t): t is Test => t !== undefined), unknown: false });

// Entries that do not parse (only possible from a source that skipped validation) become
// undefined and match nothing: an unreadable entry must not widen an ALLOW.
const cidrs = (l: readonly string[] | undefined) => l?.map((s) => parseCidr(s));
const ports = (l: readonly (string | number)[] | undefined) => l?.map((p) => parsePolicyPort(p));
const inCidr = (b: Cidr | undefined, ip: IpAddress | undefined) => b !== undefined && ip !== undefined && cidrContains(b, ip);
const samePort = (p: number | undefined, a: Attrs) => p !== undefined && p === a.port;
/** A request attribute the waypoint knows to be absent (no SNI): no value matches it. */
const absent = () => false;

/**
 * The values of a claim at `path` in the payload, as Envoy's metadata matcher sees them: a string,
 * or the strings of a list; anything else (numbers, objects, an absent claim) matches no value.
 */
function claimValues(claims: Readonly<Record<string, unknown>> | undefined, path: readonly string[]): readonly string[] {
  let v: unknown = claims;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return [];
    v = (v as Record<string, unknown>)[k];
  }
  if (typeof v === 'string') return [v];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}
const anyMatches = (pattern: string, values: readonly string[]) => values.some((v) => matchesPattern(pattern, v));

function compileSource(s: PolicySource, layer: Layer): Part {
  const l4 = [
    pair(s.principals, s.notPrincipals, (p, a) => matchesPattern(p, a.principal)),
    pair(s.namespaces, s.notNamespaces, (p, a) => matchesPattern(p, a.namespace)),
    pair(cidrs(s.ipBlocks), cidrs(s.notIpBlocks), (b, a) => inCidr(b, a.src)),
  ];
  const remote = present(s.remoteIpBlocks) || present(s.notRemoteIpBlocks);
  const requestPrincipals = present(s.requestPrincipals) || present(s.notRequestPrincipals);
  // The L4 config parser keeps only `hasL7Fields` of the HTTP fields: HTTP fields it stripped
  // cannot be evaluated at any layer.
  const stripped = s.hasL7Fields && !remote && !requestPrincipals;
  if (layer === 'l4') return { ...known(...l4), unknown: s.hasL7Fields || remote || requestPrincipals };
  const remoteTest = pair(cidrs(s.remoteIpBlocks), cidrs(s.notRemoteIpBlocks), (b, a) => inCidr(b, a.src));
  if (layer === 'l7-tcp') return { ...known(...l4, remoteTest), unknown: stripped || requestPrincipals };
  const principalTest = pair(s.requestPrincipals, s.notRequestPrincipals, (p, a) => matchesPattern(p, a.http?.auth?.principal));
  return { ...known(...l4, remoteTest, principalTest), unknown: stripped };
}

function compileOperation(o: PolicyOperation, layer: Layer): Part {
  const portTest = pair(ports(o.ports), ports(o.notPorts), samePort);
  const http = [o.hosts, o.notHosts, o.methods, o.notMethods, o.paths, o.notPaths].some(present);
  if (layer !== 'l7-http') return { ...known(portTest), unknown: o.hasL7Fields || http };
  return {
    ...known(
      portTest,
      pair(o.hosts, o.notHosts, (p, a) => a.http !== undefined && hostMatches(p, a.http.host)),
      pair(o.methods, o.notMethods, (p, a) => p === a.http?.method),
      pair(o.paths, o.notPaths, (p, a) => a.http !== undefined && pathMatches(p, a.http.path)),
    ),
    unknown: o.hasL7Fields && !http,
  };
}

function compileCondition(w: PolicyCondition, layer: Layer): Part {
  const strings = (test: (v: string, a: Attrs) => boolean) => known(pair(w.values, w.notValues, test));
  const ips = (which: 'src' | 'dst') => known(pair(cidrs(w.values), cidrs(w.notValues), (b, a) => inCidr(b, a[which])));
  switch (w.key) {
    case 'source.ip':
      return ips('src');
    case 'destination.ip':
      return ips('dst');
    case 'destination.port':
      return known(pair(ports(w.values), ports(w.notValues), samePort));
    case 'source.principal':
      return strings((v, a) => matchesPattern(v, a.principal));
    case 'source.namespace':
      return strings((v, a) => matchesPattern(v, a.namespace));
    case 'remote.ip':
      return layer === 'l4' ? UNKNOWN : ips('src');
    case 'connection.sni':
      // TLS from the application ends at the client's ztunnel: no SNI reaches the waypoint.
      return layer === 'l4' ? UNKNOWN : strings(absent);
  }
  const header = conditionHeader(w.key);
  if (header !== undefined) {
    if (layer !== 'l7-http') return UNKNOWN;
    return strings((v, a) => {
      const raw = a.http?.headers[header];
      return matchesPattern(v, Array.isArray(raw) ? raw.join(',') : raw);
    });
  }
  if (w.key.startsWith('request.auth.')) {
    if (layer !== 'l7-http') return UNKNOWN;
    switch (w.key) {
      case 'request.auth.principal':
        return strings((v, a) => matchesPattern(v, a.http?.auth?.principal));
      case 'request.auth.audiences':
        return strings((v, a) => anyMatches(v, a.http?.auth?.audiences ?? []));
      case 'request.auth.presenter':
        return strings((v, a) => matchesPattern(v, a.http?.auth?.presenter));
    }
    const claim = conditionClaim(w.key);
    // Any other request.auth key (the parsers refuse them) matches no value.
    return claim === undefined ? strings(absent) : strings((v, a) => anyMatches(v, claimValues(a.http?.auth?.claims, claim)));
  }
  // Any other key (the parsers refuse them) cannot be evaluated: unknown, i.e. stricter.
  return UNKNOWN;
}

/** OR over elements; an empty list matches everything. */
const anyOf = (parts: readonly Test[]): Test => (parts.length === 0 ? () => true : (a) => parts.some((m) => m(a)));
const allOf = (tests: readonly Test[]): Test => (tests.length === 0 ? () => true : (a) => tests.every((m) => m(a)));
const NEVER: Test = () => false;

function compileRule(rule: PolicyRule, allow: boolean, layer: Layer): Test {
  const from = rule.from.map((s) => compileSource(s, layer));
  const to = rule.to.map((o) => compileOperation(o, layer));
  const when = rule.when.map((w) => compileCondition(w, layer));
  // ALLOW: a rule needing what this layer cannot see matches nothing. DENY/AUDIT: the unknown
  // constraints were left out of each part's tests, so the rest is enforced (module comment).
  if (allow && [...from, ...to, ...when].some((p) => p.unknown)) return NEVER;
  const fromT = anyOf(from.map((p) => allOf(p.tests)));
  const toT = anyOf(to.map((p) => allOf(p.tests)));
  const whenT = allOf(when.map((p) => allOf(p.tests)));
  return (a) => fromT(a) && toT(a) && whenT(a);
}

interface Compiled {
  readonly key: string;
  readonly matches: Test;
}

// Policies are frozen snapshots, so a compiled form keyed by object identity never goes stale.
const compiledCache = new WeakMap<EvaluatedPolicy, Partial<Record<Layer, Compiled>>>();

function compile(policy: EvaluatedPolicy, layer: Layer): Compiled {
  let perLayer = compiledCache.get(policy);
  if (!perLayer) compiledCache.set(policy, (perLayer = {}));
  let c = perLayer[layer];
  if (!c) {
    const rules = policy.rules.map((r) => compileRule(r, policy.action === 'ALLOW', layer));
    // No rules: matches nothing.
    c = { key: `${policy.namespace}/${policy.name}`, matches: (a) => rules.some((r) => r(a)) };
    perLayer[layer] = c;
  }
  return c;
}

function decide(policies: readonly EvaluatedPolicy[], a: Attrs, layer: Layer): AuthzDecision {
  const audit: string[] = [];
  let allowPolicies = 0;
  let denyKey: string | undefined;
  for (const policy of policies) {
    if (policy.action === 'ALLOW') {
      allowPolicies++;
      continue;
    }
    const p = compile(policy, layer);
    if (policy.action === 'AUDIT') {
      if (p.matches(a)) audit.push(p.key);
      continue;
    }
    // DENY, and any action the types do not know (fail closed).
    if (denyKey === undefined && p.matches(a)) denyKey = p.key;
  }
  if (denyKey !== undefined) return { allowed: false, policy: denyKey, audit, reason: `denied by DENY policy ${denyKey}` };
  if (allowPolicies === 0) return { allowed: true, audit, reason: 'allowed: no ALLOW policy applies' };
  for (const policy of policies) {
    if (policy.action !== 'ALLOW') continue;
    const p = compile(policy, layer);
    if (p.matches(a)) return { allowed: true, policy: p.key, audit, reason: `allowed by ALLOW policy ${p.key}` };
  }
  return {
    allowed: false,
    audit,
    reason: `denied: no ALLOW policy matched (${allowPolicies} ${allowPolicies === 1 ? 'applies' : 'apply'} to the destination)`,
  };
}

function attrs(full: string | undefined, namespace: string | undefined, r: { sourceIp: string; destinationIp: string; destinationPort: number }, http: HttpAttrs | undefined): Attrs {
  const principal = full?.startsWith(SPIFFE_SCHEME) ? full.slice(SPIFFE_SCHEME.length) : undefined;
  return {
    principal,
    namespace: principal === undefined ? undefined : (namespace ?? tryParseSpiffeId(full as string)?.namespace),
    src: parseIp(r.sourceIp),
    dst: parseIp(r.destinationIp),
    port: r.destinationPort,
    http,
  };
}

/**
 * ztunnel's entry: decides whether a connection may reach a workload. `policies` are those that
 * apply to the destination workload (`MeshState.policiesFor`); order does not matter.
 *
 * @example
 * const d = authorizeConnection(state.policiesFor(dst), {
 *   sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep',
 *   sourceIp: '10.0.0.5', destinationIp: '10.0.0.9', destinationPort: 8080,
 * });
 * if (!d.allowed) respond(401, d.reason);
 */
export function authorizeConnection(policies: readonly EvaluatedPolicy[], conn: ConnectionAttrs): AuthzDecision {
  return decide(policies, attrs(conn.sourcePrincipal, conn.sourceNamespace, conn, undefined), 'l4');
}

/**
 * The waypoint's entry: decides a request (or, without `http`, a TCP connection) against the
 * policies that apply (`policiesFor` in waypoint/authz.ts); order does not matter.
 *
 * @example
 * const d = authorizeRequest(policiesFor(state, gw, svc), {
 *   sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep', sourceIp: '10.0.0.5',
 *   destinationIp: '10.96.0.10', destinationPort: 80,
 *   http: { host: 'echo', method: 'POST', path: '/admin/users', headers: {} },
 * });
 */
export function authorizeRequest(policies: readonly EvaluatedPolicy[], req: RequestAttrs): AuthzDecision {
  return decide(policies, attrs(req.sourcePrincipal, undefined, req, req.http), req.http ? 'l7-http' : 'l7-tcp');
}
