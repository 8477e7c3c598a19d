import t from 'tap';
import { join } from 'node:path';
import { echoServer, socks5Connect, closeServer } from '../helpers/net.js';
import { once } from 'node:events';
import { waitForStatus } from '../helpers/proc.js';
import {
  cpEnv,
  makeFiles,
  manifestYaml,
  namespace,
  pod,
  startControlPlaneProcess,
  startZtunnel,
  writeAtomic,
  type CpProcess,
} from './helpers.js';
import { until } from '../helpers/until.js';

// The control plane as a real process, killed with SIGKILL and restarted: proxies keep serving,
// then resume. 127.0.6.201 = control plane, .202/.203 = ztunnels, .210/.220 = pods.
const base = '127.0.6';
const CP = `${base}.201`;
const PORT = 15012;
const NODES = [
  { name: 'node-a', address: `${base}.202` },
  { name: 'node-b', address: `${base}.203` },
];
const SERVER = `${base}.220`;
const files = await makeFiles(t.testdir(), NODES);
const apps = [namespace('default', { 'istio.io/dataplane-mode': 'ambient' }), pod('client', { node: 'node-a', ip: `${base}.210` }), pod('server', { node: 'node-b', ip: SERVER })];
await writeAtomic(join(files.manifests, 'apps.yaml'), manifestYaml(apps));
const env = cpEnv(files, CP, { CONTROL_PLANE_PORT: String(PORT), LOG_LEVEL: 'info' });
let proc: CpProcess | undefined;
async function startCp(): Promise<CpProcess> {
  const p = startControlPlaneProcess(env);
  await waitForStatus(`http://${CP}:15021/healthz/ready`, 200).catch((err: Error) => {
    throw new Error(`${err.message}\n${p.output()}`);
  });
  return p;
}
proc = await startCp();
const echo = await echoServer(SERVER, 9090);
const a = await startZtunnel({ files, node: NODES[0]!, controlPlane: `${CP}:${PORT}` });
const b = await startZtunnel({ files, node: NODES[1]!, controlPlane: `${CP}:${PORT}` });
t.teardown(async () => {
  await Promise.all([a.zt.shutdown(), b.zt.shutdown()]);
  await proc?.kill();
  await closeServer(echo.server);
});

async function echoOnce(text: string): Promise<string> {
  const { reply, socket } = await socks5Connect({ proxy: { host: NODES[0]!.address, port: 15080 }, localAddress: `${base}.210`, host: SERVER, port: 9090 });
  if (reply !== 0) {
    socket.destroy();
    return `reply ${reply}`;
  }
  socket.resume();
  socket.write(text);
  const [d] = (await once(socket, 'data')) as [Buffer];
  socket.destroy();
  return d.toString();
}

t.test('killing the control plane leaves traffic flowing on the last configuration', async (t) => {
  t.equal(await echoOnce('before'), 'before');
  const { socket } = await socks5Connect({ proxy: { host: NODES[0]!.address, port: 15080 }, localAddress: `${base}.210`, host: SERVER, port: 9090 });
  socket.resume();
  await proc!.kill('SIGKILL');
  await until('both ztunnels to notice', () => !a.client.configSource.connected && !b.client.configSource.connected);
  socket.write('open');
  const [d] = (await once(socket, 'data')) as [Buffer];
  t.equal(d.toString(), 'open', 'an open connection keeps working');
  socket.destroy();
  t.equal(await echoOnce('new'), 'new', 'new connections work with the cached configuration and certificates');
  t.equal(a.zt.state.config.workloads.length, 2, 'the configuration is kept');
});

t.test('a restarted control plane with the same objects lets proxies resume without a resend', async (t) => {
  const before = { ...a.client.configSource.stats };
  const version = a.client.configSource.version;
  proc = await startCp();
  await until('both ztunnels to reconnect', () => a.client.configSource.connected && b.client.configSource.connected, { timeoutMs: 10_000 });
  await until('resume', () => a.client.configSource.stats.resumes === before.resumes + 1);
  t.equal(a.client.configSource.stats.snapshots, before.snapshots, 'no snapshot was sent');
  t.equal(a.client.configSource.version, version, 'same version: versions are content digests, not counters');
  t.match(proc.output(), /"mode":"resume"/, 'the control plane logged the resume');
  t.equal(await echoOnce('after'), 'after');
});

t.test('objects changed while the control plane was down: a restart sends a snapshot', async (t) => {
  await proc!.kill('SIGKILL');
  await until('disconnect', () => !a.client.configSource.connected);
  const snapshots = a.client.configSource.stats.snapshots;
  await writeAtomic(join(files.manifests, 'apps.yaml'), manifestYaml([...apps, pod('late', { node: 'node-b', ip: `${base}.221` })]));
  proc = await startCp();
  await until('the new pod', () => a.zt.state.workloadByIp(`${base}.221`) !== undefined, { timeoutMs: 10_000 });
  t.equal(a.client.configSource.stats.snapshots, snapshots + 1, 'one snapshot (the version it held is unknown to the new process)');
  t.equal(await echoOnce('again'), 'again');
});

t.test('SIGTERM stops the control plane cleanly', async (t) => {
  await proc!.kill('SIGTERM');
  t.equal(await proc!.exited, 0);
  proc = undefined;
});
