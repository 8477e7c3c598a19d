import t, { type Test } from 'tap';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDesiredState } from '../../../cni-plugin/agent/desired-file.js';
import type { DesiredState } from '../../../cni-plugin/agent/desired-state.js';
import { AgentApiError, Reconciler } from '../../../cni-plugin/agent/reconciler.js';
import { POD_PROGRAMS, STRICT_PROGRAMS } from '../../../cni-plugin/agent/redirector.js';
import { StateFileError, StateStore } from '../../../cni-plugin/agent/store.js';
import type { PodRequest } from '../../../cni-plugin/api.js';
import { FakeRedirector, reconcilerInputs } from '../fakes.js';

const desired = (yaml: string): DesiredState => parseDesiredState(yaml, 'test.yaml');
const AMBIENT_APPS = `
namespaces:
  - {name: apps, labels: {istio.io/dataplane-mode: ambient}}
  - {name: legacy}
  - {name: istio-system}
pods:
  - {namespace: apps, name: opted-out, labels: {istio.io/dataplane-mode: none}}
`;

interface Fixture {
  root: string;
  kernel: FakeRedirector;
  store: StateStore;
  zt: string;
  make(opts?: { kernel?: FakeRedirector }): Reconciler;
  /** A cgroup for pod `name` (named as the template resolves it). */
  cgroup(name: string): Promise<string>;
  req(ns: string, name: string, extra?: Partial<PodRequest>): PodRequest;
}

async function fixture(t: Test): Promise<Fixture> {
  const root = t.testdir();
  const zt = join(root, 'ztunnel');
  await mkdir(zt);
  const kernel = new FakeRedirector();
  const store = new StateStore(join(root, 'state', 'agent.json'));
  return {
    root,
    kernel,
    store,
    zt,
    make: (opts = {}) =>
      new Reconciler(reconcilerInputs(root, { redirector: opts.kernel ?? kernel, store })),
    async cgroup(name) {
      const p = join(root, name);
      await mkdir(p, { recursive: true });
      return p;
    },
    req: (ns, name, extra = {}) => ({ containerId: `c-${ns}-${name}`, podNamespace: ns, podName: name, podUid: `uid-${name}`, netns: `/var/run/netns/${name}`, ips: ['10.1.0.5'], ...extra }),
  };
}

/** A started reconciler: restored, loaded, desired state set, one resync done. */
async function started(f: Fixture, state: DesiredState, opts: { kernel?: FakeRedirector } = {}): Promise<Reconciler> {
  const r = f.make(opts);
  await r.restore();
  await r.load();
  r.setDesired(state);
  await r.requestResync();
  return r;
}

const programs = (k: FakeRedirector, cg: string) => [...(k.attached.get(cg) ?? [])].sort();
const REDIRECT = [...POD_PROGRAMS].sort();
const REDIRECT_STRICT = [...POD_PROGRAMS, ...STRICT_PROGRAMS].sort();

t.test('ADD enrols a pod of an ambient namespace and records it', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  t.ok(r.ready);
  t.same(programs(f.kernel, f.zt).length, 3, 'the ztunnel hooks went on at the first resync');
  const cg = await f.cgroup('pod-apps-web');
  const res = await r.add(f.req('apps', 'web'));
  t.match(res, { mode: 'enrolled', reason: 'namespace apps is ambient', pod: { cgroup: cg, mode: 'enrolled', origin: 'cni', ips: ['10.1.0.5'], containerId: 'c-apps-web' } });
  t.same(programs(f.kernel, cg), REDIRECT);
  const saved = JSON.parse(await readFile(f.store.path, 'utf8')) as { pods: Array<{ name: string; cgroup: string; enrolledAt?: string }> };
  t.match(saved.pods, [{ name: 'web', cgroup: cg, enrolledAt: String }], 'recorded in the state file');
});

