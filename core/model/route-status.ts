/**
 * The status of every route of a snapshot, as Gateway API reports it: what a waypoint shows in
 * `/config_dump` and what the control plane writes back to HTTPRoute, GRPCRoute, VirtualService
 * and DestinationRule objects in a cluster. One function, so both say the same.
 */
import { inSubset, resolveHost, routeStatus, subsetsFor, type BackendRef, type DestinationRule, type RouteCondition, type VirtualService } from './routes.js';
import { backendPermitted } from './reference-grant.js';
import type { MeshState } from './state.js';

export interface RouteStatusEntry {
  readonly kind: 'HTTPRoute' | 'GRPCRoute' | 'TCPRoute' | 'VirtualService' | 'DestinationRule';
  readonly namespace: string;
  readonly name: string;
  readonly conditions: RouteCondition[];
}

/** Status of every HTTPRoute, VirtualService and DestinationRule in the snapshot. */
export function routeStatuses(state: MeshState): RouteStatusEntry[] {
  const service = (b: { name?: string; namespace?: string; hostname?: string }) =>
    b.hostname !== undefined ? state.serviceByHostname(b.hostname) : state.serviceByName(b.namespace ?? '', b.name ?? '');
  const lookup = {
    byName: (ns: string, name: string) => state.serviceByName(ns, name),
    byHostname: (h: string) => state.serviceByHostname(h),
    hasSubset: (b: BackendRef, routeNamespace: string) => {
      const s = service(b);
      return s !== undefined && b.subset !== undefined && subsetsFor(state.config.destinationRules ?? [], s, routeNamespace, state.rootNamespace)?.has(b.subset) === true;
    },
    permitted: (r: { kind: string; namespace: string }, b: BackendRef) => backendPermitted(state.config.referenceGrants, r, b),
  };
  const out: RouteStatusEntry[] = [];
  for (const r of [...(state.config.httpRoutes ?? []), ...(state.config.grpcRoutes ?? [])]) {
    out.push({ kind: r.kind, namespace: r.namespace, name: r.name, conditions: routeStatus(r, lookup) });
  }
  for (const r of state.config.tcpRoutes ?? []) {
    // Judged as the one-rule route it is: parents, then backends (kind, existence, port, weights).
    const asRoute = { kind: 'TCPRoute' as const, name: r.name, namespace: r.namespace, parents: r.parents, hostnames: [], rules: [{ matches: [], filters: [], backends: r.backends }] };
    out.push({ kind: 'TCPRoute', namespace: r.namespace, name: r.name, conditions: routeStatus(asRoute, lookup) });
  }
  for (const vs of state.config.virtualServices ?? []) {
    // A VirtualService is shadowed when a producer HTTPRoute (in the service's namespace) routes
    // any service it names; a consumer route (another namespace) shadows it only for the clients
    // of its own namespace (waypoint/routes.ts), so it is no conflict.
    let conflictedBy: string | undefined;
    for (const s of state.config.services) {
      if (!state.virtualServicesFor(s).includes(vs)) continue;
      const hr = state.httpRoutesFor(s).find((r) => r.namespace === s.namespace);
      if (hr) {
        conflictedBy = `${hr.namespace}/${hr.name}`;
        break;
      }
    }
    out.push({ kind: 'VirtualService', namespace: vs.namespace, name: vs.name, conditions: routeStatus(vs as VirtualService, lookup, conflictedBy) });
  }
  for (const dr of state.config.destinationRules ?? []) {
    out.push({ kind: 'DestinationRule', namespace: dr.namespace, name: dr.name, conditions: destinationRuleStatus(state, dr) });
  }
  return out;
}

function destinationRuleStatus(state: MeshState, dr: DestinationRule): RouteCondition[] {
  const h = resolveHost(dr.host, dr.namespace);
  const svc = 'hostname' in h ? state.serviceByHostname(h.hostname) : state.serviceByName(h.namespace, h.name);
  const ignored = dr.ignored && dr.ignored.length > 0 ? `${dr.ignored.join(', ')} accepted but not applied by waypoints` : undefined;
  const accepted: RouteCondition = { type: 'Accepted', status: 'True', reason: 'Accepted', ...(ignored ? { message: ignored } : {}) };
  if (!svc) {
    return [accepted, { type: 'ResolvedRefs', status: 'False', reason: 'BackendNotFound', message: `host ${dr.host} is not a known service` }];
  }
  const empty = dr.subsets.filter((s) => !state.endpointsOf(svc).some((w) => inSubset(s, w.labels))).map((s) => s.name);
  return [
    accepted,
    empty.length === 0
      ? { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs' }
      : {
          type: 'ResolvedRefs',
          status: 'False',
          reason: 'NoHealthyEndpoints',
          message: `subset ${empty.join(', ')} selects no healthy endpoint of ${svc.namespace}/${svc.name}, so requests to it answer 503 UH`,
        },
  ];
}
