/**
 * The control plane with CONFIG_SOURCE=kubernetes against the kube-api-fixture (an in-memory API
 * server speaking list/watch/status/leases/TokenReview; a fixture, not a cluster): real CA, real
 * TLS/HTTP/2 discovery and CA clients, the node agent's desired-state source. Addresses: 127.0.16.x.
 */
import t from 'tap';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../../core/identity/csr.js';
import { CaRequestError } from '../../../core/discovery/ca-client.js';
import { connectControlPlane, type ControlPlaneClient } from '../../../core/discovery/client.js';
import { silentLogger } from '../../../core/telemetry/log.js';
import type { MeshConfig } from '../../../core/model/types.js';
import { loadConfig } from '../../../control-plane/config.js';
import { KubeConfigApi } from '../../../core/kube/api.js';
import { startClusterControlPlane, type ClusterControlPlane } from '../../../control-plane/kubernetes/cluster.js';
import { derivedObjects, WAYPOINT_DRAIN_SECONDS, WAYPOINT_TERMINATION_GRACE_SECONDS } from '../../../control-plane/kubernetes/waypoints.js';
import { DEFAULT_WAYPOINT_RESOURCES, type ContainerResources } from '../../../control-plane/kubernetes/resources.js';
import { ControlPlaneDesiredStateSource } from '../../../cni-plugin/agent/desired-control-plane.js';
import type { DesiredState } from '../../../cni-plugin/agent/desired-state.js';
import { KubeApiFixture, type FixtureRef } from '../../helpers/kube-api-fixture.js';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Service } from 'kubernetes-models/v1/Service';
import { until } from '../../helpers/until.js';
import { kubernetesModeEnv } from '../../helpers/cluster-control-plane.js';

const HOST = '127.0.16.1';
const dir = t.testdir();
const api = await KubeApiFixture.start({ host: HOST });
t.teardown(() => api.close());
const kubeconfig = join(dir, 'kubeconfig');
await api.writeKubeconfig(kubeconfig);
const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
await ca.save(dir);
const rootsPem = [ca.rootCertPem];
const WAYPOINT_RESOURCES = { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } };

// ---- the cluster as the fixture holds it ----

const ns = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const node = (name: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name } });
const pod = (name: string, o: { ns: string; node: string; ip: string; sa: string; labels?: Record<string, string> }) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: o.ns, labels: o.labels ?? { app: name } },
  spec: { nodeName: o.node, serviceAccountName: o.sa, containers: [{ name: 'main', image: 'app' }] },
  status: { phase: 'Running', podIP: o.ip, podIPs: [{ ip: o.ip }], conditions: [{ type: 'Ready', status: 'True' }] },
});
const sa = (name: string, namespace: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
const nsRef = (name: string): FixtureRef => ({ apiVersion: 'v1', kind: 'Namespace', name });

api.apply(ns('istio-system'));
api.apply(ns('apps'));
for (const n of ['node-1', 'node-2']) api.apply(node(n));
api.apply(sa('ztunnel', 'istio-system'));
api.apply(pod('ztunnel-a', { ns: 'istio-system', node: 'node-1', ip: '127.0.16.11', sa: 'ztunnel' }));
api.apply(pod('ztunnel-b', { ns: 'istio-system', node: 'node-2', ip: '127.0.16.12', sa: 'ztunnel' }));
api.apply(sa('web', 'apps'));
api.apply(sa('db', 'apps'));
api.apply(pod('web-1', { ns: 'apps', node: 'node-1', ip: '10.1.0.5', sa: 'web' }));
api.apply(pod('db-1', { ns: 'apps', node: 'node-2', ip: '10.2.0.5', sa: 'db' }));

/** A projected token bound to a pod, as the API server's TokenReview describes it. */
function boundToken(token: string, podName: string, namespace: string, serviceAccount: string): void {
  api.setBoundToken(token, { name: podName, namespace, serviceAccount });
}
const tokens = { node1: 'token-of-ztunnel-a-0123456789', node2: 'token-of-ztunnel-b-0123456789' };
boundToken(tokens.node1, 'ztunnel-a', 'istio-system', 'ztunnel');
boundToken(tokens.node2, 'ztunnel-b', 'istio-system', 'ztunnel');

function configFor(podName: string) {
  // Not the defaults: what the chart's waypoint.resources becomes reaches the Deployment.
  return loadConfig(kubernetesModeEnv({ kubeconfig, caDir: dir, host: HOST, podName, extra: { WAYPOINT_RESOURCES: JSON.stringify(WAYPOINT_RESOURCES) } }));
}

async function startReplica(podName: string): Promise<ClusterControlPlane> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const cluster = await startClusterControlPlane({
    config: configFor(podName),
    logger: silentLogger,
    api: new KubeConfigApi(kc),
    informerTimings: { initialBackoffMs: 20, maxBackoffMs: 100 },
    leaderTimings: { leaseDurationSeconds: 2, renewDeadlineMs: 1000, retryPeriodMs: 100 },
    statusDebounceMs: 20,
  });
  t.teardown(() => cluster.close());
  return cluster;
}

