/**
 * DestinationRule subsets end to end: client → ztunnel A (SOCKS5) → HBONE → waypoint → HBONE →
 * ztunnel of the chosen pod → HTTP backend, real sockets and TLS on loopback. The
 * DestinationRules go through the real converter and reach the waypoint with every config
 * snapshot (the file format has no `destinationRules` section, so a wrapper adds them).
 */
import t from 'tap';
import { Problems } from '../../core/validation/check.js';
import { DestinationRuleConverter } from '../../core/kube/routes/destination-rule.js';
import type { ConfigSource } from '../../core/model/source.js';
import type { DestinationRule } from '../../core/model/routes.js';
import { closeServer } from '../helpers/net.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.9.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21/.22 = the v1/v2 pods, .30 = the waypoint, .100 = the reviews VIP.
const base = '127.0.9';
const CLIENT = `${base}.10`;
const VIP = `${base}.100`;

const workloads = [
  { name: 'reviews-v1', namespace: 'default', serviceAccount: 'reviews', node: 'node-b', ips: [`${base}.21`], labels: { app: 'reviews', version: 'v1' } },
  { name: 'reviews-v2', namespace: 'default', serviceAccount: 'reviews', node: 'node-a', ips: [`${base}.22`], labels: { app: 'reviews', version: 'v2' } },
];
const subset = (name: string, weight?: number) => ({ destination: { host: 'reviews', subset: name }, ...(weight !== undefined ? { weight } : {}) });
const config = (generation: number) => ({
  services: [
    { name: 'reviews', namespace: 'default', vips: [VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'reviews' }, waypoint: { address: `${base}.30` } },
  ],
  virtualServices: [
    {
      name: 'reviews',
      namespace: 'default',
      spec: {
        hosts: ['reviews'],
        http: [
          { match: [{ uri: { prefix: '/split' } }], route: [subset('v1', 50), subset('v2', 50)] },
          { match: [{ uri: { prefix: '/unknown' } }], route: [subset('v9')] },
          { match: [{ uri: { prefix: '/empty' } }], route: [subset('v3')] },
          { route: [subset('v2')] },
        ],
      },
    },
    // Only there to make a reload visible: the file must change for the sources to reload.
    { name: `generation-${generation}`, namespace: 'default', spec: { hosts: ['reviews.other'], http: [{ route: [{ destination: { host: 'reviews.other' } }] }] } },
  ],
});

let drSpec: Record<string, unknown> = {
  host: 'reviews.default.svc.cluster.local',
  trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } },
  subsets: [
    { name: 'v1', labels: { version: 'v1' } },
    { name: 'v2', labels: { version: 'v2' } },
    { name: 'v3', labels: { version: 'v3' } },
  ],
};
function destinationRules(): DestinationRule[] {
  const p = new Problems();
  const dr = new DestinationRuleConverter(p).destinationRule('reviews', 'default', drSpec, 'spec');
  if (!dr) throw new Error(p.list.join('\n'));
  return [dr];
}
const withDestinationRules = (inner: ConfigSource): ConfigSource => ({
  start: (listener) => inner.start((cfg) => listener(Object.freeze({ ...cfg, destinationRules: destinationRules() }))),
  close: () => inner.close(),
});

// Regression: the upstream agent added an 'error' listener to a pooled HBONE stream per request.
const leaks: Error[] = [];
const onWarning = (w: Error) => {
  if (w.name === 'MaxListenersExceededWarning') leaks.push(w);
};
process.on('warning', onWarning);
t.teardown(() => void process.off('warning', onWarning));

const v1 = await backend(`${base}.21`, 8080, 'reviews-v1');
const v2 = await backend(`${base}.22`, 8080, 'reviews-v2');
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config: config(0), wrapSource: withDestinationRules });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await Promise.all([v1, v2].map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

async function count(labels: Record<string, string>): Promise<number> {
  const m = await wm.waypoint.metrics.registry.getSingleMetric('istio_requests_total')?.get();
  let sum = 0;
  for (const v of m?.values ?? []) if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) sum += v.value;
  return sum;
}

async function backends(path: string, n: number, via = agent): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i += 20) {
    const batch = await Promise.all(Array.from({ length: Math.min(20, n - i) }, () => request(via, `http://${VIP}${path}`)));
    for (const r of batch) {
      const name = r.status === 200 ? String(r.headers['x-backend']) : `status ${r.status}`;
      counts[name] = (counts[name] ?? 0) + 1;
    }
  }
  return counts;
}

t.test('100% to subset v2 reaches only the v2 pod (the service alone would round-robin over both)', async (t) => {
  const v1Before = v1.hits();
  t.same(await backends('/', 200), { 'reviews-v2': 200 });
  t.equal(v1.hits() - v1Before, 0, 'the v1 pod saw none of them');
  t.equal(await count({ destination_workload: 'reviews-v2', response_code: '200', destination_version: 'v2' }), 200);
});

