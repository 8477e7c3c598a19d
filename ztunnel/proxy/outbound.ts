import net from 'node:net';
import type { Socket } from 'node:net';
import { formatForwardedFor } from '../../core/hbone/server.js';
import { HboneError, denied, flagOf, noRoute, upstreamConnectFailed } from '../../core/hbone/status.js';
import type { MeshState } from '../../core/model/state.js';
import type { Workload } from '../../core/model/types.js';
import { proxyConnection, recordRefused, type ConnectionInfo } from './connection.js';
import type { ProxyInputs } from './inputs.js';
import { Router, type Route } from './route.js';

/** Hooks for the listener the connection came from (SOCKS5 sends its reply through these). */
export interface OutboundHooks {
  /** The upstream is connected: bytes may flow. */
  onEstablished?(): void;
  /** The connection could not be set up; the downstream is destroyed right after. */
  onFailed?(err: HboneError): void;
}

/**
 * The outbound data path shared by the captured-traffic listener (15001) and SOCKS5 (15080):
 * identify the source workload, route the original destination, then tunnel over HBONE to the
 * destination's node (or waypoint) or pass plain TCP through.
 */
export class Outbound {
  readonly #in: ProxyInputs;
  readonly #router = new Router();

  constructor(inputs: ProxyInputs) {
    this.#in = inputs;
  }

  async handle(downstream: Socket, dstIp: string, dstPort: number, hooks: OutboundHooks = {}): Promise<void> {
    const state = this.#in.state();
    const srcIp = normalizeIp(downstream.remoteAddress ?? '');
    const info: ConnectionInfo = {
      direction: 'outbound',
      srcIp,
      srcPort: downstream.remotePort ?? 0,
      dstIp,
      dstPort,
      security: 'none',
    };
    const fail = (err: unknown) => {
      const e = err instanceof HboneError ? err : upstreamConnectFailed(`${dstIp}:${dstPort}`, err);
      recordRefused(this.#in, info, flagOf(e), e);
      if (hooks.onFailed) {
        hooks.onFailed(e);
        // Let the reply reach the client, then close.
        downstream.destroySoon();
      } else {
        downstream.destroy();
      }
    };
    downstream.on('error', () => {});
    try {
      const source = state.workloadByIp(srcIp);
      if (!source || source.node !== this.#in.config.nodeName) {
        throw noRoute(`source ${srcIp}: not a workload on node ${this.#in.config.nodeName}, so ztunnel has no identity to use for it`);
      }
      info.srcWorkload = source;
      const route = this.#router.route(state, source, dstIp, dstPort);
      if (source.protocol !== 'HBONE') {
        // A source outside the mesh (explicit-proxy use) has no identity to tunnel with: its bytes
        // go as plaintext, which a destination requiring mTLS must never receive.
        return await this.#plaintext(downstream, info, state, route, hooks);
      }
      info.dstIp = route.dstIp;
      info.dstPort = route.dstPort;
      if (route.dstWorkload) info.dstWorkload = route.dstWorkload;
      if (route.dstService) info.dstService = route.dstService;
      if (route.kind === 'hbone') {
        info.srcIdentity = state.workloadIdentity(source);
        info.dstIdentity = route.serverIdentity;
        info.hboneTarget = `${route.host}:${route.port}`;
        info.security = 'mutual_tls';
        const stream = await this.#in.hbone.connect({
          sourceIdentity: info.srcIdentity,
          serverIdentity: route.serverIdentity,
          allowedIdentities: route.allowedIdentities,
          host: route.host,
          port: route.port,
          authority: route.authority,
          headers: {
            forwarded: formatForwardedFor(srcIp, info.srcPort),
            baggage: baggageOf(source),
          },
        });
        if (downstream.destroyed) {
          stream.destroy();
          return;
        }
        hooks.onEstablished?.();
        proxyConnection(this.#in, info, downstream, stream, { socket: downstream, is: 'downstream' });
      } else {
        const upstream = await connectTcp(this.#in, route.dstIp, route.dstPort);
        if (downstream.destroyed) {
          upstream.destroy();
          return;
        }
        hooks.onEstablished?.();
        proxyConnection(this.#in, info, downstream, upstream, { socket: downstream, is: 'downstream' });
      }
    } catch (err) {
      fail(err);
    }
  }

  async #plaintext(downstream: Socket, info: ConnectionInfo, state: MeshState, route: Route, hooks: OutboundHooks): Promise<void> {
    // Through a waypoint a plaintext source cannot go (HBONE needs an identity); go to the workload.
    const dst = route.kind === 'hbone' && route.viaWaypoint ? undefined : route.dstWorkload;
    if (dst && dst.protocol === 'HBONE' && state.mtlsModeFor(dst, route.dstPort) === 'STRICT') {
      throw denied(`peer authentication requires mutual tls for ${dst.namespace}/${dst.name}, and the source ${info.srcIp} is not in the mesh`);
    }
    const upstream = await connectTcp(this.#in, route.dstIp, route.dstPort);
    if (downstream.destroyed) {
      upstream.destroy();
      return;
    }
    hooks.onEstablished?.();
    proxyConnection(this.#in, info, downstream, upstream, { socket: downstream, is: 'downstream' });
  }
}

/** Connects plain TCP; resolves once connected, rejects with an HboneError (503 CONNECT). */
export function connectTcp(inputs: ProxyInputs, ip: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Leave from the ztunnel's own address when it has one: the pod's STRICT ingress filter admits
    // only that address, and the access log then names the real hop.
    const bound = inputs.config.address;
    const localAddress = bound !== '0.0.0.0' && bound !== '::' && net.isIP(ip) === net.isIP(bound) ? bound : undefined;
    const s = inputs.connectTcp({ host: ip, port, allowHalfOpen: true, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    const onError = (err: Error) => {
      s.destroy();
      reject(upstreamConnectFailed(`${ip}:${port}`, err));
    };
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

/** Istio's baggage header: the source's workload metadata, for the destination's metrics. */
export function baggageOf(w: Workload): string {
  const parts = [`k8s.namespace.name=${w.namespace}`, `k8s.workload.name=${w.name}`, `k8s.node.name=${w.node}`];
  const app = w.labels['app'] ?? w.labels['app.kubernetes.io/name'];
  if (app) parts.push(`service.name=${app}`);
  const version = w.labels['version'] ?? w.labels['app.kubernetes.io/version'];
  if (version) parts.push(`service.version=${version}`);
  return parts.join(',');
}

/** `::ffff:1.2.3.4` → `1.2.3.4`: dual-stack sockets report IPv4 peers in mapped form. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}
