/**
 * The workload certificate as the data plane uses it, and reading a peer's SPIFFE ID from the
 * certificate it presented.
 */
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

/**
 * Everything needed to present an identity over TLS and to verify peers. Objects are never
 * mutated: a rotation produces a new object, so callers may cache per object (e.g. in a WeakMap).
 */
export interface WorkloadCertificate {
  /** The SPIFFE ID the certificate holds. */
  readonly identity: string;
  /** The private key, PKCS#8 PEM. */
  readonly keyPem: string;
  /** Leaf first, then any intermediates. */
  readonly certChainPem: string[];
  /** The mesh roots to trust for peers. */
  readonly rootsPem: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
}

// Node prints SANs as `URI:<value>, DNS:<value>, ...` and quotes (JSON-style) any value holding
// a comma, quote or backslash, so an unquoted value never contains ", ". A string that is a single
// unquoted URI entry therefore has no comma at all: that is exactly "one SAN, and it is a URI".
const SINGLE_SPIFFE_URI = /^URI:(spiffe:\/\/[^,"'\\]+)$/;

/**
 * The peer's SPIFFE ID: the certificate's single URI SAN when there is exactly one SAN and it
 * starts with `spiffe://`; undefined otherwise (no certificate, several SANs, a DNS SAN, ...).
 * The ID is not parsed further: callers check its form and trust domain with `parseSpiffeId`.
 *
 * @example
 * const id = peerSpiffeId(tlsSocket.getPeerCertificate());
 * if (!id || tryParseSpiffeId(id)?.trustDomain !== trustDomain) socket.destroy();
 */
export function peerSpiffeId(cert: PeerCertificate | X509Certificate | undefined | null): string | undefined {
  if (!cert) return undefined;
  const san = 'subjectAltName' in cert ? cert.subjectAltName : (cert as PeerCertificate).subjectaltname;
  if (typeof san !== 'string') return undefined;
  return SINGLE_SPIFFE_URI.exec(san)?.[1];
}
