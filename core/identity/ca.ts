/**
 * The mesh certificate authority: signs workload CSRs for SPIFFE identities in one trust domain.
 *
 * Hot path: `sign` parses the CSR with a minimal DER reader, verifies it with `crypto.verify`, and
 * writes the leaf from a per-CA template (`LeafEncoder`) signed with `crypto.sign`; no generic
 * ASN.1 library is involved, so one core signs thousands of certificates a second
 * (`node dist/bench/ca-sign.js`).
 */
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, CsrRejectedError, InvalidCaRootError } from '../errors.js';
import { describeGeneralName, describeKeyAlgorithm, parseCsr, type ParsedCsr } from './csr.js';
import { toPem } from './der.js';
import { parseSpiffeId } from './spiffe.js';
import {
  EC_P256_KEY_ALGORITHM,
  EXT,
  LeafEncoder,
  OID,
  decodeBasicConstraintsCa,
  decodeKeyUsageCertSign,
  decodeSubjectKeyIdentifier,
  describeKey,
  encodeRoot,
  keyIdentifier,
  organizationName,
  parseCertificate,
  randomSerial,
  type ParsedCertificate,
  signatureAlgorithmFor,
} from './x509.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Default workload certificate lifetime: 24 h, as Istio's. */
export const DEFAULT_WORKLOAD_TTL_SECONDS = 24 * 60 * 60;
/** Lifetime of a generated root: 10 years, as Istio's self-signed root. */
export const ROOT_TTL_SECONDS = 10 * 365 * 24 * 60 * 60;
/**
 * Leaves (and generated roots) start this long before "now" so that peers whose clocks lag a
 * little do not reject a certificate issued a moment ago.
 */
export const CLOCK_SKEW_ALLOWANCE_MS = 60_000;
/** File names written by `save` and read by `load`, as Istio names its root files. */
export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';

/** Options of `CertificateAuthority.create`. */
export interface CertificateAuthorityOptions {
  /** The trust domain the CA signs for, e.g. `cluster.local`. */
  readonly trustDomain: string;
  /** An operator-supplied self-signed CA certificate (PEM); requires `rootKeyPem`. */
  readonly rootCertPem?: string;
  /** Its private key (PEM, PKCS#8, SEC1 or PKCS#1); requires `rootCertPem`. */
  readonly rootKeyPem?: string;
  /** Default lifetime of issued leaves; 86400 (24 h) unless set. */
  readonly ttlSeconds?: number;
  /** Clock in ms since the epoch; tests inject one. */
  readonly now?: () => number;
}

/** Options of one `sign` call. */
export interface SignOptions {
  /** When set, the CSR's SPIFFE ID must equal it: the identity the caller was authorized for. */
  readonly expectedIdentity?: string;
  /** Lifetime of this leaf; the CA's `ttlSeconds` unless set. Never beyond the root's expiry. */
  readonly ttlSeconds?: number;
}

/** A signed workload certificate. */
export interface SignedCertificate {
  /** Leaf first. The root is not included: peers already hold it in their trust bundle. */
  readonly certChainPem: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The SPIFFE ID in the leaf's URI SAN. */
  readonly identity: string;
}

interface RootMaterial {
  readonly certDer: Buffer;
  readonly key: KeyObject;
}

/**
 * Signs workload certificates for SPIFFE identities of one trust domain.
 *
 * Certificates are issued directly by the root (no intermediate): the trust bundle is the root.
 *
 * @example
 * const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
 * const { csrPem } = await generateKeyAndCsr('spiffe://cluster.local/ns/default/sa/sleep');
 * const { certChainPem } = ca.sign(csrPem);
 */
export class CertificateAuthority {
  /** The trust domain this CA signs for. */
  readonly trustDomain: string;
  /** The root certificate (PEM). */
  readonly rootCertPem: string;
  /** When the root expires; no leaf outlives it. */
  readonly rootNotAfter: Date;
  private readonly rootKey: KeyObject;
  private readonly defaultTtlMs: number;
  private readonly now: () => number;
  private readonly leaves: LeafEncoder;

