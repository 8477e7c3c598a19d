/**
 * Traffic as users send it, on loopback through real ztunnels (HBONE, mTLS) and a real waypoint:
 * requests separated by idle gaps longer than the backend's keep-alive timeout, backends that
 * close every connection, backends that reset, HTTP/1.1 and HTTP/2 (gRPC's transport), with and
 * without a waypoint. Every assertion is what a client sees: every request answered, within its
 * timeout, and no request sent to a backend more often than its retry policy allows.
 *
 * Regression (issue 12): the first request after an idle gap longer than the backend's keep-alive
 * hung until the client gave up: the backend's FIN reached the waypoint as END_STREAM, the pooled
 * stream stayed in the keep-alive agent, and the next request was written into it.
 */
import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { backend, meshAgent, startWaypointMesh, type WaypointMesh } from '../waypoint/fixture.js';
import { socks5Connect } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../core/telemetry/log.js';

// 127.0.40.2/.3 ztunnels, .10 client, .21-.25 backends, .30 waypoint, .100+ service VIPs.
const base = '127.0.40';
const CLIENT = `${base}.10`;
const WAYPOINT = { address: `${base}.30` };
/** Idle close of the "Go/gunicorn-like" backends: no Keep-Alive hint, close after this long idle. */
const BACKEND_IDLE_MS = 300;
/** Gaps between bursts: longer than the backends' idle close. */
const GAP_MS = 700;
/** A client's own deadline per request: a request not answered by then counts as hung. */
const REQUEST_TIMEOUT_MS = 8000;

const ip = { closer: `${base}.21`, node: `${base}.22`, once: `${base}.23`, reset: `${base}.24`, grpc: `${base}.25` };
const VIP = {
  closer: `${base}.100`,
  closerDirect: `${base}.101`,
  node: `${base}.102`,
  once: `${base}.103`,
  reset: `${base}.104`,
  resetNoRetry: `${base}.105`,
  resetRetryReset: `${base}.106`,
  grpc: `${base}.107`,
};
const wl = (name: string, addr: string) => ({ name, namespace: 'default', serviceAccount: name, node: 'node-b', ips: [addr], labels: { app: name } });
const workloads = [wl('closer', ip.closer), wl('node', ip.node), wl('once', ip.once), wl('reset', ip.reset), wl('grpc', ip.grpc)];
const svc = (name: string, vip: string, app: string, viaWaypoint = true, portName = 'http') => ({
  name,
  namespace: 'default',
  vips: [vip],
  ports: [{ port: 80, targetPort: 8080, name: portName }],
  selector: { app },
  ...(viaWaypoint ? { waypoint: WAYPOINT } : {}),
});
const config = {
  services: [
    svc('closer', VIP.closer, 'closer'),
    svc('closer-direct', VIP.closerDirect, 'closer', false),
    svc('node', VIP.node, 'node'),
    svc('once', VIP.once, 'once'),
    svc('reset', VIP.reset, 'reset'),
    svc('reset-no-retry', VIP.resetNoRetry, 'reset'),
    svc('reset-retry-reset', VIP.resetRetryReset, 'reset'),
    svc('grpc', VIP.grpc, 'grpc', true, 'grpc'),
  ],
  virtualServices: [
    { name: 'no-retry', namespace: 'default', spec: { hosts: ['reset-no-retry'], http: [{ route: [{ destination: { host: 'reset-no-retry' } }], retries: { attempts: 0 } }] } },
    {
      name: 'retry-reset',
      namespace: 'default',
      spec: { hosts: ['reset-retry-reset'], http: [{ route: [{ destination: { host: 'reset-retry-reset' } }], retries: { attempts: 1, retryOn: 'reset' } }] },
    },
  ],
};

