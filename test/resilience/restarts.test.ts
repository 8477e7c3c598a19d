/**
 * Restarts under traffic, every part a real process: two standalone ztunnels (`dist/ztunnel/main.js`)
 * and a waypoint (`dist/waypoint/main.js`), clients in this process talking through ztunnel A's
 * SOCKS5 listener over keep-alive HTTP/1.1 and long-lived raw TCP.
 *
 * What a user sees is asserted, never a time: every connection open when a proxy dies ends (error
 * or close) before the client's own deadline; nothing hangs; requests while a proxy is gone fail
 * fast with a connection error; a client that retries a request once on a connection error (after
 * a back-off that outlasts the restart, as clients with back-off do) gets every request answered;
 * every new request once the restarted proxy is ready is answered; requests a draining waypoint
 * already has are answered.
 *
 * 127.0.41.2/.3 = ztunnels of node-a/node-b, .10 = client (node-a), .20 = server (node-b: HTTP on
 * 8080, echo on 9090), .21 = web (node-b, behind the waypoint), .30 = waypoint, .100 = web's VIP.
 */
import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import * as yaml from 'js-yaml';
import { ztunnelProcesses } from '../helpers/mesh.js';
import { socks5Connect } from '../helpers/net.js';
import { startNodeProcess, waitForStatus, type Proc } from '../helpers/proc.js';
import { until } from '../helpers/until.js';
import { meshAgent, meshConfig } from '../waypoint/fixture.js';

const WAYPOINT_MAIN = fileURLToPath(new URL('../../dist/waypoint/main.js', import.meta.url));

const base = '127.0.41';
const ADDR = { a: `${base}.2`, b: `${base}.3`, waypoint: `${base}.30` };
const CLIENT = `${base}.10`;
const SERVER = `${base}.20`;
const WEB = `${base}.21`;
const VIP_WEB = `${base}.100`;
/** A client's own deadline per request and per connection: not answered (or not ended) by then counts as hung. */
const CLIENT_TIMEOUT_MS = 8000;
/** Concurrent clients of the load; each sends its next request after a short idle gap. */
const CLIENTS = 6;
/** Requests held at the backend when a proxy goes away: in flight for sure. */
const HELD = 4;

const config = meshConfig(
  base,
  [{ name: 'web', namespace: 'default', serviceAccount: 'web', node: 'node-b', ips: [WEB], labels: { app: 'web' } }],
  { services: [{ name: 'web', namespace: 'default', vips: [VIP_WEB], ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web' }, waypoint: { address: ADDR.waypoint } }] },
);

// ---------------------------------------------------------------------------------------------
// Clients

/**
 * Every client socket until it ended: closed, or its peer's FIN read (an application reading sees
 * EOF; a raw stream allowing half-open stays open for writing). What "every open connection
 * ends" is checked on.
 */
const openSockets = new Set<net.Socket>();
const track = (s: net.Socket) => {
  if (s.destroyed || s.readableEnded) return;
  openSockets.add(s);
  s.once('close', () => openSockets.delete(s));
  s.once('end', () => openSockets.delete(s));
};

/** A request's result as the user sees it: `ok` (200 from the backend), `status N`, or a connection error. */
type Result = 'ok' | `status ${number}` | 'hung' | ConnectionError;
/**
 * - `refused by ztunnel`: ztunnel A answered SOCKS5 "connection refused" (reply 5): it could not
 *   open the tunnel (the peer ztunnel or waypoint is not there);
 * - `ztunnel down`: nothing listens on ztunnel A's SOCKS5 port (ECONNREFUSED);
 * - `connection lost`: the connection was reset or closed before the response (ECONNRESET,
 *   "socket hang up"): a proxy on the path went away, or a keep-alive connection closed under the request;
 * - `closed before the socks5 reply`: ztunnel A closed (or reset) the new connection before its SOCKS5 reply.
 */
type ConnectionError = 'refused by ztunnel' | 'ztunnel down' | 'connection lost' | 'closed before the socks5 reply';
const CONNECTION_ERRORS: readonly Result[] = ['refused by ztunnel', 'ztunnel down', 'connection lost', 'closed before the socks5 reply'];
const isConnectionError = (r: Result): r is ConnectionError => CONNECTION_ERRORS.includes(r);

function classify(err: NodeJS.ErrnoException): Result {
  if (err.message.startsWith('hung')) return 'hung';
  if (err.message === 'socks5 reply 5') return 'refused by ztunnel';
  if (err.message === 'socks5 reply -1') return 'closed before the socks5 reply';
  if (err.code === 'ECONNREFUSED') return 'ztunnel down';
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.message === 'socket hang up') return 'connection lost';
  throw new Error(`unexpected client error: ${err.code ?? ''} ${err.message}`);
}

/** One GET with the client's own deadline over the whole exchange (connecting included). */
function send(agent: http.Agent, url: string): Promise<Result> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: Result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = http.request(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => settle(res.statusCode === 200 && body.startsWith('ok ') ? 'ok' : `status ${res.statusCode ?? 0}`));
      res.on('error', (err) => settle(classify(err)));
    });
    const timer = setTimeout(() => req.destroy(new Error(`hung: no answer within ${CLIENT_TIMEOUT_MS} ms`)), CLIENT_TIMEOUT_MS);
    req.on('socket', (s) => track(s as net.Socket));
    req.on('error', (err) => settle(classify(err)));
    req.end();
  });
}

