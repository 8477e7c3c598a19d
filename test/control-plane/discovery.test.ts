import t from 'tap';
import http2 from 'node:http2';
import { join } from 'node:path';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../core/identity/csr.js';
import { controlPlaneTlsOptions } from '../../core/identity/control-plane-tls.js';
import { TrustAnchors } from '../../core/identity/trust-anchors.js';
import type { WorkloadCertificate } from '../../core/identity/certificate.js';
import { readRootsFile } from '../../core/discovery/client.js';
import { DISCOVERY_PATH, controlPlaneIdentity, ztunnelIdentity } from '../../core/discovery/wire.js';
import { makeFiles, manifestYaml, namespace, pod, startControlPlane, writeAtomic } from './helpers.js';
import { until } from '../helpers/until.js';

// The discovery protocol seen by a raw client: snapshots, deltas, resume, per-node policies,
// slow consumers. Control plane at 127.0.6.101 (this file's addresses: 127.0.6.100-199).
const base = '127.0.6';
const CP = `${base}.101`;
const files = await makeFiles(t.testdir(), [
  { name: 'node-a', address: `${base}.102` },
  { name: 'node-b', address: `${base}.103` },
]);
const appsFile = join(files.manifests, 'apps.yaml');
// Enough pods that a snapshot (~250 KiB) overflows a non-reading client's flow-control window.
const many = Array.from({ length: 1000 }, (_, i) => pod(`filler-${i}`, { ns: 'bulk', node: i % 2 ? 'node-a' : 'node-b', ip: `10.77.${i >> 8}.${i & 255}`, labels: { app: 'filler', idx: String(i) } }));
await writeAtomic(
  appsFile,
  manifestYaml([
    namespace('default', { 'istio.io/dataplane-mode': 'ambient' }),
    namespace('bulk'),
    pod('client', { node: 'node-a', ip: `${base}.110` }),
    pod('server', { node: 'node-b', ip: `${base}.120` }),
    ...many,
  ]),
);
const cp = await startControlPlane(files, CP, { METRICS_PORT: '0', READINESS_PORT: '0', ADMIN_PORT: '0', SLOW_CLIENT_TIMEOUT_SECONDS: '1' });
t.teardown(() => cp.close());
const trust = new TrustAnchors(await readRootsFile(files.certFile));
const ca = await CertificateAuthority.load(files.certFile, files.keyFile, 'cluster.local');
async function certFor(id: string): Promise<WorkloadCertificate> {
  const { keyPem, csrPem } = await generateKeyAndCsr(id);
  const s = ca.sign(csrPem);
  return { identity: id, keyPem, certChainPem: s.certChainPem, rootsPem: ca.trustBundlePem, notBefore: s.notBefore, notAfter: s.notAfter };
}
const ztCert = await certFor(ztunnelIdentity('cluster.local'));

interface Msg {
  type: string;
  version?: string;
  from?: string;
  resources?: Record<string, { name?: string; uid?: string }[]>;
  upserts?: Record<string, { name?: string; uid?: string }[]>;
  removes?: Record<string, string[]>;
  replace?: string[];
}

/** A raw discovery client collecting messages. `read: false` never reads (a stuck proxy). */
function subscribe(opts: { node: string; since?: string; read?: boolean }) {
  const s = http2.connect(`https://${CP}:${cp.addresses.server.port}`, controlPlaneTlsOptions({ trust, serverIdentity: controlPlaneIdentity('cluster.local'), clientCertificate: ztCert }));
  s.on('error', () => undefined);
  const q = new URLSearchParams({ node: opts.node, ...(opts.since ? { since: opts.since } : {}) });
  const req = s.request({ ':method': 'GET', ':path': `${DISCOVERY_PATH}?${q}`, authorization: `Bearer ${files.tokens[opts.node]}` });
  const messages: Msg[] = [];
  let buf = '';
  let ended = false;
  req.on('error', () => undefined);
  req.on('close', () => (ended = true));
  if (opts.read === false) {
    req.pause();
  } else {
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
        messages.push(JSON.parse(buf.slice(0, i)) as Msg);
        buf = buf.slice(i + 1);
      }
    });
  }
  return {
    messages,
    ended: () => ended,
    of: (type: string) => messages.filter((m) => m.type === type),
    close: () => s.destroy(),
  };
}

const policy = (name: string, app: string) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'default' },
  spec: { selector: { matchLabels: { app } }, action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }] }] },
});

