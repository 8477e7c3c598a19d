import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { readSocks5Request, sendSocks5Reply, SOCKS5_REPLY } from '../../ztunnel/socks5.js';
import { until } from '../helpers/until.js';

/** A connected loopback pair: `client` the SOCKS5 client's end, `s` the end ztunnel reads; both closed in teardown. */
async function connectedPair(t: Test): Promise<{ client: net.Socket; s: net.Socket }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const [s] = await accepted;
  t.teardown(() => s.destroy());
  return { client, s };
}

async function handshake(t: Test, bytes: Buffer[]): Promise<{ result: unknown; received: Buffer }> {
  const { client, s } = await connectedPair(t);
  const received: Buffer[] = [];
  client.on('data', (d: Buffer) => received.push(d));
  await writeInReads(client, s, bytes);
  const result = await readSocks5Request(s, 500).catch((e: Error) => e);
  if (!(result instanceof Error)) {
    sendSocks5Reply(s, SOCKS5_REPLY.succeeded);
    // Bytes pipelined after the request stay readable.
    s.resume();
  }
  // Everything the server had to say is written: its FIN reaches the client after those bytes.
  const ended = once(client, 'end');
  s.end();
  await ended;
  return { result, received: Buffer.concat(received) };
}

/**
 * Writes each chunk and waits until the server side has read it, so each arrives in a read of its
 * own (the parser sees the request split exactly there, not coalesced by the kernel).
 */
async function writeInReads(client: net.Socket, server: net.Socket, chunks: Buffer[]): Promise<void> {
  let sent = 0;
  for (const [i, b] of chunks.entries()) {
    client.write(b);
    sent += b.length;
    await until(`the server to read chunk ${i + 1}`, () => server.bytesRead >= sent, { everyMs: 1 });
  }
}

t.test('IPv4 CONNECT, split across packets, with pipelined data kept', async (t) => {
  const { client, s } = await connectedPair(t);
  await writeInReads(client, s, [
    Buffer.from([0x05, 0x01]),
    Buffer.from([0x00, 0x05, 0x01, 0x00, 0x01, 10, 1, 2, 3]),
    Buffer.concat([Buffer.from([0x1f, 0x90]), Buffer.from('early')]),
  ]);
  const target = await readSocks5Request(s);
  t.same(target, { host: '10.1.2.3', port: 8080 });
  s.resume();
  const [d] = (await once(s, 'data')) as [Buffer];
  t.equal(d.toString(), 'early', 'data sent before the reply is not lost');
});

t.test('IPv6 and domain address types', async (t) => {
  const v6 = await handshake(t, [Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x04, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80])]);
  t.same(v6.result, { host: 'fd00:0:0:0:0:0:0:1', port: 80 });
  const name = Buffer.from('echo.default');
  const dn = await handshake(t, [Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, name.length]), name, Buffer.from([0, 80])])]);
  t.same(dn.result, { host: 'echo.default', port: 80 });
});

t.test('bad handshakes are refused with a reason', async (t) => {
  const v4 = await handshake(t, [Buffer.from([0x04, 0x01, 0x00, 0x50])]);
  t.match(v4.result, { code: 'ERR_SOCKS5', message: /unsupported version 4/ });
  const noAuth = await handshake(t, [Buffer.from([0x05, 0x01, 0x02])]);
  t.match(noAuth.result, { message: /no "no authentication" method/ });
  t.same([...noAuth.received], [0x05, 0xff], 'told the client no method is acceptable');
  const bind = await handshake(t, [Buffer.from([0x05, 0x01, 0x00, 0x05, 0x02, 0x00, 0x01, 1, 2, 3, 4, 0, 80])]);
  t.match(bind.result, { reply: SOCKS5_REPLY.commandNotSupported, message: /only CONNECT/ });
  const silent = await handshake(t, []);
  t.match(silent.result, { message: /timed out/ });
});

t.test('destinations no connection can reach are refused before they are logged or routed', async (t) => {
  const request = (atypAndAddr: Buffer, port: number) => [Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00]), atypAndAddr, Buffer.from([port >> 8, port & 255])])];
  const domain = (name: string) => Buffer.concat([Buffer.from([0x03, Buffer.byteLength(name, 'latin1')]), Buffer.from(name, 'latin1')]);
  const port0 = await handshake(t, request(Buffer.from([0x01, 10, 1, 2, 3]), 0));
  t.match(port0.result, { code: 'ERR_SOCKS5', reply: SOCKS5_REPLY.hostUnreachable, message: /port 0/ });
  const empty = await handshake(t, request(domain(''), 80));
  t.match(empty.result, { code: 'ERR_SOCKS5', reply: SOCKS5_REPLY.hostUnreachable, message: /"" is not a hostname/ });
  const control = await handshake(t, request(domain('echo\u001b[31m.default'), 80));
  t.match(control.result, { code: 'ERR_SOCKS5', reply: SOCKS5_REPLY.hostUnreachable, message: /is not a hostname/ });
  const spaces = await handshake(t, request(domain('!!! bad host'), 80));
  t.match(spaces.result, { code: 'ERR_SOCKS5', message: /is not a hostname/ });
  const fqdn = await handshake(t, request(domain('echo.default.svc.cluster.local.'), 443));
  t.same(fqdn.result, { host: 'echo.default.svc.cluster.local.', port: 443 }, 'a fully qualified name with its trailing dot is a hostname');
});

