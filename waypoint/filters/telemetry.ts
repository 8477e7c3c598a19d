import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/telemetry/log.js';
import { UNKNOWN } from '../../core/telemetry/metrics.js';
import type { HttpLabels, HttpMetrics, HttpSeries } from '../http-metrics.js';
import type { Layer, RequestContext, WriteResult } from '../context.js';
import { renderFlags } from '../context.js';

/**
 * A metric label from the upstream's `grpc-status`: the 17 codes gRPC defines, else `unknown`, so a
 * backend sending arbitrary strings cannot grow the number of series without bound.
 */
function grpcLabel(status: string | undefined): string {
  if (status === undefined) return '';
  return /^(1[0-6]|[0-9])$/.test(status) ? status : 'unknown';
}

function labels(ctx: RequestContext, r: WriteResult, flags: string): HttpLabels {
  const s = ctx.stream;
  const src = s.srcWorkload;
  const dst = ctx.endpoint ?? s.dstWorkload;
  const svc = ctx.backend?.service ?? s.dstService;
  return {
    reporter: 'waypoint',
    source_workload: src?.name ?? UNKNOWN,
    source_workload_namespace: src?.namespace ?? UNKNOWN,
    source_principal: s.srcIdentity,
    source_app: src?.labels['app'] ?? UNKNOWN,
    source_version: src?.labels['version'] ?? UNKNOWN,
    destination_workload: dst?.name ?? UNKNOWN,
    destination_workload_namespace: dst?.namespace ?? UNKNOWN,
    destination_principal: dst ? s.state.workloadIdentity(dst) : UNKNOWN,
    destination_app: dst?.labels['app'] ?? UNKNOWN,
    destination_version: dst?.labels['version'] ?? UNKNOWN,
    destination_service: svc?.hostname ?? UNKNOWN,
    destination_service_name: svc?.name ?? UNKNOWN,
    destination_service_namespace: svc?.namespace ?? UNKNOWN,
    request_protocol: ctx.protocol,
    response_code: String(r.status),
    grpc_response_status: grpcLabel(r.grpcStatus),
    response_flags: flags,
    connection_security_policy: 'mutual_tls',
  };
}

/** Entries per snapshot before the cache starts over (a cache: dropping it loses no counts). */
export const SERIES_CACHE_LIMIT = 10_000;

/**
 * The metric series of a request, found without building its 19 labels: by the identity of the
 * objects the labels come from (source workload, destination workload, service: frozen snapshot
 * objects, so the same object always yields the same labels), the source principal and the
 * per-request values (protocol, status, grpc status, flags).
 *
 * Why it cannot give a wrong series after a reload: every label is a function of exactly those
 * keys (a changed workload or service is a new object with a new id), and the cache hangs off
 * the `MeshState` of the request, so a new snapshot starts with an empty one. Why it is bounded:
 * objects get ids through a WeakMap (they go with their snapshot), each snapshot's map goes with
 * the snapshot, and one map that reaches `SERIES_CACHE_LIMIT` (principals and upstream-chosen
 * status codes are not bounded by the config) is cleared; the counts live in the metrics, not here.
 */
export function seriesCache(metrics: HttpMetrics): (ctx: RequestContext, r: WriteResult, flags: string) => HttpSeries {
  const ids = new WeakMap<object, number>();
  let nextId = 1;
  const id = (o: object | undefined): number => {
    if (!o) return 0;
    let n = ids.get(o);
    if (n === undefined) ids.set(o, (n = nextId++));
    return n;
  };
  const perState = new WeakMap<object, Map<string, HttpSeries>>();
  return (ctx, r, flags) => {
    const s = ctx.stream;
    let m = perState.get(s.state);
    if (!m) perState.set(s.state, (m = new Map()));
    const key = `${id(s.srcWorkload)}\u0000${s.srcIdentity}\u0000${id(ctx.endpoint ?? s.dstWorkload)}\u0000${id(ctx.backend?.service ?? s.dstService)}\u0000${ctx.protocol}\u0000${r.status}\u0000${grpcLabel(r.grpcStatus)}\u0000${flags}`;
    let series = m.get(key);
    if (!series) {
      if (m.size >= SERIES_CACHE_LIMIT) m.clear();
      m.set(key, (series = metrics.series(labels(ctx, r, flags))));
    }
    return series;
  };
}

/**
 * Outermost layer: once the response is written, records Istio's request metrics
 * (`reporter="waypoint"`) and writes one access-log line.
 */
export const telemetryLayer =
  (metrics: HttpMetrics, logger: Logger): Layer =>
  (next) => {
    const seriesOf = seriesCache(metrics);
    return async (ctx) => {
      const res = await next(ctx);
      void ctx.done.then((r) => {
        if (r.error && !ctx.flags.includes('DC')) ctx.flags.push('DC');
        const flags = renderFlags(ctx.flags);
        const durationMs = performance.now() - ctx.startedAt;
        seriesOf(ctx, r, flags).record(durationMs, ctx.requestBytes, r.responseBytes);
        const s = ctx.stream;
        logger.info(
          {
            method: ctx.method,
            path: ctx.path,
            authority: ctx.authority,
            protocol: ctx.protocol === 'grpc' ? 'grpc' : `HTTP/${ctx.httpVersion}`,
            status: r.status,
            ...(r.grpcStatus !== undefined ? { grpc_status: r.grpcStatus } : {}),
            response_flags: flags,
            duration_ms: Math.round(durationMs * 1000) / 1000,
            bytes_received: ctx.requestBytes,
            bytes_sent: r.responseBytes,
            src: { addr: `${s.srcIp}:${s.srcPort}`, workload: s.srcWorkload?.name, namespace: s.srcWorkload?.namespace, identity: s.srcIdentity },
            dst: {
              service: (ctx.backend?.service ?? s.dstService)?.hostname,
              workload: ctx.endpoint?.name,
              upstream: res.upstream,
            },
            tries: ctx.tries,
            ...(ctx.traceId ? { trace_id: ctx.traceId } : {}),
            ...ctx.log,
            ...(r.error ? { downstream_error: r.error.message } : {}),
          },
          'request complete',
        );
      });
      return res;
    };
  };
