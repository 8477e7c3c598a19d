/** DestinationRule subsets on the waypoint's data path: endpoint selection, the backend layer, status. */
import t from 'tap';
import { MeshState } from '../../core/model/state.js';
import type { DestinationRule, RouteRule } from '../../core/model/routes.js';
import type { MeshConfig, Service, Workload } from '../../core/model/types.js';
import { subsetEndpoints } from '../../waypoint/subsets.js';
import { routeStatuses } from '../../core/model/route-status.js';
import { backendLayer } from '../../waypoint/filters/backend.js';
import { errorsLayer } from '../../waypoint/filters/errors.js';
import type { RequestContext, WaypointResponse } from '../../waypoint/context.js';
import { UpstreamPool } from '../../waypoint/upstream.js';
import { compose } from '../../waypoint/context.js';

let nextIp = 1;
const wl = (name: string, labels: Record<string, string>, healthy = true): Workload => ({
  uid: `uid-${name}`,
  name,
  namespace: 'default',
  serviceAccount: 'reviews',
  trustDomain: 'cluster.local',
  node: 'n1',
  ips: [`10.0.0.${nextIp++}`],
  protocol: 'HBONE',
  labels,
  healthy,
});
const workloads = [
  wl('r-v1', { app: 'reviews', version: 'v1' }),
  wl('r-v2a', { app: 'reviews', version: 'v2' }),
  wl('r-v2b', { app: 'reviews', version: 'v2' }),
  wl('r-v2-sick', { app: 'reviews', version: 'v2' }, false),
  wl('r-v3-sick', { app: 'reviews', version: 'v3' }, false),
];
const reviews: Service = {
  name: 'reviews',
  namespace: 'default',
  hostname: 'reviews.default.svc.cluster.local',
  vips: ['10.96.0.1'],
  ports: [{ port: 80, targetPort: 9080 }],
  endpoints: workloads.map((w) => w.uid),
  subjectAltNames: [],
};
const drReviews: DestinationRule = {
  kind: 'DestinationRule',
  name: 'reviews',
  namespace: 'default',
  host: 'reviews',
  subsets: [
    { name: 'v1', labels: { version: 'v1' } },
    { name: 'v2', labels: { version: 'v2' } },
    { name: 'v3', labels: { version: 'v3' } },
  ],
  ignored: ['trafficPolicy'],
};
const config = (destinationRules: DestinationRule[], extra: Partial<MeshConfig> = {}): MeshConfig => ({
  nodes: [{ name: 'n1', ztunnelAddress: '10.0.9.1', hbonePort: 15008 }],
  workloads,
  services: [reviews],
  authorizationPolicies: [],
  peerAuthentications: [],
  destinationRules,
  ...extra,
});

t.test('a subset is the healthy endpoints with its labels; resolved once per snapshot', async (t) => {
  const state = new MeshState(config([drReviews]));
  const v2 = subsetEndpoints(state, reviews, 'v2', 'default');
  t.same(v2?.endpoints.map((w) => w.name), ['r-v2a', 'r-v2b'], 'unhealthy r-v2-sick is left out');
  t.equal(subsetEndpoints(state, reviews, 'v2', 'default'), v2, 'the same object on the next request: no per-request work');
  t.same(subsetEndpoints(state, reviews, 'v3', 'default')?.endpoints, [], 'defined, but nothing healthy: empty (the forwarder answers 503 UH)');
  t.equal(subsetEndpoints(state, reviews, 'v9', 'default'), undefined, 'not defined: undefined (503 NC)');
  t.equal(subsetEndpoints(new MeshState(config([])), reviews, 'v2', 'default'), undefined, 'no DestinationRule at all');

  const relabelled = workloads.map((w) => (w.name === 'r-v1' ? { ...w, labels: { app: 'reviews', version: 'v2' } } : w));
  const next = new MeshState(config([drReviews], { workloads: relabelled }));
  t.same(subsetEndpoints(next, reviews, 'v2', 'default')?.endpoints.map((w) => w.name), ['r-v1', 'r-v2a', 'r-v2b'], 'a new snapshot sees the new labels');
  t.same(v2?.endpoints.map((w) => w.name), ['r-v2a', 'r-v2b'], 'the old snapshot keeps its answer');
});

