// A hybrid host (cgroup v1 controllers, cgroup2 beside them): at CNI ADD the pod's cgroup exists
// in the v1 hierarchies only. The agent makes the pod-level cgroup2 directory, attaches there, and
// removes what it made once empty after the pod goes. First with test directories standing in for
// the hierarchies (FakeRedirector, fakes.ts, as the kernel); then, as root on a hybrid machine,
// with the real hierarchies and the real eBPF loader under a unique prefix.
import t, { type Test } from 'tap';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { silentLogger } from '../../../core/telemetry/log.js';
import { cgroup2Root } from '../../../bpf/kernel.js';
import { BpfLoader } from '../../../bpf/loader.js';
import { Bpftool } from '../../../bpf/bpftool.js';
import { execFileRunner } from '../../../bpf/command.js';
import { CgroupfsResolver, cgroupV1Roots, isDirectory } from '../../../cni-plugin/agent/cgroup.js';
import { parseDesiredState } from '../../../cni-plugin/agent/desired-file.js';
import { Reconciler } from '../../../cni-plugin/agent/reconciler.js';
import { POD_PROGRAMS, type Redirector } from '../../../cni-plugin/agent/redirector.js';
import { StateStore } from '../../../cni-plugin/agent/store.js';
import type { PodRequest } from '../../../cni-plugin/api.js';
import { FakeRedirector } from '../fakes.js';
import { Sandbox, bpfSkipReason } from '../../bpf/sandbox.js';

const DESIRED = parseDesiredState(
  `namespaces:
  - {name: apps, labels: {istio.io/dataplane-mode: ambient}}
  - {name: legacy}
`,
  'test.yaml',
);

interface Layout {
  readonly v2: string;
  readonly v1Roots: readonly string[];
  readonly kubeletRoot: string;
  readonly zt: string;
  readonly stateFile: string;
}

async function reconciler(t: Test, l: Layout, redirector: Redirector): Promise<Reconciler> {
  const r = new Reconciler({
    nodeName: 'node-a',
    redirector,
    store: new StateStore(l.stateFile),
    resolver: new CgroupfsResolver(l.v2, { kubeletRoot: l.kubeletRoot, v1Roots: l.v1Roots }),
    cgroupRoot: l.v2,
    ztunnelCgroups: [l.zt],
    ztunnelSource: l.zt,
    protectedCgroups: [],
    exemptNamespaces: ['istio-system'],
    rootNamespace: 'istio-system',
    redirectConfig: { ztunnelIp: '10.0.0.1', outboundPort: 15001, nodeIps: ['10.0.0.1'], excludeCidrs: [], excludePorts: [] },
    pinDir: '/unused',
    desiredSource: 'test',
    cgroupLayout: { kubeletRoot: { path: l.kubeletRoot, source: 'test' }, v1Roots: l.v1Roots },
    logger: silentLogger,
  });
  t.teardown(() => r.close());
  await r.restore();
  await r.load();
  r.setDesired(DESIRED);
  await r.requestResync();
  return r;
}

const req = (ns: string, name: string, uid: string): PodRequest => ({ containerId: `c-${name}`, podNamespace: ns, podName: name, podUid: uid, ips: ['10.1.0.9'] });

