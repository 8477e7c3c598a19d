import t from 'tap';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { CertificateAuthority, CLOCK_SKEW_ALLOWANCE_MS } from '../../../core/identity/ca.js';
import { peerSpiffeId } from '../../../core/identity/certificate.js';
import { encodeCsr, generateKeyAndCsr } from '../../../core/identity/csr.js';
import { EXT, parseCertificate, decodeSubjectKeyIdentifier } from '../../../core/identity/x509.js';
import { CsrRejectedError } from '../../../core/errors.js';
import { HTTPBIN, SLEEP, TD, opensslCsr, opensslRoot, opensslVerify, pem, pemBody } from './fixtures.js';

const ca = await CertificateAuthority.create({ trustDomain: TD });

t.test('signs a valid CSR: one URI SAN, empty subject, fixed extensions, chained to the root', async (t) => {
  const now = Date.UTC(2030, 5, 1, 12, 0, 0, 500);
  const fixed = await CertificateAuthority.create({ trustDomain: TD, now: () => now, ttlSeconds: 3600 });
  const { keyPem, csrPem } = await generateKeyAndCsr(SLEEP);
  const res = fixed.sign(csrPem);
  t.equal(res.identity, SLEEP);
  t.equal(res.certChainPem.length, 1, 'leaf only: peers hold the root');
  t.equal(res.notBefore.getTime(), Date.UTC(2030, 5, 1, 11, 59, 0), 'one minute back for clock skew, whole seconds');
  t.equal(res.notAfter.getTime(), Date.UTC(2030, 5, 1, 13, 0, 0), 'now + ttl');
  const leaf = new X509Certificate(res.certChainPem[0]!);
  const root = new X509Certificate(fixed.rootCertPem);
  t.ok(leaf.verify(root.publicKey), 'signed by the root');
  t.ok(leaf.checkIssued(root), 'issuer matches');
  t.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)), 'holds the CSR key');
  t.equal(leaf.subjectAltName, `URI:${SLEEP}`);
  t.equal(peerSpiffeId(leaf), SLEEP);
  t.equal(leaf.ca, false);
  t.equal(Date.parse(leaf.validFrom), res.notBefore.getTime());
  t.equal(Date.parse(leaf.validTo), res.notAfter.getTime());
  t.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.match(leaf.serialNumber, /^[0-9A-F]{1,32}$/);
  const p = parseCertificate(Buffer.from(leaf.raw));
  const rootSki = decodeSubjectKeyIdentifier(parseCertificate(Buffer.from(root.raw)).extensions.get(EXT.subjectKeyIdentifier)!.value);
  t.ok(p.extensions.get('2.5.29.35')!.value.includes(rootSki), 'authority key id = root subject key id');
  t.same(fixed.trustBundlePem, [fixed.rootCertPem]);
  t.equal(ca.sign(csrPem).certChainPem[0] === ca.sign(csrPem).certChainPem[0], false, 'fresh serial each time');
});

t.test('per-call ttl, capped at the root expiry', async (t) => {
  const { csrPem } = await generateKeyAndCsr(SLEEP);
  const now = Date.now();
  const short = ca.sign(csrPem, { ttlSeconds: 120 });
  t.ok(Math.abs(short.notAfter.getTime() - (now + 120_000)) < 2000);
  const nearEnd = await CertificateAuthority.create({
    trustDomain: TD,
    now: () => ca.rootNotAfter.getTime() - 3_600_000,
    rootCertPem: ca.rootCertPem,
    rootKeyPem: await exportKey(ca, t.testdir()),
  });
  t.equal(nearEnd.sign(csrPem).notAfter.getTime(), ca.rootNotAfter.getTime(), 'never outlives the root');
  // A CA whose clock then moves past the root's end refuses to issue.
  let clock = Date.now();
  const moving = await CertificateAuthority.create({ trustDomain: TD, now: () => clock, rootCertPem: ca.rootCertPem, rootKeyPem: await exportKey(ca, t.testdir()) });
  clock = ca.rootNotAfter.getTime() + 1000;
  t.throws(() => moving.sign(csrPem), { code: 'ERR_CA_ROOT_INVALID', message: /expired/ });
  t.throws(() => ca.sign(csrPem, { ttlSeconds: 0 }), { code: 'ERR_CSR_REJECTED', message: /ttl/ });
  t.throws(() => ca.sign(csrPem, { ttlSeconds: Number.NaN }), { code: 'ERR_CSR_REJECTED' });
});

