/**
 * What `waypoint`, `ztunnel-config` and `version` need from where the mesh runs, behind one
 * interface with two implementations: a Kubernetes cluster (`cluster-backend.ts`) and the lab on
 * this machine (`lab-backend.ts`). `target.ts` decides which one a command talks to.
 */

/** A Kubernetes object as JSON (Gateway, Namespace, Pod): the wire shape, read in the command modules. */
export type KubeObject = Record<string, unknown>;

export interface NamespaceInfo {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** One ztunnel: the node it serves and how to name it to the operator (`ztunnel-x7k2p`, `ztunnel/node-1`). */
export interface ZtunnelRef {
  readonly node: string;
  readonly name: string;
  /** Cluster: the pod's namespace. */
  readonly namespace?: string;
}

/** A Gateway API status condition (`Programmed`, `Accepted`). */
export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
}

/** A mesh component and the version it reports (or why none is known). */
export interface ComponentVersion {
  readonly component: 'control-plane' | 'ztunnel' | 'waypoint';
  readonly name: string;
  readonly version: string;
}

export type ApplyResult = 'created' | 'configured' | 'unchanged';

export interface MeshBackend {
  readonly kind: 'lab' | 'cluster';
  /** Where commands act, for messages: `lab amb-lab (/run/amb-lab)`, `cluster https://... (context kind)`. */
  readonly where: string;
  /** The namespace commands use when `-n` is not given (the kubeconfig context's, else `default`). */
  readonly defaultNamespace: string;
  namespace(name: string): Promise<NamespaceInfo | undefined>;
  /** Sets (`value` a string) or removes (`null`) one label of a namespace. */
  labelNamespace(name: string, key: string, value: string | null): Promise<void>;
  /** Gateways of every class in `namespace`, or in all namespaces when undefined. */
  gateways(namespace: string | undefined): Promise<KubeObject[]>;
  /**
   * Creates the Gateway, or updates its labels and spec. `ownedLabels` are the label keys the
   * caller manages: one absent from `gateway` is removed from the stored object, as server-side
   * apply removes a field its manager stopped setting; other labels are left alone.
   */
  applyGateway(gateway: KubeObject, ownedLabels: readonly string[]): Promise<ApplyResult>;
  /** False when it did not exist. */
  deleteGateway(namespace: string, name: string): Promise<boolean>;
  /** The waypoint's `Programmed` condition: the Gateway's status in a cluster; in the lab, whether its waypoint runs. */
  programmed(gateway: KubeObject): Promise<Condition>;
  /** The ztunnels, sorted by node; only the one on `node` when given (empty when there is none). */
  ztunnels(node?: string): Promise<ZtunnelRef[]>;
  /** The ztunnel's admin `/config_dump`, parsed JSON. */
  configDump(z: ZtunnelRef): Promise<unknown>;
  /** The mesh components that are running and their versions. */
  versions(): Promise<ComponentVersion[]>;
  /** Advice printed with commands whose change does not show in a namespace label, e.g. how to remove a label by hand. */
  labelCommand(namespace: string, label: string): string;
}

/** The `Programmed` condition of a Gateway's status, or Unknown when it has none yet. */
export function programmedCondition(gateway: KubeObject): Condition {
  const status = (gateway.status ?? {}) as { conditions?: unknown };
  const conds = Array.isArray(status.conditions) ? (status.conditions as Array<Record<string, unknown>>) : [];
  const c = conds.find((x) => x?.type === 'Programmed');
  if (!c) return { type: 'Programmed', status: 'Unknown', reason: 'Pending', message: 'no Programmed condition yet' };
  const s = c.status === 'True' || c.status === 'False' ? c.status : 'Unknown';
  return { type: 'Programmed', status: s, reason: String(c.reason ?? ''), message: String(c.message ?? '') };
}
