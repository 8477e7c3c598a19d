import t from 'tap';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CgroupfsResolver,
  PodCgroupError,
  PodCgroupOnlyInV1Error,
  SystemdResolver,
  TemplateCgroupResolver,
  cgroupV1Roots,
  checkCgroupPath,
  isAncestorOrSelf,
  isDirectory,
  makePodCgroup,
  removeMadeCgroups,
  resolveKubeletCgroupRoot,
} from '../../../cni-plugin/agent/cgroup.js';

const fixture = (name: string) => readFile(fileURLToPath(new URL(`../fixtures/proc/${name}`, import.meta.url)), 'utf8');

const UID = '4d0a7f0e-8a5c-4c1e-9d36-2b1f6e0a9c11';

t.test('systemd driver: slices, dashes of the uid as underscores, every QoS class', async (t) => {
  const root = t.testdir();
  const r = new SystemdResolver(root);
  const u = UID.replace(/-/g, '_');
  t.same(r.candidates(UID), [
    join(root, 'kubepods.slice', `kubepods-pod${u}.slice`),
    join(root, 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${u}.slice`),
    join(root, 'kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${u}.slice`),
  ]);
  const burstable = r.candidates(UID)[1]!;
  await mkdir(burstable, { recursive: true });
  t.equal(await r.resolve({ namespace: 'apps', name: 'web', uid: UID }), burstable);
  await t.rejects(r.resolve({ namespace: 'apps', name: 'web' }), { message: /has no uid \(K8S_POD_UID\)/ });
  await t.rejects(r.resolve({ namespace: 'apps', name: 'other', uid: 'nope' }), { message: /no cgroup for pod apps\/other .*looked at .*kubepods-podnope.slice.*check CGROUP_DRIVER/ });
});

t.test('cgroupfs driver', async (t) => {
  const root = t.testdir();
  const r = new CgroupfsResolver(root);
  t.same(r.candidates(UID), [join(root, 'kubepods', `pod${UID}`), join(root, 'kubepods', 'burstable', `pod${UID}`), join(root, 'kubepods', 'besteffort', `pod${UID}`)]);
  await mkdir(join(root, 'kubepods', `pod${UID}`), { recursive: true });
  t.equal(await r.resolve({ namespace: 'apps', name: 'web', uid: UID }), join(root, 'kubepods', `pod${UID}`), 'Guaranteed pods sit directly under kubepods');
});

t.test('template driver and explicit paths stay under the root', async (t) => {
  const root = t.testdir({ lab: { 'apps-web': {} } });
  const r = new TemplateCgroupResolver(root, 'lab/{podNamespace}-{podName}');
  t.equal(await r.resolve({ namespace: 'apps', name: 'web' }), join(root, 'lab', 'apps-web'));
  await t.rejects(new TemplateCgroupResolver(root, 'lab/{podUid}').resolve({ namespace: 'apps', name: 'web' }), PodCgroupError);
  t.equal(await checkCgroupPath(root, join(root, 'lab', 'apps-web')), join(root, 'lab', 'apps-web'));
  await t.rejects(checkCgroupPath(root, '../etc'), { message: /not below the cgroup v2 root/ });
  await t.rejects(checkCgroupPath(root, root), { message: /not below/ }, 'never the root itself: that would redirect the whole node');
  await t.rejects(checkCgroupPath(root, 'lab/missing'), { message: /does not exist/ });
  t.ok(isAncestorOrSelf('/a/b', '/a/b/c'));
  t.ok(isAncestorOrSelf('/a/b', '/a/b'));
  t.notOk(isAncestorOrSelf('/a/b', '/a/bc'));
});