  private constructor(trustDomain: string, root: RootMaterial, ttlSeconds: number, now: () => number) {
    this.trustDomain = trustDomain;
    this.rootKey = root.key;
    this.defaultTtlMs = ttlSeconds * 1000;
    this.now = now;
    this.rootCertPem = toPem('CERTIFICATE', root.certDer);
    const parsed = parseCertificate(root.certDer);
    this.rootNotAfter = parsed.notAfter;
    // The leaf's AKI must equal the root's SKI when the root has one (OpenSSL matches on it while
    // building chains); otherwise derive it the way RFC 5280 suggests.
    const ski = parsed.extensions.get(EXT.subjectKeyIdentifier);
    const keyId = ski ? decodeSubjectKeyIdentifier(ski.value) : keyIdentifier(parsed.subjectPublicKey);
    const algorithm = signatureAlgorithmFor(root.key);
    if (!algorithm) throw new InvalidCaRootError(`cannot sign with a ${describeKey(root.key)} key`);
    this.leaves = new LeafEncoder(parsed.subject, keyId, root.key, algorithm);
  }

  /** The PEM roots peers must trust to verify leaves of this CA (a fresh array each call). */
  get trustBundlePem(): string[] {
    return [this.rootCertPem];
  }

  /**
   * Creates a CA: with the operator's root when `rootCertPem` and `rootKeyPem` are given (they
   * must match, be a self-signed CA able to sign certificates, and be unexpired), else with a new
   * self-signed ECDSA P-256 root valid for 10 years.
   *
   * @throws ConfigError listing every invalid option; InvalidCaRootError for an unusable root.
   */
  static async create(opts: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const problems: string[] = [];
    try {
      parseSpiffeId(`spiffe://${opts.trustDomain}/ns/default/sa/default`);
    } catch {
      problems.push(
        `trustDomain ${JSON.stringify(opts.trustDomain)} may only hold lowercase letters, digits, '.', '-' and '_'`,
      );
    }
    const ttlSeconds = opts.ttlSeconds ?? DEFAULT_WORKLOAD_TTL_SECONDS;
    if (!isPositiveSeconds(ttlSeconds)) problems.push(`ttlSeconds must be a positive number of seconds, got ${ttlSeconds}`);
    if ((opts.rootCertPem === undefined) !== (opts.rootKeyPem === undefined)) {
      problems.push('rootCertPem and rootKeyPem must be given together (or neither, to generate a root)');
    }
    if (problems.length > 0) throw new ConfigError('certificate authority options', problems);
    const now = opts.now ?? Date.now;
    const root =
      opts.rootCertPem !== undefined && opts.rootKeyPem !== undefined
        ? checkOperatorRoot(opts.rootCertPem, opts.rootKeyPem, now())
        : await generateRoot(opts.trustDomain, now());
    return new CertificateAuthority(opts.trustDomain, root, ttlSeconds, now);
  }

