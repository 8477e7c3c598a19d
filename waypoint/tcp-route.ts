/**
 * TCPRoute on waypoints (Istio 1.26): which Service a TCP connection through the waypoint goes
 * to. A connection to a Service that a TCPRoute has as parent (with its port, when the parentRef
 * names one) goes to one of the route's backends, chosen by weight once per connection; others go
 * to the Service they were sent to, as before. Several TCPRoutes on one Service: the first in
 * config order (the oldest) applies, as Gateway API breaks ties between routes.
 *
 * Producer and consumer routes (GAMMA, as HTTPRoute's in routes.ts): a TCPRoute in the Service's
 * own namespace is a producer route and applies to every client; one in another namespace is a
 * consumer route and applies only to clients in the route's namespace (the namespace of the
 * client's SPIFFE identity), for whom it wins over the producer routes. Other clients never see
 * another namespace's consumer route.
 */
import { backendPermitted } from '../core/model/reference-grant.js';
import { pickWeighted, type TcpRoute } from '../core/model/routes.js';
import type { MeshState } from '../core/model/state.js';
import type { Service } from '../core/model/types.js';

/** Where a connection goes, or why it cannot go anywhere (the connection is closed, flag `NR`). */
export type TcpTarget =
  | { readonly route: TcpRoute; readonly service: Service; readonly port: number }
  | { readonly route: TcpRoute; readonly error: string };

/** The TCPRoute of `service:port` that applies to clients of `clientNamespace`, if any. */
function applicableRoute(state: MeshState, service: Service, port: number, clientNamespace: string | undefined): TcpRoute | undefined {
  let producer: TcpRoute | undefined;
  for (const r of state.config.tcpRoutes ?? []) {
    if (!r.parents.some((p) => p.name === service.name && p.namespace === service.namespace && (p.port === undefined || p.port === port))) continue;
    if (r.namespace === service.namespace) producer ??= r;
    else if (clientNamespace !== undefined && r.namespace === clientNamespace) return r;
  }
  return producer;
}

/**
 * The TCPRoute of `service:port` for a client in `clientNamespace` (the namespace of its SPIFFE
 * identity) and the backend it picks, or undefined when no TCPRoute applies.
 */
export function tcpRouteTarget(
  state: MeshState,
  service: Service,
  port: number,
  random: () => number = Math.random,
  clientNamespace?: string,
): TcpTarget | undefined {
  const route = applicableRoute(state, service, port, clientNamespace);
  if (!route) return undefined;
  const i = pickWeighted(route.backends.map((b) => b.weight), random);
  if (i < 0) return { route, error: `TCPRoute ${route.namespace}/${route.name}: every backend has weight 0` };
  const b = route.backends[i]!;
  if (b.invalidKind !== undefined) return { route, error: `TCPRoute ${route.namespace}/${route.name}: backend ${b.invalidKind} ${b.namespace}/${b.name} is not a Service` };
  // A Service in another namespace needs a ReferenceGrant there, as for HTTPRoute (RefNotPermitted).
  if (!backendPermitted(state.config.referenceGrants, route, b)) {
    return { route, error: `TCPRoute ${route.namespace}/${route.name}: backend ${b.namespace}/${b.name} is in another namespace and no ReferenceGrant in ${b.namespace} permits it` };
  }
  const target = state.serviceByName(b.namespace ?? '', b.name ?? '');
  const p = b.port ?? port;
  if (!target || !state.servicePort(target, p)) return { route, error: `TCPRoute ${route.namespace}/${route.name}: backend ${b.namespace}/${b.name}:${p} is not a known service port` };
  return { route, service: target, port: p };
}
