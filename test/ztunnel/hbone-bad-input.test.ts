import t from 'tap';
import tls from 'node:tls';
import net from 'node:net';
import http2 from 'node:http2';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startMesh, baseConfig, counterValue } from '../helpers/mesh.js';
import { echoServer, closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../core/identity/csr.js';
import { sniForIdentity } from '../../core/hbone/tls.js';
import { HboneClient } from '../../core/hbone/client.js';
import { silentLogger } from '../../core/telemetry/log.js';

// 127.0.2.2 = ztunnel node-a, .3 = node-b, .10 = client, .20 = server.
const base = '127.0.2';
const SERVER = `${base}.20`;
const ID = {
  client: 'spiffe://cluster.local/ns/default/sa/client',
  server: 'spiffe://cluster.local/ns/default/sa/server',
};

const echo = await echoServer(SERVER, 9090);
const dir = t.testdir();
const mesh = await startMesh({ dir, base, config: baseConfig(base) });
t.teardown(async () => {
  await mesh.close();
  await closeServer(echo.server);
});
const hbonePeer = { host: mesh.addr.b, port: 15008 };
const rootCertPem = await readFile(join(dir, 'root-cert.pem'), 'utf8');
const rootKeyPem = await readFile(join(dir, 'root-key.pem'), 'utf8');

interface Creds {
  keyPem: string;
  certChainPem: string[];
}
async function mint(ca: CertificateAuthority, identity: string, ttlSeconds?: number): Promise<Creds> {
  const { keyPem, csrPem } = await generateKeyAndCsr(identity);
  const signed = ca.sign(csrPem, ttlSeconds ? { ttlSeconds } : {});
  return { keyPem, certChainPem: signed.certChainPem };
}

/** A TLS connection to node-b's HBONE port with the given client credentials; resolves or rejects on handshake. */
async function tlsTo(creds: Creds | undefined, opts: { alpn?: string[]; sni?: string } = {}): Promise<tls.TLSSocket> {
  const socket = tls.connect({
    ...hbonePeer,
    ...(creds ? { key: creds.keyPem, cert: creds.certChainPem.join('\n') } : {}),
    ca: [rootCertPem],
    servername: opts.sni ?? sniForIdentity(ID.server),
    ALPNProtocols: opts.alpn ?? ['h2'],
    checkServerIdentity: () => undefined,
    minVersion: 'TLSv1.3',
  });
  // TLS 1.3 alerts for a refused client certificate arrive after secureConnect.
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  return socket;
}

/** Resolves once the socket is closed by the peer (or errors), with whether any byte came back. */
async function closedByPeer(socket: net.Socket, timeoutMs = 3000): Promise<boolean> {
  socket.on('error', () => {});
  socket.resume();
  const closed = new Promise<boolean>((r) => socket.once('close', () => r(true)));
  const timer = new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs));
  return Promise.race([closed, timer]);
}

async function connectStatus(creds: Creds, headers: Record<string, string>): Promise<number | string> {
  const socket = await tlsTo(creds);
  const session = http2.connect(`https://${hbonePeer.host}:${hbonePeer.port}`, { createConnection: () => socket });
  session.on('error', () => {});
  try {
    const stream = session.request(headers, { endStream: false });
    stream.on('error', () => {});
    const result = await Promise.race([
      once(stream, 'response').then(([h]) => Number((h as http2.IncomingHttpHeaders)[':status'])),
      new Promise<string>((r) => stream.once('close', () => r(`closed (rst ${stream.rstCode})`))),
    ]);
    stream.destroy();
    return result;
  } finally {
    session.destroy();
  }
}

const flagCount = (flag: string) => counterValue(mesh.b, 'istio_tcp_connections_opened_total', { reporter: 'destination', response_flags: flag });

t.test('non-TLS bytes on 15008 are dropped and counted', async (t) => {
  const before = await flagCount('TLS');
  const s = net.connect(hbonePeer);
  await once(s, 'connect');
  s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.ok(await closedByPeer(s), 'connection closed');
  t.equal(await flagCount('TLS'), before + 1, 'counted with response_flags TLS');
});

t.test('a client certificate from another root is refused in the handshake', async (t) => {
  const other = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  const creds = await mint(other, ID.client);
  const before = await flagCount('TLS');
  // TLS 1.3: the client finishes its side before the server checks the certificate; the server then aborts.
  const s = await tlsTo(creds).catch((e: Error) => e);
  if (s instanceof tls.TLSSocket) t.ok(await closedByPeer(s), 'server closed the connection');
  else t.match(s.message, /alert|certificate|socket/i);
  // The server counts the refusal when it closes its side, which may follow the client's view.
  await until('the refused handshake to be counted', async () => (await flagCount('TLS')) > before);
  t.equal(await flagCount('TLS'), before + 1, 'counted with response_flags TLS');
});

t.test('no client certificate at all is refused', async (t) => {
  const s = await tlsTo(undefined).catch((e: Error) => e);
  if (s instanceof tls.TLSSocket) t.ok(await closedByPeer(s));
  else t.match(s.message, /alert|certificate|socket/i);
});

