import type { Duplex } from 'node:stream';
import type net from 'node:net';
import type { Service, Workload } from '../../core/model/types.js';
import { UNKNOWN, type TcpLabels } from '../../core/telemetry/metrics.js';
import type { ResponseFlag } from '../../core/hbone/status.js';
import { splice } from '../../core/net/splice.js';
import type { ProxyInputs } from './inputs.js';

/** What a proxied connection is, for its metrics and its access-log line. */
export interface ConnectionInfo {
  readonly direction: 'outbound' | 'inbound';
  readonly srcIp: string;
  readonly srcPort: number;
  srcWorkload?: Workload;
  srcIdentity?: string;
  dstIp: string;
  dstPort: number;
  dstWorkload?: Workload;
  dstIdentity?: string;
  dstService?: Service;
  /** The HBONE peer (ztunnel or waypoint) when tunnelled. */
  hboneTarget?: string;
  security: 'mutual_tls' | 'none';
}

function labels(info: ConnectionInfo, flag: ResponseFlag): TcpLabels {
  const s = info.srcWorkload;
  const d = info.dstWorkload;
  return {
    reporter: info.direction === 'outbound' ? 'source' : 'destination',
    source_workload: s?.name ?? UNKNOWN,
    source_workload_namespace: s?.namespace ?? UNKNOWN,
    source_principal: info.srcIdentity ?? UNKNOWN,
    source_app: s?.labels['app'] ?? UNKNOWN,
    destination_workload: d?.name ?? UNKNOWN,
    destination_workload_namespace: d?.namespace ?? UNKNOWN,
    destination_principal: info.dstIdentity ?? UNKNOWN,
    destination_app: d?.labels['app'] ?? UNKNOWN,
    destination_service: info.dstService?.hostname ?? UNKNOWN,
    destination_service_namespace: info.dstService?.namespace ?? UNKNOWN,
    request_protocol: 'tcp',
    connection_security_policy: info.security,
    response_flags: flag,
  };
}

function accessLogFields(info: ConnectionInfo) {
  return {
    direction: info.direction,
    src: {
      addr: `${info.srcIp}:${info.srcPort}`,
      workload: info.srcWorkload?.name,
      namespace: info.srcWorkload?.namespace,
      identity: info.srcIdentity,
    },
    dst: {
      addr: `${info.dstIp}:${info.dstPort}`,
      workload: info.dstWorkload?.name,
      namespace: info.dstWorkload?.namespace,
      identity: info.dstIdentity,
      service: info.dstService?.hostname,
      hbone: info.hboneTarget,
    },
    security: info.security,
  };
}

/** A connection that failed before any byte was proxied: counted as opened and closed, logged once. */
export function recordRefused(inputs: ProxyInputs, info: ConnectionInfo, flag: ResponseFlag, err: Error): void {
  const l = labels(info, flag);
  inputs.metrics.opened.inc(l);
  inputs.metrics.closed.inc(l);
  inputs.logger.warn(
    { ...accessLogFields(info), response_flags: flag, error: err.message, code: (err as { code?: string }).code },
    'connection refused',
  );
}

/**
 * Splices an accepted downstream connection with its upstream, under the drain tracker, and
 * emits the connection's metrics and one access-log line when both sides closed.
 *
 * `downstream` is the side the source's bytes arrive on; byte counts come from the TCP socket's
 * own counters (no per-chunk bookkeeping on the data path).
 */
export function proxyConnection(
  inputs: ProxyInputs,
  info: ConnectionInfo,
  downstream: Duplex,
  upstream: Duplex,
  tcpSide: { socket: net.Socket; is: 'downstream' | 'upstream' },
): void {
  const start = process.hrtime.bigint();
  const l = labels(info, '-');
  inputs.metrics.opened.inc(l);
  const untrack = inputs.drain.track({
    force: () => {
      downstream.destroy();
      upstream.destroy();
    },
  });
  splice(downstream, upstream, (err) => {
    untrack();
    const sock = tcpSide.socket;
    const fromSource = tcpSide.is === 'downstream' ? sock.bytesRead : sock.bytesWritten;
    const toSource = tcpSide.is === 'downstream' ? sock.bytesWritten : sock.bytesRead;
    inputs.metrics.closed.inc(l);
    // Istio's (and Envoy's) naming: received = request direction, sent = response direction.
    inputs.metrics.received.inc(l, fromSource);
    inputs.metrics.sent.inc(l, toSource);
    inputs.logger.info(
      {
        ...accessLogFields(info),
        bytes_received: fromSource,
        bytes_sent: toSource,
        duration_ms: Number((process.hrtime.bigint() - start) / 1_000_000n),
        response_flags: '-',
        ...(err ? { error: err.message } : {}),
      },
      'connection complete',
    );
  });
}
