import t from 'tap';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { peerSpiffeId } from '../../../core/identity/certificate.js';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../../core/identity/csr.js';
import { SLEEP, opensslRoot } from './fixtures.js';

const peer = (subjectaltname?: string): PeerCertificate => ({ subjectaltname }) as PeerCertificate;

t.test('returns the single spiffe URI SAN of an X509Certificate', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  const { csrPem } = await generateKeyAndCsr(SLEEP);
  t.equal(peerSpiffeId(new X509Certificate(ca.sign(csrPem).certChainPem[0]!)), SLEEP);
  t.equal(peerSpiffeId(new X509Certificate(ca.rootCertPem)), undefined, 'no SAN at all');
});

t.test('several SANs in a real certificate mean no identity', async (t) => {
  const { certPem } = opensslRoot(t.testdir(), 'p256', [
    'basicConstraints=critical,CA:TRUE',
    `subjectAltName=URI:${SLEEP},DNS:sleep.default`,
  ]);
  t.equal(peerSpiffeId(new X509Certificate(certPem)), undefined);
});

t.test('tls PeerCertificate forms', async (t) => {
  t.equal(peerSpiffeId(peer(`URI:${SLEEP}`)), SLEEP);
  t.equal(peerSpiffeId(peer('URI:spiffe://td/custom/path')), 'spiffe://td/custom/path', 'form is checked by the caller');
  t.equal(peerSpiffeId(peer(`URI:${SLEEP}, URI:spiffe://cluster.local/ns/a/sa/b`)), undefined, 'two URIs');
  t.equal(peerSpiffeId(peer(`URI:${SLEEP}, DNS:x`)), undefined, 'URI and DNS');
  t.equal(peerSpiffeId(peer(`DNS:x, URI:${SLEEP}`)), undefined);
  t.equal(peerSpiffeId(peer('DNS:spiffe://x')), undefined, 'a DNS SAN is not a URI');
  t.equal(peerSpiffeId(peer('URI:https://example.com')), undefined, 'not spiffe');
  t.equal(peerSpiffeId(peer('URI:"spiffe://a, DNS:b"')), undefined, 'a quoted value is never a valid id');
  t.equal(peerSpiffeId(peer('URI:spiffe://')), undefined, 'empty');
  t.equal(peerSpiffeId(peer(undefined)), undefined);
  t.equal(peerSpiffeId({} as PeerCertificate), undefined, 'what getPeerCertificate returns without a certificate');
  t.equal(peerSpiffeId(undefined), undefined);
  t.equal(peerSpiffeId(null), undefined);
});
