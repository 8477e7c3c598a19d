/**
 * A Kubernetes API server FIXTURE for tests: plain HTTP on a loopback address, holding objects in
 * memory, speaking enough of the Kubernetes REST protocol for informers, status writers, leader
 * election and TokenReview to run against it. It is not a cluster: no admission, no defaulting, no
 * scheduling, no RBAC, no field validation; it stores what it is given.
 *
 * ## What it implements
 *
 * Paths (any group/version/resource; `plural` is the URL resource name):
 * - core: `/api/v1/<plural>`, `/api/v1/namespaces/<ns>/<plural>[/<name>[/status]]`, `/api/v1/<plural>/<name>[/status]`
 * - groups: `/apis/<group>/<version>/...` (same shapes)
 *
 * Verbs: list (GET collection, all namespaces or one), watch (GET collection with `watch=1|true`),
 * get, create (POST; 409 AlreadyExists), update (PUT; 409 Conflict when `metadata.resourceVersion`
 * is set and stale), patch (PATCH with `application/merge-patch+json`; strategic merge is treated
 * as merge), delete, and the `status` subresource (PUT/PATCH change only `.status`; writes to the
 * main resource keep the stored `.status`, as for a CRD with the status subresource).
 * `labelSelector` (`k=v`, `k!=v`, `k`, comma-separated) and `fieldSelector` (`metadata.name=`,
 * `metadata.namespace=`, `spec.nodeName=`) filter lists and watches (an object that stops
 * matching is not turned into a DELETED event, unlike the real server).
 *
 * resourceVersions: one global counter, as etcd's revision; every write takes the next one.
 * Lists answer `metadata.resourceVersion` = the current counter. Items of built-in groups are
 * listed without `apiVersion`/`kind`, as the real server does; CRD items keep them.
 *
 * Watch: `resourceVersion` unset or `"0"` → synthetic ADDED events for every current object,
 * then changes; `resourceVersion=N` → every change after N from the history, then live changes;
 * N older than the compaction point (`compact()`) → one `ERROR` event with a `Status` of code 410
 * (reason `Expired`, "too old resource version"), then the stream ends, as the real server does.
 * `allowWatchBookmarks=true` lets `bookmark()` send `BOOKMARK` events; `timeoutSeconds` ends the
 * watch after that long.
 *
 * TokenReview: `POST /apis/authentication.k8s.io/v1/tokenreviews` is answered from a table the
 * test fills (`setTokenReview`); an unknown token is `authenticated: false`. When the review asks
 * for `spec.audiences` and the entry lists audiences, they must intersect (status.audiences is the
 * intersection), else the token is not authenticated, as the real authenticator does.
 *
 * Client authentication: every request must carry `authorization: Bearer <fixture.token>` (401
 * otherwise), so a test proves the kubeconfig's credentials are sent.
 *
 * Port-forward: `GET /api/v1/namespaces/<ns>/pods/<name>/portforward?ports=P[,Q]` as a WebSocket
 * upgrade, the way the API server and kubelet serve it (kubelet `cri/streaming/portforward/
 * websocket.go`, apiserver `util/wsstream/conn.go`). Subprotocol `v4.channel.k8s.io` (or none, the
 * legacy binary form; the first offered one the server supports wins; `v4.base64.channel.k8s.io`
 * is not served, so a client offering only that gets 403 as from a kubelet refusing the
 * handshake). The pod must exist (404 otherwise) and `ports` must be given (400). Per port i,
 * channel 2i carries data both ways and channel 2i+1 errors to the client; every WebSocket message
 * starts with its channel byte; the first message on each channel is the port, 2 bytes
 * little-endian. Each port gets one TCP connection to the target the test registered with
 * `setPortForward` (standing for `localhost:<port>` inside the pod); when it cannot be connected
 * (or none is registered) the error channel gets kubelet's `error forwarding port P to pod ...`
 * text. When every port's connection has closed, the WebSocket is closed (as the kubelet does);
 * when the client closes the WebSocket, the connections are closed. The request is logged with
 * verb `get`, resource `pods`, subresource `portforward`.
 *
 * ## Test controls (stable API; other test files rely on it)
 * - `KubeApiFixture.start({ host })` → `fixture.url`, `fixture.token`; `close()`.
 * - `writeKubeconfig(path)` (or the free function `writeKubeconfig(path, fixture)`): a kubeconfig
 *   `KubeConfig.loadFromFile` accepts (plain http needs `insecure-skip-tls-verify: true`).
 * - objects: `apply(obj)` (create or replace, status included), `create(obj)`, `patch(ref, mergePatch)`,
 *   `remove(ref)`, `get(ref)`, `list(apiVersion, kind)`; refs are `{apiVersion, kind, namespace?, name}`.
 * - `resourceVersion`: the current counter. `compact()`: forget the history (older watches get 410).
 * - `bookmark()`: a BOOKMARK to every open watch that allowed them; returns how many got one.
 * - `dropWatches(filter?)`: destroys open watch connections (a network drop); returns how many.
 * - `openWatches(filter?)`: how many watches are open (of a `resource`, in a `namespace`).
 * - `failNext({ verb, resource, subresource?, status, times })`: the next matching requests fail with
 *   a Status (a port-forward upgrade too: `{ verb: 'get', resource: 'pods', subresource: 'portforward' }`).
 * - `requests`: every request (`{ method, path, verb, resource, namespace, name, query }`);
 *   `count({ verb, resource })` counts them (verb: list, watch, get, create, update, patch, delete).
 * - `hangNext({ verb, resource, times })`: the next matching requests get no answer at all.
 * - `setTokenReview(token, status)` / `deleteTokenReview(token)`; `setBoundToken(token, pod)` for
 *   the usual case, a token bound to a pod of the fixture.
 * - `setPortForward(namespace, pod, port, target | undefined)`: where a port-forward to that pod's
 *   port connects (`{ host, port }`); `portForwardConnections`: how many port connections opened.
 */
