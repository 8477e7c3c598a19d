/**
 * The terminal handler: sends the request to one endpoint of the chosen backend (or to the
 * workload the client addressed) and resolves with the response headers; the body streams on.
 * HTTP/1.1 clients are forwarded over HTTP/1.1 keep-alive streams, HTTP/2 (gRPC) over HTTP/2, and
 * any request to a Service port whose `appProtocol` says HTTP/2 (`kubernetes.io/h2c`) over HTTP/2.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { Handler, RequestContext, WaypointResponse } from './context.js';
import { forwardable } from './hop.js';
import { noHealthyUpstream, unknownDestination, upstreamReset, upstreamRefused, WaypointError, upstreamConnectFailed } from './status.js';
import type { Endpoint, UpstreamPool } from './upstream.js';
import type { Workload } from '../core/model/types.js';
import { http2Upstream } from '../core/model/app-protocol.js';
import type { ConnectionPool } from '../core/model/traffic-policy.js';
import type { TrafficPolicies } from './traffic-policy/cluster.js';

const REFUSED_STREAM = http2.constants.NGHTTP2_REFUSED_STREAM;

/** The endpoint `w` of the request's backend (service port → target port). */
function backendEndpoint(ctx: RequestContext, w: Workload): Endpoint {
  const { service, port } = ctx.backend!;
  const sp = ctx.stream.state.servicePort(service, port);
  return { workload: w, ip: w.ips[0]!, port: sp?.targetPort ?? port, service };
}

/**
 * Whether the backend's Service port says HTTP/2 (`appProtocol: kubernetes.io/h2c`, `http2`,
 * `grpc`: core/model/app-protocol.ts): then an HTTP/1.1 request goes upstream as HTTP/2 with
 * prior knowledge (Gateway API GEP-1911, upstream HTTPRouteBackendProtocolH2C), its headers
 * already free of hop-by-hop ones (`forwardable`), `Host` as `:authority`.
 */
function backendSpeaksH2(ctx: RequestContext): boolean {
  const b = ctx.backend;
  return b !== undefined && http2Upstream(ctx.stream.state.servicePort(b.service, b.port));
}

/** Chooses the endpoint of this try. */
export function endpointFor(ctx: RequestContext, pool: UpstreamPool): Endpoint {
  const state = ctx.stream.state;
  if (ctx.backend) {
    const { service, subset } = ctx.backend;
    const w = pool.pick(state, service, subset);
    if (!w) throw noHealthyUpstream(subset ? `${service.hostname} (subset ${subset.name})` : service.hostname);
    return backendEndpoint(ctx, w);
  }
  const w = ctx.stream.dstWorkload;
  if (!w) throw unknownDestination(ctx.stream.authority);
  return { workload: w, ip: ctx.stream.dstIp, port: ctx.stream.dstPort };
}

function upstreamHeaders(ctx: RequestContext): Record<string, string | string[] | undefined> {
  const h = { ...ctx.headers };
  const xff = h['x-forwarded-for'];
  h['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(',') : xff}, ${ctx.stream.srcIp}` : ctx.stream.srcIp;
  h['x-forwarded-proto'] ??= 'http';
  return h;
}

/**
 * The request headers of an HTTP/1.1 try as Node's flat `[name, value, ...]` list, in the order
 * `upstreamHeaders` + `host` gives them. A list goes straight to the request head: an object
 * would go through `setHeader` (and its name map) once per header per try.
 */
function upstreamHeaderList(ctx: RequestContext): Array<string | string[]> {
  const out: Array<string | string[]> = [];
  const src = ctx.stream.srcIp;
  let sawXff = false;
  let sawProto = false;
  let sawHost = false;
  const h = ctx.headers;
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (k === 'x-forwarded-for') {
      sawXff = true;
      out.push(k, v !== '' ? `${Array.isArray(v) ? v.join(',') : v}, ${src}` : src);
    } else if (k === 'host') {
      sawHost = true;
      out.push(k, ctx.authority);
    } else {
      if (k === 'x-forwarded-proto') sawProto = true;
      out.push(k, v);
    }
  }
  if (!sawXff) out.push('x-forwarded-for', src);
  if (!sawProto) out.push('x-forwarded-proto', 'http');
  if (!sawHost) out.push('host', ctx.authority);
  return out;
}

