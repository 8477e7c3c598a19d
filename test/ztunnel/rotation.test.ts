import t from 'tap';
import { startMesh, baseConfig } from '../helpers/mesh.js';
import { echoServer, socks5Connect, closeServer, readAll } from '../helpers/net.js';
import { until } from '../helpers/until.js';

// 127.0.4.2 = node-a, .3 = node-b, .10 = client, .20 = server. Workload certificates live 4 s.
const base = '127.0.4';
const SERVER = `${base}.20`;
const echo = await echoServer(SERVER, 9090);
const mesh = await startMesh({ dir: t.testdir(), base, config: baseConfig(base), certTtlSeconds: 4 });
t.teardown(async () => {
  await mesh.close();
  await closeServer(echo.server);
});

type Dump = { certificates: Record<string, { notAfter: Date; rotations: number }> };

async function roundTrip(): Promise<string> {
  const { reply, socket } = await socks5Connect({ proxy: { host: mesh.addr.a, port: 15080 }, localAddress: `${base}.10`, host: SERVER, port: 9090 });
  if (reply !== 0) {
    socket.destroy();
    return `socks5 reply ${reply}`;
  }
  socket.end('ping');
  return (await readAll(socket)).toString();
}

t.test('workload certificates renew before they expire and traffic keeps flowing', async (t) => {
  t.equal(await roundTrip(), 'ping');
  const first = (mesh.a.configDump() as Dump).certificates['spiffe://cluster.local/ns/default/sa/client']!;
  t.ok(first, 'client certificate issued');
  // Past the first certificate's expiry (the state waited on is the real clock: TLS checks
  // validity against it), the secret manager must have rotated it already.
  const now = await until('the first client certificate to expire, rotated', () => {
    const cur = (mesh.a.configDump() as Dump).certificates['spiffe://cluster.local/ns/default/sa/client']!;
    return Date.now() > first.notAfter.getTime() && cur.rotations >= 1 && cur;
  });
  t.ok(now.rotations >= 1, `rotated ${now.rotations} time(s)`);
  t.ok(now.notAfter.getTime() > Date.now(), 'the current certificate is valid now');
  // Drop pooled connections so the next one does a fresh handshake with the renewed certificates.
  mesh.a.hbone.drain();
  t.equal(await roundTrip(), 'ping', 'a new HBONE connection with renewed certificates works');
  const server = (mesh.b.configDump() as Dump).certificates['spiffe://cluster.local/ns/default/sa/server']!;
  t.ok(server.notAfter.getTime() > Date.now(), 'the server side renewed too');
});
