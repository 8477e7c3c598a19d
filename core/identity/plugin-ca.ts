/**
 * The control plane's signing CA: the mesh root itself, or an operator-supplied intermediate
 * ("plug-in CA", Istio's `cacerts`), plus a trust bundle that may hold several roots so that a
 * root can be rotated without an outage.
 *
 * CSR policy and leaf encoding are `CertificateAuthority`'s (ca.ts); this module adds what a
 * long-running signer needs around it: intermediates in the returned chain, a bundle of roots,
 * and a fingerprint of the signing certificate so clients can tell that it changed.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ConfigError, InvalidCaRootError } from '../errors.js';
import { parseSpiffeId } from './spiffe.js';
import { CertificateAuthority, DEFAULT_WORKLOAD_TTL_SECONDS, type SignOptions, type SignedCertificate } from './ca.js';
import { EXT, decodeKeyUsageCertSign, parseCertificate } from './x509.js';

/** Options of `SigningCa.create`. */
export interface SigningCaOptions {
  readonly trustDomain: string;
  /** The certificate that signs workload leaves (PEM): a self-signed root or an intermediate. */
  readonly certPem: string;
  /** Its private key (PEM). Never leaves the process. */
  readonly keyPem: string;
  /**
   * The certificates from the signing certificate's issuer up to (optionally including) the
   * root, PEM, as Istio's `cert-chain.pem` (which may also start with the signing certificate
   * itself; it is skipped). Needed for an intermediate.
   */
  readonly chainPem?: string;
  /**
   * The roots peers must trust (PEM, one or more). Default: the signing certificate when it is
   * self-signed, else the self-signed certificate ending `chainPem`. During a rotation it holds
   * the old and the new root.
   */
  readonly bundlePem?: string;
  /** Lifetime of issued leaves, and the most a requester may ask for. 24 h unless set. */
  readonly ttlSeconds?: number;
  readonly now?: () => number;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every PEM certificate block in `text`, each ending with a newline. */
export function splitPemCertificates(text: string): string[] {
  return (text.match(PEM_BLOCK) ?? []).map((b) => `${b}\n`);
}

function isSelfSigned(c: X509Certificate): boolean {
  try {
    return c.issuer === c.subject && c.verify(c.publicKey);
  } catch {
    return false;
  }
}

function signedBy(c: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return c.checkIssued(issuer) && c.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function parsePem(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new InvalidCaRootError(`${what} is not a pem x.509 certificate`, { cause: err });
  }
}

/**
 * Signs workload certificates with a root or an intermediate and hands out the trust bundle.
 *
 * @example
 * const ca = await SigningCa.load({ trustDomain: 'cluster.local', certFile: 'ca-cert.pem', keyFile: 'ca-key.pem' });
 * const { certChainPem } = ca.sign(csrPem, { expectedIdentity: 'spiffe://cluster.local/ns/default/sa/web' });
 * // certChainPem = [leaf, ...intermediates]; ca.rootsPem = the roots peers trust
 */
export class SigningCa {
  readonly trustDomain: string;
  /** Certificates returned after each leaf: the intermediate(s), never a root. */
  readonly intermediatesPem: readonly string[];
  /** The trust bundle. */
  readonly rootsPem: readonly string[];
  /** SHA-256 fingerprint of the signing certificate (changes when the signer rotates). */
  readonly signer: string;
  /** Longest lifetime a requester gets. */
  readonly maxTtlSeconds: number;
  /** When the signing certificate expires. */
  readonly notAfter: Date;
  readonly #ca: CertificateAuthority;

  private constructor(ca: CertificateAuthority, f: { intermediates: string[]; roots: string[]; signer: string; maxTtlSeconds: number; notAfter: Date }) {
    this.#ca = ca;
    this.trustDomain = ca.trustDomain;
    this.intermediatesPem = Object.freeze(f.intermediates);
    this.rootsPem = Object.freeze(f.roots);
    this.signer = f.signer;
    this.maxTtlSeconds = f.maxTtlSeconds;
    this.notAfter = f.notAfter;
  }