t.test('an expired client certificate is refused', async (t) => {
  const past = await CertificateAuthority.create({
    trustDomain: 'cluster.local',
    rootCertPem,
    rootKeyPem,
    now: () => Date.now() - 3 * 3600_000,
  });
  const creds = await mint(past, ID.client, 3600);
  const s = await tlsTo(creds).catch((e: Error) => e);
  if (s instanceof tls.TLSSocket) t.ok(await closedByPeer(s), 'server closed the connection');
  else t.match(s.message, /alert|expired|certificate|socket/i);
});

t.test('a certificate from another trust domain, even under the mesh root, is refused', async (t) => {
  const foreign = await CertificateAuthority.create({ trustDomain: 'evil.local', rootCertPem, rootKeyPem });
  const creds = await mint(foreign, 'spiffe://evil.local/ns/default/sa/client');
  const before = await flagCount('TLS');
  const s = await tlsTo(creds);
  t.ok(await closedByPeer(s), 'server closed the session after the handshake');
  t.equal(await flagCount('TLS'), before + 1);
});

t.test('an SNI naming no local identity is refused', async (t) => {
  const creds = await mint(mesh.ca, ID.client);
  const s = await tlsTo(creds, { sni: sniForIdentity('spiffe://cluster.local/ns/default/sa/client') }).catch((e: Error) => e);
  // The client workload lives on node-a: node-b must not present (or even hold) its certificate.
  t.type(s, Error, 'handshake failed');
});

t.test('malformed CONNECT requests get 400 and are counted', async (t) => {
  const creds = await mint(mesh.ca, ID.client);
  const before = await flagCount('DPE');
  t.equal(await connectStatus(creds, { ':method': 'GET', ':path': '/', ':authority': `${SERVER}:9090` }), 400, 'GET is not CONNECT');
  t.equal(await connectStatus(creds, { ':method': 'CONNECT', ':authority': 'server.default:9090' }), 400, 'authority must be ip:port');
  t.equal(await connectStatus(creds, { ':method': 'CONNECT', ':authority': `${SERVER}:99999` }), 400, 'port out of range');
  t.equal(await flagCount('DPE'), before + 3, 'each counted with response_flags DPE');
});

t.test('an authority that is not a meshed workload on this node gets 400 NR', async (t) => {
  const creds = await mint(mesh.ca, ID.client);
  const before = await flagCount('NR');
  t.equal(await connectStatus(creds, { ':method': 'CONNECT', ':authority': `${base}.99:9090` }), 400, 'unknown ip');
  t.equal(await connectStatus(creds, { ':method': 'CONNECT', ':authority': `${base}.10:9090` }), 400, 'a workload of another node');
  t.equal(await flagCount('NR'), before + 2);
});

t.test('an upstream that refuses gets 503 CONNECT', async (t) => {
  const creds = await mint(mesh.ca, ID.client);
  const before = await flagCount('CONNECT');
  t.equal(await connectStatus(creds, { ':method': 'CONNECT', ':authority': `${SERVER}:1` }), 503);
  t.equal(await flagCount('CONNECT'), before + 1);
});

t.test('oversized CONNECT headers are refused without a 200', async (t) => {
  const creds = await mint(mesh.ca, ID.client);
  const res = await connectStatus(creds, { ':method': 'CONNECT', ':authority': `${SERVER}:9090`, 'x-big': 'a'.repeat(64 * 1024) });
  t.not(res, 200, `refused: ${res}`);
  // The server keeps serving after abuse.
  t.equal(await connectStatus(creds, { ':method': 'CONNECT', ':authority': `${SERVER}:9090` }), 200);
});

t.test('a server presenting an identity the destination may not have is refused by the client', async (t) => {
  const client = new HboneClient({ certificates: { fetch: async () => ({ ...(await mint(mesh.ca, ID.client)), identity: ID.client, rootsPem: [rootCertPem], notBefore: new Date(), notAfter: new Date(Date.now() + 3600_000) }) }, logger: silentLogger });
  t.teardown(() => client.close());
  await t.rejects(
    client.connect({
      sourceIdentity: ID.client,
      serverIdentity: ID.server,
      allowedIdentities: ['spiffe://cluster.local/ns/default/sa/someone-else'],
      ...hbonePeer,
      authority: `${SERVER}:9090`,
      headers: {},
    }),
    { code: 'ERR_HBONE_PEER_IDENTITY', flag: 'PEER_ID', message: /presented identity spiffe:\/\/cluster.local\/ns\/default\/sa\/server/ },
  );
});

t.test('nothing leaks: every refused connection is closed on the server', async (t) => {
  let n = -1;
  await until('node-b to close every refused connection', async () => (n = await mesh.b.inboundConnectionCount()) === 0, { timeoutMs: 5000 });
  t.equal(n, 0, 'no connection left open on node-b\'s HBONE listener');
});
