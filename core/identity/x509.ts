/**
 * X.509 encoding and decoding for the CA: the leaf template (fixed parts encoded once per CA), the
 * self-signed root, and a reader for the few certificate fields the CA needs from an operator's
 * root. Policy (what may be signed) lives in `ca.ts`; this module only knows the formats.
 */
import { createHash, randomBytes, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { DerDecodeError, InvalidCaRootError } from '../errors.js';
import {
  NULL,
  TAG,
  TRUE,
  bitString,
  contextConstructedTag,
  contextPrimitiveTag,
  octetString,
  oid,
  readTime,
  readWhole,
  sequence,
  set,
  time,
  tlv,
  unsignedInteger,
  utf8String,
  type DerNode,
} from './der.js';

/** Encoded OBJECT IDENTIFIERs (whole TLVs), compared byte-wise on hot paths. */
export const OID = {
  ecPublicKey: oid('1.2.840.10045.2.1'),
  prime256v1: oid('1.2.840.10045.3.1.7'),
  secp384r1: oid('1.3.132.0.34'),
  secp521r1: oid('1.3.132.0.35'),
  rsaEncryption: oid('1.2.840.113549.1.1.1'),
  ed25519: oid('1.3.101.112'),
  ecdsaWithSha256: oid('1.2.840.10045.4.3.2'),
  ecdsaWithSha384: oid('1.2.840.10045.4.3.3'),
  ecdsaWithSha512: oid('1.2.840.10045.4.3.4'),
  sha256WithRsa: oid('1.2.840.113549.1.1.11'),
  extensionRequest: oid('1.2.840.113549.1.9.14'),
  organizationName: oid('2.5.4.10'),
  subjectKeyIdentifier: oid('2.5.29.14'),
  keyUsage: oid('2.5.29.15'),
  subjectAltName: oid('2.5.29.17'),
  basicConstraints: oid('2.5.29.19'),
  authorityKeyIdentifier: oid('2.5.29.35'),
  extKeyUsage: oid('2.5.29.37'),
  serverAuth: oid('1.3.6.1.5.5.7.3.1'),
  clientAuth: oid('1.3.6.1.5.5.7.3.2'),
} as const;

/** AlgorithmIdentifier of an ECDSA P-256 public key: the only key type workloads may use. */
export const EC_P256_KEY_ALGORITHM = sequence(OID.ecPublicKey, OID.prime256v1);

const OID_NAMES = new Map<string, string>(
  Object.entries(OID).map(([name, der]) => [der.toString('hex'), name]),
);

/** A readable name for an encoded OID (TLV), falling back to its dotted form. */
export function oidName(node: DerNode): string {
  return OID_NAMES.get(node.raw().toString('hex')) ?? node.oidString('oid');
}

/** How the CA's key signs: the AlgorithmIdentifier written into certificates and the digest. */
export interface SignatureAlgorithm {
  /** Encoded AlgorithmIdentifier (the same bytes go into the TBS and the outer certificate). */
  readonly algorithmIdentifier: Buffer;
  /** Digest for `crypto.sign`; null for Ed25519, which hashes internally. */
  readonly hash: string | null;
}

/**
 * Picks the signature algorithm for a private key: ECDSA with the hash matching its curve
 * (P-256 → SHA-256, as Go and Istio do), RSA PKCS#1 v1.5 with SHA-256, or Ed25519. Returns
 * undefined for other keys; callers say what the key was for in their error.
 */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm | undefined {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return { algorithmIdentifier: sequence(OID.ecdsaWithSha256), hash: 'sha256' };
      if (curve === 'secp384r1') return { algorithmIdentifier: sequence(OID.ecdsaWithSha384), hash: 'sha384' };
      if (curve === 'secp521r1') return { algorithmIdentifier: sequence(OID.ecdsaWithSha512), hash: 'sha512' };
      return undefined;
    }
    case 'rsa':
      return { algorithmIdentifier: sequence(OID.sha256WithRsa, NULL), hash: 'sha256' };
    case 'ed25519':
      return { algorithmIdentifier: sequence(OID.ed25519), hash: null };
    default:
      return undefined;
  }
}

/** Describes a key for messages: `ec prime256v1`, `rsa 2048`, `ed25519`. */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') return `ec ${String(d?.namedCurve)}`;
  if (key.asymmetricKeyType === 'rsa') return `rsa ${String(d?.modulusLength)}`;
  return String(key.asymmetricKeyType);
}

/**
 * A random, positive serial number of 128 bits (RFC 5280 allows up to 20 octets; CA/B forum
 * requires at least 64 bits of randomness). Minimal DER: leading zeros are stripped and a 0x00
 * is prepended when the top bit is set. A zero draw (probability 2^-128) is replaced by 1 because
 * serials must be positive.
 */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  let allZero = true;
  for (const x of b) if (x !== 0) allZero = false;
  if (allZero) b[15] = 1;
  return unsignedInteger(b);
}

