/**
 * DestinationRule `trafficPolicy` end to end (issue 15, item 4): client → ztunnel A (SOCKS5) →
 * HBONE → waypoint → HBONE → the chosen pod's ztunnel → HTTP backend, real sockets and TLS on
 * loopback. The DestinationRules come from the mesh file (its `destinationRules:` section),
 * through the real converter: load balancing (round-robin, consistent hash on a header and a
 * cookie, least request), circuit breaking (503 `UO`) and outlier detection (ejection, return,
 * every endpoint of a subset ejected → 503 `UH`).
 */
import http from 'node:http';
import { Writable } from 'node:stream';
import t from 'tap';
import { pino } from 'pino';
import type { Logger } from '../../core/telemetry/log.js';
import { closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request, startWaypointMesh, type Reply } from './fixture.js';

// Loopback addresses of this file: 127.0.113.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21/.22/.23 = the web pods, .30 = the waypoint, .100-.107 = service VIPs.
const base = '127.0.113';
const CLIENT = `${base}.10`;
const PODS = ['web-a', 'web-b', 'web-c'] as const;
const VIP = { rr: `${base}.100`, hash: `${base}.101`, lr: `${base}.102`, cb: `${base}.103`, od: `${base}.104`, cookie: `${base}.105`, back: `${base}.106`, retry: `${base}.107` };

const workloads = PODS.map((name, i) => ({
  name,
  namespace: 'default',
  serviceAccount: 'web',
  node: i === 1 ? 'node-a' : 'node-b',
  ips: [`${base}.${21 + i}`],
  labels: { app: 'web', version: `v${i + 1}` },
}));
// Every service selects the same three pods: one DestinationRule each, one config for the file.
const service = (name: string, vip: string) => ({
  name,
  namespace: 'default',
  vips: [vip],
  ports: [{ port: 80, targetPort: 8080, name: 'http' }],
  selector: { app: 'web' },
  waypoint: { address: `${base}.30` },
});
const destinationRule = (name: string, spec: Record<string, unknown>) => ({ name, namespace: 'default', spec: { host: name, ...spec } });
const config = {
  services: [service('web-rr', VIP.rr), service('web-hash', VIP.hash), service('web-lr', VIP.lr), service('web-cb', VIP.cb), service('web-od', VIP.od), service('web-cookie', VIP.cookie), service('web-back', VIP.back), service('web-retry', VIP.retry)],
  virtualServices: [
    { name: 'web-retry', namespace: 'default', spec: { hosts: ['web-retry'], http: [{ route: [{ destination: { host: 'web-retry' } }], retries: { attempts: 2, retryOn: '5xx' } }] } },
    {
      name: 'web-back',
      namespace: 'default',
      spec: { hosts: ['web-back'], http: [{ match: [{ uri: { prefix: '/sub' } }], route: [{ destination: { host: 'web-back', subset: 'c' } }] }, { route: [{ destination: { host: 'web-back' } }] }] },
    },
  ],
  destinationRules: [
    destinationRule('web-rr', { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, tls: { mode: 'ISTIO_MUTUAL' } } }),
    destinationRule('web-hash', { trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } } } }),
    destinationRule('web-lr', { trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } }),
    destinationRule('web-cb', { trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } } } }),
    // Ejected for an hour: what an ejected pod gets does not depend on how fast the test runs.
    destinationRule('web-od', { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 2, baseEjectionTime: '1h', maxEjectionPercent: 100 } } }),
    destinationRule('web-back', {
      // A short ejection (the test waits on the state in /config_dump, never on time); the subset's own, an hour.
      trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 2, interval: '100ms', baseEjectionTime: '200ms', maxEjectionPercent: 100 } },
      subsets: [{ name: 'c', labels: { version: 'v3' }, trafficPolicy: { outlierDetection: { consecutive5xxErrors: 2, baseEjectionTime: '1h', maxEjectionPercent: 100 } } }],
    }),
    destinationRule('web-retry', { trafficPolicy: { connectionPool: { http: { maxRetries: 1 } } } }),
    destinationRule('web-cookie', { trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: 'sticky', ttl: '60s', path: '/' } } } } }),
  ],
};

