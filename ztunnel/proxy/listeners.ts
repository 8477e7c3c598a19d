import net from 'node:net';
import { readSocks5Request, sendSocks5Reply, SOCKS5_REPLY, isIpAddress } from '../socks5.js';
import type { HboneError } from '../../core/hbone/status.js';
import type { Outbound } from './outbound.js';
import { normalizeIp } from './outbound.js';
import type { ProxyInputs } from './inputs.js';

/**
 * Outbound capture (15001): connections redirected here by the eBPF connect hook. The original
 * destination is what getsockname() returns (the getsockname hook rewrites it), which Node caches
 * as localAddress/localPort at accept; a connection whose local address is this listener's own
 * was not redirected, and is closed.
 */
export function outboundCaptureServer(inputs: ProxyInputs, outbound: Outbound): net.Server {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    const dstIp = normalizeIp(socket.localAddress ?? '');
    const dstPort = socket.localPort ?? 0;
    const own = server.address() as net.AddressInfo | null;
    if (!own || dstPort === own.port) {
      inputs.logger.warn(
        { src: `${socket.remoteAddress}:${socket.remotePort}` },
        'connection to the outbound port was not redirected by the eBPF hooks; closing it (is the node agent running?)',
      );
      socket.destroy();
      return;
    }
    void outbound.handle(socket, dstIp, dstPort);
  });
  return server;
}

/**
 * SOCKS5 (15080): explicit-proxy mode for hosts without eBPF and for tests. The source workload
 * is identified by the client's IP, exactly as for captured traffic.
 */
export function socks5Server(inputs: ProxyInputs, outbound: Outbound): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => {});
    readSocks5Request(socket).then(
      (target) => {
        if (!isIpAddress(target.host)) {
          // DNS is the control plane's job (a later DNS proxy); resolving names here would hide errors.
          sendSocks5Reply(socket, SOCKS5_REPLY.addressTypeNotSupported);
          inputs.logger.warn({ host: target.host }, 'socks5: only ip addresses are supported; resolve the name first');
          socket.end();
          return;
        }
        void outbound.handle(socket, normalizeIp(target.host), target.port, {
          onEstablished: () => sendSocks5Reply(socket, SOCKS5_REPLY.succeeded),
          onFailed: (err: HboneError) =>
            sendSocks5Reply(socket, err.flag === 'DENY' ? SOCKS5_REPLY.notAllowed : err.flag === 'NR' ? SOCKS5_REPLY.hostUnreachable : SOCKS5_REPLY.connectionRefused),
        });
      },
      (err: Error) => {
        inputs.logger.warn({ src: socket.remoteAddress, error: err.message }, 'socks5 handshake failed');
        socket.destroy();
      },
    );
  });
}
