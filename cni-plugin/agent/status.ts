/**
 * What the agent reports: `GET /state` (api.ts `AgentState`, what `ambientctl` shows) and the pod
 * in a CNI ADD's answer. Read-only views of the pod table, ztunnel's hooks and the reconciler's
 * progress; nothing here changes state.
 */
import type { AgentState, PodMode, PodStatus } from '../api.js';
import type { PodTable, PodView } from './pod-table.js';
import type { ReconcilerInputs } from './reconciler.js';
import type { ZtunnelHooks } from './ztunnel-hooks.js';

/** One pod as /state shows it, or undefined when the agent does not know it. */
export function podStatus(pods: PodTable, key: string): PodStatus | undefined {
  const view = pods.views().find((v) => v.key === key);
  return view ? statusOf(pods, view) : undefined;
}

function statusOf(pods: PodTable, view: PodView): PodStatus {
  const key = view.key;
  const [namespace, name] = key.split('/') as [string, string];
  const cgroup = view.record?.cgroup ?? pods.resolved.get(key);
  const d = pods.decisions.get(key);
  const error = pods.errors.get(key);
  const a = cgroup ? pods.actual.get(cgroup) : undefined;
  // Enrolled is what the kernel carries, not only what was decided.
  let mode: PodMode = d?.mode ?? 'pending';
  if (mode === 'enrolled' && !a?.redirect) mode = 'pending';
  const uid = view.record?.uid ?? view.desired?.uid;
  return {
    namespace,
    name,
    ...(uid ? { uid } : {}),
    ...(view.desired?.node ? { node: view.desired.node } : {}),
    ...(view.record ? { containerId: view.record.containerId } : {}),
    ...(view.record?.netns ? { netns: view.record.netns } : {}),
    ips: view.record?.ips.length ? view.record.ips : (view.desired?.ips ?? []),
    ...(cgroup ? { cgroup } : {}),
    labels: view.desired?.labels ?? {},
    origin: view.record ? 'cni' : 'desired',
    mode,
    strict: d?.strict ?? false,
    reason: d?.reason ?? 'not reconciled yet',
    attached: { redirect: a?.redirect ?? false, strict: a?.strict ?? false },
    ...(error ? { error } : {}),
    ...(view.record?.enrolledAt ? { enrolledAt: view.record.enrolledAt } : {}),
    ...(view.record?.madeCgroups?.length ? { madeCgroups: view.record.madeCgroups } : {}),
    ...(view.record?.addWait ? { addWait: view.record.addWait } : {}),
  };
}

/** Everything /state is made of (the Reconciler gathers it). */
export interface StateSources {
  readonly in: ReconcilerInputs;
  readonly ready: boolean;
  readonly loaded: boolean;
  readonly startedAt: string;
  readonly pods: PodTable;
  readonly ztunnel: ZtunnelHooks;
  readonly desiredLoadedAt: string | undefined;
  readonly desiredError: string | undefined;
  readonly waitingAdds: readonly string[];
  readonly lastResync: AgentState['lastResync'];
}

export function agentState(s: StateSources): AgentState {
  const rc = s.in.redirectConfig;
  return {
    node: s.in.nodeName,
    ready: s.ready,
    startedAt: s.startedAt,
    bpf: {
      pinDir: s.in.pinDir,
      loaded: s.loaded,
      redirect: { ztunnelIp: rc.ztunnelIp, outboundPort: rc.outboundPort, nodeIps: rc.nodeIps, excludeCidrs: rc.excludeCidrs, excludePorts: rc.excludePorts },
    },
    ztunnel: ztunnelState(s.ztunnel, s.in.ztunnelSource),
    desired: {
      source: s.in.desiredSource,
      ...(s.desiredLoadedAt ? { loadedAt: s.desiredLoadedAt } : {}),
      ...(s.desiredError ? { error: s.desiredError } : {}),
      namespaces: s.pods.desired.namespaces.size,
      pods: s.pods.localDesiredPods().length,
      addWaitSeconds: (s.in.addWaitMs ?? 0) / 1000,
      waitingAdds: [...s.waitingAdds],
    },
    cgroup: {
      root: s.in.cgroupRoot,
      resolver: s.in.resolver.describe,
      ...(s.in.cgroupLayout?.kubeletRoot ? { kubeletRoot: s.in.cgroupLayout.kubeletRoot } : {}),
      v1Roots: s.in.cgroupLayout?.v1Roots ?? [],
      pendingRemoval: [...s.pods.cleanup].sort(),
    },
    pods: s.pods
      .views()
      .map((v) => statusOf(s.pods, v))
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)),
    ...(s.lastResync ? { lastResync: s.lastResync } : {}),
  };
}

function ztunnelState(hooks: ZtunnelHooks, source: string): AgentState['ztunnel'] {
  const cgroups = hooks.cgroups.map((cgroup) => ({ cgroup, ...(hooks.statusOf(cgroup) ?? { attached: false }) }));
  const errors = [...cgroups.flatMap((c) => (c.error ? [c.error] : [])), ...hooks.problems];
  if (cgroups.length === 0) errors.unshift(`no ztunnel found (${source}); is ztunnel running and listening?`);
  return {
    cgroup: source,
    attached: cgroups.length > 0 && cgroups.every((c) => c.attached),
    ...(errors.length > 0 ? { error: errors.join('; ') } : {}),
    cgroups,
  };
}
