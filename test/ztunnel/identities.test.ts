import t, { type Test } from 'tap';
import { once } from 'node:events';
import type net from 'node:net';
import * as yaml from 'js-yaml';
import { LocalCaClient, SecretManager, type CaClient, type CaSignResult } from '../../core/identity/secret-manager.js';
import { CertificateAuthority } from '../../core/identity/ca.js';
import type { WorkloadCertificate } from '../../core/identity/certificate.js';
import { parseMeshConfig } from '../../core/node-config/file.js';
import { MeshState } from '../../core/model/state.js';
import { silentLogger } from '../../core/telemetry/log.js';
import { Ztunnel } from '../../ztunnel/ztunnel.js';
import { IdentityRetention, localIdentities } from '../../ztunnel/identities.js';
import { baseConfig, startMesh } from '../helpers/mesh.js';
import { echoServer, socks5Connect, closeServer } from '../helpers/net.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { until } from '../helpers/until.js';

// 127.0.19.2 = ztunnel node-a, .3 = node-b, .10 = client (node-a), .20 = server (node-b).
// Certificates live 4 s: issued with notBefore a minute back (clock skew), they are renewed every
// ~2 s, so a renewal that should have stopped shows up within the waits below.
const base = '127.0.19';
const CLIENT = `${base}.10`;
const SERVER = `${base}.20`;
const ID = {
  client: 'spiffe://cluster.local/ns/default/sa/client',
  server: 'spiffe://cluster.local/ns/default/sa/server',
};
const GRACE_SECONDS = 1.5;

/** The real CA behind a counter of sign calls per identity; `failing` makes it refuse (an unreachable CA). */
class CountingCa implements CaClient {
  readonly calls = new Map<string, number>();
  failing = false;
  constructor(private readonly inner: CaClient) {}
  async sign(csrPem: string, identity: string): Promise<CaSignResult> {
    this.calls.set(identity, this.count(identity) + 1);
    if (this.failing) throw new Error('the ca is unreachable (scripted)');
    return this.inner.sign(csrPem, identity);
  }
  count(identity: string): number {
    return this.calls.get(identity) ?? 0;
  }
  get total(): number {
    return [...this.calls.values()].reduce((a, b) => a + b, 0);
  }
}

const withClient = baseConfig(base);
const withoutClient = { ...withClient, workloads: (withClient.workloads as Array<{ name: string }>).filter((w) => w.name !== 'client') };
// Per node: its secret manager and a CSR counter, under 4-second certificates (renewed every ~2 s).
const held = new Map<string, { secrets: SecretManager; ca: CountingCa }>();
const echo = await echoServer(SERVER, 9090);
const mesh = await startMesh({
  dir: t.testdir(),
  base,
  config: withClient,
  certTtlSeconds: 4,
  env: { CERT_RETENTION_SECONDS: String(GRACE_SECONDS) },
  certificates: (node, ca) => {
    const counting = new CountingCa(new LocalCaClient(ca));
    const secrets = new SecretManager({ caClient: counting, logger: silentLogger });
    held.set(node, { secrets, ca: counting });
    return secrets;
  },
});
const writeConfig = (cfg: object) => mesh.writeConfig(cfg);
const a = { zt: mesh.a, ...held.get('node-a')! };
const b = { zt: mesh.b, ...held.get('node-b')! };
const open: net.Socket[] = [];
t.teardown(async () => {
  for (const s of open) s.destroy();
  await mesh.close();
  await closeServer(echo.server);
});

/** The grace period elapsing in real time, in the integrated ztunnel (the thing under test there). */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const hasClient = (zt: Ztunnel) => zt.state.workloadByIp(CLIENT) !== undefined;

type CertDump = Record<string, { notAfter?: Date; rotations: number; needed: boolean; forgetAt?: Date }>;
const certs = (zt: Ztunnel) => (zt.configDump() as { certificates: CertDump }).certificates;

/** A SOCKS5 connection from the client to the echo server through node-a, then node-b. */
async function connect(): Promise<net.Socket> {
  const { reply, socket } = await socks5Connect({ proxy: { host: `${base}.2`, port: 15080 }, localAddress: CLIENT, host: SERVER, port: 9090 });
  open.push(socket);
  if (reply !== 0) throw new Error(`socks5 reply ${reply}`);
  socket.resume();
  return socket;
}

