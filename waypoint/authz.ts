/**
 * L7 authorization with Istio's AuthorizationPolicy semantics, as a waypoint enforces them for
 * policies attached with `targetRefs` (to the waypoint's Gateway, to a Service, or to the
 * `istio-waypoint` GatewayClass from the root namespace).
 *
 * Decision order (Istio): a matching DENY denies; AUDIT never decides (it marks the access log);
 * with no ALLOW policy the request is allowed; otherwise some ALLOW policy must match.
 *
 * Request principals come from JWTs (RequestAuthentication), which this mesh does not validate
 * yet: a request never has one, so `requestPrincipals` never matches and `notRequestPrincipals`
 * always does. For a non-HTTP connection (TCP passthrough) the HTTP fields are unknown: an ALLOW
 * rule that uses them matches nothing and a DENY rule is enforced without them (stricter, as in
 * ztunnel).
 */
import { matchesPattern } from '../core/model/authz.js';
import { compilePathTemplate } from '../core/model/regex.js';
import { cidrContains, parseCidr, parseIp } from '../core/model/ip.js';
import { tryParseSpiffeId } from '../core/identity/spiffe.js';
import { conditionHeader, WAYPOINT_GATEWAY_CLASS } from '../core/config/waypoint-policy.js';
import type { MeshState } from '../core/model/state.js';
import type { PolicyCondition, PolicyOperation, PolicyRule, PolicySource, Service, WaypointPolicy } from '../core/model/types.js';

/** What the waypoint knows when it authorizes. */
export interface RequestAttrs {
  readonly sourcePrincipal: string;
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
  /** Absent for TCP passthrough. */
  readonly http?: {
    readonly host: string;
    readonly method: string;
    /** Path without the query string. */
    readonly path: string;
    readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  };
}

export interface L7Decision {
  readonly allowed: boolean;
  /** `namespace/name` of the deciding policy. */
  readonly policy?: string;
  /** `namespace/name` of AUDIT policies that matched. */
  readonly audit: readonly string[];
  readonly reason: string;
}

/** The waypoint's own Gateway, which `targetRefs: [{kind: Gateway}]` names. */
export interface GatewayRef {
  readonly name: string;
  readonly namespace: string;
}

const cache = new WeakMap<MeshState, Map<string, readonly WaypointPolicy[]>>();

/** The policies that apply to requests through `gateway` to `service` (cached per snapshot). */
export function policiesFor(state: MeshState, gateway: GatewayRef, service: Service | undefined): readonly WaypointPolicy[] {
  let perState = cache.get(state);
  if (!perState) cache.set(state, (perState = new Map()));
  const key = service ? `${service.namespace}/${service.name}` : '';
  let list = perState.get(key);
  if (!list) {
    list = Object.freeze(
      (state.config.waypointPolicies ?? []).filter((p) =>
        p.targetRefs.some(
          (t) =>
            (t.kind === 'Gateway' && t.name === gateway.name && p.namespace === gateway.namespace) ||
            (t.kind === 'Service' && service !== undefined && t.name === service.name && p.namespace === service.namespace) ||
            (t.kind === 'GatewayClass' && t.name === WAYPOINT_GATEWAY_CLASS && p.namespace === state.rootNamespace),
        ),
      ),
    );
    perState.set(key, list);
  }
  return list;
}

interface Attrs {
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
  readonly src: ReturnType<typeof parseIp>;
  readonly dst: ReturnType<typeof parseIp>;
  readonly port: number;
  readonly http: RequestAttrs['http'];
}

/** Tri-state: a field the connection cannot see (HTTP on TCP) is `unknown`. */
type Tri = boolean | 'unknown';

function pair<T>(pos: readonly T[] | undefined, neg: readonly T[] | undefined, test: (x: T) => boolean): boolean {
  if (pos && pos.length > 0 && !pos.some(test)) return false;
  if (neg && neg.length > 0 && neg.some(test)) return false;
  return true;
}

function inCidr(ip: Attrs['src']) {
  return (c: string) => {
    const cidr = parseCidr(c);
    return cidr !== undefined && ip !== undefined && cidrContains(cidr, ip);
  };
}

/**
 * Istio path match: `*`, `prefix*`, `*suffix`, exact, and the `{*}` / `{**}` templates. Templates
 * are matched by RE2 (`compilePathTemplate`), linear in the path however many wildcards they hold.
 */
export function pathMatches(pattern: string, path: string): boolean {
  if (pattern.includes('{')) return compilePathTemplate(pattern).fullMatch(path);
  return matchesPattern(pattern, path);
}

/** Istio host match: case-insensitive, wildcards as for other strings, a pattern without a port matches any port. */
export function hostMatches(pattern: string, host: string): boolean {
  const h = host.toLowerCase();
  const p = pattern.toLowerCase();
  if (matchesPattern(p, h)) return true;
  const colon = h.lastIndexOf(':');
  return colon > 0 && !h.endsWith(']') && !p.includes(':') && matchesPattern(p, h.slice(0, colon));
}

