// The /proc parsers behind the agent's ZTUNNEL_CGROUP=auto and ztunnel's port-owner messages, on fixture files (test/cni-plugin/fixtures/proc/).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isOutsideNamespace, parseCgroupV2, parseProcNetTcp, podLevelCgroup, socketInode, TCP_LISTEN } from '../../../core/net/proc-net.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'cni-plugin', 'fixtures', 'proc');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

t.test('fixture /proc/net/tcp: addresses, ports, states and inodes as the kernel printed them', async (t) => {
  const rows = parseProcNetTcp(fixture('net-tcp.txt'), 'LE');
  t.equal(rows.length, 6, 'the header is skipped, every socket row is read');
  t.same(rows[1], { localAddress: '0.0.0.0', localPort: 15008, state: TCP_LISTEN, inode: 75756 });
  t.same(rows[2], { localAddress: '127.0.18.9', localPort: 15001, state: TCP_LISTEN, inode: 75758 });
  t.same(rows[3], { localAddress: '127.0.18.1', localPort: 15001, state: TCP_LISTEN, inode: 75755 });
  t.same(rows[4], { localAddress: '127.0.18.1', localPort: 15001, state: 0x01, inode: 75990 }, 'an established socket on the same port');
  t.same(rows[5], { localAddress: '127.0.18.1', localPort: 54321, state: 0x06, inode: 0 }, 'TIME_WAIT has no inode');
  // The same words on a big-endian machine would read the other way round.
  t.equal(parseProcNetTcp(fixture('net-tcp.txt'), 'BE')[3]!.localAddress, '1.18.0.127');
});

t.test('fixture /proc/net/tcp6: the wildcard, IPv4-mapped and other addresses', async (t) => {
  const rows = parseProcNetTcp(fixture('net-tcp6.txt'), 'LE');
  t.same(
    rows.map((r) => [r.localAddress, r.localPort, r.inode]),
    [
      ['::', 15008, 76100],
      ['::ffff:127.0.18.1', 15001, 76101],
      ['fe80:0:0:0:200:ff:fffe:3', 15001, 76102],
    ],
  );
});

t.test('malformed lines are skipped, not guessed', async (t) => {
  t.same(parseProcNetTcp('garbage\n   0: ZZZZ:0001 00000000:0000 0A 0 0 0 0 0 1\n   1: 0100007F 00000000:0000 0A 0 0 0 0 0 1\n', 'LE'), []);
});

t.test('fd links: only sockets carry an inode', async (t) => {
  t.equal(socketInode('socket:[75755]'), 75755);
  t.equal(socketInode('pipe:[75755]'), undefined);
  t.equal(socketInode('/dev/null'), undefined);
  t.equal(socketInode('anon_inode:[eventpoll]'), undefined);
});

t.test('fixture /proc/PID/cgroup: the cgroup v2 line, mapped to the pod level', async (t) => {
  const systemd = parseCgroupV2(fixture('cgroup-systemd.txt'))!;
  t.match(systemd, /cri-containerd-.*\.scope$/);
  t.equal(podLevelCgroup(systemd), '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice', 'systemd driver: the pod slice, not the container scope');
  const cgroupfs = parseCgroupV2(fixture('cgroup-cgroupfs.txt'))!;
  t.equal(cgroupfs, '/kubepods/besteffort/pod9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a/0123456789abcdef', 'the 0:: line, not a v1 line');
  t.equal(podLevelCgroup(cgroupfs), '/kubepods/besteffort/pod9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a', 'cgroupfs driver: pod<uid>');
  const lab = parseCgroupV2(fixture('cgroup-lab.txt'))!;
  t.equal(podLevelCgroup(lab), '/amb-lab-ztunnel-node-a', 'no pod segment (the lab, a systemd service): the process cgroup itself');
  t.equal(parseCgroupV2(fixture('cgroup-v1-only.txt')), undefined, 'no cgroup v2 line');
  t.equal(parseCgroupV2('0::/\n'), '/');
});

t.test('a path from a nested cgroup namespace is recognised, never mapped as if it were the host\'s', async (t) => {
  const nested = parseCgroupV2(fixture('cgroup-nested-ns.txt'))!;
  t.ok(isOutsideNamespace(nested));
  t.notOk(isOutsideNamespace(parseCgroupV2(fixture('cgroup-systemd.txt'))!));
  t.notOk(isOutsideNamespace('/a..b/c'), 'only a whole ".." segment counts');
});