t.test('ADD makes the pod-level cgroup2 directory, attaches there, and DEL removes what it made once empty', async (t) => {
  const dir = t.testdir({ unified: { 'amc-node-1': {} }, memory: {}, pids: {}, zt: {} });
  const l: Layout = { v2: join(dir, 'unified'), v1Roots: [join(dir, 'memory'), join(dir, 'pids')], kubeletRoot: '/amc-node-1', zt: join(dir, 'zt'), stateFile: join(dir, 'state.json') };
  const kernel = new FakeRedirector();
  const r = await reconciler(t, l, kernel);
  const uid = randomUUID();
  const rel = join('amc-node-1', 'kubepods', 'besteffort', `pod${uid}`);
  // kubelet made the pod's cgroup in the v1 hierarchies before the sandbox; runc has made nothing in cgroup2.
  for (const v1 of l.v1Roots) await mkdir(join(v1, rel), { recursive: true });
  const podV2 = join(l.v2, rel);

  const res = await r.add(req('apps', 'web', uid));
  const made = [join(l.v2, 'amc-node-1', 'kubepods'), join(l.v2, 'amc-node-1', 'kubepods', 'besteffort'), podV2];
  t.match(res, { mode: 'enrolled', pod: { cgroup: podV2, madeCgroups: made } }, 'the directories it made, and not amc-node-1, which existed');
  t.ok(await isDirectory(podV2));
  t.same([...(kernel.attached.get(podV2) ?? [])].sort(), [...POD_PROGRAMS].sort(), 'attached to the directory it made');
  const saved = JSON.parse(await readFile(l.stateFile, 'utf8')) as { pods: Array<{ madeCgroups?: string[] }> };
  t.same(saved.pods[0]?.madeCgroups, made, 'recorded, so a restarted agent still knows');
  t.match(r.state().cgroup, { root: l.v2, kubeletRoot: { path: '/amc-node-1' }, v1Roots: l.v1Roots, pendingRemoval: [] });

  // A retried ADD of the same sandbox finds the directory and keeps knowing it made it.
  t.match(await r.add(req('apps', 'web', uid)), { mode: 'enrolled', pod: { madeCgroups: made } });

  // runc joins the existing directory: the container's cgroup is inside it while the sandbox lives.
  await mkdir(join(podV2, 'sandbox'));
  t.same(await r.del(req('apps', 'web', uid)), { removed: true });
  t.same(kernel.attached.get(podV2) ?? new Set(), new Set(), 'detached at DEL');
  t.ok(await isDirectory(podV2), 'not empty yet: kept');
  t.same(r.state().cgroup.pendingRemoval, made);
  t.match(JSON.parse(await readFile(l.stateFile, 'utf8')), { cleanup: made }, 'the pending removals survive a restart');

  await rmdir(join(podV2, 'sandbox'));
  await r.requestResync();
  t.same(r.state().cgroup.pendingRemoval, [], 'removed at the next resync once empty');
  t.notOk(await isDirectory(join(l.v2, 'amc-node-1', 'kubepods')));
  t.ok(await isDirectory(join(l.v2, 'amc-node-1')), 'the directory it did not make stays');
});

t.test('only for a pod that must be enrolled, only with proof from v1, and never on a pure cgroup v2 host', async (t) => {
  const dir = t.testdir({ unified: {}, pids: {}, zt: {} });
  const l: Layout = { v2: join(dir, 'unified'), v1Roots: [join(dir, 'pids')], kubeletRoot: '/', zt: join(dir, 'zt'), stateFile: join(dir, 'state.json') };
  const kernel = new FakeRedirector();
  const r = await reconciler(t, l, kernel);
  const uid = randomUUID();
  await mkdir(join(l.v1Roots[0]!, 'kubepods', 'burstable', `pod${uid}`), { recursive: true });
  t.match(await r.add(req('legacy', 'old', uid)), { mode: 'not-ambient' });
  t.notOk(await isDirectory(join(l.v2, 'kubepods')), 'a pod that is not enrolled needs no cgroup2 directory');

  await t.rejects(r.add(req('apps', 'ghost', randomUUID())), { agentCode: 'ERR_POD_CGROUP_NOT_FOUND', status: 422, message: /must be enrolled .*nor in the cgroup v1 hierarchies/ }, 'no v1 directory: no proof the pod is this one');
  t.notOk(await isDirectory(join(l.v2, 'kubepods')));

  const v2only = await reconciler(t, { ...l, v1Roots: [], stateFile: join(dir, 'state2.json') }, new FakeRedirector());
  await t.rejects(v2only.add(req('apps', 'web', uid)), { agentCode: 'ERR_POD_CGROUP_NOT_FOUND', status: 422, message: /must be enrolled/ }, 'no v1 hierarchies: as before, nothing is made');
  t.notOk(await isDirectory(join(l.v2, 'kubepods')));

  kernel.failNext.attachPod = new Error('bpftool exploded');
  await t.rejects(r.add(req('apps', 'web', uid)), { agentCode: 'ERR_ENROLMENT_FAILED', message: /bpftool exploded/ });
  t.notOk(await isDirectory(join(l.v2, 'kubepods')), 'a failed ADD leaves no directory behind');
  t.match(await r.add(req('apps', 'web', uid)), { mode: 'enrolled', pod: { madeCgroups: [join(l.v2, 'kubepods'), join(l.v2, 'kubepods', 'burstable'), join(l.v2, 'kubepods', 'burstable', `pod${uid}`)] } });
});