/** Keep-alive HTTP/1.1 through ztunnel A's SOCKS5 listener, from the client workload's address. */
const agentThroughA = () => meshAgent({ host: ADDR.a, port: 15080 }, CLIENT);

interface Sent {
  /** The phase the request was sent in. */
  readonly phase: string;
  /** The phase its first try ended in. */
  readonly ended: string;
  readonly url: string;
  readonly first: Result;
  /** The single retry, sent after a connection error (or a 503) once the service is back. */
  readonly retry?: Result;
}

/**
 * Continuous load: `CLIENTS` clients, each with a keep-alive connection (every fifth request on a
 * new connection instead, as a client that dials per request), a short idle gap between requests.
 * A request that fails with a connection error or a 503 is retried exactly once, after the client's
 * back-off: `down()` ... `up()` stands for a back-off that outlasts the restart, so a retry is sent
 * once the restarted proxy is ready (`up`), never during the gap.
 */
class Load {
  readonly records: Sent[] = [];
  phase = 'steady';
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;
  #stopped = false;
  #loops: Promise<void>[] = [];
  readonly #agents: http.Agent[] = [];

  constructor(readonly url: (client: number, n: number) => string) {}

  start(): void {
    for (let c = 0; c < CLIENTS; c++) {
      const kept = agentThroughA();
      this.#agents.push(kept);
      this.#loops.push(this.#client(c, kept));
    }
  }

  /** The service is about to go away: retries from now wait for `up`. */
  down(phase: string): void {
    this.phase = phase;
    this.#gate = new Promise((r) => (this.#open = r));
  }

  /** The restarted proxy is ready. */
  up(phase: string): void {
    this.phase = phase;
    this.#open();
  }

