/**
 * HBONE streams arriving at the waypoint: `:authority` is the `VIP:port` (or `podIP:port`) the
 * client dialled. The stream is accepted (200), then its first bytes decide how it is served:
 * the HTTP/2 preface → HTTP/2 (gRPC), an HTTP/1 request line → HTTP/1.1, anything else → TCP
 * passthrough with L4 policy only. Ports named `tcp*`/`tls*`/`https*`/... skip sniffing
 * (server-first protocols would otherwise wait for a first client byte).
 */
import type { ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../core/telemetry/log.js';
import type { DrainTracker } from '../core/drain.js';
import type { TcpMetrics } from '../core/telemetry/metrics.js';
import { UNKNOWN } from '../core/telemetry/metrics.js';
import { splice } from '../core/net/splice.js';
import { respondError, type HboneStreamRequest } from '../core/hbone/server.js';
import { HboneError, unknownAuthority } from '../core/hbone/status.js';
import type { MeshState } from '../core/model/state.js';
import type { StreamInfo } from './context.js';
import type { Downstream, StreamState } from './downstream.js';
import { authorizeRequest } from '../core/authz/evaluate.js';
import { policiesFor, type GatewayRef } from './authz.js';
import type { UpstreamPool } from './upstream.js';
import { tcpRouteTarget } from './tcp-route.js';
import { identityNamespace } from './routes.js';

/** Port name prefixes (Istio's protocol selection) that mean "not HTTP": passed through as TCP. */
export const TCP_PORT_PREFIXES = ['tcp', 'tls', 'https', 'mongo', 'mysql', 'redis', 'postgres'];

/** How long a tunnel the waypoint has ended may stay half-open before it is closed. */
export const HALF_CLOSED_GRACE_MS = 1000;

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const HTTP1_METHOD_RE = /^[A-Z]{3,10} /;

export interface InboundInputs {
  readonly state: () => MeshState;
  readonly gateway: () => GatewayRef;
  readonly downstream: Downstream;
  readonly pool: UpstreamPool;
  readonly drain: DrainTracker;
  readonly tcpMetrics: TcpMetrics;
  readonly logger: Logger;
}

/** What the first bytes of a stream say it carries. */
export function sniff(first: Buffer): 'h2' | 'http1' | 'tcp' {
  const n = Math.min(first.length, H2_PREFACE.length);
  if (n >= 4 && first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return 'h2';
  if (HTTP1_METHOD_RE.test(first.subarray(0, 11).toString('latin1'))) return 'http1';
  return 'tcp';
}

export class Inbound {
  readonly #in: InboundInputs;

  constructor(inputs: InboundInputs) {
    this.#in = inputs;
  }

  onStream = (req: HboneStreamRequest): void => {
    const state = this.#in.state();
    const stream = req.stream;
    try {
      const info = this.#resolve(state, req);
      stream.respond({ ':status': 200 });
      const portName = info.dstService?.ports.find((p) => p.port === info.dstPort)?.name ?? '';
      if (TCP_PORT_PREFIXES.some((p) => portName === p || portName.startsWith(`${p}-`))) {
        void this.#tcp(stream, info);
        return;
      }
      stream.once('readable', () => {
        const first = stream.read() as Buffer | null;
        if (!first) {
          stream.end();
          return;
        }
        stream.unshift(first);
        const kind = sniff(first);
        if (kind === 'tcp') void this.#tcp(stream, info);
        else this.#http(stream, info, kind === 'h2' ? '2.0' : '1.1');
      });
    } catch (err) {
      const e = err instanceof HboneError ? err : unknownAuthority(req.authority);
      this.#in.logger.warn({ peer_identity: req.peerIdentity, authority: req.authority, response_flags: e.flag }, e.message);
      respondError(stream, e.status);
    }
  };

  #resolve(state: MeshState, req: HboneStreamRequest): StreamInfo {
    return resolveStream(state, {
      srcIp: req.forwardedFor?.ip ?? req.peerAddress.replace(/^::ffff:/, ''),
      srcPort: req.forwardedFor?.port ?? 0,
      srcIdentity: req.peerIdentity,
      authority: req.authority,
      dstIp: req.targetIp,
      dstPort: req.targetPort,
      ...(typeof req.headers['baggage'] === 'string' ? { baggage: req.headers['baggage'] } : {}),
    });
  }

  /**
   * The stream's info under the current snapshot: each request on a keep-alive connection is
   * routed and authorized with the configuration of its own time, as Envoy does. Undefined when
   * the destination is gone from the new snapshot: the request is refused and the tunnel closed,
   * never served under the old configuration (whose policies may have changed).
   */
  refresh = (info: StreamInfo): StreamInfo | undefined => {
    const now = this.#in.state();
    if (now === info.state) return info;
    try {
      return resolveStream(now, info);
    } catch {
      return undefined;
    }
  };

  #http(stream: ServerHttp2Stream, info: StreamInfo, version: '1.1' | '2.0'): void {
    const st: StreamState = {
      info,
      refresh: this.refresh,
      inFlight: 0,
      draining: false,
      // HTTP/1.1: an orderly end (END_STREAM, a FIN at the client), as a server closes an idle
      // keep-alive connection; a reset would reach the client as RST and fail a request racing
      // with the close that could have been retried cleanly. The 'finish' guard below bounds it.
      close: () => (version === '1.1' ? stream.end() : stream.close()),
    };
    const untrack = this.#in.drain.track({
      graceful: () => {
        st.draining = true;
        // Busy streams close when their last request finishes (downstream.ts).
        if (st.inFlight === 0) st.close();
      },
      force: () => stream.destroy(),
    });
    stream.once('close', untrack);
    // Once the waypoint has closed its side (after `connection: close`, or a 400), the client has
    // nothing more to say that would be read: close the tunnel if it does not, so none leaks.
    stream.once('finish', () => setTimeout(() => stream.destroy(), HALF_CLOSED_GRACE_MS).unref());
    this.#in.downstream.serve(stream, st, version);
  }

  /**
   * Non-HTTP: L4 policy of the waypoint, then bytes to one endpoint of the service (or the
   * workload), or of the backend a TCPRoute on the service picks for this connection.
   */
  async #tcp(stream: ServerHttp2Stream, info: StreamInfo): Promise<void> {
    const state = info.state;
    const log = this.#in.logger;
    const routed = info.dstService ? tcpRouteTarget(state, info.dstService, info.dstPort, Math.random, identityNamespace(info.srcIdentity)) : undefined;
    const svc = routed && 'service' in routed ? routed.service : info.dstService;
    const svcPort = routed && 'service' in routed ? routed.port : info.dstPort;
    // Policies are those of the Service the client addressed, whichever backend a TCPRoute picks.
    const decision = authorizeRequest(policiesFor(state, this.#in.gateway(), info.dstService), {
      sourcePrincipal: info.srcIdentity,
      sourceIp: info.srcIp,
      destinationIp: info.dstIp,
      destinationPort: info.dstPort,
    });
    const dstW = svc ? this.#in.pool.pick(state, svc) : info.dstWorkload;
    const labels = {
      reporter: 'waypoint',
      source_workload: info.srcWorkload?.name ?? UNKNOWN,
      source_workload_namespace: info.srcWorkload?.namespace ?? UNKNOWN,
      source_principal: info.srcIdentity,
      source_app: info.srcWorkload?.labels['app'] ?? UNKNOWN,
      destination_workload: dstW?.name ?? UNKNOWN,
      destination_workload_namespace: dstW?.namespace ?? UNKNOWN,
      destination_principal: dstW ? state.workloadIdentity(dstW) : UNKNOWN,
      destination_app: dstW?.labels['app'] ?? UNKNOWN,
      destination_service: svc?.hostname ?? UNKNOWN,
      destination_service_namespace: svc?.namespace ?? UNKNOWN,
      request_protocol: 'tcp',
      connection_security_policy: 'mutual_tls',
      response_flags: '-',
    };
    const m = this.#in.tcpMetrics;
    const refuse = (flag: string, why: string) => {
      const l = { ...labels, response_flags: flag };
      m.opened.inc(l);
      m.closed.inc(l);
      log.warn({ src: info.srcIdentity, authority: info.authority, response_flags: flag }, why);
      stream.destroy();
    };
    if (!decision.allowed) return refuse('RBAC', `connection denied: ${decision.reason}`);
    if (routed && 'error' in routed) return refuse('NR', `${routed.error}; see the route's ResolvedRefs status`);
    if (!dstW) return refuse('UH', `no healthy endpoint for ${info.authority}`);
    const port = svc ? (state.servicePort(svc, svcPort)?.targetPort ?? svcPort) : info.dstPort;
    let upstream: Duplex;
    try {
      upstream = await this.#in.pool.open(state, { workload: dstW, ip: svc ? dstW.ips[0]! : info.dstIp, port, ...(svc ? { service: svc } : {}) });
    } catch (err) {
      return refuse('UF', (err as Error).message);
    }
    if (stream.destroyed) {
      upstream.destroy();
      return;
    }
    m.opened.inc(labels);
    const start = Date.now();
    let sent = 0;
    let received = 0;
    stream.on('data', (c: Buffer) => (sent += c.length));
    upstream.on('data', (c: Buffer) => (received += c.length));
    const untrack = this.#in.drain.track({ force: () => (stream.destroy(), upstream.destroy()) });
    splice(stream, upstream, (err) => {
      untrack();
      m.closed.inc(labels);
      m.sent.inc(labels, sent);
      m.received.inc(labels, received);
      log.info(
        {
          src: info.srcIdentity,
          authority: info.authority,
          upstream: `${dstW.ips[0]}:${port}`,
          ...(routed ? { route: `TCPRoute/${routed.route.namespace}/${routed.route.name}`, backend: svc ? `${svc.namespace}/${svc.name}:${svcPort}` : undefined } : {}),
          bytes_sent: sent,
          bytes_received: received,
          duration_ms: Date.now() - start,
          ...(err ? { error: err.message } : {}),
        },
        'connection complete',
      );
    });
  }
}

/** What a stream is, from its HBONE request, resolved against one snapshot. */
function resolveStream(state: MeshState, r: Omit<StreamInfo, 'state' | 'srcWorkload' | 'dstService' | 'dstWorkload'>): StreamInfo {
  const base = {
    srcIp: r.srcIp,
    srcPort: r.srcPort,
    srcIdentity: r.srcIdentity,
    authority: r.authority,
    dstIp: r.dstIp,
    dstPort: r.dstPort,
    state,
    ...(r.baggage !== undefined ? { baggage: r.baggage } : {}),
  };
  const src = state.workloadByIp(r.srcIp);
  const withSrc = src ? { ...base, srcWorkload: src } : base;
  const service = state.serviceByVip(r.dstIp);
  if (service) {
    if (!state.servicePort(service, r.dstPort)) throw unknownAuthority(r.authority);
    return { ...withSrc, dstService: service };
  }
  const w = state.workloadByIp(r.dstIp);
  if (w && w.protocol === 'HBONE') return { ...withSrc, dstWorkload: w };
  throw unknownAuthority(r.authority);
}
