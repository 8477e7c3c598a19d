/**
 * DestinationRule subsets on the data path: which endpoints of a service a VirtualService
 * destination `{host, subset}` may reach, and the `trafficPolicy` that applies to it. Resolved
 * once per (configuration snapshot, route namespace, service, port, subset) and cached with the
 * snapshot, so a request pays one map read.
 */
import { destinationRulesFor, inSubset, subsetsFor, type Subset } from '../core/model/routes.js';
import { mergeTrafficPolicy, type PolicySettings, type TrafficPolicy } from '../core/model/traffic-policy.js';
import type { MeshState } from '../core/model/state.js';
import type { Service, Workload } from '../core/model/types.js';

/** The endpoints of one subset of a service. */
export interface SubsetEndpoints {
  readonly name: string;
  /** Healthy endpoints of the service whose workload carries every label of the subset, in config order. */
  readonly endpoints: readonly Workload[];
}

// Per snapshot: keys are bounded by the config (route namespaces × services × subset names
// that routes name), and the whole map goes with its snapshot.
const perState = new WeakMap<MeshState, Map<string, SubsetEndpoints | null>>();
const subsetMaps = new WeakMap<MeshState, Map<string, ReadonlyMap<string, Subset> | null>>();

/** The subsets a route in `routeNamespace` sees for `service` (undefined: no DestinationRule names it). */
export function subsetsOf(state: MeshState, service: Service, routeNamespace: string): ReadonlyMap<string, Subset> | undefined {
  let m = subsetMaps.get(state);
  if (!m) subsetMaps.set(state, (m = new Map()));
  const key = `${routeNamespace}|${service.namespace}/${service.name}`;
  let s = m.get(key);
  if (s === undefined) {
    s = subsetsFor(state.config.destinationRules ?? [], service, routeNamespace, state.rootNamespace) ?? null;
    m.set(key, s);
  }
  return s ?? undefined;
}

/**
 * The endpoints of `subset` of `service` for a route in `routeNamespace`, or undefined when no
 * DestinationRule visible from there defines that subset (the caller answers 503 `NC`). An empty
 * list means the subset is defined but selects no healthy endpoint (503 `UH`).
 */
export function subsetEndpoints(state: MeshState, service: Service, subset: string, routeNamespace: string): SubsetEndpoints | undefined {
  let m = perState.get(state);
  if (!m) perState.set(state, (m = new Map()));
  const key = `${routeNamespace}|${service.namespace}/${service.name}|${subset}`;
  let r = m.get(key);
  if (r === undefined) {
    const def = subsetsOf(state, service, routeNamespace)?.get(subset);
    r = def ? Object.freeze({ name: subset, endpoints: Object.freeze(state.endpointsOf(service).filter((w) => inSubset(def, w.labels))) }) : null;
    m.set(key, r);
  }
  return r ?? undefined;
}

const policies = new WeakMap<MeshState, Map<string, PolicySettings | null>>();

/**
 * The traffic policy of `service` port `port` (and `subset`) for a route in `routeNamespace`
 * (Istio's merge: the DestinationRule's, its port-level settings, the subset's, the subset's
 * port-level settings), or undefined when none applies. Several DestinationRules for the host
 * in the winning namespace: the first that has a top-level `trafficPolicy` gives it (Istio's
 * `mergeDestinationRule`); the subset is the first definition of that name, as for endpoints.
 */
export function trafficPolicyOf(state: MeshState, service: Service, port: number, subset: string | undefined, routeNamespace: string): PolicySettings | undefined {
  let m = policies.get(state);
  if (!m) policies.set(state, (m = new Map()));
  const key = `${routeNamespace}|${service.namespace}/${service.name}|${port}|${subset ?? ''}`;
  let r = m.get(key);
  if (r === undefined) {
    const rules = destinationRulesFor(state.config.destinationRules ?? [], service, routeNamespace, state.rootNamespace);
    const top: TrafficPolicy | undefined = rules.find((dr) => dr.trafficPolicy)?.trafficPolicy;
    const sub = subset === undefined ? undefined : subsetsOf(state, service, routeNamespace)?.get(subset)?.trafficPolicy;
    r = mergeTrafficPolicy(top, sub, port) ?? null;
    m.set(key, r);
  }
  return r ?? undefined;
}