async function exportKey(authority: CertificateAuthority, dir: string): Promise<string> {
  await authority.save(dir);
  return readFile(join(dir, 'root-key.pem'), 'utf8');
}

t.test('openssl verifies the leaf against the root, for TLS server and client use', async (t) => {
  const dir = t.testdir();
  const { csrPem } = await generateKeyAndCsr(SLEEP);
  const leaf = ca.sign(csrPem).certChainPem[0]!;
  t.match(opensslVerify(dir, ca.rootCertPem, leaf), /verify-leaf\.pem: OK/);
  t.match(opensslVerify(dir, ca.rootCertPem, leaf, 'sslserver'), /OK/);
  t.match(opensslVerify(dir, ca.rootCertPem, leaf, 'sslclient'), /OK/);
  const other = await CertificateAuthority.create({ trustDomain: TD });
  t.throws(() => opensslVerify(dir, other.rootCertPem, leaf), /unable to get local issuer|verification failed/);
});

t.test('a CSR made by openssl is accepted', async (t) => {
  const { csrPem } = opensslCsr(t.testdir(), 'p256', `URI:${HTTPBIN}`);
  t.equal(ca.sign(csrPem, { expectedIdentity: HTTPBIN }).identity, HTTPBIN);
});

t.test('refusals say what was wrong', async (t) => {
  const dir = t.testdir();
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const { csrPem: good } = await generateKeyAndCsr(SLEEP);
  const tampered = (() => {
    const der = pemBody(good);
    const at = der.indexOf(Buffer.from('sa/sleep'));
    der[at + 3] = 'k'.charCodeAt(0); // still a valid SPIFFE ID: only the signature can tell
    return pem('CERTIFICATE REQUEST', der);
  })();
  const cases: Array<[string, string, RegExp, { expectedIdentity?: string }?]> = [
    ['several SANs', opensslCsr(dir, 'p256', `URI:${SLEEP},URI:${HTTPBIN}`, 'two').csrPem, /exactly one subject alternative name.*found URI:spiffe:.*sleep, URI:spiffe:.*httpbin/],
    ['a URI and a DNS SAN', encodeCsr(p256, [{ type: 'uri', value: SLEEP }, { type: 'dns', value: 'sleep.default' }]), /found URI:.*, DNS:sleep\.default/],
    ['a DNS SAN', encodeCsr(p256, [{ type: 'dns', value: 'sleep.default.svc' }]), /is DNS:sleep\.default\.svc; it must be a uri/],
    ['no SAN', opensslCsr(dir, 'p256', undefined, 'nosan').csrPem, /found none/],
    ['a non-SPIFFE URI', encodeCsr(p256, [{ type: 'uri', value: 'https://sleep.example' }]), /not a spiffe id: .*scheme spiffe/],
    ['a malformed SPIFFE ID', encodeCsr(p256, [{ type: 'uri', value: `spiffe://${TD}/sleep` }]), /not a spiffe id/],
    ['another trust domain', encodeCsr(p256, [{ type: 'uri', value: 'spiffe://evil.local/ns/default/sa/sleep' }]), /in trust domain evil\.local; this ca signs for cluster\.local only/],
    ['a tampered CSR', tampered, /signature does not verify/],
    ['an RSA key', opensslCsr(dir, 'rsa', `URI:${SLEEP}`, 'rsa').csrPem, /key is rsaEncryption; workload keys must be ECDSA P-256/],
    ['a P-384 key', opensslCsr(dir, 'p384', `URI:${SLEEP}`, 'p384').csrPem, /key is ecPublicKey secp384r1; workload keys must be ECDSA P-256/],
    ['an identity other than expected', good, /asks for .*sleep but the requester is authorized for .*httpbin only/, { expectedIdentity: HTTPBIN }],
    ['garbage', 'garbage', /not a pem pkcs#10 request: .*no pem block/],
    ['a certificate instead of a CSR', ca.rootCertPem, /not a pem pkcs#10 request: .*"CERTIFICATE" where/],
    ['valid base64, not DER', `-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n`, /not a pem pkcs#10 request/],
  ];
  for (const [name, csr, message, opts] of cases) {
    t.throws(() => ca.sign(csr, opts), { name: 'CsrRejectedError', code: 'ERR_CSR_REJECTED', message }, name);
    try {
      ca.sign(csr, opts);
    } catch (err) {
      t.ok(err instanceof CsrRejectedError, `${name}: CsrRejectedError`);
      t.match((err as Error).message, /^certificate signing request rejected: [a-z]/, `${name}: lowercase message`);
    }
  }
});

t.test('operator-supplied roots', async (t) => {
  const dir = t.testdir();
  const { csrPem } = await generateKeyAndCsr(SLEEP);

  t.test('an openssl ECDSA root signs leaves openssl verifies', async (t) => {
    const root = opensslRoot(dir, 'p256', undefined, 'ec-root');
    const op = await CertificateAuthority.create({ trustDomain: TD, rootCertPem: root.certPem, rootKeyPem: root.keyPem });
    t.equal(op.rootCertPem.trim(), root.certPem.trim());
    const leaf = op.sign(csrPem).certChainPem[0]!;
    t.equal(new X509Certificate(leaf).issuer, 'O=ec-root');
    t.match(opensslVerify(dir, root.certPem, leaf), /OK/);
  });

  t.test('an RSA root signs with sha256WithRSAEncryption', async (t) => {
    const root = opensslRoot(dir, 'rsa', undefined, 'rsa-root');
    const op = await CertificateAuthority.create({ trustDomain: TD, rootCertPem: root.certPem, rootKeyPem: root.keyPem });
    const leaf = op.sign(csrPem).certChainPem[0]!;
    t.match(opensslVerify(dir, root.certPem, leaf, 'sslclient'), /OK/);
  });

  t.test('unusable roots are refused with a reason', async (t) => {
    const a = opensslRoot(dir, 'p256', undefined, 'a');
    const b = opensslRoot(dir, 'p256', undefined, 'b');
    const notCa = opensslRoot(dir, 'p256', ['basicConstraints=critical,CA:FALSE'], 'notca');
    const noCertSign = opensslRoot(dir, 'p256', ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'], 'nosign');
    const { csrPem: other } = opensslCsr(dir, 'p256', `URI:${SLEEP}`, 'x');
    const cases: Array<[string, string, string, RegExp]> = [
      ['key of another cert', a.certPem, b.keyPem, /does not match the root certificate/],
      ['not a CA', notCa.certPem, notCa.keyPem, /not a ca/],
      ['no keyCertSign', noCertSign.certPem, noCertSign.keyPem, /lacks keyCertSign/],
      ['garbage cert', 'nope', a.keyPem, /not a pem x\.509 certificate/],
      ['garbage key', a.certPem, 'nope', /not a pem private key/],
      ['a CSR as the cert', other, a.keyPem, /not a pem x\.509 certificate/],
    ];
    for (const [name, certPem, keyPem, message] of cases) {
      await t.rejects(CertificateAuthority.create({ trustDomain: TD, rootCertPem: certPem, rootKeyPem: keyPem }), { code: 'ERR_CA_ROOT_INVALID', message }, name);
    }
    await t.rejects(
      CertificateAuthority.create({ trustDomain: TD, rootCertPem: a.certPem, rootKeyPem: a.keyPem, now: () => Date.now() + 2 * 365 * 86_400_000 }),
      { code: 'ERR_CA_ROOT_INVALID', message: /expired at/ },
    );
    // A leaf of our own CA: signed by another key, so not self-signed, and not a CA either.
    const leafKey = await generateKeyAndCsr(SLEEP);
    const leaf = ca.sign(leafKey.csrPem).certChainPem[0]!;
    await t.rejects(CertificateAuthority.create({ trustDomain: TD, rootCertPem: leaf, rootKeyPem: leafKey.keyPem }), { code: 'ERR_CA_ROOT_INVALID', message: /not a ca/ });
  });

  t.test('options are checked together', async (t) => {
    const a = opensslRoot(dir, 'p256', undefined, 'c');
    await t.rejects(CertificateAuthority.create({ trustDomain: TD, rootCertPem: a.certPem }), {
      code: 'ERR_CONFIG_INVALID',
      message: /rootCertPem and rootKeyPem must be given together/,
    });
    const err = await CertificateAuthority.create({ trustDomain: 'Bad Domain', ttlSeconds: -1, rootKeyPem: a.keyPem }).catch((e: unknown) => e);
    t.match(err, { code: 'ERR_CONFIG_INVALID', problems: [/trustDomain "Bad Domain"/, /ttlSeconds must be a positive/, /given together/] });
  });
});

t.test('save and load: root files with a private key mode', async (t) => {
  const dir = join(t.testdir(), 'ca');
  await ca.save(dir);
  t.equal((await stat(join(dir, 'root-key.pem'))).mode & 0o777, 0o600);
  t.equal((await readFile(join(dir, 'root-cert.pem'), 'utf8')), ca.rootCertPem);
  await ca.save(dir); // overwriting keeps the mode
  t.equal((await stat(join(dir, 'root-key.pem'))).mode & 0o777, 0o600);
  const loaded = await CertificateAuthority.load(join(dir, 'root-cert.pem'), join(dir, 'root-key.pem'), TD, { ttlSeconds: 600 });
  t.equal(loaded.rootCertPem, ca.rootCertPem);
  const { csrPem } = await generateKeyAndCsr(SLEEP);
  const signed = loaded.sign(csrPem);
  t.ok(new X509Certificate(signed.certChainPem[0]!).verify(new X509Certificate(ca.rootCertPem).publicKey));
  t.ok(signed.notAfter.getTime() - signed.notBefore.getTime() <= 600_000 + CLOCK_SKEW_ALLOWANCE_MS);
  await t.rejects(CertificateAuthority.load(join(dir, 'missing.pem'), join(dir, 'root-key.pem'), TD), {
    code: 'ERR_CA_ROOT_INVALID',
    message: /cannot read the root certificate at .*missing\.pem/,
  });
});

t.test('a real TLS 1.3 handshake with mutual authentication accepts our certificates', async (t) => {
  const mint = async (id: string, authority = ca) => {
    const { keyPem, csrPem } = await generateKeyAndCsr(id);
    return { key: keyPem, cert: authority.sign(csrPem).certChainPem.join('') };
  };
  const server = tls.createServer({
    ...(await mint(HTTPBIN)),
    ca: [ca.rootCertPem],
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  });
  const seen: Array<string | undefined> = [];
  server.on('secureConnection', (s) => {
    seen.push(peerSpiffeId(s.getPeerCertificate()));
    s.end('hi');
  });
  server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;

  const connect = async (creds: { key: string; cert: string }) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ...creds,
      ca: [ca.rootCertPem],
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      // No DNS/IP SAN by design: the client checks the peer's SPIFFE ID instead of a host name.
      checkServerIdentity: (_host, cert) =>
        peerSpiffeId(cert) === HTTPBIN ? undefined : new Error(`unexpected server identity ${peerSpiffeId(cert)}`),
    });
    socket.on('error', () => undefined);
    await once(socket, 'secureConnect');
    return socket;
  };

  const socket = await connect(await mint(SLEEP));
  t.equal(socket.getProtocol(), 'TLSv1.3');
  t.ok(socket.authorized);
  t.equal(peerSpiffeId(socket.getPeerCertificate()), HTTPBIN, 'client sees the server identity');
  let data = '';
  for await (const chunk of socket) data += String(chunk);
  t.equal(data, 'hi');
  t.same(seen, [SLEEP], 'server sees the client identity');

  // A client certificate from another root: the server aborts the handshake.
  const other = await CertificateAuthority.create({ trustDomain: TD });
  const bad = await connect(await mint(SLEEP, other)).then(
    async (s) => {
      // TLS 1.3: the client may finish before the server's verdict arrives; then it is closed.
      const [err] = await Promise.race([once(s, 'error'), once(s, 'close').then(() => [undefined])]);
      return err ?? 'closed';
    },
    (err: unknown) => err,
  );
  t.ok(bad, 'rejected');
  t.same(seen, [SLEEP], 'no second secure connection');
});
