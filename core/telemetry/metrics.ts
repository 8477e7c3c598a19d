import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Istio's standard TCP metrics. Names and labels follow Istio's so existing dashboards work.
 * `response_flags` values are documented in docs/metrics.md and produced only by
 * `core/hbone/status.ts`.
 */
export const TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_service',
  'destination_service_namespace',
  'request_protocol',
  'connection_security_policy',
  'response_flags',
] as const;

export type TcpLabelName = (typeof TCP_LABELS)[number];
export type TcpLabels = Record<TcpLabelName, string>;

/** Value for a label that is not known (Istio uses "unknown"). */
export const UNKNOWN = 'unknown';

export interface TcpMetrics {
  readonly registry: Registry;
  readonly opened: Counter<TcpLabelName>;
  readonly closed: Counter<TcpLabelName>;
  readonly sent: Counter<TcpLabelName>;
  readonly received: Counter<TcpLabelName>;
}

/** Creates a registry with the process metrics and Istio's TCP counters. One per proxy. */
export function createTcpMetrics(opts: { processMetrics?: boolean } = {}): TcpMetrics {
  const registry = new Registry();
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: TCP_LABELS, registers: [registry] });
  return {
    registry,
    opened: counter('istio_tcp_connections_opened_total', 'TCP connections opened'),
    closed: counter('istio_tcp_connections_closed_total', 'TCP connections closed'),
    // Istio's directions, as Envoy's downstream counters: "sent" is bytes sent during the response
    // (destination to source), "received" is bytes received during the request (source to destination).
    sent: counter('istio_tcp_sent_bytes_total', 'bytes sent during the response: destination to source'),
    received: counter('istio_tcp_received_bytes_total', 'bytes received during the request: source to destination'),
  };
}