// --- the real hierarchies ------------------------------------------------------------------------

const realSkip = await (async (): Promise<string | false> => {
  const bpf = await bpfSkipReason();
  if (bpf) return bpf;
  const v1 = cgroupV1Roots(await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''));
  if (!v1.includes('/sys/fs/cgroup/pids')) return 'not a hybrid host: no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids';
  return false;
})();

t.test('on a real hybrid host: the made cgroup2 directory carries the real programs, a process in it keeps it, rmdir once it left', { skip: realSkip }, async (t) => {
  const sb = await Sandbox.create();
  t.teardown(() => sb.cleanup());
  const v2 = (await cgroup2Root())!;
  const prefix = `amb-hybrid-${process.pid}`;
  const uid = randomUUID();
  const v1Pod = join('/sys/fs/cgroup/pids', prefix, 'kubepods', 'besteffort', `pod${uid}`);
  // Stands in for kubelet: the pod's cgroup in the v1 pids hierarchy, under a kubelet root of our own.
  sb.defer(async () => {
    for (const d of [v1Pod, join('/sys/fs/cgroup/pids', prefix, 'kubepods', 'besteffort'), join('/sys/fs/cgroup/pids', prefix, 'kubepods'), join('/sys/fs/cgroup/pids', prefix)]) await rmdir(d).catch(() => {});
  });
  await mkdir(v1Pod, { recursive: true });
  // Whatever the agent made and a failing test left behind.
  const podV2 = join(v2, prefix, 'kubepods', 'besteffort', `pod${uid}`);
  sb.defer(async () => {
    for (const d of [join(podV2, 'ctr'), podV2, join(v2, prefix, 'kubepods', 'besteffort'), join(v2, prefix, 'kubepods'), join(v2, prefix)]) await rmdir(d).catch(() => {});
  });
  const zt = await sb.cgroup('zt');
  const loader = new BpfLoader({ pinDir: sb.pinDir('hybrid'), cgroupRoot: v2, logger: silentLogger });
  sb.defer(() => loader.unload());
  const dir = t.testdir();
  const r = await reconciler(t, { v2, v1Roots: ['/sys/fs/cgroup/pids'], kubeletRoot: `/${prefix}`, zt, stateFile: join(dir, 'state.json') }, loader);

  const res = await r.add(req('apps', 'web', uid));
  t.match(res, { mode: 'enrolled', pod: { cgroup: podV2, madeCgroups: [join(v2, prefix), join(v2, prefix, 'kubepods'), join(v2, prefix, 'kubepods', 'besteffort'), podV2] } });
  const tool = new Bpftool(execFileRunner());
  t.same((await tool.cgroupShow(podV2)).map((p) => p.name).sort(), [...POD_PROGRAMS].sort(), 'the kernel shows our programs on the directory the agent made');

  // runc: a container cgroup inside the pod's, with a process in it.
  await mkdir(join(podV2, 'ctr'));
  const sleeper = spawn('sh', ['-c', `echo $$ > ${join(podV2, 'ctr', 'cgroup.procs')} && echo joined && exec sleep 600`], { stdio: ['ignore', 'pipe', 'ignore'] });
  sb.defer(async () => {
    if (sleeper.exitCode === null && sleeper.signalCode === null) {
      sleeper.kill('SIGKILL');
      await once(sleeper, 'exit');
    }
  });
  await once(sleeper.stdout!, 'data');
  t.equal((await readFile(join(podV2, 'ctr', 'cgroup.procs'), 'utf8')).trim(), String(sleeper.pid), 'the process joined the container cgroup');

  t.same(await r.del(req('apps', 'web', uid)), { removed: true });
  t.ok(await isDirectory(podV2), 'a live cgroup (EBUSY) is kept');
  t.same(r.state().cgroup.pendingRemoval.length, 4);
  sleeper.kill('SIGKILL');
  await once(sleeper, 'exit');
  await rmdir(join(podV2, 'ctr'));
  await r.requestResync();
  t.same(r.state().cgroup.pendingRemoval, []);
  t.notOk(await isDirectory(join(v2, prefix)), 'everything the agent made is gone');
});