/** Backend behaviour, switched by the tests: held responses (`/hold`) and failing pods (`/fail`, `/sub`). */
const held: http.ServerResponse[] = [];
let holding = true;
const failing = new Set<string>();
const holdHits = new Map<string, number>();
/** Requests per path, over all pods (`/rhold-*`: the first gets 500, the next ones are held). */
const pathHits = new Map<string, number>();
function releaseAll(): void {
  holding = false;
  for (const res of held.splice(0)) {
    res.writeHead(200, { 'x-backend': String(res.getHeader('x-backend-name')) });
    res.end('released');
  }
}

const backends = await Promise.all(
  PODS.map((name, i) =>
    backend(`${base}.${21 + i}`, 8080, name, (req, res) => {
      const path = req.url ?? '/';
      if (path.startsWith('/rfail')) {
        res.writeHead(500, { 'x-backend': name });
        res.end('failing');
        return true;
      }
      if (path.startsWith('/rhold')) {
        const n = (pathHits.get(path) ?? 0) + 1;
        pathHits.set(path, n);
        if (n === 1 || !holding) {
          res.writeHead(n === 1 ? 500 : 200, { 'x-backend': name });
          res.end(n === 1 ? 'failing' : 'ok');
        } else {
          res.setHeader('x-backend-name', name);
          held.push(res);
        }
        return true;
      }
      if (path.startsWith('/hold')) {
        holdHits.set(name, (holdHits.get(name) ?? 0) + 1);
        if (!holding) return false;
        res.setHeader('x-backend-name', name);
        held.push(res);
        return true;
      }
      if ((path.startsWith('/fail') || path.startsWith('/sub')) && failing.has(name)) {
        res.writeHead(500, { 'x-backend': name });
        res.end('failing');
        return true;
      }
      return false;
    }),
  ),
);
const hits = (name: string) => backends[PODS.indexOf(name as (typeof PODS)[number])]!.hits();

// The waypoint's access log, captured: one JSON line per request.
const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  },
});
const logger = pino({ level: 'info' }, sink) as unknown as Logger;

const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config, logger });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  releaseAll();
  agent.destroy();
  await wm.close();
  await Promise.all(backends.map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

async function count(labels: Record<string, string>): Promise<number> {
  const m = await wm.waypoint.metrics.registry.getSingleMetric('istio_requests_total')?.get();
  let sum = 0;
  for (const v of m?.values ?? []) if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) sum += v.value;
  return sum;
}