  /**
   * Creates a CA from root files, e.g. those `save` wrote or a Kubernetes secret mounts; `opts`
   * are the remaining `create` options.
   *
   * @throws InvalidCaRootError when a file cannot be read or the root is unusable.
   */
  static async load(
    certPath: string,
    keyPath: string,
    trustDomain: string,
    opts: Pick<CertificateAuthorityOptions, 'ttlSeconds' | 'now'> = {},
  ): Promise<CertificateAuthority> {
    const read = async (path: string, what: string): Promise<string> => {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        throw new InvalidCaRootError(`cannot read the ${what} at ${path}`, { cause: err });
      }
    };
    const [rootCertPem, rootKeyPem] = await Promise.all([read(certPath, 'root certificate'), read(keyPath, 'root key')]);
    return CertificateAuthority.create({ ...opts, trustDomain, rootCertPem, rootKeyPem });
  }

  /**
   * Writes `root-cert.pem` (0644) and `root-key.pem` (0600) into `dir`, creating it (0700) if
   * needed. Each file is written under a temporary name and renamed, so a reader never sees a
   * partial file and the key is never readable by others, not even briefly.
   */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keyPem = this.rootKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeAtomically(join(dir, ROOT_CERT_FILE), this.rootCertPem, 0o644);
    await writeAtomically(join(dir, ROOT_KEY_FILE), keyPem, 0o600);
  }

  /**
   * Verifies a CSR and issues a leaf for its SPIFFE ID.
   *
   * The CSR must be signed by its own ECDSA P-256 key and carry exactly one subject alternative
   * name: a URI holding a valid SPIFFE ID in this CA's trust domain (and equal to
   * `expectedIdentity` when given). Everything else in the CSR (subject, other extensions) is
   * ignored: the leaf's content is decided here, not by the requester.
   *
   * @throws CsrRejectedError saying what was wrong with the request; InvalidCaRootError when the
   *   root has expired.
   */
  sign(csrPem: string, opts: SignOptions = {}): SignedCertificate {
    let csr: ParsedCsr;
    try {
      csr = parseCsr(csrPem);
    } catch (err) {
      throw new CsrRejectedError(`not a pem pkcs#10 request: ${(err as Error).message}`, { cause: err });
    }
    const identity = this.checkCsr(csr, opts.expectedIdentity);
    const ttlSeconds = opts.ttlSeconds;
    if (ttlSeconds !== undefined && !isPositiveSeconds(ttlSeconds)) {
      throw new CsrRejectedError(`requested ttl ${ttlSeconds} is not a positive number of seconds`);
    }
    const now = this.now();
    // Certificates carry whole seconds; truncate here so the returned dates equal the encoded ones.
    const notBefore = new Date(floorSecond(now - CLOCK_SKEW_ALLOWANCE_MS));
    const wanted = now + (ttlSeconds === undefined ? this.defaultTtlMs : ttlSeconds * 1000);
    const notAfter = new Date(floorSecond(Math.min(wanted, this.rootNotAfter.getTime())));
    if (notAfter.getTime() <= now) {
      throw new InvalidCaRootError(`the root certificate expired at ${this.rootNotAfter.toISOString()}; rotate the ca root`);
    }
    const der = this.leaves.encode({
      serial: randomSerial(),
      notBefore,
      notAfter,
      subjectPublicKeyInfo: csr.subjectPublicKeyInfo,
      uri: identity,
    });
    return { certChainPem: [toPem('CERTIFICATE', der)], notBefore, notAfter, identity };
  }

  /** Applies the signing policy; returns the SPIFFE ID to issue for. */
  private checkCsr(csr: ParsedCsr, expectedIdentity: string | undefined): string {
    // Cheap checks first, so junk is refused before any public-key operation.
    if (!csr.keyAlgorithm.equals(EC_P256_KEY_ALGORITHM)) {
      throw new CsrRejectedError(`the key is ${safeDescribeKeyAlgorithm(csr.keyAlgorithm)}; workload keys must be ECDSA P-256`);
    }
    // Uncompressed point only: Go's crypto/x509 (and so Istio peers) cannot parse compressed ones.
    if (csr.publicKey.length !== 65 || csr.publicKey[0] !== 0x04) {
      throw new CsrRejectedError('the P-256 public key must be an uncompressed point (65 bytes starting 0x04)');
    }
    // Proof of possession before reading anything the requester asserts.
    if (!verifyCsrSignature(csr)) {
      throw new CsrRejectedError('the csr signature does not verify with its public key (corrupted or tampered request)');
    }
    if (csr.subjectAltNameExtensions > 1) {
      throw new CsrRejectedError(`${csr.subjectAltNameExtensions} subjectAltName extensions; send one with one uri san`);
    }
    if (csr.subjectAltNames.length !== 1) {
      const found = csr.subjectAltNames.length === 0 ? 'none' : csr.subjectAltNames.map(describeGeneralName).join(', ');
      throw new CsrRejectedError(
        `expected exactly one subject alternative name, a uri holding the spiffe id; found ${found}`,
      );
    }
    const san = csr.subjectAltNames[0]!;
    if (san.type !== 'uri') {
      throw new CsrRejectedError(`the subject alternative name is ${describeGeneralName(san)}; it must be a uri holding the spiffe id`);
    }
    const uri = san.value.toString('latin1');
    let trustDomain: string;
    try {
      trustDomain = parseSpiffeId(uri).trustDomain;
    } catch (err) {
      throw new CsrRejectedError(`uri san is not a spiffe id: ${(err as Error).message}`, { cause: err });
    }
    if (trustDomain !== this.trustDomain) {
      throw new CsrRejectedError(`${uri} is in trust domain ${trustDomain}; this ca signs for ${this.trustDomain} only`);
    }
    if (expectedIdentity !== undefined && uri !== expectedIdentity) {
      throw new CsrRejectedError(`the csr asks for ${uri} but the requester is authorized for ${expectedIdentity} only`);
    }
    return uri;
  }
}

const ECDSA_HASHES = new Map<string, string>([
  [OID.ecdsaWithSha256.toString('hex'), 'sha256'],
  [OID.ecdsaWithSha384.toString('hex'), 'sha384'],
  [OID.ecdsaWithSha512.toString('hex'), 'sha512'],
]);

