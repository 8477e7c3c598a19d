/**
 * Producer and consumer HTTPRoutes through the real waypoint, real HBONE and real ztunnels
 * (upstream Gateway API conformance: MeshConsumerRoute, conformance/tests/mesh/mesh-consumer-route.go).
 * A consumer route (in namespace `front`, parentRef the Service `shop/echo`) applies only to
 * clients in `front`, and wins over the producer route there; clients in `shop` (the service's
 * own namespace) and in `default` get the producer's route. The waypoint knows the client's
 * namespace from the SPIFFE identity its ztunnel presented in the HBONE tunnel.
 */
import t from 'tap';
import { closeServer } from '../helpers/net.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.150.2 = ztunnel node-a, .3 = node-b, .10-.12 = clients
// (default, front, shop), .21/.22 = backends, .30 = the waypoint, .100-.102 = service VIPs.
const base = '127.0.150';
const CLIENT = { default: `${base}.10`, front: `${base}.11`, shop: `${base}.12` };
const VIP = { echo: `${base}.100`, solo: `${base}.101`, mixed: `${base}.102` };
const WAYPOINT = { address: `${base}.30` };
const port80 = [{ port: 80, targetPort: 8080, name: 'http' }];

const workloads = [
  { name: 'front-client', namespace: 'front', serviceAccount: 'front-client', node: 'node-a', ips: [CLIENT.front], labels: { app: 'front-client' } },
  { name: 'shop-client', namespace: 'shop', serviceAccount: 'shop-client', node: 'node-a', ips: [CLIENT.shop], labels: { app: 'shop-client' } },
  { name: 'echo-v1', namespace: 'shop', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'shop', serviceAccount: 'echo', node: 'node-a', ips: [`${base}.22`], labels: { app: 'echo', version: 'v2' } },
];
const svc = (name: string, vip: string, selector: Record<string, string>, viaWaypoint = true) => ({
  name,
  namespace: 'shop',
  vips: [vip],
  ports: port80,
  selector,
  ...(viaWaypoint ? { waypoint: WAYPOINT } : {}),
});
const setHeader = (name: string, value: string) => ({ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name, value }] } });
const config = {
  services: [
    svc('echo', VIP.echo, { app: 'echo', version: 'v1' }),
    svc('solo', VIP.solo, { app: 'echo', version: 'v1' }),
    svc('mixed', VIP.mixed, { app: 'echo', version: 'v1' }),
    svc('echo-v2', `${base}.110`, { app: 'echo', version: 'v2' }, false),
  ],
  // The consumer routes' backendRefs are in shop: a reference into another namespace needs a
  // ReferenceGrant there, parentRefs of a consumer route do not (Gateway API's ReferenceGrant).
  referenceGrants: [
    { name: 'front-routes', namespace: 'shop', spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'front' }], to: [{ group: '', kind: 'Service' }] } },
  ],
  httpRoutes: [
    // The producer route of shop/echo: every client but front's.
    {
      name: 'producer',
      namespace: 'shop',
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }], rules: [{ filters: [setHeader('x-route', 'producer')], backendRefs: [{ name: 'echo', port: 80 }] }] },
    },
    // The consumer route, as upstream's: in the client's namespace, parent in the service's.
    {
      name: 'consumer',
      namespace: 'front',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'echo', namespace: 'shop', port: 80 }],
        rules: [{ filters: [setHeader('x-header-set', 'set')], backendRefs: [{ name: 'echo-v2', namespace: 'shop', port: 80 }] }],
      },
    },
    // shop/solo has a consumer route only: other clients get the default route (the service itself).
    {
      name: 'solo-consumer',
      namespace: 'front',
      spec: { parentRefs: [{ kind: 'Service', name: 'solo', namespace: 'shop' }], rules: [{ filters: [setHeader('x-header-set', 'set')], backendRefs: [{ name: 'echo-v2', namespace: 'shop', port: 80 }] }] },
    },
    // shop/mixed: a consumer route for front on /front only; front's other paths find no rule (404),
    // since consumer and producer routes are never merged.
    {
      name: 'mixed-consumer',
      namespace: 'front',
      spec: {
        parentRefs: [{ kind: 'Service', name: 'mixed', namespace: 'shop' }],
        rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/front' } }], backendRefs: [{ name: 'echo-v2', namespace: 'shop', port: 80 }] }],
      },
    },
  ],
  virtualServices: [
    // For shop/mixed, the producer side is a VirtualService: it keeps routing every other client.
    { name: 'mixed', namespace: 'shop', spec: { hosts: ['mixed'], http: [{ headers: { response: { set: { 'x-route': 'vs' } } }, route: [{ destination: { host: 'mixed' } }] }] } },
  ],
};

