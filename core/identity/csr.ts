/**
 * PKCS#10 certificate signing requests: creating them for workloads (ztunnel creates one per pod
 * identity, so this avoids generic ASN.1 libraries) and parsing them for the CA. Parsing checks
 * structure only; what may be signed is the CA's decision (`ca.ts`).
 */
import { createPublicKey, generateKeyPair, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { DerDecodeError } from '../errors.js';
import { parseSpiffeId } from './spiffe.js';
import {
  TAG,
  bitString,
  contextConstructedTag,
  contextPrimitiveTag,
  fromPem,
  octetString,
  readWhole,
  sequence,
  set,
  tlv,
  toPem,
  TRUE,
  type DerNode,
} from './der.js';
import { OID, describeKey, oidName, signatureAlgorithmFor } from './x509.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** PEM labels accepted for a CSR (`NEW` is what older tools write). */
export const CSR_PEM_LABELS = ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'] as const;

/** The kinds of GeneralName (RFC 5280 4.2.1.6), indexed by their context tag number. */
const GENERAL_NAME_TYPES = [
  'otherName',
  'email',
  'dns',
  'x400Address',
  'directoryName',
  'ediPartyName',
  'uri',
  'ip',
  'registeredId',
] as const;

export type GeneralNameType = (typeof GENERAL_NAME_TYPES)[number];

/** One subject alternative name as found in a CSR; `value` is the raw content octets. */
export interface GeneralName {
  readonly type: GeneralNameType;
  readonly value: Buffer;
}

/** A SAN to put into a CSR built by `encodeCsr`. */
export interface SanInput {
  readonly type: 'uri' | 'dns' | 'email';
  readonly value: string;
}

/** A structurally valid PKCS#10 request; every Buffer is a view into the decoded DER. */
export interface ParsedCsr {
  /** The certificationRequestInfo TLV: the bytes the signature covers. */
  readonly info: Buffer;
  /** The subjectPublicKeyInfo TLV, to be copied into the certificate. */
  readonly subjectPublicKeyInfo: Buffer;
  /** The key's AlgorithmIdentifier TLV (algorithm OID and, for EC, the curve). */
  readonly keyAlgorithm: Buffer;
  /** Contents of the subjectPublicKey BIT STRING (for EC: the encoded point). */
  readonly publicKey: Buffer;
  /** The signature's AlgorithmIdentifier TLV. */
  readonly signatureAlgorithm: Buffer;
  readonly signature: Buffer;
  /** Every name of every subjectAltName extension, in order. */
  readonly subjectAltNames: readonly GeneralName[];
  /** How many subjectAltName extensions the request carries (more than one is malformed). */
  readonly subjectAltNameExtensions: number;
}

/**
 * Generates an ECDSA P-256 key and a CSR for `identity` with exactly one URI SAN (the identity),
 * an empty subject and a critical SAN, as Istio's workload CSRs have. Key generation runs on the
 * libuv thread pool, so many concurrent calls do not block the event loop.
 *
 * @example
 * const { keyPem, csrPem } = await generateKeyAndCsr('spiffe://cluster.local/ns/default/sa/sleep');
 */
export async function generateKeyAndCsr(identity: string): Promise<{ keyPem: string; csrPem: string }> {
  parseSpiffeId(identity);
  const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    csrPem: encodeCsr(privateKey, [{ type: 'uri', value: identity }]),
  };
}

/**
 * Builds and signs a PEM CSR with an empty subject and the given SANs (critical, because the
 * subject is empty). Any key `crypto.sign` supports and `signatureAlgorithmFor` knows may be used,
 * so tests and tools can also build requests the CA must refuse.
 */
export function encodeCsr(privateKey: KeyObject, sans: readonly SanInput[]): string {
  const algorithm = signatureAlgorithmFor(privateKey);
  if (!algorithm) throw new RangeError(`cannot sign a csr with a ${describeKey(privateKey)} key`);
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const names = sans.map((s) => {
    const tag = contextPrimitiveTag(GENERAL_NAME_TYPES.indexOf(s.type));
    return tlv(tag, Buffer.from(s.value, 'latin1'));
  });
  const attributes = tlv(
    contextConstructedTag(0),
    names.length === 0
      ? Buffer.alloc(0)
      : sequence(
          OID.extensionRequest,
          set(sequence(sequence(OID.subjectAltName, TRUE, octetString(sequence(...names))))),
        ),
  );
  const info = sequence(
    Buffer.from([TAG.INTEGER, 1, 0]), // version 0 (v1), the only PKCS#10 version
    Buffer.from([TAG.SEQUENCE, 0]), // empty subject: the identity lives in the SAN only
    spki,
    attributes,
  );
  const signature = cryptoSign(algorithm.hash, info, { key: privateKey, dsaEncoding: 'der' });
  return toPem('CERTIFICATE REQUEST', sequence(info, algorithm.algorithmIdentifier, bitString(signature)));
}

/**
 * Parses a PEM CSR (exactly one block). Checks structure only: the signature is not verified
 * here and the SANs are not judged. Throws `DerDecodeError` saying what is malformed.
 */
