/**
 * The `spec` of an Istio AuthorizationPolicy attached with `targetRefs` → `WaypointPolicy`.
 *
 * Such a policy is enforced by waypoints with full HTTP semantics (methods, paths, hosts,
 * headers ...), never by ztunnel, so unlike the L4 conversion (`authorization-policy.ts`) it keeps every
 * HTTP field and accepts AUDIT. CUSTOM (external authorization) is refused with a reason.
 *
 * Callers pass specs whose structure the upstream schema has judged (`schema.ts`: `parseObject`,
 * `specProblems` for the standalone file and the discovery wire): types, required fields and enums
 * are not checked again here.
 */
import { WAYPOINT_CLASS } from '../labels.js';
import { parseCidr } from '../model/ip.js';
import { Problems, conditionKeyField, describe, field, keyPath, list, listField, mapping, port, quote, string, wrappedListField } from '../validation/check.js';
import {
  conditionKeyProblem,
  conditionValueProblem,
  namespacePatternProblem,
  policyHostProblem,
  policyMethodProblem,
  principalProblem,
  requestPrincipalProblem,
} from './authorization-policy.js';
import { CLAIM_KEY_RE, HEADER_KEY_RE, WAYPOINT_CONDITION_KEYS } from '../authz/evaluate.js';
import { policyPathProblem } from '../authz/match.js';
import type { PolicyCondition, PolicyOperation, PolicyRule, PolicySource, PolicyTargetRef, WaypointPolicy } from '../model/types.js';

const SPEC_KEYS = ['targetRefs', 'action', 'rules'];
const TARGET_KEYS = ['group', 'kind', 'name'];
const RULE_KEYS = ['from', 'to', 'when'];
const SOURCE_KEYS = [
  'principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks',
  'requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts',
];
const OPERATION_KEYS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];
const SOURCE_L7 = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_L7 = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
const CONDITION_KEYS = ['key', 'values', 'notValues'];
const ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;
/** The kinds a waypoint policy may target (the schema allows any kind name). */
const TARGET_KINDS = ['Gateway', 'Service', 'GatewayClass'] as const;
const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** The GatewayClass of waypoints (core/labels.ts); a policy in the root namespace targeting it applies to every waypoint. */
export const WAYPOINT_GATEWAY_CLASS = WAYPOINT_CLASS;

/**
 * Converts targetRefs AuthorizationPolicies, recording problems in `p`.
 *
 * @example
 * const p = new Problems();
 * const wp = new WaypointPolicyConverter(p, 'istio-system').policy('deny-admin', 'default', spec, 'spec');
 */
export class WaypointPolicyConverter {
  constructor(
    readonly p: Problems,
    private readonly rootNamespace: string,
  ) {}

  policy(name: string, namespace: string, spec: Record<string, unknown>, specPath: string): WaypointPolicy | undefined {
    const before = this.p.size;
    if (Object.hasOwn(spec, 'selector')) {
      this.p.add(keyPath(specPath, 'selector'), 'cannot be combined with targetRefs (as in Istio): a policy applies to workloads or to waypoints');
    }
    if (Object.hasOwn(spec, 'targetRef')) this.p.add(keyPath(specPath, 'targetRef'), 'cannot be combined with targetRefs; list every target under targetRefs');
    if (Object.hasOwn(spec, 'provider')) this.p.add(keyPath(specPath, 'provider'), 'belongs to the CUSTOM action, which waypoints do not support yet');
    const rest = Object.fromEntries(Object.entries(spec).filter(([k]) => !['selector', 'targetRef', 'provider'].includes(k)));
    mapping(this.p, specPath, rest, SPEC_KEYS);
    const targetRefs = listField(this.p, specPath, spec, 'targetRefs', (e, eq) => policyTargetRef(this.p, e, eq, namespace, this.rootNamespace), {
      required: true,
      expected: 'a list of {kind, group, name}',
      nonEmpty: 'name the waypoint Gateway or the Service',
    });
    const action = (spec.action as (typeof ACTIONS)[number] | null | undefined) ?? 'ALLOW';
    if (action === 'CUSTOM') this.p.add(keyPath(specPath, 'action'), 'CUSTOM (external authorization) is not supported by waypoints yet; use ALLOW, DENY or AUDIT');
    const hasRules = Object.hasOwn(spec, 'rules') && spec.rules !== null;
    if (action === 'DENY' && !hasRules) {
      this.p.add(keyPath(specPath, 'rules'), 'a DENY policy without rules never matches; add rules, or rules: [{}] to deny every request');
    }
    const rules = field(this.p, specPath, spec, 'rules', (x, q) => list(this.p, q, x, (r, rq) => this.rule(r, rq, namespace))) ?? [];
    if (this.p.size > before || !targetRefs || action === 'CUSTOM') return undefined;
    return { name, namespace, targetRefs, action, rules };
  }