const cluster = await startReplica('cp-0');
const cpAddress = { host: HOST, port: cluster.controlPlane.addresses.server.port };

/** A node's client (what ztunnel and the node agent run), with its bearer token. */
function client(nodeName: string, token: string): ControlPlaneClient {
  const c = connectControlPlane({
    address: cpAddress,
    nodeName,
    trustDomain: 'cluster.local',
    token: async () => token,
    rootsPem,
    logger: silentLogger,
    discovery: { initialBackoffMs: 50, maxBackoffMs: 300, pingIntervalMs: 1000, pingTimeoutMs: 1000 },
    secrets: { initialBackoffMs: 50, maxBackoffMs: 300 },
  });
  t.teardown(() => {
    c.certificates.close();
    return c.configSource.close();
  });
  return c;
}

async function sign(c: ControlPlaneClient, identity: string): Promise<'signed' | string> {
  const { csrPem } = await generateKeyAndCsr(identity);
  try {
    await c.caClient.sign(csrPem, identity);
    return 'signed';
  } catch (err) {
    return err instanceof CaRequestError ? `${err.status}` : String(err);
  }
}

const node1 = client('node-1', tokens.node1);
const node2 = client('node-2', tokens.node2);
let mesh1: MeshConfig | undefined;
await node1.configSource.start((cfg) => (mesh1 = cfg));

t.test('nodes and their ztunnel addresses come from Node objects and the ztunnel pods', async (t) => {
  t.same(
    cluster.controlPlane.nodes.map((n) => `${n.name}=${n.ztunnelAddress}:${n.hbonePort}`),
    ['node-1=127.0.16.11:15008', 'node-2=127.0.16.12:15008'],
  );
});

