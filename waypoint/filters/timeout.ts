import { sync, type Handler, type Layer, type RequestContext, type WaypointResponse } from '../context.js';
import { upstreamTimeout } from '../status.js';

/**
 * The request timeout (VirtualService `timeout`, HTTPRoute `timeouts.request`): covers every try
 * and back-off, until the response headers arrive. On expiry the in-flight try is cancelled
 * (through `ctx.signal`) and the client gets 504 `UT`. No timeout unless a route sets one
 * (Istio's default for HTTP).
 */
export const timeoutLayer: Layer = (next) =>
  sync((ctx) => {
    const ms = ctx.rule?.requestTimeoutMs;
    return ms ? withDeadline(next, ctx, ms, 'request') : next(ctx);
  });

/**
 * Runs `next` under a deadline: layers below see a narrower `ctx.signal` that aborts on expiry
 * (or when the caller's signal aborts), and the call fails with 504 `UT`. Shared by the request
 * timeout and the retry layer's per-try timeout.
 */
export async function withDeadline(next: Handler, ctx: RequestContext, ms: number, kind: 'request' | 'per-try'): Promise<WaypointResponse> {
  const ac = new AbortController();
  const parent = ctx.signal;
  const onParent = () => ac.abort(parent.reason);
  parent.addEventListener('abort', onParent, { once: true });
  ctx.signal = ac.signal;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = upstreamTimeout(ms, kind);
      ac.abort(err);
      reject(err);
    }, ms);
  });
  const work = next(ctx);
  // A try that finishes after the deadline is thrown away, never left as an unhandled rejection.
  work.then((r) => ac.signal.aborted && r.discard?.(), () => {});
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onParent);
    ctx.signal = parent;
  }
}
