/**
 * The accepted objects of a store (`store.ts`), plus the node list, → one frozen `MeshConfig`,
 * and nowhere else. Cross-object rules live here (a pod on an unknown node, an address used
 * twice, a waypoint that does not exist): they produce warnings naming the object, and the object
 * is left out or partly applied, never the whole config.
 *
 * Objects are converted in a fixed order (by kind, namespace, name), so the same set of objects
 * always gives the same configuration, whatever order the files were read in.
 */
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, GATEWAY_NAME_LABEL, USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../labels.js';
import { deepFreeze } from '../model/freeze.js';
import { DEFAULT_ROOT_NAMESPACE, labelsMatch } from '../model/scope.js';
import { formatSpiffeId } from '../identity/spiffe.js';
import { presentLists } from '../model/source.js';
import { quote } from '../validation/check.js';
import type { AuthorizationPolicy, MeshConfig, MeshNamespace, NodeInfo, PeerAuthentication, PendingPod, Service, ServicePort, WaypointPolicy, WaypointRef, Workload } from '../model/types.js';
import {
  DEFAULT_NAMESPACE,
  WAYPOINT_HBONE_PORT,
  formatRef,
  objectRef,
  refKey,
  sortObjects,
  type AuthorizationPolicyObject,
  type DestinationRuleObject,
  type GatewayObject,
  type HTTPRouteObject,
  type GRPCRouteObject,
  type TCPRouteObject,
  type ReferenceGrantObject,
  type ManifestObject,
  type NamespaceObject,
  type ObjectProblem,
  type PodObject,
  type RequestAuthenticationObject,
  type ServiceObject,
  type Severity,
  type VirtualServiceObject,
} from './objects.js';

/** Longest part of an internal error's message an object's problem repeats. */
const INTERNAL_ERROR_MAX = 500;

/** DNS domain of service hostnames. */
const CLUSTER_DNS_DOMAIN = 'cluster.local';

/** Inputs of a conversion. */
export interface ConvertInputs {
  readonly objects: Iterable<ManifestObject>;
  /** `objects` are in conversion order already (`ManifestStore.sortedObjects`). */
  readonly sorted?: boolean;
  /** The nodes of the cluster (the lab's or the cluster's node list). */
  readonly nodes: readonly NodeInfo[];
  readonly trustDomain: string;
  readonly rootNamespace?: string;
}

/** The object behind each waypoint kind of the configuration (`authorizationPolicies`: those with targetRefs). */
interface WaypointKinds {
  gateways: GatewayObject;
  httpRoutes: HTTPRouteObject;
  grpcRoutes: GRPCRouteObject;
  tcpRoutes: TCPRouteObject;
  referenceGrants: ReferenceGrantObject;
  virtualServices: VirtualServiceObject;
  destinationRules: DestinationRuleObject;
  authorizationPolicies: AuthorizationPolicyObject;
  requestAuthentications: RequestAuthenticationObject;
}

/** The waypoint list of each route kind. */
const ROUTE_LIST = { HTTPRoute: 'httpRoutes', GRPCRoute: 'grpcRoutes', TCPRoute: 'tcpRoutes', ReferenceGrant: 'referenceGrants', VirtualService: 'virtualServices', DestinationRule: 'destinationRules' } as const satisfies Record<string, keyof WaypointKinds>;

/** The objects behind the waypoint kinds of the configuration (their specs travel as written). */
export type WaypointResources = { readonly [K in keyof WaypointKinds]: readonly WaypointKinds[K][] };

