/**
 * dashboard/aggregate.ts: which series make which edge, rates over the window (with a counter
 * reset and a series born inside the window), p50/p99 from buckets, the observed share of a split,
 * red on denials and errors, mTLS, and a stale source keeping its totals without rates. Samples
 * are parsed from Prometheus text as the real components print it (the labels of a lab demo run).
 */
import t from 'tap';
import { Aggregator, histogramQuantile, type Snapshot } from '../../dashboard/aggregate.js';
import { parsePromText } from '../../dashboard/prom-text.js';
import type { Topology } from '../../dashboard/topology.js';

const topo: Topology = {
  workloadOf: (_ns, pod) => pod.replace(/-[0-9a-f]{8}-\d+$/, ''),
  waypointOf: (_ns, pod) => (pod.startsWith('waypoint-') ? 'waypoint' : undefined),
  ambient: (_ns, wl) => wl !== 'outsider',
  nodesOf: () => 'node-1',
  splits: [{ route: 'HTTPRoute/demo/canary', namespace: 'demo', parent: 'backend', backends: [{ service: 'backend-v1', weight: 90 }, { service: 'backend-v2', weight: 10 }] }],
  policies: [],
  accessLogs: [],
};

const req = (src: string, svc: string, wl: string, code: string, flags: string, n: number) =>
  `istio_requests_total{reporter="waypoint",source_workload="${src}",source_workload_namespace="demo",destination_workload="${wl}",destination_workload_namespace="demo",destination_service="${svc}.demo.svc.cluster.local",destination_service_name="${svc}",destination_service_namespace="demo",response_code="${code}",response_flags="${flags}",connection_security_policy="mutual_tls"} ${n}`;
const bucket = (src: string, svc: string, wl: string, le: string, n: number) =>
  `istio_request_duration_milliseconds_bucket{le="${le}",reporter="waypoint",source_workload="${src}",source_workload_namespace="demo",destination_workload="${wl}",destination_workload_namespace="demo",destination_service_name="${svc}",destination_service_namespace="demo",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} ${n}`;
const tcp = (metric: string, reporter: string, src: string, dst: string, svc: string, policy: string, flags: string, n: number) =>
  `istio_tcp_${metric}{reporter="${reporter}",source_workload="${src}",source_workload_namespace="demo",destination_workload="${dst}",destination_workload_namespace="demo",destination_service="${svc}",destination_service_namespace="demo",connection_security_policy="${policy}",response_flags="${flags}"} ${n}`;

const parse = (lines: string[]) => parsePromText(lines.join('\n'), ['istio_']).samples;
const WP = { id: 'waypoint/demo/waypoint-0', kind: 'waypoint' as const, url: 'http://w', waypoint: { namespace: 'demo', name: 'waypoint' } };
const ZT = { id: 'ztunnel/node-1', kind: 'ztunnel' as const, url: 'http://z' };
const edge = (s: Snapshot, id: string) => {
  const e = s.edges.find((x) => x.id === id);
  if (!e) throw new Error(`no edge ${id} in ${s.edges.map((x) => x.id).join(', ')}`);
  return e;
};

t.test('histogramQuantile interpolates as Prometheus does', async (t) => {
  const b = new Map([[1, 0], [5, 50], [10, 100], [Infinity, 100]]);
  t.equal(histogramQuantile(0.5, b), 5);
  t.equal(histogramQuantile(0.25, b), 3);
  t.equal(histogramQuantile(0.99, b), 9.9);
  t.equal(histogramQuantile(0.5, new Map([[Infinity, 0]])), null, 'no observation');
  t.equal(histogramQuantile(0.99, new Map([[5, 1], [Infinity, 10]])), 5, 'above the last bound: that bound');
});

