/**
 * L4 authorization with Istio's AuthorizationPolicy semantics, as ztunnel enforces them.
 *
 * Decision order (Istio): any matching DENY policy denies; otherwise, with no ALLOW policy the
 * connection is allowed; otherwise it is allowed only if some ALLOW policy matches.
 *
 * A policy matches when any of its rules matches; a rule matches when its `from`, `to` and `when`
 * all match; `from`/`to` match when any element matches (an empty list matches everything); every
 * `when` condition must match.
 *
 * Attributes an L4 proxy cannot see (HTTP methods, paths, request principals ...) always make the
 * result stricter, never looser:
 * - ALLOW: a rule that uses any of them matches nothing (istiod drops such rules for ztunnel).
 * - DENY: they are ignored and the rest of the rule is enforced, so the rule denies more than
 *   written. A `from`/`to` element holding only HTTP fields therefore matches every connection,
 *   and an HTTP-only `when` condition always holds. (Current Istio ztunnel instead turns such
 *   elements into empty matches that never fire, which makes those DENY policies no-ops;
 *   istio/istio#61126. We fail closed on purpose.)
 *
 * Identity: `principals`/`namespaces` (and the `source.principal`/`source.namespace` conditions)
 * need an authenticated peer. A plaintext connection matches none of them, and so it does match
 * `notPrincipals`/`notNamespaces`, as in Istio.
 */
import { parseCidr, parseIp, cidrContains, type Cidr, type IpAddress } from './ip.js';
import { tryParseSpiffeId } from '../identity/spiffe.js';
import type {
  AuthorizationPolicy,
  PolicyCondition,
  PolicyOperation,
  PolicyRule,
  PolicySource,
} from './types.js';

/** What the L4 proxy knows about a connection when it authorizes it. */
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

/** The outcome of `authorize`. */
export interface AuthzDecision {
  readonly allowed: boolean;
  /** `namespace/name` of the policy that decided; absent when no policy did (default allow/deny). */
  readonly policy?: string;
  /** Lowercase, human-readable reason for logs and access logs. */
  readonly reason: string;
}

/** `when` keys an L4 proxy can evaluate. Any other key is an HTTP attribute. */
export const L4_CONDITION_KEYS: ReadonlySet<string> = new Set([
  'source.ip',
  'source.namespace',
  'source.principal',
  'destination.ip',
  'destination.port',
]);

/** The connection with its attributes parsed once per `authorize` call. */
interface Conn {
  /** The principal without `spiffe://`, as Istio policies write it; undefined for plaintext. */
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
  readonly src: IpAddress | undefined;
  readonly dst: IpAddress | undefined;
  readonly port: number;
}

type Matcher = (c: Conn) => boolean;

interface CompiledRule {
  /** True for an ALLOW rule that uses HTTP attributes: it matches nothing at L4. */
  readonly never: boolean;
  readonly from: readonly Matcher[];
  readonly to: readonly Matcher[];
  readonly when: readonly Matcher[];
}

interface CompiledPolicy {
  readonly key: string;
  readonly rules: readonly CompiledRule[];
}

const SPIFFE_SCHEME = 'spiffe://';

/**
 * Istio string match: `*` = any non-empty value, `*x` = suffix, `x*` = prefix, else exact.
 * The order of the checks is Istio's (`*x*` is a suffix match on `x*`).
 */
export function matchesPattern(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (pattern === '*') return value !== '';
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return pattern === value;
}

/**
 * Positive/negative pair: matches when (no positives or any positive matches) and no negative
 * matches. Absent and empty lists mean "not constrained".
 */
function pair<T>(
  pos: readonly T[] | undefined,
  neg: readonly T[] | undefined,
  test: (item: T, c: Conn) => boolean,
): Matcher | undefined {
  const p = pos && pos.length > 0 ? pos : undefined;
  const n = neg && neg.length > 0 ? neg : undefined;
  if (!p && !n) return undefined;
  return (c) => (!p || p.some((x) => test(x, c))) && (!n || !n.some((x) => test(x, c)));
}

// Entries that do not parse (only possible from a source that skipped validation) become
// undefined and match nothing: an unreadable ipBlock must not widen an ALLOW.
const cidrs = (list: readonly string[] | undefined): (Cidr | undefined)[] | undefined =>
  list?.map((s) => parseCidr(s));
const ports = (list: readonly (string | number)[] | undefined): number[] | undefined =>
  list?.map((s) => (typeof s === 'number' ? s : /^\d+$/.test(s) ? Number(s) : -1));

const inCidr = (ip: IpAddress | undefined) => (cidr: Cidr | undefined) =>
  cidr !== undefined && ip !== undefined && cidrContains(cidr, ip);

function all(matchers: (Matcher | undefined)[]): Matcher {
  const ms = matchers.filter((m): m is Matcher => m !== undefined);
  // An element with no L4 constraint left matches everything (see the module comment).
  if (ms.length === 0) return () => true;
  return (c) => ms.every((m) => m(c));
}

