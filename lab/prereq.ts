/**
 * What `lab up` needs from the machine, checked before anything is changed. Each missing piece is
 * named with the Debian package that provides it.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroup2Root } from '../bpf/kernel.js';
import { DEFAULT_OBJECTS_DIR } from '../bpf/loader.js';
import { AGENT_MAIN, CNI_WRAPPER, CONTROL_PLANE_MAIN, WAYPOINT_MAIN, ZTUNNEL_MAIN } from './components.js';
import { have, SYSTEM_CNI_DIR } from './sys.js';

export interface Missing {
  readonly what: string;
  /** How to get it: a Debian package, or a command. */
  readonly fix: string;
}

/** Every missing prerequisite (empty: all there). */
export async function checkPrerequisites(): Promise<Missing[]> {
  const missing: Missing[] = [];
  if (process.getuid?.() !== 0) missing.push({ what: 'root (the lab creates network namespaces, cgroups and eBPF pins)', fix: 'run with sudo' });
  if (!(await cgroup2Root())) missing.push({ what: 'a cgroup v2 mount', fix: 'boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup' });
  if (!(await exists('/sys/kernel/btf/vmlinux'))) missing.push({ what: 'kernel BTF (/sys/kernel/btf/vmlinux)', fix: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian linux-image-amd64)' });
  const tools: Array<[string, string]> = [
    ['bpftool', 'bpftool'],
    ['ip', 'iproute2'],
    ['nsenter', 'util-linux'],
    ['unshare', 'util-linux'],
    ['mount', 'mount'],
    ['nft', 'nftables'],
  ];
  for (const [cmd, pkg] of tools) if (!(await have(cmd))) missing.push({ what: `the ${cmd} command`, fix: `apt-get install ${pkg}` });
  for (const o of ['redirect.bpf.o', 'strict.bpf.o', 'ztunnel.bpf.o']) {
    if (!(await exists(join(DEFAULT_OBJECTS_DIR, o)))) missing.push({ what: `the eBPF object ${join(DEFAULT_OBJECTS_DIR, o)}`, fix: 'git checkout bpf/prebuilt, or make -C bpf (apt-get install clang llvm libbpf-dev)' });
  }
  for (const p of ['bridge', 'host-local', 'loopback']) {
    if (!(await exists(join(SYSTEM_CNI_DIR, p)))) missing.push({ what: `the CNI plugin ${join(SYSTEM_CNI_DIR, p)}`, fix: 'apt-get install containernetworking-plugins' });
  }
  for (const f of [CONTROL_PLANE_MAIN, AGENT_MAIN, ZTUNNEL_MAIN, WAYPOINT_MAIN]) {
    if (!(await exists(f))) missing.push({ what: f, fix: 'npm run build' });
  }
  if (!(await exists(CNI_WRAPPER))) missing.push({ what: CNI_WRAPPER, fix: 'a complete checkout of the repository' });
  return missing;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

