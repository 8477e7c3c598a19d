/**
 * The desired state from the control plane's discovery stream (docs/control-plane.md): the node
 * agent subscribes like its node's ztunnel (the ztunnel identity and the node token) and turns
 * every configuration it receives into a `DesiredState`. The control plane already applied
 * Istio's rules (namespace label, pod opt-out) when it chose a workload's (or a pending pod's)
 * protocol, so a pod on this node with protocol HBONE is a pod to enrol and one with TCP is not.
 *
 * This is the only place that reads the mesh model for the agent.
 */
import type { ConfigSource } from '../../core/model/source.js';
import { deepFreeze, ImmutableMap } from '../../core/model/freeze.js';
import type { MeshConfig } from '../../core/model/types.js';
import type { Logger } from '../../core/telemetry/log.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../../core/labels.js';
import type { DesiredNamespace, DesiredPod, DesiredState, DesiredStateSource } from './desired-state.js';

/**
 * The node's desired state in a mesh configuration.
 *
 * Pods: the workloads scheduled on `nodeName`, and the pods scheduled there that have no IP yet
 * (`pendingPods`, with their Kubernetes uid), each with the control plane's verdict (`ambient`).
 * The pending ones are what ends a CNI ADD's wait (reconciler.ts, ADD_WAIT_SECONDS): the control
 * plane watches pods and sees a scheduled pod before the kubelet creates its sandbox, while it
 * publishes the workload only once the pod has an IP, after the ADD returned. A waypoint pod is
 * never ambient here, whatever its namespace (decide.ts exempts it too).
 *
 * Namespaces: from `namespaces` (every namespace with its `istio.io/dataplane-mode`) when the
 * stream carries it. Otherwise (an older control plane, or a source without Namespace objects)
 * they are inferred: a namespace counts as ambient when one of its workloads (on any node) is
 * HBONE without asking for it with its own label, so its namespace must be labelled.
 *
 * @example
 * desiredFromMesh(cfg, 'node-a').pods // [{ namespace: 'apps', name: 'web-0', node: 'node-a', ambient: true, ... }]
 */
export function desiredFromMesh(cfg: MeshConfig, nodeName: string): DesiredState {
  const namespaces = new Map<string, DesiredNamespace>();
  if (cfg.namespaces && cfg.namespaces.length > 0) {
    for (const n of cfg.namespaces) namespaces.set(n.name, { name: n.name, labels: n.dataplaneMode !== undefined ? { [DATAPLANE_MODE_LABEL]: n.dataplaneMode } : {} });
  } else {
    for (const w of cfg.workloads) {
      const ownLabel = w.labels[DATAPLANE_MODE_LABEL];
      const fromNamespace = w.protocol === 'HBONE' && ownLabel !== DATAPLANE_MODE.ambient;
      if (fromNamespace) namespaces.set(w.namespace, { name: w.namespace, labels: { [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE.ambient } });
      // A TCP workload that did not opt out says its namespace is not ambient.
      else if (w.protocol !== 'HBONE' && ownLabel !== DATAPLANE_MODE.none && !namespaces.has(w.namespace)) namespaces.set(w.namespace, { name: w.namespace, labels: {} });
    }
  }
  const ambient = (protocol: string, labels: Readonly<Record<string, string>>) => protocol === 'HBONE' && labels[WAYPOINT_MANAGED_LABEL] !== WAYPOINT_MANAGED_VALUE;
  const pods: DesiredPod[] = cfg.workloads
    .filter((w) => w.node === nodeName)
    .map((w) => ({ namespace: w.namespace, name: w.name, node: w.node, labels: w.labels, ambient: ambient(w.protocol, w.labels), ips: w.ips }));
  // A pod is either pending or a workload (the control plane moves it when it gets an IP); should
  // both name it for a moment, the workload (with its IPs) wins.
  const listed = new Set(pods.map((p) => `${p.namespace}/${p.name}`));
  for (const p of cfg.pendingPods ?? []) {
    if (p.node !== nodeName || listed.has(`${p.namespace}/${p.name}`)) continue;
    pods.push({ namespace: p.namespace, name: p.name, ...(p.uid !== undefined ? { uid: p.uid } : {}), node: p.node, labels: p.labels, ambient: ambient(p.protocol, p.labels), ips: [] });
  }
  return deepFreeze({
    namespaces: new ImmutableMap([...namespaces].sort(([a], [b]) => a.localeCompare(b))),
    pods,
    peerAuthentications: cfg.peerAuthentications,
  });
}

export interface ControlPlaneDesiredStateSourceInputs {
  /** The discovery stream (`connectControlPlane(...).configSource`), or any ConfigSource. */
  readonly configSource: ConfigSource;
  readonly nodeName: string;
  /** For /state: e.g. `control-plane:10.0.0.5:15012`. */
  readonly describe: string;
  readonly logger: Logger;
  /** The stream's last error, while it lasts (DiscoverySource's stats). */
  readonly lastError?: () => string | undefined;
}

/**
 * @example
 * const cp = connectControlPlane({ address, nodeName, trustDomain, token: tokenFile, rootsPem, logger });
 * const source = new ControlPlaneDesiredStateSource({ configSource: cp.configSource, nodeName, describe: 'control-plane:10.0.0.5:15012', logger, lastError: () => cp.configSource.stats.lastError });
 */
export class ControlPlaneDesiredStateSource implements DesiredStateSource {
  readonly describe: string;
  readonly #in: ControlPlaneDesiredStateSourceInputs;
  #listener: ((s: DesiredState) => void) | undefined;

  constructor(inputs: ControlPlaneDesiredStateSourceInputs) {
    this.#in = inputs;
    this.describe = inputs.describe;
  }

  get lastError(): Error | undefined {
    const e = this.#in.lastError?.();
    return e ? new Error(`control plane: ${e}; keeping the last configuration received`) : undefined;
  }

  /** Resolves once the first configuration arrived (the stream's own start contract). */
  async start(listener: (state: DesiredState) => void): Promise<void> {
    // invariant: the agent starts its one desired-state source once; a second start would register a second listener.
    if (this.#listener) throw new Error('ControlPlaneDesiredStateSource.start was called twice');
    this.#listener = listener;
    await this.#in.configSource.start((cfg) => {
      const state = desiredFromMesh(cfg, this.#in.nodeName);
      this.#in.logger.debug({ pods: state.pods.length, ambientPods: state.pods.filter((p) => p.ambient).length }, 'desired state from the control plane');
      this.#listener?.(state);
    });
  }

  async close(): Promise<void> {
    this.#listener = undefined;
    await this.#in.configSource.close();
  }
}