  /**
   * Validates the material and builds the signer.
   *
   * @throws InvalidCaRootError saying what to fix (key mismatch, not a CA, a chain that does not
   *   lead to a root of the bundle, an expired certificate ...).
   */
  static async create(opts: SigningCaOptions): Promise<SigningCa> {
    const ttlSeconds = opts.ttlSeconds ?? DEFAULT_WORKLOAD_TTL_SECONDS;
    const now = opts.now ?? Date.now;
    const cert = parsePem(opts.certPem, 'the ca certificate');
    let key: KeyObject;
    try {
      key = createPrivateKey(opts.keyPem);
    } catch (err) {
      throw new InvalidCaRootError('the ca key is not a pem private key (pkcs#8, sec1 or pkcs#1)', { cause: err });
    }
    if (!cert.checkPrivateKey(key)) {
      throw new InvalidCaRootError('the ca key does not match the ca certificate; check that both files come from the same ca');
    }
    const selfSigned = isSelfSigned(cert);
    const chain = splitPemCertificates(opts.chainPem ?? '')
      .map((pem, i) => ({ pem, x: parsePem(pem, `certificate ${i + 1} of the chain file`) }))
      .filter((c) => c.x.fingerprint256 !== cert.fingerprint256);
    const bundleText = opts.bundlePem ?? (selfSigned ? opts.certPem : chain.filter((c) => isSelfSigned(c.x)).map((c) => c.pem).join(''));
    const roots = splitPemCertificates(bundleText).map((pem, i) => ({ pem, x: parsePem(pem, `certificate ${i + 1} of the trust bundle`) }));
    if (roots.length === 0) {
      throw new InvalidCaRootError(
        selfSigned ? 'the trust bundle holds no certificate' : 'an intermediate ca needs the root: put it at the end of the chain file or in the trust bundle file',
      );
    }
    for (const r of roots) {
      if (!r.x.ca) throw new InvalidCaRootError(`${r.x.subject || 'a trust bundle certificate'} in the trust bundle is not a ca certificate`);
    }

    // Walk from the signing certificate through the chain to a root of the bundle.
    const intermediates: string[] = [];
    let current = cert;
    for (let hops = 0; ; hops++) {
      if (roots.some((r) => r.x.fingerprint256 === current.fingerprint256 || signedBy(current, r.x))) break;
      const next = chain.find((c) => signedBy(current, c.x));
      if (!next || hops > 8) {
        throw new InvalidCaRootError(
          `${current.subject || 'the ca certificate'} is not issued by any root of the trust bundle${chain.length ? ' nor by a certificate of the chain file' : ''}; supply the chain up to a root the bundle holds`,
        );
      }
      if (isSelfSigned(next.x)) {
        // A root at the end of the chain file that the bundle does not hold: peers would not trust it.
        throw new InvalidCaRootError(`the chain ends at ${next.x.subject || 'a root'}, which the trust bundle does not hold; add it to the bundle`);
      }
      intermediates.push(next.pem);
      current = next.x;
    }
    const parsed = parseCertificate(Buffer.from(cert.raw));
    const keyUsage = parsed.extensions.get(EXT.keyUsage);
    if (!cert.ca || (keyUsage && !decodeKeyUsageCertSign(keyUsage.value))) {
      throw new InvalidCaRootError(`${cert.subject || 'the ca certificate'} may not sign certificates (needs basicConstraints CA:TRUE and keyUsage keyCertSign)`);
    }
    if (parsed.notAfter.getTime() <= now()) throw new InvalidCaRootError(`the ca certificate expired at ${parsed.notAfter.toISOString()}`);

    let ca: CertificateAuthority;
    if (selfSigned) {
      ca = await CertificateAuthority.create({ trustDomain: opts.trustDomain, rootCertPem: opts.certPem, rootKeyPem: opts.keyPem, ttlSeconds, now });
    } else {
      // CertificateAuthority.create accepts self-signed roots only; its constructor needs nothing
      // but an issuing certificate and key, which the checks above validated for an intermediate.
      // TODO(identity): give ca.ts an intermediate option and drop this.
      const Ctor = CertificateAuthority as unknown as new (td: string, root: { certDer: Buffer; key: KeyObject }, ttl: number, now: () => number) => CertificateAuthority;
      try {
        parseSpiffeId(`spiffe://${opts.trustDomain}/ns/default/sa/default`);
      } catch {
        throw new ConfigError('certificate authority options', [
          `trustDomain ${JSON.stringify(opts.trustDomain)} may only hold lowercase letters, digits, '.', '-' and '_'`,
        ]);
      }
      ca = Reflect.construct(Ctor, [opts.trustDomain, { certDer: Buffer.from(cert.raw), key }, ttlSeconds, now]);
    }
    return new SigningCa(ca, {
      intermediates: selfSigned ? [] : [opts.certPem.match(PEM_BLOCK)![0] + '\n', ...intermediates],
      roots: roots.map((r) => r.pem),
      signer: cert.fingerprint256,
      maxTtlSeconds: ttlSeconds,
      notAfter: parsed.notAfter,
    });
  }

  /** `create` from files (Istio's `cacerts` layout: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem). */
  static async load(opts: {
    trustDomain: string;
    certFile: string;
    keyFile: string;
    chainFile?: string;
    bundleFile?: string;
    ttlSeconds?: number;
    now?: () => number;
  }): Promise<SigningCa> {
    const read = async (path: string | undefined, what: string): Promise<string | undefined> => {
      if (path === undefined) return undefined;
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        throw new InvalidCaRootError(`cannot read the ${what} at ${path}; check the path and its permissions`, { cause: err });
      }
    };
    const [certPem, keyPem, chainPem, bundlePem] = await Promise.all([
      read(opts.certFile, 'ca certificate'),
      read(opts.keyFile, 'ca key'),
      read(opts.chainFile, 'ca chain'),
      read(opts.bundleFile, 'trust bundle'),
    ]);
    return SigningCa.create({
      trustDomain: opts.trustDomain,
      certPem: certPem as string,
      keyPem: keyPem as string,
      ...(chainPem !== undefined ? { chainPem } : {}),
      ...(bundlePem !== undefined ? { bundlePem } : {}),
      ...(opts.ttlSeconds !== undefined ? { ttlSeconds: opts.ttlSeconds } : {}),
      ...(opts.now ? { now: opts.now } : {}),
    });
  }

  /**
   * Signs a CSR (see `CertificateAuthority.sign` for what is refused). The requested lifetime is
   * capped at `maxTtlSeconds`. The returned chain is the leaf followed by the intermediates.
   *
   * @throws CsrRejectedError; InvalidCaRootError when the signing certificate has expired.
   */
  sign(csrPem: string, opts: SignOptions = {}): SignedCertificate {
    const ttlSeconds = opts.ttlSeconds === undefined ? undefined : Math.min(opts.ttlSeconds, this.maxTtlSeconds);
    const signed = this.#ca.sign(csrPem, { ...opts, ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) });
    return this.intermediatesPem.length === 0 ? signed : { ...signed, certChainPem: [...signed.certChainPem, ...this.intermediatesPem] };
  }
}
