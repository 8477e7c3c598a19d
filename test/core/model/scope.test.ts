import t from 'tap';
import { labelsMatch, policyAppliesTo, DEFAULT_ROOT_NAMESPACE } from '../../../core/model/scope.js';
import type { Workload } from '../../../core/model/types.js';

const wl = (namespace: string, labels: Record<string, string>): Workload => ({
  uid: `${namespace}/w`, name: 'w', namespace, serviceAccount: 'default', trustDomain: 'cluster.local',
  node: 'n', ips: ['10.0.0.1'], protocol: 'HBONE', labels, healthy: true,
});

t.test('labelsMatch is a subset check', async (t) => {
  t.ok(labelsMatch({}, { a: '1' }));
  t.ok(labelsMatch({ a: '1' }, { a: '1', b: '2' }));
  t.notOk(labelsMatch({ a: '1' }, { a: '2' }));
  t.notOk(labelsMatch({ a: '1' }, {}));
  t.notOk(labelsMatch({ toString: 'x' }, {}), 'inherited properties are not labels');
});

t.test('policy scopes follow Istio', async (t) => {
  const echo = wl('default', { app: 'echo' });
  const other = wl('other', { app: 'echo' });
  t.equal(DEFAULT_ROOT_NAMESPACE, 'istio-system');
  t.ok(policyAppliesTo({ namespace: 'istio-system', scope: 'mesh', selector: {} }, other));
  t.ok(policyAppliesTo({ namespace: 'default', scope: 'namespace', selector: {} }, echo));
  t.notOk(policyAppliesTo({ namespace: 'default', scope: 'namespace', selector: {} }, other));
  t.ok(policyAppliesTo({ namespace: 'default', scope: 'workload', selector: { app: 'echo' } }, echo));
  t.notOk(policyAppliesTo({ namespace: 'default', scope: 'workload', selector: { app: 'echo' } }, other), 'selector stays in its namespace');
  t.notOk(policyAppliesTo({ namespace: 'default', scope: 'workload', selector: { app: 'x' } }, echo));
  t.ok(policyAppliesTo({ namespace: 'istio-system', scope: 'workload', selector: { app: 'echo' } }, other), 'root-namespace selector spans namespaces');
  t.notOk(policyAppliesTo({ namespace: 'istio-system', scope: 'workload', selector: { app: 'echo' } }, other, 'mesh-root'), 'only the configured root');
  t.ok(policyAppliesTo({ namespace: 'mesh-root', scope: 'workload', selector: { app: 'echo' } }, other, 'mesh-root'));
});
