/**
 * The node-agent kinds on the wire (`pendingPods`, `namespaces`): in the ztunnel view's snapshot
 * and deltas, never in a waypoint's; a pod that gets its IP moves from `pendingPods` to
 * `workloads` in one delta. A real control plane from files and raw HTTP/2 clients; addresses
 * 127.0.71.x.
 */
import t from 'tap';
import http2 from 'node:http2';
import { join } from 'node:path';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../../core/identity/csr.js';
import { controlPlaneTlsOptions } from '../../../core/identity/control-plane-tls.js';
import { TrustAnchors } from '../../../core/identity/trust-anchors.js';
import type { WorkloadCertificate } from '../../../core/identity/certificate.js';
import { readRootsFile } from '../../../core/discovery/client.js';
import { DISCOVERY_PATH, controlPlaneIdentity, ztunnelIdentity } from '../../../core/discovery/wire.js';
import type { MeshConfig, Workload } from '../../../core/model/types.js';
import { EncodedState } from '../../../control-plane/discovery/state.js';
import { makeFiles, manifestYaml, namespace, pod, startControlPlane, writeAtomic } from '../helpers.js';
import { until } from '../../helpers/until.js';

const base = '127.0.71';
const CP = `${base}.1`;
const files = await makeFiles(t.testdir(), [
  { name: 'node-a', address: `${base}.2` },
  { name: 'node-b', address: `${base}.3` },
]);
const appsFile = join(files.manifests, 'apps.yaml');
const waypointGateway = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: 'wp', namespace: 'default' },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
};
/** A pod the scheduler placed on node-a, before the kubelet wired it (no IP). */
const scheduled = (labels: Record<string, string> = { app: 'new' }) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'new-0', namespace: 'default', uid: '0e7c4c52-1111-4222-8333-444455556666', labels },
  spec: { nodeName: 'node-a', serviceAccountName: 'new', containers: [{ name: 'main', image: 'echo' }] },
  status: { phase: 'Pending' },
});
const write = (objects: object[]) => writeAtomic(appsFile, manifestYaml(objects));
const fixed = [namespace('default', { 'istio.io/dataplane-mode': 'ambient' }), namespace('later'), waypointGateway, pod('client', { node: 'node-a', ip: `${base}.10` })];
await write([...fixed, scheduled()]);
const cp = await startControlPlane(files, CP, { METRICS_PORT: '0', READINESS_PORT: '0', ADMIN_PORT: '0' });
t.teardown(() => cp.close());
const trust = new TrustAnchors(await readRootsFile(files.certFile));
const ca = await CertificateAuthority.load(files.certFile, files.keyFile, 'cluster.local');
async function certFor(id: string): Promise<WorkloadCertificate> {
  const { keyPem, csrPem } = await generateKeyAndCsr(id);
  const s = ca.sign(csrPem);
  return { identity: id, keyPem, certChainPem: s.certChainPem, rootsPem: ca.trustBundlePem, notBefore: s.notBefore, notAfter: s.notAfter };
}

interface Msg {
  type: string;
  resources?: Record<string, Record<string, unknown>[]>;
  upserts?: Record<string, Record<string, unknown>[]>;
  removes?: Record<string, string[]>;
}

/** A raw discovery client as ztunnel (node token) or as the waypoint `wp`. */
async function subscribe(proxy: 'ztunnel' | 'waypoint') {
  const cert = await certFor(proxy === 'ztunnel' ? ztunnelIdentity('cluster.local') : 'spiffe://cluster.local/ns/default/sa/wp');
  const s = http2.connect(`https://${CP}:${cp.addresses.server.port}`, controlPlaneTlsOptions({ trust, serverIdentity: controlPlaneIdentity('cluster.local'), clientCertificate: cert }));
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  const q = new URLSearchParams({ proxy, ...(proxy === 'ztunnel' ? { node: 'node-a' } : {}) });
  const req = s.request({ ':method': 'GET', ':path': `${DISCOVERY_PATH}?${q}`, ...(proxy === 'ztunnel' ? { authorization: `Bearer ${files.tokens['node-a']}` } : {}) });
  const messages: Msg[] = [];
  let status = 0;
  let buf = '';
  req.on('error', () => undefined);
  req.on('response', (h) => (status = Number(h[':status'])));
  req.setEncoding('utf8');
  req.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
      messages.push(JSON.parse(buf.slice(0, i)) as Msg);
      buf = buf.slice(i + 1);
    }
  });
  await until(`${proxy} snapshot (status ${status})`, () => messages.some((m) => m.type === 'snapshot'));
  return { messages, deltas: () => messages.filter((m) => m.type === 'delta') };
}