async function echoOnce(socket: net.Socket, text: string): Promise<string> {
  socket.write(text);
  const [d] = (await once(socket, 'data')) as [Buffer];
  return d.toString();
}

t.test('on start, the certificates of the node\'s workloads are fetched without any connection', async (t) => {
  await until('both ztunnels hold their workload\'s certificate', () => certs(a.zt)[ID.client]?.notAfter !== undefined && certs(b.zt)[ID.server]?.notAfter !== undefined);
  t.equal(a.zt.openConnections + b.zt.openConnections, 0, 'no connection was made');
  t.same(a.zt.hbone.dump(), b.zt.hbone.dump(), 'no pooled HBONE connection on either node');
  t.ok(a.ca.count(ID.client) >= 1, 'node-a requested the client identity');
  t.equal(a.ca.count(ID.server), 0, '... and not the server\'s, which is on node-b');
  t.ok(b.ca.count(ID.server) >= 1, 'node-b requested the server identity');
  t.equal(b.ca.count(ID.client), 0, '... and not the client\'s');
  t.match(certs(a.zt)[ID.client], { needed: true, notAfter: Date }, 'config_dump shows the prefetched certificate');
});

t.test('a workload removed only for a moment (shorter than the grace period) keeps its certificate', async (t) => {
  const socket = await connect();
  t.equal(await echoOnce(socket, 'warm'), 'warm');
  t.ok(a.secrets.identities().includes(ID.client), 'the connection fetched the client certificate');
  // Watch the secret manager the whole time: the identity must never be dropped, not even briefly.
  let dropped = false;
  const watch = setInterval(() => (dropped ||= !a.secrets.identities().includes(ID.client)), 10);
  t.teardown(() => clearInterval(watch));
  await writeConfig(withoutClient);
  await until('node-a loaded the config without the client', () => !hasClient(a.zt));
  t.match(certs(a.zt)[ID.client], { needed: false, forgetAt: Date }, 'config_dump: not needed, with the time it will be forgotten');
  await writeConfig(withClient);
  await until('node-a loaded the config with the client again', () => hasClient(a.zt));
  t.match(certs(a.zt)[ID.client], { needed: true }, 'needed again');
  t.notOk('forgetAt' in certs(a.zt)[ID.client]!, 'the pending forget is cancelled');
  // Well past the deadline the first removal had set. Kept as a real wait: the grace period
  // elapsing inside running ztunnels is what is tested (its timers are not injectable there; the
  // same logic on a fake clock is tested below), and the watch above samples it throughout.
  await sleep(GRACE_SECONDS * 1000 + 700);
  clearInterval(watch);
  t.notOk(dropped, 'the identity was held throughout');
  t.ok(a.secrets.identities().includes(ID.client));
  socket.destroy();
});

