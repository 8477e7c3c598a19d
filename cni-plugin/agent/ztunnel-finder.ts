/**
 * `ZTUNNEL_CGROUP=auto`: finds the cgroup(s) of the process(es) holding ztunnel's listening
 * sockets, from the host's view. ztunnel runs on the host network, so its listeners are sockets
 * of the agent's own network namespace (`/proc/net/tcp{,6}`); their inodes lead to the owning
 * processes through `/proc/PID/fd` (needs the host's PID namespace: hostPID), and
 * `/proc/PID/cgroup` to their cgroup, mapped under the host's cgroup v2 root.
 *
 * `find()` is meant to run every second: it reads the two socket tables (cheap) and walks the
 * processes only when the set of listening inodes changed (a ztunnel started, stopped or handed
 * over to its successor). During a rolling update both ztunnels are found while both listen.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isOutsideNamespace, parseCgroupV2, parseProcNetTcp, podLevelCgroup, socketInode, TCP_LISTEN } from '../../core/net/proc-net.js';

/** One process holding one of ztunnel's listening sockets. */
export interface ZtunnelProcess {
  readonly pid: number;
  /** The cgroup the hooks go on (pod level in Kubernetes), absolute under the host's root. */
  readonly cgroup: string;
  /** `address:port` of the listener that led to it. */
  readonly listener: string;
}

export interface ZtunnelScan {
  /** False when the listening sockets are the same as at the previous call (nothing was re-scanned). */
  readonly changed: boolean;
  readonly processes: readonly ZtunnelProcess[];
  /** Distinct cgroups of `processes`, sorted. */
  readonly cgroups: readonly string[];
  /** Listeners whose owner could not be found or placed, with what to check. */
  readonly problems: readonly string[];
}

export interface ZtunnelFinderInputs {
  /** Where procfs is mounted: `/proc`, or the host's mounted elsewhere (PROC_ROOT). */
  readonly procRoot: string;
  /** The host's cgroup v2 root as the agent sees it. */
  readonly cgroupRoot: string;
  /** ztunnel's address: listeners on it, or on the wildcard address, count. */
  readonly ztunnelIp: string;
  /** ztunnel's outbound port and its HBONE port. */
  readonly ports: readonly number[];
  /**
   * The cgroup v2 path of a process as the host's cgroup namespace shows it. Used only when the
   * agent itself is in a nested cgroup namespace (a container's default on cgroup v2), where its
   * own reading of /proc/PID/cgroup is relative (`/../../...`). Default: read it through
   * `nsenter --cgroup=<procRoot>/1/ns/cgroup` (the host's init).
   */
  readonly hostCgroupPathOf?: (pid: number) => Promise<string | undefined>;
}

export class ZtunnelFinder {
  readonly describe: string;
  private lastKey: string | undefined;
  private last: ZtunnelScan = { changed: false, processes: [], cgroups: [], problems: [] };

  constructor(private readonly inputs: ZtunnelFinderInputs) {
    this.describe = `the processes listening on ${inputs.ztunnelIp} (or the wildcard) ports ${inputs.ports.join(', ')}, found through ${inputs.procRoot}`;
  }

  /** Listening sockets of ztunnel's ports on its address: inode → `address:port`. */
  async listeners(): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const v4 = this.inputs.ztunnelIp;
    const wanted = new Set([v4, '0.0.0.0', '::', `::ffff:${v4}`]);
    for (const file of ['tcp', 'tcp6']) {
      let text: string;
      try {
        text = await readFile(join(this.inputs.procRoot, 'net', file), 'utf8');
      } catch (err) {
        // No IPv6 in this kernel: no tcp6 file.
        if (file === 'tcp6' && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const s of parseProcNetTcp(text)) {
        if (s.state !== TCP_LISTEN || s.inode === 0 || !this.inputs.ports.includes(s.localPort) || !wanted.has(s.localAddress)) continue;
        out.set(s.inode, `${s.localAddress}:${s.localPort}`);
      }
    }
    return out;
  }

