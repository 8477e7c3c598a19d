/**
 * The control plane's Prometheus metrics (`/metrics` on 15020). Istio's istiod counterparts are
 * named in docs/control-plane.md.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ControlPlaneMetrics {
  readonly registry: Registry;
  /** Every certificate request, by result (`signed`, `refused`) and reason (an error code). */
  readonly csrRequests: Counter<'result' | 'reason'>;
  readonly signDuration: Histogram<never>;
  readonly connectedProxies: Gauge<'proxy'>;
  /** Where `connectedProxies` reads its values at scrape time (proxy kind → count). */
  setConnectedProxies(counts: () => Readonly<Record<string, number>>): void;
  readonly pushes: Counter<'type'>;
  readonly pushBytes: Counter<'type'>;
  readonly droppedProxies: Counter<'reason'>;
  readonly discoveryRejected: Counter<'reason'>;
  readonly configSeq: Gauge<never>;
  readonly configResources: Gauge<'kind'>;
  readonly objectProblems: Gauge<'severity'>;
  readonly convertDuration: Histogram<never>;
  readonly convertFailures: Counter<never>;
  readonly reloadErrors: Counter<'source'>;
}

/** A registry with process metrics and the control plane's own. One per control plane. */
export function createControlPlaneMetrics(opts: { processMetrics?: boolean } = {}): ControlPlaneMetrics {
  const registry = new Registry();
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  let counts: () => Readonly<Record<string, number>> = () => ({});
  const connectedProxies: Gauge<'proxy'> = new Gauge({
    name: 'control_plane_connected_proxies',
    help: 'proxies with an open discovery stream',
    labelNames: ['proxy'],
    registers,
    collect() {
      connectedProxies.reset();
      for (const [proxy, n] of Object.entries(counts())) connectedProxies.set({ proxy }, n);
    },
  });
  return {
    registry,
    csrRequests: new Counter({ name: 'control_plane_csr_requests_total', help: 'certificate signing requests, by result and reason', labelNames: ['result', 'reason'], registers }),
    signDuration: new Histogram({
      name: 'control_plane_csr_sign_duration_seconds',
      help: 'time to check and sign one CSR (signed requests only)',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers,
    }),
    connectedProxies,
    setConnectedProxies: (fn) => {
      counts = fn;
    },
    pushes: new Counter({ name: 'control_plane_discovery_pushes_total', help: 'discovery messages written, by type', labelNames: ['type'], registers }),
    pushBytes: new Counter({ name: 'control_plane_discovery_push_bytes_total', help: 'discovery bytes written, by message type', labelNames: ['type'], registers }),
    droppedProxies: new Counter({ name: 'control_plane_discovery_dropped_total', help: 'discovery streams closed by the control plane (slow consumers)', labelNames: ['reason'], registers }),
    discoveryRejected: new Counter({ name: 'control_plane_discovery_rejected_total', help: 'discovery requests refused, by reason', labelNames: ['reason'], registers }),
    configSeq: new Gauge({ name: 'control_plane_config_seq', help: 'configuration versions published since start', registers }),
    configResources: new Gauge({ name: 'control_plane_config_resources', help: 'resources in the current configuration, by kind', labelNames: ['kind'], registers }),
    objectProblems: new Gauge({ name: 'control_plane_config_object_problems', help: 'problems with stored objects (see /debug/status), by severity', labelNames: ['severity'], registers }),
    convertDuration: new Histogram({
      name: 'control_plane_config_convert_duration_seconds',
      help: 'time from a store change to a published version (conversion and encoding)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    convertFailures: new Counter({
      name: 'control_plane_config_convert_failures_total',
      help: 'conversions that threw (a bug in the mesh; the last published configuration stayed)',
      registers,
    }),
    reloadErrors: new Counter({ name: 'control_plane_reload_errors_total', help: 'file reloads rejected (the last good content stays), by source', labelNames: ['source'], registers }),
  };
}