/** The outcome of a conversion. */
export interface ConvertResult {
  /** Deeply frozen. */
  readonly config: MeshConfig;
  readonly waypoint: WaypointResources;
  /** Cross-object problems (the parse problems of each object are reported when it is parsed). */
  readonly problems: readonly ObjectProblem[];
}
/**
 * Converts a set of accepted objects into the mesh configuration (a one-off
 * `ManifestConverter`).
 *
 * - Every pod with a node from `nodes` and an IP is a workload (host-network pods are not). Its
 *   protocol is HBONE when its namespace carries `istio.io/dataplane-mode=ambient` (or the pod
 *   itself does) and the pod does not carry `istio.io/dataplane-mode=none`; else TCP (traffic to
 *   it passes through unchanged).
 * - Every Service with a cluster IP is a service; its endpoints are the workloads of its namespace
 *   its selector matches; a named targetPort is resolved on those pods.
 * - `istio.io/use-waypoint` on a pod, a service or their namespace attaches the waypoint Gateway
 *   of that name (in the same namespace unless `istio.io/use-waypoint-namespace` says otherwise),
 *   if its `istio.io/waypoint-for` covers the kind of traffic; `none` on a pod or service opts out.
 * - AuthorizationPolicies (without targetRefs) and PeerAuthentications become L4 policies;
 *   with targetRefs, waypoint policies; HTTPRoutes and VirtualServices, routes.
 * - For node agents: every pod with a node but no IP yet (not host-network, not finished) is a
 *   pending pod, with the verdict its workload will have (HBONE: enrol it), except that a waypoint
 *   pod (`gateway.istio.io/managed=istio.io-mesh-controller`) is never HBONE; it moves to the
 *   workloads once it has an IP. Every Namespace object is listed with its
 *   `istio.io/dataplane-mode` label.
 *
 * @example
 * const { config, problems } = convertManifests({ objects: store.objects(), nodes, trustDomain: 'cluster.local' });
 */
export function convertManifests(inputs: ConvertInputs): ConvertResult {
  return new ManifestConverter().convert(inputs);
}

interface ServiceSlot {
  readonly svc: ServiceObject;
  /** Index in the services list, or -1 when the service is left out. */
  pos: number;
}

/** Kinds whose namespace must exist (checked after the namespaces, pods and services are known). */
const POLICY_KINDS: ReadonlySet<ManifestObject['kind']> = new Set(['HTTPRoute', 'GRPCRoute', 'TCPRoute', 'ReferenceGrant', 'VirtualService', 'DestinationRule', 'AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication']);

/**
 * The conversion, kept between calls so that the frequent change (pods coming, going, changing
 * labels or readiness) costs work proportional to the change, not to the mesh: `convert` does
 * everything and remembers its indexes; `updatePods` then patches the last result for changed
 * pods and the services whose selectors they match. Anything else (a namespace, a service, a
 * gateway, the node list, an address conflict) takes `convert` again. Both paths produce the same
 * configuration for the same objects.
 *
 * @example
 * const converter = new ManifestConverter();
 * let result = converter.convert({ objects: store.sortedObjects(), sorted: true, nodes, trustDomain });
 * // after a pod-only change:
 * result = converter.updatePods(changes) ?? converter.convert({ ... });
 */
export class ManifestConverter {
  #trustDomain = '';
  #rootNamespace = DEFAULT_ROOT_NAMESPACE;
  #namespaces = new Map<string, NamespaceObject>();
  #serviceAccounts = new Set<string>();
  #nodes = new Map<string, NodeInfo>();
  #gateways = new Map<string, GatewayObject>();
  #serviceByName = new Map<string, ServiceObject>();
  #waypointAddress = new Map<string, WaypointRef | null>();
  #undeclared = new Set<string>();
  #owners = new Map<string, ManifestObject>();
  #workloads: Workload[] = [];
  #workloadByPod = new Map<PodObject, Workload>();
  #podPos = new Map<string, number>();
  #podByKey = new Map<string, PodObject>();
  #labelIndex = new Map<string, PodObject[]>();
  #services: Service[] = [];
  #servicesByNs = new Map<string, ServiceSlot[]>();
  /** Pods on a node without an IP yet, by store key (node agents need them before the IP exists). */
  #pending = new Map<string, PendingPod>();
  #problems = new Map<string, ObjectProblem[]>();
  #last: ConvertResult | undefined;
  // Unchanged pods and services convert to the same frozen objects, so later stages (encoding,
  // diffing) skip them by identity.
  readonly #workloadCache = new WeakMap<PodObject, Workload>();
  readonly #serviceCache = new WeakMap<ServiceObject, Service>();
  readonly #labelKeys = new WeakMap<PodObject, readonly string[]>();
  readonly #pendingCache = new WeakMap<PodObject, PendingPod>();
  readonly #namespaceCache = new WeakMap<NamespaceObject, MeshNamespace>();

