/**
 * dashboard/lab-source.ts's reading of a lab state (the shape `lab.json` has; written here, as
 * lab/units.test.ts does, since the lab itself needs root): workloads from pod owners, waypoint pods,
 * enrolment from pod then namespace labels, weighted routes as splits, and the policies view with
 * the control plane's problems by severity. The lab end to end: e2e.test.ts.
 */
import t from 'tap';
import { labPolicies, labSplits, labTopology } from '../../dashboard/lab-source.js';
import type { LabState } from '../../lab/state.js';

const pod = (ns: string, name: string, labels: Record<string, string>, owner?: string) => ({
  namespace: ns, name, uid: name, node: 'node-1', ip: '10.244.1.2', netns: 'x', cgroup: 'x', containerId: 'x', cniResult: {}, hosts: 'x',
  containers: [{ name: 'c', argv: [], log: `/logs/${name}.log`, exitFile: 'x', pid: 0 }],
  raw: { metadata: { name, namespace: ns, labels } }, rawJson: '{}', ...(owner ? { owner } : {}), created: '',
});
const state = {
  prefix: 'amb-x', fabricNetns: 'amb-x-fabric', controlPlaneIp: '10.240.0.254', nodes: [], created: '',
  procs: { 'ztunnel/node-1': { pid: 1, log: '/logs/ztunnel-node-1.log', marker: 'x', restarts: 0 }, 'control-plane': { pid: 2, log: '/logs/cp.log', marker: 'x', restarts: 0 } },
  pods: {
    'demo/web-1a2b3c4d-0': pod('demo', 'web-1a2b3c4d-0', { app: 'web' }, 'Deployment/demo/web'),
    'demo/legacy': pod('demo', 'legacy', { 'istio.io/dataplane-mode': 'none' }),
    'demo/waypoint-9f9f9f9f-0': pod('demo', 'waypoint-9f9f9f9f-0', { 'gateway.networking.k8s.io/gateway-name': 'waypoint' }, 'Deployment/demo/waypoint'),
    'other/db': pod('other', 'db', {}),
  },
  objects: {
    'Namespace//demo': { kind: 'Namespace', metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    'HTTPRoute/demo/canary': { kind: 'HTTPRoute', metadata: { name: 'canary', namespace: 'demo' }, spec: { parentRefs: [{ kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web-v1', weight: 3 }, { name: 'web-v2', weight: 1 }] }, { backendRefs: [{ name: 'web-v1' }] }] } },
    'AuthorizationPolicy/demo/deny': { kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'demo' }, spec: { action: 'DENY', selector: { matchLabels: { app: 'web' } }, rules: [{}] } },
    'PeerAuthentication/demo/strict': { kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'demo' }, spec: { mtls: { mode: 'STRICT' } } },
    'Service/demo/web': { kind: 'Service', metadata: { name: 'web', namespace: 'demo' } },
  },
} as unknown as LabState;

t.test('the topology of a lab state', async (t) => {
  const topo = labTopology(state, []);
  t.equal(topo.workloadOf('demo', 'web-1a2b3c4d-0'), 'web', 'a Deployment\'s pod is its Deployment');
  t.equal(topo.workloadOf('demo', 'legacy'), 'legacy', 'a bare pod is itself');
  t.equal(topo.workloadOf('demo', 'unknown-pod'), 'unknown-pod');
  t.equal(topo.waypointOf('demo', 'waypoint-9f9f9f9f-0'), 'waypoint');
  t.equal(topo.waypointOf('demo', 'web-1a2b3c4d-0'), undefined);
  t.equal(topo.ambient('demo', 'web'), true, 'enrolled by its namespace\'s label');
  t.equal(topo.ambient('demo', 'legacy'), false, 'a pod label opts out');
  t.equal(topo.ambient('other', 'db'), false, 'a namespace without the label');
  t.equal(topo.ambient('demo', 'nothing'), undefined, 'no pod: unknown');
  t.equal(topo.nodesOf('demo', 'web'), 'node-1');
  t.same(topo.accessLogs, [{ file: '/logs/ztunnel-node-1.log' }, { file: '/logs/waypoint-9f9f9f9f-0.log', waypoint: 'wp:demo/waypoint' }], 'ztunnels\' and waypoints\' logs, not the control plane\'s');
});

t.test('weighted rules are splits; a one-backend rule is not', async (t) => {
  t.same(labSplits(state), [{ route: 'HTTPRoute/demo/canary', namespace: 'demo', parent: 'web', backends: [{ service: 'web-v1', weight: 3 }, { service: 'web-v2', weight: 1 }] }]);
});

t.test('the policies view, with the control plane\'s problems by severity', async (t) => {
  const rows = labPolicies(state, [{ severity: 'error', text: 'AuthorizationPolicy demo/deny: spec.rules[0]: empty rule' }, { severity: 'info', text: 'HTTPRoute demo/canary: a note' }]);
  t.same(rows.map((r) => [r.kind, r.name, r.summary, r.selects, r.status]), [
    ['AuthorizationPolicy', 'deny', 'action DENY, 1 rule(s)', 'app=web', 'rejected'],
    ['HTTPRoute', 'canary', 'web-v1 3 / web-v2 1; web-v1', 'Service web', 'accepted with notes'],
    ['PeerAuthentication', 'strict', 'mode STRICT', 'namespace demo', 'accepted (no problem at /debug/status)'],
  ]);
  t.match(rows[0]!.problems, ['error: AuthorizationPolicy demo/deny: spec.rules[0]: empty rule']);
});
