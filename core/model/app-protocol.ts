/**
 * A Service port's `appProtocol` (Kubernetes; Gateway API GEP-1911, "Backend Protocol Selection"),
 * and what the waypoint makes of it: the protocol it speaks to the port's endpoints.
 *
 * - `kubernetes.io/h2c` (GEP-1911): HTTP/2 over cleartext with prior knowledge, whatever the client
 *   spoke. Istio (`protocol.Parse`) reads it, and its own `http2` and `grpc`, as HTTP/2, and
 *   configures the upstream cluster for HTTP/2; so does the waypoint.
 * - `kubernetes.io/ws` (GEP-1911): WebSocket over HTTP/1.1; the waypoint already forwards an
 *   HTTP/1.1 `Upgrade` as such (waypoint/upgrade.ts), nothing changes.
 * - `kubernetes.io/wss`: WebSocket over TLS to the backend; the waypoint does not originate TLS
 *   (its upstream is HBONE mTLS), so the port is treated as any other.
 * - anything else (or none): the upstream speaks what the client spoke.
 */

/** `appProtocol` values for which the waypoint speaks HTTP/2 (prior knowledge) to the endpoints. */
export const HTTP2_APP_PROTOCOLS: ReadonlySet<string> = new Set(['kubernetes.io/h2c', 'http2', 'grpc']);

/** Longest `appProtocol`: a qualified name, a 253-character DNS prefix, `/` and a 63-character name. */
export const APP_PROTOCOL_MAX = 253 + 1 + 63;

// Kubernetes validates appProtocol as a qualified name (ValidateServicePort: IsQualifiedName):
// an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
const PREFIX_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** Why `s` is not an `appProtocol` (a Kubernetes qualified name), or undefined when it is one. */
export function appProtocolProblem(s: string): string | undefined {
  const bad = `${JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s)} is not an appProtocol; expected a qualified name such as kubernetes.io/h2c or http2`;
  if (s.length === 0 || s.length > APP_PROTOCOL_MAX) return bad;
  const slash = s.indexOf('/');
  const prefix = slash < 0 ? undefined : s.slice(0, slash);
  const name = slash < 0 ? s : s.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !PREFIX_RE.test(prefix))) return bad;
  if (name.length > 63 || !NAME_RE.test(name)) return bad;
  return undefined;
}

/** Whether the waypoint speaks HTTP/2 with prior knowledge to the endpoints of a port with this `appProtocol`. */
export function http2Upstream(port: { readonly appProtocol?: string } | undefined): boolean {
  return port?.appProtocol !== undefined && HTTP2_APP_PROTOCOLS.has(port.appProtocol);
}
