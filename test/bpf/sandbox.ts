/**
 * Root-only fixtures for the eBPF tests: cgroups, network namespaces, bpf pin dirs and actor
 * processes, all named with a per-process unique prefix and removed by `cleanup()` even when a
 * test fails. Register `t.teardown(() => sb.cleanup())` before creating anything.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, rmdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BpfLoader } from '../../bpf/loader.js';
import { cgroup2Root } from '../../bpf/kernel.js';
import { removeCgroup } from '../../lab/sys.js';

const AGENT = fileURLToPath(new URL('./fixtures/agent.mjs', import.meta.url));
let sandboxes = 0;

export function sh(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

async function which(cmd: string): Promise<boolean> {
  try {
    await sh('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** Why the root eBPF tests cannot run here, or false when they can. */
export async function bpfSkipReason(opts: { netns?: boolean } = {}): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'needs root: creates cgroups, bpf pins and network namespaces';
  try {
    await BpfLoader.checkKernel();
  } catch (err) {
    return `ebpf is not available on this machine: ${(err as Error).message}`;
  }
  if (opts.netns) {
    for (const cmd of ['ip', 'nsenter']) if (!(await which(cmd))) return `${cmd} is not installed (iproute2, util-linux)`;
  }
  return false;
}

export interface Reply {
  readonly id: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly port?: number;
  readonly reply?: { tag: string; local: string; localPort: number; remote: string; remotePort: number };
  readonly local?: string;
  readonly localPort?: number;
  readonly remote?: string;
  readonly remotePort?: number;
}

/** A test/bpf/fixtures/agent.mjs process. */
export class Agent {
  private nextId = 1;
  private readonly pending = new Map<number, (r: Reply) => void>();
  private stderr = '';
  /** Resolves true once the agent runs, false if it exited first. */
  readonly ready: Promise<boolean>;

  constructor(readonly child: ChildProcess) {
    let onReady: (ok: boolean) => void = () => {};
    this.ready = new Promise((resolve) => (onReady = resolve));
    child.once('exit', () => onReady(false));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as Reply & { ready?: boolean };
      if (msg.ready) onReady(true);
      this.pending.get(msg.id)?.(msg);
      this.pending.delete(msg.id);
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  get errors(): string {
    return this.stderr;
  }

  request(cmd: Record<string, unknown>): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onExit = () => reject(new Error(`agent exited: ${this.stderr.trim()}`));
      this.child.once('exit', onExit);
      this.pending.set(id, (r) => {
        this.child.off('exit', onExit);
        resolve(r);
      });
      this.child.stdin!.write(`${JSON.stringify({ ...cmd, id })}\n`);
    });
  }

  async listen(host: string, port: number, tag: string, opts: { ipv6Only?: boolean } = {}): Promise<void> {
    const r = await this.request({ op: 'listen', host, port, tag, ...opts });
    if (!r.ok) throw new Error(`listen ${host}:${port} (${tag}) failed: ${r.error}`);
  }

  async close(tag: string): Promise<void> {
    await this.request({ op: 'close', tag });
  }

  connect(host: string, port: number, opts: { localAddress?: string; localPort?: number; timeoutMs?: number } = {}): Promise<Reply> {
    return this.request({ op: 'connect', host, port, ...opts });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }
}

export class Sandbox {
  readonly prefix = `amb-bpf-${process.pid}-${++sandboxes}`;
  /** Parent of every pin dir this process creates. */
  static readonly pinRoot = `/sys/fs/bpf/amb-test-${process.pid}`;
  private readonly cleanups: Array<() => Promise<unknown>> = [];

  private constructor(readonly cgroupRoot: string) {}

  static async create(): Promise<Sandbox> {
    const root = await cgroup2Root();
    if (!root) throw new Error('no cgroup2 mount');
    return new Sandbox(root);
  }

  /** Runs every cleanup, newest first; collects failures instead of stopping at the first. */
  async cleanup(): Promise<void> {
    const failures: string[] = [];
    while (this.cleanups.length > 0) {
      const fn = this.cleanups.pop()!;
      try {
        await fn();
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    if (failures.length > 0) throw new Error(`cleanup of ${this.prefix} incomplete:\n${failures.join('\n')}`);
  }

  defer(fn: () => Promise<unknown>): void {
    this.cleanups.push(fn);
  }

  async cgroup(name: string): Promise<string> {
    const path = join(this.cgroupRoot, `${this.prefix}-${name}`);
    this.defer(() => removeCgroup(path));
    await mkdir(path);
    return path;
  }

  /** A network namespace; returns its name and its /var/run/netns path. */
  async netns(name: string): Promise<{ name: string; path: string }> {
    const ns = `${this.prefix}-${name}`;
    this.defer(() => sh('ip', ['netns', 'del', ns]));
    await sh('ip', ['netns', 'add', ns]);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return { name: ns, path: `/var/run/netns/${ns}` };
  }

  pinDir(name: string): string {
    const dir = join(Sandbox.pinRoot, `${this.prefix}-${name}`);
    this.defer(async () => {
      await rm(dir, { recursive: true, force: true });
      // The shared parent goes with the last sandbox of this process.
      if ((await readdir(Sandbox.pinRoot).catch(() => ['x'])).length === 0) await rmdir(Sandbox.pinRoot).catch(() => {});
    });
    return dir;
  }

  /** Starts an agent that joins `cgroup` (before node even starts) and runs inside `netns`. */
  async agent(opts: { cgroup?: string; netns?: string } = {}): Promise<Agent> {
    const cmd: string[] = [];
    if (opts.netns) cmd.push('nsenter', `--net=${opts.netns}`, '--');
    cmd.push(process.execPath, AGENT);
    // Join the cgroup first: `ip netns exec` would remount /sys, nsenter --net does not.
    const script = opts.cgroup ? 'echo $$ > "$1" && shift && exec "$@"' : 'shift && exec "$@"';
    const child = spawn('sh', ['-c', script, 'sh', opts.cgroup ? join(opts.cgroup, 'cgroup.procs') : '-', ...cmd], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const agent = new Agent(child);
    this.defer(() => agent.kill());
    if (!(await agent.ready)) throw new Error(`agent did not start (cgroup ${opts.cgroup ?? '-'}, netns ${opts.netns ?? '-'}): ${agent.errors.trim()}`);
    return agent;
  }
}

