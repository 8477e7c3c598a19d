/**
 * Istio's HTTP metrics (waypoint/http-metrics.ts) keep their own counts and hand
 * prom-client samples at scrape time. What a scrape sees must be what prom-client's own Counter
 * and Histogram print for the same observations: built here side by side in a second Registry
 * and compared line by line, as text and as JSON, before and after resets.
 */
import t, { type Test } from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import {
  DURATION_BUCKETS_MS,
  HTTP_LABELS,
  SIZE_BUCKETS_BYTES,
  createHttpMetrics,
  type HttpLabels,
} from '../../waypoint/http-metrics.js';
import { createTcpMetrics } from '../../core/telemetry/metrics.js';

const HELP = {
  istio_requests_total: 'requests processed',
  istio_request_duration_milliseconds: 'request duration, first byte in to last byte out',
  istio_request_bytes: 'request size: headers and body',
  istio_response_bytes: 'response size: headers and body',
};

/** prom-client's own metrics with the same names, help, labels and buckets. */
function reference() {
  const registry = new Registry();
  const requests = new Counter({ name: 'istio_requests_total', help: HELP.istio_requests_total, labelNames: HTTP_LABELS, registers: [registry] });
  const histogram = (name: keyof typeof HELP, buckets: number[]) => new Histogram({ name, help: HELP[name], labelNames: HTTP_LABELS, buckets, registers: [registry] });
  const duration = histogram('istio_request_duration_milliseconds', DURATION_BUCKETS_MS);
  const reqBytes = histogram('istio_request_bytes', SIZE_BUCKETS_BYTES);
  const resBytes = histogram('istio_response_bytes', SIZE_BUCKETS_BYTES);
  return {
    registry,
    record(l: HttpLabels, ms: number, q: number, r: number) {
      requests.inc(l);
      duration.observe(l, ms);
      reqBytes.observe(l, q);
      resBytes.observe(l, r);
    },
  };
}

const labels = (over: Partial<HttpLabels> = {}): HttpLabels => {
  const l = {} as HttpLabels;
  for (const n of HTTP_LABELS) l[n] = 'unknown';
  return {
    ...l,
    reporter: 'waypoint',
    source_workload: 'client',
    source_principal: 'spiffe://cluster.local/ns/default/sa/client',
    destination_workload: 'echo-v1',
    destination_service: 'echo.default.svc.cluster.local',
    request_protocol: 'http',
    response_code: '200',
    grpc_response_status: '',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
    ...over,
  };
};
const OK = labels();
const NC = labels({ response_code: '503', response_flags: 'NC', destination_workload: 'unknown' });
// Escaping: a backslash, a quote and a newline in a label value.
const ODD = labels({ grpc_response_status: 'a"b\\c\nd', response_code: '200' });

// Boundaries (le is inclusive), values above the last bound, zero, fractions.
const observations: Array<[HttpLabels, number, number, number]> = [
  [OK, 0.5, 0, 1024],
  [OK, 0.50001, 1, 1000],
  [OK, 12.25, 100, 1001],
  [NC, 3_600_000, 10, 0],
  [NC, 3_600_001, 1e9, 1e9 + 1],
  [OK, 0, 0, 0],
  [ODD, 7, 5, 5],
];

function both() {
  const ours = new Registry();
  const http = createHttpMetrics(ours);
  const ref = reference();
  return {
    ours,
    http,
    ref,
    record(l: HttpLabels, ms: number, q: number, r: number) {
      http.record(l, ms, q, r);
      ref.record(l, ms, q, r);
    },
  };
}

async function sameText(t: Test, ours: Registry, ref: Registry, what: string) {
  const a = (await ours.metrics()).split('\n');
  const b = (await ref.metrics()).split('\n');
  t.equal(a.length, b.length, `${what}: same number of lines`);
  const diff = a.map((line, i) => (line === b[i] ? undefined : `line ${i + 1}:\n  ours:        ${line}\n  prom-client: ${b[i]}`)).filter(Boolean);
  t.same(diff, [], `${what}: every line as prom-client prints it`);
}

t.test('text output matches prom-client Counter/Histogram line by line', async (t) => {
  const m = both();
  for (const [l, ms, q, r] of observations) m.record(l, ms, q, r);
  await sameText(t, m.ours, m.ref.registry, 'after 7 records');
  const text = await m.ours.metrics();
  // Not only "the same as prom-client": what Prometheus must see, spelled out.
  t.match(text, '# HELP istio_requests_total requests processed\n# TYPE istio_requests_total counter\n');
  t.match(text, '# TYPE istio_request_duration_milliseconds histogram\n');
  const ok = 'reporter="waypoint",source_workload="client",source_workload_namespace="unknown",source_principal="spiffe://cluster.local/ns/default/sa/client",source_app="unknown",source_version="unknown",destination_workload="echo-v1",destination_workload_namespace="unknown",destination_principal="unknown",destination_app="unknown",destination_version="unknown",destination_service="echo.default.svc.cluster.local",destination_service_name="unknown",destination_service_namespace="unknown",request_protocol="http",response_code="200",grpc_response_status="",response_flags="-",connection_security_policy="mutual_tls"';
  t.match(text, `\nistio_requests_total{${ok}} 4\n`, 'the counter counts the 4 OK requests');
  const bucket = (le: string) => new RegExp(`\\nistio_request_duration_milliseconds_bucket\\{le="${le.replace('+', '\\+')}",${ok.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\} (\\d+)\\n`);
  const at = (le: string) => Number(bucket(le).exec(text)?.[1]);
  t.equal(at('0.5'), 2, '0 and 0.5 are <= 0.5 (le is inclusive)');
  t.equal(at('1'), 3, 'cumulative: 0.50001 joins at le=1');
  t.equal(at('25'), 4, 'cumulative: 12.25 joins at le=25');
  t.equal(at('3600000'), 4);
  t.equal(at('+Inf'), 4);
  t.match(text, new RegExp(`\\nistio_request_duration_milliseconds_sum\\{${ok.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\} 13\\.25001\\n`));
  t.match(text, new RegExp(`\\nistio_request_duration_milliseconds_count\\{${ok.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\} 4\\n`));
  t.match(text, /istio_response_bytes_bucket\{le="1000000000",[^}]*response_flags="NC"[^}]*\} 1\nistio_response_bytes_bucket\{le="\+Inf",[^}]*response_flags="NC"[^}]*\} 2\n/, 'a value above the last bound is only in +Inf');
  t.match(text, 'grpc_response_status="a\\"b\\\\c\\nd"', 'label values are escaped');
});