t.test("a namespace labelled through the api enrols its pods in the node agent's desired state", async (t) => {
  const agentStream = client('node-1', tokens.node1);
  const agent = new ControlPlaneDesiredStateSource({ configSource: agentStream.configSource, nodeName: 'node-1', describe: 'test', logger: silentLogger });
  let desired: DesiredState | undefined;
  await agent.start((s) => (desired = s));
  t.teardown(() => agent.close());
  const web = () => desired?.pods.find((p) => p.name === 'web-1');
  t.equal(web()?.ambient, false, 'not in the mesh before the label');
  t.notOk(desired?.pods.some((p) => p.name === 'db-1'), "another node's pod is not this agent's");
  api.patch(nsRef('apps'), { metadata: { labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  await until('web-1 enrolled after the namespace label', () => web()?.ambient === true);
  t.same(web()?.ips, ['10.1.0.5']);
});

t.test("a pod added on node-1 reaches node-1's ztunnel, and only node-1's ztunnel may get its identity", async (t) => {
  api.apply(sa('pay', 'apps'));
  api.apply(pod('pay-1', { ns: 'apps', node: 'node-1', ip: '10.1.0.9', sa: 'pay' }));
  await until('pay-1 in node-1 ztunnel config', () => mesh1?.workloads.some((w) => w.name === 'pay-1' && w.protocol === 'HBONE') === true);
  const w = mesh1!.workloads.find((x) => x.name === 'pay-1')!;
  t.equal(w.node, 'node-1');
  const id = 'spiffe://cluster.local/ns/apps/sa/pay';
  t.equal(await sign(node1, id), 'signed', "node-1's ztunnel gets the identity of a pod on its node");
  t.equal(await sign(node2, id), '403', "node-2's ztunnel is refused it");
  t.equal(await sign(node2, 'spiffe://cluster.local/ns/apps/sa/db'), 'signed', 'node-2 gets its own pods');
});

t.test('a token the api server does not vouch for, or not bound to a pod, gets nothing', async (t) => {
  const reviews = () => api.requests.filter((r) => r.verb === 'tokenreview').length;
  const before = reviews();
  t.equal(await sign(client('node-1', 'a-token-nobody-issued-0000'), 'spiffe://cluster.local/ns/apps/sa/web'), '401');
  t.equal(await sign(client('node-1', 'a-token-nobody-issued-0000'), 'spiffe://cluster.local/ns/apps/sa/web'), '401');
  t.equal(reviews() - before, 1, 'a token the api server refused is refused again without asking (for a few seconds)');
  api.setTokenReview('legacy-secret-token-0000000', { authenticated: true, user: { username: 'system:serviceaccount:istio-system:ztunnel' } });
  t.equal(await sign(client('node-1', 'legacy-secret-token-0000000'), 'spiffe://cluster.local/ns/apps/sa/web'), '401', 'no bound pod: its node is unknown');
  api.setTokenReview('wrong-audience-token-000000', { authenticated: true, audiences: ['kubernetes'], user: { username: 'system:serviceaccount:istio-system:ztunnel', extra: { 'authentication.kubernetes.io/pod-name': ['ztunnel-a'] } } });
  t.equal(await sign(client('node-1', 'wrong-audience-token-000000'), 'spiffe://cluster.local/ns/apps/sa/web'), '401', 'a token for another audience');
  const p = api.get({ apiVersion: 'v1', kind: 'Pod', namespace: 'istio-system', name: 'ztunnel-a' }) as unknown as { metadata: { uid: string } };
  api.setTokenReview('audience-blind-token-000000', {
    authenticated: true,
    ignoresAudiences: true,
    user: { username: 'system:serviceaccount:istio-system:ztunnel', extra: { 'authentication.kubernetes.io/pod-name': ['ztunnel-a'], 'authentication.kubernetes.io/pod-uid': [p.metadata.uid] } },
  });
  t.equal(await sign(client('node-1', 'audience-blind-token-000000'), 'spiffe://cluster.local/ns/apps/sa/web'), '401', 'an authenticator that ignores audiences vouches for nothing (status.audiences must name ours)');
  const req = api.requests.filter((r) => r.verb === 'tokenreview');
  t.ok(req.length >= 4, 'each was asked of the api server');
});

t.test("a waypoint's own token obtains its own identity only", async (t) => {
  api.apply(sa('wp', 'apps'));
  api.apply({ ...pod('wp-0', { ns: 'apps', node: 'node-1', ip: '10.1.0.20', sa: 'wp', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }) });
  await until('the waypoint pod', () => mesh1?.workloads.some((w) => w.name === 'wp-0') === true);
  boundToken('token-of-waypoint-pod-00000', 'wp-0', 'apps', 'wp');
  const wp = client('node-1', 'token-of-waypoint-pod-00000');
  t.equal(await sign(wp, 'spiffe://cluster.local/ns/apps/sa/wp'), 'signed');
  t.equal(await sign(wp, 'spiffe://cluster.local/ns/apps/sa/web'), '403', "not another workload's on the same node");
});

t.test('a dropped watch resumes without a re-list; a 410 re-lists', async (t) => {
  const lists = () => api.count({ verb: 'list', resource: 'pods' });
  await until('the pod watch', () => api.openWatches({ resource: 'pods' }) >= 1);
  const before = lists();
  t.ok(api.dropWatches({ resource: 'pods' }) >= 1, 'dropped');
  api.apply(pod('late-1', { ns: 'apps', node: 'node-1', ip: '10.1.0.30', sa: 'web' }));
  await until('a pod created while the watch was down', () => mesh1?.workloads.some((w) => w.name === 'late-1') === true);
  t.equal(lists(), before, 'no list: the watch resumed from its resourceVersion');
  api.apply(sa('bump', 'apps')); // the pod informer's resourceVersion falls behind the compaction point
  api.compact();
  api.dropWatches({ resource: 'pods' });
  api.apply(pod('late-2', { ns: 'apps', node: 'node-1', ip: '10.1.0.31', sa: 'web' }));
  await until('a pod created after compaction', () => mesh1?.workloads.some((w) => w.name === 'late-2') === true);
  t.ok(lists() > before, 'the expired resourceVersion (410) made it list again');
});

const apRef: FixtureRef = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', namespace: 'apps', name: 'deny-web' };
type WithConditions = { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };

t.test('an invalid AuthorizationPolicy gets a status with the reason; fixing it flips it', async (t) => {
  api.apply({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-web', namespace: 'apps' }, spec: { action: 'MAYBE', selector: { matchLabels: { app: 'web-1' } }, rules: [{ from: [{ source: { namespaces: ['other'] } }] }] } });
  const cond = () => (api.get(apRef) as WithConditions | undefined)?.status?.conditions?.[0];
  await until('a rejected status', () => cond()?.status === 'False');
  t.match(cond(), { type: 'ZtunnelAccepted', status: 'False', reason: 'Invalid', message: /spec\.action/ });
  t.notOk(mesh1?.authorizationPolicies.some((p) => p.name === 'deny-web'), 'the invalid policy reaches no ztunnel');
  api.patch(apRef, { spec: { action: 'DENY' } });
  await until('an accepted status', () => cond()?.status === 'True');
  t.match(cond(), { type: 'ZtunnelAccepted', status: 'True', reason: 'Accepted' });
  await until('the fixed policy reaches ztunnel', () => mesh1?.authorizationPolicies.some((p) => p.name === 'deny-web') === true);
  // A pass may still be writing the accepted status: settle it before counting.
  await cluster.status.flush();
  const writes = api.count({ verb: 'patch', resource: 'authorizationpolicies' });
  const passes = cluster.status.stats.passes;
  await cluster.status.flush();
  await cluster.status.flush();
  t.ok(cluster.status.stats.passes >= passes + 1, 'the writer compared everything again');
  t.equal(api.count({ verb: 'patch', resource: 'authorizationpolicies' }), writes, 'an unchanged status is not written again');
});

t.test('HTTPRoute status: one parent entry per parentRef with Accepted and ResolvedRefs', async (t) => {
  api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'apps' }, spec: { clusterIP: '10.96.0.10', selector: { app: 'web-1' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
  const ref: FixtureRef = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', namespace: 'apps', name: 'web' };
  api.apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web', namespace: 'apps' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [{ name: 'missing', port: 80 }] }] },
  });
  type Parents = { status?: { parents?: Array<{ controllerName: string; parentRef: { name: string }; conditions: Array<{ type: string; status: string; reason: string; message: string }> }> } };
  const parents = () => (api.get(ref) as Parents | undefined)?.status?.parents;
  await until('the route status', () => parents()?.[0]?.conditions.some((c) => c.type === 'ResolvedRefs' && c.status === 'False') === true);
  t.match(parents(), [
    {
      controllerName: 'istio.io/mesh-controller',
      parentRef: { name: 'web' },
      conditions: [
        { type: 'Accepted', status: 'True' },
        { type: 'ResolvedRefs', status: 'False', reason: 'BackendNotFound', message: /backend apps\/missing not found/ },
      ],
    },
  ]);
});

t.test('HTTPRoute status: a backendRef of an unknown kind is accepted with ResolvedRefs=False InvalidKind (upstream HTTPRouteInvalidBackendRefUnknownKind)', async (t) => {
  const ref: FixtureRef = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', namespace: 'apps', name: 'unknown-kind' };
  api.apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'unknown-kind', namespace: 'apps' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      rules: [{ backendRefs: [{ group: 'unknownkind.example.com', kind: 'NonExistent', name: 'web-backend', port: 8080 }] }],
    },
  });
  type Parents = { status?: { parents?: Array<{ conditions: Array<{ type: string; status: string; reason: string; message: string }> }> } };
  const parents = () => (api.get(ref) as Parents | undefined)?.status?.parents;
  await until('the route status', () => parents()?.[0]?.conditions.some((c) => c.type === 'ResolvedRefs') === true);
  t.match(parents(), [
    {
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted' },
        { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind', message: /unknownkind\.example\.com\/NonExistent apps\/web-backend is not a Service/ },
      ],
    },
  ]);
});

t.test('HTTPRoute status: a backend in another namespace is RefNotPermitted until a ReferenceGrant there allows it, and again once the grant is gone', async (t) => {
  api.apply(ns('shop'));
  api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' }, spec: { clusterIP: '10.96.0.20', selector: { app: 'api' }, ports: [{ name: 'http', port: 80 }] } });
  const ref: FixtureRef = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', namespace: 'apps', name: 'cross-namespace' };
  api.apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'cross-namespace', namespace: 'apps' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [{ name: 'api', namespace: 'shop', port: 80 }] }] },
  });
  type Parents = { status?: { parents?: Array<{ conditions: Array<{ type: string; status: string; reason: string; message?: string }> }> } };
  const resolved = () => (api.get(ref) as Parents | undefined)?.status?.parents?.[0]?.conditions.find((c) => c.type === 'ResolvedRefs');
  await until('RefNotPermitted', () => resolved()?.reason === 'RefNotPermitted');
  t.match(resolved(), { status: 'False', reason: 'RefNotPermitted', message: /backend shop\/api is in another namespace and no ReferenceGrant in shop/ });
  // The source watches ReferenceGrants (v1beta1): a grant arriving recomputes the status.
  const grant: FixtureRef = { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', namespace: 'shop', name: 'apps-routes' };
  api.apply({
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    kind: 'ReferenceGrant',
    metadata: { name: 'apps-routes', namespace: 'shop' },
    spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'apps' }], to: [{ group: '', kind: 'Service', name: 'api' }] },
  });
  await until('ResolvedRefs=True once granted', () => resolved()?.status === 'True');
  t.match(resolved(), { status: 'True', reason: 'ResolvedRefs' });
  api.remove(grant);
  await until('RefNotPermitted once the grant is deleted', () => resolved()?.reason === 'RefNotPermitted');
  t.pass('revoked');
});