/** Checks the CSR's proof of possession; the key is already known to be P-256. */
function verifyCsrSignature(csr: ParsedCsr): boolean {
  // AlgorithmIdentifier is SEQUENCE { OID } with absent parameters for ECDSA (RFC 5758 3.2).
  const alg = csr.signatureAlgorithm;
  const hash = alg.length > 2 && alg[1] === alg.length - 2 ? ECDSA_HASHES.get(alg.subarray(2).toString('hex')) : undefined;
  if (!hash) {
    throw new CsrRejectedError(
      `signature algorithm ${safeDescribeKeyAlgorithm(alg)} is not ecdsa with sha-256, sha-384 or sha-512`,
    );
  }
  try {
    // Import as JWK rather than SPKI DER: OpenSSL 3's DER decoder framework makes the DER path
    // measurably slower, and import is a third of the cost of a sign() call. The JWK import still
    // checks that the point lies on the curve. The point is known to be 65 bytes, uncompressed.
    const key = createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: csr.publicKey.subarray(1, 33).toString('base64url'),
        y: csr.publicKey.subarray(33, 65).toString('base64url'),
      },
      format: 'jwk',
    });
    return cryptoVerify(hash, csr.info, { key, dsaEncoding: 'der' }, csr.signature);
  } catch (err) {
    throw new CsrRejectedError(`the public key or signature is malformed: ${(err as Error).message}`, { cause: err });
  }
}

function safeDescribeKeyAlgorithm(alg: Buffer): string {
  try {
    return describeKeyAlgorithm(alg);
  } catch {
    return 'malformed';
  }
}

function isPositiveSeconds(n: number): boolean {
  return typeof n === 'number' && Number.isFinite(n) && n > 0;
}

function floorSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

async function generateRoot(trustDomain: string, now: number): Promise<RootMaterial> {
  const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  const certDer = encodeRoot({
    serial: randomSerial(),
    subject: organizationName(trustDomain),
    notBefore: new Date(floorSecond(now - CLOCK_SKEW_ALLOWANCE_MS)),
    notAfter: new Date(floorSecond(now + ROOT_TTL_SECONDS * 1000)),
    subjectPublicKeyInfo: publicKey.export({ type: 'spki', format: 'der' }),
    privateKey,
  });
  return { certDer, key: privateKey };
}

/** Validates an operator's root and key; every failure says what to fix. */
function checkOperatorRoot(certPem: string, keyPem: string, now: number): RootMaterial {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new InvalidCaRootError('rootCertPem is not a pem x.509 certificate', { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new InvalidCaRootError('rootKeyPem is not a pem private key (pkcs#8, sec1 or pkcs#1)', { cause: err });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new InvalidCaRootError('the root key does not match the root certificate; check that both files come from the same ca');
  }
  if (!signatureAlgorithmFor(key)) {
    throw new InvalidCaRootError(`cannot sign with a ${describeKey(key)} key; use ECDSA P-256 (or RSA, Ed25519)`);
  }
  let parsed: ParsedCertificate;
  try {
    parsed = parseCertificate(cert.raw);
  } catch (err) {
    throw new InvalidCaRootError(`cannot parse the root certificate: ${(err as Error).message}`, { cause: err });
  }
  const bc = parsed.extensions.get(EXT.basicConstraints);
  if (!bc || !decodeBasicConstraintsCa(bc.value)) {
    throw new InvalidCaRootError(`${cert.subject || 'the certificate'} is not a ca (basicConstraints CA:TRUE is missing)`);
  }
  const keyUsage = parsed.extensions.get(EXT.keyUsage);
  if (keyUsage && !decodeKeyUsageCertSign(keyUsage.value)) {
    throw new InvalidCaRootError('the root certificate keyUsage lacks keyCertSign');
  }
  if (cert.issuer !== cert.subject || !cert.verify(cert.publicKey)) {
    throw new InvalidCaRootError(
      'the root certificate is not self-signed; intermediate cas are not supported yet, supply the root itself',
    );
  }
  // OpenSSL's own judgement too (X509_check_ca), so nothing it would refuse as an issuer passes.
  if (!cert.ca) throw new InvalidCaRootError(`${cert.subject || 'the certificate'} is not usable as a ca`);
  if (parsed.notAfter.getTime() <= now) {
    throw new InvalidCaRootError(`the root certificate expired at ${parsed.notAfter.toISOString()}`);
  }
  if (parsed.notBefore.getTime() > now + CLOCK_SKEW_ALLOWANCE_MS) {
    throw new InvalidCaRootError(`the root certificate is not valid before ${parsed.notBefore.toISOString()}; check the clock`);
  }
  return { certDer: Buffer.from(cert.raw), key };
}

async function writeAtomically(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  // 'wx' with the final mode: the file never exists with wider permissions.
  await writeFile(tmp, data, { mode, flag: 'wx' });
  await rename(tmp, path);
}
