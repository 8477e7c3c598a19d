/**
 * HTTPRoute `retry.attempts` bounds what reaches the backend, through the real waypoint, real
 * HBONE and real ztunnels, when pooled keep-alive connections are reset or closed under it
 * (issue 15; the reliability issue's "one more send than attempts allows"): a request lost to a
 * reused connection is a try like any other, counted against `attempts`, never re-sent on the
 * side. That is Envoy's model: a reset before the response is retried only under the route's
 * retry policy (`reset`, `reset-before-request`, `5xx` ...), and each retry is one of
 * `num_retries` (docs/waypoint.md, "The keep-alive race"). Upstream Gateway API has
 * HTTPRouteRetry* tests for codes and backoff only (experimental); this is the mesh's part.
 */
import t from 'tap';
import http from 'node:http';
import type net from 'node:net';
import { until } from '../helpers/until.js';
import { meshAgent, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.154.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21-.23 = backends, .30 = the waypoint, .100-.102 = service VIPs.
const base = '127.0.154';
const CLIENT = `${base}.10`;
const ip = { race2: `${base}.21`, idle: `${base}.22`, race0: `${base}.23` };
const VIP = { race2: `${base}.100`, idle: `${base}.101`, race0: `${base}.102` };
const WAYPOINT = { address: `${base}.30` };
/** The idle-closing backend drops a keep-alive connection after this long without a request (a backend's behaviour, not a wait). */
const BACKEND_IDLE_MS = 300;
const ATTEMPTS = 2;

const wl = (name: string, addr: string) => ({ name, namespace: 'default', serviceAccount: name, node: 'node-b', ips: [addr], labels: { app: name } });
const svc = (name: string, vip: string) => ({ name, namespace: 'default', vips: [vip], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: name }, waypoint: WAYPOINT });
const route = (name: string, attempts: number) => ({
  name,
  namespace: 'default',
  spec: { parentRefs: [{ kind: 'Service', group: '', name, port: 80 }], rules: [{ backendRefs: [{ name, port: 80 }], retry: { attempts, codes: [503], backoff: '5ms' } }] },
});
const config = {
  services: [svc('race2', VIP.race2), svc('idle', VIP.idle), svc('race0', VIP.race0)],
  httpRoutes: [route('race2', ATTEMPTS), route('idle', ATTEMPTS), route('race0', 0)],
};

/**
 * A backend that counts requests by `METHOD path`. `/fail` always answers 503. `dropSecond`:
 * the second request on a connection is dropped unanswered (the keep-alive race made
 * deterministic: the server closes a reused connection as the request arrives). `idleMs`: a
 * connection idle that long is closed, with no `Keep-Alive` hint (as Go, gunicorn, nginx).
 */
async function countingBackend(host: string, opts: { dropSecond?: boolean; idleMs?: number }) {
  const seen = new Map<string, number>();
  const open = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const key = `${req.method} ${req.url}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const sock = req.socket as net.Socket & { served?: number };
    sock.served = (sock.served ?? 0) + 1;
    req.resume();
    if (opts.dropSecond && sock.served === 2) return void sock.destroy();
    if (req.url === '/fail') return void res.writeHead(503).end('backend says no');
    res.end('ok');
  });
  server.keepAliveTimeout = 0; // no Node hint or timer: `idleMs` is the only close
  server.on('connection', (socket: net.Socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    if (opts.idleMs === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => socket.destroy(), opts.idleMs);
    };
    arm();
    socket.on('data', arm);
    socket.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(8080, host, r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { hits: (k: string) => seen.get(k) ?? 0, open: () => open.size };
}

function send(agent: http.Agent, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const race2 = await countingBackend(ip.race2, { dropSecond: true });
const race0 = await countingBackend(ip.race0, { dropSecond: true });
const idle = await countingBackend(ip.idle, { idleMs: BACKEND_IDLE_MS });
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads: [wl('race2', ip.race2), wl('idle', ip.idle), wl('race0', ip.race0)], config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
});

async function retries(cluster: string): Promise<number> {
  const m = await wm.waypoint.metrics.registry.getSingleMetric('envoy_cluster_upstream_rq_retry')?.get();
  return m?.values.find((v) => v.labels['cluster_name'] === cluster)?.value ?? 0;
}

t.test(`a reset pooled connection counts toward retry.attempts: ${ATTEMPTS + 1} sends at most`, async (t) => {
  t.equal((await send(agent, `http://${VIP.race2}/warm`)).status, 200, 'the warm-up leaves one pooled keep-alive stream');
  // Try 1 goes out on the pooled stream and is dropped (a reset before any response byte); the
  // retries go on new streams: 503, then dropped again or 503. Whatever the mix, the backend
  // sees 1 + attempts requests, and the retries metric says attempts.
  const r = await send(agent, `http://${VIP.race2}/fail`);
  t.equal(r.status, 503, 'every try failed: 503');
  t.equal(race2.hits('GET /fail'), ATTEMPTS + 1, `the backend got exactly 1 + attempts (${ATTEMPTS + 1}) requests`);
  t.equal(await retries('outbound|80||race2.default.svc.cluster.local'), ATTEMPTS, 'envoy_cluster_upstream_rq_retry counts attempts retries');
});

t.test('retry.attempts 0: a request lost to a reset pooled connection is sent once', async (t) => {
  t.equal((await send(agent, `http://${VIP.race0}/warm`)).status, 200);
  const r = await send(agent, `http://${VIP.race0}/ok`);
  t.equal(r.status, 503, 'lost on the reused stream: 503 UC, not sent again');
  t.equal(race0.hits('GET /ok'), 1, 'the backend got it once');
});

t.test('after a pause longer than the backend keep-alive: at most 1 + attempts sends', async (t) => {
  t.equal((await send(agent, `http://${VIP.idle}/warm`)).status, 200);
  // The pause is the backend closing its idle connection: wait for that event, not for a time.
  await until('the backend to close its idle keep-alive connection', () => idle.open() === 0, { timeoutMs: 5000 });
  const ok = await send(agent, `http://${VIP.idle}/ok`);
  t.equal(ok.status, 200, 'the first request after the close is answered');
  t.equal(idle.hits('GET /ok'), 1, 'and reached the backend once');
  await until('the backend to close its idle keep-alive connection again', () => idle.open() === 0, { timeoutMs: 5000 });
  const fail = await send(agent, `http://${VIP.idle}/fail`);
  t.equal(fail.status, 503);
  const n = idle.hits('GET /fail');
  t.ok(n >= 1 && n <= ATTEMPTS + 1, `the backend got ${n} requests: 1 + attempts (${ATTEMPTS + 1}) at most`);
});
