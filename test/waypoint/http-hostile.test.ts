/**
 * Issue 19, item 2 at the waypoint's HTTP entry: hostile HTTP/1.1 and h2c requests, written byte
 * for byte on real sockets through ztunnel A's SOCKS5 listener, the HBONE tunnel and the waypoint.
 * Each gets its documented answer (400, 431, or an HTTP/2 stream reset), the backend never sees
 * it, no exception leaves the waypoint, and the next good request is served.
 */
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import type net from 'node:net';
import { closeServer, socks5Connect } from '../helpers/net.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.192.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the HTTP/1.1 backend, .22 = the h2c backend, .30 = the waypoint, .100 and .101 = their service VIPs.
const base = '127.0.192';
const CLIENT = `${base}.10`;
const VIP = `${base}.100`;
const H2_VIP = `${base}.101`;

const uncaught: Error[] = [];
const monitor = (err: Error) => uncaught.push(err);
process.on('uncaughtExceptionMonitor', monitor);
t.teardown(() => void process.off('uncaughtExceptionMonitor', monitor));

const echo = await backend(`${base}.21`, 8080, 'echo');
// The waypoint speaks to a backend what the client spoke: h2c clients need an h2c backend.
let h2Hits = 0;
const h2Backend = http2.createServer((_req, res) => {
  h2Hits++;
  res.end('ok');
});
await new Promise<void>((r) => h2Backend.listen(8080, `${base}.22`, r));
const wm = await startWaypointMesh({
  dir: t.testdir(),
  base,
  workloads: [
    { name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo' } },
    { name: 'h2', namespace: 'default', serviceAccount: 'h2', node: 'node-a', ips: [`${base}.22`], labels: { app: 'h2' } },
  ],
  config: {
    services: [
      { name: 'echo', namespace: 'default', vips: [VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'echo' }, waypoint: { address: `${base}.30` } },
      { name: 'h2', namespace: 'default', vips: [H2_VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'h2' }, waypoint: { address: `${base}.30` } },
    ],
  },
});
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await closeServer(echo.server as unknown as net.Server);
  await closeServer(h2Backend as unknown as net.Server);
});

async function tunnel(host = VIP): Promise<net.Socket> {
  const { reply, socket } = await socks5Connect({ proxy: { host: wm.mesh.addr.a, port: 15080 }, localAddress: CLIENT, host, port: 80, allowHalfOpen: false });
  if (reply !== 0) throw new Error(`socks5 reply ${reply}`);
  socket.on('error', () => {});
  return socket;
}

/** Writes `raw` on a fresh connection; resolves with the status of the first response, or 'closed'. */
async function raw(bytes: string | Buffer): Promise<number | 'closed'> {
  const s = await tunnel();
  try {
    return await new Promise((resolve) => {
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3}) /.exec(got);
        if (m) resolve(Number(m[1]));
      });
      s.once('close', () => resolve('closed'));
      // socks5Connect hands the socket over paused.
      s.resume();
      s.write(bytes);
    });
  } finally {
    s.destroy();
  }
}

const GOOD = `GET /ok HTTP/1.1\r\nhost: ${VIP}\r\n\r\n`;

/** `bytes` get `status`, the backend sees nothing, and the next good request (raw, then a client's) is served. */
async function hostile(t: Test, name: string, bytes: string | Buffer, status: number | 'closed'): Promise<void> {
  const hits = echo.hits();
  t.equal(await raw(bytes), status, `${name}: ${status}`);
  t.equal(echo.hits(), hits, `${name}: the backend saw nothing`);
  t.equal(await raw(GOOD), 200, `${name}: the next request is served`);
}

t.test('the control: a well-formed request is served', async (t) => {
  t.equal(await raw(GOOD), 200);
  t.equal((await request(agent, `http://${VIP}/ok`)).status, 200, 'and through a client');
});

