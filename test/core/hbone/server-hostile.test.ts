/**
 * Issue 19, item 2 at the HBONE boundary: hostile CONNECT requests over real TLS + HTTP/2 sockets
 * to an in-process `HboneServer`. Each gets its documented outcome (400 `ERR_HBONE_BAD_REQUEST`,
 * flag DPE, from the server; a stream reset from nghttp2 for what HTTP/2 itself forbids), the
 * proxy behind the server (`onStream`) sees only well-formed requests, no exception leaves the
 * boundary, and the server keeps serving the next good request.
 */
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import tls from 'node:tls';
import { once } from 'node:events';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../../core/identity/csr.js';
import type { WorkloadCertificate } from '../../../core/identity/certificate.js';
import { HboneServer, type HboneRejection, type HboneStreamRequest } from '../../../core/hbone/server.js';
import { sniForIdentity } from '../../../core/hbone/tls.js';
import { silentLogger } from '../../../core/telemetry/log.js';

// 127.0.191.1: the HBONE server of this file.
const HOST = '127.0.191.1';
const ID = { client: 'spiffe://cluster.local/ns/default/sa/client', server: 'spiffe://cluster.local/ns/default/sa/server' };

// Any exception that leaves the boundary (a listener throwing, an unhandled 'error') reaches here.
const uncaught: Error[] = [];
const monitor = (err: Error) => uncaught.push(err);
process.on('uncaughtExceptionMonitor', monitor);
t.teardown(() => void process.off('uncaughtExceptionMonitor', monitor));

const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
async function mint(identity: string): Promise<WorkloadCertificate> {
  const { keyPem, csrPem } = await generateKeyAndCsr(identity);
  const { certChainPem } = ca.sign(csrPem);
  return { identity, keyPem, certChainPem, rootsPem: [ca.rootCertPem], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) };
}
const serverCert = await mint(ID.server);
const clientCert = await mint(ID.client);

const served: HboneStreamRequest[] = [];
const rejected: HboneRejection[] = [];
const server = new HboneServer({
  certificates: { fetch: async () => serverCert },
  logger: silentLogger,
  trustDomain: 'cluster.local',
  identityForSni: (sni) => (sni === sniForIdentity(ID.server) ? ID.server : undefined),
  onStream: (req) => {
    served.push(req);
    req.stream.respond({ ':status': 200 });
    req.stream.end();
  },
  onReject: (r) => rejected.push(r),
});
const { port } = await server.listen(0, HOST);
t.teardown(() => server.close());

function tlsSocket(): tls.TLSSocket {
  const s = tls.connect({
    host: HOST,
    port,
    key: clientCert.keyPem,
    cert: clientCert.certChainPem.join('\n'),
    ca: [ca.rootCertPem],
    servername: sniForIdentity(ID.server),
    ALPNProtocols: ['h2'],
    checkServerIdentity: () => undefined,
    minVersion: 'TLSv1.3',
  });
  s.on('error', () => {});
  return s;
}

/** One CONNECT on a fresh connection: the status, or how the stream ended without one. */
async function connect(headers: http2.OutgoingHttpHeaders): Promise<number | string> {
  const session = http2.connect(`https://${HOST}:${port}`, { createConnection: () => tlsSocket() });
  session.on('error', () => {});
  try {
    const stream = session.request({ ':method': 'CONNECT', ...headers }, { endStream: false });
    stream.on('error', () => {});
    return await new Promise((resolve) => {
      stream.once('response', (h) => resolve(Number(h[':status'])));
      // A refusal by nghttp2 (RST_STREAM, GOAWAY) closes the stream without a response.
      stream.once('close', () => resolve(`reset ${stream.rstCode}`));
    });
  } finally {
    session.destroy();
  }
}

const GOOD = `${HOST}:9090`;

/** Asserts `headers` get `outcome`, reach no proxy, and that the next good CONNECT is served. */
async function hostile(t: Test, name: string, headers: http2.OutgoingHttpHeaders, outcome: number | RegExp): Promise<void> {
  const before = served.length;
  const got = await connect(headers);
  if (typeof outcome === 'number') t.equal(got, outcome, `${name}: ${outcome}`);
  else t.match(String(got), outcome, `${name}: ${outcome}`);
  t.equal(served.length, before, `${name}: nothing reaches the proxy`);
  t.equal(await connect({ ':authority': GOOD }), 200, `${name}: the next good CONNECT is served`);
}

