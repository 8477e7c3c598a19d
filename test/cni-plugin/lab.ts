/**
 * Root-only fixtures for the CNI tests: network namespaces, cgroups, bpf pin dirs and processes,
 * all named `amb-cni-<pid>-<n>-...` and removed by `cleanup()` (newest first, every step tried even
 * when one fails). Create a Lab with `Lab.create(t)`: it registers the teardown before anything
 * exists.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cgroup2Root } from '../../bpf/kernel.js';
import { BpfLoader } from '../../bpf/loader.js';
import { removeCgroup } from '../../lab/sys.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const POD_APP = fileURLToPath(new URL('./fixtures/pod.mjs', import.meta.url));
export const AGENT_MAIN = join(REPO, 'dist/cni-plugin/agent/main.js');
export const ZTUNNEL_MAIN = join(REPO, 'dist/ztunnel/main.js');
export const WRAPPER = join(REPO, 'cni-plugin/bin/ambient-cni');
/** Debian's containernetworking-plugins. */
export const SYSTEM_CNI_DIR = '/usr/lib/cni';

let labs = 0;
/** Children still running; killed if the test process exits without its teardown (one listener for all). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export function sh(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

async function have(cmd: string): Promise<boolean> {
  return sh('sh', ['-c', `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

/** Why the root CNI tests cannot run here, or false. */
export async function labSkipReason(opts: { tcpdump?: boolean } = {}): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'needs root: creates network namespaces, cgroups and bpf pins';
  try {
    await BpfLoader.checkKernel();
  } catch (err) {
    return `ebpf is not available on this machine: ${(err as Error).message}`;
  }
  for (const cmd of ['ip', 'nsenter', ...(opts.tcpdump ? ['tcpdump'] : [])]) if (!(await have(cmd))) return `${cmd} is not installed`;
  for (const p of ['bridge', 'host-local', 'loopback']) {
    try {
      await readFile(join(SYSTEM_CNI_DIR, p));
    } catch {
      return `${SYSTEM_CNI_DIR}/${p} is missing (apt-get install containernetworking-plugins)`;
    }
  }
  try {
    await readFile(AGENT_MAIN);
    await readFile(ZTUNNEL_MAIN);
  } catch {
    return 'dist/ is not built (npm run build)';
  }
  return false;
}

/** A child process with its output kept, killed at cleanup. */
export class Proc {
  private out = '';
  readonly exited: Promise<number | string>;
  private readonly lineWaiters: Array<{ re: RegExp; resolve: () => void }> = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const onData = (d: Buffer) => {
      this.out += d.toString();
      for (const w of [...this.lineWaiters]) {
        if (w.re.test(this.out)) {
          this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
          w.resolve();
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    live.add(child);
    this.exited = once(child, 'exit').then(([code, signal]) => {
      live.delete(child);
      return (code ?? signal) as number | string;
    });
  }

  output(): string {
    return this.out;
  }

  /** How often `re` (global) matches the output so far. */
  count(re: RegExp): number {
    return [...this.out.matchAll(new RegExp(re.source, 'g'))].length;
  }

  /** Resolves once the output matches `re`; rejects when the process exits first or after `timeoutMs`. */
  async waitFor(re: RegExp, timeoutMs = 15_000): Promise<void> {
    if (re.test(this.out)) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.lineWaiters.push({ re, resolve })),
      this.exited.then((code) => {
        throw new Error(`${this.name} exited (${code}) before printing ${re}:\n${this.out.slice(-3000)}`);
      }),
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${this.name} did not print ${re} within ${timeoutMs} ms:\n${this.out.slice(-3000)}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<number | string> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill(signal);
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }
}

export interface PodAnswer {
  readonly ok: boolean;
  readonly error?: string;
  readonly hello?: string;
  readonly data?: string;
  readonly local?: string;
  readonly remote?: string;
  readonly connectMs?: number | number[];
  readonly firstByteMs?: number | number[];
  readonly ms?: number;
  readonly bytes?: number;
}

/** test/cni-plugin/fixtures/pod.mjs, driven over stdin/stdout. */
export class PodApp {
  private nextId = 1;
  private readonly pending = new Map<number, (a: PodAnswer) => void>();
  readonly ready: Promise<boolean>;

  constructor(readonly proc: Proc) {
    let onReady: (ok: boolean) => void = () => {};
    this.ready = new Promise((r) => (onReady = r));
    void proc.exited.then(() => {
      onReady(false);
      for (const p of this.pending.values()) p({ ok: false, error: `pod app exited: ${proc.output().slice(-500)}` });
      this.pending.clear();
    });
    readline.createInterface({ input: proc.child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as PodAnswer & { id?: number; ready?: boolean };
      if (msg.ready) onReady(true);
      if (msg.id !== undefined) {
        this.pending.get(msg.id)?.(msg);
        this.pending.delete(msg.id);
      }
    });
  }

