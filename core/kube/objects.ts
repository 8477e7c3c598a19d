/**
 * Kubernetes objects as the mesh keeps them: the kinds it accepts (`SUPPORTED_KINDS`), one typed
 * interface per kind, how an object is named (`ObjectRef`, `formatRef`, `refKey`) and what can be
 * wrong with one (`ObjectProblem`, `formatProblem`).
 *
 * Manifests (the YAML a user would `kubectl apply`) become the internal model in two steps, each
 * in one place: `parse.ts` reads documents into these objects, one at a time, and `convert.ts`
 * turns the accepted objects of a store (`store.ts`), plus the node list, into one frozen
 * `MeshConfig`.
 *
 * Objects are converted in a fixed order (by kind, namespace, name: `sortObjects`), so the same
 * set of objects always gives the same configuration, whatever order the files were read in.
 */
import { PORTS } from '../hbone/constants.js';
import type { DestinationRule, HttpRoute, TcpRoute, VirtualService } from '../model/routes.js';
import type { ReferenceGrant } from '../model/reference-grant.js';
import type { AuthorizationPolicy, PeerAuthentication, RequestAuthentication, WaypointPolicy } from '../model/types.js';

// ---- kinds -------------------------------------------------------------------------------------

/** Istio's HBONE port on a waypoint. */
export const WAYPOINT_HBONE_PORT = PORTS.hbone;
/** Namespace of pods and services that name none, as in Kubernetes. */
export const DEFAULT_NAMESPACE = 'default';

/** The kinds the store accepts, with the apiVersions each may be written with. */
export const SUPPORTED_KINDS = Object.freeze({
  Namespace: { apiVersions: ['v1'], namespaced: false },
  ServiceAccount: { apiVersions: ['v1'], namespaced: true },
  Pod: { apiVersions: ['v1'], namespaced: true },
  Service: { apiVersions: ['v1'], namespaced: true },
  Deployment: { apiVersions: ['apps/v1'], namespaced: true },
  AuthorizationPolicy: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], namespaced: true },
  PeerAuthentication: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], namespaced: true },
  RequestAuthentication: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], namespaced: true },
  Gateway: { apiVersions: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'], namespaced: true },
  HTTPRoute: { apiVersions: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'], namespaced: true },
  // v1 only: the upstream CRD (v1.6.1) serves no other version of GRPCRoute.
  GRPCRoute: { apiVersions: ['gateway.networking.k8s.io/v1'], namespaced: true },
  // v1alpha2, the version Istio 1.26 reads for waypoints; v1 since Gateway API 1.5 (the one
  // v1.6.1's CRD serves, and the one the Kubernetes source watches), the same schema.
  TCPRoute: { apiVersions: ['gateway.networking.k8s.io/v1alpha2', 'gateway.networking.k8s.io/v1'], namespaced: true },
  // v1beta1 is served by every Gateway API release since 0.6 (the storage version still in
  // v1.6.1); v1 since 1.5.
  ReferenceGrant: { apiVersions: ['gateway.networking.k8s.io/v1beta1', 'gateway.networking.k8s.io/v1'], namespaced: true },
  VirtualService: {
    apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'],
    namespaced: true,
  },
  DestinationRule: {
    apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'],
    namespaced: true,
  },
} as const);

export type ManifestKind = keyof typeof SUPPORTED_KINDS;
/** The supported kinds, in conversion order. */
export const KIND_NAMES = Object.keys(SUPPORTED_KINDS) as ManifestKind[];
/** Conversion order: kinds others refer to come first (only matters for messages). */
const KIND_ORDER = new Map<string, number>(KIND_NAMES.map((k, i) => [k, i]));

// ---- objects and problems ----------------------------------------------------------------

/** Which object: `Pod default/web`. Cluster-scoped kinds have no namespace. */
export interface ObjectRef {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

/** `Pod default/web`, `Namespace apps`. */
export function formatRef(ref: ObjectRef): string {
  return ref.namespace === undefined ? `${ref.kind} ${ref.name}` : `${ref.kind} ${ref.namespace}/${ref.name}`;
}

/** The store key of an object (kind, namespace, name). */
export function refKey(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace ?? ''}/${ref.name}`;
}

/**
 * - `error`: the object was rejected (not stored, or left out of the configuration);
 * - `warning`: the object applies, but not entirely as written (the message says what was dropped);
 * - `info`: nothing wrong, e.g. a pod not scheduled yet.
 */
export type Severity = 'error' | 'warning' | 'info';

/** One problem with one object, naming the field (`spec.selector.app`; empty for the object itself). */
export interface ObjectProblem {
  /** `Pod default/web`, or `document 3` when the object could not even be identified. */
  readonly object: string;
  readonly field: string;
  readonly message: string;
  readonly severity: Severity;
  /** Where the object came from: `apps.yaml#2` (file, document number from 1). */
  readonly source?: string;
}

/** `apps.yaml#2: Pod default/web: spec.nodeName: ...`. */
export function formatProblem(p: ObjectProblem): string {
  const where = p.source ? `${p.source}: ` : '';
  return `${where}${p.object}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

/** `metadata` as the mesh reads it. */
export interface Meta {
  readonly name: string;
  /** Undefined for cluster-scoped kinds. */
  readonly namespace?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

interface Base<K extends ManifestKind> {
  readonly kind: K;
  readonly apiVersion: string;
  readonly meta: Meta;
  /** Where it came from (`file#doc`). */
  readonly source?: string;
  /** The document as written (deeply frozen), for waypoints and debug output. */
  readonly raw: Readonly<Record<string, unknown>>;
  /** JSON text of `raw`: the store compares it to tell a real change from a re-read. */
  readonly rawJson: string;
}

