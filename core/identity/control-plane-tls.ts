/**
 * TLS options for connections to the control plane (port 15012): TLS 1.3, ALPN h2, the server
 * verified by the trust anchors and by its SPIFFE ID (the control plane's serving certificate
 * carries one URI SAN, no DNS name or IP), and optionally a client certificate.
 */
import type { ConnectionOptions, PeerCertificate } from 'node:tls';
import { peerSpiffeId, type WorkloadCertificate } from './certificate.js';
import type { TrustAnchors } from './trust-anchors.js';
import { MeshError } from '../errors.js';

/** Inputs of `controlPlaneTlsOptions`. */
export interface ControlPlaneTlsInputs {
  readonly trust: TrustAnchors;
  /** The SPIFFE ID the control plane must present, e.g. `spiffe://cluster.local/ns/istio-system/sa/istiod`. */
  readonly serverIdentity: string;
  /** Presented to authenticate the stream (discovery); absent for token-only calls (the CA). */
  readonly clientCertificate?: WorkloadCertificate;
}

/** Options for `http2.connect(url, options)` / `tls.connect`. */
export function controlPlaneTlsOptions(inputs: ControlPlaneTlsInputs): ConnectionOptions {
  const cert = inputs.clientCertificate;
  return {
    ca: [...inputs.trust.roots()],
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
    // Never send an IP address as SNI (RFC 6066 forbids it; Node warns).
    servername: '',
    ...(cert ? { key: cert.keyPem, cert: cert.certChainPem.join('\n') } : {}),
    checkServerIdentity: (_host: string, peer: PeerCertificate) => {
      const id = peerSpiffeId(peer);
      if (id === inputs.serverIdentity) return undefined;
      return new MeshError(
        'ERR_CONTROL_PLANE_IDENTITY',
        `the control plane presented ${id ?? 'a certificate without a SPIFFE id'}, expected ${inputs.serverIdentity}; check CONTROL_PLANE_ADDRESS and the trust domain`,
      );
    },
  };
}
