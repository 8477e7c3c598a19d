/**
 * The Kubernetes object source: one informer per watched resource (kinds.ts) feeding the same
 * `ManifestStore` the file source feeds, through the same parser (`parseObject`), so both sources
 * mean the same thing by the same object. Node objects, and the ztunnel pod on each node, make the
 * node list.
 *
 * Start-up is in two steps so the control plane's first configuration is complete: `sync()` lists
 * everything (the node list is known after it), then `start(store)` hands the objects to the store
 * and keeps it current. A rejected object (parse errors) is not in the store, and an update that
 * makes an object invalid removes its previous version, as a rewritten file does in the file
 * source; its problems stay listed (and written to its status, status.ts) until it is fixed.
 */
import type { Logger } from '../../core/telemetry/log.js';
import { canonicalIp } from '../../core/model/ip.js';
import type { NodeInfo } from '../../core/model/types.js';
import { objectRef, type ManifestObject, type ObjectProblem, type ObjectRef } from '../../core/kube/objects.js';
import { parseObject } from '../../core/kube/parse.js';
import type { ManifestStore } from '../../core/kube/store.js';
import { limitProblems, type ObjectSource } from '../manifest-source.js';
import type { NodeList } from '../nodes.js';
import type { KubeApi, KubeObject } from '../../core/kube/api.js';
import { PORTS } from '../../core/hbone/constants.js';
import { Informer, type InformerStats, type InformerTimings } from './informer.js';
import { collectionPath, WATCHED_RESOURCES, type KubeResource } from './kinds.js';
import { objectKey, toManifestDocument } from './to-manifest.js';

/** `source` of problems found in API objects. */
export const KUBERNETES_SOURCE = 'kubernetes';
/** Istio's HBONE port; every node's ztunnel listens on it. */
const HBONE_PORT = PORTS.hbone;

/** Inputs of `KubernetesSource`. */
export interface KubernetesSourceInputs {
  readonly api: KubeApi;
  readonly rootNamespace: string;
  readonly logger: Logger;
  /** The ztunnel DaemonSet's pods (by namespace and service account) give each node's ztunnel address. */
  readonly ztunnel: { readonly namespace: string; readonly serviceAccount: string };
  readonly timings?: Partial<InformerTimings>;
  /** Jitter source of the informers (tests pin it). */
  readonly random?: () => number;
  /** Default: every resource of kinds.ts. */
  readonly resources?: readonly KubeResource[];
}

interface ZtunnelPod {
  readonly node: string;
  readonly ip: string;
  readonly name: string;
}

function meta(o: KubeObject): Record<string, unknown> {
  return typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {};
}

/**
 * @example
 * const source = new KubernetesSource({ api, rootNamespace: 'istio-system', logger, ztunnel: { namespace: 'istio-system', serviceAccount: 'ztunnel' } });
 * await source.sync();
 * const cp = await ControlPlane.start({ config, logger, objectSource: source, nodeList: async () => source.nodeList(), authenticator });
 * source.onNodesChange(() => void cp.reloadNodes());
 */
export class KubernetesSource implements ObjectSource {
  readonly #in: KubernetesSourceInputs;
  readonly #resources: readonly KubeResource[];
  readonly #informers = new Map<string, Informer>();
  /** kind → namespace/name → the object as last received. */
  readonly #raw = new Map<string, Map<string, KubeObject>>();
  /** kind/namespace/name → the parsed object (accepted ones only). */
  readonly #parsed = new Map<string, ManifestObject>();
  /** kind/namespace/name → its parse problems. */
  readonly #problems = new Map<string, ObjectProblem[]>();
  readonly #ztunnels = new Map<string, ZtunnelPod>();
  readonly #nodeListeners = new Set<() => void>();
  readonly #changeListeners = new Set<() => void>();
  #nodeList: NodeList = { nodes: [], tokens: new Map() };
  #nodeListJson = '';
  #store: ManifestStore | undefined;
  #syncing: Promise<void> | undefined;
  #closed = false;

