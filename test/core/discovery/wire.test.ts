import t from 'tap';
import * as yaml from 'js-yaml';
import {
  RESOURCE_KINDS,
  WireFormatError,
  decodeMessage,
  decodeResource,
  encodeResource,
  parseHostPort,
  resourceKey,
} from '../../../core/discovery/wire.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { convertManifests } from '../../../core/kube/convert.js';

const docs = (...o: object[]) => o.map((x) => yaml.dump(x)).join('---\n');
const parsed = parseManifests(
  docs(
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'apps', labels: { app: 'web' } }, spec: { nodeName: 'n', containers: [{ name: 'c' }] }, status: { podIP: '10.0.0.1' } },
    // No IP yet: a pending pod (node agents' kind), with its Kubernetes uid.
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-new', namespace: 'apps', uid: '5f0c1d2e-0000-4000-8000-000000000001', labels: { app: 'web' } }, spec: { nodeName: 'n', containers: [{ name: 'c' }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'apps' }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.1', ports: [{ port: 80, targetPort: 8080, name: 'http' }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/apps/sa/x'], ipBlocks: ['10.0.0.0/8'] } }], to: [{ operation: { ports: ['80'], methods: ['GET'] } }], when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }] }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'p', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'l7', namespace: 'apps' }, spec: { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'apps' }, spec: { parentRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'vs', namespace: 'apps' }, spec: { hosts: ['web'], http: [{ fault: { abort: { httpStatus: 503, percentage: { value: 50 } } }, route: [{ destination: { host: 'web', subset: 'v1' } }] }] } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'dr', namespace: 'apps' },
      spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } }, subsets: [{ name: 'v1', labels: { app: 'web' } }, { name: 'all' }] },
    },
  ),
  'wire.yaml',
);
const objects = new Map(parsed.objects.map((o) => [`${o.kind}/${o.meta.name}`, o]));
const config = convertManifests({ objects: parsed.objects, nodes: [{ name: 'n', ztunnelAddress: '10.0.9.1', hbonePort: 15008 }], trustDomain: 'cluster.local' }).config;
const specOf = (kind: string, name: string) => (objects.get(`${kind}/${name}`)!.raw as { spec: unknown }).spec;

t.test('every kind survives encode → JSON → decode unchanged', async (t) => {
  const specs: Record<string, (name: string) => unknown> = {
    waypointPolicies: (n) => specOf('AuthorizationPolicy', n),
    httpRoutes: (n) => specOf('HTTPRoute', n),
    virtualServices: (n) => specOf('VirtualService', n),
    destinationRules: (n) => specOf('DestinationRule', n),
  };
  for (const kind of RESOURCE_KINDS) {
    const list = (config[kind] ?? []) as readonly { name: string }[];
    t.ok(list.length > 0, `${kind} present`);
    for (const r of list) {
      const json = JSON.parse(JSON.stringify(encodeResource(kind, r as never, specs[kind]?.(r.name))));
      const back = decodeResource(kind, json);
      t.same(back, r, `${kind} ${resourceKey(kind, r as never)}`);
      t.ok(Object.isFrozen(back));
    }
  }
  const pa = decodeResource('peerAuthentications', JSON.parse(JSON.stringify(encodeResource('peerAuthentications', config.peerAuthentications[0]!))));
  t.equal(pa.portLevel.get(8080), 'PERMISSIVE', 'portLevel travels as an object and comes back as a Map');
});

