/**
 * ReferenceGrant (GEP-709) through the real waypoint, real HBONE and real ztunnels: a route's
 * backend in another namespace is used only when a ReferenceGrant in that namespace lets the
 * route's kind and namespace refer to it; otherwise the route is accepted with
 * `ResolvedRefs=False, reason RefNotPermitted` and the requests sent to that backend get 500.
 * Upstream Gateway API conformance: HTTPRouteInvalidCrossNamespaceBackendRef
 * (conformance/tests/httproute-invalid-cross-namespace-backend-ref.go), HTTPRouteReferenceGrant
 * (httproute-reference-grant.go), HTTPRoutePartiallyInvalidViaInvalidReferenceGrant (a grant
 * naming another Service, or of the wrong `from`); and "MUST respond to the removal of a grant by
 * revoking the access that the grant allowed" (the ReferenceGrant API).
 */
import t from 'tap';
import { closeServer } from '../helpers/net.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.158.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the backend in `backends`, .22 = the one in `isolated`, .30 = the waypoint,
// .100-.104 = service VIPs.
const base = '127.0.158';
const CLIENT = `${base}.10`;
const VIP = { routed: `${base}.100`, web: `${base}.101`, other: `${base}.102`, isolated: `${base}.103`, mirror: `${base}.104` };
const WAYPOINT = { address: `${base}.30` };
const port80 = [{ port: 80, targetPort: 8080, name: 'http' }];

const workloads = [
  { name: 'web', namespace: 'backends', serviceAccount: 'web', node: 'node-b', ips: [`${base}.21`], labels: { app: 'web' } },
  { name: 'iso', namespace: 'isolated', serviceAccount: 'iso', node: 'node-b', ips: [`${base}.22`], labels: { app: 'iso' } },
];
const prefix = (value: string) => [{ path: { type: 'PathPrefix', value } }];
const parentRefs = [{ kind: 'Service', group: '', name: 'routed', port: 80 }];
const rule = (path: string, name: string, namespace: string) => ({ matches: prefix(path), backendRefs: [{ name, namespace, port: 80 }] });
const grant = (name: string, from: object[], to: object[]) => ({ name, namespace: 'backends', spec: { from, to } });
const fromDefault = { group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'default' };
const grants = [
  // Only the Service `web` of `backends`, for HTTPRoutes of `default`.
  grant('web-from-default', [fromDefault], [{ group: '', kind: 'Service', name: 'web' }]),
  // Services of `backends`, but for GRPCRoutes only, and for HTTPRoutes of another namespace: neither lets these routes in.
  grant('grpc-only', [{ ...fromDefault, kind: 'GRPCRoute' }, { ...fromDefault, namespace: 'elsewhere' }], [{ group: '', kind: 'Service' }]),
];
const config = (referenceGrants: object[]) => ({
  services: [
    { name: 'routed', namespace: 'default', vips: [VIP.routed], ports: port80, selector: { app: 'web' }, waypoint: WAYPOINT },
    { name: 'web', namespace: 'backends', vips: [VIP.web], ports: port80, selector: { app: 'web' } },
    { name: 'other', namespace: 'backends', vips: [VIP.other], ports: port80, selector: { app: 'web' } },
    { name: 'mirror', namespace: 'backends', vips: [VIP.mirror], ports: port80, selector: { app: 'iso' } },
    { name: 'web', namespace: 'isolated', vips: [VIP.isolated], ports: port80, selector: { app: 'iso' } },
  ],
  referenceGrants,
  httpRoutes: [
    { name: 'reference-grant', namespace: 'default', spec: { parentRefs, rules: [rule('/granted', 'web', 'backends')] } },
    { name: 'invalid-cross-namespace-backend-ref', namespace: 'default', spec: { parentRefs, rules: [rule('/isolated', 'web', 'isolated')] } },
    {
      // One permitted backend and one the grant does not name: half and half (upstream's
      // HTTPRoutePartiallyInvalidViaInvalidReferenceGrant has the one rule with the bad one).
      name: 'partially-invalid',
      namespace: 'default',
      spec: { parentRefs, rules: [rule('/other', 'other', 'backends'), { matches: prefix('/split'), backendRefs: [{ name: 'web', namespace: 'backends', port: 80 }, { name: 'other', namespace: 'backends', port: 80 }] }] },
    },
    {
      // A mirror into another namespace needs the grant as a backend does: `mirror` is not named.
      name: 'mirror-not-permitted',
      namespace: 'default',
      spec: { parentRefs, rules: [{ matches: prefix('/mirrored'), filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror', namespace: 'backends', port: 80 } } }], backendRefs: [{ name: 'web', namespace: 'backends', port: 80 }] }] },
    },
  ],
});

const web = await backend(`${base}.21`, 8080, 'web');
const iso = await backend(`${base}.22`, 8080, 'iso');
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config: config(grants) });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await closeServer(web.server as unknown as import('node:net').Server);
  await closeServer(iso.server as unknown as import('node:net').Server);
});

