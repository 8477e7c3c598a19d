/**
 * The route table of a destination: which resource routes it (HTTPRoute, VirtualService, or the
 * implicit default route to the service itself) and its matches in evaluation order. Built once
 * per (configuration snapshot, service, port) and cached.
 */
import { orderHttpRouteMatches, orderVirtualServiceMatches, type HttpRoute, type OrderedMatch, type RouteRule } from '../core/model/routes.js';
import type { MeshState } from '../core/model/state.js';
import type { Service } from '../core/model/types.js';

export interface RouteTable {
  readonly source: 'HTTPRoute' | 'VirtualService' | 'default';
  readonly ordered: readonly OrderedMatch[];
}

const MATCH_ALL = { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] } as const;

/** The implicit route of a service no resource routes: all requests to the service, same port. */
function defaultTable(service: Service | undefined, port: number): RouteTable {
  const rule: RouteRule = {
    matches: [MATCH_ALL],
    filters: [],
    backends: service ? [{ name: service.name, namespace: service.namespace, port, weight: 1, filters: [] }] : [],
  };
  const route: HttpRoute = { kind: 'HTTPRoute', name: 'default', namespace: service?.namespace ?? '', parents: [], hostnames: [], rules: [rule] };
  return { source: 'default', ordered: [{ match: MATCH_ALL, rule, route, ruleIndex: 0 }] };
}

const tables = new WeakMap<MeshState, Map<string, RouteTable>>();

/** The route table for requests to `service` on its port `port` (or to a workload: `service` undefined). */
export function routeTable(state: MeshState, service: Service | undefined, port: number): RouteTable {
  let perState = tables.get(state);
  if (!perState) tables.set(state, (perState = new Map()));
  const key = service ? `${service.namespace}/${service.name}:${port}` : `:${port}`;
  let table = perState.get(key);
  if (!table) {
    table = build(state, service, port);
    perState.set(key, table);
  }
  return table;
}

function build(state: MeshState, service: Service | undefined, port: number): RouteTable {
  if (!service) return defaultTable(undefined, port);
  // GAMMA: hostnames are not used to select routes of a Service parent; the parent (and port) is.
  const http = state
    .httpRoutesFor(service)
    .filter((r) => r.parents.some((p) => p.name === service.name && p.namespace === service.namespace && (p.port === undefined || p.port === port)));
  if (http.length > 0) return { source: 'HTTPRoute', ordered: orderHttpRouteMatches(http) };
  const vss = state.virtualServicesFor(service);
  if (vss.length > 0) return { source: 'VirtualService', ordered: orderVirtualServiceMatches(vss) };
  return defaultTable(service, port);
}
