import { Counter, Histogram, type Registry } from 'prom-client';

/**
 * Istio's standard HTTP metrics, as a waypoint reports them (`reporter="waypoint"`). Names,
 * labels and bucket boundaries follow Istio's so existing dashboards work. `response_flags`
 * values are Envoy's (docs/metrics.md).
 */
export const HTTP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

export type HttpLabelName = (typeof HTTP_LABELS)[number];
export type HttpLabels = Record<HttpLabelName, string>;

/** Istio's duration buckets, in milliseconds. */
export const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's size buckets, in bytes (1 to 10^9 in powers of ten). */
export const SIZE_BUCKETS_BYTES = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

export interface HttpMetrics {
  readonly requests: Counter<HttpLabelName>;
  readonly duration: Histogram<HttpLabelName>;
  readonly requestBytes: Histogram<HttpLabelName>;
  readonly responseBytes: Histogram<HttpLabelName>;
  /** Records one finished request. */
  record(labels: HttpLabels, durationMs: number, requestBytes: number, responseBytes: number): void;
}

/**
 * Registers Istio's HTTP metrics in `registry` (a proxy's registry, shared with its TCP metrics).
 *
 * @example
 * const tcp = createTcpMetrics();
 * const http = createHttpMetrics(tcp.registry);
 * http.record(labels, 12.5, 0, 1024);
 */
export function createHttpMetrics(registry: Registry): HttpMetrics {
  const requests = new Counter({
    name: 'istio_requests_total',
    help: 'requests processed',
    labelNames: HTTP_LABELS,
    registers: [registry],
  });
  const histogram = (name: string, help: string, buckets: number[]) =>
    new Histogram({ name, help, labelNames: HTTP_LABELS, buckets, registers: [registry] });
  const duration = histogram('istio_request_duration_milliseconds', 'request duration, first byte in to last byte out', DURATION_BUCKETS_MS);
  const requestBytes = histogram('istio_request_bytes', 'request size: headers and body', SIZE_BUCKETS_BYTES);
  const responseBytes = histogram('istio_response_bytes', 'response size: headers and body', SIZE_BUCKETS_BYTES);
  // prom-client hashes (sorts and joins) the label object on every call; a proxy records the
  // same few label sets over and over, so the bound children are cached under a cheap key.
  type Children = {
    requests: ReturnType<typeof requests.labels>;
    duration: ReturnType<typeof duration.labels>;
    requestBytes: ReturnType<typeof requestBytes.labels>;
    responseBytes: ReturnType<typeof responseBytes.labels>;
  };
  const children = new Map<string, Children>();
  return {
    requests,
    duration,
    requestBytes,
    responseBytes,
    record(labels, durationMs, reqBytes, resBytes) {
      let key = '';
      for (const name of HTTP_LABELS) key += `${labels[name]}\u0000`;
      let c = children.get(key);
      if (!c) {
        // Bounded: label values come from config (workloads, services) and a few codes and flags.
        if (children.size > 10_000) children.clear();
        c = {
          requests: requests.labels(labels),
          duration: duration.labels(labels),
          requestBytes: requestBytes.labels(labels),
          responseBytes: responseBytes.labels(labels),
        };
        children.set(key, c);
      }
      c.requests.inc();
      c.duration.observe(durationMs);
      c.requestBytes.observe(reqBytes);
      c.responseBytes.observe(resBytes);
    },
  };
}