  /** Converts everything. */
  convert(inputs: ConvertInputs): ConvertResult {
    this.#trustDomain = inputs.trustDomain;
    this.#rootNamespace = inputs.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.#namespaces = new Map();
    this.#serviceAccounts = new Set();
    this.#gateways = new Map();
    this.#serviceByName = new Map();
    this.#waypointAddress = new Map();
    this.#undeclared = new Set();
    this.#owners = new Map();
    this.#workloads = [];
    this.#workloadByPod = new Map();
    this.#podPos = new Map();
    this.#podByKey = new Map();
    this.#labelIndex = new Map();
    this.#services = [];
    this.#servicesByNs = new Map();
    this.#pending = new Map();
    this.#problems = new Map();
    this.#nodes = new Map();
    for (const n of inputs.nodes) if (!this.#nodes.has(n.name)) this.#nodes.set(n.name, n);

    const sorted = inputs.sorted ? inputs.objects : sortObjects([...inputs.objects]);
    const pods: PodObject[] = [];
    const services: ServiceObject[] = [];
    const waypoint: { [K in keyof WaypointKinds]: WaypointKinds[K][] } = { gateways: [], httpRoutes: [], grpcRoutes: [], tcpRoutes: [], referenceGrants: [], virtualServices: [], destinationRules: [], authorizationPolicies: [], requestAuthentications: [] };
    const authz: AuthorizationPolicy[] = [];
    const peer: PeerAuthentication[] = [];
    for (const o of sorted) {
      switch (o.kind) {
        case 'Namespace':
          this.#namespaces.set(o.meta.name, o);
          break;
        case 'ServiceAccount':
          this.#serviceAccounts.add(`${o.meta.namespace}/${o.meta.name}`);
          break;
        case 'Pod':
          pods.push(o);
          break;
        case 'Service':
          services.push(o);
          this.#serviceByName.set(`${o.meta.namespace}/${o.meta.name}`, o);
          break;
        case 'Gateway':
          this.#gateways.set(`${o.meta.namespace}/${o.meta.name}`, o);
          waypoint.gateways.push(o);
          break;
        case 'HTTPRoute':
        case 'GRPCRoute':
        case 'TCPRoute':
        case 'ReferenceGrant':
        case 'VirtualService':
        case 'DestinationRule':
          // Invariant: ROUTE_LIST maps each route kind to the list of that kind.
          (waypoint[ROUTE_LIST[o.kind]] as ManifestObject[]).push(o);
          break;
        case 'AuthorizationPolicy':
          if (o.policy) authz.push(o.policy);
          if (o.waypointPolicy) waypoint.authorizationPolicies.push(o);
          break;
        case 'PeerAuthentication':
          peer.push(o.policy);
          break;
        case 'RequestAuthentication':
          // Only waypoints validate JWTs, and only for policies attached with targetRefs.
          if (o.requestAuthentication.targetRefs.length > 0) waypoint.requestAuthentications.push(o);
          break;
        case 'Deployment':
          break; // its pods are created by the lab (or the cluster) and arrive as Pod objects
      }
    }
    // Each object converts on its own (#isolated): one that makes a step throw is left out with
    // an error on it, and the others still convert.
    for (const pod of pods) {
      const key = refKey(objectRef(pod));
      this.#isolated(pod, () => {
        this.#checkNamespace(pod);
        const pending = this.#pendingOf(pod);
        if (pending) this.#pending.set(key, pending);
        const w = this.#convertPod(pod);
        if (!w) return;
        // Indexed before it is listed: nothing below can throw, so a listed workload is complete.
        this.#indexPod(pod);
        this.#podPos.set(key, this.#workloads.length);
        this.#podByKey.set(key, pod);
        this.#workloads.push(w);
      }, () => {
        this.#pending.delete(key);
        this.#workloadByPod.delete(pod);
        this.#unindexPod(pod);
        this.#disown(pod, pod.ips);
      });
    }
    for (const svc of services) {
      const ns = svc.meta.namespace as string;
      let slots = this.#servicesByNs.get(ns);
      if (!slots) this.#servicesByNs.set(ns, (slots = []));
      const slot: ServiceSlot = { svc, pos: -1 };
      slots.push(slot);
      this.#isolated(svc, () => {
        this.#checkNamespace(svc);
        if (svc.clusterIps.length === 0 && !svc.headless) return;
        const clash = svc.clusterIps.find((ip) => this.#owners.has(ip));
        if (clash !== undefined) {
          this.#note(svc, 'spec.clusterIP', `address ${clash} is already used by ${formatRef(objectRef(this.#owners.get(clash)!))}; the service is left out`, 'error');
          return;
        }
        for (const ip of svc.clusterIps) this.#owners.set(ip, svc);
        const converted = this.#convertService(svc);
        slot.pos = this.#services.length;
        this.#services.push(converted);
      }, () => this.#disown(svc, svc.clusterIps));
    }
    for (const o of sorted) if (POLICY_KINDS.has(o.kind)) this.#isolated(o, () => this.#checkNamespace(o));

