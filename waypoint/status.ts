import { MeshError } from '../core/errors.js';

/**
 * The one place where waypoint failures map to HTTP statuses and Envoy's `response_flags`
 * (documented in docs/waypoint.md and docs/metrics.md):
 *   -     none
 *   NR    no route: no rule matched, or the destination is not a known service/workload (404)
 *   NC    no cluster: the backend names a subset no DestinationRule defines (503, empty body, as
 *         Envoy's `cluster_not_found`)
 *   UH    no healthy endpoint behind the backend service, or in its subset, or every one ejected
 *         by outlier detection (503)
 *   UO    upstream overflow: a DestinationRule connectionPool limit is full (503, never retried)
 *   UF    upstream connection failure: HBONE to the endpoint's ztunnel failed or was refused (503)
 *   UC    upstream connection terminated before a response (503)
 *   UT    upstream request timeout: `timeout` / `timeouts.request` / per-try timeout (504)
 *   URX   retries exhausted; combined with the last try's flag (e.g. `URX,UF`)
 *   FI    fault injected: abort
 *   DI    fault injected: delay (combined with whatever happened after the delay)
 *   RBAC  denied by an L7 AuthorizationPolicy (403 `RBAC: access denied`)
 *   DPE   downstream protocol error: malformed request (400)
 *   DC    downstream closed before the response was complete
 */
export type WaypointFlag = '-' | 'NR' | 'NC' | 'UH' | 'UO' | 'UF' | 'UC' | 'UT' | 'URX' | 'FI' | 'DI' | 'RBAC' | 'DPE' | 'DC';

