/**
 * The node agent's desired state from the control plane (desired-control-plane.ts): pods without
 * an IP yet (`pendingPods`) and the namespaces' dataplane mode (`namespaces`) from the discovery
 * stream. First `desiredFromMesh` alone, then the whole chain: the kube-api fixture (an in-memory
 * API server, not a cluster) → the control plane with CONFIG_SOURCE=kubernetes → real TLS/HTTP/2
 * discovery → `ControlPlaneDesiredStateSource` → the reconciler's CNI ADD wait (kernel:
 * FakeRedirector; cgroups: directories of a test dir). Addresses: 127.0.72.x.
 */
import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { connectControlPlane } from '../../../core/discovery/client.js';
import { silentLogger } from '../../../core/telemetry/log.js';
import type { MeshConfig, Workload } from '../../../core/model/types.js';
import { loadConfig } from '../../../control-plane/config.js';
import { KubeConfigApi } from '../../../core/kube/api.js';
import { startClusterControlPlane } from '../../../control-plane/kubernetes/cluster.js';
import { ControlPlaneDesiredStateSource, desiredFromMesh } from '../../../cni-plugin/agent/desired-control-plane.js';
import type { DesiredState } from '../../../cni-plugin/agent/desired-state.js';
import { Reconciler } from '../../../cni-plugin/agent/reconciler.js';
import { StateStore } from '../../../cni-plugin/agent/store.js';
import type { PodRequest } from '../../../cni-plugin/api.js';
import { KubeApiFixture, type FixtureRef } from '../../helpers/kube-api-fixture.js';
import { until } from '../../helpers/until.js';
import { kubernetesModeEnv } from '../../helpers/cluster-control-plane.js';
import { FakeRedirector, reconcilerInputs } from '../fakes.js';

const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };
const WAYPOINT_LABELS = { 'gateway.istio.io/managed': 'istio.io-mesh-controller', 'gateway.networking.k8s.io/gateway-name': 'wp' };

// ---- desiredFromMesh ----

const workload = (name: string, o: { ns?: string; node?: string; protocol?: 'HBONE' | 'TCP'; labels?: Record<string, string> } = {}): Workload => ({
  uid: `${o.ns ?? 'apps'}/${name}`,
  name,
  namespace: o.ns ?? 'apps',
  serviceAccount: 'default',
  trustDomain: 'cluster.local',
  node: o.node ?? 'node-a',
  ips: ['10.1.0.5'],
  protocol: o.protocol ?? 'HBONE',
  labels: o.labels ?? { app: name },
  healthy: true,
});
const mesh = (c: Partial<MeshConfig>): MeshConfig => ({ nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], ...c });

t.test("desiredFromMesh: this node's pending pods are desired pods with their uid and the control plane's verdict", async (t) => {
  const s = desiredFromMesh(
    mesh({
      pendingPods: [
        { namespace: 'apps', name: 'web-1', uid: 'uid-web-1', node: 'node-a', labels: { app: 'web' }, protocol: 'HBONE' },
        { namespace: 'apps', name: 'opted-out', node: 'node-a', labels: { 'istio.io/dataplane-mode': 'none' }, protocol: 'TCP' },
        { namespace: 'apps', name: 'far', uid: 'uid-far', node: 'node-b', labels: {}, protocol: 'HBONE' },
      ],
    }),
    'node-a',
  );
  t.same(
    s.pods.map((p) => ({ ...p })),
    [
      { namespace: 'apps', name: 'web-1', uid: 'uid-web-1', node: 'node-a', labels: { app: 'web' }, ambient: true, ips: [] },
      { namespace: 'apps', name: 'opted-out', node: 'node-a', labels: { 'istio.io/dataplane-mode': 'none' }, ambient: false, ips: [] },
    ],
    "another node's pending pod is not this agent's",
  );
});

t.test('desiredFromMesh: a waypoint pod is never ambient, pending or running, whatever the protocol says', async (t) => {
  const s = desiredFromMesh(
    mesh({
      workloads: [workload('wp-0', { labels: WAYPOINT_LABELS })],
      pendingPods: [{ namespace: 'apps', name: 'wp-1', node: 'node-a', labels: WAYPOINT_LABELS, protocol: 'HBONE' }],
    }),
    'node-a',
  );
  t.same(s.pods.map((p) => [p.name, p.ambient]), [['wp-0', false], ['wp-1', false]]);
});

t.test('desiredFromMesh: a pod both pending and a workload (a moment of overlap) is listed once, as the workload', async (t) => {
  const s = desiredFromMesh(mesh({ workloads: [workload('web-0')], pendingPods: [{ namespace: 'apps', name: 'web-0', uid: 'u', node: 'node-a', labels: {}, protocol: 'HBONE' }] }), 'node-a');
  t.same(s.pods.map((p) => [p.name, p.ips]), [['web-0', ['10.1.0.5']]]);
});

