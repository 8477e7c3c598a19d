import t from 'tap';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  describeGeneralName,
  describeKeyAlgorithm,
  encodeCsr,
  generateKeyAndCsr,
  parseCsr,
} from '../../../core/identity/csr.js';
import { EC_P256_KEY_ALGORITHM } from '../../../core/identity/x509.js';
import { HTTPBIN, SLEEP, openssl, opensslCsr } from './fixtures.js';

t.test('generateKeyAndCsr: a P-256 PKCS#8 key and a CSR with one URI SAN that openssl verifies', async (t) => {
  const dir = t.testdir();
  const { keyPem, csrPem } = await generateKeyAndCsr(SLEEP);
  t.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'pkcs#8');
  const key = createPrivateKey(keyPem);
  t.equal(key.asymmetricKeyType, 'ec');
  t.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  writeFileSync(join(dir, 'r.csr'), csrPem);
  const text = openssl(['req', '-in', 'r.csr', '-verify', '-noout', '-text'], dir);
  t.match(text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep\n/);
  const csr = parseCsr(csrPem);
  t.same(csr.subjectAltNames.map(describeGeneralName), [`URI:${SLEEP}`]);
  t.ok(csr.keyAlgorithm.equals(EC_P256_KEY_ALGORITHM));
  t.equal(csr.publicKey.length, 65);
});

t.test('generateKeyAndCsr refuses an identity that is not a SPIFFE ID', async (t) => {
  await t.rejects(generateKeyAndCsr('https://example.com'), { code: 'ERR_INVALID_SPIFFE_ID' });
});

t.test('concurrent generation gives distinct keys', async (t) => {
  const all = await Promise.all(Array.from({ length: 20 }, () => generateKeyAndCsr(HTTPBIN)));
  t.equal(new Set(all.map((a) => a.keyPem)).size, 20);
});

t.test('parseCsr reads openssl requests: key algorithm and every SAN', async (t) => {
  const dir = t.testdir();
  const rsa = parseCsr(opensslCsr(dir, 'rsa', `URI:${SLEEP}`, 'rsa').csrPem);
  t.equal(describeKeyAlgorithm(rsa.keyAlgorithm), 'rsaEncryption');
  const p384 = parseCsr(opensslCsr(dir, 'p384', `URI:${SLEEP}`, 'p384').csrPem);
  t.equal(describeKeyAlgorithm(p384.keyAlgorithm), 'ecPublicKey secp384r1');
  const many = parseCsr(opensslCsr(dir, 'p256', `URI:${SLEEP},DNS:a.example,IP:10.0.0.1,email:a@b.c`, 'many').csrPem);
  t.same(many.subjectAltNames.map(describeGeneralName), [`URI:${SLEEP}`, 'DNS:a.example', 'IP:10.0.0.1', 'email:a@b.c']);
  t.equal(many.subjectAltNameExtensions, 1);
  const none = parseCsr(opensslCsr(dir, 'p256', undefined, 'none').csrPem);
  t.same(none.subjectAltNames, []);
});

t.test('encodeCsr builds requests for any supported key and SAN list', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const csr = parseCsr(encodeCsr(privateKey, [{ type: 'dns', value: 'x.example' }, { type: 'uri', value: SLEEP }]));
  t.same(csr.subjectAltNames.map(describeGeneralName), ['DNS:x.example', `URI:${SLEEP}`]);
  t.same(parseCsr(encodeCsr(privateKey, [])).subjectAltNames, []);
  t.throws(() => encodeCsr(generateKeyPairSync('x25519').privateKey, []), RangeError);
});

t.test('parseCsr: malformed input throws DerDecodeError saying what is wrong', async (t) => {
  const { csrPem } = await generateKeyAndCsr(SLEEP);
  t.throws(() => parseCsr('not a pem'), { code: 'ERR_DER_DECODE', message: /no pem block/ });
  t.throws(() => parseCsr(csrPem.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE')), { code: 'ERR_DER_DECODE' });
  const garbage = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from('hello world').toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  t.throws(() => parseCsr(garbage), { code: 'ERR_DER_DECODE' });
  const b64 = csrPem.split('\n').slice(1, -2).join('');
  const truncated = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(b64, 'base64').subarray(0, 100).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  t.throws(() => parseCsr(truncated), { code: 'ERR_DER_DECODE', message: /runs past|truncated/ });
  t.same(parseCsr(csrPem.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST')).subjectAltNames.length, 1, 'old label accepted');
});