t.test('a 50/50 split over subsets v1 and v2 lands within statistical bounds', async (t) => {
  const N = 1000;
  const counts = await backends('/split', N);
  const n1 = counts['reviews-v1'] ?? 0;
  // Binomial(1000, 0.5): mean 500, sd 15.8; 5 sd either side fails about once in 3.5 million runs.
  t.ok(n1 >= 421 && n1 <= 579, `reviews-v1 got ${n1} of ${N} (expected 500 ± 79)`);
  t.equal(n1 + (counts['reviews-v2'] ?? 0), N, 'every request reached one of the two pods');
});

t.test('a subset no DestinationRule defines answers 503 NC (Envoy: cluster not found), and the route status says so', async (t) => {
  const before = v1.hits() + v2.hits();
  const r = await request(agent, `http://${VIP}/unknown`);
  t.equal(r.status, 503);
  t.equal(r.body, '', "Envoy's cluster_not_found reply has no body");
  t.equal(v1.hits() + v2.hits(), before, 'nothing reached a pod');
  t.equal(await count({ response_code: '503', response_flags: 'NC', destination_service: 'reviews.default.svc.cluster.local' }), 1);
  const dump = wm.waypoint.configDump() as { routeStatus: Array<{ kind: string; name: string; conditions: Array<{ type: string; status: string; reason: string; message?: string }> }> };
  const vs = dump.routeStatus.find((s) => s.kind === 'VirtualService' && s.name === 'reviews')?.conditions.find((c) => c.type === 'ResolvedRefs');
  t.same(vs, {
    type: 'ResolvedRefs',
    status: 'False',
    reason: 'BackendNotFound',
    message: 'rules[1]: backend default/reviews subset "v9" is not defined by a DestinationRule for that host, so the rule answers 503 NC',
  });
  const dr = dump.routeStatus.find((s) => s.kind === 'DestinationRule');
  t.same(dr?.conditions.map((c) => c.message), [
    undefined,
    'subset v3 selects no healthy endpoint of default/reviews, so requests to it answer 503 UH',
  ]);
});

t.test('a subset with no matching endpoint answers 503 UH', async (t) => {
  const r = await request(agent, `http://${VIP}/empty`);
  t.equal(r.status, 503);
  t.equal(r.body, 'no healthy upstream');
  t.ok((await count({ response_code: '503', response_flags: 'UH' })) >= 1, 'counted with UH (a retry of UH is still UH)');
});

t.test('a config reload that changes the subset labels moves the traffic', async (t) => {
  drSpec = { host: 'reviews', subsets: [{ name: 'v2', labels: { version: 'v1' } }] };
  await wm.apply(config(1), (wp) => wp.state.config.virtualServices?.some((vs) => vs.name === 'generation-1') ?? false);
  const fresh = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
  t.teardown(() => fresh.destroy());
  t.same(await backends('/', 40, fresh), { 'reviews-v1': 40 }, 'subset v2 now selects the v1 pod');
  const reused = Object.values(agent.freeSockets).flat().length;
  t.ok(reused > 0, `keep-alive tunnels opened before the reload are still there (${reused})`);
  t.same(await backends('/', 40, agent), { 'reviews-v1': 40 }, 'requests on tunnels opened before the reload follow the new config too (as Envoy)');
  const ncBefore = await count({ response_flags: 'NC' });
  const split = await backends('/split', 40, fresh);
  // Half of the split names v1, which the new DestinationRule no longer defines: 503 NC; the
  // other half goes to subset v2, now the v1 pod. P(one side empty in 40) = 2^-39.
  t.same(Object.keys(split).sort(), ['reviews-v1', 'status 503']);
  t.equal((await count({ response_flags: 'NC' })) - ncBefore, split['status 503'], 'each 503 is an NC');
});

t.test('a keep-alive tunnel whose service left the configuration is refused, not served under the old one', async (t) => {
  t.equal((await request(agent, `http://${VIP}/`)).status, 200, 'a tunnel is open and idle in the agent');
  await wm.apply({ ...config(2), services: [] }, (wp) => wp.state.config.services.length === 0);
  const r = await request(agent, `http://${VIP}/`);
  t.equal(r.status, 503, 'the old snapshot (and its policies) is not used');
  t.equal(r.headers['connection'], 'close', 'and the tunnel closes: a new one is judged by the new configuration');
  await wm.apply(config(3), (wp) => wp.state.config.services.length === 1);
});

t.test('no listener leak on pooled upstream streams after ~1,300 requests', async (t) => {
  await new Promise((r) => setImmediate(r));
  t.same(leaks.map((w) => w.message), []);
});