t.test("kubelet's cgroup root: explicit, or found from the agent's own cgroup", async (t) => {
  t.same(resolveKubeletCgroupRoot('/amc-node-1', undefined), { path: '/amc-node-1', source: 'KUBELET_CGROUP_ROOT=/amc-node-1' }, 'an explicit path is taken as it is');
  t.match(resolveKubeletCgroupRoot('auto', '0::/amc-node-2/kubepods/burstable/pod1/c1\n'), { path: '/amc-node-2', source: 'auto: from /proc/self/cgroup 0::/amc-node-2/kubepods/burstable/pod1/c1' }, 'the unified line first');
  t.match(
    resolveKubeletCgroupRoot('auto', await fixture('cgroup-hybrid-root.txt')),
    { path: '/amc-node-1', source: /^auto: from \/proc\/self\/cgroup 4:memory:\/amc-node-1\/kubepods/ },
    'a hybrid host whose unified line shows / : the memory controller line',
  );
  t.match(resolveKubeletCgroupRoot('auto', '5:pids:/amc-node-1/kubepods/podX/c\n1:name=systemd:/elsewhere\n0::/\n'), { path: '/amc-node-1', source: /5:pids:/ }, 'then pids; never a name= hierarchy');
  t.match(resolveKubeletCgroupRoot('auto', await fixture('cgroup-cgroupfs.txt')), { path: '/', source: /^auto: from/ }, "kubelet's default root");
  t.notOk(resolveKubeletCgroupRoot('auto', await fixture('cgroup-cgroupfs.txt')).fallback);
  t.match(resolveKubeletCgroupRoot('auto', await fixture('cgroup-systemd.txt')), { path: '/', source: /^auto: from/ }, 'systemd: before kubepods.slice');
  t.match(resolveKubeletCgroupRoot('auto', '0::/node.slice/node-kubepods.slice/node-kubepods-besteffort.slice/x.scope\n'), { path: '/node.slice' }, 'systemd with a cgroupRoot slice');
  t.match(resolveKubeletCgroupRoot('auto', await fixture('cgroup-nested-ns.txt')), { path: '/', fallback: /namespaced.*set KUBELET_CGROUP_ROOT/ }, 'a namespaced view falls back to /');
  t.match(resolveKubeletCgroupRoot('auto', '0::/\n'), { path: '/', source: /^auto: fallback to \/ \(the agent's cgroup is namespaced/ });
  t.match(resolveKubeletCgroupRoot('auto', await fixture('cgroup-v1-only.txt')), { path: '/', fallback: /holds no kubepods segment/ }, 'not a pod of a kubelet');
  t.match(resolveKubeletCgroupRoot('auto', undefined), { path: '/', fallback: /could not be read/ });
});

t.test('the kubelet drivers under a kubelet cgroup root', async (t) => {
  const root = t.testdir();
  const fs = new CgroupfsResolver(root, { kubeletRoot: '/amc-node-1' });
  t.same(fs.candidates(UID), [join(root, 'amc-node-1', 'kubepods', `pod${UID}`), join(root, 'amc-node-1', 'kubepods', 'burstable', `pod${UID}`), join(root, 'amc-node-1', 'kubepods', 'besteffort', `pod${UID}`)]);
  await mkdir(fs.candidates(UID)[2]!, { recursive: true });
  t.equal(await fs.resolve({ namespace: 'apps', name: 'web', uid: UID }), fs.candidates(UID)[2]);
  await t.rejects(new CgroupfsResolver(root).resolve({ namespace: 'apps', name: 'web', uid: UID }), { message: /looked at .*\/kubepods\/pod.*check CGROUP_DRIVER .*KUBELET_CGROUP_ROOT/ }, 'the default root misses it');

  const u = UID.replace(/-/g, '_');
  const sd = new SystemdResolver(root, { kubeletRoot: '/node.slice' });
  t.same(sd.candidates(UID), [
    join(root, 'node.slice', 'node-kubepods.slice', `node-kubepods-pod${u}.slice`),
    join(root, 'node.slice', 'node-kubepods.slice', 'node-kubepods-burstable.slice', `node-kubepods-burstable-pod${u}.slice`),
    join(root, 'node.slice', 'node-kubepods.slice', 'node-kubepods-besteffort.slice', `node-kubepods-besteffort-pod${u}.slice`),
  ], "kubelet prefixes every slice with the root's, as systemd nests slices");
  t.same(new SystemdResolver(root, { kubeletRoot: '/' }).candidates(UID), new SystemdResolver(root).candidates(UID));
});

t.test('a hybrid host: the pod cgroup in a v1 hierarchy but not in cgroup2', async (t) => {
  const dir = t.testdir({ unified: {}, memory: {}, pids: {} });
  const v2 = join(dir, 'unified');
  const v1Roots = [join(dir, 'memory'), join(dir, 'pids')];
  const r = new CgroupfsResolver(v2, { kubeletRoot: '/amc-node-1', v1Roots });
  const rel = join('amc-node-1', 'kubepods', 'besteffort', `pod${UID}`);
  await t.rejects(r.resolve({ namespace: 'apps', name: 'web', uid: UID }), { code: 'ERR_POD_CGROUP_NOT_FOUND', message: /nor in the cgroup v1 hierarchies/ }, 'in no hierarchy: not found');
  await mkdir(join(dir, 'pids', rel), { recursive: true });
  const err = await r.resolve({ namespace: 'apps', name: 'web', uid: UID }).catch((e: unknown) => e);
  t.type(err, PodCgroupOnlyInV1Error);
  t.type(err, PodCgroupError, 'still a PodCgroupError for callers that only look for the pod');
  t.match(err, { code: 'ERR_POD_CGROUP_ONLY_IN_V1', v2Path: join(v2, rel), v1Path: join(dir, 'pids', rel), message: /does not exist in cgroup v2 yet, but .* does \(a hybrid host/ });
  t.notOk(await isDirectory(join(v2, rel)), 'resolving changes nothing on the host');
  await mkdir(join(v2, rel), { recursive: true });
  t.equal(await r.resolve({ namespace: 'apps', name: 'web', uid: UID }), join(v2, rel), 'once in cgroup2, that one');
});

t.test('making and removing the cgroup2 directory of a pod', async (t) => {
  const root = t.testdir({ amc: { kubepods: {} } });
  const pod = join(root, 'amc', 'kubepods', 'besteffort', `pod${UID}`);
  t.same(await makePodCgroup(root, pod), [join(root, 'amc', 'kubepods', 'besteffort'), pod], 'the missing parents and the pod directory, outermost first; nothing that existed');
  t.ok((await stat(pod)).isDirectory());
  t.same(await makePodCgroup(root, pod), [], 'already there: made nothing');
  await t.rejects(makePodCgroup(root, join(root, '..', 'elsewhere')), { message: /not below the cgroup v2 root/ });
  await t.rejects(makePodCgroup(root, root), { message: /not below/ });

  const made = [join(root, 'amc', 'kubepods', 'besteffort'), pod];
  await mkdir(join(pod, 'container'));
  t.same(await removeMadeCgroups(made), made, "runc's container cgroup inside: everything stays");
  t.ok(await isDirectory(join(pod, 'container')));
  await mkdir(join(root, 'amc', 'kubepods', 'besteffort', 'pod-other'));
  await removeMadeCgroups([join(pod, 'container')]);
  t.same(await removeMadeCgroups(made), [join(root, 'amc', 'kubepods', 'besteffort')], "the pod's directory goes; the parent another pod uses stays");
  t.notOk(await isDirectory(pod));
  t.ok(await isDirectory(join(root, 'amc', 'kubepods')), 'never a directory the agent did not make');
  t.same(await removeMadeCgroups([pod]), [], 'already gone counts as removed');
});

t.test('cgroup v1 hierarchies from mountinfo: full hierarchies only, not cgroup2', async (t) => {
  t.same(cgroupV1Roots(await fixture('mountinfo-hybrid.txt')), ['/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/systemd']);
  t.same(cgroupV1Roots('25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n'), [], 'a pure cgroup v2 host');
  t.same(cgroupV1Roots('1402 1401 0:29 /kubepods/pod1/c1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n'), [], "a container's own sub-tree view is not a hierarchy's root");
});
