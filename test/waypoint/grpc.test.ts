/**
 * HTTP/2 with prior knowledge (gRPC's transport) through ztunnel A → waypoint → ztunnel B:
 * trailers, unary and streaming calls, per-request balancing over one client connection, and
 * plain TCP on a port that is not HTTP. Last, the waypoint as its own process from dist/.
 */
import t from 'tap';
import http from 'node:http';
import http2 from 'node:http2';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { closeServer, echoServer, readAll } from '../helpers/net.js';
import { socks5Connect } from '../helpers/net.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWaypointMesh, meshAgent, request, backend } from './fixture.js';
import { waitForStatus } from '../helpers/proc.js';
import { until } from '../helpers/until.js';

const WAYPOINT_MAIN = fileURLToPath(new URL('../../dist/waypoint/main.js', import.meta.url));

const base = '127.0.8';
const CLIENT = `${base}.10`;
const VIP = { grpc: `${base}.100`, tcp: `${base}.101`, proc: `${base}.102` };
const WAYPOINT = { address: `${base}.30` };

const workloads = [
  { name: 'grpc-a', namespace: 'default', serviceAccount: 'grpc', node: 'node-b', ips: [`${base}.21`], labels: { app: 'grpc' } },
  { name: 'grpc-b', namespace: 'default', serviceAccount: 'grpc', node: 'node-a', ips: [`${base}.22`], labels: { app: 'grpc' } },
  { name: 'web', namespace: 'default', serviceAccount: 'web', node: 'node-b', ips: [`${base}.23`], labels: { app: 'web' } },
  // A second waypoint, run as a child process.
  { name: 'waypoint-proc', namespace: 'default', serviceAccount: 'waypoint-proc', node: 'node-a', ips: [`${base}.31`] },
];
const config = {
  services: [
    { name: 'grpc', namespace: 'default', vips: [VIP.grpc], ports: [{ port: 50051, name: 'grpc' }], selector: { app: 'grpc' }, waypoint: WAYPOINT },
    { name: 'raw', namespace: 'default', vips: [VIP.tcp], ports: [{ port: 9000, name: 'tcp-echo' }], selector: { app: 'grpc' }, waypoint: WAYPOINT },
    { name: 'web', namespace: 'default', vips: [VIP.proc], ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web' }, waypoint: { address: `${base}.31` } },
  ],
  virtualServices: [
    {
      name: 'web',
      namespace: 'default',
      spec: {
        hosts: ['web'],
        http: [
          { match: [{ uri: { exact: '/teapot' } }], fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }, route: [{ destination: { host: 'web' } }] },
          { match: [{ uri: { exact: '/slow' } }], fault: { delay: { fixedDelay: '500ms', percentage: { value: 100 } } }, route: [{ destination: { host: 'web' } }] },
          { route: [{ destination: { host: 'web' } }] },
        ],
      },
    },
  ],
};

/** A gRPC-shaped h2c server: echoes each request message back, answers with grpc-status trailers. */
async function grpcServer(host: string, name: string): Promise<http2.Http2Server> {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-backend': name }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': `served by ${name}` }));
    // Streaming: every chunk is answered as it arrives, so the client can interleave.
    stream.on('data', (d: Buffer) => stream.write(d));
    stream.on('end', () => stream.end());
    void headers;
  });
  server.on('sessionError', () => {});
  await new Promise<void>((r) => server.listen(50051, host, r));
  return server;
}

const servers = [await grpcServer(`${base}.21`, 'grpc-a'), await grpcServer(`${base}.22`, 'grpc-b')];
const echo = await echoServer(`${base}.21`, 9000);
// `/slow` is held at the backend until the test answers it: a request provably in flight.
let heldSlow: http.ServerResponse | undefined;
const web = await backend(`${base}.23`, 8080, 'web', (req, res) => {
  if (req.url !== '/slow') return false;
  heldSlow = res;
  return true;
});
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
t.teardown(async () => {
  await wm.close();
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  await closeServer(echo.server);
  await new Promise<void>((r) => web.server.close(() => r()));
});

async function h2cClient(): Promise<http2.ClientHttp2Session> {
  const { reply, socket } = await socks5Connect({ proxy: { host: wm.mesh.addr.a, port: 15080 }, localAddress: CLIENT, host: VIP.grpc, port: 50051 });
  if (reply !== 0) throw new Error(`socks5 reply ${reply}`);
  socket.resume();
  const session = http2.connect(`http://${VIP.grpc}:50051`, { createConnection: () => socket });
  session.on('error', () => {});
  return session;
}

function call(session: http2.ClientHttp2Session, messages: string[]): Promise<{ headers: http2.IncomingHttpHeaders; body: string; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': '/echo.Echo/Say', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let body = '';
    s.on('response', (h) => (headers = h));
    s.on('trailers', (tr) => (trailers = tr));
    s.setEncoding('utf8');
    s.on('data', (d: string) => (body += d));
    s.on('end', () => resolve({ headers, body, trailers }));
    s.on('error', reject);
    for (const m of messages) s.write(m);
    s.end();
  });
}

