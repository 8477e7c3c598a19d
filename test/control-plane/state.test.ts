import t from 'tap';
import { EncodedState } from '../../control-plane/discovery/state.js';
import type { AuthorizationPolicy, MeshConfig, Workload } from '../../core/model/types.js';

const w = (name: string, node: string, labels: Record<string, string> = { app: name }, ns = 'apps'): Workload => ({
  uid: `${ns}/${name}`,
  name,
  namespace: ns,
  serviceAccount: name,
  trustDomain: 'cluster.local',
  node,
  ips: [`10.0.0.${name.length}${node.length}`],
  protocol: 'HBONE',
  labels,
  healthy: true,
});
const pol = (name: string, scope: AuthorizationPolicy['scope'], selector: Record<string, string> = {}, ns = 'apps'): AuthorizationPolicy => ({ name, namespace: ns, scope, selector, action: 'ALLOW', rules: [] });
const cfg = (workloads: Workload[], authorizationPolicies: AuthorizationPolicy[] = []): MeshConfig => ({
  nodes: [{ name: 'a', ztunnelAddress: '10.9.0.1', hbonePort: 15008 }],
  workloads,
  services: [],
  authorizationPolicies,
  peerAuthentications: [],
});

t.test('versions are content digests: order does not matter, going back gives the old version', async (t) => {
  const s = new EncodedState();
  const d1 = s.update(cfg([w('x', 'a'), w('y', 'b')]));
  t.ok(d1);
  t.equal(d1!.from, '0'.repeat(32));
  const v1 = s.version;
  t.equal(s.update(cfg([w('y', 'b'), w('x', 'a')])), undefined, 'the same resources in another order: no change');
  const d2 = s.update(cfg([w('x', 'a', { app: 'x', v: '2' }), w('y', 'b')]));
  t.same([...d2!.changed.get('workloads')!], ['apps/x'], 'only the changed key');
  t.not(s.version, v1);
  s.update(cfg([w('x', 'a'), w('y', 'b')]));
  t.equal(s.version, v1, 'back to the same content: back to the same version');
  t.equal(s.seq, 3, 'seq counts publications');
  const other = new EncodedState();
  other.update(cfg([w('y', 'b'), w('x', 'a')]));
  t.equal(other.version, v1, 'another process with the same content agrees (what lets proxies resume after a restart)');
  const root = new EncodedState();
  root.update({ ...cfg([w('x', 'a'), w('y', 'b')]), rootNamespace: 'mesh-root' });
  t.not(root.version, v1, 'the root namespace is part of the version');
});

t.test('policies per node: only those that select a workload there', async (t) => {
  const s = new EncodedState();
  s.update(
    cfg(
      [w('x', 'a'), w('y', 'b'), w('z', 'b', { app: 'z' }, 'other')],
      [pol('mesh', 'mesh', {}, 'istio-system'), pol('ns-apps', 'namespace'), pol('sel-x', 'workload', { app: 'x' }), pol('root-z', 'workload', { app: 'z' }, 'istio-system'), pol('none', 'workload', { app: 'q' })],
    ),
  );
  t.same([...s.policiesForNode('a')].sort(), ['apps/ns-apps', 'apps/sel-x', 'istio-system/mesh']);
  t.same([...s.policiesForNode('b')].sort(), ['apps/ns-apps', 'istio-system/mesh', 'istio-system/root-z']);
  t.same([...s.policiesForNode('nowhere')], []);
  // Moving x to b moves its policy.
  s.update(cfg([w('x', 'b'), w('y', 'b'), w('z', 'b', { app: 'z' }, 'other')], s.config!.authorizationPolicies as AuthorizationPolicy[]));
  t.notOk(s.policiesForNode('a').has('apps/sel-x'));
  t.ok(s.policiesForNode('b').has('apps/sel-x'));
  t.equal(s.mesh.workloadsOnNode('b').length, 3, 'the full index is built on demand');
});
