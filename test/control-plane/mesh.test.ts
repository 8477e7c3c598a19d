import t from 'tap';
import { join } from 'node:path';
import type net from 'node:net';
import { counterValue } from '../helpers/mesh.js';
import { echoServer, socks5Connect, readAll, closeServer } from '../helpers/net.js';
import { RemoteCaClient, CaRequestError } from '../../core/discovery/ca-client.js';
import { TrustAnchors } from '../../core/identity/trust-anchors.js';
import { generateKeyAndCsr } from '../../core/identity/csr.js';
import { readRootsFile } from '../../core/discovery/client.js';
import { controlPlaneIdentity } from '../../core/discovery/wire.js';
import {
  makeFiles,
  manifestYaml,
  namespace,
  pod,
  serviceAccount,
  startControlPlane,
  startZtunnel,
  writeAtomic,
  removeFile,
} from './helpers.js';
import { until } from '../helpers/until.js';

// Two ztunnels that know nothing but the control plane's address and their node token.
// 127.0.5.1 = control plane, .2 = ztunnel node-a, .3 = node-b, .10 = client pod (node-a),
// .20 = server pod (node-b), .30 = a service VIP.
const base = '127.0.5';
const NODES = [
  { name: 'node-a', address: `${base}.2` },
  { name: 'node-b', address: `${base}.3` },
];
const CLIENT = `${base}.10`;
const SERVER = `${base}.20`;
const VIP = `${base}.30`;
const ID = {
  client: 'spiffe://cluster.local/ns/apps/sa/client',
  server: 'spiffe://cluster.local/ns/apps/sa/server',
};

const files = await makeFiles(t.testdir(), NODES);
await writeAtomic(
  join(files.manifests, 'apps.yaml'),
  manifestYaml([
    namespace('apps', { 'istio.io/dataplane-mode': 'ambient' }),
    serviceAccount('client', 'apps'),
    serviceAccount('server', 'apps'),
    pod('client', { ns: 'apps', node: 'node-a', ip: CLIENT }),
    pod('server', { ns: 'apps', node: 'node-b', ip: SERVER }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'echo', namespace: 'apps' },
      spec: { selector: { app: 'server' }, clusterIP: VIP, ports: [{ name: 'tcp', port: 80, targetPort: 9090 }] },
    },
  ]),
);
const cp = await startControlPlane(files, `${base}.1`);
const cpAddress = `${base}.1:${cp.addresses.server.port}`;
const echo = await echoServer(SERVER, 9090);
const a = await startZtunnel({ files, node: NODES[0]!, controlPlane: cpAddress });
// node-b forgets certificates soon after their pods leave (CERT_RETENTION_SECONDS), for the test below.
const b = await startZtunnel({ files, node: NODES[1]!, controlPlane: cpAddress, env: { CERT_RETENTION_SECONDS: '1' } });
t.teardown(async () => {
  await Promise.all([a.zt.shutdown(), b.zt.shutdown()]);
  await cp.close();
  await closeServer(echo.server);
});

async function roundTrip(host: string, port: number, from = CLIENT): Promise<number> {
  const { reply, socket } = await socks5Connect({ proxy: { host: NODES[0]!.address, port: 15080 }, localAddress: from, host, port });
  if (reply !== 0) {
    socket.destroy();
    return reply;
  }
  socket.end('ping');
  const got = (await readAll(socket)).toString();
  return got === 'ping' ? 0 : -2;
}

t.test('ztunnels started with only the control plane address get their configuration', async (t) => {
  t.equal(a.zt.state.workloadByIp(SERVER)?.protocol, 'HBONE', 'node-a knows the server pod as meshed');
  t.equal(b.zt.state.workloadByIp(CLIENT)?.node, 'node-a');
  t.equal(a.zt.state.serviceByVip(VIP)?.hostname, 'echo.apps.svc.cluster.local');
  t.ok(a.client.configSource.version, 'holds a version');
  t.equal(a.client.configSource.version, cp.state.version, 'the version the control plane published');
});

t.test('traffic flows between workloads declared in manifests, over mTLS with certificates from the control plane', async (t) => {
  t.equal(await roundTrip(SERVER, 9090), 0, 'to the pod IP');
  t.equal(await roundTrip(VIP, 80), 0, 'to the service VIP');
  let opened = 0;
  await until('destination metrics', async () => {
    opened = await counterValue(b.zt, 'istio_tcp_connections_opened_total', {
      reporter: 'destination',
      source_principal: ID.client,
      destination_principal: ID.server,
      connection_security_policy: 'mutual_tls',
    });
    return opened >= 2;
  });
  t.ok(opened >= 2, 'node-b saw the client identity over mutual TLS');
  const dump = a.zt.configDump() as { certificates: Record<string, unknown> };
  t.ok(dump.certificates[ID.client], 'node-a holds the client certificate');
  const own = await a.client.certificates.fetch('spiffe://cluster.local/ns/istio-system/sa/ztunnel');
  t.ok(own.notAfter > new Date(), 'and its own ztunnel certificate, which authenticates its discovery stream');
  t.ok(dump.certificates['spiffe://cluster.local/ns/istio-system/sa/ztunnel'], '/config_dump lists that certificate too');
  t.notOk(dump.certificates[ID.server], 'but not the server\'s, which runs on node-b');
});

