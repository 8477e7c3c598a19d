/**
 * The desired state from the control plane's discovery stream (docs/control-plane.md): the node
 * agent subscribes like its node's ztunnel (the ztunnel identity and the node token) and turns
 * every configuration it receives into a `DesiredState`. The control plane already applied
 * Istio's rules (namespace label, pod opt-out) when it chose a workload's protocol, so a workload
 * on this node with protocol HBONE is a pod to enrol and one with TCP is not.
 *
 * This is the only place that reads the mesh model for the agent.
 */
import type { ConfigSource } from '../../core/config/source.js';
import { deepFreeze, ImmutableMap } from '../../core/model/freeze.js';
import type { MeshConfig } from '../../core/model/types.js';
import type { Logger } from '../../core/telemetry/log.js';
import { DATAPLANE_MODE_LABEL } from '../api.js';
import type { DesiredNamespace, DesiredPod, DesiredState, DesiredStateSource } from './desired-state.js';

/**
 * The node's desired state in a mesh configuration.
 *
 * Pods: the workloads scheduled on `nodeName`, with the control plane's verdict (`ambient`).
 * Namespaces: the discovery stream carries no Namespace objects, so a namespace counts as ambient
 * when one of its workloads (on any node) is HBONE without asking for it with its own label: its
 * namespace must be labelled. That lets a CNI ADD for a new pod be enrolled at once, before the
 * control plane publishes the pod (which it does only once the pod has an IP, i.e. after ADD).
 *
 * @example
 * desiredFromMesh(cfg, 'node-a').pods // [{ namespace: 'apps', name: 'web-0', node: 'node-a', ambient: true, ... }]
 */
export function desiredFromMesh(cfg: MeshConfig, nodeName: string): DesiredState {
  const namespaces = new Map<string, DesiredNamespace>();
  for (const w of cfg.workloads) {
    const ownLabel = w.labels[DATAPLANE_MODE_LABEL];
    const fromNamespace = w.protocol === 'HBONE' && ownLabel !== 'ambient';
    if (fromNamespace) namespaces.set(w.namespace, { name: w.namespace, labels: { [DATAPLANE_MODE_LABEL]: 'ambient' } });
    // A TCP workload that did not opt out says its namespace is not ambient.
    else if (w.protocol !== 'HBONE' && ownLabel !== 'none' && !namespaces.has(w.namespace)) namespaces.set(w.namespace, { name: w.namespace, labels: {} });
  }
  const pods: DesiredPod[] = cfg.workloads
    .filter((w) => w.node === nodeName)
    .map((w) => ({ namespace: w.namespace, name: w.name, node: w.node, labels: w.labels, ambient: w.protocol === 'HBONE', ips: w.ips }));
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
