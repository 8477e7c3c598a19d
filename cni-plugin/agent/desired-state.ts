/**
 * What the node agent should make true: which namespaces are ambient, which pods exist (with
 * their labels), and the PeerAuthentications that decide STRICT. Two sources: a file
 * (desired-file.ts, the lab) and the control plane's discovery stream (desired-control-plane.ts).
 */
import type { PeerAuthentication } from '../../core/model/types.js';

export interface DesiredNamespace {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface DesiredPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  /** Absent: the pod is taken to be on this node (a single-node file). */
  readonly node?: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * Set when the source already decided whether the pod is in the mesh (the control plane's
   * workload protocol, HBONE or TCP): it then wins over the namespace rules of decide.ts.
   */
  readonly ambient?: boolean;
  /** The pod's cgroup when the source knows it; otherwise CNI ADD or the cgroup driver tells. */
  readonly cgroup?: string;
  readonly ips: readonly string[];
}

/** One complete, frozen snapshot. */
export interface DesiredState {
  readonly namespaces: ReadonlyMap<string, DesiredNamespace>;
  readonly pods: readonly DesiredPod[];
  readonly peerAuthentications: readonly PeerAuthentication[];
}

/**
 * A stream of desired-state snapshots, with the contract of core's `ConfigSource`: `start`
 * resolves once the first valid snapshot went to `listener` (rejects with a `ConfigError` if none
 * could be read); later snapshots arrive only when valid, an invalid one is logged and the last
 * good stays; after `close` resolves the listener is not called again.
 */
export interface DesiredStateSource {
  /** For /state and logs, e.g. `file:/etc/ambient/desired.yaml`. */
  readonly describe: string;
  /** Why the latest update was rejected, while it is. */
  readonly lastError: Error | undefined;
  start(listener: (state: DesiredState) => void): Promise<void>;
  close(): Promise<void>;
}

export const EMPTY_DESIRED_STATE: DesiredState = Object.freeze({
  namespaces: new Map(),
  pods: Object.freeze([]),
  peerAuthentications: Object.freeze([]),
});
