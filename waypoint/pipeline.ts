/**
 * The layer stack, outermost first. The order is the design:
 *   telemetry   metrics + access log once the response is written
 *   errors      the one place a failure becomes a local reply (status, body, flag)
 *   refusal     a request the downstream refused (request-check.ts): 400/431 before any work
 *   jwt         RequestAuthentication: 401 for a token that does not verify; sets the request's identity
 *   authz       L7 AuthorizationPolicy: 403 before any routing work
 *   route       picks the rule (404 NR when none); everything below reads it
 *   cors        CORS: answers an allowed preflight, adds CORS headers to allowed responses
 *   fault       delay / abort of the rule (Envoy reads faults from the matched route too)
 *   redirect    RequestRedirect answers locally
 *   rewrite     URLRewrite (hostname, path)
 *   headers     Request/ResponseHeaderModifier of the rule
 *   backend     weighted backend choice (traffic split), once per request
 *   mirror      RequestMirror copy, once per request
 *   timeout     the request timeout, across every try
 *   retry       tries, per-try timeout, back-off
 *   forward     endpoint choice per try, then HBONE to its ztunnel
 */
import type { Logger } from '../core/telemetry/log.js';
import type { HttpMetrics } from './http-metrics.js';
import { compose, type Handler } from './context.js';
import type { GatewayRef } from './authz.js';
import { forwarder } from './forward.js';
import type { UpstreamPool } from './upstream.js';
import { telemetryLayer } from './filters/telemetry.js';
import { errorsLayer } from './filters/errors.js';
import { refusalLayer } from './request-check.js';
import { authzLayer } from './filters/authz.js';
import { jwtLayer } from './filters/jwt.js';
import { JwksFetcher } from './jwt.js';
import { routeLayer } from './filters/route.js';
import { corsLayer } from './filters/cors.js';
import { faultLayer } from './filters/fault.js';
import { redirectLayer } from './filters/redirect.js';
import { rewriteLayer } from './filters/rewrite.js';
import { headersLayer } from './filters/headers.js';
import { backendLayer } from './filters/backend.js';
import { mirrorLayer } from './filters/mirror.js';
import { timeoutLayer } from './filters/timeout.js';
import { retryLayer, type RetryMetrics } from './filters/retry.js';
import { TrafficPolicies } from './traffic-policy/cluster.js';

export interface PipelineInputs {
  readonly gateway: GatewayRef | (() => GatewayRef);
  readonly pool: UpstreamPool;
  readonly metrics: HttpMetrics;
  readonly logger: Logger;
  /** Envoy's retry counters (filters/retry.ts); absent in unit tests that build a bare stack. */
  readonly retryMetrics?: RetryMetrics;
  /** Randomness for splits, faults, mirrors and back-off; injectable for tests. */
  readonly random?: () => number;
  /** The key sets of `jwksUri` rules (waypoint/jwt.ts); absent in bare stacks: such rules then refuse every token. */
  readonly jwks?: JwksFetcher;
  /** DestinationRule traffic policies' cluster state (load balancing, limits, ejections); one per waypoint. */
  readonly traffic?: TrafficPolicies;
}

export function buildPipeline(inputs: PipelineInputs): Handler {
  const random = inputs.random ?? Math.random;
  const forward = forwarder(inputs.pool, inputs.traffic ?? new TrafficPolicies({ random }));
  const gw = inputs.gateway;
  const gateway = typeof gw === 'function' ? gw : () => gw;
  return compose(
    [
      telemetryLayer(inputs.metrics, inputs.logger),
      errorsLayer,
      refusalLayer,
      jwtLayer(gateway, inputs.jwks ?? new JwksFetcher({ refreshMs: 60_000, fetchTimeoutMs: 1000, logger: inputs.logger })),
      authzLayer(gateway),
      routeLayer,
      corsLayer,
      faultLayer(random),
      redirectLayer,
      rewriteLayer,
      headersLayer,
      backendLayer(random),
      mirrorLayer(forward, random),
      timeoutLayer,
      retryLayer(random, inputs.retryMetrics),
    ],
    forward,
  );
}
