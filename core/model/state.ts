/**
 * `MeshState`: one immutable configuration snapshot with the indexes the data path needs.
 *
 * Every index is built once in the constructor (or lazily, per workload, for policy lists) so
 * that per-connection lookups are O(1) map reads. An update builds a new `MeshState`; connections
 * that started under the old one keep it.
 */
import { canonicalIp } from './ip.js';
import { deepFreeze } from './freeze.js';
import { effectiveMtlsMode, type EffectiveMtlsMode } from './peer-auth.js';
import { DEFAULT_ROOT_NAMESPACE, policyAppliesTo } from './scope.js';
import { formatSpiffeId } from '../identity/spiffe.js';
import type { HttpRoute, VirtualService } from './routes.js';
import type {
  AuthorizationPolicy,
  MeshConfig,
  NodeInfo,
  PeerAuthentication,
  Service,
  ServicePort,
  Workload,
} from './types.js';

const EMPTY_CONFIG: MeshConfig = deepFreeze({
  nodes: [],
  workloads: [],
  services: [],
  authorizationPolicies: [],
  peerAuthentications: [],
});

/** JSON value, as `toJSON` produces it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Plain JSON copy: Maps become objects (keys stringified), undefined fields are dropped. */
function toPlainJson(v: unknown): JsonValue {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(toPlainJson);
  if (v instanceof Map) {
    const out: { [key: string]: JsonValue } = {};
    for (const [k, val] of v) out[String(k)] = toPlainJson(val);
    return out;
  }
  if (typeof v === 'object') {
    const out: { [key: string]: JsonValue } = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (val !== undefined) out[k] = toPlainJson(val);
    }
    return out;
  }
  return null;
}

/**
 * An immutable snapshot of the mesh with O(1) lookups.
 *
 * When the config holds duplicates (a validated file never does), the first entry wins.
 *
 * @example
 * const state = new MeshState(await readMeshConfigFile('/etc/ztunnel/config.yaml'));
 * const dst = state.workloadByIp('10.0.0.9');
 * if (dst) authorizeConnection(state.policiesFor(dst), conn);
 */
export class MeshState {
  /** The snapshot this state indexes. */
  readonly config: MeshConfig;
  /** The root namespace the config was built with (`istio-system` by default). */
  readonly rootNamespace: string;

  // Keys are canonical address text (see canonicalIp); lookups try the caller's text first.
  private readonly workloadsByIp = new Map<string, Workload>();
  private readonly workloadsByUid = new Map<string, Workload>();
  private readonly workloadsByNode = new Map<string, Workload[]>();
  private readonly nodesByName = new Map<string, NodeInfo>();
  private readonly servicesByVip = new Map<string, Service>();
  private readonly portsByService = new WeakMap<Service, ReadonlyMap<number, ServicePort>>();
  private readonly healthyEndpoints = new WeakMap<Service, readonly Workload[]>();
  // Lazy per-workload caches, keyed by object identity so that a workload object from elsewhere
  // (with different labels under the same uid) can never pick up another one's policies.
  private readonly policyCache = new WeakMap<Workload, readonly AuthorizationPolicy[]>();
  private readonly peerAuthCache = new WeakMap<Workload, readonly PeerAuthentication[]>();
  private readonly identityCache = new WeakMap<Workload, string>();
  // Route lookups (waypoints): built on first use, so data planes without routes pay nothing.
  private servicesByName: Map<string, Service> | undefined;
  private servicesByHostname: Map<string, Service> | undefined;
  private readonly httpRouteCache = new WeakMap<Service, readonly HttpRoute[]>();
  private readonly virtualServiceCache = new WeakMap<Service, readonly VirtualService[]>();