t.test('a waypoint and two ztunnels over a 10 s window', async (t) => {
  const agg = new Aggregator({ windowMs: 10_000 });
  const t0 = 1_000_000;
  agg.record(WP, t0, parse([
    req('client', 'frontend', 'frontend-0a0b0c0d-0', '200', '-', 100),
    req('frontend-0a0b0c0d-0', 'backend-v1', 'backend-v1-0a0b0c0d-0', '200', '-', 90),
    req('frontend-0a0b0c0d-0', 'backend-v2', 'backend-v2-0a0b0c0d-0', '200', '-', 10),
    bucket('client', 'frontend', 'frontend-0a0b0c0d-0', '5', 50),
    bucket('client', 'frontend', 'frontend-0a0b0c0d-0', '10', 100),
    bucket('client', 'frontend', 'frontend-0a0b0c0d-0', '+Inf', 100),
  ]));
  agg.record(ZT, t0, parse([
    tcp('connections_opened_total', 'source', 'client', 'waypoint-1a2b3c4d-0', 'unknown', 'mutual_tls', '-', 5),
    tcp('received_bytes_total', 'source', 'client', 'waypoint-1a2b3c4d-0', 'unknown', 'mutual_tls', '-', 1000),
    tcp('connections_opened_total', 'destination', 'outsider', 'ratings-0a0b0c0d-0', 'ratings.demo.svc.cluster.local', 'none', '-', 3),
  ]));
  const first = agg.snapshot(t0, topo);
  t.equal(first.windowSeconds, 0, 'one scrape: no rate yet');
  t.equal(edge(first, 'wl:demo/client->wp:demo/waypoint').rps, 0);
  t.equal(edge(first, 'wl:demo/client->wp:demo/waypoint').totalRequests, 100, 'totals from the first scrape');
  t.equal(edge(first, 'svc:demo/backend->svc:demo/backend-v1').observedShare, 90, 'the split share from totals before any window');

  agg.record(WP, t0 + 10_000, parse([
    req('client', 'frontend', 'frontend-0a0b0c0d-0', '200', '-', 150),
    req('client', 'ratings', 'unknown', '503', 'FI', 5),
    req('frontend-0a0b0c0d-0', 'backend-v1', 'backend-v1-0a0b0c0d-0', '200', '-', 20),
    req('frontend-0a0b0c0d-0', 'backend-v2', 'backend-v2-0a0b0c0d-0', '200', '-', 15),
    bucket('client', 'frontend', 'frontend-0a0b0c0d-0', '5', 50),
    bucket('client', 'frontend', 'frontend-0a0b0c0d-0', '10', 150),
    bucket('client', 'frontend', 'frontend-0a0b0c0d-0', '+Inf', 150),
  ]));
  agg.record(ZT, t0 + 10_000, parse([
    tcp('connections_opened_total', 'source', 'client', 'waypoint-1a2b3c4d-0', 'unknown', 'mutual_tls', '-', 15),
    tcp('received_bytes_total', 'source', 'client', 'waypoint-1a2b3c4d-0', 'unknown', 'mutual_tls', '-', 21_000),
    tcp('connections_opened_total', 'destination', 'outsider', 'ratings-0a0b0c0d-0', 'ratings.demo.svc.cluster.local', 'none', '-', 3),
    tcp('connections_opened_total', 'destination', 'outsider', 'ratings-0a0b0c0d-0', 'ratings.demo.svc.cluster.local', 'none', 'DENY', 2),
  ]));
  const s = agg.snapshot(t0 + 10_000, topo);
  t.equal(s.windowSeconds, 10);
  const cw = edge(s, 'wl:demo/client->wp:demo/waypoint');
  t.equal(cw.kind, 'l7', 'requests make it an L7 edge whichever series came first');
  t.equal(cw.rps, (50 + 5) / 10, 'client → waypoint: the 50 new requests and the 5 new faults');
  t.equal(cw.connectionsPerSec, 1, 'ztunnel: 10 connections into the waypoint in 10 s');
  t.equal(cw.bytesPerSec, 2000);
  t.equal(cw.mtls, true);
  t.same(cw.flags, { FI: 5 });
  t.ok(cw.errorRate > 0.05 && cw.alert, 'faults over 5 % make it red');
  const wf = edge(s, 'wp:demo/waypoint->svc:demo/frontend');
  t.equal(wf.p50Ms, 7.5, 'p50 of the window\'s 50 observations, all in (5, 10]');
  t.equal(wf.alert, false);
  t.equal(edge(s, 'svc:demo/frontend->wl:demo/frontend').rps, 5);
  // backend-v1's counter went from 90 to 20: a reset, so 20 count; backend-v2 went 10 → 15.
  const v1 = edge(s, 'svc:demo/backend->svc:demo/backend-v1');
  const v2 = edge(s, 'svc:demo/backend->svc:demo/backend-v2');
  t.equal(v1.rps, 2, 'a counter that went down was reset and counts from zero');
  t.equal(v1.weight, 90);
  t.equal(v2.weight, 10);
  t.equal(v1.observedShare, 80, 'observed share over the window: 20 of 25 (v2 went 10 → 15)');
  t.equal(edge(s, 'wp:demo/waypoint->svc:demo/backend').rps, 2.5, 'the waypoint sends to the split\'s parent Service');
  const out = edge(s, 'wl:demo/outsider->svc:demo/ratings');
  t.equal(out.mtls, false, 'plaintext from outside the mesh');
  t.equal(out.denialsPerSec, 0.2, 'a DENY series born inside the window counts whole');
  t.ok(out.alert, 'a denial makes the edge red');
  t.ok(s.nodes.some((n) => n.id === 'wl:demo/ratings' && n.ambient === true && n.parent === 'ns:demo'));
  t.ok(s.nodes.some((n) => n.id === 'wl:demo/outsider' && n.ambient === false));
  t.ok(s.nodes.some((n) => n.id === 'wp:demo/waypoint' && n.kind === 'waypoint'));
  t.same(s.sources.map((x) => [x.id, x.stale]), [['waypoint/demo/waypoint-0', false], ['ztunnel/node-1', false]]);

  await t.test('a source that fails is stale: totals stay, its rates stop, the others are live', async (t) => {
    agg.record(ZT, t0 + 12_000, new Error('http://z gave no complete answer in 1500 ms'));
    agg.record(WP, t0 + 12_000, parse([req('client', 'frontend', 'frontend-0a0b0c0d-0', '200', '-', 160)]));
    const s2 = agg.snapshot(t0 + 12_000, topo);
    const z = s2.sources.find((x) => x.id === 'ztunnel/node-1')!;
    t.equal(z.stale, true);
    t.match(z.error, /no complete answer/);
    t.equal(s2.sources.find((x) => x.id === 'waypoint/demo/waypoint-0')!.stale, false);
    const o = edge(s2, 'wl:demo/outsider->svc:demo/ratings');
    t.equal(o.connectionsPerSec, 0, 'no rate from a stale source');
    t.equal(o.totalConnections, 5, 'its last totals stay');
    t.ok(edge(s2, 'wl:demo/client->wp:demo/waypoint').rps > 0, 'the waypoint is still live');
  });
});