type ServiceStatus = { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime?: string }> } };
const serviceConditions = (name: string) => (api.get({ apiVersion: 'v1', kind: 'Service', namespace: 'apps', name }) as ServiceStatus | undefined)?.status?.conditions;

t.test('Service status: istio.io/WaypointBound False, WaypointIsNotReady, for a waypoint that does not exist; removed with the label', async (t) => {
  api.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'lonely', namespace: 'apps', labels: { 'istio.io/use-waypoint': 'no-such' } },
    spec: { clusterIP: '10.96.0.30', selector: { app: 'web-1' }, ports: [{ name: 'http', port: 80 }] },
    status: { conditions: [{ type: 'example.com/Other', status: 'True', reason: 'Kept', message: 'another writer', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
  });
  const bound = () => serviceConditions('lonely')?.find((c) => c.type === 'istio.io/WaypointBound');
  await until('WaypointBound on apps/lonely', () => bound() !== undefined);
  t.match(bound(), { status: 'False', reason: 'WaypointIsNotReady', message: 'waypoint "apps/no-such" is not ready' });
  t.match(serviceConditions('lonely'), [{ type: 'example.com/Other', reason: 'Kept' }, { type: 'istio.io/WaypointBound' }], "another writer's condition is kept");
  api.patch({ apiVersion: 'v1', kind: 'Service', namespace: 'apps', name: 'lonely' }, { metadata: { labels: { 'istio.io/use-waypoint': 'none' } } });
  await until('WaypointBound removed', () => bound() === undefined);
  t.match(serviceConditions('lonely'), [{ type: 'example.com/Other' }], 'only ours is removed');
  api.remove({ apiVersion: 'v1', kind: 'Service', namespace: 'apps', name: 'lonely' });
});