  /** Builds the indexes; `config` should be deeply frozen (the file source's output is). */
  constructor(config: MeshConfig) {
    this.config = config;
    this.rootNamespace = config.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    for (const n of config.nodes) if (!this.nodesByName.has(n.name)) this.nodesByName.set(n.name, n);
    for (const w of config.workloads) {
      if (this.workloadsByUid.has(w.uid)) continue;
      this.workloadsByUid.set(w.uid, w);
      for (const ip of w.ips) {
        const key = canonicalIp(ip) ?? ip;
        if (!this.workloadsByIp.has(key)) this.workloadsByIp.set(key, w);
      }
      let onNode = this.workloadsByNode.get(w.node);
      if (!onNode) this.workloadsByNode.set(w.node, (onNode = []));
      onNode.push(w);
    }
    for (const list of this.workloadsByNode.values()) Object.freeze(list);
    for (const s of config.services) {
      for (const vip of s.vips) {
        const key = canonicalIp(vip) ?? vip;
        if (!this.servicesByVip.has(key)) this.servicesByVip.set(key, s);
      }
      this.portsByService.set(s, this.indexPorts(s));
      this.healthyEndpoints.set(s, this.resolveEndpoints(s));
    }
  }

  /** A state with nothing in it: what a data plane serves before its first configuration. */
  static empty(): MeshState {
    return new MeshState(EMPTY_CONFIG);
  }

  /** The workload that owns `ip` (any textual form, IPv4-mapped IPv6 included). */
  workloadByIp(ip: string): Workload | undefined {
    const w = this.workloadsByIp.get(ip);
    if (w) return w;
    const key = canonicalIp(ip);
    return key === undefined || key === ip ? undefined : this.workloadsByIp.get(key);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.workloadsByUid.get(uid);
  }

  node(name: string): NodeInfo | undefined {
    return this.nodesByName.get(name);
  }

  /** Workloads scheduled on node `name`, in config order (what that node's ztunnel serves). */
  workloadsOnNode(name: string): readonly Workload[] {
    return this.workloadsByNode.get(name) ?? [];
  }

  /** The service that owns the virtual IP `ip`. */
  serviceByVip(ip: string): Service | undefined {
    const s = this.servicesByVip.get(ip);
    if (s) return s;
    const key = canonicalIp(ip);
    return key === undefined || key === ip ? undefined : this.servicesByVip.get(key);
  }

  /** The port entry of `service` for the service port `port` (not the target port). */
  servicePort(service: Service, port: number): ServicePort | undefined {
    return (this.portsByService.get(service) ?? this.indexPorts(service)).get(port);
  }

  /** The healthy workloads behind `service`, in config order. */
  endpointsOf(service: Service): readonly Workload[] {
    return this.healthyEndpoints.get(service) ?? this.resolveEndpoints(service);
  }

  /**
   * The AuthorizationPolicies that apply to `workload`: mesh-wide ones, those of its namespace,
   * and those whose selector matches it. Computed on first use per workload, then cached.
   */
  policiesFor(workload: Workload): readonly AuthorizationPolicy[] {
    let list = this.policyCache.get(workload);
    if (!list) {
      list = Object.freeze(
        this.config.authorizationPolicies.filter((p) => policyAppliesTo(p, workload, this.rootNamespace)),
      );
      this.policyCache.set(workload, list);
    }
    return list;
  }

  /** The effective mTLS mode for connections to `workload` on its port `port`. */
  mtlsModeFor(workload: Workload, port: number): EffectiveMtlsMode {
    let list = this.peerAuthCache.get(workload);
    if (!list) {
      list = Object.freeze(
        this.config.peerAuthentications.filter((p) => policyAppliesTo(p, workload, this.rootNamespace)),
      );
      this.peerAuthCache.set(workload, list);
    }
    return effectiveMtlsMode(list, workload, port, { rootNamespace: this.rootNamespace });
  }

  /** The workload's SPIFFE id, `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
  workloadIdentity(workload: Workload): string {
    let id = this.identityCache.get(workload);
    if (id === undefined) {
      id = formatSpiffeId({
        trustDomain: workload.trustDomain,
        namespace: workload.namespace,
        serviceAccount: workload.serviceAccount,
      });
      this.identityCache.set(workload, id);
    }
    return id;
  }

  /** The service `namespace/name`. */
  serviceByName(namespace: string, name: string): Service | undefined {
    if (!this.servicesByName) {
      this.servicesByName = new Map();
      for (const s of this.config.services) {
        const key = `${s.namespace}/${s.name}`;
        if (!this.servicesByName.has(key)) this.servicesByName.set(key, s);
      }
    }
    return this.servicesByName.get(`${namespace}/${name}`);
  }