  /** Re-resolves when the listening sockets changed; otherwise returns the previous answer with `changed: false`. */
  async find(): Promise<ZtunnelScan> {
    const listeners = await this.listeners();
    const key = [...listeners.keys()].sort((a, b) => a - b).join(',');
    if (key === this.lastKey) return { ...this.last, changed: false };
    const owners = await this.owners(listeners, this.last.processes.map((p) => p.pid));
    const processes: ZtunnelProcess[] = [];
    const problems: string[] = [];
    for (const [inode, listener] of listeners) {
      const pids = owners.get(inode) ?? [];
      if (pids.length === 0) problems.push(`no process visible in ${this.inputs.procRoot} holds the socket listening on ${listener} (inode ${inode}); the agent needs the host's PID namespace (hostPID: true)`);
      for (const pid of pids) {
        // A process that cannot be placed is a problem of this scan (reported, retried), not a throw.
        const placed = await this.cgroupOf(pid).catch((err: Error) => ({ problem: err.message }));
        if ('problem' in placed) problems.push(`process ${pid} listening on ${listener}: ${placed.problem}`);
        else if (!processes.some((p) => p.pid === pid && p.cgroup === placed.cgroup)) processes.push({ pid, cgroup: placed.cgroup, listener });
      }
    }
    const cgroups = [...new Set(processes.map((p) => p.cgroup))].sort();
    const changed = cgroups.join('\n') !== this.last.cgroups.join('\n');
    // A scan that could not place a listener is retried at the next call rather than cached.
    this.lastKey = problems.length === 0 ? key : undefined;
    this.last = { changed, processes, cgroups, problems };
    return this.last;
  }

  /**
   * Which processes hold these socket inodes. The previous owners are looked at first: when
   * they explain every inode, the other processes are not read.
   */
  private async owners(listeners: Map<number, string>, previous: readonly number[]): Promise<Map<number, number[]>> {
    const found = new Map<number, number[]>();
    const scan = async (pid: number) => {
      let fds: string[];
      try {
        fds = await readdir(join(this.inputs.procRoot, String(pid), 'fd'));
      } catch {
        return; // gone, or not ours to read
      }
      for (const fd of fds) {
        let link: string;
        try {
          link = await readlink(join(this.inputs.procRoot, String(pid), 'fd', fd));
        } catch {
          continue;
        }
        const inode = socketInode(link);
        if (inode !== undefined && listeners.has(inode)) {
          const pids = found.get(inode) ?? [];
          if (!pids.includes(pid)) pids.push(pid);
          found.set(inode, pids);
        }
      }
    };
    for (const pid of previous) await scan(pid);
    if ([...listeners.keys()].every((i) => found.has(i))) return found;
    found.clear();
    const pids = (await readdir(this.inputs.procRoot)).filter((d) => /^\d+$/.test(d)).map(Number);
    // A few at a time: a node has hundreds of processes, each read is a syscall or two.
    let next = 0;
    const worker = async () => {
      while (next < pids.length) await scan(pids[next++]!);
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return found;
  }

  /** The process's pod-level cgroup, or why it has none the agent can use; rejects only when /proc cannot be read. */
  private async cgroupOf(pid: number): Promise<{ cgroup: string } | { problem: string }> {
    const text = await readFile(join(this.inputs.procRoot, String(pid), 'cgroup'), 'utf8');
    let path = parseCgroupV2(text);
    if (path === undefined) return { problem: 'it is in no cgroup v2 hierarchy (no 0:: line in its cgroup file)' };
    if (isOutsideNamespace(path)) {
      const host = await (this.inputs.hostCgroupPathOf ?? ((p) => hostCgroupPath(this.inputs.procRoot, p)))(pid);
      if (host === undefined || isOutsideNamespace(host)) {
        return { problem: `its cgroup ${path} is outside the agent's cgroup namespace and could not be read from the host's (nsenter --cgroup needs CAP_SYS_ADMIN)` };
      }
      path = host;
    }
    return { cgroup: join(this.inputs.cgroupRoot, podLevelCgroup(path)) };
  }
}

/** Reads /proc/PID/cgroup from the host's cgroup namespace (that of `procRoot`/1, the host's init). */
function hostCgroupPath(procRoot: string, pid: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('nsenter', [`--cgroup=${join(procRoot, '1', 'ns', 'cgroup')}`, '--', 'cat', join(procRoot, String(pid), 'cgroup')], { timeout: 5000 }, (err, stdout) => {
      resolve(err ? undefined : parseCgroupV2(stdout));
    });
  });
}