t.test('GRPCRoute status: written as an HTTPRoute\'s, one parent entry per parentRef; a bad method match is named', async (t) => {
  const ref = (name: string): FixtureRef => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', namespace: 'apps', name });
  const route = (name: string, method: Record<string, string>, backend: Record<string, unknown>) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'GRPCRoute',
    metadata: { name, namespace: 'apps' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ matches: [{ method }], backendRefs: [backend] }] },
  });
  api.apply(route('grpc-unknown-kind', { service: 'echo.Echo' }, { group: 'example.com', kind: 'Bucket', name: 'b' }));
  api.apply(route('grpc-ok', { service: 'echo.Echo', method: 'Say' }, { name: 'web', port: 80 }));
  api.apply(route('grpc-bad', { service: 'echo Echo' }, { name: 'web', port: 80 }));
  type Parents = { status?: { parents?: Array<{ controllerName: string; parentRef: { name: string }; conditions: Array<{ type: string; status: string; reason: string; message: string }> }> } };
  const parents = (name: string) => (api.get(ref(name)) as Parents | undefined)?.status?.parents;
  await until('the GRPCRoute statuses', () => ['grpc-unknown-kind', 'grpc-ok', 'grpc-bad'].every((n) => parents(n)?.[0]?.conditions.some((c) => c.type === 'ResolvedRefs') === true));
  t.match(parents('grpc-ok'), [
    {
      controllerName: 'istio.io/mesh-controller',
      parentRef: { name: 'web' },
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted' },
        { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs' },
      ],
    },
  ]);
  t.match(parents('grpc-unknown-kind'), [
    {
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted' },
        { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind', message: /example\.com\/Bucket apps\/b is not a Service/ },
      ],
    },
  ]);
  t.match(parents('grpc-bad'), [
    {
      conditions: [
        { type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: /spec\.rules\[0\]\.matches\[0\]\.method\.service: "echo Echo" is not a gRPC service name/ },
        { type: 'ResolvedRefs' },
      ],
    },
  ]);
});

