import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CgroupfsResolver, PodCgroupError, SystemdResolver, TemplateCgroupResolver, checkCgroupPath, isAncestorOrSelf } from '../../../cni-plugin/agent/cgroup.js';

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
