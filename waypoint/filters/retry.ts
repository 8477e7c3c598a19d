import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, type Registry } from 'prom-client';
import type { RetryPolicy } from '../../core/model/routes.js';
import { ISTIO_DEFAULT_RETRY } from '../../core/kube/routes/shared.js';
import type { Handler, Layer, RequestContext, WaypointResponse } from '../context.js';
import { WaypointError, asWaypointError } from '../status.js';
import { withDeadline } from './timeout.js';
import { admitRetry } from '../traffic-policy/cluster.js';

/**
 * Largest request body buffered so that a retry can send it again (Envoy's default buffer
 * limit). A bigger body, or one of unknown length, streams through and is tried once.
 */
export const MAX_REPLAY_BYTES = 1024 * 1024;

/** Whether a failed try may be retried under `policy`. */
export function retriable(policy: RetryPolicy, outcome: { status: number } | WaypointError): boolean {
  const on = policy.retryOn;
  if (outcome instanceof WaypointError) {
    if (outcome.flag === 'UT') return on.includes('5xx') || on.includes('gateway-error') || on.includes('reset');
    if (outcome.retryOn === undefined) return false;
    if (on.includes(outcome.retryOn) || on.includes('5xx') || on.includes('gateway-error')) return true;
    return on.includes('reset-before-request') && outcome.safeToResend;
  }
  const s = outcome.status;
  if (on.includes('5xx') && s >= 500) return true;
  if (on.includes('gateway-error') && (s === 502 || s === 503 || s === 504)) return true;
  return policy.codes.includes(s);
}

/** Reads a request body of known, small length into memory so tries can replay it. */
async function bufferBody(ctx: RequestContext): Promise<boolean> {
  const b = ctx.body;
  if (b.kind !== 'stream') return true;
  if (b.consumed) return false;
  const len = Number(ctx.headers['content-length']);
  if (!Number.isFinite(len) || len > MAX_REPLAY_BYTES) return false;
  const chunks: Buffer[] = [];
  b.consumed = true;
  for await (const c of b.stream) chunks.push(c as Buffer);
  ctx.body = { kind: 'buffer', data: Buffer.concat(chunks) };
  return true;
}

/**
 * Envoy's per-cluster retry counters, under Envoy's names (what Istio dashboards and operators
 * query): retries sent, requests a retry answered, requests whose tries ran out. The cluster is
 * Envoy's name for it, `outbound|port|subset|host`.
 */
export interface RetryMetrics {
  readonly retry: Counter<'cluster_name'>;
  readonly success: Counter<'cluster_name'>;
  readonly limitExceeded: Counter<'cluster_name'>;
}

export function createRetryMetrics(registry: Registry): RetryMetrics {
  const c = (name: string, help: string) => new Counter({ name, help, labelNames: ['cluster_name'] as const, registers: [registry] });
  return {
    retry: c('envoy_cluster_upstream_rq_retry', 'Requests sent again to the backend (each retry once)'),
    success: c('envoy_cluster_upstream_rq_retry_success', 'Retried requests that a retry answered'),
    limitExceeded: c('envoy_cluster_upstream_rq_retry_limit_exceeded', 'Requests that failed with every try their retry policy allows'),
  };
}

function clusterName(ctx: RequestContext): string {
  const b = ctx.backend;
  if (b) return `outbound|${b.port}|${b.subset?.name ?? ''}|${b.service.hostname}`;
  return `outbound|${ctx.stream.dstPort}||${ctx.stream.dstWorkload?.name ?? ctx.stream.dstIp}`;
}

/** One try under a per-try timeout: the try is cancelled and fails with 504 `UT` when it expires. */
function oneTry(next: Handler, ctx: RequestContext, perTryMs: number | undefined): Promise<WaypointResponse> {
  return perTryMs ? withDeadline(next, ctx, perTryMs, 'per-try') : next(ctx);
}

/**
 * Retries (VirtualService `retries`, HTTPRoute `retry`; without either, Istio's default of 2
 * retries on connect failures, refused streams and 503). Each try may get its own timeout
 * (`perTryTimeout`, or HTTPRoute `timeouts.backendRequest`) and picks an endpoint again; tries
 * are spaced by Envoy's jittered exponential back-off. When every try failed, the last
 * outcome goes back with `URX` added.
 */
export const retryLayer =
  (random: () => number = Math.random, metrics?: RetryMetrics): Layer =>
  (next) =>
  async (ctx) => {
    const policy = ctx.rule?.retry ?? ISTIO_DEFAULT_RETRY;
    const perTryMs = policy.perTryTimeoutMs ?? ctx.rule?.backendRequestTimeoutMs;
    const canReplay = policy.attempts > 0 && (ctx.body.kind !== 'stream' || (await bufferBody(ctx)));
    const maxTries = canReplay ? policy.attempts + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      ctx.tries = attempt;
      let outcome: WaypointResponse | WaypointError;
      try {
        outcome = await oneTry(next, ctx, perTryMs);
      } catch (err) {
        outcome = asWaypointError(err);
        // The client went away or the request deadline passed: no more tries.
        if (ctx.signal.aborted) throw outcome;
      }
      const failed = outcome instanceof WaypointError ? outcome : outcome.status >= 500 || policy.codes.includes(outcome.status) ? outcome : undefined;
      if (!failed || !retriable(policy, failed)) {
        if (attempt > 1 && !failed) metrics?.success.inc({ cluster_name: clusterName(ctx) });
        if (outcome instanceof WaypointError) throw outcome;
        return outcome;
      }
      if (attempt >= maxTries) {
        if (attempt > 1) {
          ctx.flags.push('URX');
          metrics?.limitExceeded.inc({ cluster_name: clusterName(ctx) });
        }
        if (outcome instanceof WaypointError) throw outcome;
        return outcome;
      }
      // A DestinationRule's maxRetries is full: no retry, the last outcome with UO (Envoy's retry overflow).
      if (!admitRetry(ctx)) {
        ctx.flags.push('UO');
        if (outcome instanceof WaypointError) throw outcome;
        return outcome;
      }
      if (!(outcome instanceof WaypointError)) outcome.discard?.();
      // Envoy: a random wait in [0, (2^n - 1) * base), n = retries so far, capped at 10 * base.
      const cap = Math.min((2 ** attempt - 1) * policy.backoffMs, 10 * policy.backoffMs);
      await sleep(Math.floor(random() * cap), undefined, { signal: ctx.signal });
      metrics?.retry.inc({ cluster_name: clusterName(ctx) });
    }
  };
