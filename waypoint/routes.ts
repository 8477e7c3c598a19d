/**
 * The route table of a destination: which resource routes it (HTTPRoute, VirtualService, or the
 * implicit default route to the service itself) and its matches in evaluation order. Built once
 * per (configuration snapshot, service, port, client namespace with consumer routes) and cached.
 *
 * Producer and consumer routes (GAMMA, upstream conformance MeshConsumerRoute): an HTTPRoute in
 * the service's own namespace is a producer route and applies to every client; one in another
 * namespace is a consumer route and applies only to clients in the route's namespace, for whom
 * it takes precedence over the producer routes (Istio's rule: the consumer's own config wins).
 * The two are never merged; clients elsewhere (the service's namespace included) get the
 * producer routes, or the VirtualServices, or the default route.
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

/** The tables of one service port: the producer's, and one per namespace holding consumer routes. */
interface PortTables {
  readonly producer: RouteTable;
  readonly consumers: ReadonlyMap<string, RouteTable>;
}

const tables = new WeakMap<MeshState, Map<string, PortTables>>();

/**
 * The namespace of a SPIFFE id `spiffe://<td>/ns/<ns>/sa/<sa>`. The HBONE server accepted the
 * client certificate only with one such id in the mesh's trust domain, so the segment is there;
 * it is read per request, hence no full parse.
 */
export function identityNamespace(id: string): string | undefined {
  const i = id.indexOf('/ns/');
  if (i < 0) return undefined;
  const j = id.indexOf('/', i + 4);
  return j < 0 ? undefined : id.slice(i + 4, j);
}

/**
 * The route table for requests to `service` on its port `port` (or to a workload: `service`
 * undefined) from a client in `clientNamespace` (the namespace of its SPIFFE identity).
 */
export function routeTable(state: MeshState, service: Service | undefined, port: number, clientNamespace?: string): RouteTable {
  let perState = tables.get(state);
  if (!perState) tables.set(state, (perState = new Map()));
  const key = service ? `${service.namespace}/${service.name}:${port}` : `:${port}`;
  let t = perState.get(key);
  if (!t) {
    t = build(state, service, port);
    perState.set(key, t);
  }
  return (clientNamespace !== undefined ? t.consumers.get(clientNamespace) : undefined) ?? t.producer;
}

const NO_CONSUMERS: ReadonlyMap<string, RouteTable> = new Map();

function build(state: MeshState, service: Service | undefined, port: number): PortTables {
  if (!service) return { producer: defaultTable(undefined, port), consumers: NO_CONSUMERS };
  // GAMMA: hostnames are not used to select routes of a Service parent; the parent (and port) is.
  const attached = state
    .httpRoutesFor(service)
    .filter((r) => r.parents.some((p) => p.name === service.name && p.namespace === service.namespace && (p.port === undefined || p.port === port)));
  const byNamespace = new Map<string, HttpRoute[]>();
  for (const r of attached) {
    if (r.namespace === service.namespace) continue;
    let list = byNamespace.get(r.namespace);
    if (!list) byNamespace.set(r.namespace, (list = []));
    list.push(r);
  }
  const consumers = new Map<string, RouteTable>();
  for (const [ns, routes] of byNamespace) consumers.set(ns, { source: 'HTTPRoute', ordered: orderHttpRouteMatches(routes) });
  const producerRoutes = attached.filter((r) => r.namespace === service.namespace);
  let producer: RouteTable;
  if (producerRoutes.length > 0) producer = { source: 'HTTPRoute', ordered: orderHttpRouteMatches(producerRoutes) };
  else {
    const vss = state.virtualServicesFor(service);
    producer = vss.length > 0 ? { source: 'VirtualService', ordered: orderVirtualServiceMatches(vss) } : defaultTable(service, port);
  }
  return { producer, consumers: consumers.size > 0 ? consumers : NO_CONSUMERS };
}