t.test('ADD leaves alone pods that are not ambient, opted out or exempt', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  await f.cgroup('pod-legacy-old');
  await f.cgroup('pod-apps-opted-out');
  await f.cgroup('pod-istio-system-ztunnel-x');
  t.match(await r.add(f.req('legacy', 'old')), { mode: 'not-ambient', reason: /not labelled istio.io\/dataplane-mode=ambient/ });
  t.match(await r.add(f.req('apps', 'opted-out')), { mode: 'not-ambient', reason: /opted out/ });
  t.match(await r.add(f.req('istio-system', 'ztunnel-x')), { mode: 'exempt' });
  t.match(await r.add(f.req('nowhere', 'x', { cgroup: 'pod-legacy-old' })), { mode: 'not-ambient', reason: /not in the desired state/ });
  t.match(await r.add(f.req('apps', 'zt-pod', { cgroup: f.zt })), { mode: 'exempt', reason: /mesh's own processes/ }, "a pod whose cgroup is ztunnel's");
  t.same(f.kernel.callsOf('attachPod'), []);
});

t.test('ADD fails closed: a missing cgroup, a failed attach, or an agent that is not ready', async (t) => {
  const f = await fixture(t);
  const early = f.make();
  await early.restore();
  await t.rejects(early.add(f.req('apps', 'web')), { agentCode: 'ERR_AGENT_NOT_READY', status: 503, message: /not ready/ });

  const r = await started(f, desired(AMBIENT_APPS));
  await t.rejects(r.add(f.req('apps', 'web')), { agentCode: 'ERR_POD_CGROUP_NOT_FOUND', status: 422, message: /must be enrolled .* does not exist/ });
  t.match(r.state().pods.find((p) => p.name === 'web'), { mode: 'pending', error: /does not exist/ }, '/state says why');
  await t.rejects(r.add(f.req('apps', 'web', { cgroup: '../../etc' })), { agentCode: 'ERR_POD_CGROUP_NOT_FOUND', message: /not below the cgroup v2 root/ });

  const cg = await f.cgroup('pod-apps-web');
  f.kernel.failNext.attachPod = new Error('bpftool exploded');
  await t.rejects(r.add(f.req('apps', 'web')), { agentCode: 'ERR_ENROLMENT_FAILED', status: 500, message: /bpftool exploded/ });
  t.same(programs(f.kernel, cg), [], 'nothing left half-attached');
  t.match(await r.add(f.req('apps', 'web')), { mode: 'enrolled' }, 'the retried ADD succeeds');
});

t.test('labelling a namespace enrols its running pods; removing the label un-enrols them', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  const cg = await f.cgroup('pod-legacy-old');
  t.match(await r.add(f.req('legacy', 'old')), { mode: 'not-ambient' });
  r.setDesired(desired(AMBIENT_APPS.replace('{name: legacy}', '{name: legacy, labels: {istio.io/dataplane-mode: ambient}}')));
  await r.requestResync();
  t.same(programs(f.kernel, cg), REDIRECT, 'enrolled with no new CNI call');
  t.match(r.state().pods.find((p) => p.name === 'old'), { mode: 'enrolled', attached: { redirect: true } });
  r.setDesired(desired(AMBIENT_APPS));
  await r.requestResync();
  t.same(programs(f.kernel, cg), []);
  t.match(r.state().pods.find((p) => p.name === 'old'), { mode: 'not-ambient', attached: { redirect: false } });
});

t.test('pods known only from the desired state are enrolled through the cgroup resolver', async (t) => {
  const f = await fixture(t);
  const cg = await f.cgroup('pod-apps-api');
  const explicit = await f.cgroup('somewhere/else');
  const r = await started(
    f,
    desired(`${AMBIENT_APPS}
  - {namespace: apps, name: api, uid: u1, labels: {app: api}}
  - {namespace: apps, name: worker, cgroup: somewhere/else}
  - {namespace: apps, name: elsewhere, node: node-b}
  - {namespace: apps, name: ghost}
`),
  );
  t.same(programs(f.kernel, cg), REDIRECT);
  t.same(programs(f.kernel, explicit), REDIRECT, "the desired state's own cgroup");
  const st = r.state();
  t.match(st.pods.find((p) => p.name === 'api'), { origin: 'desired', mode: 'enrolled', uid: 'u1', labels: { app: 'api' } });
  t.notOk(st.pods.find((p) => p.name === 'elsewhere'), 'pods of other nodes are not ours');
  t.match(st.pods.find((p) => p.name === 'ghost'), { mode: 'pending', error: /does not exist/ });
  t.match(st.lastResync, { actions: 3 }, 'the ztunnel hooks and two pods');
});

