import { MeshError } from '../errors.js';

/**
 * The one place where failures map to HBONE statuses and to the `response_flags` metric label.
 * Flags (documented in docs/metrics.md):
 *   -        none
 *   DPE      downstream protocol error: malformed CONNECT, bad headers, non-TLS bytes on 15008
 *   TLS      TLS handshake failed: untrusted/expired certificate, other trust domain, no SNI/ALPN h2
 *   PEER_ID  the server presented a SPIFFE ID the destination is not allowed to have
 *   NR       no route: the authority is not a local workload, or no workload/service for the destination
 *   UH       no healthy endpoint behind the service
 *   DENY     denied by AuthorizationPolicy or PeerAuthentication
 *   CONNECT  the upstream connection failed (refused, timed out, reset during connect)
 *   UC       the upstream answered an HBONE status other than 200
 */
export type ResponseFlag = '-' | 'DPE' | 'TLS' | 'PEER_ID' | 'NR' | 'UH' | 'DENY' | 'CONNECT' | 'UC';

export class HboneError extends MeshError {
  /** The HTTP status an HBONE server answers with for this failure. */
  readonly status: number;
  readonly flag: ResponseFlag;
  constructor(code: string, status: number, flag: ResponseFlag, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
    this.flag = flag;
  }
}

export const badRequest = (why: string) => new HboneError('ERR_HBONE_BAD_REQUEST', 400, 'DPE', `bad hbone request: ${why}`);

export const unknownAuthority = (authority: string) =>
  new HboneError(
    'ERR_HBONE_UNKNOWN_AUTHORITY',
    400,
    'NR',
    `authority ${authority} is not a meshed workload on this node; check the workload's node and protocol in the config`,
  );

export const denied = (why: string) => new HboneError('ERR_HBONE_DENIED', 401, 'DENY', `connection denied: ${why}`);

export const upstreamConnectFailed = (target: string, cause: unknown) =>
  new HboneError(
    'ERR_UPSTREAM_CONNECT',
    503,
    'CONNECT',
    `connect to ${target} failed: ${(cause as Error)?.message ?? cause}; check that the workload listens on that port`,
    { cause },
  );

export const noRoute = (target: string) =>
  new HboneError('ERR_NO_ROUTE', 503, 'NR', `no workload or service for ${target}; check the config has it`);

export const noHealthyEndpoint = (service: string) =>
  new HboneError('ERR_NO_HEALTHY_ENDPOINT', 503, 'UH', `service ${service} has no healthy endpoint`);

export const peerIdentityMismatch = (got: string | undefined, expected: readonly string[]) =>
  new HboneError(
    'ERR_HBONE_PEER_IDENTITY',
    503,
    'PEER_ID',
    `hbone server presented identity ${got ?? '(none)'} but the destination may only be ${expected.join(', ')}`,
  );

export const tlsFailed = (peer: string, cause: unknown) =>
  new HboneError(
    'ERR_HBONE_TLS',
    503,
    'TLS',
    `tls with ${peer} failed: ${(cause as Error)?.message ?? cause}; check both sides trust the same mesh root`,
    { cause },
  );

export const hboneStatus = (peer: string, status: number) =>
  new HboneError('ERR_HBONE_STATUS', 503, 'UC', `hbone peer ${peer} answered ${status}`);

export const hboneConnectFailed = (peer: string, cause: unknown) =>
  new HboneError(
    'ERR_HBONE_CONNECT',
    503,
    'CONNECT',
    `hbone connection to ${peer} failed: ${(cause as Error)?.message ?? cause}; ` +
      'maybe a NetworkPolicy or firewall blocks port 15008, or the peer ztunnel is down',
    { cause },
  );

/** Maps any error to a flag; unknown errors count as upstream connect failures. */
export function flagOf(err: unknown): ResponseFlag {
  return err instanceof HboneError ? err.flag : 'CONNECT';
}
