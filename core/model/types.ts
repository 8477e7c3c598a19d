/**
 * The internal model every data plane works on. Wire shapes (YAML files, discovery messages,
 * Kubernetes objects) are converted into these types at exactly one boundary per source
 * (`core/node-config/file.ts` for the file source); nothing else reads wire shapes.
 *
 * All objects are frozen once built; an update replaces them.
 */

import type { DestinationRule, HttpRoute, TcpRoute, VirtualService } from './routes.js';
import type { ReferenceGrant } from './reference-grant.js';

export type Protocol = 'HBONE' | 'TCP';

/** A node: where a workload runs and where its node's ztunnel listens for HBONE. */
export interface NodeInfo {
  readonly name: string;
  /** The address of the node's ztunnel; HBONE to workloads on this node goes to ztunnelAddress:15008. */
  readonly ztunnelAddress: string;
  /** Override of the HBONE port, for several ztunnels on one host (tests, the lab). Default 15008. */
  readonly hbonePort: number;
}

/** The address of a waypoint a workload or service sends its traffic through. */
export interface WaypointRef {
  /** The waypoint service's VIP or the waypoint workload's IP. */
  readonly address: string;
  /** HBONE port of the waypoint; 15008 by default. */
  readonly hbonePort: number;
}

export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly node: string;
  readonly ips: readonly string[];
  /** HBONE when the workload is in the mesh; TCP when traffic to it is plain passthrough. */
  readonly protocol: Protocol;
  readonly labels: Readonly<Record<string, string>>;
  readonly healthy: boolean;
  readonly waypoint?: WaypointRef;
}

/**
 * A pod scheduled on a node (`spec.nodeName` set) that has no IP yet. The kubelet learns the IP
 * only after the CNI ADD returns, and the node agent decides at ADD whether to enrol the pod, so
 * the control plane tells node agents about such pods before they become workloads. Once the pod
 * has an IP it is a `Workload` and no longer a pending pod. Data planes route nothing by it.
 */
export interface PendingPod {
  readonly namespace: string;
  readonly name: string;
  /** Kubernetes `metadata.uid`, when the source has one (the lab's files do not). */
  readonly uid?: string;
  readonly node: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The control plane's verdict: HBONE when the node agent must enrol the pod (Istio's rules:
   * namespace or pod `istio.io/dataplane-mode=ambient`, no pod opt-out `none`, not a waypoint).
   */
  readonly protocol: Protocol;
}

/** A namespace the source knows, with its `istio.io/dataplane-mode` label (the only label carried). */
export interface MeshNamespace {
  readonly name: string;
  /** The label's value (`ambient`, `none`, ...); absent when the namespace does not carry it. */
  readonly dataplaneMode?: string;
}

export interface ServicePort {
  readonly port: number;
  /** The port on the endpoints; equal to `port` when the service does not remap it. */
  readonly targetPort: number;
  readonly name?: string;
  /**
   * Kubernetes `appProtocol` (a qualified name): `kubernetes.io/h2c`, `http2` or `grpc` make the
   * waypoint speak HTTP/2 with prior knowledge to the endpoints (core/model/app-protocol.ts).
   */
  readonly appProtocol?: string;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  /** e.g. echo.default.svc.cluster.local */
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly ServicePort[];
  /** uids of the workloads behind this service. */
  readonly endpoints: readonly string[];
  /**
   * SPIFFE IDs the endpoints may present besides their own (Istio's `subjectAltNames`); the
   * HBONE client accepts a server identity that is the endpoint's own or one of these.
   */
  readonly subjectAltNames: readonly string[];
  readonly waypoint?: WaypointRef;
}

export type PolicyAction = 'ALLOW' | 'DENY';

/**
 * One `from` source of an Istio AuthorizationPolicy rule. Each present field must match (AND);
 * within a field any value may match (OR); `not*` fields must not match.
 */
/** Istio's pairs of match lists: every field `x` has a `notX` twin (see the rule above). */
type MatchLists<K extends string, T = string> = { readonly [P in K | `not${Capitalize<K>}`]?: readonly T[] };

