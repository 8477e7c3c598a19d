/**
 * The custom resources the base chart defines, as a table: tools/crds/generate.ts turns each row into
 * a CustomResourceDefinition of charts/base/crds/ (`node dist/tools/crds/cli.js charts/base`).
 *
 * Names, scope, short names, categories, the served versions, the storage version and the printer
 * columns are upstream's (Gateway API v1.6.1 standard channel; Istio's crd-all.gen.yaml of
 * 2026-08-22), so that upstream's CRDs can later be applied over ours, or be there already, without
 * losing stored objects: test/charts/crds.test.ts compares them with ../shared/crds. The schemas are
 * not upstream's (generate.ts says why).
 */

/** One printer column (`kubectl get`): JSONPath only, which every Kubernetes version since 1.16 evaluates. */
export interface PrinterColumn {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  readonly jsonPath: string;
  readonly description?: string;
  readonly priority?: number;
}

export interface CrdKind {
  readonly group: string;
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly listKind: string;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  readonly scope: 'Namespaced' | 'Cluster';
  /** Every version upstream still serves, in upstream's order; all are served by ours. */
  readonly versions: readonly string[];
  /** The one version objects are stored in; upstream's, so that switching CRDs needs no migration. */
  readonly storage: string;
  /** The same for every version, as upstream has them. */
  readonly printerColumns: readonly PrinterColumn[];
  /**
   * `api-approved.kubernetes.io`: an API server refuses an apiextensions.k8s.io/v1 CRD of a
   * `*.k8s.io` group without it (Kubernetes >= 1.16, KEP 1111). The group's approval is upstream's.
   */
  readonly apiApproval?: string;
  /** Why the mesh needs the kind (what reads or writes it). */
  readonly why: string;
  /** Upstream's kind has no status (ReferenceGrant): no `status` in the schema, no status subresource. */
  readonly noStatus?: boolean;
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** The Gateway API PR upstream v1.6.1 names as the approval of its group. */
const GATEWAY_API_APPROVAL = 'https://github.com/kubernetes-sigs/gateway-api/pull/4530';

// Upstream's own column descriptions, kept word for word (they show in `kubectl explain`-like tools).
const ISTIO_AGE = {
  name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC. Populated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md#metadata',
} as const satisfies PrinterColumn;
const ISTIO_AGE_DR = {
  ...ISTIO_AGE,
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC. Populated by the system. Read-only. Null for lists. For more information, see [Kubernetes API Conventions](https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#metadata)',
} as const satisfies PrinterColumn;
const GW_AGE = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' } as const satisfies PrinterColumn;

/** The kinds, in the order of charts/base/crds/README.md. */
export const CRD_KINDS: readonly CrdKind[] = Object.freeze([
  {
    group: GATEWAY_GROUP, kind: 'GatewayClass', plural: 'gatewayclasses', singular: 'gatewayclass', listKind: 'GatewayClassList',
    shortNames: ['gc'], categories: ['gateway-api'], scope: 'Cluster', versions: ['v1', 'v1beta1'], storage: 'v1', apiApproval: GATEWAY_API_APPROVAL,
    printerColumns: [
      { name: 'Controller', type: 'string', jsonPath: '.spec.controllerName' },
      { name: 'Accepted', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].status' },
      GW_AGE,
      { name: 'Description', type: 'string', jsonPath: '.spec.description', priority: 1 },
    ],
    why: 'waypoint Gateways name the class `istio-waypoint`, and a waypoint policy in the root namespace may target it (not watched by the control plane)',
  },
  {
    group: GATEWAY_GROUP, kind: 'Gateway', plural: 'gateways', singular: 'gateway', listKind: 'GatewayList',
    shortNames: ['gtw'], categories: ['gateway-api'], scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1', apiApproval: GATEWAY_API_APPROVAL,
    printerColumns: [
      { name: 'Class', type: 'string', jsonPath: '.spec.gatewayClassName' },
      { name: 'Address', type: 'string', jsonPath: '.status.addresses[*].value' },
      { name: 'Programmed', type: 'string', jsonPath: '.status.conditions[?(@.type=="Programmed")].status' },
      GW_AGE,
    ],
    why: 'waypoints; watched by the control plane, which writes their status',
  },
  {
    group: GATEWAY_GROUP, kind: 'HTTPRoute', plural: 'httproutes', singular: 'httproute', listKind: 'HTTPRouteList',
    shortNames: [], categories: ['gateway-api'], scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1', apiApproval: GATEWAY_API_APPROVAL,
    printerColumns: [{ name: 'Hostnames', type: 'string', jsonPath: '.spec.hostnames' }, GW_AGE],
    why: 'L7 routing in waypoints; watched by the control plane, which writes their status',
  },
  {
    group: GATEWAY_GROUP, kind: 'GRPCRoute', plural: 'grpcroutes', singular: 'grpcroute', listKind: 'GRPCRouteList',
    shortNames: [], categories: ['gateway-api'], scope: 'Namespaced', versions: ['v1'], storage: 'v1', apiApproval: GATEWAY_API_APPROVAL,
    printerColumns: [{ name: 'Hostnames', type: 'string', jsonPath: '.spec.hostnames' }, GW_AGE],
    why: 'gRPC routing in waypoints (converted to HTTP routes); watched by the control plane, which writes their status',
  },
  {
    group: GATEWAY_GROUP, kind: 'TCPRoute', plural: 'tcproutes', singular: 'tcproute', listKind: 'TCPRouteList',
    shortNames: [], categories: ['gateway-api'], scope: 'Namespaced', versions: ['v1'], storage: 'v1', apiApproval: GATEWAY_API_APPROVAL,
    printerColumns: [GW_AGE],
    why: 'weighted splits of TCP connections in waypoints; watched by the control plane (v1), which writes their status',
  },
  {
    group: GATEWAY_GROUP, kind: 'ReferenceGrant', plural: 'referencegrants', singular: 'referencegrant', listKind: 'ReferenceGrantList',
    shortNames: ['refgrant'], categories: ['gateway-api'], scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1beta1', apiApproval: GATEWAY_API_APPROVAL,
    printerColumns: [GW_AGE],
    why: 'which routes may use a Service of another namespace (backendRefs); watched by the control plane (v1beta1), which writes no status for it',
    noStatus: true,
  },
  {
    group: 'security.istio.io', kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', singular: 'authorizationpolicy', listKind: 'AuthorizationPolicyList',
    shortNames: ['ap'], categories: ['istio-io', 'security-istio-io'], scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1',
    printerColumns: [{ name: 'Action', type: 'string', jsonPath: '.spec.action', description: 'The operation to take.' }, ISTIO_AGE],
    why: 'L4 and L7 authorization; watched by the control plane, which writes their status',
  },
  {
    group: 'security.istio.io', kind: 'PeerAuthentication', plural: 'peerauthentications', singular: 'peerauthentication', listKind: 'PeerAuthenticationList',
    shortNames: ['pa'], categories: ['istio-io', 'security-istio-io'], scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1',
    printerColumns: [{ name: 'Mode', type: 'string', jsonPath: '.spec.mtls.mode', description: 'Defines the mTLS mode used for peer authentication.' }, ISTIO_AGE],
    why: 'mTLS mode (STRICT refuses plaintext); watched by the control plane, which writes their status',
  },
  {
    group: 'security.istio.io', kind: 'RequestAuthentication', plural: 'requestauthentications', singular: 'requestauthentication', listKind: 'RequestAuthenticationList',
    shortNames: ['ra'], categories: ['istio-io', 'security-istio-io'], scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1',
    printerColumns: [],
    why: 'JWT rules waypoints enforce (targetRefs); watched by the control plane, which writes no status for them',
  },
  {
    group: 'networking.istio.io', kind: 'VirtualService', plural: 'virtualservices', singular: 'virtualservice', listKind: 'VirtualServiceList',
    shortNames: ['vs'], categories: ['istio-io', 'networking-istio-io'], scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1',
    printerColumns: [
      { name: 'Gateways', type: 'string', jsonPath: '.spec.gateways', description: 'The names of gateways and sidecars that should apply these routes' },
      { name: 'Hosts', type: 'string', jsonPath: '.spec.hosts', description: 'The destination hosts to which traffic is being sent' },
      ISTIO_AGE,
    ],
    why: 'L7 routing in waypoints; watched by the control plane, which writes their status',
  },
  {
    group: 'networking.istio.io', kind: 'DestinationRule', plural: 'destinationrules', singular: 'destinationrule', listKind: 'DestinationRuleList',
    shortNames: ['dr'], categories: ['istio-io', 'networking-istio-io'], scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1',
    printerColumns: [{ name: 'Host', type: 'string', jsonPath: '.spec.host', description: 'The name of a service from the service registry' }, ISTIO_AGE_DR],
    why: 'subsets and traffic policy in waypoints; watched by the control plane, which writes their status',
  },
] satisfies CrdKind[]);

/** `gateways.gateway.networking.k8s.io`: the CRD's metadata.name. */
export const crdName = (k: Pick<CrdKind, 'plural' | 'group'>): string => `${k.plural}.${k.group}`;