t.test('desiredFromMesh: namespaces come from the stream when it carries them, else they are inferred from workloads', async (t) => {
  const workloads = [workload('web-0', { ns: 'apps' }), workload('db-0', { ns: 'data', protocol: 'TCP' })];
  const carried = desiredFromMesh(mesh({ workloads, namespaces: [{ name: 'apps', dataplaneMode: 'ambient' }, { name: 'data' }, { name: 'fresh', dataplaneMode: 'ambient' }, { name: 'off', dataplaneMode: 'none' }] }), 'node-a');
  t.same(
    [...carried.namespaces.values()].map((n) => ({ ...n })),
    [
      { name: 'apps', labels: AMBIENT },
      { name: 'data', labels: {} },
      { name: 'fresh', labels: AMBIENT },
      { name: 'off', labels: { 'istio.io/dataplane-mode': 'none' } },
    ],
    'a namespace labelled ambient with no workload yet is known (fresh)',
  );
  const inferred = desiredFromMesh(mesh({ workloads }), 'node-a');
  t.same([...inferred.namespaces.values()].map((n) => ({ ...n })), [{ name: 'apps', labels: AMBIENT }, { name: 'data', labels: {} }], 'without them: inferred as before');
  t.notOk(inferred.namespaces.has('fresh'));
});

// ---- the whole chain ----

const HOST = '127.0.72.1';
const dir = t.testdir();
const api = await KubeApiFixture.start({ host: HOST });
t.teardown(() => api.close());
const kubeconfig = join(dir, 'kubeconfig');
await api.writeKubeconfig(kubeconfig);
const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
await ca.save(dir);

const ns = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const nsRef = (name: string): FixtureRef => ({ apiVersion: 'v1', kind: 'Namespace', name });
const podRef = (namespace: string, name: string): FixtureRef => ({ apiVersion: 'v1', kind: 'Pod', namespace, name });
/** A pod as the scheduler leaves it: a node, no IP (the kubelet has not run CNI ADD yet). */
const scheduledPod = (name: string, namespace: string, uid: string, labels: Record<string, string> = { app: name }) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, uid, labels },
  spec: { nodeName: 'node-1', serviceAccountName: 'default', containers: [{ name: 'main', image: 'app' }] },
  status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }] },
});
api.apply(ns('istio-system'));
api.apply(ns('apps', AMBIENT));
api.apply(ns('fresh'));
api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } });
api.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ztunnel', namespace: 'istio-system' } });
api.apply({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'ztunnel-a', namespace: 'istio-system', labels: { app: 'ztunnel' } },
  spec: { nodeName: 'node-1', serviceAccountName: 'ztunnel', containers: [{ name: 'main', image: 'ztunnel' }] },
  status: { phase: 'Running', podIP: '127.0.72.11', podIPs: [{ ip: '127.0.72.11' }], conditions: [{ type: 'Ready', status: 'True' }] },
});
const TOKEN = 'token-of-ztunnel-a-node-agent-test';
api.setBoundToken(TOKEN, { name: 'ztunnel-a', namespace: 'istio-system', serviceAccount: 'ztunnel' });

const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const cluster = await startClusterControlPlane({
  config: loadConfig(kubernetesModeEnv({ kubeconfig, caDir: dir, host: HOST, podName: 'cp-0' })),
  logger: silentLogger,
  api: new KubeConfigApi(kc),
  informerTimings: { initialBackoffMs: 20, maxBackoffMs: 100 },
  leaderTimings: { leaseDurationSeconds: 2, renewDeadlineMs: 1000, retryPeriodMs: 100 },
  statusDebounceMs: 20,
});
t.teardown(() => cluster.close());

// The agent's stream, wired as cni-plugin/agent/main.ts wires it (ztunnel identity, node token).
const client = connectControlPlane({
  address: { host: HOST, port: cluster.controlPlane.addresses.server.port },
  nodeName: 'node-1',
  trustDomain: 'cluster.local',
  token: async () => TOKEN,
  rootsPem: [ca.rootCertPem],
  logger: silentLogger,
  discovery: { initialBackoffMs: 50, maxBackoffMs: 300, pingIntervalMs: 1000, pingTimeoutMs: 1000 },
  secrets: { initialBackoffMs: 50, maxBackoffMs: 300 },
});
t.teardown(() => client.certificates.close());
const source = new ControlPlaneDesiredStateSource({ configSource: client.configSource, nodeName: 'node-1', describe: 'test', logger: silentLogger });
t.teardown(() => source.close());

