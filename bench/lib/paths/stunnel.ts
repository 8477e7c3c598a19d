import { SERVER_NAME, type CertFiles } from '../certs.js';
import { servicesOf, startPair, type PairAddresses, type Service } from './pair.js';
import type { PathDriver } from './types.js';

/** Listen addresses of the stunnel pair (loopback aliases need no set-up on Linux). */
const ADDRESSES: PairAddresses = { a: '127.0.0.4', b: '127.0.0.5' };

/**
 * client → stunnel A (plaintext in, TLS client with cert) → stunnel B (TLS server requiring and
 * verifying the client cert) → server. TLS 1.3 only, ECDSA P-256, both sides verify the test root.
 */
export const stunnel: PathDriver = {
  name: 'stunnel',
  description: 'client -> stunnel A (plaintext in, mTLS out) -> stunnel B (mTLS in) -> server',
  start: (ctx) =>
    startPair(ctx, {
      name: 'stunnel',
      addresses: ADDRESSES,
      configA: stunnelConfig('a', ctx.certs, servicesOf(ctx.origin)),
      configB: stunnelConfig('b', ctx.certs, servicesOf(ctx.origin)),
      argv: (file) => ['stunnel', file],
    }),
};

/** stunnel.conf text of one side. */
export function stunnelConfig(side: 'a' | 'b', certs: CertFiles, services: readonly Service[]): string {
  const global = [
    'foreground = yes',
    'pid =',
    'syslog = no',
    'debug = warning',
    // Same as the other proxies: no Nagle delay on either socket.
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
    'sslVersionMin = TLSv1.3',
    'sslVersionMax = TLSv1.3',
    `CAfile = ${certs.caCert}`,
    'verifyChain = yes',
    'requireCert = yes',
    ...(side === 'a'
      ? ['client = yes', `cert = ${certs.clientCert}`, `key = ${certs.clientKey}`, `checkHost = ${SERVER_NAME}`, `sni = ${SERVER_NAME}`]
      : [`cert = ${certs.serverCert}`, `key = ${certs.serverKey}`]),
  ];
  const sections = services.flatMap((svc) => [
    '',
    `[${svc.name}]`,
    side === 'a'
      ? [`accept = ${ADDRESSES.a}:${svc.port}`, `connect = ${ADDRESSES.b}:${svc.port}`]
      : [`accept = ${ADDRESSES.b}:${svc.port}`, `connect = ${svc.origin.host}:${svc.origin.port}`],
  ].flat());
  return [...global, ...sections, ''].join('\n');
}