type Dump = { routeStatus: Array<{ kind: string; name: string; conditions: Array<{ type: string; status: string; reason: string; message?: string }> }> };
const conditions = (name: string) => (wm.waypoint.configDump() as Dump).routeStatus.find((r) => r.kind === 'HTTPRoute' && r.name === name)?.conditions;

t.test('HTTPRouteReferenceGrant: a grant naming the route kind, its namespace and the Service lets it through', async (t) => {
  t.match(conditions('reference-grant'), [{ type: 'Accepted', status: 'True' }, { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs' }]);
  const r = await request(agent, `http://${VIP.routed}/granted`);
  t.equal(r.status, 200);
  t.equal(r.headers['x-backend'], 'web');
});

t.test('HTTPRouteInvalidCrossNamespaceBackendRef: no grant in the backend namespace: RefNotPermitted, 500, nothing forwarded', async (t) => {
  t.match(conditions('invalid-cross-namespace-backend-ref'), [
    { type: 'Accepted', status: 'True', reason: 'Accepted' },
    { type: 'ResolvedRefs', status: 'False', reason: 'RefNotPermitted', message: /backend isolated\/web is in another namespace and no ReferenceGrant in isolated/ },
  ]);
  const before = iso.hits();
  const r = await request(agent, `http://${VIP.routed}/isolated`);
  t.equal(r.status, 500);
  t.equal(r.body, 'backend not found');
  t.equal(iso.hits(), before, 'the Service in the other namespace got nothing');
});

t.test('HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: a grant for another Service, or another kind or namespace, does not let the route in', async (t) => {
  t.match(conditions('partially-invalid'), [
    { type: 'Accepted', status: 'True' },
    { type: 'ResolvedRefs', status: 'False', reason: 'RefNotPermitted', message: /rules\[0\]: backend backends\/other .*rules\[1\]: backend backends\/other/ },
  ]);
  t.equal((await request(agent, `http://${VIP.routed}/other`)).status, 500, 'the grant names only web (the grpc-only grant is for GRPCRoutes and another namespace)');
  const seen = { 200: 0, 500: 0 } as Record<number, number>;
  for (let i = 0; i < 40; i++) {
    const r = await request(agent, `http://${VIP.routed}/split`);
    seen[r.status] = (seen[r.status] ?? 0) + 1;
  }
  // 40 draws of a fair coin: each side at least 5 times except with probability < 1e-6.
  t.ok(seen[200]! >= 5 && seen[500]! >= 5, `the permitted half served, the other half 500: ${JSON.stringify(seen)}`);
  t.equal(seen[200]! + seen[500]!, 40, 'no other status');
});

t.test('a RequestMirror to a Service the grant does not name: RefNotPermitted, and nothing is mirrored', async (t) => {
  t.match(conditions('mirror-not-permitted'), [{ type: 'Accepted', status: 'True' }, { type: 'ResolvedRefs', status: 'False', reason: 'RefNotPermitted', message: /mirror backend backends\/mirror/ }]);
  const before = iso.hits();
  const r = await request(agent, `http://${VIP.routed}/mirrored`);
  t.equal(r.status, 200, 'the request itself is served');
  // The mirror would be sent before the response; a second served request orders after it.
  t.equal((await request(agent, `http://${VIP.routed}/granted`)).status, 200);
  t.equal(iso.hits(), before, 'the mirror Service got no copy');
});

t.test('adding a grant permits the reference; removing it revokes it', async (t) => {
  const everywhere = { name: 'all', namespace: 'isolated', spec: { from: [fromDefault], to: [{ group: '', kind: 'Service' }] } };
  await wm.apply(config([...grants, everywhere]), (wp) => (wp.configDump() as Dump).routeStatus.some((r) => r.name === 'invalid-cross-namespace-backend-ref' && r.conditions[1]?.status === 'True'));
  let r = await request(agent, `http://${VIP.routed}/isolated`);
  t.equal(r.status, 200, 'granted: served');
  t.equal(r.headers['x-backend'], 'iso');
  await wm.apply(config(grants), (wp) => (wp.configDump() as Dump).routeStatus.some((r) => r.name === 'invalid-cross-namespace-backend-ref' && r.conditions[1]?.reason === 'RefNotPermitted'));
  r = await request(agent, `http://${VIP.routed}/isolated`);
  t.equal(r.status, 500, 'revoked: 500 again');
});
