/** The telemetry layer's series cache: right series across config reloads, bounded, no counts lost. */
import t from 'tap';
import { Registry } from 'prom-client';
import { createHttpMetrics } from '../../waypoint/http-metrics.js';
import { MeshState } from '../../core/model/state.js';
import type { MeshConfig, Service, Workload } from '../../core/model/types.js';
import { SERIES_CACHE_LIMIT, seriesCache } from '../../waypoint/filters/telemetry.js';
import type { RequestContext, WriteResult } from '../../waypoint/context.js';

const workload = (name: string, version: string, ip: string): Workload =>
  Object.freeze({ uid: name, name, namespace: 'default', serviceAccount: name, trustDomain: 'cluster.local', node: 'n', ips: [ip], protocol: 'HBONE', labels: { app: name, version }, healthy: true });
const svc: Service = Object.freeze({ name: 'echo', namespace: 'default', hostname: 'echo.default.svc.cluster.local', vips: ['10.96.0.1'], ports: [{ port: 80, targetPort: 8080 }], endpoints: ['echo'], subjectAltNames: [] });
const snapshot = (echoVersion: string) => {
  const client = workload('client', 'v1', '10.0.0.1');
  const echo = workload('echo', echoVersion, '10.0.0.2');
  const cfg: MeshConfig = { nodes: [], workloads: [client, echo], services: [svc], authorizationPolicies: [], peerAuthentications: [] };
  return { state: new MeshState(cfg), client, echo };
};
const ctx = (s: ReturnType<typeof snapshot>): RequestContext =>
  ({ stream: { state: s.state, srcWorkload: s.client, srcIdentity: 'spiffe://cluster.local/ns/default/sa/client', dstService: svc }, endpoint: s.echo, protocol: 'http' }) as unknown as RequestContext;
const ok: WriteResult = { status: 200, responseBytes: 10 };

async function counts(reg: Registry): Promise<string[]> {
  const m = await reg.getSingleMetric('istio_requests_total')!.get();
  return m.values.map((v) => `${v.labels['destination_version']} ${v.labels['response_code']} ${v.labels['grpc_response_status']}=${v.value}`);
}

t.test('a reload with changed workload labels records under the new labels; the same objects hit the cache', async (t) => {
  const reg = new Registry();
  const of = seriesCache(createHttpMetrics(reg));
  const before = snapshot('v1');
  const c1 = ctx(before);
  t.equal(of(c1, ok, '-'), of(c1, ok, '-'), 'same objects, same values: the cached series');
  of(c1, ok, '-').record(1, 1, 1);
  const after = snapshot('v2'); // new objects, same names: only the version label differs
  of(ctx(after), ok, '-').record(1, 1, 1);
  of(ctx(after), ok, '-').record(1, 1, 1);
  of(c1, ok, '-').record(1, 1, 1); // a connection still on the old snapshot
  t.same(await counts(reg), ['v1 200 =2', 'v2 200 =2']);
});

t.test(`past ${SERIES_CACHE_LIMIT} label sets the cache starts over without losing a count`, async (t) => {
  const reg = new Registry();
  const of = seriesCache(createHttpMetrics(reg));
  const c = ctx(snapshot('v1'));
  const first = of(c, { status: 200, responseBytes: 0, grpcStatus: '0' }, '-');
  first.record(1, 1, 1);
  // Many label sets (distinct response codes stand in for any per-request label value).
  for (let i = 1; i <= SERIES_CACHE_LIMIT + 5; i++) of(c, { status: 1000 + i, responseBytes: 0, grpcStatus: '0' }, '-').record(1, 1, 1);
  const again = of(c, { status: 200, responseBytes: 0, grpcStatus: '0' }, '-');
  t.not(again, first, 'the cache was cleared: a new series object');
  again.record(1, 1, 1);
  const all = await counts(reg);
  t.equal(all.length, SERIES_CACHE_LIMIT + 6);
  t.equal(all[0], 'v1 200 0=2', 'both records of the first label set landed in one exported series');
});

t.test('grpc-status values outside the 17 gRPC codes are one `unknown` series, not one each', async (t) => {
  const reg = new Registry();
  const of = seriesCache(createHttpMetrics(reg));
  const c = ctx(snapshot('v1'));
  for (const g of ['14', 'oops', '99', '-1', 'x'.repeat(100)]) of(c, { status: 200, responseBytes: 0, grpcStatus: g }, '-').record(1, 1, 1);
  t.same((await counts(reg)).sort(), ['v1 200 14=1', 'v1 200 unknown=4']);
});