t.test('malformed resources are refused with the path of the first bad field', async (t) => {
  const w = JSON.parse(JSON.stringify(config.workloads[0]));
  t.throws(() => decodeResource('workloads', { ...w, ips: ['10.0.0.300'] }), new WireFormatError('workloads.ips[0]', 'expected an IP address'));
  t.throws(() => decodeResource('workloads', { ...w, protocol: 'UDP' }), /workloads.protocol: expected one of HBONE, TCP/);
  t.throws(() => decodeResource('workloads', { ...w, serviceAccount: 'Bad_SA' }), /not a DNS-1123 subdomain/);
  t.throws(() => decodeResource('services', { name: 'x' }), /services.namespace: expected a non-empty string/);
  t.throws(() => decodeResource('httpRoutes', { name: 'r', namespace: 'apps', spec: { parentRefs: 'x' } }), /httpRoutes: .*parentRefs/);
  // Specs meet the upstream schema before a converter sees them: the schema's message, as a WireFormatError.
  t.throws(
    () => decodeResource('virtualServices', { name: 'vs', namespace: 'apps', spec: { hosts: ['web'], http: [{ route: [{ destination: { port: { number: 'x' } } }] }] } }),
    new WireFormatError('virtualServices', 'virtualServices.spec.http[0].route[0].destination.host: required field is missing; virtualServices.spec.http[0].route[0].destination.port.number: expected an integer, got "x"'),
  );
  t.throws(
    () => decodeResource('waypointPolicies', { name: 'l7', namespace: 'apps', spec: { targetRefs: [{ name: 'web' }], action: 'NOPE' } }),
    { code: 'ERR_DISCOVERY_WIRE', message: /waypointPolicies\.spec\.action: "NOPE" is not allowed.*waypointPolicies\.spec\.targetRefs\[0\]\.kind: required field is missing/ },
  );
  t.throws(() => decodeMessage('{"type":"delta"'), /not JSON/);
  t.throws(() => decodeMessage('{"type":"snapshot","version":"v","seq":1,"rootNamespace":"istio-system","resources":{"workloads":[{"uid":1}]}}'), /resources.workloads\[0\].uid/);
});

t.test('unknown message types and kinds are ignored (forward compatibility)', async (t) => {
  t.equal(decodeMessage('{"type":"futureThing","x":1}'), undefined);
  const m = decodeMessage('{"type":"delta","from":"a","version":"b","seq":2,"upserts":{"gizmos":[{"x":1}]},"removes":{"gizmos":["k"],"workloads":["apps/web"]},"replace":["gizmos","authorizationPolicies"]}');
  t.same(m, { type: 'delta', from: 'a', version: 'b', seq: 2, upserts: {}, removes: { workloads: ['apps/web'] }, replace: ['authorizationPolicies'] });
});

t.test('control-plane addresses', async (t) => {
  t.same(parseHostPort('10.0.0.1:15012'), { host: '10.0.0.1', port: 15012 });
  t.same(parseHostPort('istiod.istio-system.svc'), { host: 'istiod.istio-system.svc', port: 15012 });
  t.same(parseHostPort('[fd00::1]:9'), { host: 'fd00::1', port: 9 });
  t.equal(parseHostPort('10.0.0.1:99999'), undefined);
  t.equal(parseHostPort('a:b:c'), undefined);
});

t.test('node-agent kinds: a pending pod keeps its uid and verdict; a namespace its dataplane mode; both keyed and checked', async (t) => {
  const pending = config.pendingPods ?? [];
  t.same(pending.map((p) => ({ ...p })), [{ namespace: 'apps', name: 'web-new', uid: '5f0c1d2e-0000-4000-8000-000000000001', node: 'n', labels: { app: 'web' }, protocol: 'HBONE' }]);
  t.equal(resourceKey('pendingPods', pending[0]!), 'apps/web-new', 'keyed like the workload it becomes');
  t.same(config.namespaces, [{ name: 'apps', dataplaneMode: 'ambient' }]);
  t.equal(resourceKey('namespaces', config.namespaces![0]!), 'apps');
  t.same(decodeResource('namespaces', { name: 'plain' }), { name: 'plain' }, 'no label: no dataplaneMode');
  t.same(decodeResource('namespaces', { name: 'e', dataplaneMode: '' }), { name: 'e', dataplaneMode: '' }, 'an empty label value is a value');
  t.same(decodeResource('pendingPods', { namespace: 'a', name: 'b', node: 'n', labels: {}, protocol: 'TCP' }), { namespace: 'a', name: 'b', node: 'n', labels: {}, protocol: 'TCP' }, 'uid is optional (the lab has none)');
  t.throws(() => decodeResource('pendingPods', { namespace: 'a', name: 'b', node: 'n', labels: {}, protocol: 'UDP' }), /pendingPods.protocol: expected one of HBONE, TCP/);
  t.throws(() => decodeResource('pendingPods', { namespace: 'a', name: 'b', labels: {}, protocol: 'TCP' }), /pendingPods.node: expected a non-empty string/);
  t.throws(() => decodeResource('pendingPods', { namespace: 'a', name: 'b', node: 'n', uid: 7, labels: {}, protocol: 'TCP' }), /pendingPods.uid/);
  t.throws(() => decodeResource('namespaces', { name: 'x', dataplaneMode: 1 }), /namespaces.dataplaneMode: expected a string/);
});