t.test('gRPC unary calls pass with trailers, balanced per request over one connection', async (t) => {
  const session = await h2cClient();
  t.teardown(() => session.close());
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const r = await call(session, [`hello ${i}`]);
    t.equal(r.headers[':status'], 200);
    t.equal(r.body, `hello ${i}`);
    t.equal(r.trailers['grpc-status'], '0', 'grpc-status arrives as a trailer');
    seen.add(String(r.headers['x-backend']));
  }
  t.same([...seen].sort(), ['grpc-a', 'grpc-b'], 'one client connection, requests spread over both endpoints');
});

t.test('a gRPC streaming call interleaves messages both ways', async (t) => {
  const session = await h2cClient();
  t.teardown(() => session.close());
  const s = session.request({ ':method': 'POST', ':path': '/echo.Echo/Chat', 'content-type': 'application/grpc', te: 'trailers' });
  s.setEncoding('utf8');
  for (let i = 0; i < 5; i++) {
    s.write(`ping ${i}`);
    const [d] = (await once(s, 'data')) as [string];
    t.equal(d, `ping ${i}`, `message ${i} came back before the next was sent`);
  }
  const trailers = once(s, 'trailers');
  s.end();
  const [tr] = (await trailers) as [http2.IncomingHttpHeaders];
  t.equal(tr['grpc-status'], '0');
  const m = await wm.waypoint.metrics.registry.getSingleMetric('istio_requests_total')?.get();
  t.ok(m?.values.some((v) => v.labels['request_protocol'] === 'grpc' && v.labels['grpc_response_status'] === '0'), 'counted as grpc with its status');
});

t.test('a port named tcp-* passes through as TCP', async (t) => {
  const { reply, socket } = await socks5Connect({ proxy: { host: wm.mesh.addr.a, port: 15080 }, localAddress: CLIENT, host: VIP.tcp, port: 9000 });
  t.equal(reply, 0);
  socket.end('not http at all\n');
  t.equal((await readAll(socket)).toString(), 'not http at all\n');
  const m = await wm.waypoint.metrics.registry.getSingleMetric('istio_tcp_connections_opened_total')?.get();
  t.ok(m?.values.some((v) => v.labels['reporter'] === 'waypoint' && v.labels['request_protocol'] === 'tcp'));
  void net;
});

t.test('the waypoint runs as its own process from dist/ and drains on SIGTERM', async (t) => {
  const dir = wm.mesh.dir;
  const child = spawn(process.execPath, [WAYPOINT_MAIN], {
    env: {
      PATH: process.env['PATH'] ?? '',
      WAYPOINT_ADDRESS: `${base}.31`,
      ADMIN_ADDRESS: `${base}.31`,
      LOCAL_CONFIG_FILE: wm.mesh.configPath,
      CA_ROOT_CERT_FILE: join(dir, 'root-cert.pem'),
      CA_ROOT_KEY_FILE: join(dir, 'root-key.pem'),
      DRAIN_TIMEOUT_SECONDS: '2',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  const exited = once(child, 'exit');
  t.teardown(() => {
    process.off('exit', reap);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await waitForStatus(`http://${base}.31:15021/healthz/ready`, 200);
  const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
  t.teardown(() => agent.destroy());
  const ok = await request(agent, `http://${VIP.proc}/hello`);
  t.equal(ok.status, 200, `served through the child waypoint (output: ${out.slice(-500)})`);
  t.equal(ok.headers['x-backend'], 'web');
  const teapot = await request(agent, `http://${VIP.proc}/teapot`);
  t.equal(teapot.status, 418, 'its VirtualService fault applies');
  const metrics = await (await fetch(`http://${base}.31:15020/metrics`)).text();
  t.match(metrics, /istio_requests_total\{[^}]*reporter="waypoint"[^}]*response_code="418"[^}]*response_flags="FI"/);
  // Access-log lines are written in batches (at most 250 ms late).
  const accessLines = () => out.split('\n').filter((l) => l.includes('"request complete"'));
  await until('the access-log lines of both requests', () => accessLines().length >= 2, { timeoutMs: 2000 }).catch(() => undefined);
  const lines = accessLines();
  t.equal(lines.length, 2, 'one access-log line per request');
  t.match(out, /"msg":"waypoint ready"/);
  t.match(JSON.parse(lines[1]!), { method: 'GET', path: '/teapot', status: 418, response_flags: 'FI', src: { identity: 'spiffe://cluster.local/ns/default/sa/client' } });
  // A request in flight when SIGTERM arrives still completes.
  const slow = request(agent, `http://${VIP.proc}/slow`);
  const held = await until('the slow request to reach the backend through the child waypoint', () => heldSlow);
  child.kill('SIGTERM');
  await until('the child waypoint to start draining', () => /"msg":"draining"/.test(out));
  held.writeHead(200, { 'x-backend': 'web' });
  held.end('slow');
  const finished = await slow;
  t.equal(finished.status, 200, 'the in-flight request finished during the drain');
  const [code] = (await exited) as [number | null];
  t.equal(code, 0, 'SIGTERM drains and exits 0');
  t.match(out, /waypoint stopped/);
});