t.test('TCPRoute status (v1, as the v1.6.1 CRD serves it): one parent entry per parentRef; InvalidKind for a backend that is not a Service', async (t) => {
  const ref = (name: string): FixtureRef => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'TCPRoute', namespace: 'apps', name });
  const route = (name: string, backend: Record<string, unknown>) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'TCPRoute',
    metadata: { name, namespace: 'apps' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [backend] }] },
  });
  api.apply(route('tcp-ok', { name: 'web', port: 80 }));
  api.apply(route('tcp-unknown-kind', { group: 'example.com', kind: 'Bucket', name: 'b' }));
  type Parents = { status?: { parents?: Array<{ controllerName: string; parentRef: { name: string }; conditions: Array<{ type: string; status: string; reason: string; message: string }> }> } };
  const parents = (name: string) => (api.get(ref(name)) as Parents | undefined)?.status?.parents;
  await until('the TCPRoute statuses', () => ['tcp-ok', 'tcp-unknown-kind'].every((n) => parents(n)?.[0]?.conditions.some((c) => c.type === 'ResolvedRefs') === true));
  t.match(parents('tcp-ok'), [
    { controllerName: 'istio.io/mesh-controller', parentRef: { name: 'web' }, conditions: [{ type: 'Accepted', status: 'True' }, { type: 'ResolvedRefs', status: 'True' }] },
  ]);
  t.match(parents('tcp-unknown-kind'), [{ conditions: [{ type: 'Accepted', status: 'True' }, { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind' }] }]);
});

t.test('a waypoint Gateway gets its ServiceAccount, Service, Deployment and root ConfigMap; Programmed follows readiness', async (t) => {
  const gwRef: FixtureRef = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', namespace: 'apps', name: 'waypoint' };
  api.apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'waypoint', namespace: 'apps', labels: { 'istio.io/waypoint-for': 'service' } },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  });
  const ref = (apiVersion: string, kind: string, name = 'waypoint'): FixtureRef => ({ apiVersion, kind, namespace: 'apps', name });
  const deployment = () => api.get(ref('apps/v1', 'Deployment')) as Record<string, any> | undefined;
  await until('the derived objects', () => deployment() !== undefined && api.get(ref('v1', 'ConfigMap', 'istio-ca-root-cert')) !== undefined);
  const gwUid = (api.get(gwRef) as { metadata: { uid: string } }).metadata.uid;
  for (const kind of ['ServiceAccount', 'Service', 'Deployment']) {
    const o = api.get(ref(kind === 'Deployment' ? 'apps/v1' : 'v1', kind)) as { metadata: { ownerReferences: unknown[]; labels: Record<string, string> } } | undefined;
    t.match(o?.metadata.ownerReferences, [{ kind: 'Gateway', name: 'waypoint', uid: gwUid, controller: true }], `${kind} is owned by the Gateway (deleted with it)`);
    t.equal(o?.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
  }
  const d = deployment()!;
  t.doesNotThrow(() => new Deployment(d as never).validate(), 'the Deployment validates against the Kubernetes schema');
  t.doesNotThrow(() => new Service(api.get(ref('v1', 'Service')) as never).validate(), 'the Service too');
  const c = d.spec.template.spec.containers[0];
  t.equal(c.image, 'registry.example/ambient-mesh:test');
  t.same(c.command, ['node', 'dist/waypoint/main.js']);
  const env = Object.fromEntries(c.env.map((e: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }) => [e.name, e.value ?? e.valueFrom?.fieldRef.fieldPath]));
  t.match(env, { WAYPOINT_NAME: 'waypoint', SERVICE_ACCOUNT: 'waypoint', POD_NAMESPACE: 'metadata.namespace', WAYPOINT_ADDRESS: 'status.podIP', CONTROL_PLANE_ADDRESS: 'istiod.istio-system.svc:15012' });
  t.equal(d.spec.template.metadata.labels['istio.io/dataplane-mode'], 'none', "the waypoint's own traffic is not captured");
  t.same(c.resources, WAYPOINT_RESOURCES, 'requests and limits from WAYPOINT_RESOURCES');
  t.same(c.readinessProbe.httpGet, { path: '/healthz/ready', port: 15021 }, 'ready on the waypoint readiness endpoint (503 while draining)');
  t.same(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } });
  t.match(d.spec.template.spec.securityContext, { runAsNonRoot: true, runAsUser: 1337 });
  t.equal(d.spec.template.spec.automountServiceAccountToken, false, 'no API token: its credential is the projected istio-token');
  const drain = Number(env['DRAIN_TIMEOUT_SECONDS']);
  t.ok(drain > 0 && d.spec.template.spec.terminationGracePeriodSeconds > drain, `grace period ${d.spec.template.spec.terminationGracePeriodSeconds}s > drain ${drain}s`);
  t.match((api.get(ref('v1', 'ConfigMap', 'istio-ca-root-cert')) as unknown as { data: Record<string, string> }).data['root-cert.pem'], /BEGIN CERTIFICATE/);

  type GwStatus = { status?: { addresses?: Array<{ value: string }>; conditions?: Array<{ type: string; status: string; reason: string }> } };
  const gw = () => api.get(gwRef) as GwStatus;
  const programmed = () => gw().status?.conditions?.find((x) => x.type === 'Programmed');
  await until('Programmed False while nothing is ready', () => programmed()?.reason === 'Pending');
  t.match(gw().status?.conditions, [{ type: 'Accepted', status: 'True' }, { type: 'Programmed', status: 'False' }]);
  // What the API server and the Deployment controller would do: a cluster IP, then a ready pod.
  api.patch(ref('v1', 'Service'), { spec: { clusterIP: '10.96.0.50' } });
  api.patch(ref('apps/v1', 'Deployment'), { status: { replicas: 1, readyReplicas: 1 } });
  await until('Programmed True once a replica is ready', () => programmed()?.status === 'True');
  t.same(gw().status?.addresses, [{ type: 'IPAddress', value: '10.96.0.50' }]);

  api.patch(nsRef('apps'), { metadata: { labels: { 'istio.io/use-waypoint': 'waypoint' } } });
  await until('services of the namespace go through the waypoint', () => mesh1?.services.find((x) => x.name === 'web')?.waypoint?.address === '10.96.0.50');
  // istiod's istio.io/WaypointBound on each Service the namespace label binds (ServiceInfo.GetConditions).
  const bound = () => serviceConditions('web')?.find((c) => c.type === 'istio.io/WaypointBound');
  await until('apps/web WaypointBound', () => bound()?.status === 'True');
  t.match(bound(), { status: 'True', reason: 'WaypointAccepted', message: 'Successfully attached to waypoint apps/waypoint' });

  const writes = cluster.waypoints.stats.writes;
  api.remove(ref('apps/v1', 'Deployment'));
  // The fixture stores the Deployment before the controller's write returns and is counted: wait
  // for both, not for the object alone.
  await until('a deleted Deployment is put back', () => deployment() !== undefined && cluster.waypoints.stats.writes > writes);
  t.ok(cluster.waypoints.stats.writes > writes, 'by the waypoint controller');
  api.patch(nsRef('apps'), { metadata: { labels: { 'istio.io/use-waypoint': null } } });
  await until('WaypointBound removed once the namespace no longer asks for a waypoint', () => bound() === undefined);
  t.pass('WaypointBound removed');
});

