/** The mesh in a Kubernetes cluster, through the API server (kubeconfig as kubectl finds it). */
import type { ApplyResult, ComponentVersion, Condition, KubeObject, MeshBackend, NamespaceInfo, ZtunnelRef } from './backend.js';
import { programmedCondition } from './backend.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { apiStatus, KubeClient, resourcePath, type LoadedKubeconfig } from './kube.js';

const GATEWAY = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' } as const;
const NAMESPACES = { version: 'v1', plural: 'namespaces' } as const;
const PODS = { version: 'v1', plural: 'pods' } as const;

export interface ClusterInputs {
  readonly kubeconfig: LoadedKubeconfig;
  /** Where ztunnel and the control plane run (`istio-system`). */
  readonly istioNamespace: string;
  /** Label selector of ztunnel pods (`app=ztunnel`). */
  readonly ztunnelSelector: string;
  /** Label selector of control-plane pods (`app=istiod`). */
  readonly controlPlaneSelector: string;
  /** ztunnel's admin port, reached through a port-forward (15000). */
  readonly proxyAdminPort: number;
  readonly timeoutMs?: number;
}

interface List {
  readonly items?: KubeObject[];
}

const meta = (o: KubeObject): Record<string, unknown> => (o.metadata ?? {}) as Record<string, unknown>;

/**
 * A cluster behind the Kubernetes API.
 *
 * @example
 * const cluster = new ClusterBackend({ kubeconfig: loadKubeconfig({ env: process.env }), istioNamespace: 'istio-system', ztunnelSelector: 'app=ztunnel', controlPlaneSelector: 'app=istiod', proxyAdminPort: 15000 });
 * await cluster.gateways('default');
 */
export class ClusterBackend implements MeshBackend {
  readonly kind = 'cluster';
  readonly where: string;
  readonly defaultNamespace: string;
  readonly #kube: KubeClient;
  readonly #in: ClusterInputs;

  constructor(inputs: ClusterInputs) {
    this.#in = inputs;
    this.#kube = new KubeClient({ kubeconfig: inputs.kubeconfig, ...(inputs.timeoutMs !== undefined ? { timeoutMs: inputs.timeoutMs } : {}) });
    this.where = `cluster ${this.#kube.server} (context ${inputs.kubeconfig.context})`;
    const ctx = inputs.kubeconfig.kc.getContextObject(inputs.kubeconfig.context);
    this.defaultNamespace = ctx?.namespace || 'default';
  }

  async namespace(name: string): Promise<NamespaceInfo | undefined> {
    const ns = await this.#kube.get<KubeObject>(resourcePath({ ...NAMESPACES, name }));
    if (!ns) return undefined;
    return { name, labels: { ...((meta(ns).labels as Record<string, string>) ?? {}) } };
  }