  /** First tries sent in `phase` (and answered). */
  answeredIn(phase: string): number {
    return this.records.filter((r) => r.phase === phase && r.first === 'ok').length;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#open();
    await Promise.all(this.#loops);
    for (const a of this.#agents) a.destroy();
  }

  async #client(c: number, kept: http.Agent): Promise<void> {
    for (let n = 0; !this.#stopped; n++) {
      const phase = this.phase;
      const fresh = n % 5 === 4 ? agentThroughA() : undefined;
      const url = this.url(c, n);
      const first = await send(fresh ?? kept, url);
      fresh?.destroy();
      const ended = this.phase;
      if (isConnectionError(first) || first === 'status 503') {
        await this.#gate; // a failure from the restart: `down` was called before the kill
        this.records.push({ phase, ended, url, first, retry: await send(kept, url) });
      } else {
        this.records.push({ phase, ended, url, first });
      }
      await sleep(5 + ((c * 7 + n * 13) % 30)); // the client's idle gap
    }
  }
}

/** How often each outcome occurred, failures with the phase they ended in, e.g. `{"ok": 120, "node-b down: connection lost → ok": 3}`. */
function tally(records: readonly Sent[]): { [k: string]: number } {
  const out: { [k: string]: number } = {};
  for (const r of records) {
    const k = r.retry === undefined && r.first === 'ok' ? 'ok' : `${r.ended}: ${r.first} → ${r.retry ?? 'no retry'}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Asserts the load's records: nothing hung, every request answered at the latest by its one retry, every first try after `after` answered. */
function checkLoad(t: Test, load: Load, after: readonly string[]): void {
  const { records } = load;
  t.comment(`load: ${records.length} requests: ${JSON.stringify(tally(records))}`);
  t.equal(records.filter((r) => r.first === 'hung' || r.retry === 'hung').length, 0, 'no request of the load hung');
  t.equal(records.filter((r) => (r.retry ?? r.first) !== 'ok').length, 0, 'every request answered, at the latest by its single retry');
  t.same(
    records.filter((r) => r.first !== 'ok' && !isConnectionError(r.first)).map((r) => r.first),
    [],
    'every failed first try was a connection error (no 5xx, nothing else)',
  );
  t.same(records.filter((r) => r.ended === 'steady' && r.first !== 'ok'), [], 'before any restart every request answered at once');
  t.same(records.filter((r) => after.includes(r.phase) && r.ended === r.phase && r.first !== 'ok'), [], `every request sent once the restarted proxy was ready answered at once (${after.join(', ')})`);
}

/** Waits until every socket in `sockets` has closed or the client's deadline passed; returns those still open. */
async function stillOpenAfterDeadline(sockets: readonly net.Socket[]): Promise<number> {
  await until('every socket to close', () => !sockets.some((s) => openSockets.has(s)), { timeoutMs: CLIENT_TIMEOUT_MS }).catch(() => undefined);
  const left = sockets.filter((s) => openSockets.has(s));
  return left.length;
}

// ---------------------------------------------------------------------------------------------
// Backends

/**
 * An HTTP backend answering `ok <path>`; while `holding`, requests to `/hold/*` are kept unanswered
 * (listed in `held`) until `release()`.
 */
async function holdingBackend(t: Test, host: string): Promise<{ holding: boolean; held: Set<http.ServerResponse>; release(): void }> {
  const b = {
    holding: false,
    held: new Set<http.ServerResponse>(),
    release() {
      this.holding = false;
      for (const res of this.held) res.end(`ok ${res.req.url}`);
      this.held.clear();
    },
  };
  const server = http.createServer((req, res) => {
    req.resume();
    if (b.holding && req.url?.startsWith('/hold/')) {
      b.held.add(res);
      res.once('close', () => b.held.delete(res));
      return;
    }
    res.end(`ok ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(8080, host, r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return b;
}

// ---------------------------------------------------------------------------------------------
// Processes

const zp = await ztunnelProcesses(t, base); // also the echo server on SERVER:9090
await writeFile(zp.configPath, yaml.dump(config));
const procs: Proc[] = [];
t.teardown(() => Promise.all(procs.map((p) => p.kill())));
// On failure, the processes' last log lines say what the proxies saw.
t.teardown(() => {
  if (!t.passing()) for (const p of procs) t.comment(`${p.child.pid}:\n${tail(p)}`);
});
const tail = (p: Proc) => p.output().split('\n').slice(-15).join('\n');

async function startZtunnel(node: 'node-a' | 'node-b'): Promise<Proc> {
  const address = node === 'node-a' ? ADDR.a : ADDR.b;
  const p = zp.start(node, address);
  procs.push(p);
  await waitForStatus(`http://${address}:15021/healthz/ready`, 200, 15_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${tail(p)}`);
  });
  return p;
}

async function startWaypoint(): Promise<Proc> {
  const p = startNodeProcess(WAYPOINT_MAIN, {
    WAYPOINT_ADDRESS: ADDR.waypoint,
    ADMIN_ADDRESS: ADDR.waypoint,
    LOCAL_CONFIG_FILE: zp.configPath,
    CA_ROOT_CERT_FILE: join(zp.dir, 'root-cert.pem'),
    CA_ROOT_KEY_FILE: join(zp.dir, 'root-key.pem'),
    // Longer than the held requests take once released: the drain ends because they finished.
    DRAIN_TIMEOUT_SECONDS: '20',
    LOG_LEVEL: 'info',
  });
  procs.push(p);
  await waitForStatus(`http://${ADDR.waypoint}:15021/healthz/ready`, 200, 15_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${tail(p)}`);
  });
  return p;
}

/** Readiness as a prober sees it: 200, another status, or down. */
const readiness = (address: string) =>
  fetch(`http://${address}:15021/healthz/ready`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status, () => 'down' as const);

const zt: { 'node-a': Proc; 'node-b': Proc } = { 'node-a': await startZtunnel('node-a'), 'node-b': await startZtunnel('node-b') };

// ---------------------------------------------------------------------------------------------

t.test('a ztunnel killed (-9) and restarted while clients hold connections through it', async (t) => {
  const server = await holdingBackend(t, SERVER);
  const load = new Load((c, n) => `http://${SERVER}:8080/load/${c}/${n}`);
  load.start();
  t.teardown(() => load.stop());
  const after: string[] = [];

  for (const node of ['node-b', 'node-a'] as const) {
    const which = node === 'node-a' ? 'ztunnel A (the client side)' : 'ztunnel B (the server side)';
    // Open before the kill: every load client's keep-alive connection, requests held at the
    // backend, and two long-lived raw TCP streams to the echo server (one idle, one busy).
    await until('the load runs', () => load.answeredIn(load.phase) >= 4 * CLIENTS);
    server.holding = true;
    const holder = agentThroughA();
    t.teardown(() => holder.destroy());
    const held = Array.from({ length: HELD }, (_, i) => send(holder, `http://${SERVER}:8080/hold/${node}/${i}`));
    await until('the backend holds every request', () => server.held.size === HELD);
    const idle = await socks5Connect({ proxy: { host: ADDR.a, port: 15080 }, localAddress: CLIENT, host: SERVER, port: 9090 });
    const busy = await socks5Connect({ proxy: { host: ADDR.a, port: 15080 }, localAddress: CLIENT, host: SERVER, port: 9090 });
    for (const s of [idle.socket, busy.socket]) {
      s.on('error', () => {});
      s.resume();
      track(s);
    }
    t.same([idle.reply, busy.reply], [0, 0], 'both raw streams opened');
    let echoed = '';
    busy.socket.setEncoding('utf8').on('data', (d: string) => (echoed += d));
    busy.socket.write('ping\n');
    await until('the busy stream echoes', () => echoed === 'ping\n');
    const pinger = setInterval(() => busy.socket.writable && busy.socket.write('ping\n'), 10);
    t.teardown(() => clearInterval(pinger));
    const open = [...openSockets];

    // Kill: no drain, no GOAWAY; the kernel closes the process's sockets.
    load.down(`${node} down`);
    await zt[node].kill('SIGKILL');
    t.equal(await zt[node].exited, 'SIGKILL', `${which} was killed`);
    t.equal(await stillOpenAfterDeadline(open), 0, `every client connection open through ${which} ended (${open.length}: keep-alive, held requests, raw streams): none outlived the client's deadline`);
    clearInterval(pinger);
    const heldResults = await Promise.all(held);
    t.same(heldResults.filter((r) => !isConnectionError(r)), [], `the ${HELD} held requests failed with a connection error, none hung: ${heldResults.join(', ')}`);
    server.holding = false;

    // While it is gone: new requests fail fast.
    const probes = await Promise.all(Array.from({ length: 5 }, (_, i) => send(agentThroughA(), `http://${SERVER}:8080/gap/${node}/${i}`)));
    const expected = node === 'node-a' ? 'ztunnel down' : 'refused by ztunnel';
    t.same(probes, Array(5).fill(expected), `new requests while ${which} is down fail fast: ${expected}`);

    // Restarted on the same address.
    zt[node] = await startZtunnel(node);
    load.up(`${node} restarted`);
    after.push(`${node} restarted`);
    const fresh = await Promise.all(Array.from({ length: 10 }, (_, i) => send(agentThroughA(), `http://${SERVER}:8080/new/${node}/${i}`)));
    if (!t.same(fresh, Array(10).fill('ok'), `10 of 10 new connections answered once ${which} is ready`)) t.comment(tail(zt[node]));
    const retried = await Promise.all(heldResults.map((_, i) => send(holder, `http://${SERVER}:8080/hold/${node}/${i}`)));
    t.same(retried, Array(HELD).fill('ok'), 'each held request, retried once, is answered');
    const raw = await socks5Connect({ proxy: { host: ADDR.a, port: 15080 }, localAddress: CLIENT, host: SERVER, port: 9090 });
    t.equal(raw.reply, 0, 'a new raw stream opens');
    track(raw.socket);
    raw.socket.setEncoding('utf8').resume();
    let rawEcho = '';
    raw.socket.on('data', (d: string) => (rawEcho += d));
    raw.socket.end('after restart\n');
    await until('a new raw stream echoes', () => rawEcho === 'after restart\n', { timeoutMs: CLIENT_TIMEOUT_MS }).catch(() => undefined);
    t.equal(rawEcho, 'after restart\n', 'a new raw TCP stream is echoed whole');
    await until('the load runs again', () => load.answeredIn(`${node} restarted`) >= 4 * CLIENTS);
  }
  await load.stop();
  checkLoad(t, load, after);
});

t.test('the waypoint restarted under load: SIGTERM (drain), then kill -9', async (t) => {
  const web = await holdingBackend(t, WEB);
  let waypoint = await startWaypoint();
  const load = new Load((c, n) => `http://${VIP_WEB}/load/${c}/${n}`);
  load.start();
  t.teardown(() => load.stop());
  const holder = agentThroughA();
  t.teardown(() => holder.destroy());
  const holdRequests = (what: string) => Array.from({ length: HELD }, (_, i) => send(holder, `http://${VIP_WEB}/hold/${what}/${i}`));

  // SIGTERM: the waypoint drains; the requests it already has are answered.
  await until('the load runs through the waypoint', () => load.answeredIn('steady') >= 4 * CLIENTS);
  web.holding = true;
  const drained = holdRequests('sigterm');
  await until('the backend holds every request', () => web.held.size === HELD);
  load.down('waypoint draining');
  waypoint.child.kill('SIGTERM');
  await until('the waypoint is no longer ready (draining)', async () => (await readiness(ADDR.waypoint)) !== 200);
  web.release();
  t.same(await Promise.all(drained), Array(HELD).fill('ok'), `the ${HELD} requests in flight at SIGTERM were answered during the drain`);
  if (!t.equal(await waypoint.exited, 0, 'the drained waypoint exited 0')) t.comment(tail(waypoint));

  const probes = await Promise.all(Array.from({ length: 5 }, (_, i) => send(agentThroughA(), `http://${VIP_WEB}/gap/${i}`)));
  t.same(probes, Array(5).fill('refused by ztunnel'), 'with no waypoint, new requests fail fast: ztunnel A refuses the SOCKS5 connection (reply 5)');

  waypoint = await startWaypoint();
  load.up('waypoint restarted');
  const retried = await Promise.all(probes.map((_, i) => send(agentThroughA(), `http://${VIP_WEB}/gap/${i}`)));
  t.same(retried, Array(5).fill('ok'), 'the requests refused in the gap, retried once the new waypoint is ready, are answered');
  await until('the load runs through the new waypoint', () => load.answeredIn('waypoint restarted') >= 4 * CLIENTS);

  // kill -9 mid-load: what was in flight fails at once, new requests work after the restart.
  web.holding = true;
  const killed = holdRequests('kill');
  await until('the backend holds every request', () => web.held.size === HELD);
  const open = [...openSockets];
  load.down('waypoint killed');
  await waypoint.kill('SIGKILL');
  const killedResults = await Promise.all(killed);
  t.same(killedResults.filter((r) => !isConnectionError(r)), [], `the ${HELD} requests in flight when the waypoint was killed failed with a connection error, none hung: ${killedResults.join(', ')}`);
  t.equal(await stillOpenAfterDeadline(open), 0, `every client connection through the killed waypoint ended (${open.length})`);
  web.holding = false;
  const probes2 = await Promise.all(Array.from({ length: 5 }, (_, i) => send(agentThroughA(), `http://${VIP_WEB}/gap2/${i}`)));
  t.same(probes2, Array(5).fill('refused by ztunnel'), 'new requests while the waypoint is gone fail fast (SOCKS5 reply 5)');
  waypoint = await startWaypoint();
  load.up('waypoint restarted after kill');
  const fresh = await Promise.all(Array.from({ length: 10 }, (_, i) => send(agentThroughA(), `http://${VIP_WEB}/new/${i}`)));
  t.same(fresh, Array(10).fill('ok'), '10 of 10 new connections answered once the restarted waypoint is ready');
  t.same(await Promise.all(holdRequests('kill-retry')), Array(HELD).fill('ok'), 'each request lost to the kill, retried once, is answered');
  await until('the load runs through the restarted waypoint', () => load.answeredIn('waypoint restarted after kill') >= 4 * CLIENTS);
  await load.stop();
  checkLoad(t, load, ['waypoint restarted', 'waypoint restarted after kill']);
});