function sourceMatches(s: PolicySource, a: Attrs): boolean {
  const l4 =
    pair(s.principals, s.notPrincipals, (p) => matchesPattern(p, a.principal)) &&
    pair(s.namespaces, s.notNamespaces, (p) => matchesPattern(p, a.namespace)) &&
    pair(s.ipBlocks, s.notIpBlocks, inCidr(a.src)) &&
    // remote.ip is the direct downstream without trusted proxies (Istio's default).
    pair(s.remoteIpBlocks, s.notRemoteIpBlocks, inCidr(a.src)) &&
    // No request principal without JWT validation.
    !(s.requestPrincipals && s.requestPrincipals.length > 0);
  return l4;
}

function operationMatches(o: PolicyOperation, a: Attrs): Tri {
  if (!pair(o.ports, o.notPorts, (p) => p === a.port)) return false;
  const usesHttp = Boolean(o.hosts || o.notHosts || o.methods || o.notMethods || o.paths || o.notPaths);
  if (!usesHttp) return true;
  const h = a.http;
  if (!h) return 'unknown';
  return (
    pair(o.hosts, o.notHosts, (p) => hostMatches(p, h.host)) &&
    pair(o.methods, o.notMethods, (p) => p === h.method) &&
    pair(o.paths, o.notPaths, (p) => pathMatches(p, h.path))
  );
}

function conditionMatches(w: PolicyCondition, a: Attrs): Tri {
  const header = conditionHeader(w.key);
  let test: (v: string) => boolean;
  if (header !== undefined) {
    if (!a.http) return 'unknown';
    const raw = a.http.headers[header];
    const value = Array.isArray(raw) ? raw.join(',') : raw;
    test = (v) => matchesPattern(v, value);
  } else {
    switch (w.key) {
      case 'source.ip':
      case 'remote.ip':
        test = inCidr(a.src);
        break;
      case 'destination.ip':
        test = inCidr(a.dst);
        break;
      case 'destination.port':
        test = (v) => Number(v) === a.port;
        break;
      case 'source.principal':
        test = (v) => matchesPattern(v, a.principal);
        break;
      case 'source.namespace':
        test = (v) => matchesPattern(v, a.namespace);
        break;
      default:
        // request.auth.* and connection.sni: nothing to compare with (no JWT; TLS ends at the client).
        test = () => false;
    }
  }
  return pair(w.values, w.notValues, test);
}

/** OR over elements (empty matches), with unknown elements resolved by the policy's action. */
function any<T>(items: readonly T[], m: (x: T) => Tri, unknownAs: boolean): boolean {
  if (items.length === 0) return true;
  return items.some((x) => {
    const r = m(x);
    return r === 'unknown' ? unknownAs : r;
  });
}

function ruleMatches(rule: PolicyRule, a: Attrs, isDeny: boolean): boolean {
  // Unknown (HTTP fields on a TCP connection): a DENY enforces the rest, an ALLOW never matches.
  return (
    any(rule.from, (s) => sourceMatches(s, a), isDeny) &&
    any(rule.to, (o) => operationMatches(o, a), isDeny) &&
    rule.when.every((w) => {
      const r = conditionMatches(w, a);
      return r === 'unknown' ? isDeny : r;
    })
  );
}

const matches = (p: WaypointPolicy, a: Attrs) => p.rules.some((r) => ruleMatches(r, a, p.action === 'DENY'));

/**
 * Decides a request (or, without `http`, a TCP connection) against the policies that apply.
 *
 * @example
 * const d = authorizeRequest(policiesFor(state, gw, svc), {
 *   sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep', sourceIp: '10.0.0.5',
 *   destinationIp: '10.96.0.10', destinationPort: 80,
 *   http: { host: 'echo', method: 'POST', path: '/admin/users', headers: {} },
 * });
 */
export function authorizeRequest(policies: readonly WaypointPolicy[], attrs: RequestAttrs): L7Decision {
  const full = attrs.sourcePrincipal;
  const a: Attrs = {
    principal: full.startsWith('spiffe://') ? full.slice('spiffe://'.length) : undefined,
    namespace: tryParseSpiffeId(full)?.namespace,
    src: parseIp(attrs.sourceIp),
    dst: parseIp(attrs.destinationIp),
    port: attrs.destinationPort,
    http: attrs.http,
  };
  const audit: string[] = [];
  let allows = 0;
  for (const p of policies) {
    if (p.action === 'ALLOW') {
      allows++;
      continue;
    }
    if (!matches(p, a)) continue;
    const key = `${p.namespace}/${p.name}`;
    if (p.action === 'DENY') return { allowed: false, policy: key, audit, reason: `denied by DENY policy ${key}` };
    audit.push(key);
  }
  if (allows === 0) return { allowed: true, audit, reason: 'allowed: no ALLOW policy applies' };
  for (const p of policies) {
    if (p.action === 'ALLOW' && matches(p, a)) {
      const key = `${p.namespace}/${p.name}`;
      return { allowed: true, policy: key, audit, reason: `allowed by ALLOW policy ${key}` };
    }
  }
  return { allowed: false, audit, reason: `denied: no ALLOW policy matched (${allows} apply)` };
}
