/**
 * Istio DestinationRule: the converter (`DestinationRuleConverter.destinationRule`, VirtualService
 * `destination.subset`) and the model's subset semantics (`subsetsFor`, `inSubset`,
 * `routeStatus` for a subset no DestinationRule defines).
 */
import t from 'tap';
import { Problems } from '../../../core/validation/check.js';
import { DestinationRuleConverter } from '../../../core/kube/routes/destination-rule.js';
import { VirtualServiceConverter } from '../../../core/kube/routes/virtual-service.js';
import { specProblems } from '../../../core/kube/schema.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { inSubset, routeStatus, subsetsFor, type DestinationRule } from '../../../core/model/routes.js';

/** As every caller of the converter does: the upstream schema judges the structure first. */
function dr(spec: Record<string, unknown>, namespace = 'default', name = 'reviews'): { rule?: DestinationRule; problems: string[] } {
  const structural = specProblems('DestinationRule', spec, 'spec');
  if (structural.length > 0) return { problems: structural.map((s) => `${s.field}: ${s.message}`) };
  const p = new Problems();
  const rule = new DestinationRuleConverter(p).destinationRule(name, namespace, spec, 'spec');
  return { ...(rule ? { rule } : {}), problems: p.list };
}

t.test('a good DestinationRule converts to host, subsets, traffic policies and the fields it does not apply', async (t) => {
  const { rule, problems } = dr({
    host: 'reviews.default.svc.cluster.local',
    trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } },
    exportTo: ['.'],
    subsets: [
      { name: 'v1', labels: { version: 'v1' } },
      { name: 'v2', labels: { version: 'v2', 'app.kubernetes.io/name': 'reviews' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 } } } },
      { name: 'all' },
    ],
  });
  t.same(problems, []);
  t.same(rule, {
    kind: 'DestinationRule',
    name: 'reviews',
    namespace: 'default',
    host: 'reviews.default.svc.cluster.local',
    subsets: [
      { name: 'v1', labels: { version: 'v1' } },
      { name: 'v2', labels: { version: 'v2', 'app.kubernetes.io/name': 'reviews' }, trafficPolicy: { connectionPool: { maxConnections: 1 } } },
      { name: 'all', labels: {} },
    ],
    trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } },
    ignored: ['exportTo'],
  });
  t.ok(Object.isFrozen(rule) && Object.isFrozen(rule!.subsets) && Object.isFrozen(rule!.subsets[0]!.labels), 'frozen all the way down');
  t.notOk('ignored' in dr({ host: 'reviews', subsets: [] }).rule!, 'nothing ignored: no ignored field');
});

