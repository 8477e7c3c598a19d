import t from 'tap';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { startZtunnelProcess, waitForStatus, type Proc } from '../helpers/proc.js';
import { echoServer, socks5Connect, closeServer } from '../helpers/net.js';
import { makeFiles, manifestYaml, namespace, pod, startControlPlane, writeAtomic } from './helpers.js';
import { until } from '../helpers/until.js';

// `node dist/ztunnel/main.js` with nothing but the control plane's address, its token and the
// root file. 127.0.5.101 = control plane, .102/.103 = ztunnels, .110/.120 = pods.
const base = '127.0.5';
const NODES = [
  { name: 'node-a', address: `${base}.102` },
  { name: 'node-b', address: `${base}.103` },
];
const SERVER = `${base}.120`;
const files = await makeFiles(t.testdir(), NODES);
await writeAtomic(
  join(files.manifests, 'apps.yaml'),
  manifestYaml([namespace('default', { 'istio.io/dataplane-mode': 'ambient' }), pod('client', { node: 'node-a', ip: `${base}.110` }), pod('server', { node: 'node-b', ip: SERVER })]),
);
const cp = await startControlPlane(files, `${base}.101`, { METRICS_PORT: '0', READINESS_PORT: '0', ADMIN_PORT: '0' });
const echo = await echoServer(SERVER, 9090);
const procs: Proc[] = [];
t.teardown(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  await cp.close();
  await closeServer(echo.server);
});

function ztunnel(node: { name: string; address: string }, tokenFile: string): Proc {
  const p = startZtunnelProcess({
    NODE_NAME: node.name,
    CONTROL_PLANE_ADDRESS: `${base}.101:${cp.addresses.server.port}`,
    NODE_TOKEN_FILE: tokenFile,
    CONTROL_PLANE_ROOT_CERT_FILE: files.certFile,
    ZTUNNEL_ADDRESS: node.address,
    ADMIN_ADDRESS: node.address,
    SOCKS5_PORT: '15080',
    OUTBOUND_PORT: '0',
    LOG_LEVEL: 'info',
  });
  procs.push(p);
  return p;
}

t.test('two ztunnel processes get certificates and configuration from the control plane and carry traffic', async (t) => {
  const a = ztunnel(NODES[0]!, files.tokenFiles['node-a']!);
  const b = ztunnel(NODES[1]!, files.tokenFiles['node-b']!);
  await waitForStatus(`http://${NODES[0]!.address}:15021/healthz/ready`, 200).catch((e: Error) => t.fail(`${e.message}\n${a.output()}`));
  await waitForStatus(`http://${NODES[1]!.address}:15021/healthz/ready`, 200).catch((e: Error) => t.fail(`${e.message}\n${b.output()}`));
  const { reply, socket } = await socks5Connect({ proxy: { host: NODES[0]!.address, port: 15080 }, localAddress: `${base}.110`, host: SERVER, port: 9090 });
  t.equal(reply, 0);
  socket.resume();
  socket.write('hello');
  const [d] = (await once(socket, 'data')) as [Buffer];
  t.equal(d.toString(), 'hello');
  socket.destroy();
  t.match(a.output(), /"msg":"using the control plane for certificates and configuration"/);
  const dump = (await (await fetch(`http://${NODES[1]!.address}:15000/config_dump`)).json()) as { certificates: Record<string, unknown> };
  t.ok(dump.certificates['spiffe://cluster.local/ns/default/sa/server'], 'node-b got its workload\'s certificate from the control plane');
  await until('both subscribed', () => cp.hub.list().length === 2);
  a.child.kill('SIGTERM');
  b.child.kill('SIGTERM');
  t.equal(await a.exited, 0);
  t.equal(await b.exited, 0);
});

t.test('a ztunnel with a wrong token is not ready and says why', async (t) => {
  const bad = join(files.dir, 'wrong.token');
  await writeFile(bad, 'not-the-token-of-any-node\n');
  const p = ztunnel(NODES[0]!, bad);
  await until('the refusal in the log', () => /ERR_UNAUTHENTICATED/.test(p.output()), { timeoutMs: 10_000 });
  const ready = await fetch(`http://${NODES[0]!.address}:15021/healthz/ready`).then((r) => r.status, () => 'down');
  t.not(ready, 200, 'not ready');
  t.match(p.output(), /the bearer token is not valid for any node; check the node token file/);
  await p.kill();
});
