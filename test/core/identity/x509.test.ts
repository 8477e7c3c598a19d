import t from 'tap';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import {
  EXT,
  LeafEncoder,
  decodeBasicConstraintsCa,
  decodeKeyUsageCertSign,
  decodeSubjectKeyIdentifier,
  describeKey,
  encodeRoot,
  keyIdentifier,
  organizationName,
  parseCertificate,
  randomSerial,
  signatureAlgorithmFor,
} from '../../../core/identity/x509.js';
import { toPem } from '../../../core/identity/der.js';
import { SLEEP, opensslRoot, opensslVerify, pemBody } from './fixtures.js';

function newRoot(keyType: 'ec' | 'rsa' | 'ed25519' = 'ec') {
  const { privateKey, publicKey } =
    keyType === 'ec'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : keyType === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ed25519');
  const now = Date.now();
  const der = encodeRoot({
    serial: randomSerial(),
    subject: organizationName('cluster.local'),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    subjectPublicKeyInfo: publicKey.export({ type: 'spki', format: 'der' }),
    privateKey,
  });
  return { der, privateKey };
}

t.test('random serials: 128-bit, positive, minimal, distinct', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const s = randomSerial();
    t.equal(s[0], 0x02);
    const len = s[1]!;
    t.ok(len >= 1 && len <= 17, 'at most 16 value bytes plus a sign byte');
    if (len === 17) t.equal(s[2], 0, 'the sign byte is only there when needed');
    if (len > 1) t.not(s[2] === 0 && (s[3]! & 0x80) === 0, true, 'no redundant leading zero');
    t.equal(s[2]! & 0x80, 0, 'positive');
    seen.add(s.toString('hex'));
  }
  t.equal(seen.size, 500);
});

t.test('a generated root is a self-signed CA that node and openssl accept', async (t) => {
  for (const kind of ['ec', 'rsa', 'ed25519'] as const) {
    const { der } = newRoot(kind);
    const cert = new X509Certificate(der);
    t.ok(cert.ca, `${kind}: ca`);
    t.ok(cert.verify(cert.publicKey), `${kind}: self-signed`);
    t.equal(cert.subject, 'O=cluster.local');
    const parsed = parseCertificate(der);
    t.ok(decodeBasicConstraintsCa(parsed.extensions.get(EXT.basicConstraints)!.value));
    t.ok(parsed.extensions.get(EXT.basicConstraints)!.critical);
    t.ok(decodeKeyUsageCertSign(parsed.extensions.get(EXT.keyUsage)!.value));
    t.same(decodeSubjectKeyIdentifier(parsed.extensions.get(EXT.subjectKeyIdentifier)!.value), keyIdentifier(parsed.subjectPublicKey));
    t.same(parsed.issuer, parsed.subject);
  }
});

t.test('parseCertificate reads an openssl certificate', async (t) => {
  const dir = t.testdir();
  const { certPem } = opensslRoot(dir, 'p256');
  const x = new X509Certificate(certPem);
  const p = parseCertificate(pemBody(certPem));
  t.equal(p.notAfter.getTime(), Date.parse(x.validTo));
  t.equal(p.notBefore.getTime(), Date.parse(x.validFrom));
  t.ok(p.extensions.get(EXT.subjectKeyIdentifier), 'openssl adds a subject key id');
  t.ok(decodeBasicConstraintsCa(p.extensions.get(EXT.basicConstraints)!.value));
  t.throws(() => parseCertificate(Buffer.from('3000', 'hex')), { code: 'ERR_DER_DECODE' });
});

t.test('leaf encoder: the fixed workload leaf shape, signed by the root', async (t) => {
  const dir = t.testdir();
  const root = newRoot();
  const parsedRoot = parseCertificate(root.der);
  const enc = new LeafEncoder(parsedRoot.subject, keyIdentifier(parsedRoot.subjectPublicKey), root.privateKey, signatureAlgorithmFor(root.privateKey)!);
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const nb = new Date(Math.floor(Date.now() / 1000) * 1000);
  const na = new Date(nb.getTime() + 3_600_000);
  const der = enc.encode({ serial: randomSerial(), notBefore: nb, notAfter: na, subjectPublicKeyInfo: publicKey.export({ type: 'spki', format: 'der' }), uri: SLEEP });
  const leaf = new X509Certificate(der);
  t.ok(leaf.verify(new X509Certificate(root.der).publicKey));
  t.equal(leaf.subject ?? '', '', 'empty subject (node 20 reports undefined)');
  t.equal(leaf.subjectAltName, `URI:${SLEEP}`);
  t.equal(leaf.ca, false);
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'extKeyUsage serverAuth, clientAuth');
  const p = parseCertificate(der);
  t.equal(p.notBefore.getTime(), nb.getTime());
  t.equal(p.notAfter.getTime(), na.getTime());
  t.ok(p.extensions.get('2.5.29.17')!.critical, 'SAN critical: the subject is empty');
  t.ok(p.extensions.get(EXT.keyUsage)!.critical);
  t.ok(p.extensions.get(EXT.basicConstraints)!.critical);
  t.notOk(decodeBasicConstraintsCa(p.extensions.get(EXT.basicConstraints)!.value));
  t.equal(p.extensions.get(EXT.keyUsage)!.value.toString('hex'), '030205a0', 'digitalSignature + keyEncipherment');
  t.notOk(p.extensions.has(EXT.subjectKeyIdentifier));
  t.match(opensslVerify(dir, toPem('CERTIFICATE', root.der), toPem('CERTIFICATE', der)), /OK/);
});

t.test('signature algorithms by key type', async (t) => {
  const ec = (c: string) => generateKeyPairSync('ec', { namedCurve: c }).privateKey;
  t.equal(signatureAlgorithmFor(ec('P-256'))!.hash, 'sha256');
  t.equal(signatureAlgorithmFor(ec('P-384'))!.hash, 'sha384');
  t.equal(signatureAlgorithmFor(ec('P-521'))!.hash, 'sha512');
  t.equal(signatureAlgorithmFor(generateKeyPairSync('ed25519').privateKey)!.hash, null);
  t.equal(signatureAlgorithmFor(ec('secp256k1')), undefined);
  t.equal(signatureAlgorithmFor(generateKeyPairSync('x25519').privateKey), undefined);
  t.equal(describeKey(ec('P-256')), 'ec prime256v1');
  t.equal(describeKey(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey), 'rsa 1024');
});
