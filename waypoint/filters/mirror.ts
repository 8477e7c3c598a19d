import { PassThrough, type Readable } from 'node:stream';
import { backendPermitted } from '../../core/model/reference-grant.js';
import type { RouteFilter } from '../../core/model/routes.js';
import { sync, type Handler, type Layer, type RequestContext } from '../context.js';
import { subsetEndpoints } from '../subsets.js';

type Mirror = Extract<RouteFilter, { type: 'RequestMirror' }>;

/**
 * RequestMirror: every `RequestMirror` of the rule, then of the chosen backend, sends its own
 * copy of `percent` of the requests (each drawn on its own) to its backend, fire and forget
 * (its response and failures are ignored; `Host` gets Envoy's `-shadow` suffix). Several
 * mirrors in one rule each get a copy (upstream conformance: HTTPRouteRequestMultipleMirrors;
 * Envoy's `request_mirror_policies` is a list too). A body that is empty or buffered is copied
 * whole; a streaming one (no Content-Length, chunked, larger than the retry buffer, every gRPC
 * call) is teed (`teeBody`): the primary request reads at its own pace and only it slows the
 * client down; a mirror that falls more than MIRROR_BUFFER_BYTES behind loses its copy (its
 * request is aborted), so a slow or dead mirror never blocks the primary nor holds memory
 * without bound. A mirror to a Service in another namespace needs a ReferenceGrant, as a backend does.
 */
export const mirrorLayer =
  (send: Handler, random: () => number = Math.random): Layer =>
  (next) =>
  sync((ctx) => {
    const rule = ctx.rule?.filters;
    const own = ctx.backend?.ref.filters;
    if ((!rule || rule.length === 0) && (!own || own.length === 0)) return next(ctx);
    const chosen: Mirror[] = [];
    for (const list of [rule, own]) {
      if (!list) continue;
      for (const f of list) if (f.type === 'RequestMirror' && random() * 100 < f.percent) chosen.push(f);
    }
    if (chosen.length === 0) return next(ctx);
    const b = ctx.body;
    // A body already read (it cannot be here: nothing above reads one) has nothing left to copy.
    if (b.kind === 'stream' && b.consumed) return next(ctx);
    const targets = chosen.map((f) => target(ctx, f)).filter((x): x is Target => x !== undefined);
    if (targets.length === 0) return next(ctx);
    if (b.kind !== 'stream') {
      for (const tg of targets) mirror(ctx, tg, b, send);
      return next(ctx);
    }
    const { primary, copies } = teeBody(b.stream, targets.length, ctx.headers['content-length']);
    ctx.body = { kind: 'stream', stream: primary, consumed: false };
    targets.forEach((tg, i) => mirror(ctx, tg, { kind: 'stream', stream: copies[i]!, consumed: false }, send, copies[i]!));
    return next(ctx);
  });

/**
 * How far (in bytes) a mirror's copy of a streaming body may fall behind the client before it is
 * dropped: the most the waypoint holds for one mirror of one request. Envoy's mirror is fire and
 * forget too (a copy that cannot keep up is lost, never waited for).
 */
export const MIRROR_BUFFER_BYTES = 1 << 20;

class MirrorDropped extends Error {
  readonly code = 'ERR_WAYPOINT_MIRROR_DROPPED';
}

/**
 * Tees a streaming request body: `primary` (what the request's own backend reads) and one copy
 * per mirror. Flow control follows the primary alone: the client is paused while the primary
 * does not take bytes; a copy whose unread bytes would pass MIRROR_BUFFER_BYTES is destroyed
 * (its mirror request fails and is ignored). When the client's body ends short (the client went
 * away, or fewer bytes than its Content-Length) the copies are destroyed, never ended: a
 * truncated body must not reach a mirror as a whole one (the primary gets the client's error).
 */
