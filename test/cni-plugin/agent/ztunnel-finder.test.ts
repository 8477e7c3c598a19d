// ZtunnelFinder on a fixture procfs: the /proc files of test/cni-plugin/fixtures/proc/ laid out
// as /proc is (net/tcp, net/tcp6, PID/fd/N -> socket:[inode], PID/cgroup) in a test directory.
import t, { type Test } from 'tap';
import { copyFile, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZtunnelFinder } from '../../../cni-plugin/agent/ztunnel-finder.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'proc');

interface FakeProc {
  root: string;
  process(pid: number, opts: { sockets: number[]; cgroup: string }): Promise<void>;
  kill(pid: number): Promise<void>;
  setTcp(file: string): Promise<void>;
}

async function procfs(t: Test): Promise<FakeProc> {
  const root = t.testdir();
  await mkdir(join(root, 'net'));
  await copyFile(join(FIXTURES, 'net-tcp.txt'), join(root, 'net', 'tcp'));
  await copyFile(join(FIXTURES, 'net-tcp6.txt'), join(root, 'net', 'tcp6'));
  return {
    root,
    async process(pid, { sockets, cgroup }) {
      await mkdir(join(root, String(pid), 'fd'), { recursive: true });
      await symlink('/dev/null', join(root, String(pid), 'fd', '0'));
      let fd = 3;
      for (const s of sockets) await symlink(`socket:[${s}]`, join(root, String(pid), 'fd', String(fd++)));
      await copyFile(join(FIXTURES, cgroup), join(root, String(pid), 'cgroup'));
    },
    kill: (pid) => rm(join(root, String(pid)), { recursive: true }),
    setTcp: async (text) => writeFile(join(root, 'net', 'tcp'), text),
  };
}

const finder = (proc: FakeProc, extra: Partial<ConstructorParameters<typeof ZtunnelFinder>[0]> = {}) =>
  new ZtunnelFinder({ procRoot: proc.root, cgroupRoot: '/sys/fs/cgroup', ztunnelIp: '127.0.18.1', ports: [15001, 15008], ...extra });

t.test('the owners of the listeners on ztunnel\'s address (or the wildcard) and ports, at the pod level', async (t) => {
  const proc = await procfs(t);
  await proc.process(100, { sockets: [75755, 75990], cgroup: 'cgroup-systemd.txt' }); // 127.0.18.1:15001 (+ an accepted socket)
  await proc.process(200, { sockets: [75758], cgroup: 'cgroup-lab.txt' }); // 127.0.18.9:15001: another address
  await proc.process(300, { sockets: [75001], cgroup: 'cgroup-lab.txt' }); // 127.0.0.1:15000: another port
  const scan = await finder(proc).find();
  t.same(scan.processes.filter((p) => p.pid === 200 || p.pid === 300), [], 'other addresses and ports are not ztunnel');
  t.same(scan.processes.find((p) => p.pid === 100), {
    pid: 100,
    cgroup: '/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice',
    listener: '127.0.18.1:15001',
  });
  t.ok(scan.changed);
  // 0.0.0.0:15008 (75756), :::15008 (76100) and ::ffff:127.0.18.1:15001 (76101) are ztunnel's too, but nobody here holds them.
  t.equal(scan.problems.length, 3, 'listeners without a visible owner are reported');
  t.match(scan.problems.join('\n'), /0\.0\.0\.0:15008 \(inode 75756\); the agent needs the host's PID namespace/);
});

t.test('a second process during a handover: both cgroups; then the first goes', async (t) => {
  const proc = await procfs(t);
  // Only the two IPv4 listeners of interest exist here.
  const lines = (await import('node:fs')).readFileSync(join(FIXTURES, 'net-tcp.txt'), 'utf8').split('\n');
  await proc.setTcp([lines[0], lines[2], lines[4]].join('\n')); // header, 0.0.0.0:15008, 127.0.18.1:15001
  await writeFile(join(proc.root, 'net', 'tcp6'), lines[0]!);
  await proc.process(100, { sockets: [75755], cgroup: 'cgroup-systemd.txt' });
  await proc.process(200, { sockets: [75756], cgroup: 'cgroup-cgroupfs.txt' });
  const f = finder(proc);
  const both = await f.find();
  t.same(both.problems, []);
  t.same(both.cgroups, [
    '/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice',
    '/sys/fs/cgroup/kubepods/besteffort/pod9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a',
  ]);
  // Same sockets: nothing is re-read, even if a process vanished meanwhile (the socket table says it did not).
  await proc.kill(200);
  const again = await f.find();
  t.equal(again.changed, false);
  t.same(again.cgroups, both.cgroups);
  // The first closes its listener: the socket table changes, the processes are walked again.
  await proc.setTcp([lines[0], lines[2]].join('\n'));
  await proc.process(200, { sockets: [75756], cgroup: 'cgroup-cgroupfs.txt' });
  const after = await f.find();
  t.ok(after.changed);
  t.same(after.cgroups, ['/sys/fs/cgroup/kubepods/besteffort/pod9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a']);
  await proc.setTcp(lines[0]!);
  const none = await f.find();
  t.ok(none.changed);
  t.same(none.cgroups, [], 'no listener: no ztunnel');
});

t.test('a process seen through a nested cgroup namespace is placed through the host\'s view', async (t) => {
  const proc = await procfs(t);
  await proc.process(100, { sockets: [75755], cgroup: 'cgroup-nested-ns.txt' });
  const asked: number[] = [];
  const scan = await finder(proc, {
    hostCgroupPathOf: async (pid) => {
      asked.push(pid);
      return '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9e8d7c6b_5a49_4382_9170_6f5e4d3c2b1a.slice/cri-containerd-0123.scope';
    },
  }).find();
  t.same(asked, [100]);
  t.same(scan.processes.find((p) => p.pid === 100)?.cgroup, '/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9e8d7c6b_5a49_4382_9170_6f5e4d3c2b1a.slice');
  const failing = await finder(proc, { hostCgroupPathOf: async () => undefined }).find();
  t.match(failing.problems.join('\n'), /process 100 listening on 127\.0\.18\.1:15001: its cgroup \/\.\.\/\.\.\/.* is outside the agent's cgroup namespace/);
  t.same(failing.cgroups, [], 'never mapped as if it were a host path');
});

t.test('a missing tcp6 table (no IPv6) is no error; a missing tcp table is', async (t) => {
  const proc = await procfs(t);
  await rm(join(proc.root, 'net', 'tcp6'));
  t.ok((await finder(proc).listeners()).size > 0);
  await rm(join(proc.root, 'net', 'tcp'));
  await t.rejects(finder(proc).find(), { code: 'ENOENT' });
});
