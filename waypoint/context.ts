/**
 * What every waypoint layer sees: one `RequestContext` per request, handlers that turn it into a
 * `WaypointResponse`, and layers `(next) => handler` stacked explicitly in `pipeline.ts`.
 */
import type { Readable } from 'node:stream';
import type { OutgoingHttpHeaders } from 'node:http';
import type { MeshState } from '../core/model/state.js';
import type { Service, Workload } from '../core/model/types.js';
import type { RequestAuth } from '../core/authz/evaluate.js';
import type { BackendRef, OrderedMatch, RouteRule } from '../core/model/routes.js';
import type { WaypointError, WaypointFlag } from './status.js';
import type { SubsetEndpoints } from './subsets.js';

/** Who sent the tunnelled connection and where it was going: fixed per HBONE stream. */
export interface StreamInfo {
  /** The original client (from `Forwarded`), else the HBONE peer. */
  readonly srcIp: string;
  readonly srcPort: number;
  /** SPIFFE id of the HBONE client (the source workload, as its ztunnel presented it). */
  readonly srcIdentity: string;
  readonly srcWorkload?: Workload;
  /** The CONNECT authority: `VIP:port` (service) or `podIP:port` (workload addressed directly). */
  readonly authority: string;
  readonly dstIp: string;
  /** Service port (or workload port when no service is involved). */
  readonly dstPort: number;
  readonly dstService?: Service;
  /** Set when the client addressed a workload directly (`istio.io/waypoint-for: workload|all`). */
  readonly dstWorkload?: Workload;
  /** Incoming `baggage`, passed on to the destination ztunnel. */
  readonly baggage?: string;
  readonly state: MeshState;
}

/** The request body: still streaming from the client, or buffered so tries can replay it. */
export type RequestBody =
  | { readonly kind: 'none' }
  | { readonly kind: 'stream'; readonly stream: Readable; consumed: boolean }
  | { readonly kind: 'buffer'; readonly data: Buffer };

/** A response on its way to the client: from a backend, or a local reply. */
export interface WaypointResponse {
  status: number;
  /** Lowercase names, hop-by-hop headers removed. */
  headers: OutgoingHttpHeaders;
  /** Streaming body from the backend; absent for local replies (then `text`). */
  body?: Readable;
  text?: string;
  /** Response trailers, once `body` ended (gRPC status travels here). */
  trailers?: () => Record<string, string | string[] | undefined> | undefined;
  /** Throws the body away (a retry discards a failed try's response this way). */
  discard?: () => void;
  /** The endpoint that answered (`ip:port`), for the access log. */
  upstream?: string;
}

export interface RequestContext {
  readonly stream: StreamInfo;
  readonly protocol: 'http' | 'grpc';
  /** `1.1` or `2.0`: the upstream speaks what the client spoke (gRPC needs HTTP/2 end to end). */
  readonly httpVersion: '1.1' | '2.0';
  readonly method: string;
  /** Path and query as they go upstream (URLRewrite changes it). */
  path: string;
  /** The Host / :authority the request carries; URLRewrite may change it. */
  authority: string;
  /** Request headers as they go upstream: lowercase, without hop-by-hop and pseudo headers. */
  readonly headers: Record<string, string | string[] | undefined>;
  body: RequestBody;
  /** Response header edits to apply on the way back (ResponseHeaderModifier). */
  readonly responseEdits: Array<(h: OutgoingHttpHeaders) => void>;
  /** Set by the jwt layer: the request's verified JWT (RequestAuthentication); absent without one. */
  auth?: RequestAuth;
  /** Set by the route layer. */
  route?: OrderedMatch;
  rule?: RouteRule;
  /**
   * Set by the backend layer: the weighted backend chosen for this request; `subset` when the
   * destination names a DestinationRule subset (its endpoints, resolved per snapshot).
   */
  backend?: { readonly ref: BackendRef; readonly service: Service; readonly port: number; readonly subset?: SubsetEndpoints };
  /** Chosen endpoint of the current try (set by the forwarder). */
  endpoint?: Workload;
  /**
   * Aborted when the client goes away or a timeout fires: cancels upstream work. A layer may
   * narrow it for the layers below (and restores it when they return).
   */
  signal: AbortSignal;
  /** Tries made (1 + retries). */
  tries: number;
  /** Response flags accumulated by layers (`DI`, `URX` ...); rendered comma-joined, `-` when empty. */
  readonly flags: WaypointFlag[];
  /** Extra access-log fields set by layers (policy that decided, audit, route name ...). */
  readonly log: Record<string, unknown>;
  /** Request body bytes seen (counted while forwarding). */
  requestBytes: number;
  /** W3C trace id from `traceparent`, when the client sent one. */
  readonly traceId?: string;
  /** Set by the downstream when the request must not be routed (`request-check.ts`); the refusal layer replies with it. */
  readonly refusal?: WaypointError;
  /** Resolves once the response was written to the client (or the client went away). */
  readonly done: Promise<WriteResult>;
  /** When the request arrived (`performance.now()`). */
  readonly startedAt: number;
}

/** How writing a response to the client ended. */
export interface WriteResult {
  readonly status: number;
  readonly responseBytes: number;
  /** `grpc-status` from the response trailers or headers. */
  readonly grpcStatus?: string;
  /** Set when the client went away (or the body failed) before the response was complete. */
  readonly error?: Error;
}

/**
 * Turns a request into a response; failures are rejections with a WaypointError, never
 * synchronous throws (layers with nothing to do return `next(ctx)` as is, without an async
 * frame of their own: one promise less per layer and request).
 */
export type Handler = (ctx: RequestContext) => Promise<WaypointResponse>;

/** One filter: wraps the next handler. */
export type Layer = (next: Handler) => Handler;

/**
 * A handler for layers that do their work synchronously: a throw becomes a rejection (the
 * Handler contract), and `next(ctx)` is returned as is, with no async frame of the layer's own.
 *
 * @example
 * export const routeLayer: Layer = (next) =>
 *   sync((ctx) => {
 *     if (!matches(ctx)) throw noRoute(ctx.path); // becomes a rejected promise
 *     return next(ctx);
 *   });
 */
export function sync(h: (ctx: RequestContext) => Promise<WaypointResponse>): Handler {
  return (ctx) => {
    try {
      return h(ctx);
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

/** Stacks layers, first = outermost: `compose([a, b], h)` is `a(b(h))`. */
export function compose(layers: readonly Layer[], terminal: Handler): Handler {
  return layers.reduceRight<Handler>((next, layer) => layer(next), terminal);
}

/** Renders flags as Envoy does: comma-joined, `-` when none. */
export function renderFlags(flags: readonly WaypointFlag[]): string {
  if (flags.length === 0) return '-';
  if (flags.length === 1) return flags[0]!;
  const set = [...new Set(flags.filter((f) => f !== '-'))];
  return set.length === 0 ? '-' : set.join(',');
}

/** A local reply (not from a backend). */
export function localReply(status: number, text: string, headers: OutgoingHttpHeaders = {}): WaypointResponse {
  return { status, headers: { 'content-type': 'text/plain', ...headers }, text };
}
