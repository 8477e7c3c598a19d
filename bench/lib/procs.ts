import { spawn, type ChildProcess } from 'node:child_process';
import { InterruptedError, PrerequisiteMissingError, ToolFailedError } from './errors.js';

/** How a process ended. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A long-running process (server, proxy) the tracker owns until teardown. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  /** Settles once the process has exited and its output is read; never rejects. */
  readonly exited: Promise<ExitInfo>;
  isRunning(): boolean;
  /** How it ended; undefined while it runs. */
  exitInfo(): ExitInfo | undefined;
  /** The last few KB of stdout+stderr, for error messages. */
  outputTail(): string;
}

/** Output of a process run to completion. */
export interface RunResult extends ExitInfo {
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link ProcessTracker.start}. */
export interface SpawnOpts {
  /** Added to (and overriding) the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Options of {@link ProcessTracker.run}. */
export interface RunOpts extends SpawnOpts {
  /** The process group gets SIGKILL after this long and the run fails. */
  readonly timeoutMs: number;
}

/** SIGKILL follows SIGTERM after this long; the ztunnel contract gives it 5 s to drain. */
export const DEFAULT_GRACE_MS = 5_000;
const TAIL_LIMIT = 8_192;

/** Captured output of one child: either everything (clients) or a bounded tail (servers). */
class Output {
  private chunks: string[] = [];
  private size = 0;
  constructor(private readonly limit: number) {}
  push(s: string): void {
    this.chunks.push(s);
    this.size += s.length;
    if (this.size > this.limit * 2) this.chunks = [this.text()];
  }
  text(): string {
    const all = this.chunks.join('');
    return all.length > this.limit ? all.slice(-this.limit) : all;
  }
}

/**
 * Starts every child of the benchmark in its own process group and remembers it, so teardown can
 * signal whole groups: on a normal end, on an exception, and on Ctrl-C (the children are not in
 * the terminal's foreground group, so only we can stop them).
 *
 * @example
 * const procs = new ProcessTracker();
 * const srv = await procs.start('iperf3 server', 'iperf3', ['-s']);
 * const res = await procs.run('iperf3 client', 'iperf3', ['-c', '127.0.0.1', '-J'], { timeoutMs: 30_000 });
 * await procs.stopAll();
 */
export class ProcessTracker {
  private readonly live = new Map<number, ManagedProcess>();
  private interrupted = false;

  /** Spawns a long-running process; resolves once it has a pid, rejects when it cannot start. */
  async start(name: string, command: string, args: readonly string[], opts: SpawnOpts = {}): Promise<ManagedProcess> {
    const { proc } = await this.spawnTracked(name, command, args, opts, TAIL_LIMIT);
    return proc;
  }

  /** Runs a process to completion and returns its output; a non-zero exit is left to the caller. */
  async run(name: string, command: string, args: readonly string[], opts: RunOpts): Promise<RunResult> {
    const { proc, stdout, stderr } = await this.spawnTracked(name, command, args, opts, Number.MAX_SAFE_INTEGER);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(proc.pid, 'SIGKILL');
    }, opts.timeoutMs);
    const info = await proc.exited;
    clearTimeout(timer);
    if (this.interrupted) throw new InterruptedError();
    if (timedOut) {
      throw new ToolFailedError(name, `no result within ${opts.timeoutMs} ms, killed`, proc.outputTail());
    }
    return { ...info, stdout: stdout.text(), stderr: stderr.text() };
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves once the leader has exited. */
  async stop(proc: ManagedProcess, graceMs = DEFAULT_GRACE_MS): Promise<void> {
    if (!proc.isRunning()) return;
    signalGroup(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(proc.pid, 'SIGKILL'), graceMs);
    await proc.exited;
    clearTimeout(timer);
    // Anything the leader left behind shares its group.
    signalGroup(proc.pid, 'SIGKILL');
  }

  /** Stops every tracked process, in parallel. */
  async stopAll(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    await Promise.all([...this.live.values()].map((p) => this.stop(p, graceMs)));
  }

  /** Marks the run interrupted: later starts fail, running processes are stopped. */
  async interrupt(): Promise<void> {
    this.interrupted = true;
    await this.stopAll(1_000);
  }

  /** True once {@link interrupt} was called. */
  get wasInterrupted(): boolean {
    return this.interrupted;
  }

  /** Synchronous last resort for `process.on('exit')`: SIGKILL to every group still alive. */
  killAllNow(): void {
    for (const pid of this.live.keys()) signalGroup(pid, 'SIGKILL');
    this.live.clear();
  }

  private async spawnTracked(
    name: string,
    command: string,
    args: readonly string[],
    opts: SpawnOpts,
    limit: number,
  ): Promise<{ proc: ManagedProcess; stdout: Output; stderr: Output }> {
    if (this.interrupted) throw new InterruptedError();
    const child = await spawnGroup(command, args, opts);
    const pid = child.pid as number;
    const stdout = new Output(limit);
    const stderr = new Output(limit);
    const tail = new Output(TAIL_LIMIT);
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout.push(s), tail.push(s)));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr.push(s), tail.push(s)));
    let ended: ExitInfo | undefined;
    const exited = exitOf(child).then((info) => {
      ended = info;
      this.live.delete(pid);
      return info;
    });
    const proc: ManagedProcess = {
      name,
      pid,
      exited,
      isRunning: () => ended === undefined,
      exitInfo: () => ended,
      outputTail: () => tail.text(),
    };
    this.live.set(pid, proc);
    return { proc, stdout, stderr };
  }
}

async function spawnGroup(command: string, args: readonly string[], opts: SpawnOpts): Promise<ChildProcess> {
  const child = spawn(command, [...args], {
    detached: true, // own process group: signalled as a whole, and not by the terminal's Ctrl-C
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new PrerequisiteMissingError(`program ${command}`, 'install it (see docs/benchmarks.md)')
          : err,
      );
    });
  });
  return child;
}

function exitOf(child: ChildProcess): Promise<ExitInfo> {
  // 'close' rather than 'exit': by then all output has been read.
  return new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}
