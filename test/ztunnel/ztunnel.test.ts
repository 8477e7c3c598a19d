import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type net from 'node:net';
import { startMesh, baseConfig, counterValue } from '../helpers/mesh.js';
import { hashServer, echoServer, socks5Connect, readAll, closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';

// Loopback addresses of this file: 127.0.1.2 = ztunnel node-a, .3 = node-b, .10 = client, .20 = server.
const base = '127.0.1';
const CLIENT = `${base}.10`;
const SERVER = `${base}.20`;
const LEGACY = `${base}.11`;
const ID = {
  client: 'spiffe://cluster.local/ns/default/sa/client',
  server: 'spiffe://cluster.local/ns/default/sa/server',
};

const hash = await hashServer(SERVER, 8080);
const echo = await echoServer(SERVER, 9090);
const mesh = await startMesh({ dir: t.testdir(), base, config: baseConfig(base) });
t.teardown(async () => {
  await mesh.close();
  await closeServer(hash.server);
  await closeServer(echo.server);
});
const proxy = { host: mesh.addr.a, port: 15080 };

async function through(port: number, from = CLIENT): Promise<{ reply: number; socket: net.Socket }> {
  return socks5Connect({ proxy, localAddress: from, host: SERVER, port });
}

t.test('100 MB from a client through ztunnel A and B to a server arrives intact, half-closed', async (t) => {
  const { reply, socket } = await through(8080);
  t.equal(reply, 0, 'socks5 connect succeeded');
  const chunk = randomBytes(1024 * 1024);
  const h = createHash('sha256');
  const total = 100;
  const answer = readAll(socket);
  for (let i = 0; i < total; i++) {
    // Vary each MiB so a repeated or dropped chunk changes the hash.
    chunk.writeUInt32BE(i, 0);
    h.update(chunk);
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  // Half-close: the server only answers after our FIN, so its answer proves the reverse direction
  // stayed open.
  socket.end();
  const text = (await answer).toString().trim();
  t.equal(text, `${h.digest('hex')} ${total * 1024 * 1024}`, 'server received every byte, in order');
  t.equal(hash.peers.at(-1), mesh.addr.b, 'the server saw node-b\'s ztunnel as its peer');
});

t.test('the destination ztunnel saw the client\'s SPIFFE id and counted the bytes', async (t) => {
  // Metrics are recorded when the connection closes on both sides: wait for the counter itself.
  const opened = await until('node-b to count the closed mutual_tls connection', () =>
    counterValue(mesh.b, 'istio_tcp_connections_closed_total', {
      reporter: 'destination',
      source_principal: ID.client,
      destination_principal: ID.server,
      source_workload: 'client',
      destination_workload: 'server',
      connection_security_policy: 'mutual_tls',
      response_flags: '-',
    }),
  );
  t.ok(opened >= 1, 'a closed mutual_tls connection from the client identity was counted at node-b');
  const sent = await counterValue(mesh.b, 'istio_tcp_received_bytes_total', { reporter: 'destination', source_principal: ID.client });
  t.ok(sent >= 100 * 1024 * 1024, `node-b counted ${sent} bytes from the source`);
  const response = await counterValue(mesh.b, 'istio_tcp_sent_bytes_total', { reporter: 'destination', source_principal: ID.client });
  t.ok(response > 0 && response < 1024 * 1024, `node-b counted ${response} response bytes (the hash line), as istio_tcp_sent_bytes_total`);
  const srcSent = await counterValue(mesh.a, 'istio_tcp_received_bytes_total', { reporter: 'source', destination_principal: ID.server });
  t.ok(srcSent >= 100 * 1024 * 1024, `node-a counted ${srcSent} bytes to the destination`);
});

t.test('the pool multiplexes many streams on one connection, and opens another past 100', async (t) => {
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  const open = async (n: number) => {
    const batch = await Promise.all(Array.from({ length: n }, () => through(9090)));
    for (const { reply, socket } of batch) {
      t.equal(reply, 0);
      sockets.push(socket);
    }
  };
  await open(20);
  // Every stream works on its own.
  for (const [i, s] of sockets.entries()) {
    s.resume();
    s.write(`ping ${i}\n`);
    const [d] = (await once(s, 'data')) as [Buffer];
    if (d.toString() !== `ping ${i}\n`) t.fail(`stream ${i} echoed ${d.toString()}`);
  }
  t.equal(mesh.a.hbone.connectionCount, 1, '20 streams share one pooled connection');
  await open(81);
  t.equal(mesh.a.hbone.connectionCount, 2, '101 concurrent streams need a second connection');
});

async function applyAndWait(extra: Record<string, unknown>, check: () => boolean): Promise<void> {
  await mesh.writeConfig(baseConfig(base, extra));
  await mesh.waitForState(mesh.b, check);
  await mesh.waitForState(mesh.a, check);
}

async function roundTrip(port: number, from = CLIENT): Promise<number> {
  const { reply, socket } = await through(port, from);
  if (reply === 0) {
    socket.end('x');
    await readAll(socket);
  } else {
    socket.destroy();
  }
  return reply;
}

t.test('authorization policies: DENY blocks, ALLOW admits only its principals', async (t) => {
  t.teardown(() => applyAndWait({}, () => mesh.b.state.policiesFor(mesh.b.state.workloadByIp(SERVER)!).length === 0));
  const policiesOn = () => mesh.b.state.policiesFor(mesh.b.state.workloadByIp(SERVER)!);
  const deniedBefore = await counterValue(mesh.b, 'istio_tcp_connections_opened_total', { response_flags: 'DENY' });

  await applyAndWait(
    {
      authorizationPolicies: [
        {
          name: 'deny-client',
          namespace: 'default',
          spec: { selector: { matchLabels: { app: 'server' } }, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/client'] } }] }] },
        },
      ],
    },
    () => policiesOn().length === 1,
  );
  t.not(await roundTrip(9090), 0, 'DENY for the client principal refuses the connection');
  t.equal(
    await counterValue(mesh.b, 'istio_tcp_connections_opened_total', { response_flags: 'DENY', source_principal: ID.client }),
    deniedBefore + 1,
    'node-b counted the denial with response_flags DENY',
  );

  await applyAndWait(
    {
      authorizationPolicies: [
        {
          name: 'allow-other',
          namespace: 'default',
          spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/other/sa/*'] } }] }] },
        },
      ],
    },
    () => policiesOn()[0]?.name === 'allow-other',
  );
  t.not(await roundTrip(9090), 0, 'an ALLOW policy that does not name the client denies it');

  await applyAndWait(
    {
      authorizationPolicies: [
        {
          name: 'allow-client-port',
          namespace: 'default',
          spec: {
            action: 'ALLOW',
            rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { ports: ['9090'] } }] }],
          },
        },
      ],
    },
    () => policiesOn()[0]?.name === 'allow-client-port',
  );
  t.equal(await roundTrip(9090), 0, 'ALLOW for the namespace and port admits the client');
  t.not(await roundTrip(8080), 0, 'the same ALLOW does not admit another port');
});

t.test('STRICT peer authentication refuses plaintext from outside the mesh; PERMISSIVE admits it', async (t) => {
  const legacy = { name: 'legacy', namespace: 'default', serviceAccount: 'legacy', node: 'node-a', ips: [LEGACY], protocol: 'TCP' };
  const cfg = (mode: string) => {
    const c = baseConfig(base, {
      peerAuthentications: [{ name: 'mtls', namespace: 'default', spec: { mtls: { mode } } }],
    });
    (c.workloads as object[]).push(legacy);
    return c;
  };
  t.teardown(async () => {
    await mesh.writeConfig(baseConfig(base));
    await mesh.waitForState(mesh.a, (z) => !z.state.workloadByIp(LEGACY));
  });
  await mesh.writeConfig(cfg('STRICT'));
  await mesh.waitForState(mesh.a, (z) => z.state.mtlsModeFor(z.state.workloadByIp(SERVER)!, 9090) === 'STRICT' && !!z.state.workloadByIp(LEGACY));
  t.equal(await roundTrip(9090, LEGACY), 0x02, 'plaintext to a STRICT workload is refused (socks5 "not allowed")');
  t.equal(await roundTrip(9090, CLIENT), 0, 'mTLS from a meshed client still passes');
  t.equal(
    await counterValue(mesh.a, 'istio_tcp_connections_opened_total', { source_workload: 'legacy', response_flags: 'DENY', connection_security_policy: 'none' }),
    1,
  );

  await mesh.writeConfig(cfg('PERMISSIVE'));
  await mesh.waitForState(mesh.a, (z) => z.state.mtlsModeFor(z.state.workloadByIp(SERVER)!, 9090) === 'PERMISSIVE');
  t.equal(await roundTrip(9090, LEGACY), 0, 'PERMISSIVE admits plaintext');
});

t.test('a bad config file is rejected and the last good config keeps serving', async (t) => {
  const before = mesh.a.state;
  const { writeFile } = await import('node:fs/promises');
  t.equal(mesh.sources.a.lastError, undefined, 'the last read was accepted');
  await writeFile(mesh.configPath, 'workloads:\n  - name: x\n    bogus: 1\n');
  // Wait for the positive signal that this file was read and rejected, not for a time in which a
  // slow reload would also have changed nothing.
  const rejected = await until('node-a to reject the bad config file', () => mesh.sources.a.lastError);
  t.match(rejected.message, /bogus/, 'rejected for the unknown field of this very file');
  t.equal(mesh.a.state, before, 'state unchanged');
  t.equal(await roundTrip(9090), 0, 'traffic still flows');
  await mesh.writeConfig(baseConfig(base));
  await until('node-a to accept the good config file again', () => mesh.sources.a.lastError === undefined);
});
