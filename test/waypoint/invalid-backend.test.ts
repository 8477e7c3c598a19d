/**
 * Backends that cannot be resolved, through the real waypoint, real HBONE and real ztunnels: the
 * route is accepted, its `ResolvedRefs` says why it is not resolved, and the requests the weighted
 * choice sends to such a backend get 500 while the rest are served (upstream Gateway API
 * conformance: HTTPRouteInvalidBackendRefUnknownKind, conformance/tests/
 * httproute-invalid-backendref-unknown-kind.go; HTTPRouteInvalidNonExistentBackendRef,
 * httproute-invalid-backendref-nonexistent.go; and the API's rule for a split: "the proportion
 * of requests that would otherwise have been routed to an invalid backend MUST receive a 500").
 */
import t from 'tap';
import { closeServer } from '../helpers/net.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.153.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the backend, .30 = the waypoint, .100-.101 = service VIPs.
const base = '127.0.153';
const CLIENT = `${base}.10`;
const VIP = { routed: `${base}.100`, v1: `${base}.101` };
const WAYPOINT = { address: `${base}.30` };
const port80 = [{ port: 80, targetPort: 8080, name: 'http' }];

const workloads = [{ name: 'echo-v1', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo' } }];
const unknownKind = { group: 'unknownkind.example.com', kind: 'NonExistent', name: 'web-backend', namespace: 'web-backend', port: 8080 };
const prefix = (value: string) => [{ path: { type: 'PathPrefix', value } }];
const parentRefs = [{ kind: 'Service', group: '', name: 'routed', port: 80 }];
const config = {
  services: [
    { name: 'routed', namespace: 'default', vips: [VIP.routed], ports: port80, selector: { app: 'echo' }, waypoint: WAYPOINT },
    { name: 'echo-v1', namespace: 'default', vips: [VIP.v1], ports: port80, selector: { app: 'echo' } },
  ],
  httpRoutes: [
    { name: 'invalid-backend-ref-unknown-kind', namespace: 'default', spec: { parentRefs, rules: [{ matches: prefix('/v2'), backendRefs: [unknownKind] }] } },
    { name: 'invalid-backend-ref-nonexistent', namespace: 'default', spec: { parentRefs, rules: [{ matches: prefix('/missing'), backendRefs: [{ name: 'nonexistent', port: 8080 }] }] } },
    {
      name: 'weighted-invalid',
      namespace: 'default',
      spec: { parentRefs, rules: [{ matches: prefix('/split'), backendRefs: [{ name: 'echo-v1', port: 80, weight: 50 }, { ...unknownKind, weight: 50 }] }] },
    },
    {
      // Both an unknown kind and a missing Service: one reason per condition, InvalidKind first.
      name: 'both',
      namespace: 'default',
      spec: { parentRefs, rules: [{ matches: prefix('/both'), backendRefs: [{ name: 'nonexistent', port: 80 }, unknownKind] }] },
    },
  ],
};

const v1 = await backend(`${base}.21`, 8080, 'echo-v1');
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await closeServer(v1.server as unknown as import('node:net').Server);
});

type Dump = { routeStatus: Array<{ kind: string; name: string; conditions: Array<{ type: string; status: string; reason: string; message?: string }> }> };
const conditions = (name: string) => (wm.waypoint.configDump() as Dump).routeStatus.find((r) => r.kind === 'HTTPRoute' && r.name === name)?.conditions;

t.test('HTTPRouteInvalidBackendRefUnknownKind: accepted, ResolvedRefs=False InvalidKind, requests get 500', async (t) => {
  t.match(conditions('invalid-backend-ref-unknown-kind'), [
    { type: 'Accepted', status: 'True', reason: 'Accepted' },
    { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind', message: /backend unknownkind\.example\.com\/NonExistent web-backend\/web-backend is not a Service/ },
  ]);
  const before = v1.hits();
  const r = await request(agent, `http://${VIP.routed}/v2`);
  t.equal(r.status, 500);
  t.equal(r.body, 'backend not found');
  t.equal(v1.hits(), before, 'nothing was forwarded');
});

t.test('HTTPRouteInvalidNonExistentBackendRef: accepted, ResolvedRefs=False BackendNotFound, requests get 500', async (t) => {
  t.match(conditions('invalid-backend-ref-nonexistent'), [
    { type: 'Accepted', status: 'True', reason: 'Accepted' },
    { type: 'ResolvedRefs', status: 'False', reason: 'BackendNotFound', message: /backend default\/nonexistent not found/ },
  ]);
  t.equal((await request(agent, `http://${VIP.routed}/missing`)).status, 500);
});

t.test('a 50/50 split between a good and an invalid backend: about half get 500, the rest are served', async (t) => {
  t.match(conditions('weighted-invalid'), [{ type: 'Accepted', status: 'True' }, { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind' }]);
  const N = 200;
  const before = v1.hits();
  let failed = 0;
  for (let i = 0; i < N; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => request(agent, `http://${VIP.routed}/split`)));
    for (const r of batch) {
      if (r.status === 500) failed++;
      else if (r.status !== 200) t.fail(`unexpected ${r.status}`);
    }
  }
  // Binomial(200, 1/2): mean 100, sd 7.1; 5 sd either side fails about once in 3.5 million runs.
  t.ok(failed >= 65 && failed <= 135, `${failed} of ${N} got 500 (expected 100 ± 35)`);
  t.equal(v1.hits() - before, N - failed, 'every other request reached the good backend');
});

t.test('an unknown kind and a missing Service in one route: InvalidKind, both named', async (t) => {
  const st = conditions('both')?.find((c) => c.type === 'ResolvedRefs');
  t.equal(st?.reason, 'InvalidKind');
  t.match(st?.message, /default\/nonexistent not found.*NonExistent web-backend\/web-backend is not a Service/);
});