/** `n` sequential requests; which pod answered each (or its status). */
async function spread(vip: string, path: string, n: number, headers: Record<string, string> = {}): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await request(agent, `http://${vip}${path}`, { headers });
    const k = r.status === 200 ? String(r.headers['x-backend']) : `status ${r.status}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

t.test('ROUND_ROBIN spreads evenly over the 3 pods; the fields not applied are in the status', async (t) => {
  t.same(await spread(VIP.rr, '/', 30), { 'web-a': 10, 'web-b': 10, 'web-c': 10 });
  const dump = wm.waypoint.configDump() as { routeStatus: Array<{ kind: string; name: string; conditions: Array<{ type: string; message?: string }> }> };
  const accepted = dump.routeStatus.find((s) => s.kind === 'DestinationRule' && s.name === 'web-rr')?.conditions.find((c) => c.type === 'Accepted');
  t.equal(accepted?.message, 'trafficPolicy.tls accepted but not applied by waypoints');
});

t.test('consistentHash on a header pins each value to one pod; a request without the header still gets an answer', async (t) => {
  const owners = new Set<string>();
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) {
    const got = await spread(VIP.hash, '/', 8, { 'x-user': user });
    t.equal(Object.keys(got).length, 1, `${user} always reaches the same pod: ${JSON.stringify(got)}`);
    owners.add(Object.keys(got)[0]!);
  }
  t.ok(owners.size > 1, `the values spread over more than one pod (${[...owners].join(', ')})`);
  const missing = await spread(VIP.hash, '/', 6);
  t.equal(Object.keys(missing).filter((k) => k.startsWith('status')).length, 0, `no header: answered by a pod (Envoy picks at random): ${JSON.stringify(missing)}`);
});

t.test('consistentHash on a cookie with a ttl: the waypoint sets the cookie, and the cookie pins the pod', async (t) => {
  const first = await request(agent, `http://${VIP.cookie}/`);
  t.equal(first.status, 200);
  const setCookie = first.headers['set-cookie']?.[0] ?? '';
  t.match(setCookie, /^sticky="[0-9a-f]{16}"; Max-Age=60; Path=\/; HttpOnly$/);
  const cookie = setCookie.split(';')[0]!;
  const got = await spread(VIP.cookie, '/', 8, { cookie });
  t.equal(Object.keys(got).length, 1, `one pod for the cookie: ${JSON.stringify(got)}`);
  const again = await request(agent, `http://${VIP.cookie}/`, { headers: { cookie } });
  t.equal(again.headers['set-cookie'], undefined, 'no new cookie when the request has one');
});

t.test('LEAST_REQUEST prefers idle pods over one holding a slow request', async (t) => {
  holding = true;
  holdHits.clear();
  const slow = request(agent, `http://${VIP.lr}/hold`);
  const busy = await until('the slow request to reach a pod', () => [...holdHits.keys()][0]);
  const before = hits(busy);
  const got = await spread(VIP.lr, '/', 24);
  t.equal(hits(busy) - before, 0, `${busy} (holding the slow request) got none of the 24: ${JSON.stringify(got)}`);
  t.equal(Object.values(got).reduce((a, b) => a + b, 0), 24);
  t.equal(got[busy], undefined);
  releaseAll();
  t.equal((await slow).status, 200, 'the slow request is answered once released');
});