export function teeBody(src: Readable, n: number, contentLength?: string | string[]): { primary: PassThrough; copies: PassThrough[] } {
  const primary = new PassThrough();
  const copies = Array.from({ length: n }, () => new PassThrough());
  // Nobody may be listening on a stream when it fails (its request not yet started); whoever
  // reads it later sees it failed (forward.ts).
  for (const c of [primary, ...copies]) c.on('error', () => {});
  const want = typeof contentLength === 'string' ? Number(contentLength) : NaN;
  let seen = 0;
  let ended = false;
  const live = new Set(copies);
  const drop = (c: PassThrough, why: string) => {
    live.delete(c);
    c.destroy(new MirrorDropped(why));
  };
  src.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    for (const c of live) {
      if (c.writableLength + c.readableLength + chunk.length > MIRROR_BUFFER_BYTES) drop(c, `the mirror fell more than ${MIRROR_BUFFER_BYTES} bytes behind the request body; its copy is dropped`);
      else c.write(chunk);
    }
    if (!primary.destroyed && !primary.write(chunk)) {
      src.pause();
      primary.once('drain', () => src.resume());
    }
  });
  src.once('end', () => {
    ended = true;
    if (Number.isFinite(want) && seen !== want) {
      // Node dumps an unread body after the response (removing 'data' listeners first): the
      // copies then miss bytes and must not be sent as complete.
      for (const c of live) drop(c, 'the request body ended short of its content-length');
      primary.end();
      return;
    }
    for (const c of live) c.end();
    primary.end();
  });
  src.once('close', () => {
    if (ended) return;
    const err = (src as Readable & { errored?: Error | null }).errored ?? new Error('the client closed before the request body ended');
    for (const c of live) drop(c, 'the client closed before the request body ended');
    primary.destroy(err);
  });
  src.on('error', () => {});
  // The primary gone (its backend answered and closed, or failed): the client's bytes must still
  // flow for the copies, and no one waits on 'drain' any more.
  primary.once('close', () => {
    if (!ended) src.resume();
  });
  return { primary, copies };
}

interface Target {
  readonly f: Mirror;
  readonly backend: NonNullable<RequestContext['backend']>;
}

/** The mirror's backend, or undefined when it is not there to copy to (no grant, service, port or subset). */
function target(ctx: RequestContext, f: Mirror): Target | undefined {
  const state = ctx.stream.state;
  const ref = f.backend;
  // A mirror to a Service in another namespace needs a ReferenceGrant as a backend does; without
  // one nothing is mirrored (Gateway API: the backend is not configured; the status says RefNotPermitted).
  if (ctx.route && !backendPermitted(state.config.referenceGrants, ctx.route.route, ref)) return;
  const service = ref.hostname !== undefined ? state.serviceByHostname(ref.hostname) : state.serviceByName(ref.namespace ?? '', ref.name ?? '');
  const port = ref.port ?? ctx.stream.dstPort;
  // A mirror to a subset no DestinationRule defines is dropped, as a failed mirror is.
  const subset = service && ref.subset !== undefined ? subsetEndpoints(state, service, ref.subset, ctx.route?.route.namespace ?? service.namespace) : undefined;
  if (!service || !state.servicePort(service, port) || (ref.subset !== undefined && !subset)) return undefined;
  return { f, backend: subset ? { ref, service, port, subset } : { ref, service, port } };
}

function mirror(ctx: RequestContext, tg: Target, body: RequestContext['body'], send: Handler, copy?: PassThrough): void {
  const colon = ctx.authority.lastIndexOf(':');
  const host = colon > 0 ? `${ctx.authority.slice(0, colon)}-shadow${ctx.authority.slice(colon)}` : `${ctx.authority}-shadow`;
  // Dropping a copy (it fell behind, the client went away) aborts its request.
  const dropped = new AbortController();
  copy?.once('error', (err) => dropped.abort(err));
  const req = {
    ...ctx,
    authority: host,
    headers: { ...ctx.headers },
    body,
    backend: tg.backend,
    signal: AbortSignal.any([AbortSignal.timeout(30_000), dropped.signal]),
    flags: [],
    log: {},
    responseEdits: [],
  };
  send(req).then(
    (r) => r.discard?.(),
    () => copy?.destroy(),
  );
}
