import t, { type Test } from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkKernel, mountsOfType, cgroup2Root } from '../../bpf/kernel.js';
import { BpfUnavailableError } from '../../bpf/errors.js';
import { CommandError, type CommandRunner } from '../../bpf/command.js';

const MOUNTINFO = [
  '25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
  '34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw',
  '35 33 0:30 / /sys/fs/cgroup/with\\040space rw shared:11 - cgroup2 cgroup2 rw',
  '40 25 0:35 / /sys/fs/bpf rw,relatime shared:15 - bpf bpf rw',
].join('\n');

/** A fake /proc (and a vmlinux file at `<dir>/vmlinux`) in the test's directory. */
async function procFixture(t: Test, opts: { mountinfo: string; filesystems: string; capEff: string }): Promise<string> {
  const dir = t.testdir({ vmlinux: '' });
  await mkdir(join(dir, 'self'), { recursive: true });
  await writeFile(join(dir, 'self', 'mountinfo'), opts.mountinfo);
  await writeFile(join(dir, 'filesystems'), opts.filesystems);
  await writeFile(join(dir, 'self', 'status'), `Name:\tnode\nCapEff:\t${opts.capEff}\n`);
  return dir;
}

const noBpftool: CommandRunner = {
  run: async (file, args) => {
    throw new CommandError({ file, args, exitCode: null, notFound: true, stdout: '', stderr: '' });
  },
};

function fakeBpftool(probe: object): CommandRunner {
  return {
    run: async (_file, args) => {
      if (args[0] === 'version') return { stdout: 'bpftool v7.1.0\n', stderr: '' };
      return { stdout: JSON.stringify(probe), stderr: '' };
    },
  };
}

const FULL_PROBE = {
  program_types: { have_cgroup_sock_addr_prog_type: true, have_sock_ops_prog_type: true, have_cgroup_skb_prog_type: true },
  map_types: { have_sk_storage_map_type: true, have_lru_hash_map_type: true, have_lpm_trie_map_type: true, have_percpu_array_map_type: true },
};

t.test('reads mount points from mountinfo', async (t) => {
  const proc = await procFixture(t, { mountinfo: MOUNTINFO, filesystems: '', capEff: '0' });
  t.same(await mountsOfType('cgroup2', proc), ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/with space']);
  t.equal(await cgroup2Root(proc), '/sys/fs/cgroup/unified');
  t.same(await mountsOfType('bpf', proc), ['/sys/fs/bpf']);
  t.same(await mountsOfType('cgroup2', join(proc, 'nope')), []);
});

t.test('a ready node passes', async (t) => {
  const proc = await procFixture(t, { mountinfo: MOUNTINFO, filesystems: 'nodev\tcgroup2\nnodev\tbpf\n', capEff: '000001ffffffffff' });
  const btf = join(proc, 'vmlinux');
  await checkKernel({ procDir: proc, btfPath: btf, release: '6.1.0-18-amd64', run: fakeBpftool(FULL_PROBE) });
  t.pass();
});

t.test('every gap is reported at once, with what provides it', async (t) => {
  const proc = await procFixture(t, { mountinfo: MOUNTINFO.split('\n')[0]!, filesystems: 'nodev\tcgroup2\n', capEff: '0000000000000000' });
  const err = await checkKernel({ procDir: proc, btfPath: '/nonexistent/vmlinux', release: '5.4.0-150-generic', run: noBpftool }).catch((e: unknown) => e);
  t.type(err, BpfUnavailableError);
  const e = err as BpfUnavailableError;
  t.equal(e.code, 'ERR_BPF_UNAVAILABLE');
  t.equal(e.missing.length, 6);
  t.match(e.message, /kernel 5\.4\.0-150-generic is older than 5\.8/);
  t.match(e.message, /CONFIG_DEBUG_INFO_BTF/);
  t.match(e.message, /no cgroup v2 hierarchy/);
  t.match(e.message, /CONFIG_BPF_SYSCALL/);
  t.match(e.message, /CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN/);
  t.match(e.message, /bpftool not found in PATH: install it \(Debian 12\+: apt-get install bpftool/);
});

t.test('missing program and map types are named', async (t) => {
  const proc = await procFixture(t, { mountinfo: MOUNTINFO, filesystems: 'nodev\tbpf\n', capEff: '0000000000200000' });
  const btf = join(proc, 'vmlinux');
  const probe = { program_types: { ...FULL_PROBE.program_types, have_sock_ops_prog_type: false }, map_types: { ...FULL_PROBE.map_types, have_sk_storage_map_type: false } };
  const err = (await checkKernel({ procDir: proc, btfPath: btf, release: '5.10.0', run: fakeBpftool(probe) }).catch((e: unknown) => e)) as BpfUnavailableError;
  t.same(err.missing, ['the kernel cannot load sock_ops programs: CONFIG_CGROUP_BPF=y', 'the kernel has no sk_storage maps (kernel 5.2+)']);
});