  async labelNamespace(name: string, key: string, value: string | null): Promise<void> {
    await this.#kube.json('PATCH', resourcePath({ ...NAMESPACES, name }), {
      body: { metadata: { labels: { [key]: value } } },
      contentType: 'application/merge-patch+json',
    });
  }

  async gateways(namespace: string | undefined): Promise<KubeObject[]> {
    try {
      const list = await this.#kube.json<List>('GET', resourcePath({ ...GATEWAY, ...(namespace !== undefined ? { namespace } : {}) }));
      return list.items ?? [];
    } catch (err) {
      throw missingCrd(err);
    }
  }

  async applyGateway(gateway: KubeObject, ownedLabels: readonly string[]): Promise<ApplyResult> {
    const namespace = meta(gateway).namespace as string;
    const name = meta(gateway).name as string;
    try {
      await this.#kube.json('POST', resourcePath({ ...GATEWAY, namespace }), { body: gateway });
      return 'created';
    } catch (err) {
      if (apiStatus(err) !== 409) throw missingCrd(err);
    }
    const current = await this.#kube.get<KubeObject>(resourcePath({ ...GATEWAY, namespace, name }));
    const labels = (meta(gateway).labels ?? {}) as Record<string, string>;
    const have = ((current && meta(current).labels) ?? {}) as Record<string, string>;
    // Owned labels the Gateway no longer carries become null: a merge patch removes them.
    const dropped = ownedLabels.filter((k) => labels[k] === undefined && have[k] !== undefined);
    const same = current !== undefined && JSON.stringify(current.spec) === JSON.stringify(gateway.spec) && dropped.length === 0 && Object.entries(labels).every(([k, v]) => have[k] === v);
    if (same) return 'unchanged';
    await this.#kube.json('PATCH', resourcePath({ ...GATEWAY, namespace, name }), {
      body: { metadata: { labels: { ...labels, ...Object.fromEntries(dropped.map((k) => [k, null])) } }, spec: gateway.spec },
      contentType: 'application/merge-patch+json',
    });
    return 'configured';
  }

  async deleteGateway(namespace: string, name: string): Promise<boolean> {
    try {
      await this.#kube.json('DELETE', resourcePath({ ...GATEWAY, namespace, name }));
      return true;
    } catch (err) {
      if (apiStatus(err) === 404) return false;
      throw err;
    }
  }

  async programmed(gateway: KubeObject): Promise<Condition> {
    const m = meta(gateway);
    const fresh = await this.#kube.get<KubeObject>(resourcePath({ ...GATEWAY, namespace: m.namespace as string, name: m.name as string }));
    if (!fresh) return { type: 'Programmed', status: 'False', reason: 'NotFound', message: 'the Gateway is gone' };
    return programmedCondition(fresh);
  }

  async #pods(selector: string): Promise<KubeObject[]> {
    const list = await this.#kube.json<List>('GET', resourcePath({ ...PODS, namespace: this.#in.istioNamespace, query: { labelSelector: selector } }));
    return list.items ?? [];
  }

  async ztunnels(node?: string): Promise<ZtunnelRef[]> {
    const pods = await this.#pods(this.#in.ztunnelSelector);
    const refs = pods
      .filter((p) => ((p.status as Record<string, unknown> | undefined)?.phase ?? 'Running') === 'Running')
      .map((p) => ({ node: String((p.spec as Record<string, unknown> | undefined)?.nodeName ?? ''), name: String(meta(p).name), namespace: this.#in.istioNamespace }))
      .sort((a, b) => a.node.localeCompare(b.node) || a.name.localeCompare(b.name));
    return node === undefined ? refs : refs.filter((r) => r.node === node);
  }

  async configDump(z: ZtunnelRef): Promise<unknown> {
    const ns = z.namespace ?? this.#in.istioNamespace;
    const port = this.#in.proxyAdminPort;
    // A port-forward, not the pod proxy: the admin listener binds 127.0.0.1 in a hostNetwork pod
    // (port-forward.ts says why only a port-forward reaches it).
    let res: { status: number; body: string };
    try {
      res = await this.#kube.podGet(ns, z.name, port, '/config_dump');
    } catch (err) {
      if (!(err instanceof CliError) || err.code !== CLI_ERROR_CODES.UNREACHABLE || !/error forwarding port/.test(err.message)) throw err;
      throw new CliError(CLI_ERROR_CODES.UNREACHABLE, `ztunnel ${ns}/${z.name} on ${z.node}: ${err.message}; is ztunnel's admin on 127.0.0.1:${port} in the pod (ADMIN_PORT, --proxy-admin-port) and the pod running?`, { cause: err });
    }
    if (res.status < 200 || res.status >= 300) {
      throw new CliError(CLI_ERROR_CODES.BAD_DUMP, `ztunnel ${ns}/${z.name} on ${z.node}: GET /config_dump on port ${port} answered ${res.status}: ${res.body.trim().slice(0, 200) || '(empty body)'} (is port ${port} ztunnel's admin port? --proxy-admin-port)`);
    }
    try {
      return JSON.parse(res.body) as unknown;
    } catch {
      throw new CliError(CLI_ERROR_CODES.BAD_DUMP, `ztunnel ${ns}/${z.name}: /config_dump on port ${port} is not JSON (is port ${port} ztunnel's admin port? --proxy-admin-port)`);
    }
  }

  async versions(): Promise<ComponentVersion[]> {
    // No component serves its version yet; the image tag is what the cluster knows.
    const out: ComponentVersion[] = [];
    const image = (p: KubeObject) => {
      const c = ((p.spec as Record<string, unknown> | undefined)?.containers as Array<Record<string, unknown>> | undefined)?.[0];
      const img = typeof c?.image === 'string' ? c.image : '';
      const at = img.lastIndexOf(':');
      return at > img.lastIndexOf('/') ? `${img.slice(at + 1)} (image ${img})` : img ? `unknown (image ${img} has no tag)` : 'unknown';
    };
    for (const p of await this.#pods(this.#in.controlPlaneSelector)) out.push({ component: 'control-plane', name: `${this.#in.istioNamespace}/${String(meta(p).name)}`, version: image(p) });
    for (const p of await this.#pods(this.#in.ztunnelSelector)) out.push({ component: 'ztunnel', name: `${this.#in.istioNamespace}/${String(meta(p).name)}`, version: image(p) });
    return out;
  }

  labelCommand(namespace: string, label: string): string {
    return `kubectl label namespace ${namespace} ${label}`;
  }
}

/** A 404 on the gateways collection means the Gateway API CRDs are not installed. */
function missingCrd(err: unknown): unknown {
  if (err instanceof Error && apiStatus(err) === 404 && /gateways/.test(err.message) && !/gateways\/[^/?]+\b/.test(err.message)) {
    return new CliError(CLI_ERROR_CODES.API, `the Gateway API CRDs are not installed (${err.message}); install them: kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.3.0/standard-install.yaml`);
  }
  return err;
}
