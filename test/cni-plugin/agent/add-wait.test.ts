// A CNI ADD that reaches the agent before the desired state lists its pod (a namespace labelled a
// moment ago, a waypoint): the ADD waits for the desired state, bounded, and decides from it.
// The kernel is FakeRedirector (fakes.ts), cgroups are directories of a test dir.
import t, { type Test } from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDesiredState } from '../../../cni-plugin/agent/desired-file.js';
import type { DesiredState } from '../../../cni-plugin/agent/desired-state.js';
import { Reconciler } from '../../../cni-plugin/agent/reconciler.js';
import { StateStore } from '../../../cni-plugin/agent/store.js';
import type { PodRequest } from '../../../cni-plugin/api.js';
import { FakeRedirector, reconcilerInputs } from '../fakes.js';

const desired = (yaml: string): DesiredState => parseDesiredState(yaml, 'test.yaml');
const BEFORE = `
namespaces:
  - {name: apps, labels: {istio.io/dataplane-mode: ambient}}
  - {name: fresh}
`;
/** The namespace `fresh` was just labelled ambient, and the new pods are listed. */
const AFTER = `
namespaces:
  - {name: apps, labels: {istio.io/dataplane-mode: ambient}}
  - {name: fresh, labels: {istio.io/dataplane-mode: ambient}}
pods:
  - {namespace: fresh, name: web, uid: uid-web, labels: {app: web}}
  - {namespace: apps, name: wp-0, uid: uid-wp-0, labels: {gateway.istio.io/managed: istio.io-mesh-controller, gateway.networking.k8s.io/gateway-name: wp}}
`;

async function started(t: Test, addWaitMs: number, state = desired(BEFORE)) {
  const root = t.testdir();
  await mkdir(join(root, 'ztunnel'));
  const kernel = new FakeRedirector();
  const r = new Reconciler(reconcilerInputs(root, { redirector: kernel, store: new StateStore(join(root, 'state.json')), addWaitMs }));
  t.teardown(() => r.close());
  await r.restore();
  await r.load();
  r.setDesired(state);
  await r.requestResync();
  const pod = async (ns: string, name: string) => {
    const cg = join(root, `pod-${ns}-${name}`);
    await mkdir(cg, { recursive: true });
    return cg;
  };
  const req = (ns: string, name: string): PodRequest => ({ containerId: `c-${ns}-${name}`, podNamespace: ns, podName: name, podUid: `uid-${name}`, ips: ['10.1.0.7'] });
  const attached = (cg: string) => [...(kernel.attached.get(cg) ?? [])];
  return { r, kernel, pod, req, attached };
}

// A bound no test reaches: the tests that must not time out would hang (and fail) rather than pass.
const LONG = 600_000;

t.test('ADD first, desired state later: decided from the later state (a namespace labelled just before)', async (t) => {
  const { r, pod, req, attached } = await started(t, LONG);
  const cg = await pod('fresh', 'web');
  const adding = r.add(req('fresh', 'web'));
  t.same(r.state().desired.waitingAdds, ['fresh/web'], '/state lists the waiting ADD');
  t.equal(r.state().desired.addWaitSeconds, LONG / 1000);
  r.setDesired(desired(BEFORE.replace('- {name: fresh}', '- {name: fresh}\n  - {name: other}')));
  t.same(r.state().desired.waitingAdds, ['fresh/web'], 'an update that does not list the pod does not end the wait');
  r.setDesired(desired(AFTER));
  const res = await adding;
  t.match(res, { mode: 'enrolled', reason: 'namespace fresh is ambient', pod: { addWait: { outcome: 'listed' }, labels: { app: 'web' } } });
  t.notMatch(res.reason, /decided without/);
  t.ok(attached(cg).length > 0, 'attached at ADD, not at a later resync');
  t.same(r.state().desired.waitingAdds, []);
});

t.test('a waypoint pod is never enrolled, even when its ADD comes before the desired state lists it', async (t) => {
  const { r, pod, req, attached, kernel } = await started(t, LONG);
  const cg = await pod('apps', 'wp-0');
  const adding = r.add(req('apps', 'wp-0'));
  r.setDesired(desired(AFTER));
  t.match(await adding, { mode: 'exempt', reason: /a waypoint .* is never enrolled/, pod: { addWait: { outcome: 'listed' } } });
  await r.requestResync();
  t.same(attached(cg), [], 'not at ADD, nor at the resync after');
  t.same(kernel.callsOf('attachPod'), []);
});

t.test('the bound passes: decided from what is known, and the reason says so', async (t) => {
  // A short bound is the behaviour under test, not a timing assertion.
  const { r, pod, req } = await started(t, 20);
  await pod('apps', 'late');
  const res = await r.add(req('apps', 'late'));
  t.match(res, { mode: 'enrolled', reason: /^namespace apps is ambient; decided without the desired state listing the pod: it did not within 0.02s of CNI ADD \(ADD_WAIT_SECONDS\)$/ });
  t.match(r.state().pods.find((p) => p.name === 'late'), { addWait: { outcome: 'timed-out' }, reason: /decided without the desired state listing the pod/ }, '/state says so');
  await pod('fresh', 'quiet');
  t.match(await r.add(req('fresh', 'quiet')), { mode: 'not-ambient', reason: /not labelled .*; decided without the desired state listing the pod/ });
});

t.test('no wait when there is nothing to wait for', async (t) => {
  const { r, pod, req } = await started(t, LONG, desired(AFTER));
  await pod('fresh', 'web');
  t.match(await r.add(req('fresh', 'web')), { mode: 'enrolled', pod: { labels: { app: 'web' } } }, 'listed already');
  t.notOk(r.state().pods.find((p) => p.name === 'web')?.addWait);
  await pod('istio-system', 'ztunnel-x');
  t.match(await r.add(req('istio-system', 'ztunnel-x')), { mode: 'exempt' }, 'an exempt namespace: decided at once');
  const other = await started(t, 0);
  await other.pod('apps', 'web');
  t.match(await other.r.add(other.req('apps', 'web')), { mode: 'enrolled', reason: 'namespace apps is ambient' }, 'ADD_WAIT_SECONDS=0: decided at once');
});

t.test('a listed pod of another uid (an older pod of that name) does not end the wait', async (t) => {
  const { r, pod, req } = await started(t, LONG);
  await pod('fresh', 'web');
  const adding = r.add({ ...req('fresh', 'web'), podUid: 'uid-new' });
  r.setDesired(desired(AFTER));
  t.same(r.state().desired.waitingAdds, ['fresh/web']);
  r.setDesired(desired(AFTER.replace('uid: uid-web', 'uid: uid-new')));
  t.match(await adding, { mode: 'enrolled', pod: { addWait: { outcome: 'listed' } } });
});

t.test('a DEL of the sandbox, or the agent stopping, ends a waiting ADD with a retryable error', async (t) => {
  const { r, pod, req } = await started(t, LONG);
  await pod('fresh', 'web');
  const adding = r.add(req('fresh', 'web'));
  t.same(await r.del(req('fresh', 'web')), { removed: false });
  await t.rejects(adding, { agentCode: 'ERR_AGENT_NOT_READY', status: 503, message: /was deleted \(CNI DEL\) while its ADD waited/ });
  t.equal(r.state().pods.find((p) => p.name === 'web'), undefined, 'no record of a deleted sandbox');
  const again = r.add(req('fresh', 'web'));
  r.close();
  await t.rejects(again, { agentCode: 'ERR_AGENT_NOT_READY', message: /stopping/ });
  t.same(r.state().desired.waitingAdds, []);
});