function sendBody(ctx: RequestContext, out: NodeJS.WritableStream & { end(data?: Buffer): unknown }): void {
  const b = ctx.body;
  if (b.kind === 'none') out.end();
  else if (b.kind === 'buffer') {
    ctx.requestBytes = b.data.length;
    out.end(b.data);
  } else {
    b.consumed = true;
    // A body that fails (the client went away, a mirror's copy was dropped: filters/mirror.ts)
    // fails the upstream request: no backend is left waiting for the rest of a body that will
    // not come (pipe() passes no error on).
    const fail = (err: Error) => (out as unknown as { destroy(e: Error): void }).destroy(err);
    if (b.stream.destroyed) return fail(b.stream.errored ?? new Error('the request body was closed before it was sent'));
    b.stream.once('error', fail);
    b.stream.on('data', (c: Buffer) => (ctx.requestBytes += c.length));
    b.stream.pipe(out);
  }
}

/** RFC 9110 §9.2.2 idempotent methods: sending one twice has the effect of sending it once. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Whether the client says a request may be repeated: an idempotent method, or an `Idempotency-Key` (as Go's client). */
export function idempotent(ctx: Pick<RequestContext, 'method' | 'headers'>): boolean {
  return IDEMPOTENT.has(ctx.method) || ctx.headers['idempotency-key'] !== undefined || ctx.headers['x-idempotency-key'] !== undefined;
}

/** Errors Node raises for a write into a stream that had already ended: nothing reached the backend. */
const NOTHING_WRITTEN = new Set(['ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED', 'ERR_HTTP2_INVALID_STREAM', 'ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_GOAWAY_SESSION']);

/**
 * A try that failed before any response byte. `reused`: the request went out on a keep-alive
 * stream an earlier request had used, which the backend may have been closing at that moment.
 */
function failure(ctx: RequestContext, target: string, err: unknown, reused: boolean): WaypointError {
  if (ctx.signal.aborted && ctx.signal.reason instanceof WaypointError) return ctx.signal.reason;
  if (err instanceof WaypointError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code !== undefined && NOTHING_WRITTEN.has(code)) return upstreamReset(target, err, true);
  return upstreamReset(target, err, reused && idempotent(ctx));
}

/** Requests each pooled HTTP/1.1 stream has carried (`maxRequestsPerConnection`). */
const requestsOnStream = new WeakMap<object, number>();

/**
 * A DestinationRule's `connectionPool` on one HTTP/1.1 try: `connectTimeout` until the request
 * has its stream (503 `UF` after it), `maxRequestsPerConnection` (the stream is closed after its
 * last response instead of going back to the pool), `idleTimeout` (a shorter idle time once the
 * stream is back in the pool).
 */
function applyPoolToRequest(req: http.ClientRequest, limits: ConnectionPool, target: string): void {
  const connectMs = limits.connectTimeoutMs;
  const timer = connectMs !== undefined ? setTimeout(() => req.destroy(upstreamConnectFailed(target, new Error(`no connection within the connectTimeout of ${connectMs} ms`))), Math.min(connectMs, 2_147_483_647)) : undefined;
  req.once('socket', (socket) => {
    if (timer) clearTimeout(timer);
    const max = limits.maxRequestsPerConnection;
    const n = (requestsOnStream.get(socket) ?? 0) + 1;
    requestsOnStream.set(socket, n);
    // Node's client closes the stream after the response instead of pooling it (as for `Connection: close`).
    if (max !== undefined && n >= max) req.once('response', () => (req.shouldKeepAlive = false));
    const idle = limits.idleTimeoutMs;
    if (idle !== undefined) req.once('response', () => socket.once('free', () => socket.timeout !== undefined && socket.timeout <= idle ? undefined : socket.setTimeout(idle)));
  });
  if (timer) req.once('close', () => clearTimeout(timer));
}