  request(cmd: Record<string, unknown>): Promise<PodAnswer> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.proc.child.stdin!.write(`${JSON.stringify({ ...cmd, id })}\n`);
    });
  }

  async listen(port: number, op: 'listen' | 'sink' = 'listen'): Promise<void> {
    const r = await this.request({ op, port });
    if (!r.ok) throw new Error(`${op} ${port} failed: ${r.error}`);
  }

  connect(host: string, port: number, opts: { hold?: string; timeoutMs?: number } = {}): Promise<PodAnswer> {
    return this.request({ op: 'connect', host, port, ...opts });
  }

  echo(hold: string, data: string): Promise<PodAnswer> {
    return this.request({ op: 'echo', hold, data });
  }
}

export class Lab {
  readonly prefix = `amb-cni-${process.pid}-${++labs}`;
  private readonly cleanups: Array<{ what: string; fn: () => Promise<unknown> }> = [];

  private constructor(
    readonly cgroupRoot: string,
    readonly dir: string,
  ) {}

  /** Registers the cleanup with `t` before creating anything. */
  static async create(t: { teardown(fn: () => Promise<void>): void; testdir(): string }): Promise<Lab> {
    const root = await cgroup2Root();
    if (!root) throw new Error('no cgroup2 mount');
    const lab = new Lab(root, t.testdir());
    t.teardown(() => lab.cleanup());
    return lab;
  }

  defer(what: string, fn: () => Promise<unknown>): void {
    this.cleanups.push({ what, fn });
  }

  async cleanup(): Promise<void> {
    const failures: string[] = [];
    while (this.cleanups.length > 0) {
      const { what, fn } = this.cleanups.pop()!;
      try {
        await fn();
      } catch (err) {
        failures.push(`${what}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) throw new Error(`cleanup of ${this.prefix} incomplete:\n${failures.join('\n')}`);
  }

  /** A network namespace; `lo` is brought up unless the loopback CNI plugin is to do it. */
  async netns(name: string, opts: { lo?: boolean } = {}): Promise<{ name: string; path: string }> {
    const ns = `${this.prefix}-${name}`;
    this.defer(`netns ${ns}`, () => sh('ip', ['netns', 'del', ns]));
    await sh('ip', ['netns', 'add', ns]);
    if (opts.lo !== false) await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return { name: ns, path: `/var/run/netns/${ns}` };
  }

  /** A cgroup directly under the cgroup v2 root, named `<prefix>-<name>`. */
  async cgroup(name: string): Promise<string> {
    const path = join(this.cgroupRoot, `${this.prefix}-${name}`);
    this.defer(`cgroup ${path}`, () => removeCgroup(path));
    await mkdir(path);
    return path;
  }

  /** A pin dir `/sys/fs/bpf/<prefix>/<name>`, unloaded (detached everywhere) and removed at cleanup. */
  pinDir(name: string): string {
    const parent = `/sys/fs/bpf/${this.prefix}`;
    const dir = join(parent, name);
    this.defer(`pins ${dir}`, async () => {
      await new BpfLoader({ pinDir: dir, cgroupRoot: this.cgroupRoot }).unload();
      if ((await readdir(parent).catch(() => ['x'])).length === 0) await rmdir(parent).catch(() => {});
    });
    return dir;
  }

  /** A directory with a short path (Unix socket paths are limited to 107 bytes), removed at cleanup. */
  async shortDir(): Promise<string> {
    const dir = await mkdtemp(`/tmp/${this.prefix}-`);
    this.defer(`dir ${dir}`, () => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** A CNI_PATH holding Debian's plugins and ours (a symlink to the wrapper, as an installer makes). */
  async cniBinDir(): Promise<string> {
    const dir = join(this.dir, 'cni-bin');
    await mkdir(dir, { recursive: true });
    for (const p of ['bridge', 'host-local', 'loopback']) await symlink(join(SYSTEM_CNI_DIR, p), join(dir, p));
    await symlink(WRAPPER, join(dir, 'ambient-cni'));
    return dir;
  }

  /**
   * Starts a process that first joins `cgroup` (before node even starts, so every socket it
   * creates is the cgroup's), then enters `netns` with nsenter (`ip netns exec` would remount /sys).
   */
  spawn(name: string, argv: readonly string[], opts: { cgroup?: string; netns?: string; env?: Record<string, string> } = {}): Proc {
    const cmd = [...(opts.netns ? ['nsenter', `--net=${opts.netns}`, '--'] : []), ...argv];
    const script = opts.cgroup ? 'echo $$ > "$1" && shift && exec "$@"' : 'shift && exec "$@"';
    const child = spawn('sh', ['-c', script, 'sh', opts.cgroup ? join(opts.cgroup, 'cgroup.procs') : '-', ...cmd], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...opts.env },
    });
    child.stdin!.on('error', () => {});
    const proc = new Proc(name, child);
    this.defer(`process ${name}`, () => proc.stop('SIGKILL'));
    return proc;
  }

  async podApp(name: string, opts: { cgroup: string; netns: string }): Promise<PodApp> {
    const app = new PodApp(this.spawn(`pod ${name}`, [process.execPath, POD_APP], opts));
    if (!(await app.ready)) throw new Error(`pod app ${name} did not start: ${app.proc.output()}`);
    return app;
  }

  async writeFile(name: string, text: string): Promise<string> {
    const path = join(this.dir, name);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, text);
    return path;
  }

  async rm(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
  }
}


/** How the lab's waits poll (with test/helpers/until): its checks run commands, so every 50 ms. */
export const LAB_POLL = { everyMs: 50 } as const;
