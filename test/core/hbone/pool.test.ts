/**
 * The HBONE client's pool when its peer goes away: a pooled connection whose peer vanished
 * without a FIN or RST (a node that disappeared: modelled by a TCP relay that stops relaying)
 * must not take every later CONNECT down with it, and a connection the peer closed is never
 * used for a new stream. The peer is a real ztunnel (node-b of the mesh fixture).
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { startMesh, baseConfig } from '../../helpers/mesh.js';
import { closeServer, echoServer } from '../../helpers/net.js';
import { until } from '../../helpers/until.js';
import { HboneClient } from '../../../core/hbone/client.js';
import { LocalCaClient, SecretManager } from '../../../core/identity/secret-manager.js';
import { silentLogger } from '../../../core/telemetry/log.js';

// 127.0.43.2/.3 ztunnels, .10 client, .20 server, .50 the relay in front of node-b.
const base = '127.0.43';
const RELAY = `${base}.50`;
const ID = {
  client: 'spiffe://cluster.local/ns/default/sa/client',
  server: 'spiffe://cluster.local/ns/default/sa/server',
};

const echo = await echoServer(`${base}.20`, 9090);
const mesh = await startMesh({ dir: t.testdir(), base, config: baseConfig(base) });
t.teardown(async () => {
  await mesh.close();
  await closeServer(echo.server);
});

/** A TCP relay to node-b's HBONE port that can be frozen: its open connections then carry nothing, and stay open. */
async function relay(port = 0): Promise<{ port: number; accepted: () => number; freeze: () => void; close: () => Promise<void> }> {
  let frozen = false;
  let accepted = 0;
  const pipes = new Set<net.Socket>();
  const server = net.createServer((down) => {
    accepted++;
    const up = net.connect({ host: mesh.addr.b, port: 15008 });
    for (const s of [down, up]) {
      pipes.add(s);
      s.on('error', () => {});
      s.on('close', () => (down.destroy(), up.destroy()));
    }
    const forward = (from: net.Socket, to: net.Socket) => from.on('data', (d: Buffer) => (frozen ? undefined : to.write(d)));
    forward(down, up);
    forward(up, down);
  });
  await new Promise<void>((r) => server.listen(port, RELAY, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    // Only connections open now are frozen: a new one (after the pool gave the old up) relays again.
    freeze: () => {
      frozen = true;
      server.once('connection', () => (frozen = false));
    },
    close: async () => {
      for (const s of pipes) s.destroy();
      await closeServer(server);
    },
  };
}

function client(connectTimeoutMs: number): HboneClient {
  return new HboneClient({
    certificates: new SecretManager({ caClient: new LocalCaClient(mesh.ca), logger: silentLogger }),
    logger: silentLogger,
    connectTimeoutMs,
  });
}

async function roundTrip(c: HboneClient, port: number, text: string): Promise<string> {
  const stream = await c.connect({
    sourceIdentity: ID.client,
    serverIdentity: ID.server,
    allowedIdentities: [ID.server],
    host: RELAY,
    port,
    authority: `${base}.20:9090`,
    headers: { forwarded: `for="${base}.10:40000"` },
  });
  stream.end(text);
  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  await once(stream, 'end');
  return Buffer.concat(chunks).toString();
}

t.test('a pooled connection to a peer that vanished without a FIN is dropped after one unanswered CONNECT', async (t) => {
  const r = await relay();
  t.teardown(() => r.close());
  const c = client(500);
  t.teardown(() => c.close());
  t.equal(await roundTrip(c, r.port, 'one'), 'one', 'first tunnel through the pooled connection');
  t.equal(c.connectionCount, 1);
  r.freeze();
  await t.rejects(roundTrip(c, r.port, 'two'), { code: 'ERR_HBONE_CONNECT' }, 'a CONNECT on the dead connection fails (no answer), it does not hang');
  // The PING probe finds no answer and drops the connection (state, polled with a deadline).
  await until('the dead connection to leave the pool', () => c.connectionCount === 0, { everyMs: 25 });
  t.equal(c.connectionCount, 0, 'the dead connection left the pool');
  t.equal(await roundTrip(c, r.port, 'three'), 'three', 'the next CONNECT opens a new connection and is answered');
  t.equal(r.accepted(), 2, 'over a second TCP connection');
});

t.test('a connection the peer closed is never used for a new stream', async (t) => {
  const r = await relay();
  t.teardown(() => r.close());
  const c = client(5000);
  t.teardown(() => c.close());
  t.equal(await roundTrip(c, r.port, 'a'), 'a');
  // The peer (here: the relay, as a restarting ztunnel would) closes every connection it holds,
  // and comes back on the same address.
  await r.close();
  const again = await relay(r.port);
  t.teardown(() => again.close());
  t.equal(await roundTrip(c, again.port, 'b'), 'b', 'a new tunnel after the peer closed its connections');
  t.equal(again.accepted(), 1, 'over a new connection: the closed one was not used');
  t.equal(c.connectionCount, 1, 'and only the new connection is pooled');
});