t.test('STRICT peer authentication turns the ingress filter on and off', async (t) => {
  const f = await fixture(t);
  const cg = await f.cgroup('pod-apps-web');
  const strictNs = `${AMBIENT_APPS}
peerAuthentications:
  - {name: strict, namespace: apps, spec: {mtls: {mode: STRICT}}}
`;
  const r = await started(f, desired(strictNs));
  t.match(await r.add(f.req('apps', 'web')), { mode: 'enrolled', reason: /STRICT/ });
  t.same(programs(f.kernel, cg), REDIRECT_STRICT);
  r.setDesired(desired(AMBIENT_APPS));
  await r.requestResync();
  t.same(programs(f.kernel, cg), REDIRECT, 'PERMISSIVE: filter off, redirect kept');
  t.same(f.kernel.callsOf('setStrict'), [`setStrict ${cg} false`], 'through setStrict: the redirect programs are not touched');

  r.setDesired(
    desired(`${strictNs}  - name: web-metrics
    namespace: apps
    spec: {selector: {matchLabels: {app: web}}, mtls: {mode: UNSET}, portLevelMtls: {"9090": {mode: PERMISSIVE}}}
`.replace('pods:\n', 'pods:\n  - {namespace: apps, name: web, labels: {app: web}}\n')),
  );
  await r.requestResync();
  t.same(programs(f.kernel, cg), REDIRECT, 'a port-level exception keeps the per-pod filter off');
  t.match(r.state().pods.find((p) => p.name === 'web'), { strict: false, reason: /port-level exceptions \(9090\)/ });
});

t.test('a restarted agent changes nothing for enrolled pods, and reconciles what changed meanwhile', async (t) => {
  const f = await fixture(t);
  const r1 = await started(f, desired(AMBIENT_APPS));
  const web = await f.cgroup('pod-apps-web');
  const gone = await f.cgroup('pod-apps-gone');
  await r1.add(f.req('apps', 'web'));
  await r1.add(f.req('apps', 'gone'));
  // A pod known only from the desired state, enrolled, then dropped from it while the agent was
  // down: its cgroup is still there and carries our programs, which no pod wants now.
  const stray = await f.cgroup('pod-apps-stray');
  r1.setDesired(desired(`${AMBIENT_APPS}  - {namespace: apps, name: stray}\n`));
  await r1.requestResync();
  t.same(programs(f.kernel, stray), REDIRECT);
  const unknown = await f.cgroup('someone-else');
  f.kernel.attached.set(unknown, new Set(POD_PROGRAMS)); // never attached by the agent: not looked at
  await rmdir(gone); // its sandbox went away while the agent was down: a missed DEL
  f.kernel.attached.delete(gone);

  f.kernel.calls.length = 0;
  const r2 = await started(f, desired(AMBIENT_APPS));
  t.same(f.kernel.callsOf('attachPod'), [], 'no attach: the kernel already has them');
  t.same(f.kernel.callsOf('detachPod'), [`detachPod ${stray}`], 'only the orphan is detached, found through the state file');
  t.same(f.kernel.callsOf('attachmentsOf'), ['attachmentsOf 4'], 'the kernel is asked about ztunnel, web, gone (from the records) and the stray (tracked), not the whole tree');
  t.same(programs(f.kernel, web), REDIRECT);
  t.match(r2.state().pods.filter((p) => p.origin === 'cni'), [{ name: 'web', origin: 'cni', mode: 'enrolled', containerId: 'c-apps-web' }], 'the missed DEL is forgotten');

  // Someone removed one program behind the agent's back: the resync repairs it.
  f.kernel.attached.get(web)!.delete(POD_PROGRAMS[0]!);
  await r2.requestResync();
  t.same(programs(f.kernel, web), REDIRECT);
});

t.test('a state file the agent cannot read stops it rather than detaching live pods', async (t) => {
  const f = await fixture(t);
  await mkdir(join(f.root, 'state'));
  await writeFile(f.store.path, '{"version": 1, "pods": [');
  await t.rejects(f.make().restore(), StateFileError);
  await writeFile(f.store.path, '{"version": 7, "pods": []}');
  await t.rejects(f.make().restore(), { message: /not a version 1 state file/ });
});

t.test('DEL forgets the pod and detaches; an unknown or older sandbox is a no-op', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  const cg = await f.cgroup('pod-apps-web');
  await r.add(f.req('apps', 'web', { containerId: 'sandbox-1' }));
  await r.add(f.req('apps', 'web', { containerId: 'sandbox-2' })); // kubelet re-created the sandbox
  t.same(await r.del(f.req('apps', 'web', { containerId: 'sandbox-1' })), { removed: false }, 'the old sandbox');
  t.same(programs(f.kernel, cg), REDIRECT, 'the new sandbox keeps its programs');
  t.same(await r.del(f.req('apps', 'web', { containerId: 'sandbox-2' })), { removed: true });
  t.same(programs(f.kernel, cg), []);
  t.same(r.state().pods.filter((p) => p.origin === 'cni'), []);
  t.same(await r.del({ containerId: 'never-seen' }), { removed: false });
  await rmdir(cg);
  t.same(await r.del({ containerId: 'sandbox-2' }), { removed: false }, 'again, with the cgroup gone');
});