  /** The service whose hostname is `hostname` (lowercase, e.g. `reviews.default.svc.cluster.local`). */
  serviceByHostname(hostname: string): Service | undefined {
    if (!this.servicesByHostname) {
      this.servicesByHostname = new Map();
      for (const s of this.config.services) if (!this.servicesByHostname.has(s.hostname)) this.servicesByHostname.set(s.hostname, s);
    }
    return this.servicesByHostname.get(hostname);
  }

  /**
   * The HTTPRoutes, then the GRPCRoutes, with a parentRef to `service` (any port), in config
   * order (the order Gateway API precedence breaks ties with). Computed on first use per
   * service, then cached.
   */
  httpRoutesFor(service: Service): readonly HttpRoute[] {
    let list = this.httpRouteCache.get(service);
    if (!list) {
      list = Object.freeze(
        [...(this.config.httpRoutes ?? []), ...(this.config.grpcRoutes ?? [])].filter((r) =>
          r.parents.some((p) => p.name === service.name && p.namespace === service.namespace),
        ),
      );
      this.httpRouteCache.set(service, list);
    }
    return list;
  }

  /**
   * The VirtualServices one of whose hosts names `service` (short name in the VirtualService's
   * namespace, `name.namespace[.svc...]`, or the service hostname), in config order.
   */
  virtualServicesFor(service: Service): readonly VirtualService[] {
    let list = this.virtualServiceCache.get(service);
    if (!list) {
      list = Object.freeze(
        (this.config.virtualServices ?? []).filter((vs) =>
          vs.hosts.some((h) => {
            const host = h.toLowerCase();
            if (host === service.hostname) return true;
            const parts = host.split('.');
            if (parts.length === 1) return parts[0] === service.name && vs.namespace === service.namespace;
            return (parts.length === 2 || parts[2] === 'svc') && parts[0] === service.name && parts[1] === service.namespace;
          }),
        ),
      );
      this.virtualServiceCache.set(service, list);
    }
    return list;
  }

  /** The whole configuration as plain JSON, for the admin `/config_dump` (Maps become objects). */
  toJSON(): { [key: string]: JsonValue } {
    return {
      rootNamespace: this.rootNamespace,
      nodes: toPlainJson(this.config.nodes),
      workloads: toPlainJson(this.config.workloads),
      services: toPlainJson(this.config.services),
      authorizationPolicies: toPlainJson(this.config.authorizationPolicies),
      peerAuthentications: toPlainJson(this.config.peerAuthentications),
      // Listed only when present, so dumps of configs without them keep their shape.
      ...(this.config.waypointPolicies ? { waypointPolicies: toPlainJson(this.config.waypointPolicies) } : {}),
      ...(this.config.httpRoutes ? { httpRoutes: toPlainJson(this.config.httpRoutes) } : {}),
      ...(this.config.grpcRoutes ? { grpcRoutes: toPlainJson(this.config.grpcRoutes) } : {}),
      ...(this.config.referenceGrants ? { referenceGrants: toPlainJson(this.config.referenceGrants) } : {}),
      ...(this.config.virtualServices ? { virtualServices: toPlainJson(this.config.virtualServices) } : {}),
      ...(this.config.destinationRules ? { destinationRules: toPlainJson(this.config.destinationRules) } : {}),
    };
  }

  private indexPorts(service: Service): ReadonlyMap<number, ServicePort> {
    const m = new Map<number, ServicePort>();
    for (const p of service.ports) if (!m.has(p.port)) m.set(p.port, p);
    return m;
  }

  private resolveEndpoints(service: Service): readonly Workload[] {
    const out: Workload[] = [];
    for (const uid of service.endpoints) {
      const w = this.workloadsByUid.get(uid);
      if (w?.healthy) out.push(w);
    }
    return Object.freeze(out);
  }
}
