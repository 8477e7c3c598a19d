/**
 * What the dashboard knows about the mesh besides its metrics: which pods make which workload,
 * which pods are waypoints, who is in the ambient mesh, the routes that split traffic, and the
 * policies and routes with their statuses. The lab gives all of it (lab-source.ts); without it
 * the graph still draws from metrics alone, with pod names as workloads.
 */
export interface RouteSplit {
  /** `HTTPRoute/demo/backend-canary`. */
  readonly route: string;
  readonly namespace: string;
  /** The parent Service the route attaches to. */
  readonly parent: string;
  readonly backends: ReadonlyArray<{ readonly service: string; readonly weight: number }>;
}

export interface PolicyRow {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** `action DENY`, `mode STRICT`, `parent Service backend`, ... */
  readonly summary: string;
  /** What it selects or attaches to. */
  readonly selects: string;
  /** `Accepted`, the conditions it carries, or the control plane's problems. */
  readonly status: string;
  readonly problems: readonly string[];
}

export interface Topology {
  /** The workload (Deployment, else the pod itself) a pod belongs to. */
  workloadOf(namespace: string, pod: string): string;
  /** The waypoint (Gateway name) a pod runs, if it is a waypoint's pod. */
  waypointOf(namespace: string, pod: string): string | undefined;
  /** True/false when enrolment is known, undefined otherwise. */
  ambient(namespace: string, workload: string): boolean | undefined;
  /** The node a workload's pods run on (comma-joined), for details. */
  nodesOf(namespace: string, workload: string): string;
  readonly splits: readonly RouteSplit[];
  readonly policies: readonly PolicyRow[];
  /** Access-log files (ztunnels' and waypoints' logs, with the waypoint's node id), for an edge's recent lines. */
  readonly accessLogs: ReadonlyArray<{ readonly file: string; readonly waypoint?: string }>;
}

/** The graph from metrics alone: pod names are workloads, nothing known about enrolment or routes. */
export const NO_TOPOLOGY: Topology = {
  workloadOf: (_ns, pod) => pod,
  waypointOf: () => undefined,
  ambient: () => undefined,
  nodesOf: () => '',
  splits: [],
  policies: [],
  accessLogs: [],
};
