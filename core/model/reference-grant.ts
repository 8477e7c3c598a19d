/**
 * Gateway API `ReferenceGrant` (GEP-709) and the one rule every route kind asks: may a route in
 * one namespace send traffic to a Service in another? `backendPermitted` is that rule, shared by
 * HTTPRoute, GRPCRoute and TCPRoute (each with its own kind), by the route status
 * (`routeStatus`: `ResolvedRefs=False, reason RefNotPermitted`) and by the waypoint (a request the
 * weighted choice sends to a backend that is not permitted answers 500, as upstream's conformance
 * test HTTPRouteInvalidCrossNamespaceBackendRef expects).
 *
 * The rule (GEP-709; Gateway API's `BackendObjectReference.namespace`): a reference to an object
 * in the route's own namespace needs nothing; a reference into another namespace is allowed only
 * when a ReferenceGrant *in the referent's namespace* lists the route in `from` (group, kind and
 * namespace, all three equal) and the referent in `to` (group and kind equal; `name` absent means
 * every object of that kind in the namespace). Entries of `from` and of `to` are ORed; grants are
 * ORed. Removing the grant revokes the reference (the waypoint decides per configuration
 * snapshot, the status is recomputed with it).
 *
 * Mesh (GAMMA, GEP-1426 and `ParentReference` in the API): a route's `parentRefs` to a Service in
 * another namespace (a consumer route) is *not* subject to ReferenceGrant: it changes the
 * routing of the route's own namespace's clients only. Its `backendRefs` are references like any
 * other: a backend in a namespace other than the route's needs a grant, even when it is the
 * parent Service's namespace (Istio checks `backendRefs` the same way for Service parents).
 * VirtualService destinations are Istio's and are not subject to it.
 */

/** The API group of Gateway API kinds (`from.group` of a grant that lets routes in). */
export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';

/** One `spec.from[]` entry: the kind of resource, in the namespace, that may refer in. */
export interface ReferenceGrantFrom {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
}

/** One `spec.to[]` entry: what may be referred to in the grant's namespace (`name` absent: all). */
export interface ReferenceGrantTo {
  /** `""` for the core group (Service). */
  readonly group: string;
  readonly kind: string;
  readonly name?: string;
}

/** A ReferenceGrant (`gateway.networking.k8s.io/v1beta1` or `v1`), as `core/kube/routes/reference-grant.ts` converts it. */
export interface ReferenceGrant {
  readonly kind: 'ReferenceGrant';
  readonly name: string;
  readonly namespace: string;
  readonly from: readonly ReferenceGrantFrom[];
  readonly to: readonly ReferenceGrantTo[];
}

/** The referring side: a route of `kind` (`HTTPRoute`, `GRPCRoute`) in `namespace`. */
export interface ReferenceFrom {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
}

/** The referent: an object of `group`/`kind` named `name` in `namespace`. */
export interface ReferenceTo {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

// The grants of one namespace, indexed once per list (a configuration snapshot's list is frozen
// and kept while the snapshot lives), so a request never scans every grant of the mesh.
const byNamespace = new WeakMap<readonly ReferenceGrant[], ReadonlyMap<string, readonly ReferenceGrant[]>>();

function grantsIn(grants: readonly ReferenceGrant[], namespace: string): readonly ReferenceGrant[] {
  let index = byNamespace.get(grants);
  if (!index) {
    const m = new Map<string, ReferenceGrant[]>();
    for (const g of grants) {
      let l = m.get(g.namespace);
      if (!l) m.set(g.namespace, (l = []));
      l.push(g);
    }
    byNamespace.set(grants, (index = m));
  }
  return index.get(namespace) ?? [];
}

/** The core group is written `""`; `core` is accepted as the same (as Istio's `normalizeReference`). */
function normalGroup(g: string): string {
  return g === 'core' ? '' : g;
}

/**
 * Whether `from` may refer to `to`: same namespace, or a grant in `to.namespace` that lists both.
 *
 * @example
 * referencePermitted(grants, {group: GATEWAY_API_GROUP, kind: 'HTTPRoute', namespace: 'apps'},
 *   {group: '', kind: 'Service', namespace: 'backends', name: 'web'});
 */
export function referencePermitted(grants: readonly ReferenceGrant[], from: ReferenceFrom, to: ReferenceTo): boolean {
  if (from.namespace === to.namespace) return true;
  const toGroup = normalGroup(to.group);
  const fromGroup = normalGroup(from.group);
  for (const g of grantsIn(grants, to.namespace)) {
    const fromOk = g.from.some((f) => normalGroup(f.group) === fromGroup && f.kind === from.kind && f.namespace === from.namespace);
    if (!fromOk) continue;
    if (g.to.some((t) => normalGroup(t.group) === toGroup && t.kind === to.kind && (t.name === undefined || t.name === to.name))) return true;
  }
  return false;
}

/** The Gateway API route kinds the mesh reads: their backendRefs are subject to ReferenceGrant. */
export const GATEWAY_ROUTE_KINDS: ReadonlySet<string> = new Set(['HTTPRoute', 'GRPCRoute', 'TCPRoute']);

/** What `backendPermitted` needs of a route: its kind and namespace (an HttpRoute, a GRPCRoute, or a VirtualService). */
export interface RouteIdentity {
  readonly kind: string;
  readonly namespace: string;
}

/** What it needs of a backend: a Service by namespace and name (a hostname or another kind is not its question). */
export interface BackendIdentity {
  readonly name?: string;
  readonly namespace?: string;
  readonly hostname?: string;
  readonly invalidKind?: string;
}

/**
 * Whether a route's Service backend (or mirror target) may be used: always for a VirtualService
 * (Istio's own resource, no grants), for a backend by hostname or of an invalid kind (reported
 * as such elsewhere), and for one in the route's namespace; otherwise when a ReferenceGrant in
 * the backend's namespace lets the route's kind and namespace refer to that Service.
 */
export function backendPermitted(grants: readonly ReferenceGrant[] | undefined, route: RouteIdentity, backend: BackendIdentity): boolean {
  if (!GATEWAY_ROUTE_KINDS.has(route.kind)) return true;
  if (backend.invalidKind !== undefined || backend.hostname !== undefined || backend.namespace === undefined) return true;
  if (backend.namespace === route.namespace) return true;
  return referencePermitted(
    grants ?? [],
    { group: GATEWAY_API_GROUP, kind: route.kind, namespace: route.namespace },
    { group: '', kind: 'Service', namespace: backend.namespace, name: backend.name ?? '' },
  );
}