t.test('a bad :authority gets 400 (ERR_HBONE_BAD_REQUEST, DPE) and the server keeps serving', async (t) => {
  const before = rejected.length;
  const cases: [string, string][] = [
    ['a name, not an IP', 'web.default.svc:9090'],
    ['no port', HOST],
    ['port 0', `${HOST}:0`],
    ['port 65536', `${HOST}:65536`],
    ['a 1,000-digit port', `${HOST}:${'9'.repeat(1000)}`],
    ['leading zeros in an octet', '127.0.191.01:9090'],
    ['an octet over 255', '127.0.191.256:9090'],
    ['colons only in brackets', '[::::]:9090'],
    ['two groups in brackets', '[1:2]:9090'],
    ['a zone', '[fe80::1%25eth0]:9090'],
    ['8 KiB of garbage', 'x'.repeat(8 * 1024)],
    ['a bidi override', `${HOST}\u202e:9090`],
  ];
  for (const [name, authority] of cases) await hostile(t, name, { ':authority': authority }, 400);
  const mine = rejected.slice(before);
  t.equal(mine.length, cases.length, 'each refusal reported once');
  t.same([...new Set(mine.map((r) => r.flag))], ['DPE'], 'all with flag DPE');
  t.ok(mine.every((r) => r.reason.length < 400), 'reasons quote the authority cut, not 8 KiB of it');
});

t.test('IPv6 authorities and Forwarded are read as the canonical addresses the model stores', async (t) => {
  served.length = 0;
  t.equal(await connect({ ':authority': '[FD00:0:0::0001]:9090', forwarded: 'for="[FD00::0002]:4567"' }), 200);
  t.equal(await connect({ ':authority': '[::ffff:10.0.0.1]:9090', forwarded: 'for="[::::]:1"' }), 200);
  t.equal(await connect({ ':authority': GOOD, forwarded: `for=${'a'.repeat(12 * 1024)}` }), 200);
  t.same(
    served.map((r) => ({ ip: r.targetIp, port: r.targetPort, fwd: r.forwardedFor })),
    [
      { ip: 'fd00::1', port: 9090, fwd: { ip: 'fd00::2', port: 4567 } },
      { ip: '10.0.0.1', port: 9090, fwd: undefined },
      { ip: HOST, port: 9090, fwd: undefined },
    ],
    'a malformed Forwarded is ignored (the TCP peer is the source), never an address',
  );
});

t.test('what HTTP/2 forbids is reset before the server sees it; the server keeps serving', async (t) => {
  await hostile(t, 'GET instead of CONNECT', { ':method': 'GET', ':path': '/', ':authority': GOOD }, 400);
  await hostile(t, '65 headers (the server allows 64 pairs)', Object.fromEntries([[':authority', GOOD], ...Array.from({ length: 65 }, (_, i) => [`x-h${i}`, 'v'])]), /^reset/);
  // Before the client acknowledges the server's SETTINGS nghttp2 holds it to 64 KiB; the server
  // applies its 16 KiB itself, so the outcome does not depend on that race.
  const before = rejected.length;
  await hostile(t, 'a 20 KiB header block (the limit is 16 KiB)', { ':authority': GOOD, 'x-big': 'a'.repeat(20 * 1024) }, 400);
  t.match(rejected[before], { flag: 'DPE', reason: /header list of \d+ bytes exceeds 16384/ }, 'refused as DPE, the size said');
  await hostile(t, 'a 100 KiB header block', { ':authority': GOOD, 'x-big': 'a'.repeat(100 * 1024) }, /^reset/);
  // baggage and traceparent are carried, not parsed, by the HBONE server: hostile ones change nothing.
  served.length = 0;
  t.equal(await connect({ ':authority': GOOD, baggage: '\u202e'.repeat(1000), traceparent: 'zz-'.repeat(1000) }), 200, 'hostile baggage/traceparent');
  t.equal(served[0]?.targetIp, HOST);
});

/**
 * CR, LF and NUL in a field value: Node's client refuses to send them, so the HEADERS frame is
 * written by hand (HPACK literals without Huffman coding) on a real TLS connection.
 */