/** An X.501 Name with a single organization (O=) attribute, as Istio's self-signed roots carry. */
export function organizationName(o: string): Buffer {
  return sequence(set(sequence(OID.organizationName, utf8String(o))));
}

/** One Extension; `critical` false is omitted because it is the DEFAULT (DER). */
function extension(id: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(id, TRUE, octetString(value)) : sequence(id, octetString(value));
}

const VERSION_V3 = Buffer.from([contextConstructedTag(0), 0x03, TAG.INTEGER, 0x01, 0x02]);
const EMPTY_NAME = Buffer.from([TAG.SEQUENCE, 0x00]);
const URI_TAG = contextPrimitiveTag(6);

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. Used for SKI and AKI. */
export function keyIdentifier(subjectPublicKey: Buffer): Buffer {
  return createHash('sha1').update(subjectPublicKey).digest();
}

/** What varies between two leaves of one CA. */
export interface LeafFields {
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The subjectPublicKeyInfo TLV, copied verbatim from the (already checked) CSR. */
  readonly subjectPublicKeyInfo: Buffer;
  /** The SPIFFE ID; must be IA5 (ASCII), which a validated SPIFFE ID is. */
  readonly uri: string;
}

/**
 * Encodes workload leaves for one CA. The issuer name, algorithm identifier and the four fixed
 * extensions are encoded once here; `encode` only writes serial, validity, key and SAN, then signs.
 *
 * Leaf shape (Istio's): empty subject, so the single URI SAN is critical (RFC 5280 4.2.1.6);
 * keyUsage digitalSignature+keyEncipherment (critical), extKeyUsage serverAuth+clientAuth,
 * basicConstraints CA:false (critical), authorityKeyIdentifier = the root's key id.
 */
export class LeafEncoder {
  private readonly prefixAfterSerial: Buffer;
  private readonly fixedExtensions: Buffer;
  private readonly signOptions: { key: KeyObject; dsaEncoding: 'der' };

  constructor(
    issuerName: Buffer,
    authorityKeyId: Buffer,
    caKey: KeyObject,
    private readonly algorithm: SignatureAlgorithm,
  ) {
    this.prefixAfterSerial = Buffer.concat([algorithm.algorithmIdentifier, issuerName]);
    this.fixedExtensions = Buffer.concat([
      // digitalSignature (bit 0) + keyEncipherment (bit 2): 0b1010_0000, 5 unused bits.
      extension(OID.keyUsage, true, Buffer.from([TAG.BIT_STRING, 0x02, 0x05, 0xa0])),
      extension(OID.extKeyUsage, false, sequence(OID.serverAuth, OID.clientAuth)),
      extension(OID.basicConstraints, true, EMPTY_NAME /* empty SEQUENCE: cA FALSE, no pathLen */),
      extension(OID.authorityKeyIdentifier, false, sequence(tlv(contextPrimitiveTag(0), authorityKeyId))),
    ]);
    this.signOptions = { key: caKey, dsaEncoding: 'der' };
  }

  /** Returns the DER of a signed leaf certificate. */
  encode(f: LeafFields): Buffer {
    const san = extension(
      OID.subjectAltName,
      true,
      sequence(tlv(URI_TAG, Buffer.from(f.uri, 'latin1'))),
    );
    const tbs = sequence(
      VERSION_V3,
      f.serial,
      this.prefixAfterSerial,
      sequence(time(f.notBefore), time(f.notAfter)),
      EMPTY_NAME,
      f.subjectPublicKeyInfo,
      tlv(contextConstructedTag(3), tlv(TAG.SEQUENCE, this.fixedExtensions, san)),
    );
    const signature = cryptoSign(this.algorithm.hash, tbs, this.signOptions);
    return sequence(tbs, this.algorithm.algorithmIdentifier, bitString(signature));
  }
}

/** Fields of a self-signed root certificate. */
export interface RootFields {
  readonly serial: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectPublicKeyInfo: Buffer;
  readonly privateKey: KeyObject;
}

/**
 * Encodes a self-signed CA root: basicConstraints CA:true (critical), keyUsage keyCertSign+cRLSign
 * (critical), subjectKeyIdentifier. No pathLen: operators may later put intermediates under it.
 */
export function encodeRoot(f: RootFields): Buffer {
  const algorithm = signatureAlgorithmFor(f.privateKey);
  if (!algorithm) throw new InvalidCaRootError(`cannot sign with a ${describeKey(f.privateKey)} key`);
  const spki = readWhole(f.subjectPublicKeyInfo).children();
  const ski = keyIdentifier(spki[1]!.bitStringBytes('subjectPublicKey'));
  const extensions = sequence(
    extension(OID.basicConstraints, true, sequence(TRUE)),
    // keyCertSign (bit 5) + cRLSign (bit 6): 0b0000_0110, 1 unused bit.
    extension(OID.keyUsage, true, Buffer.from([TAG.BIT_STRING, 0x02, 0x01, 0x06])),
    extension(OID.subjectKeyIdentifier, false, octetString(ski)),
  );
  const tbs = sequence(
    VERSION_V3,
    f.serial,
    algorithm.algorithmIdentifier,
    f.subject,
    sequence(time(f.notBefore), time(f.notAfter)),
    f.subject,
    f.subjectPublicKeyInfo,
    tlv(contextConstructedTag(3), extensions),
  );
  const signature = cryptoSign(algorithm.hash, tbs, { key: f.privateKey, dsaEncoding: 'der' });
  return sequence(tbs, algorithm.algorithmIdentifier, bitString(signature));
}