t.test('a workload that left the node: its identity is forgotten after the grace period and no longer renewed', async (t) => {
  // A fresh pooled HBONE connection, so this test does not depend on the previous one's pool.
  a.zt.hbone.drain();
  const before = a.ca.count(ID.client);
  const socket = await connect();
  t.equal(await echoOnce(socket, 'one'), 'one', 'a connection through both ztunnels');

  await writeConfig(withoutClient);
  await until('node-a loaded the config without the client', () => !hasClient(a.zt));
  const removedAt = Date.now();
  t.ok(a.secrets.identities().includes(ID.client), 'still held right after the update (grace period)');

  await until('the secret manager no longer holds the client identity', () => !a.secrets.identities().includes(ID.client));
  const forgottenAfter = Date.now() - removedAt;
  t.ok(forgottenAfter >= GRACE_SECONDS * 1000 - 50, `forgotten after ${forgottenAfter} ms, not before the grace period`);
  t.notOk(ID.client in certs(a.zt), 'config_dump no longer lists it');
  const dump = (await (await fetch(`http://${base}.2:15000/config_dump`)).json()) as { certificates: Record<string, unknown> };
  t.notOk(ID.client in dump.certificates, '... nor does the admin endpoint');

  const clientCalls = a.ca.count(ID.client);
  const serverCalls = b.ca.count(ID.server);
  // Two renewal periods and more, measured by the identity still held: once node-b has renewed
  // the server's twice, a renewal of the forgotten one would have come too.
  await until('node-b to renew the server identity twice', () => b.ca.count(ID.server) >= serverCalls + 2, { timeoutMs: 15_000 });
  t.equal(a.ca.count(ID.client), clientCalls, 'no CSR for the forgotten identity since');
  t.ok(b.ca.count(ID.server) >= serverCalls + 1, `meanwhile the server identity, still on node-b, was renewed ${b.ca.count(ID.server) - serverCalls} times`);
  t.ok(clientCalls > before, 'the client identity had been issued (and renewed) before');

  // The connection opened before still flows: its TLS session needs no certificate any more,
  // although the one it was made with has expired by now.
  t.equal(await echoOnce(socket, 'two'), 'two', 'the connection opened before still flows');
  socket.destroy();

  // Re-added: the update requests the certificate again. Pooled HBONE connections made before are
  // reused without a handshake (so without a certificate); retire them first.
  await writeConfig(withClient);
  await until('node-a loaded the config with the client again', () => hasClient(a.zt));
  await until('the client certificate is fetched again, before any connection', () => certs(a.zt)[ID.client]?.notAfter !== undefined);
  t.equal(a.ca.count(ID.client), clientCalls + 1, 'one new CSR for the client identity');
  a.zt.hbone.drain();
  const again = await connect();
  t.equal(await echoOnce(again, 'three'), 'three', 'a new connection after re-adding works');
  t.ok(a.secrets.identities().includes(ID.client), 'held again');
  t.match(certs(a.zt)[ID.client], { needed: true, rotations: 0 }, 'config_dump lists it again, as a new certificate');
  again.destroy();
});

// ---- IdentityRetention on its own ----------------------------------------------------------

const stateOf = (workloads: Array<Record<string, unknown>>) =>
  new MeshState(parseMeshConfig(yaml.dump({ nodes: [{ name: 'node-a', ztunnelAddress: `${base}.2` }, { name: 'node-b', ztunnelAddress: `${base}.3` }], workloads }), 'test.yaml'));
const meshed = stateOf([
  { name: 'p', namespace: 'ns', serviceAccount: 'p', node: 'node-a', ips: [`${base}.30`] },
  { name: 'q', namespace: 'ns', serviceAccount: 'q', node: 'node-b', ips: [`${base}.31`] },
  { name: 'r', namespace: 'ns', serviceAccount: 'r', node: 'node-a', ips: [`${base}.32`], protocol: 'TCP' },
]);
const P = 'spiffe://cluster.local/ns/ns/sa/p';
const OWN = 'spiffe://cluster.local/ns/istio-system/sa/ztunnel';
const OTHER = 'spiffe://cluster.local/ns/istio-system/sa/other';

t.test('needed identities: meshed workloads on this node only', async (t) => {
  t.same([...localIdentities(meshed, 'node-a')], [P], 'not another node\'s, not an un-meshed (TCP) workload\'s');
});

t.test('a use while unneeded postpones forgetting; own identities and others\' are never forgotten', async (t) => {
  // On a fake clock: the grace period passes when the test moves time, and every timer due runs.
  const clock = new FakeClock();
  const runDue = () => {
    while (clock.nextAt() !== undefined && clock.nextAt()! <= clock.now()) clock.fireNext();
  };
  const forgotten: string[] = [];
  const r = new IdentityRetention({ nodeName: 'node-a', graceMs: 300, forget: (id) => forgotten.push(id), pinned: [OWN], logger: silentLogger, now: clock.now, timers: clock });
  t.teardown(() => r.close());
  const issue = (identity: string) => r.issued({ identity, notBefore: new Date(clock.now()), notAfter: new Date(clock.now() + 60_000) });
  r.update(meshed);
  for (const id of [P, OWN]) {
    r.used(id);
    issue(id);
  }
  // Issued for another user of the secret manager; ztunnel's data path never asked for it.
  issue(OTHER);
  r.update(stateOf([]));
  clock.advance(200);
  runDue();
  r.used(P); // a connection that read the previous snapshot
  clock.advance(200);
  runDue();
  t.same(forgotten, [], '400 ms after the update, but only 200 ms after the last use: kept');
  t.equal(clock.nextDelay(), 100, 'forgetting postponed to 300 ms after the last use');
  clock.fireNext();
  t.same(forgotten, [P], 'P is forgotten then');
  // Every timer that is left (none should be), however far ahead.
  for (let i = 0; i < 100 && clock.fireNext(); i++);
  t.same(forgotten, [P], 'only P is forgotten');
  t.equal(clock.pending, 0, 'nothing else is scheduled');
  t.same(Object.keys(r.dump()), [OTHER, OWN], 'the own identity stays (pinned), and so does one the data path never asked for');
  t.match(r.dump()[OWN], { needed: true });
  t.match(r.dump()[OTHER], { needed: false });
  t.notOk('forgetAt' in r.dump()[OTHER]!);
});

