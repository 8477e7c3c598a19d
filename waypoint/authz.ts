/**
 * Which AuthorizationPolicies a waypoint enforces: those attached with `targetRefs` to the
 * waypoint's Gateway, to the destination Service, or to the `istio-waypoint` GatewayClass from the
 * root namespace. How they match is core/authz/evaluate.ts (`authorizeRequest`), the same
 * evaluator ztunnel uses.
 */
import { WAYPOINT_GATEWAY_CLASS } from '../core/kube/waypoint-policy.js';
import type { MeshState } from '../core/model/state.js';
import type { Service, WaypointPolicy } from '../core/model/types.js';

/** The waypoint's own Gateway, which `targetRefs: [{kind: Gateway}]` names. */
export interface GatewayRef {
  readonly name: string;
  readonly namespace: string;
}

const cache = new WeakMap<MeshState, Map<string, readonly WaypointPolicy[]>>();

/** The policies that apply to requests through `gateway` to `service` (cached per snapshot). */
export function policiesFor(state: MeshState, gateway: GatewayRef, service: Service | undefined): readonly WaypointPolicy[] {
  let perState = cache.get(state);
  if (!perState) cache.set(state, (perState = new Map()));
  const key = service ? `${service.namespace}/${service.name}` : '';
  let list = perState.get(key);
  if (!list) {
    list = Object.freeze(
      (state.config.waypointPolicies ?? []).filter((p) =>
        p.targetRefs.some(
          (t) =>
            (t.kind === 'Gateway' && t.name === gateway.name && p.namespace === gateway.namespace) ||
            (t.kind === 'Service' && service !== undefined && t.name === service.name && p.namespace === service.namespace) ||
            (t.kind === 'GatewayClass' && t.name === WAYPOINT_GATEWAY_CLASS && p.namespace === state.rootNamespace),
        ),
      ),
    );
    perState.set(key, list);
  }
  return list;
}
