/**
 * The Kubernetes names the mesh shares with Istio and the Gateway API: label keys and values, the
 * waypoint gateway class, the controller name. Defined here once; every component imports them
 * (ports are in core/hbone/constants.ts, `PORTS`). Changing one changes what users write.
 */

/** Namespace (or pod) label enrolling workloads: `ambient`; `none` on a pod opts it out. */
export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
/** The values of {@link DATAPLANE_MODE_LABEL}. */
export const DATAPLANE_MODE = { ambient: 'ambient', none: 'none' } as const;
/** Label on a namespace, Service or Pod naming the waypoint its traffic goes through. */
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
/** Label naming the namespace of that waypoint when it lives elsewhere. */
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';
/** Label on a waypoint Gateway: which traffic it handles (`service`, `workload`, `all`, `none`). */
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
/** Label Gateway API implementations put on a gateway's pods; marks waypoint pods. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
/**
 * Label (and value) Istio's waypoint controller, and ours, put on waypoint pods. Istio's node
 * agent never captures such a pod: a waypoint speaks HBONE itself.
 */
export const WAYPOINT_MANAGED_LABEL = 'gateway.istio.io/managed';
export const WAYPOINT_MANAGED_VALUE = 'istio.io-mesh-controller';
/** `gatewayClassName` of waypoints. */
export const WAYPOINT_CLASS = 'istio-waypoint';
/** The `controllerName` this mesh writes in Gateway and HTTPRoute statuses. */
export const CONTROLLER_NAME = 'istio.io/mesh-controller';