  constructor(inputs: KubernetesSourceInputs) {
    this.#in = inputs;
    this.#resources = inputs.resources ?? WATCHED_RESOURCES;
    for (const r of this.#resources) {
      this.#raw.set(r.kind, new Map());
      this.#informers.set(
        r.kind,
        new Informer({
          api: inputs.api,
          path: collectionPath(r),
          handler: {
            replace: (items) => this.#replace(r, items),
            upsert: (o) => this.#upsert(r, o),
            remove: (o) => this.#remove(r, o),
          },
          logger: inputs.logger.child({ resource: r.plural }),
          ...(inputs.timings ? { timings: inputs.timings } : {}),
          ...(inputs.random ? { random: inputs.random } : {}),
        }),
      );
    }
  }

  /** Lists every resource once (retrying until each answered) and keeps watching them. */
  sync(): Promise<void> {
    this.#syncing ??= (async () => {
      await Promise.all([...this.#informers.values()].map((i) => i.start()));
      this.#in.logger.info({ objects: this.#parsed.size, nodes: this.#nodeList.nodes.map((n) => n.name), problems: this.problems().length }, 'kubernetes objects listed');
    })();
    return this.#syncing;
  }

  async start(store: ManifestStore): Promise<void> {
    await this.sync();
    this.#store = store;
    store.apply([...this.#parsed.values()]);
  }

  problems(): readonly ObjectProblem[] {
    const out: ObjectProblem[] = [];
    for (const l of this.#problems.values()) for (const p of l) out.push(p);
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const i of this.#informers.values()) i.close();
  }

  /** Nodes that exist and run a ztunnel, with the ztunnel pod's address. No tokens: ztunnels authenticate with TokenReview. */
  nodeList(): NodeList {
    return this.#nodeList;
  }

  /** Called after the node list changed. */
  onNodesChange(listener: () => void): () => void {
    this.#nodeListeners.add(listener);
    return () => this.#nodeListeners.delete(listener);
  }

  /** Called after any object changed (after the store was updated); the status writer listens. */
  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** An object as last received from the API server. */
  object(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#raw.get(kind)?.get(`${namespace ?? ''}/${name}`);
  }

  /** Every object of a kind, as last received. */
  objects(kind: string): IterableIterator<KubeObject> {
    return (this.#raw.get(kind) ?? new Map<string, KubeObject>()).values();
  }

  /** Per resource: lists, re-lists, watches, bookmarks, failures. */
  stats(): Record<string, InformerStats> {
    return Object.fromEntries([...this.#informers].map(([k, i]) => [k, i.stats]));
  }

  /** Per resource: the last resourceVersion seen. */
  resourceVersions(): Record<string, string | undefined> {
    return Object.fromEntries([...this.#informers].map(([k, i]) => [k, i.resourceVersion]));
  }

  // ---- informer events ----------------------------------------------------------------------

  #replace(r: KubeResource, items: readonly KubeObject[]): void {
    const raw = this.#raw.get(r.kind)!;
    const fresh = new Map<string, KubeObject>();
    for (const o of items) fresh.set(objectKey(o), o);
    const gone = [...raw.keys()].filter((k) => !fresh.has(k));
    const applied: ManifestObject[] = [];
    const deleted: ObjectRef[] = [];
    for (const k of gone) {
      const ref = this.#forget(r, k);
      if (ref) deleted.push(ref);
    }
    for (const [k, o] of fresh) {
      const prev = raw.get(k);
      if (prev && meta(prev).resourceVersion !== undefined && meta(prev).resourceVersion === meta(o).resourceVersion) continue;
      const result = this.#take(r, k, o);
      if (result.object) applied.push(result.object);
      else if (result.removed) deleted.push(result.removed);
    }
    this.#commit(r, applied, deleted);
  }

  #upsert(r: KubeResource, o: KubeObject): void {
    const result = this.#take(r, objectKey(o), o);
    this.#commit(r, result.object ? [result.object] : [], result.removed ? [result.removed] : []);
  }

  #remove(r: KubeResource, o: KubeObject): void {
    const ref = this.#forget(r, objectKey(o));
    this.#commit(r, [], ref ? [ref] : []);
  }

  /** Records an object and parses it; `removed` names a previous accepted version it replaces by nothing. */
  #take(r: KubeResource, key: string, o: KubeObject): { object?: ManifestObject; removed?: ObjectRef } {
    this.#raw.get(r.kind)!.set(key, o);
    if (r.kind === 'Pod') this.#notePod(key, o);
    if (r.kind === 'Node') return {};
    const id = `${r.kind}/${key}`;
    const { object, problems } = parseObject(toManifestDocument(r, o), KUBERNETES_SOURCE, this.#in.rootNamespace);
    if (problems.length > 0) this.#problems.set(id, limitProblems(problems));
    else this.#problems.delete(id);
    const prev = this.#parsed.get(id);
    if (object) {
      this.#parsed.set(id, object);
      return { object };
    }
    this.#parsed.delete(id);
    return prev ? { removed: objectRef(prev) } : {};
  }

  #forget(r: KubeResource, key: string): ObjectRef | undefined {
    this.#raw.get(r.kind)!.delete(key);
    if (r.kind === 'Pod') this.#ztunnels.delete(key);
    const id = `${r.kind}/${key}`;
    this.#problems.delete(id);
    const prev = this.#parsed.get(id);
    this.#parsed.delete(id);
    return prev ? objectRef(prev) : undefined;
  }

  #commit(r: KubeResource, applied: ManifestObject[], deleted: ObjectRef[]): void {
    if (this.#closed) return;
    if (this.#store) {
      if (deleted.length > 0) this.#store.delete(deleted);
      if (applied.length > 0) this.#store.apply(applied);
    }
    if (r.kind === 'Node' || r.kind === 'Pod') this.#updateNodes();
    for (const l of this.#changeListeners) l();
  }

  /** Keeps the index of ztunnel pods (the address of each node's ztunnel). */
  #notePod(key: string, o: KubeObject): void {
    const m = meta(o);
    const spec = (o.spec ?? {}) as Record<string, unknown>;
    const status = (o.status ?? {}) as Record<string, unknown>;
    const zt = this.#in.ztunnel;
    const sa = spec.serviceAccountName ?? spec.serviceAccount;
    const ip = typeof status.podIP === 'string' ? canonicalIp(status.podIP) : undefined;
    const running = status.phase === 'Running' && !m.deletionTimestamp;
    if (m.namespace === zt.namespace && sa === zt.serviceAccount && typeof spec.nodeName === 'string' && ip !== undefined && running) {
      this.#ztunnels.set(key, { node: spec.nodeName, ip, name: String(m.name) });
    } else {
      this.#ztunnels.delete(key);
    }
  }

  #updateNodes(): void {
    const byNode = new Map<string, ZtunnelPod>();
    // One ztunnel per node; during a rolling update the first by name wins until the old one goes.
    for (const z of [...this.#ztunnels.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (!byNode.has(z.node)) byNode.set(z.node, z);
    }
    const nodes: NodeInfo[] = [];
    for (const o of this.#raw.get('Node')?.values() ?? []) {
      const name = meta(o).name;
      if (typeof name !== 'string') continue;
      const z = byNode.get(name);
      if (z) nodes.push(Object.freeze({ name, ztunnelAddress: z.ip, hbonePort: HBONE_PORT }));
    }
    nodes.sort((a, b) => (a.name < b.name ? -1 : 1));
    const json = JSON.stringify(nodes);
    if (json === this.#nodeListJson) return;
    this.#nodeListJson = json;
    this.#nodeList = { nodes: Object.freeze(nodes), tokens: new Map() };
    this.#in.logger.info({ nodes: nodes.map((n) => `${n.name}=${n.ztunnelAddress}`) }, 'node list changed');
    for (const l of this.#nodeListeners) l();
  }
}