/** One certificate extension as found. */
export interface ParsedExtension {
  readonly critical: boolean;
  /** Content of the extnValue OCTET STRING. */
  readonly value: Buffer;
}

/** The fields of a certificate the CA needs; byte fields are views into the input. */
export interface ParsedCertificate {
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly subjectPublicKeyInfo: Buffer;
  /** Contents of the subjectPublicKey BIT STRING. */
  readonly subjectPublicKey: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Keyed by dotted OID. */
  readonly extensions: ReadonlyMap<string, ParsedExtension>;
}

/** Parses the parts of a DER certificate listed in `ParsedCertificate`; throws DerDecodeError. */
export function parseCertificate(der: Buffer): ParsedCertificate {
  const [tbsNode] = readWhole(der).expect(TAG.SEQUENCE, 'certificate').children();
  if (!tbsNode) throw new DerDecodeError('empty certificate', 0);
  const tbs = tbsNode.expect(TAG.SEQUENCE, 'tbsCertificate').children();
  let i = 0;
  if (tbs[0]?.tag === contextConstructedTag(0)) i++; // version
  const need = (what: string, tag: number): DerNode => {
    const n = tbs[i++];
    if (!n) throw new DerDecodeError(`tbsCertificate ends before ${what}`, tbsNode.end);
    return n.expect(tag, what);
  };
  need('serialNumber', TAG.INTEGER);
  need('signature', TAG.SEQUENCE);
  const issuer = need('issuer', TAG.SEQUENCE);
  const validity = need('validity', TAG.SEQUENCE).children();
  const subject = need('subject', TAG.SEQUENCE);
  const spki = need('subjectPublicKeyInfo', TAG.SEQUENCE);
  const spkiParts = spki.children();
  if (spkiParts.length !== 2) throw new DerDecodeError('subjectPublicKeyInfo must have two fields', spki.start);
  if (validity.length !== 2) throw new DerDecodeError('validity must have two times', tbsNode.start);
  const extensions = new Map<string, ParsedExtension>();
  for (; i < tbs.length; i++) {
    const n = tbs[i]!;
    if (n.tag !== contextConstructedTag(3)) continue; // issuer/subject unique ids: unused
    const [list] = n.children();
    if (!list) throw new DerDecodeError('empty extensions', n.start);
    for (const ext of list.expect(TAG.SEQUENCE, 'extensions').children()) {
      const parts = ext.expect(TAG.SEQUENCE, 'extension').children();
      const id = parts[0]?.oidString('extnID');
      let critical = false;
      let valueNode = parts[1];
      if (valueNode?.tag === TAG.BOOLEAN) {
        critical = valueNode.content()[0] !== 0;
        valueNode = parts[2];
      }
      if (!id || !valueNode) throw new DerDecodeError('extension without id or value', ext.start);
      if (extensions.has(id)) throw new DerDecodeError(`extension ${id} appears twice`, ext.start);
      extensions.set(id, { critical, value: valueNode.expect(TAG.OCTET_STRING, 'extnValue').content() });
    }
  }
  return {
    issuer: issuer.raw(),
    subject: subject.raw(),
    subjectPublicKeyInfo: spki.raw(),
    subjectPublicKey: spkiParts[1]!.bitStringBytes('subjectPublicKey'),
    notBefore: readTime(validity[0]!, 'notBefore'),
    notAfter: readTime(validity[1]!, 'notAfter'),
    extensions,
  };
}

/** Dotted OIDs of the extensions read from operator roots. */
export const EXT = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
} as const;

/** basicConstraints → whether cA is TRUE. */
export function decodeBasicConstraintsCa(value: Buffer): boolean {
  const [first] = readWhole(value).expect(TAG.SEQUENCE, 'basicConstraints').children();
  return first?.tag === TAG.BOOLEAN && first.content()[0] !== 0;
}

/** keyUsage → whether keyCertSign (bit 5) is set. */
export function decodeKeyUsageCertSign(value: Buffer): boolean {
  const bits = readWhole(value).expect(TAG.BIT_STRING, 'keyUsage').content();
  return bits.length >= 2 && (bits[1]! & 0x04) !== 0;
}

/** subjectKeyIdentifier → the key id bytes. */
export function decodeSubjectKeyIdentifier(value: Buffer): Buffer {
  return readWhole(value).expect(TAG.OCTET_STRING, 'subjectKeyIdentifier').content();
}
