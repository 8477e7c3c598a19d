/**
 * The lab's contact with the machine: commands, detached processes with their pids and log files,
 * cgroups, and HTTP requests made from inside a network namespace. Everything here takes explicit
 * paths and names; nothing reads global state.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DIST } from './components.js';

/** The built-in programs that `lab/<name>` image names and `lab exec` commands map to. */
export const IMAGES_DIR = join(DIST, 'lab/images');
/** Debian's containernetworking-plugins. */
export const SYSTEM_CNI_DIR = '/usr/lib/cni';

export class LabCommandError extends Error {
  readonly code = 'ERR_LAB_COMMAND_FAILED';
}

/** Runs a command; rejects with its stderr. */
export function sh(file: string, args: readonly string[], opts: { input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, [...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new LabCommandError(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

export async function have(cmd: string): Promise<boolean> {
  return sh('sh', ['-c', 'command -v "$1"', 'sh', cmd]).then(
    () => true,
    () => false,
  );
}

/**
 * The argv that runs `argv` the way a container runtime runs a container's process: it joins
 * `cgroup` first (so every socket it makes is the cgroup's, and the eBPF hooks see it), then enters
 * `netns` with nsenter (`ip netns exec` would remount /sys). With `hosts`, it also gets a private
 * mount namespace with that file bind-mounted on /etc/hosts (Service names without a DNS server);
 * with `exitFile`, its exit status is written there.
 */
export function podArgv(argv: readonly string[], opts: { cgroup?: string; netns?: string; hosts?: string; exitFile?: string }): string[] {
  let cmd = [...argv];
  if (opts.hosts) {
    const inner = opts.exitFile
      ? 'mount --bind "$0" /etc/hosts || exit 1; f=$1; shift; "$@"; c=$?; echo $c > "$f"; exit $c'
      : 'mount --bind "$0" /etc/hosts || exit 1; exec "$@"';
    cmd = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', inner, opts.hosts, ...(opts.exitFile ? [opts.exitFile] : []), ...cmd];
  }
  if (opts.netns) cmd = ['nsenter', `--net=${opts.netns}`, '--', ...cmd];
  if (opts.cgroup) cmd = ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', opts.cgroup, ...cmd];
  return cmd;
}

/** Starts a process that outlives the CLI (own session, output appended to `log`); returns its pid. */
export function spawnDetached(argv: readonly string[], opts: { log: string; env: Record<string, string> }): number {
  const fd = openSync(opts.log, 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...opts.env },
    });
    child.unref();
    if (child.pid === undefined) throw new LabCommandError(`could not start ${argv[0]}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True when `pid` runs and its command line still contains `marker` (pids are reused). */
export async function alive(pid: number | undefined, marker: string): Promise<boolean> {
  if (!pid) return false;
  try {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // A zombie (state Z) has exited; its parent (the CLI) is gone or will reap it.
    if (/\) Z /.test(stat)) return false;
    return cmdline.includes(marker);
  } catch {
    return false;
  }
}

/** Resident memory of a process in KiB (0 when gone). */
export async function rssKib(pid: number | undefined): Promise<number> {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export async function killPid(pid: number | undefined, marker: string, graceMs = 3000): Promise<void> {
  if (!(await alive(pid, marker))) return;
  try {
    process.kill(pid!, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await alive(pid, marker))) return;
    await sleep(50);
  }
  try {
    process.kill(pid!, 'SIGKILL');
  } catch {
    // exited meanwhile
  }
}

/** Kills every process in a cgroup and removes it; a missing cgroup is fine. */
export async function removeCgroup(path: string): Promise<void> {
  try {
    await writeFile(join(path, 'cgroup.kill'), '1');
  } catch {
    // gone already, or a kernel before 5.14
  }
  for (let i = 0; i < 200; i++) {
    try {
      await rmdir(path);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw err;
    }
    await sleep(25);
  }
  throw new LabCommandError(`cgroup ${path} is still busy`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new LabCommandError(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

/** GET `url` from inside a network namespace (the lab's addresses exist only there). */
export function getInNetns(netns: string, url: string): Promise<string> {
  return sh('nsenter', [`--net=${netns}`, '--', process.execPath, join(IMAGES_DIR, 'get.js'), '--quiet', url]);
}
