// The agent's own directories at a full uninstall: removed when empty, kept otherwise.
import t from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isDirectory } from '../../../cni-plugin/agent/cgroup.js';
import { OWN_ROOTS, ownDirectories, removeEmptyDirectories } from '../../../cni-plugin/agent/own-dirs.js';

const run = promisify(execFile);

t.test("the default layout's directories are the agent's own; a path elsewhere is someone else's", async (t) => {
  t.same([...OWN_ROOTS].sort(), ['/sys/fs/bpf/ambient', '/var/run/ambient']);
  t.same(ownDirectories({ stateFile: '/var/run/ambient/agent-state.json', socket: '/var/run/ambient/cni.sock', pinDir: '/sys/fs/bpf/ambient/node-a' }), [
    '/sys/fs/bpf/ambient/node-a',
    '/sys/fs/bpf/ambient',
    '/var/run/ambient',
  ]);
  t.same(ownDirectories({ stateFile: '/tmp/x/state.json', socket: '/run/other/cni.sock', pinDir: '/sys/fs/bpf/mine' }), [], 'never /tmp/x, /run/other or /sys/fs/bpf');
});

t.test('rmdir when empty; kept when something else is inside', async (t) => {
  const dir = t.testdir();
  const roots = [join(dir, 'run', 'ambient'), join(dir, 'bpf', 'ambient')];
  const paths = { stateFile: join(roots[0]!, 'agent-state.json'), socket: join(roots[0]!, 'cni.sock'), pinDir: join(roots[1]!, 'node-a') };
  await mkdir(roots[0]!, { recursive: true });
  await mkdir(join(roots[1]!, 'node-b'), { recursive: true });
  const dirs = ownDirectories(paths, roots);
  t.same(dirs, [join(roots[1]!, 'node-a'), roots[1]!, roots[0]!], 'the pin dir, then its parent; innermost first');
  const res = await removeEmptyDirectories(dirs);
  t.same(res.removed, [roots[0]!], 'the empty run directory goes');
  t.same(res.kept, [{ dir: roots[1]!, why: 'not empty: something other than the agent put files there' }], "another node's pin dir keeps the parent");
  t.ok(await isDirectory(join(roots[1]!, 'node-b')));
  t.notOk(await isDirectory(roots[0]!));
  t.same(await removeEmptyDirectories([join(dir, 'absent')]), { removed: [], kept: [] }, 'an absent directory is nothing to do');
  await mkdir(roots[0]!);
  await writeFile(join(roots[0]!, 'cni.sock'), '');
  t.match(await removeEmptyDirectories([roots[0]!]), { removed: [], kept: [{ dir: roots[0]! }] }, "a live agent's socket keeps it");
});

t.test('a mount point (a hostPath volume) is kept and said so', { skip: process.getuid?.() !== 0 ? 'needs root: mounts a tmpfs' : false }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'amb-own-dirs-'));
  const mnt = join(dir, 'ambient');
  await mkdir(mnt);
  // One teardown, in order: the mount must go before its directory can.
  t.teardown(async () => {
    await run('umount', [mnt]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  await run('mount', ['-t', 'tmpfs', 'amb-own-dirs-test', mnt]);
  t.same(await removeEmptyDirectories([mnt]), { removed: [], kept: [{ dir: mnt, why: 'a mount point (a hostPath volume): the container cannot remove it, the host directory stays' }] });
});