t.test('round-robin stays inside the subset, apart from the service-wide rotation', async (t) => {
  const state = new MeshState(config([drReviews]));
  const pool = new UpstreamPool({ hbone: {} as never, identity: () => 'x', baggage: () => '' });
  const v2 = subsetEndpoints(state, reviews, 'v2', 'default')!;
  const picks = Array.from({ length: 6 }, () => pool.pick(state, reviews, v2)?.name);
  t.same(picks, ['r-v2a', 'r-v2b', 'r-v2a', 'r-v2b', 'r-v2a', 'r-v2b']);
  t.same(Array.from({ length: 3 }, () => pool.pick(state, reviews)?.name), ['r-v1', 'r-v2a', 'r-v2b'], 'no subset: every healthy endpoint');
  t.equal(pool.pick(state, reviews, subsetEndpoints(state, reviews, 'v3', 'default')), undefined);
});

t.test('the backend layer: subset endpoints for the forwarder; an undefined subset is 503 NC with no body', async (t) => {
  const state = new MeshState(config([drReviews]));
  const rule = (subset: string): RouteRule => ({ matches: [], filters: [], backends: [{ name: 'reviews', namespace: 'default', port: 80, weight: 1, filters: [], subset }] });
  const run = async (subset: string) => {
    let seen: RequestContext['backend'];
    const ctx = {
      stream: { state, dstPort: 80, dstService: reviews },
      rule: rule(subset),
      route: { route: { namespace: 'default' }, ruleIndex: 0 },
      flags: [],
      log: {},
      protocol: 'http',
    } as unknown as RequestContext;
    const res = await compose([errorsLayer, backendLayer(() => 0)], async (c): Promise<WaypointResponse> => {
      seen = c.backend;
      return { status: 200, headers: {} };
    })(ctx);
    return { res, seen, ctx };
  };
  const ok = await run('v2');
  t.equal(ok.res.status, 200);
  t.same(ok.seen?.subset?.endpoints.map((w) => w.name), ['r-v2a', 'r-v2b']);
  const nc = await run('v9');
  t.equal(nc.res.status, 503);
  t.equal(nc.res.text, '', "Envoy's cluster_not_found reply has no body");
  t.same(nc.ctx.flags, ['NC']);
  t.equal(nc.ctx.log['code'], 'ERR_WAYPOINT_SUBSET_NOT_FOUND');
  t.match(String(nc.ctx.log['error']), /subset "v9" of default\/reviews:80#v9 is not defined; check that a DestinationRule/);
  t.equal(nc.seen, undefined, 'nothing was forwarded');
});

t.test('route status: undefined subsets, ignored fields, subsets without endpoints, unknown hosts', async (t) => {
  const vs = {
    kind: 'VirtualService' as const,
    name: 'reviews',
    namespace: 'default',
    hosts: ['reviews'],
    rules: [{ matches: [], filters: [], backends: [{ name: 'reviews', namespace: 'default', weight: 1, filters: [], subset: 'v9' }] }],
  };
  const stray: DestinationRule = { kind: 'DestinationRule', name: 'stray', namespace: 'default', host: 'nothing', subsets: [] };
  const st = routeStatuses(new MeshState(config([drReviews, stray], { virtualServices: [vs] })));
  t.same(st.find((s) => s.kind === 'VirtualService')?.conditions[1], {
    type: 'ResolvedRefs',
    status: 'False',
    reason: 'BackendNotFound',
    message: 'rules[0]: backend default/reviews subset "v9" is not defined by a DestinationRule for that host, so the rule answers 503 NC',
  });
  t.same(st.find((s) => s.name === 'reviews' && s.kind === 'DestinationRule')?.conditions, [
    { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'trafficPolicy accepted but not applied by waypoints' },
    { type: 'ResolvedRefs', status: 'False', reason: 'NoHealthyEndpoints', message: 'subset v3 selects no healthy endpoint of default/reviews, so requests to it answer 503 UH' },
  ]);
  t.same(st.find((s) => s.name === 'stray')?.conditions[1], { type: 'ResolvedRefs', status: 'False', reason: 'BackendNotFound', message: 'host nothing is not a known service' });
});