t.test('waypoint Deployment resources: the settings\' requests and limits, none when empty, and a change re-patches', async (t) => {
  const gw = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'apps', uid: 'u-1' }, spec: { gatewayClassName: 'istio-waypoint' } };
  const settings = { image: 'reg/mesh:1', controlPlaneAddress: 'istiod.istio-system.svc:15012', trustDomain: 'cluster.local', rootNamespace: 'istio-system', tokenAudience: 'istio-ca' };
  const deploymentOf = (resources?: ContainerResources) => derivedObjects(gw, { ...settings, ...(resources ? { resources } : {}) }).find((o) => o.kind === 'Deployment') as Record<string, any>;
  const containerOf = (d: Record<string, any>) => d['spec']['template']['spec']['containers'][0];
  t.same(containerOf(deploymentOf(DEFAULT_WAYPOINT_RESOURCES))['resources'], { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } }, "Istio's waypoint defaults");
  t.notOk('resources' in containerOf(deploymentOf({})), 'WAYPOINT_RESOURCES={} writes no resources');
  t.notOk('resources' in containerOf(deploymentOf()), 'nor do absent settings');
  const hash = (d: Record<string, any>) => d['metadata']['annotations']['ambient.mesh/derived-hash'];
  t.not(hash(deploymentOf(DEFAULT_WAYPOINT_RESOURCES)), hash(deploymentOf({ requests: { cpu: '200m' } })), 'other resources, another hash: existing waypoint Deployments are patched');
  t.doesNotThrow(() => new Deployment(deploymentOf(DEFAULT_WAYPOINT_RESOURCES) as never).validate(), 'validates with resources');
  const spec = deploymentOf(DEFAULT_WAYPOINT_RESOURCES)['spec']['template']['spec'];
  t.equal(spec['terminationGracePeriodSeconds'], WAYPOINT_TERMINATION_GRACE_SECONDS);
  t.ok(WAYPOINT_TERMINATION_GRACE_SECONDS > WAYPOINT_DRAIN_SECONDS, 'the grace period outlasts the drain');
});

