/**
 * A minimal DER writer and reader, just enough for PKCS#10 requests and X.509 certificates.
 *
 * Why hand-written: the CA must sign thousands of certificates a second on one core. Generic
 * ASN.1 libraries build an object tree per certificate and re-encode it; here the fixed parts of a
 * certificate are encoded once per CA and only the variable parts (serial, validity, key, SAN) are
 * encoded per call. The reader is strict (definite lengths, single-byte tags, bounds checked) and
 * never copies: every node is a view into the caller's buffer.
 */
import { DerDecodeError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Tags

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Tag of a constructed, context-specific `[n]` (EXPLICIT, or IMPLICIT over a constructed type). */
export function contextConstructedTag(n: number): number {
  return 0xa0 | n;
}

/** Tag of a primitive, context-specific `[n]` (IMPLICIT over a primitive type). */
export function contextPrimitiveTag(n: number): number {
  return 0x80 | n;
}

// ---------------------------------------------------------------------------------------------
// Writer

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  throw new RangeError(`der value of ${n} bytes is too long`);
}

/**
 * Encodes one TLV whose content is the concatenation of `parts`.
 *
 * @example
 * tlv(TAG.SEQUENCE, integer(Buffer.from([1]))) // => <30 03 02 01 01>
 */
export function tlv(tag: number, ...parts: readonly Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const head = lengthBytes(len);
  const out = Buffer.allocUnsafe(1 + head.length + len);
  out[0] = tag;
  head.copy(out, 1);
  let off = 1 + head.length;
  for (const p of parts) {
    p.copy(out, off);
    off += p.length;
  }
  return out;
}

/** SEQUENCE of already-encoded elements. */
export function sequence(...parts: readonly Buffer[]): Buffer {
  return tlv(TAG.SEQUENCE, ...parts);
}

/** SET of already-encoded elements (callers keep DER's sort order; every set here has one element). */
export function set(...parts: readonly Buffer[]): Buffer {
  return tlv(TAG.SET, ...parts);
}

/**
 * INTEGER from an unsigned big-endian magnitude: leading zero bytes are dropped and a 0x00 is
 * prepended when the top bit is set, so the value is positive and minimally encoded.
 */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length === 0) return Buffer.from([TAG.INTEGER, 1, 0]);
  return (m[0]! & 0x80) !== 0 ? tlv(TAG.INTEGER, Buffer.from([0]), m) : tlv(TAG.INTEGER, m);
}

/** INTEGER from a small non-negative number. */
export function smallInteger(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError(`integer ${n} out of range`);
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v >>>= 8;
  } while (v > 0);
  return unsignedInteger(Buffer.from(bytes));
}

/** OBJECT IDENTIFIER from dotted form, e.g. `2.5.29.17`. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => {
    if (!/^\d+$/.test(s)) throw new RangeError(`bad oid ${dotted}`);
    return Number(s);
  });
  if (arcs.length < 2 || arcs[0]! > 2 || (arcs[0]! < 2 && arcs[1]! > 39)) throw new RangeError(`bad oid ${dotted}`);
  const body: number[] = [];
  const pushArc = (v: number): void => {
    const chunk: number[] = [v & 0x7f];
    let rest = Math.floor(v / 128);
    while (rest > 0) {
      chunk.unshift((rest & 0x7f) | 0x80);
      rest = Math.floor(rest / 128);
    }
    body.push(...chunk);
  };
  pushArc(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) pushArc(a);
  return tlv(TAG.OID, Buffer.from(body));
}

/** BIT STRING holding whole bytes (0 unused bits): keys and signatures. */
export function bitString(bytes: Buffer): Buffer {
  return tlv(TAG.BIT_STRING, Buffer.from([0]), bytes);
}

/** OCTET STRING. */
export function octetString(bytes: Buffer): Buffer {
  return tlv(TAG.OCTET_STRING, bytes);
}

/** UTF8String. */
export function utf8String(s: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));
}

/** BOOLEAN TRUE (DER: 0xff). FALSE is never encoded in our structures: it is the DEFAULT. */
export const TRUE = Buffer.from([TAG.BOOLEAN, 1, 0xff]);

/** NULL. */
export const NULL = Buffer.from([TAG.NULL, 0]);

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/**
 * X.509 Time: UTCTime for years 1950–2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5).
 * Sub-second precision is dropped, as DER requires for certificates.
 */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest =
    pad2(d.getUTCMonth() + 1) +
    pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) +
    pad2(d.getUTCMinutes()) +
    pad2(d.getUTCSeconds()) +
    'Z';
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, Buffer.from(pad2(y % 100) + rest, 'latin1'));
  if (y < 0 || y > 9999) throw new RangeError(`year ${y} cannot be encoded in a certificate`);
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

// ---------------------------------------------------------------------------------------------
// Reader

/** One decoded TLV: a view over `buf[start, end)`; the content is `buf[contentStart, end)`. */
export class DerNode {
  constructor(
    readonly buf: Buffer,
    readonly tag: number,
    readonly start: number,
    readonly contentStart: number,
    readonly end: number,
  ) {}

  /** The whole TLV (tag, length and content). */
  raw(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }

  /** The content octets. */
  content(): Buffer {
    return this.buf.subarray(this.contentStart, this.end);
  }