t.test('duplicate subset names are refused, naming both places', async (t) => {
  const { rule, problems } = dr({ host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2' }, { name: 'v1', labels: { version: 'v9' } }] });
  t.equal(rule, undefined);
  t.same(problems, ['spec.subsets[2].name: subset "v1" is already defined by subsets[0]; subset names must be unique']);
});

t.test('bad labels, names and hosts are refused with their paths; every problem at once', async (t) => {
  const { rule, problems } = dr({
    host: '*.example.com',
    subsets: [
      { name: 'v1', labels: { 'bad key!': 'x', version: 'not ok' } },
      { name: 'v 2' },
    ],
    trafficPolicys: {},
  });
  t.equal(rule, undefined);
  t.same(problems, [
    'spec.trafficPolicys: unknown key; did you mean "trafficPolicy"? allowed keys here: host, subsets, trafficPolicy, exportTo, workloadSelector',
    'spec.host: "*.example.com": wildcard hosts are not supported; name one service (short name, name.namespace or its FQDN)',
    'spec.subsets[0].labels["bad key!"]: is not a valid label key; expected [prefix/]name with a name of up to 63 letters, digits, "-", "_" or "."',
    'spec.subsets[0].labels.version: "not ok" is not a valid label value; expected up to 63 letters, digits, "-", "_" or ".", starting and ending alphanumeric',
    'spec.subsets[1].name: "v 2" is not a subset name; expected up to 63 letters, digits, "-", "_" or "."',
  ]);
  // Structure is the upstream schema's (core/kube/schema.ts): its messages, every one at once.
  t.same(new Set(dr({ host: 'reviews', subsets: [{ name: 'v1', labels: { n: 3 } }, { name: 'v2', labels: ['version=v2'] }, { labels: { version: 'v3' } }, 'v4'] }).problems), new Set([
    'spec.subsets[0].labels.n: expected a string, got 3 (quote it: "3")',
    'spec.subsets[1].labels: expected a mapping, got a list',
    'spec.subsets[2].name: required field is missing',
    'spec.subsets[3]: expected a mapping, got "v4"',
  ]));
  t.same(dr({ subsets: [] }).problems, ['spec.host: required field is missing']);
});

t.test('a VirtualService destination carries its subset to the backend', async (t) => {
  const p = new Problems();
  const vs = new VirtualServiceConverter(p).virtualService('reviews', 'default', {
    hosts: ['reviews'],
    http: [{ route: [{ destination: { host: 'reviews', subset: 'v2' }, weight: 50 }, { destination: { host: 'reviews.other', port: { number: 9080 }, subset: 'v1' }, weight: 50 }] }],
  }, 'spec');
  t.same(p.list, []);
  t.same(vs!.rules[0]!.backends.map((b) => [b.name, b.namespace, b.port, b.subset]), [['reviews', 'default', undefined, 'v2'], ['reviews', 'other', 9080, 'v1']]);
});

t.test('DestinationRule manifests: all three apiVersions parse, problems name the object', async (t) => {
  const yaml = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3']
    .map((v, i) => `apiVersion: ${v}\nkind: DestinationRule\nmetadata: {name: r${i}, namespace: default}\nspec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}\n`)
    .concat('apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: bad, namespace: default}\nspec: {host: reviews, subsets: [{name: v1}, {name: v1}]}\n')
    .join('---\n');
  const parsed = parseManifests(yaml, 'dr.yaml');
  t.same(parsed.objects.map((o) => o.kind === 'DestinationRule' && o.destinationRule.subsets.map((s) => s.name)), [['v1'], ['v1'], ['v1']]);
  t.match(parsed.problems, [{ object: /DestinationRule.*bad/, message: /subset "v1" is already defined/ }]);
});

const svc = { name: 'reviews', namespace: 'default', hostname: 'reviews.default.svc.cluster.local' };
const rule = (namespace: string, host: string, subsets: Array<[string, Record<string, string>]>, name = `dr-${namespace}`): DestinationRule => ({
  kind: 'DestinationRule',
  name,
  namespace,
  host,
  subsets: subsets.map(([n, labels]) => ({ name: n, labels })),
});

t.test('subsetsFor: host forms, and Istio lookup order (route ns, service ns, root ns)', async (t) => {
  const names = (m: ReadonlyMap<string, { labels: Record<string, string> }> | undefined) => (m ? [...m].map(([k, v]) => `${k}=${JSON.stringify(v.labels)}`) : undefined);
  for (const host of ['reviews', 'reviews.default', 'reviews.default.svc', 'reviews.default.svc.cluster.local', 'REVIEWS.default']) {
    t.same(names(subsetsFor([rule('default', host, [['v1', { version: 'v1' }]])], svc, 'default', 'istio-system')), ['v1={"version":"v1"}'], `host ${host}`);
  }
  t.equal(subsetsFor([rule('other', 'reviews', [['v1', {}]])], svc, 'other', 'istio-system'), undefined, 'a short host means the DestinationRule\'s own namespace');
  t.equal(subsetsFor([rule('default', 'ratings', [['v1', {}]])], svc, 'default', 'istio-system'), undefined, 'another host');

  const rules = [
    rule('istio-system', 'reviews.default.svc.cluster.local', [['v1', { from: 'root' }]]),
    rule('default', 'reviews', [['v1', { from: 'service' }]]),
    rule('clients', 'reviews.default', [['v1', { from: 'route' }]]),
    rule('elsewhere', 'reviews.default', [['v1', { from: 'elsewhere' }]]),
  ];
  t.same(names(subsetsFor(rules, svc, 'clients', 'istio-system')), ['v1={"from":"route"}'], 'the route namespace first');
  t.same(names(subsetsFor(rules, svc, 'default', 'istio-system')), ['v1={"from":"service"}'], 'then the service namespace');
  t.same(names(subsetsFor(rules, svc, 'nobody', 'istio-system')), ['v1={"from":"service"}'], 'a route namespace without one falls through');
  t.same(names(subsetsFor([rules[0]!, rules[3]!], svc, 'nobody', 'istio-system')), ['v1={"from":"root"}'], 'then the root namespace; other namespaces never');
  t.equal(subsetsFor([rules[3]!], svc, 'nobody', 'istio-system'), undefined);

  const merged = subsetsFor(
    [rule('default', 'reviews', [['v1', { version: 'v1' }]], 'a'), rule('default', 'reviews', [['v1', { version: 'x' }], ['v2', { version: 'v2' }]], 'b')],
    svc,
    'default',
    'istio-system',
  );
  t.same(names(merged), ['v1={"version":"v1"}', 'v2={"version":"v2"}'], 'two in one namespace merge; the first definition of a name wins');
});

t.test('inSubset: every label of the subset, extra workload labels allowed, no labels = all', async (t) => {
  const s = { name: 'v2', labels: { app: 'reviews', version: 'v2' } };
  t.equal(inSubset(s, { app: 'reviews', version: 'v2', extra: 'y' }), true);
  t.equal(inSubset(s, { app: 'reviews', version: 'v1' }), false);
  t.equal(inSubset(s, { version: 'v2' }), false);
  t.equal(inSubset({ name: 'all', labels: {} }, {}), true);
});

t.test('routeStatus: a subset no DestinationRule defines is ResolvedRefs=False', async (t) => {
  const p = new Problems();
  const vs = new VirtualServiceConverter(p).virtualService('reviews', 'default', {
    hosts: ['reviews'],
    http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 50 }, { destination: { host: 'reviews', subset: 'v9' }, weight: 50 }] }],
  }, 'spec')!;
  const lookup = {
    byName: () => ({ ports: [{ port: 80 }] }),
    byHostname: () => undefined,
    hasSubset: (b: { subset?: string }, ns: string) => ns === 'default' && b.subset === 'v1',
  };
  t.same(routeStatus(vs, lookup)[1], {
    type: 'ResolvedRefs',
    status: 'False',
    reason: 'BackendNotFound',
    message: 'rules[0]: backend default/reviews subset "v9" is not defined by a DestinationRule for that host, so the rule answers 503 NC',
  });
  const { hasSubset: _, ...without } = lookup;
  t.equal(routeStatus(vs, without)[1]?.status, 'True', 'without a subset lookup, subsets are not checked');
});
