import t from 'tap';
import http2 from 'node:http2';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { encodeCsr, generateKeyAndCsr } from '../../core/identity/csr.js';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { controlPlaneTlsOptions } from '../../core/identity/control-plane-tls.js';
import { TrustAnchors } from '../../core/identity/trust-anchors.js';
import { readRootsFile } from '../../core/discovery/client.js';
import { CA_PATH, DISCOVERY_PATH, controlPlaneIdentity, ztunnelIdentity } from '../../core/discovery/wire.js';
import type { WorkloadCertificate } from '../../core/identity/certificate.js';
import { makeFiles, manifestYaml, namespace, pod, startControlPlane, writeAtomic } from './helpers.js';

// What refused requests get, on a control plane at 127.0.6.1 (node-a .2, node-b .3, pods .10/.20).
const base = '127.0.6';
const files = await makeFiles(t.testdir(), [
  { name: 'node-a', address: `${base}.2` },
  { name: 'node-b', address: `${base}.3` },
]);
await writeAtomic(
  join(files.manifests, 'apps.yaml'),
  manifestYaml([
    namespace('default', { 'istio.io/dataplane-mode': 'ambient' }),
    pod('client', { node: 'node-a', ip: `${base}.10` }),
    pod('server', { node: 'node-b', ip: `${base}.20` }),
  ]),
);
const cp = await startControlPlane(files, `${base}.1`, { METRICS_PORT: '0', READINESS_PORT: '0', ADMIN_PORT: '0' });
t.teardown(() => cp.close());
const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/client';
const trust = new TrustAnchors(await readRootsFile(files.certFile));
const url = `https://${base}.1:${cp.addresses.server.port}`;
const tokenA = files.tokens['node-a']!;

function session(cert?: WorkloadCertificate): http2.ClientHttp2Session {
  const s = http2.connect(url, controlPlaneTlsOptions({ trust, serverIdentity: controlPlaneIdentity('cluster.local'), ...(cert ? { clientCertificate: cert } : {}) }));
  s.on('error', () => undefined);
  return s;
}

async function call(
  s: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string | Buffer,
): Promise<{ status: number; json: { error?: { code: string; message: string }; certChain?: string[]; roots?: string[] } }> {
  return new Promise((resolve, reject) => {
    const req = s.request(headers);
    let status = 0;
    const chunks: Buffer[] = [];
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      try {
        resolve({ status, json: JSON.parse(text) });
      } catch {
        reject(new Error(`status ${status}, body ${text}`));
      }
    });
    req.on('error', reject);
    req.end(body);
  });
}

function sign(s: http2.ClientHttp2Session, body: unknown, token: string | null = tokenA) {
  return call(
    s,
    { ':method': 'POST', ':path': CA_PATH, 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) },
    typeof body === 'string' ? body : JSON.stringify(body),
  );
}

async function refusedCount(): Promise<number> {
  const m = await cp.metrics.registry.getSingleMetric('control_plane_csr_requests_total')!.get();
  return m.values.filter((v) => v.labels.result === 'refused').reduce((a, v) => a + v.value, 0);
}

