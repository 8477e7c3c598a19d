/**
 * The resources the Kubernetes source reads, and the URL paths of the REST API. docs/kubernetes.md
 * lists the same resources with the RBAC verbs they need; keep the two in step.
 */
import type { ManifestKind } from '../../core/kube/objects.js';

/** One watched resource: where it lives in the API, and what it becomes. */
export interface KubeResource {
  /** `Node` feeds the node list; every other kind feeds the manifest store. */
  readonly kind: ManifestKind | 'Node';
  /** API group; `''` is the core group. */
  readonly group: string;
  readonly version: string;
  /** URL resource name. */
  readonly plural: string;
  readonly namespaced: boolean;
  /** Whether the control plane writes this kind's `status` (the leader only). */
  readonly status: boolean;
}

/** `v1`, `security.istio.io/v1`. */
export function apiVersionOf(r: Pick<KubeResource, 'group' | 'version'>): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

/**
 * The resources read, in the order they are first listed: kinds others refer to first, so the first
 * conversion after start-up already sees namespaces and nodes when it meets pods.
 * Deployments are not read (their pods are); EndpointSlices neither (endpoints are the pods a
 * service selects, as in the file source).
 */
export const WATCHED_RESOURCES: readonly KubeResource[] = Object.freeze([
  { kind: 'Namespace', group: '', version: 'v1', plural: 'namespaces', namespaced: false, status: false },
  { kind: 'Node', group: '', version: 'v1', plural: 'nodes', namespaced: false, status: false },
  { kind: 'ServiceAccount', group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true, status: false },
  { kind: 'Pod', group: '', version: 'v1', plural: 'pods', namespaced: true, status: false },
  // status: the `istio.io/WaypointBound` condition of a Service using a waypoint, as istiod writes it.
  { kind: 'Service', group: '', version: 'v1', plural: 'services', namespaced: true, status: true },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespaced: true, status: true },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', namespaced: true, status: true },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', namespaced: true, status: true },
  { kind: 'TCPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'tcproutes', namespaced: true, status: true },
  // v1beta1: served by every Gateway API release since 0.6 (v1 only since 1.5); no status upstream.
  { kind: 'ReferenceGrant', group: 'gateway.networking.k8s.io', version: 'v1beta1', plural: 'referencegrants', namespaced: true, status: false },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespaced: true, status: true },
  { kind: 'PeerAuthentication', group: 'security.istio.io', version: 'v1', plural: 'peerauthentications', namespaced: true, status: true },
  { kind: 'RequestAuthentication', group: 'security.istio.io', version: 'v1', plural: 'requestauthentications', namespaced: true, status: false },
  { kind: 'VirtualService', group: 'networking.istio.io', version: 'v1', plural: 'virtualservices', namespaced: true, status: true },
  { kind: 'DestinationRule', group: 'networking.istio.io', version: 'v1', plural: 'destinationrules', namespaced: true, status: true },
] as const satisfies readonly KubeResource[]);

/** The resource of a kind, if it is read. */
export function resourceOf(kind: string): KubeResource | undefined {
  return WATCHED_RESOURCES.find((r) => r.kind === kind);
}

function prefix(r: Pick<KubeResource, 'group' | 'version'>): string {
  return r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
}

/** The collection across all namespaces (`/api/v1/pods`), or in one. */
export function collectionPath(r: Pick<KubeResource, 'group' | 'version' | 'plural'>, namespace?: string): string {
  return namespace === undefined ? `${prefix(r)}/${r.plural}` : `${prefix(r)}/namespaces/${encodeURIComponent(namespace)}/${r.plural}`;
}

/** One object, or its subresource (`.../authorizationpolicies/deny/status`). */
export function objectPath(r: Pick<KubeResource, 'group' | 'version' | 'plural'>, namespace: string | undefined, name: string, subresource?: string): string {
  return `${collectionPath(r, namespace)}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
}
