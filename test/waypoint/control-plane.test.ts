import t from 'tap';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { closeServer } from '../helpers/net.js';
import { waitForStatus } from '../helpers/proc.js';
import { makeFiles, manifestYaml, namespace, pod, serviceAccount, startControlPlane, startWaypointProcess, startZtunnel, writeAtomic } from '../control-plane/helpers.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request } from './fixture.js';
import { loadConfig } from '../../waypoint/config.js';

// A waypoint that knows nothing but the control plane's address, its node's token and its
// Gateway's name: its certificate comes from the control plane's CA, its routes from discovery.
// Loopback addresses of this file: 127.0.14.1 = control plane, .2 = ztunnel node-a, .3 = node-b,
// .10 = client pod (node-a), .21/.22 = backend v1/v2 (node-b), .30 = waypoint pod (node-b),
// .100 = service backend, .101/.102 = backend-v1/-v2, .110 = the waypoint's Service.
const base = '127.0.14';
const NODES = [
  { name: 'node-a', address: `${base}.2` },
  { name: 'node-b', address: `${base}.3` },
];
const CLIENT = `${base}.10`;
const WAYPOINT_IP = `${base}.30`;
const WAYPOINT_ID = 'spiffe://cluster.local/ns/apps/sa/waypoint';

const svc = (name: string, vip: string, selector: Record<string, string>, ports = [{ name: 'http', port: 80, targetPort: 8080 }]) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'apps' },
  spec: { selector, clusterIP: vip, ports },
});

t.test('config: control-plane mode needs the namespace and takes the service account from the Gateway name', async (t) => {
  const env = { CONTROL_PLANE_ADDRESS: '10.0.0.1:15012', NODE_TOKEN_FILE: '/t', CONTROL_PLANE_ROOT_CERT_FILE: '/r', NODE_NAME: 'n1', WAYPOINT_ADDRESS: '10.0.0.9' };
  const cfg = loadConfig({ ...env, POD_NAMESPACE: 'apps', WAYPOINT_NAME: 'wp' });
  t.equal(cfg.controlPlane?.proxyIdentity, 'spiffe://cluster.local/ns/apps/sa/wp');
  t.equal(cfg.localConfigFile, '', 'no config file in control-plane mode');
  t.equal(loadConfig({ ...env, POD_NAMESPACE: 'apps', WAYPOINT_NAME: 'wp', SERVICE_ACCOUNT: 'custom' }).controlPlane?.proxyIdentity, 'spiffe://cluster.local/ns/apps/sa/custom');
  t.throws(() => loadConfig(env), /POD_NAMESPACE is required[\s\S]*SERVICE_ACCOUNT or WAYPOINT_NAME is required/, 'every missing variable named');
  t.throws(() => loadConfig({ ...env, POD_NAMESPACE: 'apps', WAYPOINT_NAME: 'wp', LOCAL_CONFIG_FILE: '/x.yaml' }), /LOCAL_CONFIG_FILE is for standalone mode/, 'modes do not mix');
  t.throws(() => loadConfig({ WAYPOINT_ADDRESS: '10.0.0.9' }), /LOCAL_CONFIG_FILE is required \(or set CONTROL_PLANE_ADDRESS/, 'standalone needs its files');
});

const files = await makeFiles(t.testdir(), NODES);
await writeAtomic(
  join(files.manifests, 'apps.yaml'),
  manifestYaml([
    namespace('apps', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' }),
    ...['client', 'backend', 'waypoint'].map((n) => serviceAccount(n, 'apps')),
    pod('client', { ns: 'apps', node: 'node-a', ip: CLIENT }),
    pod('backend-v1', { ns: 'apps', node: 'node-b', ip: `${base}.21`, sa: 'backend', labels: { app: 'backend', version: 'v1' } }),
    pod('backend-v2', { ns: 'apps', node: 'node-b', ip: `${base}.22`, sa: 'backend', labels: { app: 'backend', version: 'v2' } }),
    // What Istio's gateway controller would create for the Gateway: its pod and its Service.
    pod('waypoint-0', { ns: 'apps', node: 'node-b', ip: WAYPOINT_IP, sa: 'waypoint', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'istio.io/dataplane-mode': 'none' } }),
    svc('waypoint', `${base}.110`, { 'gateway.networking.k8s.io/gateway-name': 'waypoint' }, [{ name: 'mesh', port: 15008, targetPort: 15008 }]),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'waypoint', namespace: 'apps', labels: { 'istio.io/waypoint-for': 'service' } },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    },
    svc('backend', `${base}.100`, { app: 'backend' }),
    svc('backend-v1', `${base}.101`, { app: 'backend', version: 'v1' }),
    svc('backend-v2', `${base}.102`, { app: 'backend', version: 'v2' }),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'backend', namespace: 'apps' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'backend', port: 80 }],
        rules: [
          {
            matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
            filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-routed', value: 'canary' }] } }],
            backendRefs: [{ name: 'backend-v2', port: 80 }],
          },
          { backendRefs: [{ name: 'backend-v1', port: 80 }] },
        ],
      },
    },
  ]),
);
const cp = await startControlPlane(files, `${base}.1`);
const cpAddress = `${base}.1:${cp.addresses.server.port}`;
const v1 = await backend(`${base}.21`, 8080, 'v1');
const v2 = await backend(`${base}.22`, 8080, 'v2');
const a = await startZtunnel({ files, node: NODES[0]!, controlPlane: cpAddress });
const b = await startZtunnel({ files, node: NODES[1]!, controlPlane: cpAddress });
const wp = startWaypointProcess(files, cpAddress, WAYPOINT_IP);
const agent = meshAgent({ host: NODES[0]!.address, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wp.kill('SIGTERM');
  await Promise.all([a.zt.shutdown(), b.zt.shutdown()]);
  await cp.close();
  await Promise.all([closeServer(v1.server), closeServer(v2.server)]);
});