import http from 'node:http';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import * as yaml from 'js-yaml';

/** Identifies one object. `apiVersion` `v1` is core; `group/version` otherwise. */
export interface FixtureRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

export type FixtureVerb = 'list' | 'watch' | 'get' | 'create' | 'update' | 'patch' | 'delete';

export interface FixtureRequest {
  readonly method: string;
  readonly path: string;
  readonly verb: FixtureVerb | 'tokenreview' | 'unknown';
  /** URL resource name (`pods`); `status` requests carry `subresource`. */
  readonly resource?: string;
  readonly subresource?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly query: Readonly<Record<string, string>>;
}

/** What a TokenReview answers for a token (the `status` of a TokenReview). */
export interface FixtureTokenReview {
  readonly authenticated: boolean;
  readonly user?: {
    readonly username: string;
    readonly uid?: string;
    readonly groups?: readonly string[];
    readonly extra?: Readonly<Record<string, readonly string[]>>;
  };
  /** The audiences the token was issued for; unset: any audience. */
  readonly audiences?: readonly string[];
  /** An authenticator that ignores audiences (some webhook/OIDC ones): authenticated, no `status.audiences`. */
  readonly ignoresAudiences?: boolean;
  readonly error?: string;
}

interface Resource {
  readonly group: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/** Kinds the fixture knows the URL name of; any other `Kind` is served as lowercase + "s". */
const KNOWN: readonly Resource[] = [
  { group: '', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', plural: 'nodes', kind: 'Node', namespaced: false },
  { group: '', plural: 'pods', kind: 'Pod', namespaced: true },
  { group: '', plural: 'services', kind: 'Service', namespaced: true },
  { group: '', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: '', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', plural: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', plural: 'endpoints', kind: 'Endpoints', namespaced: true },
  { group: '', plural: 'events', kind: 'Event', namespaced: true },
  { group: 'apps', plural: 'deployments', kind: 'Deployment', namespaced: true },
  { group: 'apps', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true },
  { group: 'discovery.k8s.io', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  { group: 'coordination.k8s.io', plural: 'leases', kind: 'Lease', namespaced: true },
  { group: 'rbac.authorization.k8s.io', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  { group: 'rbac.authorization.k8s.io', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  { group: 'rbac.authorization.k8s.io', plural: 'roles', kind: 'Role', namespaced: true },
  { group: 'rbac.authorization.k8s.io', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true },
  { group: 'apiextensions.k8s.io', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false },
  { group: 'admissionregistration.k8s.io', plural: 'validatingwebhookconfigurations', kind: 'ValidatingWebhookConfiguration', namespaced: false },
  { group: 'gateway.networking.k8s.io', plural: 'gatewayclasses', kind: 'GatewayClass', namespaced: false },
  { group: 'gateway.networking.k8s.io', plural: 'gateways', kind: 'Gateway', namespaced: true },
  { group: 'gateway.networking.k8s.io', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true },
  { group: 'security.istio.io', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true },
  { group: 'security.istio.io', plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true },
  { group: 'security.istio.io', plural: 'requestauthentications', kind: 'RequestAuthentication', namespaced: true },
  { group: 'networking.istio.io', plural: 'virtualservices', kind: 'VirtualService', namespaced: true },
];

/** Groups whose list items carry no apiVersion/kind (the built-in, typed ones). */
const BUILT_IN_GROUPS = new Set(['', 'apps', 'discovery.k8s.io', 'coordination.k8s.io', 'rbac.authorization.k8s.io', 'apiextensions.k8s.io', 'admissionregistration.k8s.io', 'authentication.k8s.io']);

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

interface Event {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly key: string; // group/plural
  readonly object: Obj;
}

interface OpenWatch {
  readonly key: string;
  readonly resource: string;
  readonly namespace?: string;
  readonly bookmarks: boolean;
  readonly match: (o: Obj) => boolean;
  readonly res: http.ServerResponse;
  readonly apiVersion: string;
  readonly kind: string;
}

/** Where a port-forward to one pod port connects: what the kubelet would reach as `localhost:<port>` in the pod. */
export interface FixturePortForwardTarget {
  readonly host: string;
  readonly port: number;
}

interface Failure {
  readonly verb: FixtureVerb | 'any';
  readonly resource?: string;
  readonly subresource?: string;
  readonly status: number;
  remaining: number;
}

function groupOf(apiVersion: string): string {
  const i = apiVersion.indexOf('/');
  return i === -1 ? '' : apiVersion.slice(0, i);
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function statusBody(code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

function parseLabelSelector(s: string | undefined): (labels: Record<string, string>) => boolean {
  if (!s) return () => true;
  const terms = s.split(',').map((x) => x.trim()).filter(Boolean).map((term) => {
    const ne = /^([^!=]+)!=(.*)$/.exec(term);
    if (ne) return (l: Record<string, string>) => l[ne[1]!.trim()] !== ne[2]!.trim();
    const eq = /^([^!=]+)==?(.*)$/.exec(term);
    if (eq) return (l: Record<string, string>) => l[eq[1]!.trim()] === eq[2]!.trim();
    if (term.startsWith('!')) return (l: Record<string, string>) => !(term.slice(1) in l);
    return (l: Record<string, string>) => term in l;
  });
  return (l) => terms.every((f) => f(l));
}

function parseFieldSelector(s: string | undefined): (o: Obj) => boolean {
  if (!s) return () => true;
  const terms = s.split(',').map((x) => x.trim()).filter(Boolean).map((term) => {
    const m = /^([^!=]+)(!=|==?)(.*)$/.exec(term);
    if (!m) return () => false;
    const path = m[1]!.split('.');
    const want = m[3]!;
    const neg = m[2] === '!=';
    return (o: Obj) => {
      let v: unknown = o;
      for (const p of path) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[p] : undefined;
      const eq = (v ?? '') === want;
      return neg ? !eq : eq;
    };
  });
  return (o) => terms.every((f) => f(o));
}

export interface KubeApiFixtureOptions {
  /** A loopback address of the test file's own range. */
  readonly host: string;
  readonly port?: number;
}

/**
 * The fixture. See the file comment for the protocol and the controls.
 *
 * @example
 * const api = await KubeApiFixture.start({ host: '127.0.11.1' });
 * t.teardown(() => api.close());
 * await api.writeKubeconfig(join(dir, 'kubeconfig'));
 * api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps' } });
 */
export class KubeApiFixture {
  readonly token = randomBytes(16).toString('hex');
  readonly requests: FixtureRequest[] = [];
  readonly #server: http.Server;
  #url = '';
  #rv = 1;
  #compactedBelow = 0;
  /** group/plural → (namespace/name → object). */
  readonly #objects = new Map<string, Map<string, Obj>>();
  readonly #resources = new Map<string, Resource>();
  #history: Event[] = [];
  readonly #watches = new Set<OpenWatch>();
  readonly #failures: Failure[] = [];
  readonly #hangs: Array<{ verb: FixtureVerb; resource?: string; remaining: number }> = [];
  readonly #reviews = new Map<string, FixtureTokenReview>();
  /** `ns/pod:port` → target. */
  readonly #forwards = new Map<string, FixturePortForwardTarget>();
  readonly #forwardSockets = new Set<Duplex | net.Socket>();
  #forwardConnections = 0;

  private constructor() {
    for (const r of KNOWN) this.#resources.set(`${r.group}/${r.plural}`, r);
    this.#server = http.createServer((req, res) => this.#handle(req, res));
    this.#server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    this.#server.keepAliveTimeout = 1000;
  }

  static async start(opts: KubeApiFixtureOptions): Promise<KubeApiFixture> {
    const f = new KubeApiFixture();
    await new Promise<void>((resolve, reject) => {
      f.#server.once('error', reject);
      f.#server.listen(opts.port ?? 0, opts.host, () => resolve());
    });
    const a = f.#server.address() as AddressInfo;
    f.#url = `http://${a.address}:${a.port}`;
    return f;
  }

  /** `http://host:port`. */
  get url(): string {
    return this.#url;
  }

  /** The current resourceVersion (the last write's). */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Writes a kubeconfig pointing at the fixture, with its bearer token. */
  async writeKubeconfig(path: string): Promise<void> {
    await writeKubeconfig(path, this);
  }

  async close(): Promise<void> {
    for (const w of this.#watches) w.res.destroy();
    this.#watches.clear();
    for (const s of this.#forwardSockets) s.destroy();
    this.#forwardSockets.clear();
    await new Promise<void>((r) => this.#server.close(() => r()));
    this.#server.closeAllConnections();
  }

  // ---- objects ------------------------------------------------------------------------------

  /** Creates or replaces an object as given (status included); returns the stored copy. */
  apply(obj: object): Obj {
    const o = clone(obj) as Obj;
    const { key, nsName } = this.#locate(o);
    const prev = this.#objects.get(key)?.get(nsName);
    return prev ? this.#write(key, nsName, { ...o, metadata: { ...o.metadata, resourceVersion: undefined } }, prev) : this.#create(key, nsName, o);
  }

  /** Creates an object; throws when it exists. */
  create(obj: object): Obj {
    const o = clone(obj) as Obj;
    const { key, nsName } = this.#locate(o);
    if (this.#objects.get(key)?.has(nsName)) throw new Error(`${nsName} exists`);
    return this.#create(key, nsName, o);
  }

  /** Merge-patches an object (any part, status included). */
  patch(ref: FixtureRef, patch: object): Obj {
    const { key, nsName } = this.#locate(this.#refObj(ref));
    const prev = this.#objects.get(key)?.get(nsName);
    if (!prev) throw new Error(`${ref.kind} ${nsName} does not exist`);
    const next = mergePatch(clone(prev), patch) as Obj;
    return this.#write(key, nsName, next, prev);
  }

  /** Deletes an object; returns whether it existed. */
  remove(ref: FixtureRef): boolean {
    const { key, nsName } = this.#locate(this.#refObj(ref));
    const prev = this.#objects.get(key)?.get(nsName);
    if (!prev) return false;
    this.#delete(key, nsName, prev);
    return true;
  }

  get(ref: FixtureRef): Obj | undefined {
    const { key, nsName } = this.#locate(this.#refObj(ref));
    const o = this.#objects.get(key)?.get(nsName);
    return o ? clone(o) : undefined;
  }

  list(apiVersion: string, kind: string): Obj[] {
    const key = this.#keyFor(groupOf(apiVersion), kind);
    return [...(this.#objects.get(key)?.values() ?? [])].map(clone);
  }

  // ---- controls -----------------------------------------------------------------------------

  /** Forgets the event history: a watch from any older resourceVersion gets 410 Gone. */
  compact(): void {
    this.#compactedBelow = this.#rv;
    this.#history = [];
  }

  /** Sends a BOOKMARK at the current resourceVersion to each open watch that allowed them. */
  bookmark(filter?: { resource?: string }): number {
    let n = 0;
    for (const w of this.#watches) {
      if (!w.bookmarks || (filter?.resource !== undefined && w.resource !== filter.resource)) continue;
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { apiVersion: w.apiVersion, kind: w.kind, metadata: { resourceVersion: String(this.#rv) } } })}\n`);
      n++;
    }
    return n;
  }

  /** Destroys open watch connections, as a network drop or an API server restart would. */
  dropWatches(filter?: { resource?: string }): number {
    let n = 0;
    for (const w of [...this.#watches]) {
      if (filter?.resource !== undefined && w.resource !== filter.resource) continue;
      this.#watches.delete(w);
      w.res.socket?.destroy();
      w.res.destroy();
      n++;
    }
    return n;
  }

  openWatches(filter?: { resource?: string; namespace?: string }): number {
    return [...this.#watches].filter((w) => (filter?.resource === undefined || w.resource === filter.resource) && (filter?.namespace === undefined || w.namespace === filter.namespace)).length;
  }

  /** The next `times` requests matching `verb` (and `resource`) fail with `status`. */
  /** The next `times` requests matching `verb` (and `resource`) get no answer at all (a hung API server). */
  hangNext(f: { verb: FixtureVerb; resource?: string; times?: number }): void {
    this.#hangs.push({ verb: f.verb, ...(f.resource !== undefined ? { resource: f.resource } : {}), remaining: f.times ?? 1 });
  }

  failNext(f: { verb: FixtureVerb | 'any'; resource?: string; subresource?: string; status?: number; times?: number }): void {
    this.#failures.push({
      verb: f.verb,
      ...(f.resource !== undefined ? { resource: f.resource } : {}),
      ...(f.subresource !== undefined ? { subresource: f.subresource } : {}),
      status: f.status ?? 500,
      remaining: f.times ?? 1,
    });
  }

  /** Where a port-forward to `namespace/pod:port` connects; `undefined` removes it (then nothing listens there). */
  setPortForward(namespace: string, pod: string, port: number, target: FixturePortForwardTarget | undefined): void {
    const key = `${namespace}/${pod}:${port}`;
    if (target) this.#forwards.set(key, { ...target });
    else this.#forwards.delete(key);
  }

  /** How many port connections port-forwards opened (one per port per WebSocket). */
  get portForwardConnections(): number {
    return this.#forwardConnections;
  }

  count(f: { verb?: FixtureRequest['verb']; resource?: string; subresource?: string }): number {
    return this.requests.filter((r) => (f.verb === undefined || r.verb === f.verb) && (f.resource === undefined || r.resource === f.resource) && (f.subresource === undefined || r.subresource === f.subresource)).length;
  }

  setTokenReview(token: string, status: FixtureTokenReview): void {
    this.#reviews.set(token, status);
  }

  /**
   * A projected service-account token bound to an existing pod, as the API server's TokenReview
   * describes one for the `istio-ca` audience (username, pod name and uid in `extra`).
   */
  setBoundToken(token: string, pod: { name: string; namespace: string; serviceAccount: string }): void {
    const p = this.get({ apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name });
    if (!p) throw new Error(`setBoundToken: no pod ${pod.namespace}/${pod.name} in the fixture`);
    const uid = (p as { metadata: { uid: string } }).metadata.uid;
    this.setTokenReview(token, {
      authenticated: true,
      audiences: ['istio-ca'],
      user: {
        username: `system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`,
        extra: { 'authentication.kubernetes.io/pod-name': [pod.name], 'authentication.kubernetes.io/pod-uid': [uid] },
      },
    });
  }

  deleteTokenReview(token: string): void {
    this.#reviews.delete(token);
  }

  // ---- storage ------------------------------------------------------------------------------

  #keyFor(group: string, kindOrPlural: string, isPlural = false): string {
    for (const r of this.#resources.values()) {
      if (r.group === group && (isPlural ? r.plural === kindOrPlural : r.kind === kindOrPlural)) return `${group}/${r.plural}`;
    }
    if (isPlural) return `${group}/${kindOrPlural}`;
    const lower = kindOrPlural.toLowerCase();
    const plural = lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : lower.endsWith('s') ? `${lower}es` : `${lower}s`;
    this.#resources.set(`${group}/${plural}`, { group, plural, kind: kindOrPlural, namespaced: true });
    return `${group}/${plural}`;
  }

  #refObj(ref: FixtureRef): Obj {
    return { apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace !== undefined ? { namespace: ref.namespace } : {}) } };
  }

  #locate(o: Obj): { key: string; nsName: string } {
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || typeof o.metadata?.name !== 'string') {
      throw new Error('the fixture needs apiVersion, kind and metadata.name');
    }
    const key = this.#keyFor(groupOf(o.apiVersion), o.kind);
    const r = this.#resources.get(key)!;
    if (r.namespaced && typeof o.metadata.namespace !== 'string') o.metadata.namespace = 'default';
    if (!r.namespaced) delete o.metadata.namespace;
    return { key, nsName: `${r.namespaced ? (o.metadata.namespace as string) : ''}/${o.metadata.name}` };
  }

  #create(key: string, nsName: string, o: Obj): Obj {
    const rv = ++this.#rv;
    o.metadata = { ...o.metadata, uid: (o.metadata.uid as string | undefined) ?? randomUUID(), resourceVersion: String(rv), generation: 1, creationTimestamp: new Date().toISOString() };
    let m = this.#objects.get(key);
    if (!m) this.#objects.set(key, (m = new Map()));
    m.set(nsName, o);
    this.#emit({ rv, type: 'ADDED', key, object: o });
    return clone(o);
  }

  #write(key: string, nsName: string, next: Obj, prev: Obj): Obj {
    const rv = ++this.#rv;
    const specOf = (x: Obj) => JSON.stringify(Object.fromEntries(Object.entries(x).filter(([k]) => k !== 'metadata' && k !== 'status' && k !== 'apiVersion' && k !== 'kind')));
    const generation = (prev.metadata.generation as number) + (specOf(prev) === specOf(next) ? 0 : 1);
    next.metadata = {
      ...next.metadata,
      name: prev.metadata.name,
      ...(prev.metadata.namespace !== undefined ? { namespace: prev.metadata.namespace } : {}),
      uid: prev.metadata.uid,
      creationTimestamp: prev.metadata.creationTimestamp,
      generation,
      resourceVersion: String(rv),
    };
    this.#objects.get(key)!.set(nsName, next);
    this.#emit({ rv, type: 'MODIFIED', key, object: next });
    return clone(next);
  }

  #delete(key: string, nsName: string, prev: Obj): void {
    const rv = ++this.#rv;
    this.#objects.get(key)!.delete(nsName);
    const gone = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(rv) } };
    this.#emit({ rv, type: 'DELETED', key, object: gone });
  }

  #emit(e: Event): void {
    this.#history.push(e);
    for (const w of this.#watches) {
      if (w.key !== e.key) continue;
      if (w.namespace !== undefined && e.object.metadata.namespace !== w.namespace) continue;
      if (!w.match(e.object)) continue;
      w.res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
    }
  }

  // ---- port-forward (WebSocket) -------------------------------------------------------------

  /** An upgrade request: only `pods/<name>/portforward` over WebSocket is served (see the file comment). */
  #upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://fixture');
    const query = Object.fromEntries(url.searchParams.entries());
    const parsed = this.#parsePath(url.pathname);
    const method = req.method ?? 'GET';
    const verb: FixtureRequest['verb'] = parsed && method === 'GET' && parsed.name !== undefined ? 'get' : 'unknown';
    this.#log(method, url, verb, query, parsed);
    const refuse = (code: number, reason: string, message: string) => {
      const text = JSON.stringify(statusBody(code, reason, message));
      socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) return refuse(401, 'Unauthorized', 'Unauthorized');
    if (!parsed || verb !== 'get' || parsed.group !== '' || parsed.plural !== 'pods' || parsed.subresource !== 'portforward' || parsed.namespace === undefined) {
      return refuse(404, 'NotFound', `the fixture serves no ${method} ${url.pathname} upgrade (only pods/<name>/portforward)`);
    }
    const failure = this.#failures.find((f) => f.remaining > 0 && (f.verb === 'any' || f.verb === 'get') && (f.resource === undefined || f.resource === 'pods') && (f.subresource === undefined || f.subresource === 'portforward'));
    if (failure) {
      failure.remaining--;
      return refuse(failure.status, 'InternalError', `injected failure (${failure.status}) by the test`);
    }
    const pod = this.#objects.get('/pods')?.get(`${parsed.namespace}/${parsed.name}`);
    if (!pod) return refuse(404, 'NotFound', `pods "${parsed.name}" not found`);
    // kubelet's NewV4Options: every `ports` value, each a comma-separated list of 1-65535.
    const portStrings = url.searchParams.getAll('ports');
    if (portStrings.length === 0) return refuse(400, 'BadRequest', 'query parameter "ports" is required');
    const ports: number[] = [];
    for (const s of portStrings) {
      if (s === '') return refuse(400, 'BadRequest', 'query parameter "ports" cannot be empty');
      for (const p of s.split(',')) {
        const n = /^\d+$/.test(p) ? Number(p) : NaN;
        if (!(n >= 1 && n <= 65535)) return refuse(400, 'BadRequest', `unable to parse "${s}" as a port`);
        ports.push(n);
      }
    }
    const key = req.headers['sec-websocket-key'];
    if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || typeof key !== 'string' || req.headers['sec-websocket-version'] !== '13') {
      return refuse(400, 'BadRequest', 'the fixture serves port-forward over WebSocket (version 13) only, not SPDY');
    }
    // x/net/websocket's handshake: the client's protocols in its order, the first one supported wins.
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    const supported = ['', 'v4.channel.k8s.io'];
    const protocol = (offered.length ? offered : ['']).find((p) => supported.includes(p));
    if (protocol === undefined) return refuse(403, 'Forbidden', `requested protocol(s) are not supported: ${JSON.stringify(offered)}; supports ["","v4.channel.k8s.io"]`);
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n${protocol ? `sec-websocket-protocol: ${protocol}\r\n` : ''}\r\n`);
    this.#forwardSession(socket, head, parsed.namespace, parsed.name!, String(pod.metadata.uid ?? ''), ports);
  }

  /** One WebSocket: a TCP connection per port, spliced to the port's data channel. */
  #forwardSession(socket: Duplex, head: Buffer, namespace: string, podName: string, uid: string, ports: readonly number[]): void {
    this.#forwardSockets.add(socket);
    let closed = false;
    const conns: Array<net.Socket | undefined> = [];
    let open = ports.length;
    const send = (opcode: number, payload: Buffer) => {
      if (!closed && !socket.destroyed) socket.write(wsFrame(opcode, payload));
    };
    const sendChannel = (channel: number, data: Buffer) => send(0x2, Buffer.concat([Buffer.from([channel]), data]));
    const closeWs = (code = 1000) => {
      if (closed) return;
      const b = Buffer.alloc(2);
      b.writeUInt16BE(code);
      send(0x8, b);
      closed = true;
      socket.end();
      for (const c of conns) c?.destroy();
    };
    socket.on('close', () => {
      closed = true;
      this.#forwardSockets.delete(socket);
      for (const c of conns) c?.destroy();
    });
    // kubelet: the port on each channel first, then the data; an error as text on the error channel.
    for (const [i, port] of ports.entries()) {
      const le = Buffer.alloc(2);
      le.writeUInt16LE(port);
      sendChannel(2 * i, le);
      sendChannel(2 * i + 1, le);
    }
    const pairDone = () => {
      if (--open === 0) closeWs();
    };
    for (const [i, port] of ports.entries()) {
      const fail = (why: string) => {
        sendChannel(2 * i + 1, Buffer.from(`error forwarding port ${port} to pod ${podName}_${namespace}, uid ${uid}: failed to connect to localhost:${port} inside the pod's network namespace: ${why}`));
        pairDone();
      };
      const target = this.#forwards.get(`${namespace}/${podName}:${port}`);
      if (!target) {
        conns.push(undefined);
        fail('connect: connection refused');
        continue;
      }
      this.#forwardConnections++;
      const c = net.connect({ host: target.host, port: target.port });
      conns.push(c);
      this.#forwardSockets.add(c);
      let connected = false;
      c.on('connect', () => (connected = true));
      c.on('data', (d: Buffer) => sendChannel(2 * i, d));
      c.on('error', (err: NodeJS.ErrnoException) => {
        if (!connected) fail(`connect: ${err.code ?? err.message}`);
      });
      c.on('close', () => {
        this.#forwardSockets.delete(c);
        if (connected) pairDone();
      });
    }
    const reader = new WsFrameReader((opcode, payload) => {
      if (opcode === 0x8) return closeWs();
      if (opcode === 0x9) return send(0xa, payload);
      if (opcode !== 0x2 && opcode !== 0x1) return;
      if (payload.length === 0) return;
      // Only data channels are read (kubelet: ReadWriteChannel for data, WriteChannel for errors).
      const channel = payload[0]!;
      if (channel % 2 !== 0 || channel / 2 >= ports.length) return;
      conns[channel / 2]?.write(payload.subarray(1));
    }, (code) => closeWs(code));
    socket.on('data', (d: Buffer) => reader.push(d));
    if (head.length) reader.push(head);
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fixture');
    const query = Object.fromEntries(url.searchParams.entries());
    const parsed = this.#parsePath(url.pathname);
    const method = req.method ?? 'GET';
    let verb: FixtureRequest['verb'] = 'unknown';
    if (parsed?.tokenReview) verb = 'tokenreview';
    else if (parsed) {
      if (method === 'GET') verb = parsed.name === undefined ? (query.watch === '1' || query.watch === 'true' ? 'watch' : 'list') : 'get';
      else if (method === 'POST') verb = 'create';
      else if (method === 'PUT') verb = 'update';
      else if (method === 'PATCH') verb = 'patch';
      else if (method === 'DELETE') verb = 'delete';
    }
    this.#log(method, url, verb, query, parsed);
    const send = (code: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) return send(401, statusBody(401, 'Unauthorized', 'Unauthorized'));
    if (!parsed || verb === 'unknown') return send(404, statusBody(404, 'NotFound', `the fixture serves no ${method} ${url.pathname}`));
    const failure = this.#failures.find(
      (f) => f.remaining > 0 && (f.verb === 'any' || f.verb === verb) && (f.resource === undefined || f.resource === parsed.plural) && (f.subresource === undefined || f.subresource === parsed.subresource),
    );
    if (failure) {
      failure.remaining--;
      return send(failure.status, statusBody(failure.status, 'InternalError', `injected failure (${failure.status}) by the test`));
    }
    const hang = this.#hangs.find((h) => h.remaining > 0 && h.verb === verb && (h.resource === undefined || h.resource === parsed.plural));
    if (hang) {
      hang.remaining--;
      return; // no answer: the client's own deadline has to end it
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      if (chunks.length > 0) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return send(400, statusBody(400, 'BadRequest', 'the body is not JSON'));
        }
      }
      try {
        if (parsed.tokenReview) return send(201, this.#tokenReview(body));
        this.#serve(verb as FixtureVerb, parsed, query, body, req, res, send);
      } catch (err) {
        send(500, statusBody(500, 'InternalError', (err as Error).message));
      }
    });
  }

  #parsePath(path: string):
    | { group: string; version: string; plural: string; namespace?: string; name?: string; subresource?: string; tokenReview?: boolean }
    | undefined {
    const segs = path.split('/').filter(Boolean).map(decodeURIComponent);
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === 'api' && segs.length >= 3) {
      group = '';
      version = segs[1]!;
      rest = segs.slice(2);
    } else if (segs[0] === 'apis' && segs.length >= 4) {
      group = segs[1]!;
      version = segs[2]!;
      rest = segs.slice(3);
    } else return undefined;
    if (group === 'authentication.k8s.io' && rest[0] === 'tokenreviews') return { group, version, plural: 'tokenreviews', tokenReview: true };
    // /namespaces/<ns>/<plural>[/<name>[/<sub>]]; /namespaces/<name>[/status] is the Namespace itself.
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      return { group, version, namespace: rest[1]!, plural: rest[2]!, ...(rest[3] !== undefined ? { name: rest[3] } : {}), ...(rest[4] !== undefined ? { subresource: rest[4] } : {}) };
    }
    return { group, version, plural: rest[0]!, ...(rest[1] !== undefined ? { name: rest[1] } : {}), ...(rest[2] !== undefined ? { subresource: rest[2] } : {}) };
  }

  #log(method: string, url: URL, verb: FixtureRequest['verb'], query: Record<string, string>, parsed: { plural?: string; subresource?: string; namespace?: string; name?: string } | undefined): void {
    this.requests.push({
      method,
      path: url.pathname,
      verb,
      query,
      ...(parsed?.plural !== undefined ? { resource: parsed.plural } : {}),
      ...(parsed?.subresource !== undefined ? { subresource: parsed.subresource } : {}),
      ...(parsed?.namespace !== undefined ? { namespace: parsed.namespace } : {}),
      ...(parsed?.name !== undefined ? { name: parsed.name } : {}),
    });
  }

  #tokenReview(body: unknown): unknown {
    const spec = (body as { spec?: { token?: unknown; audiences?: unknown } } | undefined)?.spec;
    const token = typeof spec?.token === 'string' ? spec.token : '';
    const asked = Array.isArray(spec?.audiences) ? (spec.audiences as string[]) : undefined;
    const entry = this.#reviews.get(token);
    let status: Record<string, unknown>;
    if (!entry || !entry.authenticated) {
      status = { authenticated: false, error: entry?.error ?? 'invalid bearer token' };
    } else if (asked && asked.length > 0 && entry.audiences && !entry.audiences.some((a) => asked.includes(a))) {
      status = { authenticated: false, error: `token audiences ${JSON.stringify(entry.audiences)} is invalid for the target audiences ${JSON.stringify(asked)}` };
    } else if (entry.ignoresAudiences) {
      status = { authenticated: true, user: clone(entry.user) };
    } else {
      const audiences = asked && asked.length > 0 ? (entry.audiences ? entry.audiences.filter((a) => asked.includes(a)) : asked) : entry.audiences;
      status = { authenticated: true, user: clone(entry.user), ...(audiences ? { audiences } : {}) };
    }
    return { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec: clone(spec ?? {}), status };
  }

  #serve(
    verb: FixtureVerb,
    p: { group: string; version: string; plural: string; namespace?: string; name?: string; subresource?: string },
    query: Record<string, string>,
    body: unknown,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    send: (code: number, body: unknown) => void,
  ): void {
    const key = this.#keyFor(p.group, p.plural, true);
    const r = this.#resources.get(key) ?? { group: p.group, plural: p.plural, kind: p.plural, namespaced: p.namespace !== undefined };
    const apiVersion = p.group === '' ? p.version : `${p.group}/${p.version}`;
    const objects = this.#objects.get(key) ?? new Map<string, Obj>();
    const nsName = (name: string) => `${r.namespaced ? (p.namespace ?? '') : ''}/${name}`;
    const labelMatch = parseLabelSelector(query.labelSelector);
    const fieldMatch = parseFieldSelector(query.fieldSelector);
    const match = (o: Obj) => labelMatch((o.metadata.labels as Record<string, string> | undefined) ?? {}) && fieldMatch(o);
    const notFound = (name: string) => send(404, statusBody(404, 'NotFound', `${r.plural} "${name}" not found`, { name, kind: r.plural }));
    switch (verb) {
      case 'list': {
        const builtIn = BUILT_IN_GROUPS.has(p.group);
        const items = [...objects.values()]
          .filter((o) => (p.namespace === undefined || o.metadata.namespace === p.namespace) && match(o))
          .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion))
          .map((o) => {
            const c = clone(o);
            if (builtIn) {
              delete c.apiVersion;
              delete c.kind;
            }
            return c;
          });
        return send(200, { apiVersion, kind: `${r.kind}List`, metadata: { resourceVersion: String(this.#rv) }, items });
      }
      case 'watch': {
        const from = query.resourceVersion;
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        res.flushHeaders();
        const write = (type: string, object: unknown) => res.write(`${JSON.stringify({ type, object })}\n`);
        const inScope = (o: Obj) => (p.namespace === undefined || o.metadata.namespace === p.namespace) && match(o);
        if (from !== undefined && from !== '' && from !== '0' && Number(from) < this.#compactedBelow) {
          write('ERROR', statusBody(410, 'Expired', `too old resource version: ${from} (${this.#compactedBelow})`));
          res.end();
          return;
        }
        if (from === undefined || from === '' || from === '0') {
          for (const o of objects.values()) if (inScope(o)) write('ADDED', o);
        } else {
          for (const e of this.#history) if (e.key === key && e.rv > Number(from) && inScope(e.object)) write(e.type, e.object);
        }
        const w: OpenWatch = {
          key,
          resource: p.plural,
          ...(p.namespace !== undefined ? { namespace: p.namespace } : {}),
          bookmarks: query.allowWatchBookmarks === 'true' || query.allowWatchBookmarks === '1',
          match,
          res,
          apiVersion,
          kind: r.kind,
        };
        this.#watches.add(w);
        const timeout = query.timeoutSeconds !== undefined ? setTimeout(() => res.end(), Number(query.timeoutSeconds) * 1000) : undefined;
        const done = () => {
          if (timeout) clearTimeout(timeout);
          this.#watches.delete(w);
        };
        // Only the response's close means the client went away (a request's 'close' fires once its
        // body was read).
        res.on('close', done);
        return;
      }
      case 'get': {
        const o = objects.get(nsName(p.name!));
        return o ? send(200, o) : notFound(p.name!);
      }
      case 'create': {
        const o = body as Obj | undefined;
        if (!o || typeof o !== 'object' || typeof o.metadata !== 'object' || typeof o.metadata?.name !== 'string') {
          return send(422, statusBody(422, 'Invalid', 'metadata.name: Required value'));
        }
        if (r.namespaced) o.metadata.namespace = p.namespace ?? 'default';
        o.apiVersion ??= apiVersion;
        o.kind ??= r.kind;
        if (objects.has(nsName(o.metadata.name as string))) {
          return send(409, statusBody(409, 'AlreadyExists', `${r.plural} "${String(o.metadata.name)}" already exists`, { name: o.metadata.name, kind: r.plural }));
        }
        delete o.status;
        let m = this.#objects.get(key);
        if (!m) this.#objects.set(key, (m = new Map()));
        return send(201, this.#create(key, nsName(o.metadata.name as string), o));
      }
      case 'update':
      case 'patch': {
        const prev = objects.get(nsName(p.name!));
        if (!prev) return notFound(p.name!);
        let next: Obj;
        if (verb === 'update') {
          const o = body as Obj | undefined;
          if (!o || typeof o.metadata !== 'object') return send(422, statusBody(422, 'Invalid', 'metadata: Required value'));
          const want = o.metadata.resourceVersion;
          if (want !== undefined && want !== '' && want !== prev.metadata.resourceVersion) {
            return send(409, statusBody(409, 'Conflict', `Operation cannot be fulfilled on ${r.plural} "${p.name}": the object has been modified; please apply your changes to the latest version and try again`));
          }
          next = clone(o);
        } else {
          const type = String(req.headers['content-type'] ?? '');
          if (!type.startsWith('application/merge-patch+json') && !type.startsWith('application/strategic-merge-patch+json')) {
            return send(415, statusBody(415, 'UnsupportedMediaType', `the fixture takes merge patches only, not ${type}`));
          }
          const want = (body as Obj | undefined)?.metadata?.resourceVersion;
          if (typeof want === 'string' && want !== prev.metadata.resourceVersion) {
            return send(409, statusBody(409, 'Conflict', `Operation cannot be fulfilled on ${r.plural} "${p.name}": the object has been modified`));
          }
          next = mergePatch(clone(prev), body) as Obj;
        }
        // The status subresource changes only .status; the main resource never does.
        if (p.subresource === 'status') next = { ...clone(prev), status: next.status };
        else if (prev.status !== undefined) next.status = clone(prev.status);
        else delete next.status;
        return send(200, this.#write(key, nsName(p.name!), next, prev));
      }
      case 'delete': {
        const prev = objects.get(nsName(p.name!));
        if (!prev) return notFound(p.name!);
        this.#delete(key, nsName(p.name!), prev);
        return send(200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: p.name, kind: r.plural } });
      }
    }
  }
}

/** One server-to-client WebSocket frame (FIN set, unmasked, RFC 6455 5.2). */
function wsFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([0x80 | opcode, n]);
  else if (n < 65536) {
    head = Buffer.from([0x80 | opcode, 126, 0, 0]);
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** Client-to-server WebSocket frames → whole messages (fragments joined); unmasked frames are a protocol error (1002). */
class WsFrameReader {
  #buf = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragOpcode = 0;

  constructor(
    private readonly onMessage: (opcode: number, payload: Buffer) => void,
    private readonly onProtocolError: (code: number) => void,
  ) {}

  push(chunk: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return;
      const fin = (b[0]! & 0x80) !== 0;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (!masked) return this.onProtocolError(1002);
      if (b.length < off + 4 + len) return;
      const mask = b.subarray(off, off + 4);
      const payload = Buffer.from(b.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
      this.#buf = b.subarray(off + 4 + len);
      if (opcode >= 0x8) this.onMessage(opcode, payload);
      else {
        if (opcode !== 0) this.#fragOpcode = opcode;
        this.#fragments.push(payload);
        if (fin) {
          const whole = Buffer.concat(this.#fragments);
          this.#fragments = [];
          this.onMessage(this.#fragOpcode, whole);
        }
      }
    }
  }
}

/**
 * Writes a kubeconfig for the fixture: one cluster (plain http, so `insecure-skip-tls-verify`, which
 * client-node requires for http), one user with the fixture's bearer token, one current context.
 *
 * @example
 * await writeKubeconfig(join(dir, 'kubeconfig'), api);
 * const kc = new KubeConfig(); kc.loadFromFile(join(dir, 'kubeconfig'));
 */
export async function writeKubeconfig(path: string, fixture: { url: string; token: string }): Promise<void> {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kube-api-fixture', cluster: { server: fixture.url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'fixture-user', user: { token: fixture.token } }],
    contexts: [{ name: 'kube-api-fixture', context: { cluster: 'kube-api-fixture', user: 'fixture-user' } }],
    'current-context': 'kube-api-fixture',
  };
  await writeFile(path, yaml.dump(doc), { mode: 0o600 });
}
