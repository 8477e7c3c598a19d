import t from 'tap';
import { decide, type DecideContext } from '../../../cni-plugin/agent/decide.js';
import { parseDesiredState } from '../../../cni-plugin/agent/desired-file.js';

function ctx(yaml: string, extra: Partial<DecideContext> = {}): DecideContext {
  const s = parseDesiredState(yaml, 'test');
  return { namespaces: s.namespaces, peerAuthentications: s.peerAuthentications, exemptNamespaces: ['istio-system'], protectedCgroups: ['/cg/zt'], rootNamespace: 'istio-system', ...extra };
}

const NS = `namespaces:
  - {name: apps, labels: {istio.io/dataplane-mode: ambient}}
  - {name: legacy, labels: {istio.io/dataplane-mode: none}}
  - {name: istio-system, labels: {istio.io/dataplane-mode: ambient}}
`;

t.test("Istio's enrolment rules", async (t) => {
  const c = ctx(NS);
  t.match(decide({ namespace: 'apps', name: 'a', labels: {} }, c), { mode: 'enrolled', strict: false });
  t.match(decide({ namespace: 'apps', name: 'a', labels: { 'istio.io/dataplane-mode': 'none' } }, c), { mode: 'not-ambient', reason: /opted out/ });
  t.match(decide({ namespace: 'legacy', name: 'a', labels: {} }, c), { mode: 'not-ambient', reason: /not labelled/ });
  t.match(decide({ namespace: 'other', name: 'a', labels: {} }, c), { mode: 'not-ambient', reason: /not in the desired state/ });
  t.match(decide({ namespace: 'istio-system', name: 'ztunnel', labels: {} }, c), { mode: 'exempt' }, 'exempt even when labelled');
  t.match(decide({ namespace: 'apps', name: 'zt', labels: {}, cgroup: '/cg' }, c), { mode: 'exempt' }, 'a cgroup that contains ztunnel');
  t.match(decide({ namespace: 'apps', name: 'zt', labels: {}, cgroup: '/cg/zt/container' }, c), { mode: 'exempt' }, "a cgroup inside ztunnel's");
  t.match(decide({ namespace: 'apps', name: 'x', labels: {}, cgroup: '/cg/ztx' }, c), { mode: 'enrolled' }, 'a sibling with a similar name is not ztunnel');
});

t.test('STRICT: mesh, namespace and workload policies with port-level exceptions', async (t) => {
  const pa = (specs: string) => ctx(`${NS}peerAuthentications:\n${specs}`);
  const web = { namespace: 'apps', name: 'web', labels: { app: 'web' } };
  t.match(decide(web, pa('  - {name: m, namespace: istio-system, spec: {mtls: {mode: STRICT}}}\n')), { strict: true }, 'mesh-wide');
  t.match(decide(web, pa('  - {name: m, namespace: istio-system, spec: {mtls: {mode: STRICT}}}\n  - {name: n, namespace: apps, spec: {mtls: {mode: PERMISSIVE}}}\n')), { strict: false }, 'the namespace overrides the mesh');
  t.match(decide(web, pa('  - {name: w, namespace: apps, spec: {selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}}\n')), { strict: true }, 'workload selector');
  t.match(decide({ ...web, labels: { app: 'other' } }, pa('  - {name: w, namespace: apps, spec: {selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}}\n')), { strict: false });
  t.match(
    decide(web, pa('  - {name: w, namespace: apps, spec: {selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {"8443": {mode: STRICT}}}}\n')),
    { strict: false, reason: /port-level STRICT \(8443\) is not enforced in the kernel/ },
  );
  t.match(decide({ namespace: 'legacy', name: 'x', labels: {} }, pa('  - {name: m, namespace: istio-system, spec: {mtls: {mode: STRICT}}}\n')), { mode: 'not-ambient', strict: false }, 'only enrolled pods get the filter');
});

t.test('a waypoint pod is never enrolled, whatever its namespace or the control plane says', async (t) => {
  const c = ctx(NS);
  const waypoint = { 'gateway.istio.io/managed': 'istio.io-mesh-controller', 'gateway.networking.k8s.io/gateway-name': 'wp' };
  t.match(decide({ namespace: 'apps', name: 'wp-0', labels: waypoint }, c), { mode: 'exempt', reason: /a waypoint \(gateway.istio.io\/managed=istio.io-mesh-controller\) is never enrolled/ });
  t.match(decide({ namespace: 'apps', name: 'wp-0', labels: waypoint, ambient: true }, c), { mode: 'exempt' }, "over the control plane's HBONE verdict");
  t.match(decide({ namespace: 'apps', name: 'gw', labels: { 'gateway.istio.io/managed': 'someone-else' } }, c), { mode: 'enrolled' }, 'another controller\'s gateway is an ordinary pod');
});
