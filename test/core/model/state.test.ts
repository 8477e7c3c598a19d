import t from 'tap';
import { MeshState } from '../../../core/model/state.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import type { Service } from '../../../core/model/types.js';

const YAML = `
nodes:
  - {name: node-a, ztunnelAddress: 127.0.0.2}
  - {name: node-b, ztunnelAddress: 127.0.0.2, hbonePort: 15009}
workloads:
  - {name: sleep, namespace: default, serviceAccount: sleep, node: node-a, ips: [10.0.0.1], labels: {app: sleep}}
  - {name: echo-1, namespace: default, serviceAccount: echo, node: node-b, ips: [10.0.0.2, "fd00::2"], labels: {app: echo}}
  - {name: echo-2, namespace: default, serviceAccount: echo, node: node-b, ips: [10.0.0.3], labels: {app: echo}, healthy: false}
  - {name: echo, namespace: other, node: node-a, ips: [10.0.1.2], labels: {app: echo}}
services:
  - name: echo
    namespace: default
    vips: [10.96.0.10, "fd00:96::10"]
    ports: [{port: 80, targetPort: 8080}, {port: 9090, name: metrics}]
    selector: {app: echo}
authorizationPolicies:
  - {name: mesh-deny, namespace: istio-system, spec: {action: DENY, rules: [{from: [{source: {namespaces: [bad]}}]}]}}
  - {name: root-select, namespace: istio-system, spec: {selector: {matchLabels: {app: echo}}, rules: [{}]}}
  - {name: ns-allow, namespace: default, spec: {rules: [{}]}}
  - {name: echo-only, namespace: default, spec: {selector: {matchLabels: {app: echo}}, rules: [{}]}}
  - {name: other-ns, namespace: other, spec: {rules: [{}]}}
peerAuthentications:
  - {name: default, namespace: istio-system, spec: {mtls: {mode: STRICT}}}
  - name: echo
    namespace: default
    spec: {selector: {matchLabels: {app: echo}}, portLevelMtls: {"9090": {mode: PERMISSIVE}}}
`;

const state = new MeshState(parseMeshConfig(YAML, 'state.yaml'));

t.test('workload, node and service lookups', async (t) => {
  t.equal(state.workloadByIp('10.0.0.2')?.uid, 'default/echo-1');
  t.equal(state.workloadByIp('FD00:0::2')?.uid, 'default/echo-1', 'any IPv6 spelling');
  t.equal(state.workloadByIp('::ffff:10.0.0.1')?.uid, 'default/sleep', 'IPv4-mapped');
  t.equal(state.workloadByIp('10.9.9.9'), undefined);
  t.equal(state.workloadByIp('not an ip'), undefined);
  t.equal(state.workloadByUid('other/echo')?.namespace, 'other');
  t.equal(state.workloadByUid('nope'), undefined);
  t.same(state.node('node-b'), { name: 'node-b', ztunnelAddress: '127.0.0.2', hbonePort: 15009 });
  t.equal(state.node('node-c'), undefined);
  t.same(state.workloadsOnNode('node-b').map((w) => w.name), ['echo-1', 'echo-2']);
  t.same(state.workloadsOnNode('node-c'), []);

  const svc = state.serviceByVip('10.96.0.10') as Service;
  t.equal(svc.hostname, 'echo.default.svc.cluster.local');
  t.equal(state.serviceByVip('fd00:96:0::10'), svc);
  t.equal(state.serviceByVip('10.0.0.2'), undefined, 'a workload IP is no VIP');
  t.same(state.servicePort(svc, 80), { port: 80, targetPort: 8080 });
  t.same(state.servicePort(svc, 9090), { port: 9090, targetPort: 9090, name: 'metrics' });
  t.equal(state.servicePort(svc, 8080), undefined, 'target ports are not service ports');
  t.same(state.endpointsOf(svc).map((w) => w.uid), ['default/echo-1'], 'healthy endpoints in the same namespace');
  t.same(svc.endpoints, ['default/echo-1', 'default/echo-2']);

  const foreign: Service = { ...svc, ports: [{ port: 1, targetPort: 2 }], endpoints: ['default/sleep'] };
  t.same(state.servicePort(foreign, 1), { port: 1, targetPort: 2 }, 'works for a service object from elsewhere');
  t.same(state.endpointsOf(foreign).map((w) => w.name), ['sleep']);
});