  private rule(v: unknown, path: string, namespace: string): PolicyRule | undefined {
    const m = mapping(this.p, path, v, RULE_KEYS, 'a mapping {from, to, when}');
    if (!m) return undefined;
    const before = this.p.size;
    const from = wrappedListField(this.p, path, m, 'from', 'source', (x, q) => this.source(x, q, namespace), {
      nonEmpty: 'omit `from` to match any source',
    });
    const to = wrappedListField(this.p, path, m, 'to', 'operation', (x, q) => this.operation(x, q), {
      nonEmpty: 'omit `to` to match any operation',
    });
    const when = field(this.p, path, m, 'when', (x, q) => list(this.p, q, x, (c, cq) => this.condition(c, cq))) ?? [];
    if (this.p.size > before) return undefined;
    return { from, to, when };
  }

  private strings(m: Record<string, unknown>, path: string, k: string, check?: (s: string) => string | undefined): string[] | undefined {
    return field(this.p, path, m, k, (x, q) =>
      list(this.p, q, x, (e, eq) => string(this.p, eq, e, 'a non-empty string', check), { nonEmpty: `omit ${k} instead` }),
    );
  }

  private source(v: unknown, path: string, namespace: string): PolicySource | undefined {
    const m = mapping(this.p, path, v, SOURCE_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    if (Object.keys(m).length === 0) this.p.add(path, `must not be empty; set at least one of ${SOURCE_KEYS.join(', ')}`);
    const cidr = (s: string) => (parseCidr(s) ? undefined : `${JSON.stringify(s)} is not an IP address or CIDR block`);
    const out: Record<string, unknown> = {};
    // The same checks as the L4 parser's (authorization-policy.ts): both layers accept the same identities.
    for (const k of ['principals', 'notPrincipals']) out[k] = this.strings(m, path, k, principalProblem);
    for (const k of ['namespaces', 'notNamespaces']) out[k] = this.strings(m, path, k, namespacePatternProblem);
    for (const k of ['requestPrincipals', 'notRequestPrincipals']) out[k] = this.strings(m, path, k, requestPrincipalProblem);
    for (const k of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']) out[k] = this.strings(m, path, k, cidr);
    for (const [k, target] of [['serviceAccounts', 'principals'], ['notServiceAccounts', 'notPrincipals']] as const) {
      const sas = this.strings(m, path, k, (s) => (/^([a-z0-9-]+\/)?[a-z0-9.-]+$/.test(s) ? undefined : `${JSON.stringify(s)} is not "<namespace>/<name>" or "<name>"`));
      if (!sas) continue;
      if (out[target]) this.p.add(keyPath(path, k), `cannot be combined with ${target}`);
      // Istio matches serviceAccounts in any trust domain: the principal suffix pattern does that.
      out[target] = sas.map((s) => (s.includes('/') ? `*/ns/${s.replace('/', '/sa/')}` : `*/ns/${namespace}/sa/${s}`));
    }
    if (this.p.size > before) return undefined;
    const present = Object.fromEntries(Object.entries(out).filter(([, val]) => val !== undefined));
    return { ...present, hasL7Fields: SOURCE_L7.some((k) => k in present) } as PolicySource;
  }

  private operation(v: unknown, path: string): PolicyOperation | undefined {
    const m = mapping(this.p, path, v, OPERATION_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    if (Object.keys(m).length === 0) this.p.add(path, `must not be empty; set at least one of ${OPERATION_KEYS.join(', ')}`);
    const out: Record<string, unknown> = {};
    for (const k of ['ports', 'notPorts']) {
      out[k] = field(this.p, path, m, k, (x, q) => list(this.p, q, x, (e, eq) => port(this.p, eq, e, true), { nonEmpty: `omit ${k} instead` }));
    }
    for (const k of ['paths', 'notPaths']) out[k] = this.strings(m, path, k, policyPathProblem);
    for (const k of ['hosts', 'notHosts']) out[k] = this.strings(m, path, k, policyHostProblem);
    for (const k of ['methods', 'notMethods']) out[k] = this.strings(m, path, k, policyMethodProblem);
    if (this.p.size > before) return undefined;
    const present = Object.fromEntries(Object.entries(out).filter(([, val]) => val !== undefined));
    return { ...present, hasL7Fields: OPERATION_L7.some((k) => k in present) } as PolicyOperation;
  }

  private condition(v: unknown, path: string): PolicyCondition | undefined {
    const m = mapping(this.p, path, v, CONDITION_KEYS, 'a mapping {key, values, notValues}');
    if (!m) return undefined;
    const before = this.p.size;
    const keyTooLong = typeof m.key === 'string' ? conditionKeyProblem(m.key) : undefined;
    if (keyTooLong) {
      this.p.add(keyPath(path, 'key'), keyTooLong);
      return undefined;
    }
    const key = conditionKeyField(
      this.p,
      path,
      m,
      (s) => WAYPOINT_CONDITION_KEYS.has(s) || HEADER_KEY_RE.test(s) || CLAIM_KEY_RE.test(s),
      `request.headers[<name>], request.auth.claims[<name>] (nested: [<a>][<b>]), ${[...WAYPOINT_CONDITION_KEYS].join(', ')}`,
    );
    // Values of identity and address keys are checked as the same fields of a source are.
    const check =
      key === 'source.principal'
        ? principalProblem
        : key === 'source.namespace'
          ? namespacePatternProblem
          : key === 'request.auth.principal'
            ? requestPrincipalProblem
            : key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip'
              ? (s: string) => (parseCidr(s) ? undefined : `${quote(s)} is not an IP address or CIDR block`)
              : conditionValueProblem;
    const values = this.strings(m, path, 'values', check);
    const notValues = this.strings(m, path, 'notValues', check);
    if (key !== undefined && !values && !notValues) this.p.add(path, `set values or notValues for key ${key}`);
    if (this.p.size > before || key === undefined) return undefined;
    return { key, ...(values ? { values } : {}), ...(notValues ? { notValues } : {}) };
  }
}

/**
 * One `targetRefs` entry of a policy that attaches to waypoints (AuthorizationPolicy,
 * RequestAuthentication): the waypoint's Gateway, a Service, or the `istio-waypoint` GatewayClass
 * from the root namespace; undefined (with problems in `p`) otherwise.
 */
export function policyTargetRef(p: Problems, v: unknown, path: string, namespace: string, rootNamespace: string): PolicyTargetRef | undefined {
  const m = mapping(p, path, v, TARGET_KEYS, 'a mapping {kind, group, name}');
  if (!m) return undefined;
  const kind = field(p, path, m, 'kind', (x, q) =>
    (TARGET_KINDS as readonly unknown[]).includes(x)
      ? (x as (typeof TARGET_KINDS)[number])
      : (p.add(q, `${describe(x)} is not supported by the mesh; expected one of ${TARGET_KINDS.join(', ')}`), undefined),
  );
  const group = (m.group as string | null | undefined) ?? '';
  const name = field(p, path, m, 'name', (x, q) => string(p, q, x, 'a name'));
  if (kind === 'Service' && group !== '' && group !== 'core') p.add(keyPath(path, 'group'), 'a Service target has group ""');
  if ((kind === 'Gateway' || kind === 'GatewayClass') && group !== GATEWAY_GROUP) {
    p.add(keyPath(path, 'group'), `a ${kind} target has group ${GATEWAY_GROUP}`);
  }
  if (kind === 'GatewayClass') {
    if (name !== undefined && name !== WAYPOINT_GATEWAY_CLASS) p.add(keyPath(path, 'name'), `only GatewayClass ${WAYPOINT_GATEWAY_CLASS} is served`);
    if (namespace !== rootNamespace) {
      p.add(path, `a GatewayClass target is only honoured in the root namespace ${rootNamespace} (as in Istio)`);
    }
  }
  if (kind === undefined || name === undefined) return undefined;
  return { kind, name };
}
