import type { MeshState } from '../../core/model/state.js';
import type { Service, Workload, WaypointRef } from '../../core/model/types.js';
import { noHealthyEndpoint, noRoute } from '../../core/hbone/status.js';

/** Where an outbound connection goes. */
export type Route =
  | {
      readonly kind: 'hbone';
      /** The HBONE peer: the destination node's ztunnel, or a waypoint. */
      readonly host: string;
      readonly port: number;
      readonly authority: string;
      readonly serverIdentity: string;
      readonly allowedIdentities: readonly string[];
      readonly dstWorkload: Workload;
      readonly dstService?: Service;
      readonly dstIp: string;
      readonly dstPort: number;
      readonly viaWaypoint: boolean;
    }
  | {
      readonly kind: 'passthrough';
      readonly dstIp: string;
      readonly dstPort: number;
      readonly dstWorkload?: Workload;
      readonly dstService?: Service;
    };

/**
 * Picks endpoints round-robin per service. One per ztunnel; its counters are the only state that
 * outlives a configuration update.
 */
export class Router {
  readonly #next = new Map<string, number>();

  /**
   * Decides the route for a connection from `source` to `dstIp:dstPort` (the original destination).
   * Throws an HboneError (NR / UH) when there is nowhere to send it.
   */
  route(state: MeshState, source: Workload, dstIp: string, dstPort: number): Route {
    const service = state.serviceByVip(dstIp);
    if (service) {
      const sp = state.servicePort(service, dstPort);
      if (!sp) throw noRoute(`${dstIp}:${dstPort} (service ${service.hostname} has no port ${dstPort})`);
      if (service.waypoint) {
        const wp = this.#waypoint(state, service.waypoint, source);
        if (wp) return wp.route(`${dstIp}:${dstPort}`, dstIp, dstPort, service);
      }
      const endpoints = state.endpointsOf(service);
      if (endpoints.length === 0) throw noHealthyEndpoint(service.hostname);
      const key = `${service.namespace}/${service.name}`;
      const i = (this.#next.get(key) ?? 0) % endpoints.length;
      this.#next.set(key, i + 1);
      const w = endpoints[i]!;
      return this.#toWorkload(state, w, sp.targetPort, service);
    }
    const w = state.workloadByIp(dstIp);
    if (!w) return { kind: 'passthrough', dstIp, dstPort };
    if (w.waypoint) {
      const wp = this.#waypoint(state, w.waypoint, source);
      if (wp) return wp.route(`${dstIp}:${dstPort}`, dstIp, dstPort, undefined, w);
    }
    return this.#toWorkload(state, w, dstPort, undefined, dstIp);
  }

  #toWorkload(state: MeshState, w: Workload, port: number, service?: Service, ip?: string): Route {
    const dstIp = ip ?? w.ips[0];
    if (!dstIp) throw noRoute(`workload ${w.namespace}/${w.name} (it has no ip)`);
    if (w.protocol !== 'HBONE') {
      return { kind: 'passthrough', dstIp, dstPort: port, dstWorkload: w, ...(service ? { dstService: service } : {}) };
    }
    const node = state.node(w.node);
    if (!node) throw noRoute(`workload ${w.namespace}/${w.name} (its node ${w.node} is unknown)`);
    const identity = state.workloadIdentity(w);
    return {
      kind: 'hbone',
      host: node.ztunnelAddress,
      port: node.hbonePort,
      authority: hostPort(dstIp, port),
      serverIdentity: identity,
      allowedIdentities: service ? [identity, ...service.subjectAltNames] : [identity],
      dstWorkload: w,
      ...(service ? { dstService: service } : {}),
      dstIp,
      dstPort: port,
      viaWaypoint: false,
    };
  }

  #waypoint(state: MeshState, ref: WaypointRef, source: Workload) {
    let wp = state.workloadByIp(ref.address);
    if (!wp) {
      const svc = state.serviceByVip(ref.address);
      const eps = svc ? state.endpointsOf(svc) : [];
      wp = eps[0];
    }
    if (!wp) throw noRoute(`waypoint ${ref.address} (no waypoint workload is ready)`);
    // Traffic leaving the waypoint itself goes to the destination, not back to the waypoint.
    if (wp.uid === source.uid) return undefined;
    const waypoint = wp;
    const identity = state.workloadIdentity(waypoint);
    return {
      route: (authority: string, dstIp: string, dstPort: number, service?: Service, dst?: Workload): Route => ({
        kind: 'hbone',
        host: waypoint.ips[0]!,
        port: ref.hbonePort,
        authority,
        serverIdentity: identity,
        allowedIdentities: [identity],
        dstWorkload: dst ?? waypoint,
        ...(service ? { dstService: service } : {}),
        dstIp,
        dstPort,
        viaWaypoint: true,
      }),
    };
  }
}

export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