const zt = await subscribe('ztunnel');
const wp = await subscribe('waypoint');

t.test('the ztunnel view carries pending pods and namespaces; a waypoint gets neither', async (t) => {
  const snap = zt.messages.find((m) => m.type === 'snapshot')!.resources!;
  t.same(snap.pendingPods, [
    { namespace: 'default', name: 'new-0', uid: '0e7c4c52-1111-4222-8333-444455556666', node: 'node-a', labels: { app: 'new' }, protocol: 'HBONE' },
  ]);
  t.same(snap.namespaces, [{ name: 'default', dataplaneMode: 'ambient' }, { name: 'later' }]);
  t.notOk(snap.workloads!.some((w) => w.name === 'new-0'), 'not a workload before it has an IP');
  const wsnap = wp.messages.find((m) => m.type === 'snapshot')!.resources!;
  t.notOk('pendingPods' in wsnap, 'no pendingPods for a waypoint');
  t.notOk('namespaces' in wsnap, 'no namespaces for a waypoint');
  t.ok(wsnap.workloads!.some((w) => w.name === 'client'), 'the waypoint view still has the workloads');
});

t.test('a namespace labelled with no pod in it reaches the stream as a delta', async (t) => {
  const from = zt.deltas().length;
  await write([...fixed.filter((o) => o !== fixed[1]), namespace('later', { 'istio.io/dataplane-mode': 'ambient' }), scheduled()]);
  await until('namespace delta', () => zt.deltas().slice(from).some((m) => m.upserts?.namespaces?.some((n) => n.name === 'later')));
  const d = zt.deltas().slice(from).find((m) => m.upserts?.namespaces)!;
  t.same(d.upserts!.namespaces, [{ name: 'later', dataplaneMode: 'ambient' }], 'only the changed namespace');
  t.notOk(d.upserts!.pendingPods, 'the pending pod did not change: not resent');
});

t.test('the pod gets its IP: one delta removes it from pendingPods and adds the workload', async (t) => {
  const from = zt.deltas().length;
  const wpFrom = wp.deltas().length;
  const withIp = { ...scheduled(), status: { phase: 'Running', podIP: `${base}.20`, podIPs: [{ ip: `${base}.20` }] } };
  await write([...fixed.filter((o) => o !== fixed[1]), namespace('later', { 'istio.io/dataplane-mode': 'ambient' }), withIp]);
  await until('pending pod removed', () => zt.deltas().slice(from).some((m) => m.removes?.pendingPods));
  const d = zt.deltas().slice(from).find((m) => m.removes?.pendingPods)!;
  t.same(d.removes!.pendingPods, ['default/new-0']);
  t.match(d.upserts!.workloads, [{ uid: 'default/new-0', node: 'node-a', ips: [`${base}.20`], protocol: 'HBONE' }], 'the workload in the same delta');
  await until('waypoint delta', () => wp.deltas().length > wpFrom);
  for (const m of wp.deltas().slice(wpFrom)) {
    t.notOk(m.upserts?.pendingPods ?? m.removes?.pendingPods, 'a waypoint delta never names pending pods');
  }
});

t.test('EncodedState: the move is one version, with both kinds changed under the same key', async (t) => {
  const w: Workload = { uid: 'a/p', name: 'p', namespace: 'a', serviceAccount: 'p', trustDomain: 'cluster.local', node: 'n', ips: ['10.0.0.1'], protocol: 'HBONE', labels: {}, healthy: true };
  const cfg = (c: Partial<MeshConfig>): MeshConfig => ({ nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], ...c });
  const s = new EncodedState();
  s.update(cfg({ pendingPods: [{ namespace: 'a', name: 'p', node: 'n', labels: {}, protocol: 'HBONE' }], namespaces: [{ name: 'a' }] }));
  const v = s.version;
  const d = s.update(cfg({ workloads: [w], namespaces: [{ name: 'a' }] }));
  t.same(Object.fromEntries([...d!.changed].map(([k, keys]) => [k, [...keys]])), { workloads: ['a/p'], pendingPods: ['a/p'] });
  t.equal(s.update(cfg({ workloads: [w], namespaces: [{ name: 'a' }] })), undefined, 'unchanged: no new version');
  s.update(cfg({ pendingPods: [{ namespace: 'a', name: 'p', node: 'n', labels: {}, protocol: 'HBONE' }], namespaces: [{ name: 'a' }] }));
  t.equal(s.version, v, 'the node-agent kinds are part of the content digest');
});