t.test('maxConnections 1 + http1MaxPendingRequests 1: of 3 concurrent slow requests one gets 503 UO', async (t) => {
  holding = true;
  holdHits.clear();
  const before = await count({ response_code: '503', response_flags: 'UO', destination_service_name: 'web-cb' });
  const replies: Reply[] = [];
  const all = Array.from({ length: 3 }, () => request(agent, `http://${VIP.cb}/hold`).then((r) => (replies.push(r), r)));
  const overflow = await until('one request to overflow', () => replies.find((r) => r.status === 503));
  t.equal(overflow.body, 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
  const atBackend = () => [...holdHits.values()].reduce((a, b) => a + b, 0);
  await until('the admitted request to reach a pod', () => atBackend() >= 1);
  t.equal(atBackend(), 1, 'one request holds the one connection; the other waits in the waypoint');
  releaseAll();
  const statuses = (await Promise.all(all)).map((r) => r.status).sort();
  t.same(statuses, [200, 200, 503], 'the pending request went out once the connection was free');
  t.equal((await count({ response_code: '503', response_flags: 'UO', destination_service_name: 'web-cb' })) - before, 1);
  const line = await until('the access-log line of the overflow', () => lines.find((l) => l['response_flags'] === 'UO'));
  t.equal(line['status'], 503);
  t.equal(line['code'], 'ERR_WAYPOINT_UPSTREAM_OVERFLOW');
});

/** web-c's outlier state in a cluster, from /config_dump. */
function ejection(cluster: string): { ejected: boolean; ejections: number } | undefined {
  const dump = wm.waypoint.configDump() as { trafficPolicy: Array<{ name: string; outlier?: Record<string, { ejected: boolean; ejections: number }> }> };
  const outlier = dump.trafficPolicy.find((c) => c.name === cluster)?.outlier ?? {};
  return Object.entries(outlier).find(([uid]) => uid.includes('web-c'))?.[1];
}

t.test('outlier detection: 2 consecutive 5xx eject a pod, which then gets nothing', async (t) => {
  failing.add('web-c');
  // Round-robin: web-c answers every third request with 500 until its second one ejects it.
  const before = await spread(VIP.od, '/fail', 6);
  t.same(before, { 'web-a': 2, 'web-b': 2, 'status 500': 2 }, 'two 500s from web-c');
  t.same(ejection('outbound|80||web-od.default.svc.cluster.local'), { ejected: true, ejections: 1, consecutive5xx: 0 });
  const c = hits('web-c');
  t.same(await spread(VIP.od, '/fail', 12), { 'web-a': 6, 'web-b': 6 }, 'an ejected pod gets nothing');
  t.equal(hits('web-c'), c);
  failing.delete('web-c');
});

t.test('outlier detection: an ejected pod comes back after baseEjectionTime', async (t) => {
  const cluster = 'outbound|80||web-back.default.svc.cluster.local';
  failing.add('web-c');
  await until('web-c to be ejected', async () => {
    await spread(VIP.back, '/fail', 3);
    return ejection(cluster)?.ejected === true;
  });
  failing.delete('web-c');
  // Back after its ejection time (200 ms): wait on the state and on web-c serving again, never on the clock.
  await until('web-c to be back in', () => ejection(cluster)?.ejected === false, { timeoutMs: 15_000 });
  t.same(await spread(VIP.back, '/fail', 9), { 'web-a': 3, 'web-b': 3, 'web-c': 3 }, 'round-robin over all three again');
  t.ok(ejection(cluster)!.ejections >= 1);
});

t.test('per subset: the subset\'s only pod ejected → 503 UH; the service-wide cluster still reaches it', async (t) => {
  failing.add('web-c');
  const first = await spread(VIP.back, '/sub', 2);
  t.same(first, { 'status 500': 2 }, 'two 500s from the subset\'s only pod');
  const r = await request(agent, `http://${VIP.back}/sub`);
  t.equal(r.status, 503);
  t.equal(r.body, 'no healthy upstream');
  t.ok((await count({ response_code: '503', response_flags: 'UH', destination_service_name: 'web-back' })) >= 1, 'counted with UH');
  const line = await until('the access-log line', () => lines.find((l) => l['code'] === 'ERR_WAYPOINT_ALL_EJECTED'));
  t.equal(line['response_flags'], 'UH');
  failing.delete('web-c');
  // The service-wide cluster keeps its own state: web-c still serves there.
  t.same(await spread(VIP.back, '/', 3), { 'web-a': 1, 'web-b': 1, 'web-c': 1 });
});

t.test('maxRetries 1: one request retries again and again; a second retry in flight overflows (UO, the last answer)', async (t) => {
  const before = backends.reduce((n, b) => n + b.hits(), 0);
  const r = await request(agent, `http://${VIP.retry}/rfail`);
  t.equal(r.status, 500);
  t.equal(backends.reduce((n, b) => n + b.hits(), 0) - before, 3, 'attempts 2: three tries, one retry in flight at a time');
  const exhausted = await until('the access-log line', () => lines.find((l) => l['path'] === '/rfail'));
  t.equal(exhausted['response_flags'], 'URX');

  holding = true;
  const a = request(agent, `http://${VIP.retry}/rhold-a`);
  await until("a's retry to be in flight (held by a pod)", () => pathHits.get('/rhold-a') === 2);
  const b = await request(agent, `http://${VIP.retry}/rhold-b`);
  t.equal(b.status, 500, "b's retry overflows: the client gets b's last answer");
  t.equal(pathHits.get('/rhold-b'), 1, 'b was not sent again');
  const line = await until("b's access-log line", () => lines.find((l) => l['path'] === '/rhold-b'));
  t.equal(line['response_flags'], 'UO');
  releaseAll();
  t.equal((await a).status, 200, "a's retry answers");
});