const v1 = await backend(`${base}.21`, 8080, 'echo-v1');
const v2 = await backend(`${base}.22`, 8080, 'echo-v2');
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agents = {
  default: meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT.default),
  front: meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT.front),
  shop: meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT.shop),
};
t.teardown(async () => {
  for (const a of Object.values(agents)) a.destroy();
  await wm.close();
  await Promise.all([v1, v2].map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

t.test('MeshConsumerRoute: the consumer route applies to its own namespace only', async (t) => {
  const front = await request(agents.front, `http://${VIP.echo}/`);
  t.equal(front.status, 200);
  t.equal(front.headers['x-header-set'], 'set', 'a client in front gets the consumer route (its filter)');
  t.equal(front.headers['x-backend'], 'echo-v2', 'and its backend');
  t.equal(front.headers['x-route'], undefined, 'the producer route does not apply to front: the two are not merged');
  for (const ns of ['shop', 'default'] as const) {
    const r = await request(agents[ns], `http://${VIP.echo}/`);
    t.equal(r.status, 200);
    t.equal(r.headers['x-header-set'], undefined, `a client in ${ns} is not modified by the consumer route`);
    t.equal(r.headers['x-route'], 'producer', `a client in ${ns} gets the producer route`);
    t.equal(r.headers['x-backend'], 'echo-v1', `and the producer's backend (${ns})`);
  }
});

t.test('a service with only a consumer route: other namespaces get the default route', async (t) => {
  const front = await request(agents.front, `http://${VIP.solo}/`);
  t.equal(front.headers['x-header-set'], 'set');
  t.equal(front.headers['x-backend'], 'echo-v2');
  const shop = await request(agents.shop, `http://${VIP.solo}/`);
  t.equal(shop.status, 200);
  t.equal(shop.headers['x-header-set'], undefined);
  t.equal(shop.headers['x-backend'], 'echo-v1', 'the default route: the service itself');
});

t.test('a consumer route beside a producer VirtualService: each client gets its own, never both', async (t) => {
  const frontHit = await request(agents.front, `http://${VIP.mixed}/front/x`);
  t.equal(frontHit.headers['x-backend'], 'echo-v2', 'front matches its consumer rule');
  t.equal(frontHit.headers['x-route'], undefined, 'without the VirtualService header');
  const frontMiss = await request(agents.front, `http://${VIP.mixed}/other`);
  t.equal(frontMiss.status, 404, 'front: no consumer rule matches, and the producer VirtualService is not consulted');
  const shop = await request(agents.shop, `http://${VIP.mixed}/front/x`);
  t.equal(shop.headers['x-route'], 'vs', 'shop gets the VirtualService');
  t.equal(shop.headers['x-backend'], 'echo-v1');
});

t.test('statuses: consumer routes are accepted; a consumer route does not conflict the producer VirtualService', async (t) => {
  const dump = wm.waypoint.configDump() as { routeStatus: Array<{ kind: string; namespace: string; name: string; conditions: Array<{ type: string; status: string; reason: string }> }> };
  const of = (kind: string, ns: string, name: string) =>
    dump.routeStatus.find((r) => r.kind === kind && r.namespace === ns && r.name === name)?.conditions.map((c) => `${c.type}=${c.status}:${c.reason}`);
  t.same(of('HTTPRoute', 'front', 'consumer'), ['Accepted=True:Accepted', 'ResolvedRefs=True:ResolvedRefs']);
  t.same(of('VirtualService', 'shop', 'mixed'), ['Accepted=True:Accepted', 'ResolvedRefs=True:ResolvedRefs'], 'only producer routes shadow a VirtualService');
});
