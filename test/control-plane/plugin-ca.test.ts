import t from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SigningCa, splitPemCertificates } from '../../core/identity/plugin-ca.js';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { generateKeyAndCsr } from '../../core/identity/csr.js';
import { SecretManager } from '../../core/identity/secret-manager.js';

// The plug-in CA: an operator's root, or an intermediate under it (Istio's cacerts layout),
// made with openssl as an operator would.
const dir = t.testdir();
const ID = 'spiffe://cluster.local/ns/default/sa/web';
const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
await writeFile(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'root-key.pem');
ossl('req', '-x509', '-new', '-key', 'root-key.pem', '-subj', '/O=Operator Root', '-days', '3650', '-out', 'root-cert.pem', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca-key.pem');
ossl('req', '-new', '-key', 'ca-key.pem', '-subj', '/O=Cluster Intermediate', '-out', 'ca.csr');
ossl('x509', '-req', '-in', 'ca.csr', '-CA', 'root-cert.pem', '-CAkey', 'root-key.pem', '-CAcreateserial', '-days', '365', '-extfile', 'ca.ext', '-out', 'ca-cert.pem');
const read = (f: string) => readFile(join(dir, f), 'utf8');
const [rootPem, caPem, caKey, rootKey] = await Promise.all([read('root-cert.pem'), read('ca-cert.pem'), read('ca-key.pem'), read('root-key.pem')]);
await writeFile(join(dir, 'cert-chain.pem'), caPem + rootPem);

t.test('an intermediate signs; the chain carries it; the bundle is the root', async (t) => {
  const ca = await SigningCa.load({ trustDomain: 'cluster.local', certFile: join(dir, 'ca-cert.pem'), keyFile: join(dir, 'ca-key.pem'), chainFile: join(dir, 'cert-chain.pem') });
  t.equal(ca.rootsPem.length, 1);
  t.equal(new X509Certificate(ca.rootsPem[0]!).subject, 'O=Operator Root', 'the bundle defaults to the root ending the chain file');
  const { csrPem } = await generateKeyAndCsr(ID);
  const signed = ca.sign(csrPem, { expectedIdentity: ID });
  t.equal(signed.certChainPem.length, 2, 'leaf + intermediate');
  const [leaf, inter] = signed.certChainPem.map((p) => new X509Certificate(p)) as [X509Certificate, X509Certificate];
  t.equal(leaf.issuer, 'O=Cluster Intermediate');
  t.ok(leaf.verify(inter.publicKey) && inter.verify(new X509Certificate(rootPem).publicKey), 'leaf ← intermediate ← root');
  // The data plane's checks (the secret manager) accept it, and so does openssl.
  const secrets = new SecretManager({ caClient: { sign: async (csr, id) => ({ certChainPem: ca.sign(csr, { expectedIdentity: id }).certChainPem, rootsPem: [...ca.rootsPem] }) } });
  t.teardown(() => secrets.close());
  const cert = await secrets.fetch(ID);
  await writeFile(join(dir, 'leaf.pem'), cert.certChainPem[0]!);
  await writeFile(join(dir, 'untrusted.pem'), cert.certChainPem[1]!);
  t.match(ossl('verify', '-CAfile', 'root-cert.pem', '-untrusted', 'untrusted.pem', 'leaf.pem').toString(), /leaf.pem: OK/);
});

t.test('a bundle with several roots, for rotation', async (t) => {
  const other = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  const ca = await SigningCa.create({ trustDomain: 'cluster.local', certPem: rootPem, keyPem: rootKey, bundlePem: rootPem + other.rootCertPem });
  t.equal(ca.rootsPem.length, 2);
  t.same(ca.intermediatesPem, [], 'a root signs directly');
  t.equal(ca.signer, new X509Certificate(rootPem).fingerprint256);
});

t.test('unusable material is refused with what to fix', async (t) => {
  const other = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  await t.rejects(SigningCa.create({ trustDomain: 'cluster.local', certPem: caPem, keyPem: rootKey, chainPem: rootPem }), /does not match the ca certificate/);
  await t.rejects(SigningCa.create({ trustDomain: 'cluster.local', certPem: caPem, keyPem: caKey }), /an intermediate ca needs the root/);
  await t.rejects(SigningCa.create({ trustDomain: 'cluster.local', certPem: caPem, keyPem: caKey, bundlePem: other.rootCertPem }), /not issued by any root of the trust bundle/);
  await t.rejects(SigningCa.create({ trustDomain: 'cluster.local', certPem: caPem, keyPem: caKey, chainPem: rootPem, bundlePem: other.rootCertPem }), /the chain ends at O=Operator Root, which the trust bundle does not hold/);
  await t.rejects(SigningCa.create({ trustDomain: 'Bad Domain', certPem: caPem, keyPem: caKey, chainPem: rootPem }), /trustDomain "Bad Domain"/);
  await t.rejects(SigningCa.load({ trustDomain: 'cluster.local', certFile: join(dir, 'nope.pem'), keyFile: join(dir, 'ca-key.pem') }), /cannot read the ca certificate at .*nope.pem/);
  t.equal(splitPemCertificates(caPem + '\njunk\n' + rootPem).length, 2);
});
