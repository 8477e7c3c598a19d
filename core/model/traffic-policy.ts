/**
 * Istio DestinationRule `trafficPolicy` as the waypoint applies it: load balancing, connection
 * pool limits (circuit breaking) and outlier detection, per DestinationRule, per subset and per
 * port. Converted from the spec in `core/kube/routes/destination-rule.ts`; applied by
 * `waypoint/traffic-policy/`.
 *
 * Every field is optional: an absent field takes Istio's (Envoy's) default where the policy is
 * applied, so that `mergeTrafficPolicy` can tell "not set" from "set to the default", as Istio's
 * field-by-field merge does.
 */

/** `loadBalancer.simple`. `LEAST_CONN` is Istio's deprecated name of `LEAST_REQUEST` and is stored as that. */
export type SimpleLb = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';

/** Where a consistent hash takes its key from: exactly one source, as Istio's `hashKey` oneof. */
export type HashKey =
  | { readonly kind: 'header'; readonly name: string }
  | {
      readonly kind: 'cookie';
      readonly name: string;
      readonly path?: string;
      /** With a ttl the waypoint sets the cookie when the request lacks it (Envoy); 0 = a session cookie. */
      readonly ttlMs?: number;
    }
  | { readonly kind: 'sourceIp' }
  | { readonly kind: 'queryParameter'; readonly name: string };

export type LoadBalancer =
  | { readonly simple: SimpleLb }
  | {
      readonly consistentHash: {
        readonly key: HashKey;
        /** Points on the ring (`ringHash.minimumRingSize`, `minimumRingSize`, `maglev.tableSize`), approximated: see docs/waypoint.md. */
        readonly ringSize?: number;
      };
    };

/** `connectionPool` (Istio's names), the circuit-breaker limits of one Envoy cluster. */
export interface ConnectionPool {
  readonly maxConnections?: number;
  readonly connectTimeoutMs?: number;
  readonly http1MaxPendingRequests?: number;
  readonly http2MaxRequests?: number;
  readonly maxRequestsPerConnection?: number;
  readonly maxRetries?: number;
  readonly idleTimeoutMs?: number;
}

/** `outlierDetection` (Istio's names). */
export interface OutlierDetection {
  readonly consecutive5xxErrors?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly intervalMs?: number;
  readonly baseEjectionTimeMs?: number;
  readonly maxEjectionPercent?: number;
  readonly minHealthPercent?: number;
}

/** The settings a policy may override, as a unit each (Istio merges them field by field). */
export interface PolicySettings {
  readonly loadBalancer?: LoadBalancer;
  readonly connectionPool?: ConnectionPool;
  readonly outlierDetection?: OutlierDetection;
}

/** A `trafficPolicy`: its settings and the port-level ones (service port number → settings). */
export interface TrafficPolicy extends PolicySettings {
  readonly portLevelSettings?: readonly (PolicySettings & { readonly port: number })[];
}

/**
 * Istio's `MergeTrafficPolicy`: the top-level policy, then its port-level settings for `port`,
 * then the subset's policy, then the subset's port-level settings for `port`; each step replaces
 * `loadBalancer`, `connectionPool` and `outlierDetection` as a whole where it sets them.
 * Undefined when nothing applies (the waypoint then keeps its defaults: round-robin, no limits,
 * no outlier detection).
 */
export function mergeTrafficPolicy(top: TrafficPolicy | undefined, subset: TrafficPolicy | undefined, port: number): PolicySettings | undefined {
  let out: { loadBalancer?: LoadBalancer; connectionPool?: ConnectionPool; outlierDetection?: OutlierDetection } = {};
  const apply = (s: PolicySettings | undefined) => {
    if (!s) return;
    if (s.loadBalancer) out.loadBalancer = s.loadBalancer;
    if (s.connectionPool) out.connectionPool = s.connectionPool;
    if (s.outlierDetection) out.outlierDetection = s.outlierDetection;
  };
  for (const p of [top, subset]) {
    apply(p);
    apply(p?.portLevelSettings?.find((s) => s.port === port));
  }
  out = Object.freeze(out);
  return out.loadBalancer || out.connectionPool || out.outlierDetection ? out : undefined;
}