function forwardH1(ctx: RequestContext, pool: UpstreamPool, ep: Endpoint, target: string, limits?: ConnectionPool): Promise<WaypointResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      agent: pool.agent(ctx.stream.state, ep),
      host: ep.ip,
      port: ep.port,
      method: ctx.method,
      path: ctx.path,
      headers: upstreamHeaderList(ctx) as unknown as http.OutgoingHttpHeaders,
    });
    if (limits) applyPoolToRequest(req, limits, target);
    let settled = false;
    const onAbort = () => req.destroy(ctx.signal.reason as Error);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    req.once('response', (res) => {
      settled = true;
      resolve({
        status: res.statusCode ?? 502,
        headers: forwardable(res.headers),
        body: res,
        trailers: () => res.trailers,
        discard: () => res.resume(),
        upstream: target,
      });
      res.once('close', () => ctx.signal.removeEventListener('abort', onAbort));
    });
    req.once('error', (err) => {
      ctx.signal.removeEventListener('abort', onAbort);
      if (settled) return;
      settled = true;
      // Never sent again here: whether a lost request may be re-sent is the retry policy's call
      // (filters/retry.ts), so every re-send is a counted try.
      reject(failure(ctx, target, err, req.reusedSocket));
    });
    sendBody(ctx, req);
  });
}

async function forwardH2(ctx: RequestContext, pool: UpstreamPool, ep: Endpoint, target: string, limits?: ConnectionPool): Promise<WaypointResponse> {
  let session: http2.ClientHttp2Session;
  let timer: NodeJS.Timeout | undefined;
  try {
    const connectMs = limits?.connectTimeoutMs;
    const opening = pool.h2Session(ctx.stream.state, ep);
    session = await (connectMs === undefined
      ? opening
      : Promise.race([
          opening,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(upstreamConnectFailed(target, new Error(`no connection within the connectTimeout of ${connectMs} ms`))), Math.min(connectMs, 2_147_483_647));
          }),
        ]));
  } catch (err) {
    throw err instanceof WaypointError ? err : upstreamConnectFailed(target, err);
  } finally {
    clearTimeout(timer);
  }
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(
        { ':method': ctx.method, ':path': ctx.path, ':authority': ctx.authority, ':scheme': 'http', ...upstreamHeaders(ctx) },
        { endStream: ctx.body.kind === 'none' },
      );
    } catch (err) {
      // The session closed (GOAWAY, its tunnel ended) between the pool's check and this request.
      reject(upstreamReset(target, err, true));
      return;
    }
    let trailers: http2.IncomingHttpHeaders | undefined;
    let settled = false;
    const onAbort = () => stream.destroy(ctx.signal.reason as Error);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    stream.once('trailers', (t) => (trailers = t));
    stream.once('response', (headers) => {
      settled = true;
      resolve({
        status: Number(headers[':status']),
        headers: forwardable(headers),
        body: stream,
        trailers: () => (trailers ? forwardable(trailers) : undefined),
        discard: () => stream.close(),
        upstream: target,
      });
    });
    stream.once('close', () => {
      ctx.signal.removeEventListener('abort', onAbort);
      if (!settled) {
        settled = true;
        const why = new Error(`stream closed with code ${stream.rstCode}`);
        reject(stream.rstCode === REFUSED_STREAM ? upstreamRefused(target, why) : failure(ctx, target, why, false));
      }
    });
    stream.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(stream.rstCode === REFUSED_STREAM ? upstreamRefused(target, err) : failure(ctx, target, err, false));
    });
    if (ctx.body.kind !== 'none') sendBody(ctx, stream);
  });
}

/**
 * The handler at the bottom of the stack. A backend whose DestinationRule sets a
 * `trafficPolicy` goes through its cluster (`traffic-policy/cluster.ts`: load balancer,
 * connection-pool limits, outlier detection); any other keeps round-robin in the pool.
 */
export function forwarder(pool: UpstreamPool, traffic?: TrafficPolicies): Handler {
  const send = (ctx: RequestContext, ep: Endpoint, limits?: ConnectionPool) => {
    ctx.endpoint = ep.workload;
    const target = ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
    return ctx.httpVersion === '2.0' || backendSpeaksH2(ctx) ? forwardH2(ctx, pool, ep, target, limits) : forwardH1(ctx, pool, ep, target, limits);
  };
  return async (ctx) => {
    const b = ctx.backend;
    if (traffic && b) {
      const eps = b.subset ? b.subset.endpoints : ctx.stream.state.endpointsOf(b.service);
      const cluster = traffic.cluster(ctx, eps);
      if (cluster) return cluster.forward(ctx, eps, (w) => send(ctx, backendEndpoint(ctx, w), cluster.settings.connectionPool));
    }
    return send(ctx, endpointFor(ctx, pool));
  };
}