t.test('getMetricsAsJSON and getSingleMetric().get() match prom-client', async (t) => {
  const m = both();
  for (const [l, ms, q, r] of observations) m.record(l, ms, q, r);
  t.same(await m.ours.getMetricsAsJSON(), await m.ref.registry.getMetricsAsJSON());
  for (const name of Object.keys(HELP)) {
    t.same(await m.ours.getSingleMetric(name)?.get(), await m.ref.registry.getSingleMetric(name)?.get(), `${name}.get()`);
  }
  // Samples are copies: mutating what get() returned changes nothing.
  const got = await m.ours.getSingleMetric('istio_requests_total')!.get();
  got.values[0]!.labels['response_code'] = 'tampered';
  t.notMatch(await m.ours.metrics(), 'tampered');
});

t.test('default labels of the registry, as prom-client applies them', async (t) => {
  const m = both();
  m.ours.setDefaultLabels({ cluster: 'lab' });
  m.ref.registry.setDefaultLabels({ cluster: 'lab' });
  for (const [l, ms, q, r] of observations) m.record(l, ms, q, r);
  await sameText(t, m.ours, m.ref.registry, 'with default labels');
  t.same(await m.ours.getMetricsAsJSON(), await m.ref.registry.getMetricsAsJSON());
});

t.test('resetMetrics: nothing exported, then counting starts over, in the same order as prom-client', async (t) => {
  const m = both();
  const ok = m.http.series(OK); // a cached series, as the waypoint's telemetry layer keeps them
  for (const [l, ms, q, r] of observations) m.record(l, ms, q, r);
  m.ours.resetMetrics();
  m.ref.registry.resetMetrics();
  t.equal(await m.ours.metrics(), await m.ref.registry.metrics(), 'after reset: HELP and TYPE only, as prom-client');
  t.notMatch(await m.ours.metrics(), 'istio_requests_total{', 'no series left');
  // NC first this time: prom-client exports in first-seen order after a reset.
  m.record(NC, 1, 1, 1);
  ok.record(2, 2, 2); // through the series cached before the reset
  m.ref.record(OK, 2, 2, 2);
  await sameText(t, m.ours, m.ref.registry, 'after reset and two records');
  t.match(await m.ours.metrics(), /istio_requests_total\{[^}]*response_code="200"[^}]*\} 1\n/, 'the cached series counts from zero again, and is exported');

  // Resetting one metric alone (what getSingleMetric(name).reset() does).
  m.ours.getSingleMetric('istio_requests_total')!.reset();
  m.ref.registry.getSingleMetric('istio_requests_total')!.reset();
  await sameText(t, m.ours, m.ref.registry, 'after resetting the counter alone');
});

t.test('coexists with the TCP metrics and process metrics in one registry', async (t) => {
  const tcp = createTcpMetrics();
  const http = createHttpMetrics(tcp.registry);
  http.record(OK, 1, 2, 3);
  const names = (await tcp.registry.getMetricsAsJSON()).map((x) => x.name);
  for (const n of [...Object.keys(HELP), 'istio_tcp_connections_opened_total', 'process_cpu_user_seconds_total']) t.ok(names.includes(n), `${n} registered`);
  const text = await tcp.registry.metrics();
  t.match(text, /\n# TYPE istio_request_bytes histogram\nistio_request_bytes_bucket\{le="1",/);
  t.match(text, /\n# TYPE istio_tcp_connections_opened_total counter\n/);
  t.throws(() => createHttpMetrics(tcp.registry), /already been registered/, 'registering twice is refused, as for prom-client metrics');
  tcp.registry.resetMetrics();
  t.notMatch(await tcp.registry.metrics(), 'istio_requests_total{');
});

t.test('series() copies the labels: a reused label object cannot move counts', async (t) => {
  const reg = new Registry();
  const http = createHttpMetrics(reg);
  const l = { ...OK };
  const s = http.series(l);
  l.response_code = '500';
  s.record(1, 1, 1);
  http.record(l, 1, 1, 1);
  const v = (await reg.getSingleMetric('istio_requests_total')!.get()).values.map((x) => [x.labels['response_code'], x.value]);
  t.same(v, [['200', 1], ['500', 1]]);
});