t.test('certificate requests: every bad one is refused with a clear reason and counted, never signed', async (t) => {
  const s = session();
  t.teardown(() => s.close());
  const good = await generateKeyAndCsr(CLIENT_ID);
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const tampered = (() => {
    // Flip a byte inside the signature (the last bytes of the DER): structure intact, signature wrong.
    const der = Buffer.from(good.csrPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    der[der.length - 3]! ^= 0x01;
    return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
  })();
  const before = await refusedCount();
  const cases: [string, Promise<{ status: number; json: { error?: { code: string; message: string } } }>, number, string, RegExp][] = [
    ['no token', sign(s, { csr: good.csrPem }, null), 401, 'ERR_UNAUTHENTICATED', /missing "authorization: Bearer/],
    ['a wrong token', sign(s, { csr: good.csrPem }, 'x'.repeat(40)), 401, 'ERR_UNAUTHENTICATED', /not valid for any node/],
    ['a body that is not JSON', sign(s, 'csr=abc'), 400, 'ERR_BAD_REQUEST', /not JSON/],
    ['an unknown field', sign(s, { csr: good.csrPem, node: 'node-b' }), 400, 'ERR_BAD_REQUEST', /unknown field "node"/],
    ['a negative ttl', sign(s, { csr: good.csrPem, ttlSeconds: -1 }), 400, 'ERR_BAD_REQUEST', /ttlSeconds/],
    ['garbage instead of a CSR', sign(s, { csr: 'hello' }), 400, 'ERR_CSR_REJECTED', /not a pem pkcs#10 request/],
    [
      'several SANs',
      sign(s, { csr: encodeCsr(p256, [{ type: 'uri', value: CLIENT_ID }, { type: 'uri', value: 'spiffe://cluster.local/ns/default/sa/server' }]) }),
      400,
      'ERR_CSR_REJECTED',
      /exactly one subject alternative name/,
    ],
    [
      'several SANs, with the identity named',
      sign(s, { csr: encodeCsr(p256, [{ type: 'uri', value: CLIENT_ID }, { type: 'dns', value: 'evil.example' }]), identity: CLIENT_ID }),
      400,
      'ERR_CSR_REJECTED',
      /exactly one subject alternative name/,
    ],
    ['a DNS SAN', sign(s, { csr: encodeCsr(p256, [{ type: 'dns', value: 'client.default.svc' }]) }), 400, 'ERR_CSR_REJECTED', /found DNS:client.default.svc/],
    ['a URI that is not SPIFFE', sign(s, { csr: encodeCsr(p256, [{ type: 'uri', value: 'https://example.com/x' }]) }), 400, 'ERR_CSR_REJECTED', /is not a spiffe id/],
    [
      'another trust domain',
      sign(s, { csr: encodeCsr(p256, [{ type: 'uri', value: 'spiffe://evil.local/ns/default/sa/client' }]) }),
      400,
      'ERR_CSR_REJECTED',
      /trust domain evil.local; this ca signs for cluster.local only/,
    ],
    ['a bad signature', sign(s, { csr: tampered, identity: CLIENT_ID }), 400, 'ERR_CSR_REJECTED', /signature does not verify|malformed/],
    ['a P-384 key', sign(s, { csr: encodeCsr(p384, [{ type: 'uri', value: CLIENT_ID }]) }), 400, 'ERR_CSR_REJECTED', /must be ECDSA P-256/],
    ['an RSA key', sign(s, { csr: encodeCsr(rsa, [{ type: 'uri', value: CLIENT_ID }]) }), 400, 'ERR_CSR_REJECTED', /must be ECDSA P-256/],
    [
      'an identity other than the CSR\'s',
      sign(s, { csr: encodeCsr(p256, [{ type: 'uri', value: 'spiffe://cluster.local/ns/default/sa/other' }]), identity: CLIENT_ID }),
      400,
      'ERR_CSR_REJECTED',
      /asks for spiffe:\/\/cluster.local\/ns\/default\/sa\/other but the requester is authorized for/,
    ],
    ['another node\'s workload', sign(s, { csr: (await generateKeyAndCsr('spiffe://cluster.local/ns/default/sa/server')).csrPem }), 403, 'ERR_IDENTITY_NOT_ALLOWED', /node node-a may not obtain/],
    ['a workload that does not exist', sign(s, { csr: (await generateKeyAndCsr('spiffe://cluster.local/ns/default/sa/nobody')).csrPem }), 403, 'ERR_IDENTITY_NOT_ALLOWED', /may not obtain/],
    ['a body over 64 KiB', sign(s, { csr: 'x'.repeat(70 * 1024) }), 413, 'ERR_TOO_LARGE', /larger than/],
    ['GET', call(s, { ':method': 'GET', ':path': CA_PATH, authorization: `Bearer ${tokenA}` }), 405, 'ERR_METHOD', /use POST/],
  ];
  for (const [what, p, status, code, msg] of cases) {
    const r = await p;
    t.equal(r.status, status, `${what}: ${status}`);
    t.equal(r.json.error?.code, code, `${what}: ${code}`);
    t.match(r.json.error?.message ?? '', msg, `${what}: says why`);
  }
  t.equal(await refusedCount(), before + cases.length, 'each refusal is counted');

  const ok = await sign(s, { csr: good.csrPem, ttlSeconds: 10 * 365 * 86400 });
  t.equal(ok.status, 200, 'a good request from the right node is signed');
  const leaf = new X509Certificate(ok.json.certChain![0]!);
  t.equal(leaf.subjectAltName, `URI:${CLIENT_ID}`);
  t.ok(new Date(leaf.validTo).getTime() <= Date.now() + 24 * 3600_000 + 5000, 'a requested lifetime beyond the cap is capped at 24 h');
  t.ok(leaf.verify(new X509Certificate(ok.json.roots![0]!).publicKey), 'signed by the root in the returned bundle');
  const ztOk = await sign(s, { csr: (await generateKeyAndCsr(ztunnelIdentity('cluster.local'))).csrPem });
  t.equal(ztOk.status, 200, 'every authenticated node may obtain the ztunnel identity');
});

t.test('discovery: requests without the right credentials are refused', async (t) => {
  const ca = await CertificateAuthority.load(files.certFile, files.keyFile, 'cluster.local');
  const certFor = async (id: string): Promise<WorkloadCertificate> => {
    const { keyPem, csrPem } = await generateKeyAndCsr(id);
    const signed = ca.sign(csrPem);
    return { identity: id, keyPem, certChainPem: signed.certChainPem, rootsPem: ca.trustBundlePem, notBefore: signed.notBefore, notAfter: signed.notAfter };
  };
  const otherCa = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  const foreign = await (async () => {
    const { keyPem, csrPem } = await generateKeyAndCsr(ztunnelIdentity('cluster.local'));
    const signed = otherCa.sign(csrPem);
    return { identity: ztunnelIdentity('cluster.local'), keyPem, certChainPem: signed.certChainPem, rootsPem: otherCa.trustBundlePem, notBefore: signed.notBefore, notAfter: signed.notAfter };
  })();
  const zt = await certFor(ztunnelIdentity('cluster.local'));
  const workload = await certFor(CLIENT_ID);
  const get = (cert: WorkloadCertificate | undefined, path: string, token?: string) => {
    const s = session(cert);
    return call(s, { ':method': 'GET', ':path': path, ...(token ? { authorization: `Bearer ${token}` } : {}) }).finally(() => s.close());
  };
  const cases: [string, ReturnType<typeof get>, number, string, RegExp][] = [
    ['no client certificate', get(undefined, `${DISCOVERY_PATH}?node=node-a`, tokenA), 401, 'ERR_UNAUTHENTICATED', /client certificate issued by the mesh ca/],
    ['a certificate from another CA', get(foreign, `${DISCOVERY_PATH}?node=node-a`, tokenA), 401, 'ERR_UNAUTHENTICATED', /client certificate/],
    ['the ztunnel identity without a token', get(zt, `${DISCOVERY_PATH}?node=node-a`), 401, 'ERR_UNAUTHENTICATED', /node token/],
    ['the ztunnel identity with another node\'s name', get(zt, `${DISCOVERY_PATH}?node=node-b`, tokenA), 403, 'ERR_IDENTITY_NOT_ALLOWED', /belongs to node node-a, not node-b/],
    ['a workload identity', get(workload, `${DISCOVERY_PATH}?node=node-a`, tokenA), 403, 'ERR_IDENTITY_NOT_ALLOWED', /may not subscribe/],
    ['a malformed since', get(zt, `${DISCOVERY_PATH}?node=node-a&since=abc`, tokenA), 400, 'ERR_BAD_REQUEST', /not a version/],
    ['an unknown proxy kind', get(zt, `${DISCOVERY_PATH}?proxy=sidecar`, tokenA), 400, 'ERR_BAD_REQUEST', /expected ztunnel or waypoint/],
    ['an unknown path', get(zt, '/v1/nothing', tokenA), 404, 'ERR_NOT_FOUND', /no such endpoint/],
  ];
  for (const [what, p, status, code, msg] of cases) {
    const r = await p;
    t.equal(r.status, status, `${what}: ${status}`);
    t.equal(r.json.error?.code, code, `${what}: ${code}`);
    t.match(r.json.error?.message ?? '', msg, `${what}: says why`);
  }
  const m = await cp.metrics.registry.getSingleMetric('control_plane_discovery_rejected_total')!.get();
  t.ok(m.values.reduce((a, v) => a + v.value, 0) >= cases.length - 1, 'discovery refusals are counted');
});
