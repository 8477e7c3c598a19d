/**
 * Which policies a waypoint enforces: AuthorizationPolicies and RequestAuthentications attached
 * with `targetRefs` to the waypoint's Gateway, to the destination Service, or to the
 * `istio-waypoint` GatewayClass from the root namespace. How they match is
 * core/authz/evaluate.ts (`authorizeRequest`), the same evaluator ztunnel uses; how tokens are
 * checked is waypoint/jwt.ts.
 */
import { WAYPOINT_GATEWAY_CLASS } from '../core/kube/waypoint-policy.js';
import type { MeshState } from '../core/model/state.js';
import type { PolicyTargetRef, RequestAuthentication, Service, WaypointPolicy } from '../core/model/types.js';

/** The waypoint's own Gateway, which `targetRefs: [{kind: Gateway}]` names. */
export interface GatewayRef {
  readonly name: string;
  readonly namespace: string;
}

interface Attached {
  readonly namespace: string;
  readonly targetRefs: readonly PolicyTargetRef[];
}

/** The entries of `all` that attach to requests through `gateway` to `service`, cached per snapshot and service. */
function attachedFor<T extends Attached>(
  cache: WeakMap<MeshState, Map<string, readonly T[]>>,
  all: readonly T[],
  state: MeshState,
  gateway: GatewayRef,
  service: Service | undefined,
): readonly T[] {
  let perState = cache.get(state);
  if (!perState) cache.set(state, (perState = new Map()));
  const key = service ? `${service.namespace}/${service.name}` : '';
  let list = perState.get(key);
  if (!list) {
    list = Object.freeze(
      all.filter((p) =>
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

const policyCache = new WeakMap<MeshState, Map<string, readonly WaypointPolicy[]>>();
const authnCache = new WeakMap<MeshState, Map<string, readonly RequestAuthentication[]>>();

/** The AuthorizationPolicies that apply to requests through `gateway` to `service` (cached per snapshot). */
export function policiesFor(state: MeshState, gateway: GatewayRef, service: Service | undefined): readonly WaypointPolicy[] {
  return attachedFor(policyCache, state.config.waypointPolicies ?? [], state, gateway, service);
}

/** The RequestAuthentications that apply to requests through `gateway` to `service` (cached per snapshot). */
export function requestAuthenticationsFor(state: MeshState, gateway: GatewayRef, service: Service | undefined): readonly RequestAuthentication[] {
  return attachedFor(authnCache, state.config.requestAuthentications ?? [], state, gateway, service);
}