    const waypointPolicies = waypoint.authorizationPolicies.map((o) => o.waypointPolicy as WaypointPolicy);
    const requestAuthentications = waypoint.requestAuthentications.map((o) => o.requestAuthentication);
    const httpRoutes = waypoint.httpRoutes.map((o) => o.route);
    const grpcRoutes = waypoint.grpcRoutes.map((o) => o.route);
    const tcpRoutes = waypoint.tcpRoutes.map((o) => o.route);
    const referenceGrants = waypoint.referenceGrants.map((o) => o.grant);
    const virtualServices = waypoint.virtualServices.map((o) => o.virtualService);
    const destinationRules = waypoint.destinationRules.map((o) => o.destinationRule);
    const pendingPods = this.#pendingList();
    // Namespaces arrive in name order (conversion order), so equal stores give equal lists.
    const namespaces: MeshNamespace[] = [];
    for (const o of this.#namespaces.values()) {
      const n = this.#isolated(o, () => this.#namespaceOf(o));
      if (n) namespaces.push(n);
    }
    const config: MeshConfig = {
      rootNamespace: this.#rootNamespace,
      nodes: deepFreeze([...this.#nodes.values()]),
      workloads: [...this.#workloads],
      services: [...this.#services],
      authorizationPolicies: authz,
      peerAuthentications: peer,
      ...presentLists({ waypointPolicies, requestAuthentications, httpRoutes, grpcRoutes, tcpRoutes, referenceGrants, virtualServices, destinationRules, pendingPods, namespaces }),
    };
    // Every element is frozen already (parsed objects, cached conversions); freezing the lists and
    // the top is enough, and far cheaper than walking 10,000 workloads again.
    for (const v of Object.values(config)) if (Array.isArray(v)) Object.freeze(v);
    this.#last = { config: Object.freeze(config), waypoint: Object.freeze(waypoint), problems: this.#allProblems() };
    return this.#last;
  }

  /**
   * Patches the last result for changed pods (`prev` → `next`; `next` undefined: deleted).
   * Returns undefined when the change needs a full `convert` (no result yet, a pod whose
   * addresses changed or clash, a pod in an undeclared namespace).
   */
  updatePods(changes: readonly { prev?: PodObject; next?: PodObject }[]): ConvertResult | undefined {
    if (!this.#last) return undefined;
    try {
      return this.#updatePods(this.#last, changes);
    } catch {
      // A step threw on one of the changed objects. The indexes are half patched, so they are
      // dropped: the full conversion the caller now runs rebuilds them and converts each object
      // on its own, leaving out (with an error on it) the one that throws.
      this.#last = undefined;
      return undefined;
    }
  }

  #updatePods(last: ConvertResult, changes: readonly { prev?: PodObject; next?: PodObject }[]): ConvertResult | undefined {
    for (const { prev, next } of changes) {
      const o = (next ?? prev)!;
      const ns = o.meta.namespace as string;
      if (!this.#namespaces.has(ns) && ns !== DEFAULT_NAMESPACE && ns !== this.#rootNamespace) return undefined;
      if (prev && next && !sameStrings(prev.ips, next.ips)) return undefined;
      // An address owned by another object: who wins depends on the conversion order.
      const was = this.#podByKey.get(refKey(objectRef(o)));
      if (was && next && !sameStrings(was.ips, next.ips)) return undefined;
      if (next && next.ips.some((ip) => this.#owners.has(ip) && this.#owners.get(ip) !== was)) return undefined;
    }
    const removed = new Set<number>();
    const appended: Workload[] = [];
    const workloads = [...this.#workloads];
    const touchedServices = new Set<ServiceSlot>();
    for (const { prev, next } of changes) {
      const o = (next ?? prev)!;
      const key = refKey(objectRef(o));
      const ns = o.meta.namespace as string;
      this.#problems.delete(key);
      this.#pending.delete(key);
      const pending = next ? this.#pendingOf(next) : undefined;
      if (pending) this.#pending.set(key, pending);
      for (const slot of this.#servicesByNs.get(ns) ?? []) {
        const sel = slot.svc.selector;
        if (sel && ((prev && labelsMatch(sel, prev.meta.labels)) || (next && labelsMatch(sel, next.meta.labels)))) touchedServices.add(slot);
      }
      const pos = this.#podPos.get(key);
      // The instance converted last time, whatever the caller calls `prev`.
      const was = this.#podByKey.get(key);
      if (was) {
        this.#unindexPod(was);
        this.#workloadByPod.delete(was);
        this.#podByKey.delete(key);
        for (const ip of was.ips) if (this.#owners.get(ip) === was) this.#owners.delete(ip);
      }
      const w = next ? this.#convertPod(next) : undefined;
      if (w) {
        this.#podByKey.set(key, next!);
        this.#indexPod(next!);
        if (pos !== undefined) workloads[pos] = w;
        else appended.push(w);
      } else if (pos !== undefined) {
        removed.add(pos);
      }
    }
    let list = workloads;
    if (removed.size > 0 || appended.length > 0) {
      list = workloads.filter((_, i) => !removed.has(i));
      for (const w of appended) list.push(w); // not push(...appended): a call takes a bounded number of arguments
      this.#podPos = new Map();
      list.forEach((w, i) => this.#podPos.set(`Pod/${w.namespace}/${w.name}`, i));
    }
    this.#workloads = list;
    const services = [...this.#services];
    for (const slot of touchedServices) {
      this.#problems.delete(refKey(objectRef(slot.svc)));
      if (slot.pos >= 0) services[slot.pos] = this.#convertService(slot.svc);
    }
    this.#services = services;
    const { pendingPods: _was, ...rest } = last.config;
    const pendingPods = this.#pendingList();
    const config: MeshConfig = Object.freeze({
      ...rest,
      workloads: Object.freeze([...list]),
      services: Object.freeze([...services]),
      ...(pendingPods.length > 0 ? { pendingPods: Object.freeze(pendingPods) } : {}),
    });
    this.#last = { config, waypoint: last.waypoint, problems: this.#allProblems() };
    return this.#last;
  }

  // ---- internals ----------------------------------------------------------------------------

  #note(o: ManifestObject, fieldPath: string, message: string, severity: Severity = 'warning'): void {
    const key = refKey(objectRef(o));
    let list = this.#problems.get(key);
    if (!list) this.#problems.set(key, (list = []));
    list.push({ object: formatRef(objectRef(o)), field: fieldPath, message, severity, ...(o.source !== undefined ? { source: o.source } : {}) });
  }

  #allProblems(): ObjectProblem[] {
    const out: ObjectProblem[] = [];
    // Loops, not push(...l): one object's list may be longer than a call's arguments can be.
    for (const l of this.#problems.values()) for (const x of l) out.push(x);
    return out;
  }

  /**
   * Runs one object's conversion `step`. Anything it throws is a bug of the mesh, not of the
   * object, and must not cost the other objects their configuration: the object gets an error
   * saying so, `undo` takes back what the step had claimed (addresses, index entries), and the
   * conversion goes on without it.
   */
  #isolated<T>(o: ManifestObject, step: () => T, undo?: () => void): T | undefined {
    try {
      return step();
    } catch (e) {
      try {
        undo?.();
      } catch {
        // The object is left out either way; what undo could not take back is rebuilt by the next full conversion.
      }
      // The error's own text, which may repeat a user's string: escaped, and cut long after
      // quote()'s 100 characters, since the end of it is what a bug report needs.
      const why = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      const shown = JSON.stringify(why.length > INTERNAL_ERROR_MAX ? why.slice(0, INTERNAL_ERROR_MAX) : why) + (why.length > INTERNAL_ERROR_MAX ? `… (${why.length} characters)` : '');
      this.#note(o, '', `internal error converting this object: ${shown}; this is a bug in the mesh, please report it`, 'error');
      return undefined;
    }
  }

  /** Releases the addresses `o` owns. */
  #disown(o: ManifestObject, ips: readonly string[]): void {
    for (const ip of ips) if (this.#owners.get(ip) === o) this.#owners.delete(ip);
  }

  #nsLabels(ns: string): Readonly<Record<string, string>> {
    return this.#namespaces.get(ns)?.meta.labels ?? {};
  }

  #checkNamespace(o: ManifestObject): void {
    const ns = o.meta.namespace as string;
    if (this.#namespaces.has(ns) || ns === DEFAULT_NAMESPACE || ns === this.#rootNamespace || this.#undeclared.has(ns)) return;
    this.#undeclared.add(ns);
    this.#note(o, 'metadata.namespace', `namespace ${quote(ns)} is not declared (no Namespace object); its pods are outside the mesh unless labelled themselves`);
  }

  /** The waypoint a pod or service sends its traffic through, from its labels and its namespace's. */
  #resolveWaypoint(o: PodObject | ServiceObject, forKind: 'service' | 'workload'): WaypointRef | undefined {
    const ns = o.meta.namespace as string;
    const own = o.meta.labels[USE_WAYPOINT_LABEL];
    if (own === 'none') return undefined;
    // A waypoint's own pods and service never send their traffic through a waypoint.
    if (o.meta.labels[GATEWAY_NAME_LABEL] !== undefined || (o.kind === 'Service' && this.#gateways.get(`${ns}/${o.meta.name}`)?.gatewayClassName === WAYPOINT_CLASS)) return undefined;
    const fromOwn = own !== undefined;
    const nsLabels = this.#nsLabels(ns);
    const name = own ?? nsLabels[USE_WAYPOINT_LABEL];
    if (name === undefined || name === 'none') return undefined;
    const wpNs = (fromOwn ? o.meta.labels[USE_WAYPOINT_NAMESPACE_LABEL] : nsLabels[USE_WAYPOINT_NAMESPACE_LABEL]) ?? ns;
    const where = fromOwn ? `metadata.labels["${USE_WAYPOINT_LABEL}"]` : `namespace ${ns} label ${USE_WAYPOINT_LABEL}`;
    const gw = this.#gateways.get(`${wpNs}/${name}`);
    if (!gw || gw.gatewayClassName !== WAYPOINT_CLASS) {
      // Reported on each object that asks for it itself, and on each service of a namespace that
      // does (its pods would repeat it for every replica).
      if (fromOwn || o.kind === 'Service') this.#note(o, fromOwn ? where : '', `waypoint ${wpNs}/${name} (${where}) is not a Gateway of class ${WAYPOINT_CLASS}; traffic goes direct`);
      return undefined;
    }
    if (gw.waypointFor !== 'all' && gw.waypointFor !== forKind) {
      if (fromOwn) this.#note(o, where, `waypoint ${wpNs}/${name} is for ${gw.waypointFor} traffic (${WAYPOINT_FOR_LABEL}), not ${forKind} traffic; traffic goes direct`);
      return undefined;
    }
    const key = `${wpNs}/${name}`;
    let ref = this.#waypointAddress.get(key);
    if (ref === undefined) {
      const address = gw.addresses[0] ?? this.#serviceByName.get(key)?.clusterIps[0];
      ref = address === undefined ? null : Object.freeze({ address, hbonePort: gw.hbonePort ?? WAYPOINT_HBONE_PORT });
      this.#waypointAddress.set(key, ref);
    }
    if (ref === null) {
      this.#note(o, fromOwn ? where : '', `waypoint ${key} has no address yet (no status.addresses and no Service ${key} with a cluster IP); traffic goes direct`);
      return undefined;
    }
    return ref;
  }

  /** Istio's rule: the pod's own label (`none` opts out, `ambient` opts in), else its namespace's. */
  #ambient(pod: PodObject): boolean {
    const podMode = pod.meta.labels[DATAPLANE_MODE_LABEL];
    return podMode === DATAPLANE_MODE.none ? false : podMode === DATAPLANE_MODE.ambient || this.#nsLabels(pod.meta.namespace as string)[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE.ambient;
  }

  /**
   * The pending pod of a pod scheduled on a node that has no IP yet (host-network pods never:
   * they are not wired by CNI; finished pods never: no sandbox will be made for them). Its node
   * need not be in the node list: node agents run on nodes whose ztunnel is not up yet.
   */
  #pendingOf(pod: PodObject): PendingPod | undefined {
    if (pod.hostNetwork || pod.nodeName === undefined || pod.ips.length > 0 || pod.finished) return undefined;
    // A waypoint is never captured, whatever its namespace says (Istio's node agent excludes it too).
    const waypoint = pod.meta.labels[WAYPOINT_MANAGED_LABEL] === WAYPOINT_MANAGED_VALUE;
    const protocol = this.#ambient(pod) && !waypoint ? 'HBONE' : 'TCP';
    let p = this.#pendingCache.get(pod);
    if (!p || p.protocol !== protocol) {
      p = deepFreeze<PendingPod>({
        namespace: pod.meta.namespace as string,
        name: pod.meta.name,
        ...(pod.uid !== undefined ? { uid: pod.uid } : {}),
        node: pod.nodeName,
        labels: pod.meta.labels,
        protocol,
      });
      this.#pendingCache.set(pod, p);
    }
    return p;
  }

  /** Pending pods in conversion order (namespace, name), whichever path changed them. */
  #pendingList(): PendingPod[] {
    return [...this.#pending.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, p]) => p);
  }

  #namespaceOf(o: NamespaceObject): MeshNamespace {
    const mode = o.meta.labels[DATAPLANE_MODE_LABEL];
    let n = this.#namespaceCache.get(o);
    if (!n) {
      n = Object.freeze({ name: o.meta.name, ...(mode !== undefined ? { dataplaneMode: mode } : {}) });
      this.#namespaceCache.set(o, n);
    }
    return n;
  }

  /** The workload of a pod, or undefined when it is not one (yet); claims its addresses. */
  #convertPod(pod: PodObject): Workload | undefined {
    const ns = pod.meta.namespace as string;
    if (pod.hostNetwork || pod.nodeName === undefined || pod.ips.length === 0) return undefined;
    if (!this.#nodes.has(pod.nodeName)) {
      this.#note(pod, 'spec.nodeName', `node ${quote(pod.nodeName)} is not in the node list; the pod is left out until the node registers`);
      return undefined;
    }
    const clash = pod.ips.find((ip) => this.#owners.has(ip));
    if (clash !== undefined) {
      this.#note(pod, 'status.podIPs', `address ${clash} is already used by ${formatRef(objectRef(this.#owners.get(clash)!))}; the pod is left out`, 'error');
      return undefined;
    }
    for (const ip of pod.ips) this.#owners.set(ip, pod);
    if (pod.serviceAccount !== 'default' && !this.#serviceAccounts.has(`${ns}/${pod.serviceAccount}`)) {
      this.#note(pod, 'spec.serviceAccountName', `service account ${ns}/${pod.serviceAccount} is not declared; the identity is issued anyway`);
    }
    const ambient = this.#ambient(pod);
    const wp = ambient ? this.#resolveWaypoint(pod, 'workload') : undefined;
    const protocol = ambient ? 'HBONE' : 'TCP';
    let w = this.#workloadCache.get(pod);
    // Everything else of the workload comes from the (immutable) pod object itself.
    if (!w || w.protocol !== protocol || w.trustDomain !== this.#trustDomain || !sameWaypoint(w.waypoint, wp)) {
      // The identity must be a valid SPIFFE ID. The namespace and the service account (either
      // field) were checked at parse time, so this only fails for a trust domain the caller got
      // wrong, or a parser that let a bad name through: #isolated turns that into an error on
      // this pod alone.
      formatSpiffeId({ trustDomain: this.#trustDomain, namespace: ns, serviceAccount: pod.serviceAccount });
      w = deepFreeze<Workload>({
        uid: `${ns}/${pod.meta.name}`,
        name: pod.meta.name,
        namespace: ns,
        serviceAccount: pod.serviceAccount,
        trustDomain: this.#trustDomain,
        node: pod.nodeName,
        ips: pod.ips,
        protocol,
        labels: pod.meta.labels,
        healthy: pod.healthy,
        ...(wp ? { waypoint: wp } : {}),
      });
      this.#workloadCache.set(pod, w);
    }
    this.#workloadByPod.set(pod, w);
    return w;
  }

  #podLabelKeys(pod: PodObject): readonly string[] {
    let keys = this.#labelKeys.get(pod);
    if (!keys) {
      const ns = pod.meta.namespace as string;
      keys = Object.entries(pod.meta.labels).map(([k, v]) => `${ns}\u0000${k}\u0000${v}`);
      this.#labelKeys.set(pod, keys);
    }
    return keys;
  }

  /** Pods are indexed per namespace by label pair, so a selector only looks at pods carrying its first label. */
  #indexPod(pod: PodObject): void {
    for (const key of this.#podLabelKeys(pod)) {
      let l = this.#labelIndex.get(key);
      if (!l) this.#labelIndex.set(key, (l = []));
      l.push(pod);
    }
  }

  #unindexPod(pod: PodObject): void {
    for (const key of this.#podLabelKeys(pod)) {
      const l = this.#labelIndex.get(key);
      const i = l ? l.indexOf(pod) : -1;
      if (i >= 0) l!.splice(i, 1);
    }
  }

  #convertService(svc: ServiceObject): Service {
    const ns = svc.meta.namespace as string;
    let selected: PodObject[] = [];
    if (svc.selector) {
      const entries = Object.entries(svc.selector);
      const [k0, v0] = entries[0] as [string, string];
      const candidates = this.#labelIndex.get(`${ns}\u0000${k0}\u0000${v0}`) ?? [];
      selected = entries.length === 1 ? candidates : candidates.filter((p) => labelsMatch(svc.selector as Record<string, string>, p.meta.labels));
    }
    const ports: ServicePort[] = [];
    svc.ports.forEach((sp, i) => {
      if (typeof sp.targetPort === 'number') {
        ports.push({ port: sp.port, targetPort: sp.targetPort, ...(sp.name !== undefined ? { name: sp.name } : {}), ...(sp.appProtocol !== undefined ? { appProtocol: sp.appProtocol } : {}) });
        return;
      }
      // A named target port: the pods' container port of that name. The model has one target
      // port per service port, so pods that disagree are reported and the lowest one wins.
      const found = new Set<number>();
      for (const pod of selected) {
        const n = pod.namedPorts.get(sp.targetPort);
        if (n !== undefined) found.add(n);
      }
      const all = [...found].sort((a, b) => a - b);
      const first = all[0];
      if (first === undefined) {
        if (selected.length > 0) this.#note(svc, `spec.ports[${i}].targetPort`, `no selected pod has a container port named ${quote(sp.targetPort)}; this port is left out`);
        return;
      }
      if (all.length > 1) this.#note(svc, `spec.ports[${i}].targetPort`, `pods disagree on the port named ${quote(sp.targetPort)} (${all.join(', ')}); using ${first}`);
      ports.push({ port: sp.port, targetPort: first, ...(sp.name !== undefined ? { name: sp.name } : {}), ...(sp.appProtocol !== undefined ? { appProtocol: sp.appProtocol } : {}) });
    });
    const wp = this.#resolveWaypoint(svc, 'service');
    // Sorted, so that the same pods give the same service whatever order they arrived in.
    const endpoints = selected.map((p) => (this.#workloadByPod.get(p) as Workload).uid).sort();
    let out = this.#serviceCache.get(svc);
    if (!out || !sameWaypoint(out.waypoint, wp) || !samePorts(out.ports, ports) || !sameStrings(out.endpoints, endpoints)) {
      out = deepFreeze<Service>({
        name: svc.meta.name,
        namespace: ns,
        hostname: `${svc.meta.name}.${ns}.svc.${CLUSTER_DNS_DOMAIN}`,
        vips: svc.clusterIps,
        ports,
        endpoints,
        subjectAltNames: [],
        ...(wp ? { waypoint: wp } : {}),
      });
      this.#serviceCache.set(svc, out);
    }
    return out;
  }
}

function sameWaypoint(a: WaypointRef | undefined, b: WaypointRef | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.address === b.address && a.hbonePort === b.hbonePort);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function samePorts(a: readonly ServicePort[], b: readonly ServicePort[]): boolean {
  return a.length === b.length && a.every((x, i) => x.port === b[i]!.port && x.targetPort === b[i]!.targetPort && x.name === b[i]!.name && x.appProtocol === b[i]!.appProtocol);
}