t.test('without a way to forget, nothing is scheduled and the dump says what is not needed', async (t) => {
  const clock = new FakeClock();
  const r = new IdentityRetention({ nodeName: 'node-a', graceMs: 50, forget: undefined, logger: silentLogger, now: clock.now, timers: clock });
  t.teardown(() => r.close());
  r.update(stateOf([]));
  r.used(P);
  t.equal(clock.pending, 0, 'no timer scheduled');
  clock.advance(150);
  t.same(r.dump(), { [P]: { rotations: 0, needed: false } });
});

// ---- prefetch, on a fake clock -------------------------------------------------------------
// IdentityRetention and a real SecretManager over the real CA, wired as ztunnel/ztunnel.ts wires
// them, with time on a fake clock: retries and grace periods of minutes run without waiting.

const sa = (name: string) => `spiffe://cluster.local/ns/ns/sa/${name}`;
const local = (name: string, i: number, extra: Record<string, unknown> = {}) => ({ name, namespace: 'ns', serviceAccount: name, node: 'node-a', ips: [`${base}.${100 + i}`], ...extra });
const fourLocal = [local('w1', 1), local('w2', 2), local('w3', 3), local('w4', 4)];
// Neither is this ztunnel's to fetch: another node's workload, and an un-meshed one on this node.
const notOurs = [
  { name: 'remote', namespace: 'ns', serviceAccount: 'remote', node: 'node-b', ips: [`${base}.120`] },
  local('plain', 21, { protocol: 'TCP' }),
];
const GRACE_MS = 300_000;

async function prefetching(t: Test) {
  const clock = new FakeClock();
  const ca = new CountingCa(new LocalCaClient(await CertificateAuthority.create({ trustDomain: 'cluster.local', ttlSeconds: 3600, now: clock.now })));
  // random 1: every wait is the full backoff, so the delays below are exact.
  const secrets = new SecretManager({ caClient: ca, logger: silentLogger, now: clock.now, timers: clock, random: () => 1 });
  const prefetches: Array<Promise<WorkloadCertificate>> = [];
  const forgotten: string[] = [];
  const retention = new IdentityRetention({
    nodeName: 'node-a',
    graceMs: GRACE_MS,
    logger: silentLogger,
    now: clock.now,
    timers: clock,
    forget: (id) => {
      forgotten.push(id);
      secrets.forget(id);
    },
    prefetch: (id) => {
      const p = secrets.fetch(id);
      p.catch(() => undefined);
      prefetches.push(p);
    },
  });
  secrets.onRotate((c) => retention.issued(c));
  t.teardown(() => {
    retention.close();
    secrets.close();
  });
  return {
    clock,
    ca,
    secrets,
    retention,
    forgotten,
    /** Resolves once every prefetch so far has its answer (any CA call it made has happened). */
    settled: () => Promise.allSettled(prefetches),
  };
}
type Prefetching = Awaited<ReturnType<typeof prefetching>>;

/** Runs the next timer that retries `id`'s failing request and waits until that retry failed. */
async function failedRetry(p: Prefetching, id: string): Promise<number> {
  const delay = p.clock.nextDelay()!;
  const calls = p.ca.count(id);
  const pending = p.clock.pending;
  p.clock.fireNext();
  await until(`a retry of ${id} failed`, () => p.ca.count(id) === calls + 1 && p.clock.pending === pending);
  return delay;
}

