import { SERVER_NAME, type CertFiles } from '../certs.js';
import { servicesOf, startPair, type PairAddresses, type Service } from './pair.js';
import type { PathDriver } from './types.js';

/** Listen addresses of the haproxy pair. */
const ADDRESSES: PairAddresses = { a: '127.0.0.6', b: '127.0.0.7' };

/**
 * client → haproxy A (tcp mode, TLS to B with a client cert) → haproxy B (tcp mode, `verify
 * required`) → server. TLS 1.3 only, ECDSA P-256, both sides verify the test root.
 */
export const haproxy: PathDriver = {
  name: 'haproxy',
  description: 'client -> haproxy A (tcp, mTLS out) -> haproxy B (tcp, mTLS in, verify required) -> server',
  start: (ctx) =>
    startPair(ctx, {
      name: 'haproxy',
      addresses: ADDRESSES,
      configA: haproxyConfig('a', ctx.certs, servicesOf(ctx.origin)),
      configB: haproxyConfig('b', ctx.certs, servicesOf(ctx.origin)),
      // -db: stay in the foreground as a single process, so its pid is the one to sample.
      argv: (file) => ['haproxy', '-db', '-f', file],
    }),
};

/** haproxy.cfg text of one side of the pair. */
export function haproxyConfig(side: 'a' | 'b', certs: CertFiles, services: readonly Service[]): string {
  const head = [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    // iperf3's control connection is idle for the whole test.
    '  timeout client 120s',
    '  timeout server 120s',
  ];
  const body = services.flatMap((svc) => (side === 'a' ? sideA(svc, certs) : sideB(svc, certs)));
  return [...head, ...body, ''].join('\n');
}

function sideA(svc: Service, certs: CertFiles): string[] {
  return [
    `listen ${svc.name}`,
    `  bind ${ADDRESSES.a}:${svc.port}`,
    `  server b ${ADDRESSES.b}:${svc.port} ssl crt ${certs.clientPem} ca-file ${certs.caCert} verify required` +
      ` verifyhost ${SERVER_NAME} sni str(${SERVER_NAME}) ssl-min-ver TLSv1.3`,
  ];
}

function sideB(svc: Service, certs: CertFiles): string[] {
  return [
    `listen ${svc.name}`,
    `  bind ${ADDRESSES.b}:${svc.port} ssl crt ${certs.serverPem} ca-file ${certs.caCert} verify required ssl-min-ver TLSv1.3`,
    `  server origin ${svc.origin.host}:${svc.origin.port}`,
  ];
}