export class WaypointError extends MeshError {
  /** The HTTP status the client gets. */
  readonly status: number;
  readonly flag: WaypointFlag;
  /** Whether a retry policy may retry this failure, and under which `retryOn` condition. */
  readonly retryOn: 'connect-failure' | 'reset' | 'refused-stream' | undefined;
  /**
   * Whether sending the request again cannot make the backend act on it twice: the backend
   * provably did not get it (no connection, a refused stream, a stream that was closed before
   * the request was written), or it is an idempotent request (RFC 9110 §9.2.2) that a reused
   * keep-alive stream lost before any response byte (the race between a backend closing an idle
   * connection and a new request). Only such failures are retried under `reset-before-request`,
   * which the default policy has; `reset`, `5xx` and `gateway-error` retry any reset, as Envoy.
   */
  readonly safeToResend: boolean;
  /** Body of the local reply (Envoy's texts, which clients and tests know). */
  readonly body: string;
  /** Extra headers of the local reply (`www-authenticate` on a 401). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(
    code: string,
    status: number,
    flag: WaypointFlag,
    message: string,
    opts: { body?: string; retryOn?: WaypointError['retryOn']; safeToResend?: boolean; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = status;
    this.flag = flag;
    this.retryOn = opts.retryOn;
    this.safeToResend = opts.safeToResend ?? (opts.retryOn === 'connect-failure' || opts.retryOn === 'refused-stream');
    this.body = opts.body ?? message;
    this.headers = opts.headers ?? {};
  }
}

export const noRoute = (what: string) =>
  new WaypointError('ERR_WAYPOINT_NO_ROUTE', 404, 'NR', `no route for ${what}; check the HTTPRoute/VirtualService matches and parentRefs`, {
    body: 'no route',
  });

export const unknownDestination = (authority: string) =>
  new WaypointError(
    'ERR_WAYPOINT_UNKNOWN_DESTINATION',
    404,
    'NR',
    `${authority} is neither a service VIP:port nor a workload this waypoint serves; check the service's ports and waypoint in the config`,
    { body: 'no route' },
  );

export const noBackend = (rule: string) =>
  new WaypointError('ERR_WAYPOINT_NO_BACKEND', 500, 'NR', `route rule ${rule} has no backend with a weight above 0`, {
    body: 'no backend for this route',
  });

export const backendNotFound = (backend: string) =>
  new WaypointError('ERR_WAYPOINT_BACKEND_NOT_FOUND', 500, 'NR', `backend ${backend} is not a known service (or lacks the port); see the route's ResolvedRefs status`, {
    body: 'backend not found',
  });

/**
 * Envoy answers a route whose cluster (`outbound|port|subset|host`) does not exist with its
 * `cluster_not_found_response_code`, 503 by default, flag `NC` and an empty body; Istio builds no
 * cluster for a subset that no DestinationRule defines, so that is what a client of Istio sees.
 */
export const subsetNotFound = (backend: string, subset: string) =>
  new WaypointError(
    'ERR_WAYPOINT_SUBSET_NOT_FOUND',
    503,
    'NC',
    `subset ${JSON.stringify(subset)} of ${backend} is not defined; check that a DestinationRule for that host (in the route's namespace, the service's or the root namespace) lists it`,
    { body: '' },
  );

export const noHealthyUpstream = (service: string) =>
  new WaypointError('ERR_WAYPOINT_NO_HEALTHY_UPSTREAM', 503, 'UH', `service ${service} has no healthy endpoint`, {
    body: 'no healthy upstream',
  });

/**
 * Every endpoint of the backend (or its subset) is ejected by outlier detection: Envoy's
 * `no healthy upstream`, 503 `UH`, as when none is healthy at all.
 */
export const allEjected = (cluster: string, ejected: number) =>
  new WaypointError(
    'ERR_WAYPOINT_ALL_EJECTED',
    503,
    'UH',
    `all ${ejected} endpoints of ${cluster} are ejected by outlier detection; check the backends' 5xx answers and the DestinationRule's outlierDetection`,
    { body: 'no healthy upstream' },
  );

/**
 * A DestinationRule `connectionPool` limit is full (Envoy's circuit breaking): 503 `UO` with
 * Envoy's reset-reason text. Not retriable: Envoy never retries an overflow.
 */
export const upstreamOverflow = (cluster: string, what: string) =>
  new WaypointError('ERR_WAYPOINT_UPSTREAM_OVERFLOW', 503, 'UO', `${cluster}: ${what}; check the DestinationRule's connectionPool limits`, {
    body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
  });

export const upstreamConnectFailed = (target: string, cause: unknown) =>
  new WaypointError(
    'ERR_WAYPOINT_UPSTREAM_CONNECT',
    503,
    'UF',
    `connect to ${target} failed: ${(cause as Error)?.message ?? cause}; check the endpoint's ztunnel and that the workload listens on the target port`,
    { body: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure', retryOn: 'connect-failure', cause },
  );

export const upstreamReset = (target: string, cause: unknown, safeToResend = false) =>
  new WaypointError('ERR_WAYPOINT_UPSTREAM_RESET', 503, 'UC', `upstream ${target} closed before responding: ${(cause as Error)?.message ?? cause}`, {
    body: 'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
    retryOn: 'reset',
    safeToResend,
    cause,
  });

/** The backend refused the stream (HTTP/2 REFUSED_STREAM, or GOAWAY before it was processed): it never saw the request. */
export const upstreamRefused = (target: string, cause: unknown) =>
  new WaypointError('ERR_WAYPOINT_UPSTREAM_REFUSED', 503, 'UC', `upstream ${target} refused the stream before processing it: ${(cause as Error)?.message ?? cause}`, {
    body: 'upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset',
    retryOn: 'refused-stream',
    cause,
  });

export const upstreamTimeout = (ms: number, what: 'request' | 'per-try') =>
  new WaypointError('ERR_WAYPOINT_TIMEOUT', 504, 'UT', `upstream did not answer within the ${what} timeout of ${ms} ms`, {
    body: 'upstream request timeout',
  });

export const denied = (why: string) =>
  new WaypointError('ERR_WAYPOINT_DENIED', 403, 'RBAC', `request denied: ${why}`, { body: 'RBAC: access denied' });

/**
 * A JWT that does not verify (RequestAuthentication, waypoint/jwt.ts): 401 with Envoy's reason as
 * the body and its `www-authenticate` challenge (RFC 6750 §3), no response flag (Envoy sets none).
 */
export const jwtRejected = (message: string, reason: string) =>
  new WaypointError('ERR_WAYPOINT_JWT', 401, '-', message, {
    body: reason,
    headers: { 'www-authenticate': 'Bearer realm="waypoint", error="invalid_token"' },
  });

export const badRequest = (why: string) =>
  new WaypointError('ERR_WAYPOINT_BAD_REQUEST', 400, 'DPE', `bad request: ${why}`, { body: 'bad request' });

/** Any error as a WaypointError; unknown ones are upstream resets (503 UC), never a crash. */
export function asWaypointError(err: unknown, target = 'upstream'): WaypointError {
  return err instanceof WaypointError ? err : upstreamReset(target, err);
}