export function parseCsr(pem: string): ParsedCsr {
  return parseCsrDer(fromPem(pem, CSR_PEM_LABELS));
}

/** `parseCsr` over DER. */
export function parseCsrDer(der: Buffer): ParsedCsr {
  const top = readWhole(der).expect(TAG.SEQUENCE, 'certificationRequest').children();
  if (top.length !== 3) throw new DerDecodeError('a certificationRequest has three fields', 0);
  const [infoNode, sigAlgNode, sigNode] = top as [DerNode, DerNode, DerNode];
  const info = infoNode.expect(TAG.SEQUENCE, 'certificationRequestInfo').children();
  if (info.length !== 4) throw new DerDecodeError('certificationRequestInfo has four fields', infoNode.start);
  const [version, subject, spki, attrs] = info as [DerNode, DerNode, DerNode, DerNode];
  const v = version.expect(TAG.INTEGER, 'version').content();
  if (v.length !== 1 || v[0] !== 0) throw new DerDecodeError('unsupported csr version', version.start);
  subject.expect(TAG.SEQUENCE, 'subject');
  const spkiParts = spki.expect(TAG.SEQUENCE, 'subjectPublicKeyInfo').children();
  if (spkiParts.length !== 2) throw new DerDecodeError('subjectPublicKeyInfo has two fields', spki.start);
  const keyAlgorithm = spkiParts[0]!.expect(TAG.SEQUENCE, 'key algorithm');
  const publicKey = spkiParts[1]!.bitStringBytes('subjectPublicKey');
  attrs.expect(contextConstructedTag(0), 'attributes');
  sigAlgNode.expect(TAG.SEQUENCE, 'signatureAlgorithm');

  const subjectAltNames: GeneralName[] = [];
  let subjectAltNameExtensions = 0;
  let extensionRequests = 0;
  for (const attr of attrs.children()) {
    const [type, values] = attr.expect(TAG.SEQUENCE, 'attribute').children();
    if (!type || !values) throw new DerDecodeError('attribute without type or values', attr.start);
    if (!type.expect(TAG.OID, 'attribute type').raw().equals(OID.extensionRequest)) continue;
    if (++extensionRequests > 1) throw new DerDecodeError('more than one extensionRequest attribute', attr.start);
    const exts = values.expect(TAG.SET, 'attribute values').children();
    if (exts.length !== 1) throw new DerDecodeError('extensionRequest must hold one extension list', values.start);
    for (const ext of exts[0]!.expect(TAG.SEQUENCE, 'extensions').children()) {
      const parts = ext.expect(TAG.SEQUENCE, 'extension').children();
      const id = parts[0]?.expect(TAG.OID, 'extnID');
      const valueNode = parts[parts.length - 1];
      if (!id || !valueNode || parts.length < 2 || parts.length > 3) {
        throw new DerDecodeError('malformed extension', ext.start);
      }
      if (!id.raw().equals(OID.subjectAltName)) continue;
      subjectAltNameExtensions++;
      const names = readWhole(valueNode.expect(TAG.OCTET_STRING, 'extnValue').content());
      for (const gn of names.expect(TAG.SEQUENCE, 'subjectAltName').children()) {
        const n = gn.tag & 0x1f;
        if ((gn.tag & 0xc0) !== 0x80 || n >= GENERAL_NAME_TYPES.length) {
          throw new DerDecodeError(`tag 0x${gn.tag.toString(16)} is not a GeneralName`, gn.start);
        }
        subjectAltNames.push({ type: GENERAL_NAME_TYPES[n]!, value: gn.content() });
      }
    }
  }
  return {
    info: infoNode.raw(),
    subjectPublicKeyInfo: spki.raw(),
    keyAlgorithm: keyAlgorithm.raw(),
    publicKey,
    signatureAlgorithm: sigAlgNode.raw(),
    signature: sigNode.bitStringBytes('signature'),
    subjectAltNames,
    subjectAltNameExtensions,
  };
}

/** `URI:spiffe://…`, `DNS:example.com`, `IP:10.0.0.1`, `email:a@b`, or the type name for others. */
export function describeGeneralName(gn: GeneralName): string {
  switch (gn.type) {
    case 'uri':
      return `URI:${gn.value.toString('latin1')}`;
    case 'dns':
      return `DNS:${gn.value.toString('latin1')}`;
    case 'email':
      return `email:${gn.value.toString('latin1')}`;
    case 'ip':
      return gn.value.length === 4 ? `IP:${[...gn.value].join('.')}` : `IP:${gn.value.toString('hex')}`;
    default:
      return gn.type;
  }
}

/** Describes a key AlgorithmIdentifier TLV for messages: `rsaEncryption`, `ecPublicKey secp384r1`. */
export function describeKeyAlgorithm(algorithmIdentifier: Buffer): string {
  const parts = readWhole(algorithmIdentifier).children();
  const names = parts.filter((p) => p.tag === TAG.OID).map(oidName);
  return names.join(' ') || 'unknown';
}