t.test('CHECK compares the kernel with what should be', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  const cg = await f.cgroup('pod-apps-web');
  await f.cgroup('pod-legacy-old');
  await r.add(f.req('apps', 'web'));
  await r.add(f.req('legacy', 'old'));
  t.match(await r.check(f.req('apps', 'web')), { mode: 'enrolled' });
  t.match(await r.check(f.req('legacy', 'old')), { mode: 'not-ambient' });
  t.match(await r.check(f.req('legacy', 'unknown')), { mode: 'not-ambient' }, 'an unknown pod that needs nothing is fine');
  await t.rejects(r.check(f.req('apps', 'unknown')), { agentCode: 'ERR_NOT_ENROLLED', status: 409, message: /no record of container/ });
  f.kernel.attached.delete(cg);
  const err = await r.check(f.req('apps', 'web')).catch((e: unknown) => e);
  t.ok(err instanceof AgentApiError && /redirect programs are not attached/.test(err.message), 'programs gone: CHECK fails');
});

t.test('the ztunnel hooks go on as soon as its cgroup exists', async (t) => {
  const f = await fixture(t);
  await rmdir(f.zt);
  const r = await started(f, desired(AMBIENT_APPS));
  t.match(r.state().ztunnel, { attached: false, error: /does not exist/ });
  t.ok(r.ready, 'pods can still be enrolled; their connections wait for ztunnel');
  await mkdir(f.zt);
  await r.requestResync();
  t.match(r.state().ztunnel, { attached: true });
  t.notOk(r.state().ztunnel.error);
});

t.test('a failing kernel read is reported and retried at the next resync', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  f.kernel.failNext.status = new Error('bpftool: no such thing');
  await r.requestResync();
  t.match(r.state().lastResync, { errors: [/reading the kernel's attachments failed: bpftool: no such thing/] });
  await r.requestResync();
  t.same(r.state().lastResync?.errors, []);
});

t.test('a set of ztunnel cgroups: hooks on every one, off the ones that no longer host a ztunnel', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  t.ok(f.kernel.attached.get(f.zt)?.has('amb_getsock4'), 'the configured one at start');
  const next = await f.cgroup('ztunnel-next');
  await r.setZtunnelCgroups([f.zt, next]);
  t.ok(f.kernel.attached.get(next)?.has('amb_getsock4'), 'a rolling update: the new ztunnel is hooked too');
  t.ok(f.kernel.attached.get(f.zt)?.has('amb_getsock4'), 'and the old one keeps its hooks while it listens');
  t.same(r.state().ztunnel.cgroups.map((c) => [c.cgroup, c.attached]), [[f.zt, true], [next, true]]);
  t.equal(r.state().ztunnel.attached, true);
  await r.setZtunnelCgroups([next]);
  t.notOk(f.kernel.attached.get(f.zt)?.has('amb_getsock4'), 'the old one stopped listening: detached');
  t.ok(f.kernel.attached.get(next)?.has('amb_getsock4'));
  // The pod rules protect whichever cgroups host ztunnel now.
  const add = await r.add(f.req('apps', 'zt-inside', { cgroup: next }));
  t.equal(add.mode, 'exempt');
  // A restarted agent learns the old hooks from the state file and the kernel; a resync with
  // another set removes them.
  const r2 = f.make();
  await r2.restore();
  await r2.load();
  r2.setDesired(desired(AMBIENT_APPS));
  await r2.requestResync();
  t.notOk(f.kernel.attached.get(next)?.has('amb_getsock4'), 'the fixture\'s set ([zt]) is what a restarted agent was given');
  t.ok(f.kernel.attached.get(f.zt)?.has('amb_getsock4'));
  await r2.setZtunnelCgroups([]);
  t.notOk(f.kernel.attached.get(f.zt)?.has('amb_getsock4'), 'no ztunnel listening: no hooks anywhere');
  t.match(r2.state().ztunnel, { attached: false, error: /no ztunnel found/, cgroups: [] });
});

t.test('ztunnel in the cgroup root is refused: its hooks would cover every process', async (t) => {
  const f = await fixture(t);
  const r = await started(f, desired(AMBIENT_APPS));
  await r.setZtunnelCgroups([f.root]);
  t.notOk(f.kernel.attached.get(f.root)?.has('amb_getsock4'));
  t.match(r.state().ztunnel, { attached: false, error: /refusing to attach its hooks there/ });
});
