/**
 * `GET /v1/discovery?node=<node>&since=<version>&proxy=ztunnel|waypoint`: authenticates a
 * proxy and hands its stream to the hub.
 *
 * Authentication: the TLS client certificate must chain to the trust bundle and hold one SPIFFE
 * ID of this trust domain. A ztunnel (the ztunnel identity) must also send its node token: the
 * certificate says "a ztunnel", the token says which node, and the node decides which policies
 * it receives. A waypoint presents the identity of its Gateway (`ns/<ns>/sa/<gateway name>`).
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../../core/telemetry/log.js';
import { peerSpiffeId } from '../../core/identity/certificate.js';
import { tryParseSpiffeId } from '../../core/identity/spiffe.js';
import { DISCOVERY_QUERY, NDJSON, ztunnelIdentity } from '../../core/discovery/wire.js';
import { bearer, type Authenticator } from '../auth.js';
import { RequestRefusedError, refuse, sendError } from '../http.js';
import type { ControlPlaneMetrics } from '../metrics.js';
import type { DiscoveryHub, ProxyKind } from './hub.js';

/** What the discovery endpoint needs. */
export interface DiscoveryHandlerInputs {
  readonly trustDomain: string;
  readonly authenticator: Authenticator;
  readonly hub: DiscoveryHub;
  /** Whether a configuration is loaded (clients must never get an empty snapshot at start-up). */
  readonly ready: () => boolean;
  /** Whether `identity` is the identity of a waypoint Gateway. */
  readonly isWaypoint: (identity: string) => boolean;
  readonly metrics: ControlPlaneMetrics;
  readonly logger: Logger;
}

const VERSION_RE = /^[0-9a-f]{32}$/;

/** Answers one discovery request: an error, or 200 and a stream that stays open. */
export async function handleDiscovery(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, inputs: DiscoveryHandlerInputs): Promise<void> {
  const socket = stream.session?.socket as TLSSocket | undefined;
  const peer = `${socket?.remoteAddress ?? '?'}:${socket?.remotePort ?? '?'}`;
  try {
    if (headers[':method'] !== 'GET') throw refuse('method', 'use GET');
    const url = new URL(headers[':path'] ?? '/', 'https://control-plane');
    const node = url.searchParams.get(DISCOVERY_QUERY.node) ?? undefined;
    const since = url.searchParams.get(DISCOVERY_QUERY.since) ?? undefined;
    const proxyParam = url.searchParams.get(DISCOVERY_QUERY.proxy) ?? 'ztunnel';
    if (since !== undefined && !VERSION_RE.test(since)) throw refuse('badRequest', `since=${JSON.stringify(since)} is not a version (32 hex digits)`);
    if (proxyParam !== 'ztunnel' && proxyParam !== 'waypoint') throw refuse('badRequest', `proxy=${JSON.stringify(proxyParam)}; expected ztunnel or waypoint`);
    const proxy: ProxyKind = proxyParam;
    if (!socket?.authorized) {
      throw refuse('unauthenticated', `a client certificate issued by the mesh ca is required${socket?.authorizationError ? ` (${String(socket.authorizationError)})` : ''}`);
    }
    const identity = peerSpiffeId(socket.getPeerCertificate());
    if (!identity || tryParseSpiffeId(identity)?.trustDomain !== inputs.trustDomain) {
      throw refuse('unauthenticated', `the client certificate holds no spiffe id of trust domain ${inputs.trustDomain}`);
    }
    let subscribedNode: string | undefined;
    if (identity === ztunnelIdentity(inputs.trustDomain)) {
      if (proxy !== 'ztunnel') throw refuse('notAllowed', `${identity} may only subscribe as proxy=ztunnel`);
      const credential = bearer(headers.authorization);
      const caller = credential === undefined ? undefined : await inputs.authenticator.authenticate(credential);
      if (!caller) throw refuse('unauthenticated', 'a ztunnel must send "authorization: Bearer <node token>"; the token is missing or not valid');
      if (node !== undefined && node !== caller.node) throw refuse('notAllowed', `the token belongs to node ${caller.node}, not ${node}`);
      subscribedNode = caller.node;
    } else if (proxy === 'waypoint' && inputs.isWaypoint(identity)) {
      subscribedNode = undefined;
    } else {
      throw refuse('notAllowed', `${identity} may not subscribe to discovery as ${proxy}; ztunnels use ${ztunnelIdentity(inputs.trustDomain)}, waypoints the identity of their Gateway`);
    }
    if (!inputs.ready()) throw refuse('notReady', 'the control plane has not loaded its configuration yet; retry');
    stream.respond({ ':status': 200, 'content-type': NDJSON, 'cache-control': 'no-store' });
    inputs.hub.subscribe(stream, {
      proxy,
      ...(subscribedNode !== undefined ? { node: subscribedNode } : {}),
      identity,
      peer,
      ...(since !== undefined ? { since } : {}),
    });
  } catch (err) {
    const refusal = err instanceof RequestRefusedError ? err : refuse('internal', (err as Error).message);
    inputs.metrics.discoveryRejected.inc({ reason: refusal.code });
    inputs.logger.warn({ peer, status: refusal.status, code: refusal.code, reason: refusal.message }, 'discovery request refused');
    sendError(stream, refusal);
  }
}