  get isConstructed(): boolean {
    return (this.tag & 0x20) !== 0;
  }

  /** Children of a constructed node, in order. */
  children(): DerNode[] {
    if (!this.isConstructed) throw new DerDecodeError(`tag 0x${this.tag.toString(16)} is not constructed`, this.start);
    const out: DerNode[] = [];
    let off = this.contentStart;
    while (off < this.end) {
      const child = readNode(this.buf, off, this.end);
      out.push(child);
      off = child.end;
    }
    return out;
  }

  /** Throws unless this node has the given tag; `what` names the field for the message. */
  expect(tag: number, what: string): this {
    if (this.tag !== tag) {
      throw new DerDecodeError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${this.tag.toString(16)}`, this.start);
    }
    return this;
  }

  /** Content of a BIT STRING with no unused bits (keys, signatures). */
  bitStringBytes(what: string): Buffer {
    this.expect(TAG.BIT_STRING, what);
    if (this.end - this.contentStart < 1 || this.buf[this.contentStart] !== 0) {
      throw new DerDecodeError(`${what}: bit string with unused bits`, this.start);
    }
    return this.buf.subarray(this.contentStart + 1, this.end);
  }

  /** Dotted form of an OBJECT IDENTIFIER (for messages; compare raw bytes on hot paths). */
  oidString(what: string): string {
    this.expect(TAG.OID, what);
    return decodeOid(this.content(), this.start);
  }
}

/**
 * Reads one TLV at `offset`, which must end at or before `limit` (default: the buffer's end).
 * Strict DER: single-byte tags, definite lengths of at most 4 bytes.
 */
export function readNode(buf: Buffer, offset = 0, limit = buf.length): DerNode {
  if (offset + 2 > limit) throw new DerDecodeError('truncated tag or length', offset);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerDecodeError('multi-byte tags are not supported', offset);
  let len = buf[offset + 1]!;
  let contentStart = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerDecodeError('indefinite length is not der', offset);
    if (n > 4) throw new DerDecodeError('length too large', offset);
    if (contentStart + n > limit) throw new DerDecodeError('truncated length', offset);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[contentStart + i]!;
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > limit) throw new DerDecodeError(`length ${len} runs past the end of the enclosing value`, offset);
  return new DerNode(buf, tag, offset, contentStart, end);
}

/** Reads a buffer that must hold exactly one TLV (no trailing bytes). */
export function readWhole(buf: Buffer): DerNode {
  const node = readNode(buf, 0, buf.length);
  if (node.end !== buf.length) throw new DerDecodeError(`${buf.length - node.end} trailing bytes`, node.end);
  return node;
}

function decodeOid(content: Buffer, at: number): string {
  if (content.length === 0) throw new DerDecodeError('empty oid', at);
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!;
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DerDecodeError('oid arc too large', at);
    if ((b & 0x80) === 0) {
      if (arcs.length === 0) {
        const first = v < 80 ? Math.floor(v / 40) : 2;
        arcs.push(first, v - first * 40);
      } else {
        arcs.push(v);
      }
      v = 0;
    } else if (i === content.length - 1) {
      throw new DerDecodeError('truncated oid', at);
    }
  }
  return arcs.join('.');
}

/** Parses a DER UTCTime or GeneralizedTime node of the `YYMMDDHHMMSSZ` / `YYYYMMDDHHMMSSZ` forms. */
export function readTime(node: DerNode, what: string): Date {
  const s = node.content().toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (node.tag === TAG.UTC_TIME && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (node.tag === TAG.GENERALIZED_TIME && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    year = Number(m[1]);
  } else {
    throw new DerDecodeError(`${what}: not a der time: ${JSON.stringify(s)}`, node.start);
  }
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

// ---------------------------------------------------------------------------------------------
// PEM

/** PEM-encodes DER with the given label, 64 base64 characters a line, ending in a newline. */
export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/**
 * Decodes the single PEM block of `pem` whose label is one of `labels`. Text around the block is
 * allowed (as OpenSSL allows), but exactly one block must be present: a bundle passed where one
 * object is expected is a caller error worth reporting.
 */
export function fromPem(pem: string, labels: readonly string[]): Buffer {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  let found: Buffer | undefined;
  let count = 0;
  for (let m = re.exec(pem); m; m = re.exec(pem)) {
    count++;
    if (labels.includes(m[1]!)) found = decodeBase64Strict(m[2]!);
    else throw new DerDecodeError(`pem block "${m[1]}" where ${labels.map((l) => `"${l}"`).join(' or ')} was expected`, 0);
  }
  if (count === 0 || !found) throw new DerDecodeError(`no pem block ${labels.map((l) => `"${l}"`).join(' or ')} found`, 0);
  if (count > 1) throw new DerDecodeError(`${count} pem blocks where one was expected`, 0);
  return found;
}

function decodeBase64Strict(body: string): Buffer {
  const compact = body.replace(/\s+/g, '');
  // Buffer.from silently skips invalid characters; a PEM with any is corrupt, not to be guessed at.
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) {
    throw new DerDecodeError('pem body is not valid base64', 0);
  }
  return Buffer.from(compact, 'base64');
}