t.test('policiesFor: mesh + namespace + selector (root-namespace selectors everywhere), cached', async (t) => {
  const names = (uid: string) => state.policiesFor(state.workloadByUid(uid)!).map((p) => `${p.namespace}/${p.name}`);
  t.same(names('default/sleep'), ['istio-system/mesh-deny', 'default/ns-allow']);
  t.same(names('default/echo-1'), ['istio-system/mesh-deny', 'istio-system/root-select', 'default/ns-allow', 'default/echo-only']);
  t.same(names('other/echo'), ['istio-system/mesh-deny', 'istio-system/root-select', 'other/other-ns']);
  const w = state.workloadByUid('default/echo-1')!;
  t.equal(state.policiesFor(w), state.policiesFor(w), 'same cached array');
  t.ok(Object.isFrozen(state.policiesFor(w)));
});

t.test('mtlsModeFor and workloadIdentity', async (t) => {
  const echo = state.workloadByUid('default/echo-1')!;
  const sleep = state.workloadByUid('default/sleep')!;
  t.equal(state.mtlsModeFor(echo, 8080), 'STRICT', 'inherited from the mesh policy');
  t.equal(state.mtlsModeFor(echo, 9090), 'PERMISSIVE', 'port-level exception');
  t.equal(state.mtlsModeFor(sleep, 9090), 'STRICT', 'port exception is for echo only');
  t.equal(state.workloadIdentity(echo), 'spiffe://cluster.local/ns/default/sa/echo');
  t.equal(state.workloadIdentity(state.workloadByUid('other/echo')!), 'spiffe://cluster.local/ns/other/sa/default');
});

t.test('toJSON is plain JSON of the whole config', async (t) => {
  const json = state.toJSON();
  const round = JSON.parse(JSON.stringify(state));
  t.same(round, json, 'JSON.stringify uses toJSON');
  t.equal(json.rootNamespace, 'istio-system');
  const pas = json.peerAuthentications as Array<Record<string, unknown>>;
  t.same(pas[1]?.portLevel, { 9090: 'PERMISSIVE' }, 'Maps become objects');
  t.same(pas[0]?.portLevel, {});
  t.equal((json.workloads as unknown[]).length, 4);
  t.equal((json.services as Array<Record<string, unknown>>)[0]?.hostname, 'echo.default.svc.cluster.local');
  t.notOk(Object.isFrozen(json), 'a fresh copy, not the snapshot');
});

t.test('empty state', async (t) => {
  const e = MeshState.empty();
  t.equal(e.workloadByIp('10.0.0.1'), undefined);
  t.equal(e.serviceByVip('10.96.0.10'), undefined);
  t.equal(e.node('node-a'), undefined);
  t.same(e.toJSON(), {
    rootNamespace: 'istio-system',
    nodes: [],
    workloads: [],
    services: [],
    authorizationPolicies: [],
    peerAuthentications: [],
  });
});

t.test('a hand-built config with duplicates: first entry wins', async (t) => {
  const base = state.config.workloads[0]!;
  const s = new MeshState({
    nodes: [],
    workloads: [base, { ...base, name: 'dup' }, { ...base, uid: 'x', ips: ['10.0.0.1'] }],
    services: [],
    authorizationPolicies: [],
    peerAuthentications: [],
  });
  t.equal(s.workloadByUid(base.uid)?.name, 'sleep');
  t.equal(s.workloadByIp('10.0.0.1')?.uid, base.uid);
  t.equal(s.rootNamespace, 'istio-system');
});