const root = t.testdir();
await mkdir(join(root, 'ztunnel'));
const kernel = new FakeRedirector();
// A bound no test reaches: an ADD the stream fails to end would hang (and fail), never pass.
const LONG = 600_000;
const reconciler = new Reconciler(
  reconcilerInputs(root, {
    nodeName: 'node-1',
    redirector: kernel,
    store: new StateStore(join(root, 'state.json')),
    redirectConfig: { ztunnelIp: '127.0.72.11', outboundPort: 15001, nodeIps: ['127.0.72.11'], excludeCidrs: [], excludePorts: [] },
    desiredSource: source.describe,
    addWaitMs: LONG,
  }),
);
t.teardown(() => reconciler.close());
await reconciler.restore();
await reconciler.load();
let desired: DesiredState | undefined;
await source.start((s) => {
  desired = s;
  reconciler.setDesired(s);
});
// The agent is ready (ADDs are served) once its first reconcile finished.
await reconciler.requestResync();

const sandbox = async (namespace: string, name: string, uid: string) => {
  await mkdir(join(root, `pod-${namespace}-${name}`), { recursive: true });
  const req: PodRequest = { containerId: `c-${namespace}-${name}`, podNamespace: namespace, podName: name, podUid: uid, ips: ['10.1.0.7'] };
  return { req, cgroup: join(root, `pod-${namespace}-${name}`) };
};

t.test('every namespace reaches the agent with its label, including one labelled ambient that has no pod yet', async (t) => {
  t.same(desired?.namespaces.get('apps')?.labels, AMBIENT);
  t.same(desired?.namespaces.get('fresh')?.labels, {}, 'known, not ambient');
  api.patch(nsRef('fresh'), { metadata: { labels: AMBIENT } });
  await until('fresh labelled in the desired state', () => desired?.namespaces.get('fresh')?.labels['istio.io/dataplane-mode'] === 'ambient');
  t.notOk(desired?.pods.some((p) => p.namespace === 'fresh'), 'with no pod in it');
});

t.test('an ADD that comes before the control plane saw its pod ends when the pod is scheduled, not when it has an IP; then the pod becomes a workload', async (t) => {
  const uid = '7d1f5a8e-aaaa-4bbb-8ccc-000000000001';
  const { req, cgroup } = await sandbox('fresh', 'web-0', uid);
  const adding = reconciler.add(req);
  t.same(reconciler.state().desired.waitingAdds, ['fresh/web-0'], 'waits: nothing lists the pod');
  api.apply(scheduledPod('web-0', 'fresh', uid));
  const res = await adding;
  t.match(res, { mode: 'enrolled', reason: /^the control plane meshes it \(HBONE\)/, pod: { addWait: { outcome: 'listed' } } });
  t.notMatch(res.reason, /decided without/);
  t.ok(kernel.attached.get(cgroup)?.size, 'attached at ADD');
  t.match(desired?.pods.find((p) => p.name === 'web-0'), { uid, ambient: true, ips: [] }, 'listed as a pending pod, with its uid');
  api.patch(podRef('fresh', 'web-0'), { status: { phase: 'Running', podIP: '10.1.0.7', podIPs: [{ ip: '10.1.0.7' }], conditions: [{ type: 'Ready', status: 'True' }] } });
  await until('web-0 a workload', () => desired?.pods.find((p) => p.name === 'web-0')?.ips[0] === '10.1.0.7');
  t.equal(desired!.pods.filter((p) => p.name === 'web-0').length, 1, 'listed once');
  await reconciler.requestResync();
  t.ok(kernel.attached.get(cgroup)?.size, 'still enrolled after the move');
});

t.test('a waypoint pod scheduled in an ambient namespace is listed as not ambient, and its ADD is exempt', async (t) => {
  const uid = '7d1f5a8e-aaaa-4bbb-8ccc-000000000002';
  const { req, cgroup } = await sandbox('apps', 'wp-0', uid);
  const adding = reconciler.add(req);
  api.apply(scheduledPod('wp-0', 'apps', uid, WAYPOINT_LABELS));
  t.match(await adding, { mode: 'exempt', reason: /a waypoint .* is never enrolled/, pod: { addWait: { outcome: 'listed' } } });
  t.match(desired?.pods.find((p) => p.name === 'wp-0'), { uid, ambient: false });
  t.equal(kernel.attached.get(cgroup), undefined, 'nothing attached');
});

t.test('a pending pod of another uid (the previous pod of that name) does not end the wait', async (t) => {
  const { req } = await sandbox('apps', 'job-0', 'uid-of-the-new-pod');
  api.apply(scheduledPod('job-0', 'apps', 'uid-of-the-old-pod'));
  await until('old job-0 listed', () => desired?.pods.some((p) => p.name === 'job-0') === true);
  const adding = reconciler.add(req);
  t.same(reconciler.state().desired.waitingAdds, ['apps/job-0'], 'the listed uid is not this sandbox pod');
  api.remove(podRef('apps', 'job-0'));
  api.apply(scheduledPod('job-0', 'apps', 'uid-of-the-new-pod'));
  t.match(await adding, { mode: 'enrolled', pod: { addWait: { outcome: 'listed' } } });
});
