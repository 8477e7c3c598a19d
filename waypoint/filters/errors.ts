import type { Layer, WaypointResponse } from '../context.js';
import { localReply } from '../context.js';
import { asWaypointError } from '../status.js';

/** gRPC status for a local reply's HTTP status, as Envoy maps them. */
export function grpcStatusFor(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/**
 * The one place where a failure becomes a response: a thrown error turns into the local reply
 * its WaypointError names (status, Envoy's body text, response flag). gRPC clients get HTTP 200
 * with `grpc-status` instead, as Envoy answers them.
 */
export const errorsLayer: Layer = (next) => (ctx) => {
  let p: Promise<WaypointResponse>;
  try {
    p = next(ctx);
  } catch (err) {
    // Handlers reject rather than throw; this is the backstop.
    p = Promise.reject(err);
  }
  return p.catch((err: unknown) => {
    const e = asWaypointError(err);
    ctx.flags.push(e.flag);
    ctx.log['error'] = e.message;
    ctx.log['code'] = e.code;
    if (ctx.protocol === 'grpc') {
      return localReply(200, '', {
        'content-type': 'application/grpc',
        'grpc-status': String(grpcStatusFor(e.status)),
        'grpc-message': encodeURIComponent(e.body),
        'x-envoy-local-status': String(e.status),
      });
    }
    return localReply(e.status, e.body, e.headers);
  });
};
