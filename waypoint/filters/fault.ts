import { setTimeout as sleep } from 'node:timers/promises';
import type { RouteRule } from '../../core/model/routes.js';
import { localReply, sync, type Handler, type Layer, type RequestContext, type WaypointResponse } from '../context.js';

type Fault = NonNullable<RouteRule['fault']>;

/**
 * Fault injection (VirtualService `fault`): a delay holds the request (flag `DI`) before it goes
 * on; an abort answers locally (flag `FI`) with the HTTP status, or for gRPC with HTTP 200 and
 * `grpc-status` (trailers-only). Each applies to `percent` of requests, drawn independently.
 * Faults are never retried: they happen before the retry layer.
 */
export const faultLayer =
  (random: () => number = Math.random): Layer =>
  (next) =>
    sync((ctx) => {
      const fault = ctx.rule?.fault;
      return fault ? faulted(next, ctx, fault, random) : next(ctx);
    });

async function faulted(next: Handler, ctx: RequestContext, fault: Fault, random: () => number): Promise<WaypointResponse> {
  if (fault.delay && random() * 100 < fault.delay.percent) {
    ctx.flags.push('DI');
    await sleep(fault.delay.fixedDelayMs, undefined, { signal: ctx.signal });
  }
  const abort = fault.abort;
  if (abort && random() * 100 < abort.percent) {
    ctx.flags.push('FI');
    if (abort.grpcStatus !== undefined && ctx.protocol === 'grpc') {
      return localReply(200, '', { 'content-type': 'application/grpc', 'grpc-status': String(abort.grpcStatus), 'grpc-message': 'fault filter abort' });
    }
    return localReply(abort.httpStatus ?? 503, 'fault filter abort');
  }
  return next(ctx);
}