/**
 * `requestPrincipals` and `remoteIpBlocks` (and their `not*` twins) are HTTP fields, kept only for
 * policies a waypoint enforces (`WaypointPolicy`).
 */
export interface PolicySource extends MatchLists<'principals' | 'namespaces' | 'ipBlocks' | 'requestPrincipals' | 'remoteIpBlocks'> {
  /** HTTP-only fields (requestPrincipals, remoteIpBlocks ...) were present; an L4 proxy cannot see them. */
  readonly hasL7Fields: boolean;
}

/** `hosts`, `methods` and `paths` (and their `not*` twins) are HTTP fields, kept only for policies a waypoint enforces. */
export interface PolicyOperation extends MatchLists<'ports', number>, MatchLists<'hosts' | 'methods' | 'paths'> {
  /** HTTP-only fields (methods, paths, hosts ...) were present; an L4 proxy cannot see them. */
  readonly hasL7Fields: boolean;
}

export interface PolicyCondition {
  /** source.ip, source.namespace, source.principal, destination.ip, destination.port, or an L7 key. */
  readonly key: string;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

export interface PolicyRule {
  /** OR over sources; absent (empty) matches any source. */
  readonly from: readonly PolicySource[];
  /** OR over operations; absent (empty) matches any operation. */
  readonly to: readonly PolicyOperation[];
  /** AND over conditions. */
  readonly when: readonly PolicyCondition[];
}

/** Where a selector-scoped Istio policy (AuthorizationPolicy, PeerAuthentication) applies. */
export interface WorkloadPolicyScope {
  readonly name: string;
  readonly namespace: string;
  /**
   * `mesh`: applies to every workload (policy in the root namespace without a selector);
   * `namespace`: every workload in `namespace`; `workload`: workloads in `namespace` whose labels
   * match `selector`.
   */
  readonly scope: 'mesh' | 'namespace' | 'workload';
  readonly selector: Readonly<Record<string, string>>;
}

export interface AuthorizationPolicy extends WorkloadPolicyScope {
  readonly action: PolicyAction;
  /** OR over rules. An ALLOW policy with no rules matches nothing; a DENY policy with no rules matches nothing. */
  readonly rules: readonly PolicyRule[];
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE' | 'UNSET';

export interface PeerAuthentication extends WorkloadPolicyScope {
  readonly mode: MtlsMode;
  /** Per-port overrides (Istio's portLevelMtls), keyed by the workload's target port. */
  readonly portLevel: ReadonlyMap<number, MtlsMode>;
}

/** What an AuthorizationPolicy's `targetRefs` entry names. */
export interface PolicyTargetRef {
  /** `Gateway` (a waypoint), `Service` (traffic to it through its waypoint), `GatewayClass` (`istio-waypoint`, root namespace only). */
  readonly kind: 'Gateway' | 'Service' | 'GatewayClass';
  readonly name: string;
}

/**
 * An AuthorizationPolicy attached with `targetRefs`: enforced by waypoints at L7, never by
 * ztunnel (as in Istio). Rules keep their HTTP fields (methods, paths, hosts, ...).
 */
export interface WaypointPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly targetRefs: readonly PolicyTargetRef[];
  /** AUDIT policies never change a decision; matching requests are marked in the access log. */
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT';
  readonly rules: readonly PolicyRule[];
}

/** Where a JWT is read from: a request header, its value after `prefix` (Istio's `fromHeaders`). */
export interface JwtHeaderLocation {
  /** Lowercase header name. */
  readonly name: string;
  /** Stripped before the token; a header value without it holds no token for this location. */
  readonly prefix: string;
}

/** One `jwtRules` entry of a RequestAuthentication: which tokens of one issuer are valid, and where they are. */
export interface JwtRule {
  readonly issuer: string;
  /** Accepted `aud` values; empty: the audience is not checked (Istio). */
  readonly audiences: readonly string[];
  /** Inline JWKS, the JSON text as written (checked when converted). */
  readonly jwks?: string;
  /** Where the waypoint fetches the JWKS (http or https). Exactly one of `jwks`, `jwksUri`. */
  readonly jwksUri?: string;
  /** Header locations; with `fromParams` both empty, Istio's defaults (`Authorization: Bearer`, `?access_token=`). */
  readonly fromHeaders: readonly JwtHeaderLocation[];
  readonly fromParams: readonly string[];
  /** Keep the token's header on the forwarded request (default false: removed, as Istio). */
  readonly forwardOriginalToken: boolean;
  /** Lowercase header that gets the verified payload (base64url JSON). */
  readonly outputPayloadToHeader?: string;
  /** Claims copied to (lowercase) headers; `claim` may be nested with `.`. */
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  /** Claims matched as space-separated lists, besides `scope` and `permission` (Istio's defaults). */
  readonly spaceDelimitedClaims: readonly string[];
  /** How long a JWKS fetch may take (Istio's `timeout`); absent: the waypoint's default. */
  readonly timeoutMs?: number;
}

/**
 * An Istio RequestAuthentication. With `targetRefs` a waypoint validates the JWTs of requests
 * through it (as AuthorizationPolicy `targetRefs`); with a selector (or neither) it names workloads,
 * whose sidecars would validate them: ztunnel cannot (no HTTP), so such a policy is kept and not enforced.
 */
export interface RequestAuthentication {
  readonly name: string;
  readonly namespace: string;
  /** Empty: the policy uses a selector (or applies to the namespace) and no waypoint enforces it. */
  readonly targetRefs: readonly PolicyTargetRef[];
  readonly selector: Readonly<Record<string, string>>;
  readonly jwtRules: readonly JwtRule[];
}

/** A complete, consistent configuration snapshot. */
export interface MeshConfig {
  /**
   * Istio's root namespace the policy scopes were computed with: policies in it without a
   * selector are mesh-wide, with a selector they select workloads in every namespace.
   * Absent means `istio-system`.
   */
  readonly rootNamespace?: string;
  readonly nodes: readonly NodeInfo[];
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
  readonly peerAuthentications: readonly PeerAuthentication[];
  /** AuthorizationPolicies with `targetRefs`, enforced by waypoints (absent: none). */
  readonly waypointPolicies?: readonly WaypointPolicy[];
  /** Istio RequestAuthentications (JWT rules) waypoints enforce when they have `targetRefs` (absent: none). */
  readonly requestAuthentications?: readonly RequestAuthentication[];
  /** Gateway API HTTPRoutes attached to Services, served by waypoints (absent: none). */
  readonly httpRoutes?: readonly HttpRoute[];
  /**
   * Gateway API GRPCRoutes attached to Services, converted to HTTP route rules (`kind: GRPCRoute`),
   * served by waypoints together with the HTTPRoutes of the same Service (absent: none).
   */
  readonly grpcRoutes?: readonly HttpRoute[];
  /** Gateway API TCPRoutes attached to Services: weighted splits of TCP connections in waypoints (absent: none). */
  readonly tcpRoutes?: readonly TcpRoute[];
  /**
   * Gateway API ReferenceGrants: which routes may use a Service in another namespace
   * (core/model/reference-grant.ts; absent: none, so no cross-namespace backend is permitted).
   */
  readonly referenceGrants?: readonly ReferenceGrant[];
  /** Istio VirtualServices (mesh), served by waypoints (absent: none). */
  readonly virtualServices?: readonly VirtualService[];
  /** Istio DestinationRules: the subsets VirtualService destinations name (absent: none). */
  readonly destinationRules?: readonly DestinationRule[];
  /** Pods scheduled on a node without an IP yet, for node agents (absent: the source has none or does not say). */
  readonly pendingPods?: readonly PendingPod[];
  /**
   * Every namespace the source knows, for node agents (absent: the source does not say; the lab's
   * files and the file source omit it).
   */
  readonly namespaces?: readonly MeshNamespace[];
}
