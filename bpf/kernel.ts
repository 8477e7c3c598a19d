/**
 * What the node must offer before the loader can work, and where things are mounted. Read from
 * /proc and statfs so the checks cost no privileges; only the feature probe runs bpftool.
 */
import { access, readFile, statfs } from 'node:fs/promises';
import { release as osRelease } from 'node:os';
import { join } from 'node:path';
import { CommandError, execFileRunner, type CommandRunner } from './command.js';
import { Bpftool } from './bpftool.js';
import { BpfCommandError, BpfUnavailableError } from './errors.js';

/** statfs f_type of a bpf filesystem. */
export const BPF_FS_MAGIC = 0xcafe4a11;
/** statfs f_type of a cgroup v2 filesystem. */
export const CGROUP2_SUPER_MAGIC = 0x63677270;
/** Where bpffs lives by convention; the loader mounts it here when it is missing. */
export const DEFAULT_BPFFS = '/sys/fs/bpf';
/** getsockname/getpeername hooks arrived in 5.8; everything else the programs use is older. */
export const MIN_KERNEL: readonly [number, number] = [5, 8];

export interface KernelCheckInputs {
  readonly run?: CommandRunner;
  readonly bpftool?: string;
  /** Defaults to /proc; tests point it at a fixture. */
  readonly procDir?: string;
  readonly btfPath?: string;
  /** `uname -r`; defaults to os.release(). */
  readonly release?: string;
}

/** Mount points of a filesystem type, from mountinfo (field 5 is the mount point, after ` - ` the type). */
export async function mountsOfType(fsType: string, procDir = '/proc'): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(join(procDir, 'self', 'mountinfo'), 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep === -1) continue;
    const fields = line.slice(0, sep).split(' ');
    const type = line.slice(sep + 3).split(' ')[0];
    if (type === fsType && fields[4]) out.push(fields[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/** The cgroup v2 root the node's pods live under (the first cgroup2 mount), or undefined. */
export async function cgroup2Root(procDir = '/proc'): Promise<string | undefined> {
  return (await mountsOfType('cgroup2', procDir))[0];
}

/** statfs type of `path`, or undefined when it cannot be read. */
export async function fsType(path: string): Promise<number | undefined> {
  try {
    return Number((await statfs(path)).type);
  } catch {
    return undefined;
  }
}

function parseRelease(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21, CAP_BPF 39. */
async function privileged(procDir: string): Promise<boolean> {
  try {
    const status = await readFile(join(procDir, 'self', 'status'), 'utf8');
    const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1];
    if (!hex) return false;
    const caps = BigInt(`0x${hex}`);
    const has = (bit: bigint) => ((caps >> bit) & 1n) === 1n;
    return has(21n) || (has(39n) && has(12n));
  } catch {
    return false;
  }
}

/**
 * Checks everything the loader needs, and reports every gap at once with what provides it.
 * Throws {@link BpfUnavailableError}; resolves when the node is ready.
 */
export async function checkKernel(inputs: KernelCheckInputs = {}): Promise<void> {
  const procDir = inputs.procDir ?? '/proc';
  const btfPath = inputs.btfPath ?? '/sys/kernel/btf/vmlinux';
  const release = inputs.release ?? osRelease();
  const tool = new Bpftool(inputs.run ?? execFileRunner(), inputs.bpftool ?? 'bpftool');
  const missing: string[] = [];

  const version = parseRelease(release);
  const [minMajor, minMinor] = MIN_KERNEL;
  if (!version || version[0] < minMajor || (version[0] === minMajor && version[1] < minMinor)) {
    missing.push(`kernel ${release} is older than ${minMajor}.${minMinor} (the getsockname/getpeername hooks need ${minMajor}.${minMinor}): upgrade the node's kernel`);
  }
  try {
    await access(btfPath);
  } catch {
    missing.push(`no kernel btf at ${btfPath}: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y (distribution kernels 5.8+ are)`);
  }
  if (!(await cgroup2Root(procDir))) {
    missing.push(
      `no cgroup v2 hierarchy is mounted (${procDir}/self/mountinfo): mount one (mount -t cgroup2 none /sys/fs/cgroup) or boot with systemd.unified_cgroup_hierarchy=1; in a container, mount the host's /sys/fs/cgroup`,
    );
  }
  let filesystems = '';
  try {
    filesystems = await readFile(join(procDir, 'filesystems'), 'utf8');
  } catch {
    // reported below as missing bpffs
  }
  if (!/\sbpf$/m.test(filesystems)) missing.push('the kernel has no bpf filesystem: it needs CONFIG_BPF_SYSCALL=y');
  const isPrivileged = await privileged(procDir);
  if (!isPrivileged) missing.push('not privileged: loading and attaching needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN (run as root, or a privileged container)');

  let haveBpftool = true;
  try {
    await tool.version();
  } catch (err) {
    haveBpftool = false;
    const notFound = err instanceof BpfCommandError && err.cause instanceof CommandError && err.cause.notFound;
    missing.push(
      notFound
        ? 'bpftool not found in PATH: install it (Debian 12+: apt-get install bpftool; Ubuntu: apt-get install linux-tools-common linux-tools-$(uname -r))'
        : `bpftool does not run: ${(err as Error).message}`,
    );
  }
  if (haveBpftool && isPrivileged) {
    try {
      const f = await tool.featureProbe();
      const progs: Array<[string, string]> = [
        ['have_cgroup_sock_addr_prog_type', 'cgroup_sock_addr programs (connect, getsockname hooks): CONFIG_CGROUP_BPF=y'],
        ['have_sock_ops_prog_type', 'sock_ops programs: CONFIG_CGROUP_BPF=y'],
        ['have_cgroup_skb_prog_type', 'cgroup_skb programs (strict ingress): CONFIG_CGROUP_BPF=y'],
      ];
      for (const [key, what] of progs) if (f.programTypes[key] !== true) missing.push(`the kernel cannot load ${what}`);
      const maps: Array<[string, string]> = [
        ['have_sk_storage_map_type', 'sk_storage maps (kernel 5.2+)'],
        ['have_lru_hash_map_type', 'lru hash maps'],
        ['have_lpm_trie_map_type', 'lpm trie maps'],
        ['have_percpu_array_map_type', 'per-cpu array maps'],
      ];
      for (const [key, what] of maps) if (f.mapTypes[key] !== true) missing.push(`the kernel has no ${what}`);
    } catch (err) {
      missing.push(`bpftool feature probe failed: ${(err as Error).message}`);
    }
  }
  if (missing.length > 0) throw new BpfUnavailableError(missing);
}
