/**
 * Whether a pod is redirected to ztunnel, and whether its STRICT ingress filter is on: Istio
 * ambient's rules, as a pure function of the desired state.
 */
import { effectiveMtlsMode } from '../../core/model/peer-auth.js';
import { policyAppliesTo } from '../../core/model/scope.js';
import type { PeerAuthentication, Workload } from '../../core/model/types.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../../core/labels.js';
import { isAncestorOrSelf } from './cgroup.js';
import type { DesiredNamespace } from './desired-state.js';

export interface PodFacts {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly cgroup?: string;
  /** The source's own verdict (the control plane's HBONE/TCP); wins over the namespace rules. */
  readonly ambient?: boolean;
}

export interface DecideContext {
  readonly namespaces: ReadonlyMap<string, DesiredNamespace>;
  readonly peerAuthentications: readonly PeerAuthentication[];
  readonly exemptNamespaces: readonly string[];
  /** Cgroups of the mesh's own processes (ztunnel, the agent): never redirected. */
  readonly protectedCgroups: readonly string[];
  readonly rootNamespace: string;
}

export interface Decision {
  readonly mode: 'enrolled' | 'not-ambient' | 'exempt';
  readonly strict: boolean;
  readonly reason: string;
}

/**
 * @example
 * decide({ namespace: 'apps', name: 'web', labels: {} }, ctx) // => { mode: 'enrolled', strict: false, reason: 'namespace apps is ambient' }
 */
export function decide(pod: PodFacts, ctx: DecideContext): Decision {
  if (ctx.exemptNamespaces.includes(pod.namespace)) {
    return { mode: 'exempt', strict: false, reason: `namespace ${pod.namespace} is exempt (EXEMPT_NAMESPACES)` };
  }
  if (pod.labels[WAYPOINT_MANAGED_LABEL] === WAYPOINT_MANAGED_VALUE) {
    // A waypoint speaks HBONE itself: redirecting it into ztunnel would tunnel its tunnels (Istio's rule too).
    return { mode: 'exempt', strict: false, reason: `a waypoint (${WAYPOINT_MANAGED_LABEL}=${WAYPOINT_MANAGED_VALUE}) is never enrolled` };
  }
  if (pod.cgroup) {
    // Redirecting ztunnel's own connections (or the agent's) would loop them into ztunnel.
    const mine = ctx.protectedCgroups.find((c) => isAncestorOrSelf(pod.cgroup!, c) || isAncestorOrSelf(c, pod.cgroup!));
    if (mine) return { mode: 'exempt', strict: false, reason: `its cgroup ${pod.cgroup} holds the mesh's own processes (${mine})` };
  }
  if (pod.ambient === false) {
    return { mode: 'not-ambient', strict: false, reason: 'the control plane does not mesh it (its namespace is not ambient, or it opted out)' };
  }
  if (pod.ambient === true) {
    const strict = strictFor(pod, ctx);
    return { mode: 'enrolled', strict: strict.strict, reason: `the control plane meshes it (HBONE)${strict.note ? `; ${strict.note}` : strict.strict ? '; peer authentication STRICT' : ''}` };
  }
  const nsMode = ctx.namespaces.get(pod.namespace)?.labels[DATAPLANE_MODE_LABEL];
  if (nsMode !== DATAPLANE_MODE.ambient) {
    return {
      mode: 'not-ambient',
      strict: false,
      reason: ctx.namespaces.has(pod.namespace)
        ? `namespace ${pod.namespace} is not labelled ${DATAPLANE_MODE_LABEL}=ambient`
        : `namespace ${pod.namespace} is not in the desired state`,
    };
  }
  if (pod.labels[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE.none) {
    return { mode: 'not-ambient', strict: false, reason: `the pod opted out (${DATAPLANE_MODE_LABEL}=none)` };
  }
  const strict = strictFor(pod, ctx);
  return { mode: 'enrolled', strict: strict.strict, reason: `namespace ${pod.namespace} is ambient${strict.note ? `; ${strict.note}` : strict.strict ? '; peer authentication STRICT' : ''}` };
}

/**
 * The kernel filter is per pod, not per port: it goes on when the pod's mode is STRICT on every
 * port. Port-level exceptions leave it off (ztunnel still refuses plaintext that it carries
 * itself), and the reason says so.
 */
function strictFor(pod: PodFacts, ctx: DecideContext): { strict: boolean; note?: string } {
  const workload: Workload = {
    uid: `${pod.namespace}/${pod.name}`,
    name: pod.name,
    namespace: pod.namespace,
    serviceAccount: '',
    trustDomain: '',
    node: '',
    ips: [],
    protocol: 'HBONE',
    labels: pod.labels,
    healthy: true,
  };
  const opts = { rootNamespace: ctx.rootNamespace };
  const base = effectiveMtlsMode(ctx.peerAuthentications, workload, 0, opts);
  const ports = new Set<number>();
  for (const pa of ctx.peerAuthentications) {
    if (pa.scope === 'workload' && policyAppliesTo(pa, workload, ctx.rootNamespace)) for (const p of pa.portLevel.keys()) ports.add(p);
  }
  const differing = [...ports].filter((p) => (effectiveMtlsMode(ctx.peerAuthentications, workload, p, opts) === 'STRICT') !== (base === 'STRICT')).sort((a, b) => a - b);
  if (base === 'STRICT' && differing.length === 0) return { strict: true };
  if (base === 'STRICT') return { strict: false, note: `STRICT with port-level exceptions (${differing.join(', ')}): the kernel filter is per pod, so it stays off` };
  if (differing.length > 0) return { strict: false, note: `port-level STRICT (${differing.join(', ')}) is not enforced in the kernel: the filter is per pod` };
  return { strict: false };
}