t.test('the waypoint process starts with only the control plane address and gets its identity from the CA', async (t) => {
  await waitForStatus(`http://${WAYPOINT_IP}:15021/healthz/ready`, 200, 15_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${wp.output()}`);
  });
  // Log lines are written in batches (at most 250 ms late).
  await until('the ready line', () => wp.output().includes('"msg":"waypoint ready"'), { timeoutMs: 5000 });
  t.match(wp.output(), /"msg":"using the control plane for certificates and configuration"/);
  t.match(wp.output(), new RegExp(`"identity":"${WAYPOINT_ID}"`), 'the identity of its Gateway\'s service account');
  const dump = (await (await fetch(`http://${WAYPOINT_IP}:15000/config_dump`)).json()) as { identity: string; gateway: { name: string; namespace: string } };
  t.equal(dump.identity, WAYPOINT_ID, '/config_dump shows its identity');
  t.same(dump.gateway, { name: 'waypoint', namespace: 'apps' }, 'and its Gateway');
});

t.test('traffic to a service with a waypoint is routed by the HTTPRoute the control plane streamed', async (t) => {
  await until('node-a to learn the service uses the waypoint', () => a.zt.state.serviceByVip(`${base}.100`)?.waypoint?.address === `${base}.110`);
  const plain = await request(agent, `http://${base}.100/`);
  t.equal(plain.status, 200);
  t.equal(JSON.parse(plain.body).name, 'v1', 'the default rule');
  const canary = await request(agent, `http://${base}.100/`, { headers: { 'x-canary': 'yes' } });
  t.equal(JSON.parse(canary.body).name, 'v2', 'the header match');
  t.equal(canary.headers['x-routed'], 'canary', 'the rule\'s filter ran in the waypoint');
  const metrics = await (await fetch(`http://${WAYPOINT_IP}:15020/metrics`)).text();
  t.match(metrics, /istio_requests_total\{[^}]*reporter="waypoint"[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/apps\/sa\/client"/, 'the waypoint saw the client\'s identity');
  let viaWaypoint = 0;
  await until('node-b to count connections from the waypoint', async () => {
    const text = await b.zt.metrics.registry.metrics();
    viaWaypoint = text.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total') && l.includes('reporter="destination"') && l.includes(`source_principal="${WAYPOINT_ID}"`)).length;
    return viaWaypoint > 0;
  });
  t.ok(viaWaypoint > 0, 'the backend\'s ztunnel saw the waypoint\'s identity (from the CA), not the client\'s');
});

t.test('the CA issues the waypoint identity only to its own node', async (t) => {
  const cert = await a.client.certificates.fetch(WAYPOINT_ID).then(
    () => 'issued',
    (err: Error) => err.message,
  );
  t.not(cert, 'issued', 'node-a may not obtain the identity of a waypoint running on node-b');
  const own = await b.client.certificates.fetch(WAYPOINT_ID);
  t.equal(new X509Certificate(own.certChainPem[0] ?? '').subjectAltName, `URI:${WAYPOINT_ID}`);
});