function compileSource(s: PolicySource): Matcher {
  return all([
    pair(s.principals, s.notPrincipals, (p, c) => matchesPattern(p, c.principal)),
    pair(s.namespaces, s.notNamespaces, (p, c) => matchesPattern(p, c.namespace)),
    pair(cidrs(s.ipBlocks), cidrs(s.notIpBlocks), (b, c) => inCidr(c.src)(b)),
  ]);
}

function compileOperation(o: PolicyOperation): Matcher {
  return all([pair(o.ports, o.notPorts, (p, c) => p === c.port)]);
}

/** Compiles an L4 condition; returns undefined for HTTP keys (the caller decides what they mean). */
function compileCondition(w: PolicyCondition): Matcher | undefined {
  switch (w.key) {
    case 'source.ip':
      return pair(cidrs(w.values), cidrs(w.notValues), (b, c) => inCidr(c.src)(b)) ?? (() => true);
    case 'destination.ip':
      return pair(cidrs(w.values), cidrs(w.notValues), (b, c) => inCidr(c.dst)(b)) ?? (() => true);
    case 'destination.port':
      return pair(ports(w.values), ports(w.notValues), (p, c) => p === c.port) ?? (() => true);
    case 'source.principal':
      return pair(w.values, w.notValues, (p, c) => matchesPattern(p, c.principal)) ?? (() => true);
    case 'source.namespace':
      return pair(w.values, w.notValues, (p, c) => matchesPattern(p, c.namespace)) ?? (() => true);
    default:
      return undefined;
  }
}

function compileRule(rule: PolicyRule, action: AuthorizationPolicy['action']): CompiledRule {
  const usesHttp =
    rule.from.some((s) => s.hasL7Fields) ||
    rule.to.some((o) => o.hasL7Fields) ||
    rule.when.some((w) => !L4_CONDITION_KEYS.has(w.key));
  if (action === 'ALLOW' && usesHttp) return { never: true, from: [], to: [], when: [] };
  return {
    never: false,
    from: rule.from.map(compileSource),
    to: rule.to.map(compileOperation),
    // For DENY, HTTP-only conditions are dropped: the rest of the rule still denies.
    when: rule.when.map(compileCondition).filter((m): m is Matcher => m !== undefined),
  };
}

// Policies are frozen snapshots, so a compiled form keyed by object identity never goes stale.
const compiledCache = new WeakMap<AuthorizationPolicy, CompiledPolicy>();

function compile(policy: AuthorizationPolicy): CompiledPolicy {
  let c = compiledCache.get(policy);
  if (!c) {
    c = {
      key: `${policy.namespace}/${policy.name}`,
      rules: policy.rules.map((r) => compileRule(r, policy.action)),
    };
    compiledCache.set(policy, c);
  }
  return c;
}

function ruleMatches(rule: CompiledRule, c: Conn): boolean {
  if (rule.never) return false;
  if (rule.from.length > 0 && !rule.from.some((m) => m(c))) return false;
  if (rule.to.length > 0 && !rule.to.some((m) => m(c))) return false;
  return rule.when.every((m) => m(c));
}

function policyMatches(p: CompiledPolicy, c: Conn): boolean {
  // No rules: matches nothing (an ALLOW policy without rules is Istio's "allow-nothing").
  return p.rules.some((r) => ruleMatches(r, c));
}

function toConn(a: ConnectionAttrs): Conn {
  const full = a.sourcePrincipal;
  const principal = full?.startsWith(SPIFFE_SCHEME) ? full.slice(SPIFFE_SCHEME.length) : undefined;
  const namespace =
    principal === undefined ? undefined : (a.sourceNamespace ?? tryParseSpiffeId(full as string)?.namespace);
  return {
    principal,
    namespace,
    src: parseIp(a.sourceIp),
    dst: parseIp(a.destinationIp),
    port: a.destinationPort,
  };
}

/**
 * Decides whether a connection may reach a workload. `policies` are those that apply to the
 * destination workload (`MeshState.policiesFor`); order does not matter.
 *
 * @example
 * const d = authorize(state.policiesFor(dst), {
 *   sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep',
 *   sourceIp: '10.0.0.5', destinationIp: '10.0.0.9', destinationPort: 8080,
 * });
 * if (!d.allowed) respond(401, d.reason);
 */
export function authorize(policies: readonly AuthorizationPolicy[], conn: ConnectionAttrs): AuthzDecision {
  const c = toConn(conn);
  let allowPolicies = 0;
  for (const policy of policies) {
    if (policy.action !== 'DENY') {
      allowPolicies++;
      continue;
    }
    const p = compile(policy);
    if (policyMatches(p, c)) {
      return { allowed: false, policy: p.key, reason: `denied by DENY policy ${p.key}` };
    }
  }
  if (allowPolicies === 0) return { allowed: true, reason: 'allowed: no ALLOW policy applies' };
  for (const policy of policies) {
    if (policy.action !== 'ALLOW') continue;
    const p = compile(policy);
    if (policyMatches(p, c)) return { allowed: true, policy: p.key, reason: `allowed by ALLOW policy ${p.key}` };
  }
  return {
    allowed: false,
    reason: `denied: no ALLOW policy matched (${allowPolicies} ${allowPolicies === 1 ? 'applies' : 'apply'} to the destination)`,
  };
}