function rawHeadersFrame(fields: [string, string][]): Buffer {
  const lit = (s: string) => {
    const b = Buffer.from(s, 'latin1');
    if (b.length > 126) throw new RangeError('invariant: short literals only');
    return Buffer.concat([Buffer.from([b.length]), b]);
  };
  const block = Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0x00]), lit(n), lit(v)])));
  const head = Buffer.alloc(9);
  head.writeUIntBE(block.length, 0, 3);
  head[3] = 0x1; // HEADERS
  head[4] = 0x4; // END_HEADERS
  head.writeUInt32BE(1, 5); // stream 1
  return Buffer.concat([head, block]);
}

/** Sends one hand-made CONNECT; resolves with the first frame the server sends on stream 1 (1 HEADERS with its status, 3 RST_STREAM) or GOAWAY (7). */
async function rawConnect(fields: [string, string][]): Promise<{ type: number; errorCode?: number; status?: number }> {
  const s = tlsSocket();
  await once(s, 'secureConnect');
  const settings = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
  s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), settings, rawHeadersFrame(fields)]));
  let buf = Buffer.alloc(0);
  try {
    return await new Promise((resolve, reject) => {
      s.on('close', () => reject(new Error('closed without an answer on stream 1')));
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3);
          if (buf.length < 9 + len) return;
          const type = buf[3]!;
          const stream = buf.readUInt32BE(5) & 0x7fffffff;
          const payload = buf.subarray(9, 9 + len);
          buf = buf.subarray(9 + len);
          if (type === 7) return resolve({ type, errorCode: payload.readUInt32BE(4) });
          if (stream === 1 && type === 3) return resolve({ type, errorCode: payload.readUInt32BE(0) });
          // :status 200 and 400 are HPACK static-table entries 8 and 12 (RFC 7541, appendix A).
          if (stream === 1 && type === 1) return resolve({ type, status: ({ 0x88: 200, 0x8c: 400 } as Record<number, number>)[payload[0]!] ?? -1 });
        }
      });
    });
  } finally {
    s.destroy();
  }
}

t.test('CR, LF and NUL: reset (RST_STREAM PROTOCOL_ERROR) in :authority, the field dropped elsewhere, by HTTP/2 itself', async (t) => {
  const good: [string, string][] = [[':method', 'CONNECT'], [':authority', GOOD]];
  const ok = await rawConnect(good);
  t.same(ok, { type: 1, status: 200 }, 'the hand-made frame is a valid CONNECT: answered with HEADERS (the control)');
  const before = served.length;
  const cases: [string, [string, string][]][] = [
    ['CR LF in :authority', [[':method', 'CONNECT'], [':authority', `${GOOD}\r\nx-injected: 1`]]],
    ['NUL in :authority', [[':method', 'CONNECT'], [':authority', `${GOOD}\0`]]],
    ['an upper-case header name', [...good, ['X-Up', '1']]],
  ];
  for (const [name, fields] of cases) {
    t.same(await rawConnect(fields), { type: 3, errorCode: http2.constants.NGHTTP2_PROTOCOL_ERROR }, name);
  }
  // In a regular field nghttp2 drops the field and the request goes on without it: the value
  // reaches nothing (no parser, log or next hop).
  for (const [name, field] of [
    ['LF in forwarded', ['forwarded', 'for="10.0.0.1:1"\nx: y']],
    ['CR in baggage', ['baggage', 'a\rb']],
    ['NUL in traceparent', ['traceparent', '00-\0']],
  ] as [string, [string, string]][]) {
    const n = served.length;
    t.same(await rawConnect([...good, field]), { type: 1, status: 200 }, `${name}: served`);
    t.equal(served[n]?.headers[field[0]], undefined, `${name}: without the field`);
    t.equal(served[n]?.forwardedFor, undefined, `${name}: no Forwarded address read`);
  }
  served.length = before;
  t.equal(served.length, before + 0, 'none reached the proxy');
  t.equal(await connect({ ':authority': GOOD }), 200, 'the server keeps serving');
});

t.test('no exception left the boundary', async (t) => {
  t.same(uncaught, [], 'no uncaught exception during the hostile requests');
});