t.test('two replicas: one leader writes status; when it leaves, the other takes over', async (t) => {
  // The leader's every tick reads the Lease and writes it back (renews); the waiting replica's
  // reads it only. Reads beyond writes are the second's attempts that found the lease held.
  const leaseReads = () => api.count({ verb: 'get', resource: 'leases' }) - api.count({ verb: 'update', resource: 'leases' });
  const readsBefore = leaseReads();
  const second = await startReplica('cp-1');
  await until('the first replica leads', () => cluster.elector.isLeader);
  await until('the second replica to find the lease held three times', () => leaseReads() >= readsBefore + 3);
  t.equal(second.elector.isLeader, false, 'the second waits while the lease is held');
  const lease = api.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: 'istio-system', name: 'ambient-control-plane' }) as unknown as { spec: { holderIdentity: string } };
  t.equal(lease.spec.holderIdentity, 'cp-0');
  const before = second.status.stats.writes;
  await cluster.close();
  await until('the second replica takes the released lease', () => second.elector.isLeader, { timeoutMs: 3000 });
  // The new leader compares everything once; statuses are already right, so it writes nothing.
  await until("the new leader's first pass", () => second.status.stats.passes > 0);
  t.equal(second.status.stats.writes, before, 'nothing to rewrite');
  api.patch(apRef, { spec: { action: 'BOGUS' } });
  const cond = () => (api.get(apRef) as WithConditions | undefined)?.status?.conditions?.[0];
  await until('the new leader writes the rejection', () => cond()?.status === 'False' && second.status.stats.writes > before);
  t.ok(second.status.stats.writes > before, 'the new leader wrote it');

  // A hung API server: the leader must stop acting as one within the renew deadline (1 s here),
  // before another replica could take the 2 s lease, although its renew never answers.
  api.hangNext({ verb: 'get', resource: 'leases', times: 1000 });
  const hungAt = Date.now();
  await until('the leader steps down while its renew hangs', () => !second.elector.isLeader, { timeoutMs: 3000 });
  t.ok(Date.now() - hungAt < 2000, `stepped down after ${Date.now() - hungAt} ms, inside the 2 s lease`);
});