export interface NamespaceObject extends Base<'Namespace'> {}
export interface ServiceAccountObject extends Base<'ServiceAccount'> {}

export interface PodObject extends Base<'Pod'> {
  /** `metadata.uid` when the document has one (API objects do; the lab's files do not). */
  readonly uid?: string;
  readonly nodeName?: string;
  readonly serviceAccount: string;
  /** Canonical pod IPs from `status.podIPs` / `status.podIP` (the lab or the kubelet fills them). */
  readonly ips: readonly string[];
  readonly hostNetwork: boolean;
  /** False when the status says the pod is not running or not ready. */
  readonly healthy: boolean;
  /** Named container ports, for Services whose targetPort is a name. */
  readonly namedPorts: ReadonlyMap<string, number>;
  /** `status.phase` is Succeeded or Failed: its containers will not run again. */
  readonly finished?: boolean;
}

export interface DeploymentObject extends Base<'Deployment'> {
  readonly replicas: number;
  readonly selector: Readonly<Record<string, string>>;
  readonly templateLabels: Readonly<Record<string, string>>;
}

export interface ServiceSpecPort {
  readonly port: number;
  /** A number, or a container port name resolved per endpoint at conversion. */
  readonly targetPort: number | string;
  readonly name?: string;
  /** Kubernetes `appProtocol` (core/model/app-protocol.ts). */
  readonly appProtocol?: string;
}

export interface ServiceObject extends Base<'Service'> {
  /** Undefined: no selector (endpoints managed by hand, which the mesh does not read). */
  readonly selector?: Readonly<Record<string, string>>;
  readonly ports: readonly ServiceSpecPort[];
  /** Canonical cluster IPs; empty when headless or not assigned yet. */
  readonly clusterIps: readonly string[];
  readonly headless: boolean;
}

export interface AuthorizationPolicyObject extends Base<'AuthorizationPolicy'> {
  /** The L4 policy ztunnel enforces; undefined when the policy targets waypoints (`targetRefs`). */
  readonly policy?: AuthorizationPolicy;
  /** The L7 policy waypoints enforce, when it attaches with `targetRefs`. */
  readonly waypointPolicy?: WaypointPolicy;
}

export interface PeerAuthenticationObject extends Base<'PeerAuthentication'> {
  readonly policy: PeerAuthentication;
}

export interface RequestAuthenticationObject extends Base<'RequestAuthentication'> {
  readonly requestAuthentication: RequestAuthentication;
}

export interface GatewayObject extends Base<'Gateway'> {
  readonly gatewayClassName: string;
  /** `istio.io/waypoint-for`; only meaningful for waypoints. */
  readonly waypointFor: 'service' | 'workload' | 'all' | 'none';
  /** The HBONE listener's port (waypoints), else undefined. */
  readonly hbonePort?: number;
  /** `status.addresses[*].value` that are IPs. */
  readonly addresses: readonly string[];
}

export interface HTTPRouteObject extends Base<'HTTPRoute'> {
  readonly route: HttpRoute;
}
/** A ReferenceGrant: which routes of other namespaces may use Services of its namespace. */
export interface ReferenceGrantObject extends Base<'ReferenceGrant'> {
  readonly grant: ReferenceGrant;
}
/** A GRPCRoute, converted to HTTP route rules (`core/kube/routes/grpc-route.ts`). */
export interface GRPCRouteObject extends Base<'GRPCRoute'> {
  readonly route: HttpRoute;
}
/** A TCPRoute on Service parents (`core/kube/routes/tcp-route.ts`). */
export interface TCPRouteObject extends Base<'TCPRoute'> {
  readonly route: TcpRoute;
}
export interface VirtualServiceObject extends Base<'VirtualService'> {
  readonly virtualService: VirtualService;
}
export interface DestinationRuleObject extends Base<'DestinationRule'> {
  readonly destinationRule: DestinationRule;
}

export type ManifestObject =
  | NamespaceObject
  | ServiceAccountObject
  | PodObject
  | DeploymentObject
  | ServiceObject
  | AuthorizationPolicyObject
  | PeerAuthenticationObject
  | RequestAuthenticationObject
  | GatewayObject
  | HTTPRouteObject
  | GRPCRouteObject
  | TCPRouteObject
  | ReferenceGrantObject
  | VirtualServiceObject
  | DestinationRuleObject;

/** The ref of a parsed object. */
export function objectRef(o: ManifestObject): ObjectRef {
  return o.meta.namespace === undefined
    ? { kind: o.kind, name: o.meta.name }
    : { kind: o.kind, namespace: o.meta.namespace, name: o.meta.name };
}

/** What every object has but its kind: what `parseObject` fills before the kind's own fields. */
export type BaseFields = Omit<Base<ManifestKind>, 'kind'>;

function sortKey(o: ManifestObject): string {
  return `${String(KIND_ORDER.get(o.kind)).padStart(2, '0')}/${o.meta.namespace ?? ''}/${o.meta.name}`;
}

/** `objects` in conversion order (kind, namespace, name); the store keeps its objects so. */
export function sortObjects(objects: ManifestObject[]): ManifestObject[] {
  const keyed = objects.map((o) => ({ k: sortKey(o), o }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  return keyed.map((x) => x.o);
}
