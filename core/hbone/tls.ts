import { createHash } from 'node:crypto';
import tls from 'node:tls';
import type { WorkloadCertificate } from '../identity/certificate.js';

/** The only TLS version and application protocol HBONE speaks. */
export const HBONE_TLS = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', alpn: 'h2' } as const;

// Secure contexts are costly to build (key parsing, store building); one per certificate object,
// dropped with it when the secret manager rotates the certificate.
const contexts = new WeakMap<WorkloadCertificate, tls.SecureContext>();

/** A TLS context presenting `cert` and trusting only its mesh roots. */
export function secureContextFor(cert: WorkloadCertificate): tls.SecureContext {
  let ctx = contexts.get(cert);
  if (!ctx) {
    ctx = tls.createSecureContext({
      key: cert.keyPem,
      cert: cert.certChainPem.join('\n'),
      ca: cert.rootsPem,
      minVersion: HBONE_TLS.minVersion,
      maxVersion: HBONE_TLS.maxVersion,
    });
    contexts.set(cert, ctx);
  }
  return ctx;
}

/**
 * The SNI a client sends so that a node proxy serving many identities knows which certificate to
 * present: a hash of the destination's SPIFFE ID (identities are not valid DNS names, and a hash
 * does not reveal the identity on the wire).
 */
export function sniForIdentity(spiffeId: string): string {
  return `${createHash('sha256').update(spiffeId).digest('hex').slice(0, 32)}.hbone.mesh`;
}
