import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/telemetry/log.js';
import { UNKNOWN } from '../../core/telemetry/metrics.js';
import type { HttpLabels, HttpMetrics } from '../../core/telemetry/http-metrics.js';
import type { Layer, RequestContext, WriteResult } from '../context.js';
import { renderFlags } from '../context.js';

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
    grpc_response_status: r.grpcStatus ?? '',
    response_flags: flags,
    connection_security_policy: 'mutual_tls',
  };
}

/**
 * Outermost layer: once the response is written, records Istio's request metrics
 * (`reporter="waypoint"`) and writes one access-log line.
 */
export const telemetryLayer =
  (metrics: HttpMetrics, logger: Logger): Layer =>
  (next) =>
  async (ctx) => {
    const res = await next(ctx);
    void ctx.done.then((r) => {
      if (r.error && !ctx.flags.includes('DC')) ctx.flags.push('DC');
      const flags = renderFlags(ctx.flags);
      const durationMs = performance.now() - ctx.startedAt;
      metrics.record(labels(ctx, r, flags), durationMs, ctx.requestBytes, r.responseBytes);
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