t.test('a new client gets the trust bundle, then a snapshot; each node only the policies for its workloads', async (t) => {
  await writeAtomic(join(files.manifests, 'policies.yaml'), manifestYaml([policy('for-server', 'server'), policy('for-client', 'client')]));
  await until('policies loaded', () => cp.state.entries('authorizationPolicies').size === 2);
  const a = subscribe({ node: 'node-a' });
  const b = subscribe({ node: 'node-b' });
  t.teardown(() => (a.close(), b.close()));
  await until('snapshots', () => a.of('snapshot').length === 1 && b.of('snapshot').length === 1);
  t.equal(a.messages[0]!.type, 'trustBundle', 'the bundle comes first');
  const snap = a.of('snapshot')[0]!;
  t.equal(snap.version, cp.state.version);
  t.equal(snap.resources!.workloads!.length, 1002, 'every workload');
  t.same(snap.resources!.authorizationPolicies!.map((p) => p.name), ['for-client'], 'node-a: only the policy for its client pod');
  t.same(b.of('snapshot')[0]!.resources!.authorizationPolicies!.map((p) => p.name), ['for-server'], 'node-b: only the policy for its server pod');

  // Moving the client pod to node-b moves its policy along, as a delta.
  await writeAtomic(
    appsFile,
    manifestYaml([
      namespace('default', { 'istio.io/dataplane-mode': 'ambient' }),
      namespace('bulk'),
      pod('client', { node: 'node-b', ip: `${base}.110` }),
      pod('server', { node: 'node-b', ip: `${base}.120` }),
      ...many,
    ]),
  );
  await until('deltas', () => a.of('delta').length >= 1 && b.of('delta').length >= 1);
  const da = a.of('delta')[0]!;
  t.equal(da.from, snap.version, 'the delta starts from the version the client holds');
  t.same(da.upserts!.workloads!.map((w) => w.uid), ['default/client'], 'only the changed workload is sent');
  t.same(da.removes!.authorizationPolicies, ['default/for-client'], 'node-a loses the policy');
  t.same(b.of('delta')[0]!.upserts!.authorizationPolicies!.map((p) => p.name), ['for-client'], 'node-b gains it');
});

t.test('a reconnecting client resumes: nothing when current, a delta from a known version, a snapshot otherwise', async (t) => {
  const first = subscribe({ node: 'node-a' });
  await until('snapshot', () => first.of('snapshot').length === 1);
  const v1 = first.of('snapshot')[0]!.version!;
  first.close();

  const same = subscribe({ node: 'node-a', since: v1 });
  t.teardown(() => same.close());
  await until('resume', () => same.of('resume').length === 1);
  t.equal(same.of('snapshot').length, 0, 'no snapshot when the version is current');

  await writeAtomic(join(files.manifests, 'extra.yaml'), manifestYaml([pod('extra-1', { node: 'node-a', ip: `${base}.130` })]));
  await until('first change', () => same.of('delta').length === 1);
  await writeAtomic(join(files.manifests, 'extra.yaml'), manifestYaml([pod('extra-2', { node: 'node-a', ip: `${base}.131` })]));
  await until('second change', () => same.of('delta').length === 2);

  const behind = subscribe({ node: 'node-a', since: v1 });
  t.teardown(() => behind.close());
  await until('catch-up delta', () => behind.of('delta').length === 1);
  const d = behind.of('delta')[0]!;
  t.equal(behind.of('snapshot').length, 0, 'no snapshot for a version in the history');
  t.equal(d.from, v1);
  t.equal(d.version, cp.state.version);
  t.same(d.upserts!.workloads!.map((w) => w.uid), ['default/extra-2'], 'the net change: extra-2 exists');
  t.same(d.removes!.workloads, ['default/extra-1'], 'and extra-1 is gone');
  t.same(d.replace, ['authorizationPolicies'], 'node-scoped policies are sent whole after a resume');

  const stranger = subscribe({ node: 'node-a', since: 'f'.repeat(32) });
  t.teardown(() => stranger.close());
  await until('snapshot for an unknown version', () => stranger.of('snapshot').length === 1);
});

t.test('a client that stops reading is dropped; the others keep getting changes', async (t) => {
  const stuck = subscribe({ node: 'node-b', read: false });
  const live = subscribe({ node: 'node-a' });
  t.teardown(() => (stuck.close(), live.close()));
  await until('live snapshot', () => live.of('snapshot').length === 1);
  await until('the stuck client to block', () => cp.hub.list().some((s) => s.blocked));
  // Changes keep flowing to the live client while the stuck one only accumulates keys.
  for (let i = 0; i < 5; i++) {
    await writeAtomic(join(files.manifests, 'churn.yaml'), manifestYaml([pod(`churn-${i}`, { node: 'node-a', ip: `${base}.${140 + i}` })]));
    await until(`delta ${i}`, () => live.of('delta').length === i + 1);
  }
  const stuckInfo = cp.hub.list().find((s) => s.blocked);
  t.ok(stuckInfo === undefined || stuckInfo.pendingKeys <= 10, 'a blocked client holds changed keys, not queued messages');
  await until('the stuck client to be dropped', () => stuck.ended(), { timeoutMs: 5000 });
  const dropped = await cp.metrics.registry.getSingleMetric('control_plane_discovery_dropped_total')!.get();
  t.equal(dropped.values.find((v) => v.labels.reason === 'slow')?.value, 1, 'counted as a slow consumer');
  t.equal(cp.hub.list().length, 1, 'only the live client remains');
});
