import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { echoServer, socks5Connect, readAll, closeServer } from '../helpers/net.js';
import { makeFiles, manifestYaml, namespace, pod, startControlPlane, startZtunnel, writeAtomic } from './helpers.js';
import { until } from '../helpers/until.js';

// Root rotation through the trust bundle, under continuous traffic. 127.0.6.51 = control plane,
// .52/.53 = ztunnels, .60/.70 = pods.
const base = '127.0.6';
const NODES = [
  { name: 'node-a', address: `${base}.52` },
  { name: 'node-b', address: `${base}.53` },
];
const CLIENT = `${base}.60`;
const SERVER = `${base}.70`;
const ID = { client: 'spiffe://cluster.local/ns/default/sa/client', server: 'spiffe://cluster.local/ns/default/sa/server' };
const files = await makeFiles(t.testdir(), NODES);
await writeAtomic(
  join(files.manifests, 'apps.yaml'),
  manifestYaml([namespace('default', { 'istio.io/dataplane-mode': 'ambient' }), pod('client', { node: 'node-a', ip: CLIENT }), pod('server', { node: 'node-b', ip: SERVER })]),
);
// The control plane signs with ca-cert.pem/ca-key.pem and hands out bundle.pem; the proxies
// were installed with the old root only (files.certFile).
const caCert = join(files.dir, 'ca-cert.pem');
const caKey = join(files.dir, 'ca-key.pem');
const bundle = join(files.dir, 'bundle.pem');
await copyFile(files.certFile, caCert);
await copyFile(files.keyFile, caKey);
await copyFile(files.certFile, bundle);
const oldRoot = await readFile(files.certFile, 'utf8');
const next = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
const newDir = join(files.dir, 'new');
await next.save(newDir);
const newRoot = next.rootCertPem;
const newKey = await readFile(join(newDir, 'root-key.pem'), 'utf8');

const cp = await startControlPlane(files, `${base}.51`, { CA_CERT_FILE: caCert, CA_KEY_FILE: caKey, TRUST_BUNDLE_FILE: bundle, METRICS_PORT: '0', READINESS_PORT: '0', ADMIN_PORT: '0' });
const cpAddress = `${base}.51:${cp.addresses.server.port}`;
const echo = await echoServer(SERVER, 9090);
const a = await startZtunnel({ files, node: NODES[0]!, controlPlane: cpAddress });
const b = await startZtunnel({ files, node: NODES[1]!, controlPlane: cpAddress });

// Traffic all along: a new connection every few milliseconds, each one echoing a byte.
let running = true;
let ok = 0;
const failures: string[] = [];
const traffic = (async () => {
  while (running) {
    try {
      const { reply, socket } = await socks5Connect({ proxy: { host: NODES[0]!.address, port: 15080 }, localAddress: CLIENT, host: SERVER, port: 9090 });
      if (reply !== 0) {
        socket.destroy();
        failures.push(`socks5 reply ${reply}`);
      } else {
        socket.end('x');
        if ((await readAll(socket)).toString() === 'x') ok++;
        else failures.push('no echo');
      }
    } catch (err) {
      failures.push((err as Error).message);
    }
    // The background traffic's pace (not a synchronisation): a new request every few ms.
    await new Promise((r) => setTimeout(r, 5));
  }
})();
t.teardown(async () => {
  running = false;
  await traffic;
  await Promise.all([a.zt.shutdown(), b.zt.shutdown()]);
  await cp.close();
  await closeServer(echo.server);
});

const oldKey = new X509Certificate(oldRoot).publicKey;
const newPub = new X509Certificate(newRoot).publicKey;
// Both roots are named O=cluster.local: tell them apart by the key that signed the leaf.
const issuerOf = (pem: string) => (new X509Certificate(pem).verify(newPub) ? 'new' : new X509Certificate(pem).verify(oldKey) ? 'old' : 'unknown');
const oldIssuer = 'old';
const newIssuer = 'new';
async function certState(zt: typeof a, id: string): Promise<{ roots: number; issuer: string }> {
  const c = await zt.client.certificates.fetch(id);
  return { roots: c.rootsPem.length, issuer: issuerOf(c.certChainPem[0]!) };
}

t.test('step 1: the new root joins the bundle; every certificate is re-issued trusting both', async (t) => {
  await writeAtomic(bundle, oldRoot + newRoot);
  await until('certificates with both roots', async () => (await certState(a, ID.client)).roots === 2 && (await certState(b, ID.server)).roots === 2, { timeoutMs: 10_000 });
  t.equal((await certState(a, ID.client)).issuer, oldIssuer, 'still signed by the old root');
  const okBefore = ok;
  await until('traffic', () => ok > okBefore + 5);
});

t.test('step 2: the CA signs with the new root; certificates move to it', async (t) => {
  // Key first, then certificate: a reload in between sees a mismatch and keeps the old signer.
  await writeAtomic(caKey, newKey);
  await writeAtomic(caCert, newRoot);
  await until('certificates from the new root', async () => (await certState(a, ID.client)).issuer === newIssuer && (await certState(b, ID.server)).issuer === newIssuer, { timeoutMs: 10_000 });
  t.equal(cp.ca.rootsPem.length, 2);
  const okBefore = ok;
  await until('traffic', () => ok > okBefore + 5);
});

t.test('step 3: the old root leaves the bundle; traffic never stopped', async (t) => {
  await writeAtomic(bundle, newRoot);
  await until('certificates trusting only the new root', async () => (await certState(a, ID.client)).roots === 1 && (await certState(b, ID.server)).roots === 1, { timeoutMs: 10_000 });
  const okBefore = ok;
  await until('traffic', () => ok > okBefore + 5);
  // The discovery stream still works under the new root (its certificate came from it too).
  t.ok(a.client.configSource.connected && b.client.configSource.connected);
  running = false;
  await traffic;
  t.same(failures, [], `no connection failed during the rotation (${ok} succeeded)`);
});