t.test('prefetch: a snapshot with N local workloads requests N certificates without any connection; a workload added later is fetched on that update', async (t) => {
  const p = await prefetching(t);
  p.retention.update(stateOf([...fourLocal, ...notOurs]));
  await p.settled();
  const ids = fourLocal.map((w) => sa(w.name));
  t.equal(p.ca.total, 4, 'four CSRs');
  t.same(ids.map((id) => p.ca.count(id)), [1, 1, 1, 1], 'one per local meshed identity');
  t.same(p.secrets.identities().sort(), ids, 'held by the secret manager');
  const dump = p.retention.dump();
  t.same(Object.keys(dump), ids, 'config_dump lists exactly those');
  t.ok(ids.every((id) => dump[id]!.notAfter instanceof Date && dump[id]!.needed), 'each with its certificate, needed');

  p.retention.update(stateOf([...fourLocal, ...notOurs]));
  await p.settled();
  t.equal(p.ca.total, 4, 'the same snapshot again: no CSR (the held certificates are reused)');

  p.retention.update(stateOf([...fourLocal, local('w5', 5), ...notOurs]));
  await p.settled();
  t.equal(p.ca.count(sa('w5')), 1, 'the added workload\'s identity is requested on that update');
  t.equal(p.ca.total, 5, 'and nothing else');
  t.match(p.retention.dump()[sa('w5')], { needed: true, notAfter: Date });
  t.equal(p.clock.pending, 5, 'nothing pending but the five renewals');
});

t.test('prefetch: a failing CA is retried with backoff until it answers; config_dump shows the identity meanwhile', async (t) => {
  const p = await prefetching(t);
  p.ca.failing = true;
  p.retention.update(stateOf(fourLocal.slice(0, 1)));
  await p.settled();
  const id = sa('w1');
  t.equal(p.ca.count(id), 1, 'requested on the snapshot');
  t.same(p.retention.dump(), { [id]: { rotations: 0, needed: true } }, 'listed without a certificate while its requests fail');
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) delays.push(await failedRetry(p, id));
  t.same(delays, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000], 'exponential backoff, capped at 30 s');
  // Snapshots keep coming while the CA is away: they add no request to the backoff.
  p.retention.update(stateOf(fourLocal.slice(0, 1)));
  await p.settled();
  t.equal(p.ca.count(id), 11, 'a snapshot during the backoff costs no extra CSR');
  p.ca.failing = false;
  p.clock.fireNext();
  await until('the certificate arrives on the next retry', () => p.retention.dump()[id]?.notAfter !== undefined);
  t.equal(p.ca.count(id), 12);
});

t.test('prefetch: an identity whose workloads left is forgotten after the grace period, and its retries stop', async (t) => {
  const p = await prefetching(t);
  const [w1, w2] = [sa('w1'), sa('w2')];
  p.retention.update(stateOf(fourLocal.slice(0, 1)));
  await p.settled();
  t.match(p.retention.dump()[w1], { notAfter: Date }, 'w1 issued');
  p.ca.failing = true;
  p.retention.update(stateOf(fourLocal.slice(0, 2)));
  await p.settled();
  t.equal(p.ca.count(w2), 1, 'w2 requested, and failing');
  const leftAt = p.clock.now();
  p.retention.update(stateOf([]));
  t.match(p.retention.dump(), { [w1]: { needed: false, forgetAt: new Date(leftAt + GRACE_MS) }, [w2]: { needed: false, forgetAt: new Date(leftAt + GRACE_MS) } }, 'both to be forgotten after the grace period');
  // w2 keeps being retried through the grace period; then both are forgotten.
  while (p.forgotten.length < 2) {
    const before = p.forgotten.length;
    if (p.clock.nextAt()! >= leftAt + GRACE_MS) {
      p.clock.fireNext();
      if (!t.ok(p.forgotten.length === before + 1, 'the timer due at the end of the grace period forgets one identity')) break;
    } else {
      await failedRetry(p, w2);
    }
  }
  t.ok(p.clock.now() >= leftAt + GRACE_MS, 'not before the grace period');
  t.ok(p.ca.count(w2) > 5, `w2 was retried ${p.ca.count(w2)} times meanwhile`);
  t.same(p.forgotten.sort(), [w1, w2]);
  t.same(p.secrets.identities(), [], 'the secret manager holds neither');
  t.same(p.retention.dump(), {}, 'config_dump lists neither');
  t.equal(p.clock.pending, 0, 'no renewal of w1 and no retry of w2 is left: no CSR for them ever again');
});