interface Outcome {
  readonly status: number;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

/** One request with the client's own deadline: rejects with "hung" when nothing came back in time. */
function send(agent: http.Agent, url: string, opts: { method?: string; body?: string } = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, method: opts.method ?? 'GET', timeout: REQUEST_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`hung: no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Closes a server and every connection it holds. */
function stop(server: http.Server | http2.Http2Server): Promise<void> {
  (server as http.Server).closeAllConnections?.();
  return new Promise((r) => server.close(() => r()));
}

/**
 * A backend that closes a keep-alive connection after `idleMs` without a request, announcing
 * nothing (no `Keep-Alive` header), as Go (`IdleTimeout`), gunicorn and most servers do.
 */
async function idleClosingBackend(t: Test, host: string, name: string): Promise<{ hits: () => number }> {
  const b = await backend(host, 8080, name);
  b.server.keepAliveTimeout = 0; // no Node hint, no Node timer: the close below is the only one
  b.server.on('connection', (socket: net.Socket) => {
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => socket.destroy(), BACKEND_IDLE_MS);
    };
    arm();
    socket.on('data', arm);
    socket.on('close', () => clearTimeout(timer));
  });
  t.teardown(() => stop(b.server));
  return b;
}

let wm: WaypointMesh;
/** The waypoint's access-log lines (JSON), as an operator reads them. */
const accessLog: Array<Record<string, unknown>> = [];
t.before(async () => {
  const sink = new PassThrough();
  sink.setEncoding('utf8');
  let partial = '';
  sink.on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const l of lines) if (l.includes('"request complete"')) accessLog.push(JSON.parse(l) as Record<string, unknown>);
  });
  const logger = createLogger({ component: 'waypoint', level: 'info', destination: sink });
  wm = await startWaypointMesh({ dir: t.testdir({}), base, workloads, config, logger });
});

/** Waits for the access-log line of `path` (lines are written in batches). */
async function logLine(path: string): Promise<Record<string, unknown>> {
  return until(`the access-log line for ${path}`, () => accessLog.find((x) => x['path'] === path), { timeoutMs: 5000, everyMs: 25 });
}

async function retriesOf(cluster: string, name = 'envoy_cluster_upstream_rq_retry'): Promise<number> {
  const m = await wm.waypoint.metrics.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => v.labels['cluster_name'] === cluster)?.value ?? 0;
}
t.teardown(() => wm.close());

const clientAgent = () => meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);

t.test('HTTP/1.1: requests after idle gaps longer than the backend keep-alive, with and without the waypoint', async (t) => {
  const b = await idleClosingBackend(t, ip.closer, 'closer');
  for (const [what, vip] of [
    ['through the waypoint', VIP.closer],
    ['without a waypoint', VIP.closerDirect],
  ] as const) {
    // A client that keeps its connection (browsers, pooled clients) and one that dials per request (curl).
    const kept = clientAgent();
    t.teardown(() => kept.destroy());
    let answered = 0;
    const rounds = 5;
    for (let i = 0; i < rounds; i++) {
      const fresh = clientAgent();
      const [a, c] = await Promise.all([send(kept, `http://${vip}/kept/${i}`), send(fresh, `http://${vip}/fresh/${i}`)]);
      fresh.destroy();
      if (a.status === 200) answered++;
      if (c.status === 200) answered++;
      await sleep(GAP_MS); // the workload's idle gap, longer than the backend keeps connections
    }
    t.equal(answered, 2 * rounds, `${what}: every request after an idle gap answered`);
  }
  t.equal(b.hits(), 20, 'each request reached the backend once: none lost, none re-sent');
});

t.test("HTTP/1.1: a Node backend with its default keep-alive (5 s, announced) after a 6 s pause", async (t) => {
  const b = await backend(ip.node, 8080, 'node');
  t.teardown(() => stop(b.server));
  t.equal(b.server.keepAliveTimeout, 5000, "Node's default");
  const kept = clientAgent();
  t.teardown(() => kept.destroy());
  t.equal((await send(kept, `http://${VIP.node}/1`)).status, 200);
  await sleep(6000); // the user's case: `sleep 8; curl` failed every time
  t.equal((await send(kept, `http://${VIP.node}/2`)).status, 200, 'the first request after the pause is answered');
  t.equal((await send(clientAgent(), `http://${VIP.node}/3`)).status, 200, 'and a new client connection too');
  t.equal(b.hits(), 3);
});