t.test('HTTP/1.1: hostile requests get 400 or 431 and the waypoint keeps serving', async (t) => {
  const h = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;
  const req = (extra: string[], target = '/x') => h([`GET ${target} HTTP/1.1`, `host: ${VIP}`, ...extra]);
  await hostile(t, 'a 70 KiB header (limit 60 KiB)', req([`x-big: ${'a'.repeat(70 * 1024)}`]), 431);
  await hostile(t, 'a 70 KiB request target', req([], `/${'a'.repeat(70 * 1024)}`), 431);
  await hostile(t, '101 headers (limit 100, as Envoy)', req(Array.from({ length: 101 }, (_, i) => `x-h${i}: v`)), 431);
  await hostile(t, 'a bare CR in a value', req(['x-a: a\rb']), 400);
  await hostile(t, 'a NUL in a value', req(['x-a: a\0b']), 400);
  await hostile(t, 'a control character in a value', req(['x-a: a\u0001b']), 400);
  await hostile(t, 'obsolete line folding', req(['x-a: a', ' folded']), 400);
  await hostile(t, 'a space before the colon', req(['x-a : b']), 400);
  await hostile(t, 'Content-Length and Transfer-Encoding together', h(['POST /x HTTP/1.1', `host: ${VIP}`, 'content-length: 3', 'transfer-encoding: chunked', '', '0', '']), 400);
  await hostile(t, 'no Host', h(['GET /x HTTP/1.1']), 400);
  await hostile(t, 'two Host headers', h(['GET /x HTTP/1.1', `host: ${VIP}`, 'host: evil.example']), 400);
  await hostile(t, 'a Host with a space', h(['GET /x HTTP/1.1', 'host: a b']), 400);
  await hostile(t, 'a Host with a userinfo', h(['GET /x HTTP/1.1', `host: user@${VIP}`]), 400);
  await hostile(t, 'a Host with a path', h(['GET /x HTTP/1.1', `host: ${VIP}/admin`]), 400);
  await hostile(t, 'a Host with a bad port', h(['GET /x HTTP/1.1', `host: ${VIP}:80a`]), 400);
  await hostile(t, 'a relative target', req([], 'x'), 400);
  await hostile(t, 'an absolute-form target with a userinfo', req([], `http://user@${VIP}/x`), 400);
  await hostile(t, 'an absolute-form target with a fragment', req([], `http://${VIP}/x#f`), 400);
  const hits = echo.hits();
  t.equal(await raw(h([`GET http://${VIP}/ok?q=1 HTTP/1.1`, 'host: elsewhere.example'])), 200, 'the absolute-form is served (RFC 9112, 3.2.2), its authority in place of Host');
  t.equal(echo.hits(), hits + 1, 'and reached the backend');
  await hostile(t, 'an asterisk target with GET', req([], '*'), 400);
  await hostile(t, 'a NUL in the target', req([], '/a\0b'), 400);
  await hostile(t, 'a fragment in the target', req([], '/a#b'), 400);
  await hostile(t, 'an unknown HTTP version', h(['GET /x HTTP/1.7', `host: ${VIP}`]), 400);
});

/** One h2c request on a fresh tunnel: the status, or how the stream ended. */
async function h2c(headers: http2.OutgoingHttpHeaders): Promise<number | string> {
  const socket = await tunnel(H2_VIP);
  socket.resume();
  const session = http2.connect(`http://${H2_VIP}`, { createConnection: () => socket });
  session.on('error', () => {});
  try {
    const stream = session.request(headers);
    stream.on('error', () => {});
    stream.resume();
    return await new Promise((resolve) => {
      stream.once('response', (h) => resolve(Number(h[':status'])));
      stream.once('close', () => resolve(`reset ${stream.rstCode}`));
    });
  } finally {
    session.destroy();
  }
}

t.test('h2c: hostile requests get 400 or a stream reset and the waypoint keeps serving', async (t) => {
  const ok = { ':method': 'GET', ':path': '/ok', ':authority': H2_VIP };
  t.equal(await h2c(ok), 200, 'the control');
  const cases: [string, http2.OutgoingHttpHeaders, number | RegExp][] = [
    ['101 headers (limit 100, as Envoy)', { ...ok, ...Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`x-h${i}`, 'v'])) }, /^reset/],
    ['a 70 KiB header', { ...ok, 'x-big': 'a'.repeat(70 * 1024) }, /^reset/],
    ['an :authority with a space', { ...ok, ':authority': 'a b' }, /^reset/],
    ['an :authority with a userinfo', { ...ok, ':authority': `user@${H2_VIP}` }, 400],
    ['an :authority with a path', { ...ok, ':authority': `${H2_VIP}/admin` }, /^reset|^400$/],
    ['a relative :path', { ...ok, ':path': 'x' }, /^reset/],
  ];
  for (const [name, headers, outcome] of cases) {
    const hits = h2Hits;
    const got = await h2c(headers);
    if (typeof outcome === 'number') t.equal(got, outcome, `${name}: ${outcome}`);
    else t.match(String(got), outcome, `${name}: ${outcome}`);
    t.equal(h2Hits, hits, `${name}: the backend saw nothing`);
    t.equal(await h2c(ok), 200, `${name}: the next request is served`);
  }
});

t.test('no exception left the waypoint', async (t) => {
  t.same(uncaught, [], 'no uncaught exception during the hostile requests');
  t.equal((await request(agent, `http://${VIP}/ok`)).status, 200, 'still serving');
});