t.test('a policy added to the store is enforced on the next connection, without restarts', async (t) => {
  const policyFile = join(files.manifests, 'deny.yaml');
  const deny = {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'deny-client', namespace: 'apps' },
    spec: { selector: { matchLabels: { app: 'server' } }, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/apps/sa/client'] } }] }] },
  };
  const snapshotsBefore = b.client.configSource.stats.snapshots;
  await writeAtomic(policyFile, manifestYaml([deny]));
  await until('the policy to reach node-b', () => b.zt.state.config.authorizationPolicies.length === 1);
  t.not(await roundTrip(SERVER, 9090), 0, 'denied');
  t.equal(a.zt.state.config.authorizationPolicies.length, 0, 'node-a does not receive a policy for node-b\'s workloads');
  t.equal(b.client.configSource.stats.snapshots, snapshotsBefore, 'delivered as a delta, not a new snapshot');
  await removeFile(policyFile);
  await until('the policy removal to reach node-b', () => b.zt.state.config.authorizationPolicies.length === 0);
  t.equal(await roundTrip(SERVER, 9090), 0, 'allowed again');
});

t.test('a pod scheduled later joins; a pod opted out with dataplane-mode=none is plain TCP', async (t) => {
  const extra = join(files.manifests, 'more.yaml');
  await writeAtomic(
    extra,
    manifestYaml([
      pod('late', { ns: 'apps', node: 'node-b', ip: `${base}.21` }),
      pod('legacy', { ns: 'apps', node: 'node-b', ip: `${base}.22`, labels: { app: 'legacy', 'istio.io/dataplane-mode': 'none' } }),
    ]),
  );
  await until('the new pods', () => a.zt.state.workloadByIp(`${base}.22`) !== undefined);
  t.equal(a.zt.state.workloadByIp(`${base}.21`)?.protocol, 'HBONE');
  t.equal(a.zt.state.workloadByIp(`${base}.22`)?.protocol, 'TCP');
  await removeFile(extra);
  await until('the pods to go', () => a.zt.state.workloadByIp(`${base}.22`) === undefined);
});

t.test('the CA refuses another node\'s identity, and says why', async (t) => {
  const trust = new TrustAnchors(await readRootsFile(files.certFile));
  const ca = new RemoteCaClient({
    address: { host: `${base}.1`, port: cp.addresses.server.port },
    token: async () => files.tokens['node-a']!,
    trust,
    serverIdentity: controlPlaneIdentity('cluster.local'),
  });
  t.teardown(() => ca.close());
  const { csrPem } = await generateKeyAndCsr(ID.server);
  const err = await ca.sign(csrPem, ID.server).catch((e: unknown) => e);
  t.ok(err instanceof CaRequestError);
  t.equal((err as CaRequestError).status, 403);
  t.equal((err as CaRequestError).reason, 'ERR_IDENTITY_NOT_ALLOWED');
  t.match((err as Error).message, /node node-a may not obtain spiffe:\/\/cluster.local\/ns\/apps\/sa\/server/);
  const refused = await cp.metrics.registry.getSingleMetric('control_plane_csr_requests_total')!.get();
  t.ok(refused.values.some((v) => v.labels.reason === 'ERR_IDENTITY_NOT_ALLOWED' && v.value >= 1), 'the refusal is counted');
  // Its own workload's identity is fine.
  const own = await generateKeyAndCsr(ID.client);
  const signed = await ca.sign(own.csrPem, ID.client);
  t.equal(signed.certChainPem.length, 1);
  t.equal(signed.rootsPem.length, 1);
});

t.test('metrics, readiness and the debug endpoints', async (t) => {
  const ready = await fetch(`http://${base}.1:15021/healthz/ready`);
  t.equal(ready.status, 200);
  const metrics = await (await fetch(`http://${base}.1:15020/metrics`)).text();
  t.match(metrics, /control_plane_connected_proxies\{proxy="ztunnel"\} 2/);
  t.match(metrics, /control_plane_csr_requests_total\{result="signed",reason="OK"\} \d+/);
  t.match(metrics, /control_plane_discovery_pushes_total\{type="snapshot"\} \d+/);
  t.match(metrics, /control_plane_csr_sign_duration_seconds_count \d+/);
  const conns = (await (await fetch(`http://${base}.1:15000/debug/connections`)).json()) as { version: string; proxies: { node: string; version: string; synced: boolean }[] };
  t.same(conns.proxies.map((p) => p.node).sort(), ['node-a', 'node-b']);
  t.ok(conns.proxies.every((p) => p.version === conns.version && p.synced), 'both proxies hold the current version');
  const status = (await (await fetch(`http://${base}.1:15000/debug/status`)).json()) as { objects: number; problems: unknown[] };
  t.equal(status.objects, 6);
});

t.test('an identity whose pods left the node is forgotten with a control plane too (no more renewals)', async (t) => {
  const extra = join(files.manifests, 'leaving.yaml');
  const LEAVING = 'spiffe://cluster.local/ns/apps/sa/leaving';
  await writeAtomic(extra, manifestYaml([serviceAccount('leaving', 'apps'), pod('leaving', { ns: 'apps', node: 'node-b', ip: `${base}.23`, labels: { app: 'leaving' } })]));
  await until('the pod on node-b', () => b.zt.state.workloadByIp(`${base}.23`) !== undefined);
  const leavingEcho = await echoServer(`${base}.23`, 9090);
  t.teardown(() => closeServer(leavingEcho.server));
  t.equal(await roundTrip(`${base}.23`, 9090), 0, 'traffic to it: node-b fetched its certificate');
  const held = () => Object.keys((b.zt.configDump() as { certificates: Record<string, unknown> }).certificates);
  t.ok(held().includes(LEAVING), 'held while its pod runs');
  await removeFile(extra);
  await until('the pod to go', () => b.zt.state.workloadByIp(`${base}.23`) === undefined);
  await until('forgotten after the retention time', () => !held().includes(LEAVING), { timeoutMs: 10_000 });
  t.ok(held().includes(ID.server), 'the identity of a pod still on the node is kept');
});