t.test('HTTP/1.1: a backend that closes every connection after its response', async (t) => {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    req.resume();
    // Alternate the two ways servers do it: `Connection: close`, and a body delimited by the close.
    if (n % 2) res.writeHead(200, { connection: 'close', 'content-length': '2' }).end('ok');
    else {
      res.useChunkedEncodingByDefault = false;
      res.shouldKeepAlive = false;
      res.writeHead(200, {}).end('ok');
    }
  });
  await new Promise<void>((r) => server.listen(8080, ip.once, r));
  t.teardown(() => stop(server));
  const kept = clientAgent();
  t.teardown(() => kept.destroy());
  let answered = 0;
  for (let burst = 0; burst < 3; burst++) {
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) => send(kept, `http://${VIP.once}/${burst}/${i}`)));
    answered += all.filter((r) => r.status === 200 && r.body === 'ok').length;
    await sleep(GAP_MS); // the idle gap under test, not a synchronisation
  }
  t.equal(answered, 30, 'every request answered with its whole body');
  t.equal(n, 30, 'each reached the backend once');
});

t.test('re-sends are retries: counted, bounded by the policy, and only for requests safe to send again', async (t) => {
  // The keep-alive race, made deterministic: the backend drops the connection, unanswered, on the
  // second request it sees on it (as a server closing an idle connection the moment a request
  // arrives). The third and later connections are never dropped.
  const seen = new Map<string, number>();
  let conns = 0;
  const server = http.createServer((req, res) => {
    const key = `${req.method} ${req.url}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const sock = req.socket as net.Socket & { served?: number };
    sock.served = (sock.served ?? 0) + 1;
    req.resume();
    if (req.url?.startsWith('/always-reset')) return void sock.destroy();
    if (sock.served === 2) return void sock.destroy();
    res.end('ok');
  });
  server.on('connection', () => conns++);
  await new Promise<void>((r) => server.listen(8080, ip.reset, r));
  t.teardown(() => stop(server));
  const hits = (k: string) => seen.get(k) ?? 0;
  const kept = clientAgent();
  t.teardown(() => kept.destroy());

  // Default policy (no VirtualService): GET lost on a reused stream is sent again.
  t.equal((await send(kept, `http://${VIP.reset}/warm`)).status, 200);
  const get = await send(kept, `http://${VIP.reset}/get`);
  t.equal(get.status, 200, 'an idempotent GET lost to a closing keep-alive stream is retried and answered');
  t.equal(hits('GET /get'), 2, 'the backend saw it twice: the lost try and the retry (the policy allows 3)');
  t.match(await logLine('/get'), { status: 200, tries: 2 }, 'the access log says two tries');
  t.equal(await retriesOf('outbound|80||reset.default.svc.cluster.local'), 1, 'envoy_cluster_upstream_rq_retry counts the retry');
  t.equal(await retriesOf('outbound|80||reset.default.svc.cluster.local', 'envoy_cluster_upstream_rq_retry_success'), 1, 'and its success');

  // Default policy: a POST lost the same way is not sent again (the backend may have acted on it).
  const kept2 = clientAgent();
  t.teardown(() => kept2.destroy());
  t.equal((await send(kept2, `http://${VIP.reset}/warm2`)).status, 200);
  const post = await send(kept2, `http://${VIP.reset}/post`, { method: 'POST', body: 'pay 10' });
  t.equal(post.status, 503, 'a POST lost after it was sent is answered 503, never sent twice');
  t.match(post.body, /reset before headers/);
  t.equal(hits('POST /post'), 1, 'the backend saw the POST exactly once');
  t.match(await logLine('/post'), { status: 503, tries: 1, response_flags: 'UC' }, 'one try, upstream connection termination');

  // attempts: 0 means exactly one try, whatever happens.
  const kept3 = clientAgent();
  t.teardown(() => kept3.destroy());
  t.equal((await send(kept3, `http://${VIP.resetNoRetry}/warm3`)).status, 200);
  const none = await send(kept3, `http://${VIP.resetNoRetry}/get-no-retry`);
  t.equal(none.status, 503, 'retries: {attempts: 0}: the lost GET is not sent again');
  t.equal(hits('GET /get-no-retry'), 1, 'the backend saw it once');

  // retryOn: reset, attempts 1: a backend that always resets sees exactly 2 tries, even for POST (Envoy's `reset`).
  const always = await send(clientAgent(), `http://${VIP.resetRetryReset}/always-reset`, { method: 'POST', body: 'x' });
  t.equal(always.status, 503, 'every try reset: 503');
  t.equal(hits('POST /always-reset'), 2, 'exactly 1 + attempts tries reached the backend');
  t.match(await logLine('/always-reset'), { status: 503, tries: 2, response_flags: 'URX,UC' }, 'two tries, retries exhausted');
  t.equal(
    await retriesOf('outbound|80||reset-retry-reset.default.svc.cluster.local', 'envoy_cluster_upstream_rq_retry_limit_exceeded'),
    1,
    'envoy_cluster_upstream_rq_retry_limit_exceeded counts it',
  );
  t.ok(conns > 0);
});

t.test('HTTP/2 (gRPC transport): backends that close idle connections, with and without GOAWAY', async (t) => {
  let calls = 0;
  let mode: 'goaway' | 'fin' = 'goaway';
  const server = http2.createServer();
  // The TCP socket under each session (session.socket is a guarded proxy): the server makes the
  // session inside its own 'connection' listener, so ours must run first.
  let lastAccepted: net.Socket | undefined;
  server.prependListener('connection', (s: net.Socket) => (lastAccepted = s));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    const tcp = lastAccepted!;
    session.setTimeout(BACKEND_IDLE_MS, () => {
      if (mode === 'goaway') session.close(); // GOAWAY, then close: gRPC's MAX_CONNECTION_IDLE
      else {
        tcp.destroy(); // a bare FIN, as a crashed or careless server
      }
    });
  });
  server.on('stream', (stream) => {
    calls++;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]));
  });
  await new Promise<void>((r) => server.listen(8080, ip.grpc, r));
  t.teardown(() => {
    for (const x of sessions) x.destroy();
    return stop(server);
  });

  // The client's own h2c connection to the service, through ztunnel A's SOCKS5 listener.
  const { reply, socket } = await socks5Connect({ proxy: { host: wm.mesh.addr.a, port: 15080 }, localAddress: CLIENT, host: VIP.grpc, port: 80 });
  t.equal(reply, 0);
  socket.resume();
  const client = http2.connect(`http://${VIP.grpc}:80`, { createConnection: () => socket });
  t.teardown(() => client.destroy());
  const call = () =>
    new Promise<string | undefined>((resolve, reject) => {
      const s = client.request({ ':method': 'POST', ':path': '/echo.Echo/Say', 'content-type': 'application/grpc', te: 'trailers' });
      const timer = setTimeout(() => s.destroy(new Error('hung')), REQUEST_TIMEOUT_MS);
      let status: string | undefined;
      s.on('trailers', (tr) => (status = tr['grpc-status'] as string));
      s.on('error', reject);
      s.on('close', () => (clearTimeout(timer), resolve(status)));
      s.resume();
      s.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  let ok = 0;
  for (const m of ['goaway', 'fin'] as const) {
    mode = m;
    for (let i = 0; i < 4; i++) {
      const st = await call().catch((e: Error) => e.message);
      if (st === '0') ok++;
      await sleep(GAP_MS); // the idle gap under test, not a synchronisation
    }
  }
  t.equal(ok, 8, 'every call after an idle gap answered grpc-status 0 (backend closing with GOAWAY, then with a bare FIN)');
  t.equal(calls, 8, 'each call reached the backend once');
});
