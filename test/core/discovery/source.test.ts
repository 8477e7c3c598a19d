import t from 'tap';
import http2 from 'node:http2';
import type net from 'node:net';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../../core/identity/csr.js';
import { TrustAnchors } from '../../../core/identity/trust-anchors.js';
import type { WorkloadCertificate } from '../../../core/identity/certificate.js';
import { DiscoverySource } from '../../../core/discovery/source.js';
import { controlPlaneIdentity, ztunnelIdentity } from '../../../core/discovery/wire.js';
import type { MeshConfig } from '../../../core/model/types.js';
import { until } from '../../helpers/until.js';

// The client against a scripted control plane: what it does with messages it must not apply.
const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
async function certFor(id: string): Promise<WorkloadCertificate> {
  const { keyPem, csrPem } = await generateKeyAndCsr(id);
  const s = ca.sign(csrPem);
  return { identity: id, keyPem, certChainPem: s.certChainPem, rootsPem: ca.trustBundlePem, notBefore: s.notBefore, notAfter: s.notAfter };
}
const serverCert = await certFor(controlPlaneIdentity('cluster.local'));
const clientCert = await certFor(ztunnelIdentity('cluster.local'));

const workload = (name: string) => ({ uid: `default/${name}`, name, namespace: 'default', serviceAccount: name, trustDomain: 'cluster.local', node: 'node-a', ips: ['10.0.0.1'], protocol: 'HBONE', labels: {}, healthy: true });
const snapshot = (version: string, names: string[]) =>
  JSON.stringify({ type: 'snapshot', version, seq: 1, rootNamespace: 'istio-system', resources: { nodes: [], workloads: names.map(workload), services: [], authorizationPolicies: [], peerAuthentications: [] } }) + '\n';
const V = (c: string) => c.repeat(32);

/** Each connection gets the next script: lines to write, then the stream stays open (or ends, after `END`). */
const END = '<end>';
async function scriptedServer(scripts: ((path: string) => string[])[]) {
  const seen: string[] = [];
  const server = http2.createSecureServer({ key: serverCert.keyPem, cert: serverCert.certChainPem.join('\n'), ca: ca.trustBundlePem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    seen.push(path);
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    const script = scripts[Math.min(seen.length - 1, scripts.length - 1)]!;
    for (const line of script(path)) {
      if (line === END) stream.end();
      else stream.write(line);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.6.250', r));
  return { server, seen, port: (server.address() as net.AddressInfo).port };
}

function client(port: number, configs: MeshConfig[]) {
  const source = new DiscoverySource({
    address: { host: '127.0.6.250', port },
    node: 'node-a',
    token: async () => 'token',
    certificate: async () => clientCert,
    trust: new TrustAnchors(ca.trustBundlePem),
    serverIdentity: controlPlaneIdentity('cluster.local'),
    initialBackoffMs: 20,
    maxBackoffMs: 100,
  });
  return { source, started: source.start((c) => configs.push(c)) };
}

t.test('a delta from another version is refused: the last configuration stays and a snapshot is asked for', async (t) => {
  const { server, seen, port } = await scriptedServer([
    () => [snapshot(V('a'), ['one']), JSON.stringify({ type: 'delta', from: V('9'), version: V('b'), seq: 2, upserts: { workloads: [workload('evil')] }, removes: {} }) + '\n'],
    () => [snapshot(V('c'), ['one', 'two'])],
  ]);
  t.teardown(() => server.close());
  const configs: MeshConfig[] = [];
  const { source, started } = client(port, configs);
  t.teardown(() => source.close());
  await started;
  await until('the second configuration', () => configs.length >= 2);
  t.same(configs[0]!.workloads.map((w) => w.name), ['one']);
  t.same(configs[1]!.workloads.map((w) => w.name), ['one', 'two'], 'the bad delta was never applied');
  t.notMatch(seen[0], /since=/, 'the first connection holds no version');
  t.notMatch(seen[1], /since=/, 'after a refused message the client asks for a snapshot, not a resume');
  t.equal(source.stats.rejected, 1);
  t.equal(source.version, V('c'));
});

t.test('a malformed message is refused the same way; a reconnect with a known version resumes', async (t) => {
  const { server, seen, port } = await scriptedServer([
    () => [snapshot(V('a'), ['one']), '{"type":"delta", not json\n'],
    () => [snapshot(V('a'), ['one']), END],
    (path) => (path.includes(`since=${V('a')}`) ? [JSON.stringify({ type: 'resume', version: V('a'), seq: 3 }) + '\n'] : [snapshot(V('f'), [])]),
  ]);
  t.teardown(() => server.close());
  const configs: MeshConfig[] = [];
  const { source, started } = client(port, configs);
  t.teardown(() => source.close());
  await started;
  await until('the client to resume', () => source.stats.resumes >= 1);
  t.equal(source.stats.rejected, 1, 'the malformed line was refused');
  t.notMatch(seen[1], /since=/, 'then a snapshot was asked for');
  t.match(seen[2], new RegExp(`since=${V('a')}`), 'after the stream ended, the client came back with its version');
  t.equal(configs.length, 2, 'a resume sends nothing and changes nothing');
  t.equal(source.version, V('a'));
  t.ok(source.connected);
});

t.test('start gives up after startTimeoutMs when nothing answers', async (t) => {
  const source = new DiscoverySource({
    address: { host: '127.0.6.250', port: 1 },
    certificate: async () => clientCert,
    trust: new TrustAnchors(ca.trustBundlePem),
    serverIdentity: controlPlaneIdentity('cluster.local'),
    initialBackoffMs: 10,
    maxBackoffMs: 20,
    startTimeoutMs: 300,
  });
  await t.rejects(source.start(() => undefined), /no configuration from the control plane at 127.0.6.250:1 within 300 ms \(last error: .*ECONNREFUSED/);
});
