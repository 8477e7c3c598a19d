import t from 'tap';
import { once } from 'node:events';
import type net from 'node:net';
import * as yaml from 'js-yaml';
import { LocalCaClient, SecretManager, type CaClient, type CaSignResult } from '../../core/identity/secret-manager.js';
import { parseMeshConfig } from '../../core/config/file.js';
import { MeshState } from '../../core/model/state.js';
import { silentLogger } from '../../core/telemetry/log.js';
import { Ztunnel } from '../../ztunnel/ztunnel.js';
import { IdentityRetention, localIdentities } from '../../ztunnel/identities.js';
import { baseConfig, startMesh } from '../helpers/mesh.js';
import { echoServer, socks5Connect, closeServer } from '../helpers/net.js';

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

/** The real CA behind a counter of sign calls per identity. */
class CountingCa implements CaClient {
  readonly calls = new Map<string, number>();
  constructor(private readonly inner: CaClient) {}
  sign(csrPem: string, identity: string): Promise<CaSignResult> {
    this.calls.set(identity, this.count(identity) + 1);
    return this.inner.sign(csrPem, identity);
  }
  count(identity: string): number {
    return this.calls.get(identity) ?? 0;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 20 ms (a ref'd timer: the proxies' timers are unref'd). */
async function until(check: () => boolean, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

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

t.test('a workload removed only for a moment (shorter than the grace period) keeps its certificate', async (t) => {
  const socket = await connect();
  t.equal(await echoOnce(socket, 'warm'), 'warm');
  t.ok(a.secrets.identities().includes(ID.client), 'the connection fetched the client certificate');
  // Watch the secret manager the whole time: the identity must never be dropped, not even briefly.
  let dropped = false;
  const watch = setInterval(() => (dropped ||= !a.secrets.identities().includes(ID.client)), 10);
  t.teardown(() => clearInterval(watch));
  await writeConfig(withoutClient);
  await until(() => !hasClient(a.zt), 'node-a loaded the config without the client');
  t.match(certs(a.zt)[ID.client], { needed: false, forgetAt: Date }, 'config_dump: not needed, with the time it will be forgotten');
  await writeConfig(withClient);
  await until(() => hasClient(a.zt), 'node-a loaded the config with the client again');
  t.match(certs(a.zt)[ID.client], { needed: true }, 'needed again');
  t.notOk('forgetAt' in certs(a.zt)[ID.client]!, 'the pending forget is cancelled');
  // Well past the deadline the first removal had set.
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
  await until(() => !hasClient(a.zt), 'node-a loaded the config without the client');
  const removedAt = Date.now();
  t.ok(a.secrets.identities().includes(ID.client), 'still held right after the update (grace period)');

  await until(() => !a.secrets.identities().includes(ID.client), 'the secret manager no longer holds the client identity');
  const forgottenAfter = Date.now() - removedAt;
  t.ok(forgottenAfter >= GRACE_SECONDS * 1000 - 50, `forgotten after ${forgottenAfter} ms, not before the grace period`);
  t.notOk(ID.client in certs(a.zt), 'config_dump no longer lists it');
  const dump = (await (await fetch(`http://${base}.2:15000/config_dump`)).json()) as { certificates: Record<string, unknown> };
  t.notOk(ID.client in dump.certificates, '... nor does the admin endpoint');

  const clientCalls = a.ca.count(ID.client);
  const serverCalls = b.ca.count(ID.server);
  // Two renewal periods and more.
  await sleep(5000);
  t.equal(a.ca.count(ID.client), clientCalls, 'no CSR for the forgotten identity since');
  t.ok(b.ca.count(ID.server) >= serverCalls + 1, `meanwhile the server identity, still on node-b, was renewed ${b.ca.count(ID.server) - serverCalls} times`);
  t.ok(clientCalls > before, 'the client identity had been issued (and renewed) before');

  // The connection opened before still flows: its TLS session needs no certificate any more,
  // although the one it was made with has expired by now.
  t.equal(await echoOnce(socket, 'two'), 'two', 'the connection opened before still flows');
  socket.destroy();

  // Re-added: the next connection requests the certificate again. Pooled HBONE connections made
  // before are reused without a handshake (so without a certificate); retire them first.
  await writeConfig(withClient);
  await until(() => hasClient(a.zt), 'node-a loaded the config with the client again');
  a.zt.hbone.drain();
  const again = await connect();
  t.equal(await echoOnce(again, 'three'), 'three', 'a new connection after re-adding works');
  t.equal(a.ca.count(ID.client), clientCalls + 1, 'one new CSR for the client identity');
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
  const forgotten: string[] = [];
  const r = new IdentityRetention({ nodeName: 'node-a', graceMs: 300, forget: (id) => forgotten.push(id), pinned: [OWN], logger: silentLogger });
  t.teardown(() => r.close());
  const issue = (identity: string) => r.issued({ identity, notBefore: new Date(), notAfter: new Date(Date.now() + 60_000) });
  r.update(meshed);
  for (const id of [P, OWN]) {
    r.used(id);
    issue(id);
  }
  // Issued for another user of the secret manager; ztunnel's data path never asked for it.
  issue(OTHER);
  r.update(stateOf([]));
  await sleep(200);
  r.used(P); // a connection that read the previous snapshot
  await sleep(200);
  t.same(forgotten, [], '400 ms after the update, but only 200 ms after the last use: kept');
  await until(() => forgotten.length > 0, 'P is forgotten', 2000);
  await sleep(400);
  t.same(forgotten, [P], 'only P is forgotten');
  t.same(Object.keys(r.dump()), [OTHER, OWN], 'the own identity stays (pinned), and so does one the data path never asked for');
  t.match(r.dump()[OWN], { needed: true });
  t.match(r.dump()[OTHER], { needed: false });
  t.notOk('forgetAt' in r.dump()[OTHER]!);
});

t.test('without a way to forget, nothing is scheduled and the dump says what is not needed', async (t) => {
  const r = new IdentityRetention({ nodeName: 'node-a', graceMs: 50, forget: undefined, logger: silentLogger });
  t.teardown(() => r.close());
  r.update(stateOf([]));
  r.used(P);
  await sleep(150);
  t.same(r.dump(), { [P]: { rotations: 0, needed: false } });
});
