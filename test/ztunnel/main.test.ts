import t from 'tap';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { ztunnelProcesses } from '../helpers/mesh.js';
import { socks5Connect, readAll } from '../helpers/net.js';
import { startZtunnelProcess, waitForStatus, type Proc } from '../helpers/proc.js';

// ztunnel as a real child process: 127.0.3.2 = node-a, .3 = node-b, .10 = client, .20 = server.
const base = '127.0.3';
const SERVER = `${base}.20`;
const zp = await ztunnelProcesses(t, base);
const { dir, envFor } = zp;

async function start(node: string, address: string, extra?: Record<string, string>): Promise<Proc> {
  const p = zp.start(node, address, extra);
  await waitForStatus(`http://${address}:15021/healthz/ready`, 200);
  return p;
}

async function echoOnce(socket: import('node:net').Socket, text: string): Promise<string> {
  socket.resume();
  socket.write(text);
  const [d] = (await once(socket, 'data')) as [Buffer];
  return d.toString();
}

t.test('a bad environment stops ztunnel before it binds anything, naming every bad variable', async (t) => {
  const p = startZtunnelProcess({ NODE_NAME: 'node-a', SOCKS5_PORT: 'abc', ZTUNNEL_ADDRESS: '300.1.1.1' });
  t.equal(await p.exited, 2);
  t.match(p.output(), /LOCAL_CONFIG_FILE is required/);
  t.match(p.output(), /SOCKS5_PORT="abc" is not a port/);
  t.match(p.output(), /ZTUNNEL_ADDRESS="300.1.1.1" is not an IPv4 or IPv6 address/);
});

t.test('a bad config file stops ztunnel at start with the field named', async (t) => {
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, yaml.dump({ nodes: [{ name: 'node-a', ztunnelAddress: '127.0.3.2', port: 1 }] }));
  const p = startZtunnelProcess(envFor('node-a', `${base}.2`, { LOCAL_CONFIG_FILE: bad }));
  t.equal(await p.exited, 1);
  t.match(p.output(), /nodes\[0\]/);
});

t.test('outbound capture without the eBPF hooks is a clear start-up error', async (t) => {
  // This test process's cgroup has no getsockname hook attached, and neither has the child's.
  const p = startZtunnelProcess(envFor('node-a', `${base}.2`, { OUTBOUND_PORT: '15001', REDIRECTION_WAIT_SECONDS: '1' }));
  t.equal(await p.exited, 1);
  t.match(p.output(), /outbound capture is enabled but/);
  t.match(p.output(), /start the node agent/);
});

t.test('SIGTERM drains: readiness fails, open connections finish, then the process exits 0', async (t) => {
  const a = await start('node-a', `${base}.2`, { DRAIN_TIMEOUT_SECONDS: '20' });
  const b = await start('node-b', `${base}.3`);
  const { reply, socket } = await socks5Connect({ proxy: { host: `${base}.2`, port: 15080 }, localAddress: `${base}.10`, host: SERVER, port: 9090 });
  t.equal(reply, 0);
  t.equal(await echoOnce(socket, 'before'), 'before');

  // The workload certificate shows in /config_dump (admin on the ztunnel's own address here).
  const dump = (await (await fetch(`http://${base}.2:15000/config_dump`)).json()) as { certificates: Record<string, unknown> };
  t.ok(dump.certificates['spiffe://cluster.local/ns/default/sa/client'], 'config_dump lists the client certificate');

  a.child.kill('SIGTERM');
  await waitForStatus(`http://${base}.2:15021/healthz/ready`, 503).catch(() => {});
  t.equal(await echoOnce(socket, 'during drain'), 'during drain', 'an open connection keeps working while draining');
  const refused = await socks5Connect({ proxy: { host: `${base}.2`, port: 15080 }, localAddress: `${base}.10`, host: SERVER, port: 9090 }).catch((e: Error) => e);
  t.ok(refused instanceof Error, 'new connections are no longer accepted');
  const started = Date.now();
  socket.end();
  t.equal(await a.exited, 0, 'exits 0 once its last connection finished');
  t.ok(Date.now() - started < 10_000, 'did not wait for the deadline');
  b.child.kill('SIGTERM');
  t.equal(await b.exited, 0);
  t.match(a.output(), /"msg":"connection complete"/, 'one access-log line per finished connection');
});

t.test('past the drain deadline, remaining connections are closed', async (t) => {
  const a = await start('node-a', `${base}.2`, { DRAIN_TIMEOUT_SECONDS: '1' });
  const b = await start('node-b', `${base}.3`);
  const { reply, socket } = await socks5Connect({ proxy: { host: `${base}.2`, port: 15080 }, localAddress: `${base}.10`, host: SERVER, port: 9090 });
  t.equal(reply, 0);
  socket.on('error', () => {});
  // Resolves when ztunnel closes its side (FIN or reset).
  const closed = readAll(socket);
  a.child.kill('SIGTERM');
  const code = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r('timeout'), 8000))]);
  t.equal(code, 0, a.output());
  await closed;
  t.match(a.output(), /drain deadline reached/);
  b.child.kill('SIGTERM');
  await b.exited;
});

t.test('POST /quitquitquit drains and exits', async (t) => {
  const a = await start('node-a', `${base}.2`);
  const res = await fetch(`http://${base}.2:15000/quitquitquit`, { method: 'POST' });
  t.equal(res.status, 200);
  t.equal(await a.exited, 0);
});
