/**
 * Runs inputs in a child process (`worker.ts`) with a time limit per input. The child handles
 * inputs one after another (starting a process per input would cost more than most inputs); an
 * input that overruns the limit gets the child's JavaScript stack taken (where it hangs), then the child is killed and the next input starts a new one. A child
 * that dies during an input (out of memory, a native crash) counts that input as an exception.
 * The stack of a hang is taken by a watchdog thread in the child (watchdog.ts): a busy main
 * thread answers no signal.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EntryName } from './entries.js';
import type { Escaped } from './worker.js';

/** The limit per input: issue 19's "hang". */
export const DEFAULT_LIMIT_MS = 2000;

/** How the runner judges an input. */
export type Outcome = 'accepted' | 'clean' | 'exception' | 'hang';

export interface RunResult {
  readonly outcome: Outcome;
  readonly detail?: string;
  /** For `exception`. */
  readonly error?: Escaped;
  /** For `hang`: the JavaScript frames when the limit passed (innermost first), as far as the report got them. */
  readonly frames?: readonly string[];
}

export interface PoolOptions {
  readonly limitMs?: number;
  /** Heap limit of the child (MiB): an input that needs more crashes it, which is a finding too. */
  readonly heapMiB?: number;
  /** Loopback address of the SOCKS5 listener in the child. */
  readonly socksHost?: string;
}

// The child always runs the built worker: from the sources (a test importing this file through
// tap's loader) that is dist/fuzz/worker.js, which `npm test`'s pretest builds.
const WORKER = import.meta.url.endsWith('.ts')
  ? fileURLToPath(new URL('../dist/fuzz/worker.js', import.meta.url))
  : fileURLToPath(new URL('./worker.js', import.meta.url));

interface Pending {
  readonly id: number;
  readonly resolve: (r: RunResult) => void;
  readonly timer: NodeJS.Timeout;
}

/** One child at a time; `run` calls must not overlap (the runner awaits each). */
export class WorkerPool {
  readonly #limitMs: number;
  readonly #heapMiB: number;
  readonly #socksHost: string;
  readonly #reportDir = mkdtempSync(join(tmpdir(), 'fuzz-report-'));
  #child: ChildProcess | undefined;
  #ready: Promise<void> | undefined;
  #pending: Pending | undefined;
  #nextId = 1;
  /** Exceptions the child reported outside any input (a timer firing after the answer). */
  readonly late: Escaped[] = [];
  restarts = 0;

  constructor(opts: PoolOptions = {}) {
    this.#limitMs = opts.limitMs ?? DEFAULT_LIMIT_MS;
    this.#heapMiB = opts.heapMiB ?? 1536;
    this.#socksHost = opts.socksHost ?? '127.0.0.1';
  }

  #start(): Promise<void> {
    const child = fork(WORKER, [], {
      execArgv: [
        '--enable-source-maps',
        `--max-old-space-size=${this.#heapMiB}`,
      ],
      env: { ...process.env, FUZZ_SOCKS_HOST: this.#socksHost, FUZZ_LIMIT_MS: String(this.#limitMs), FUZZ_STACK_FILE: join(this.#reportDir, 'stack.json') },
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      serialization: 'advanced',
    });
    this.#child = child;
    this.#ready = new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null) => {
        if (this.#child === child) this.#child = undefined;
        reject(new Error(`fuzz worker exited before it was ready (${signal ?? code})`));
        this.#settle({ outcome: 'exception', error: { name: 'ProcessExit', message: `the worker died during the input (${signal ?? `exit ${code}`})`, stack: '' } });
      };
      child.on('exit', onExit);
      child.on('message', (m: Omit<RunResult, 'outcome'> & { id: number; outcome: RunResult['outcome'] | 'ready' }) => {
        if (m.outcome === 'ready') return resolve();
        if (m.id === -1) {
          // A late exception belongs to the input in flight, if any; else it is reported apart.
          if (this.#pending) this.#settle({ outcome: 'exception', ...(m.error ? { error: m.error } : {}) });
          else if (m.error) this.late.push(m.error);
          return;
        }
        if (this.#pending?.id !== m.id) return;
        this.#settle(m as RunResult & { id: number });
      });
    });
    return this.#ready;
  }

  #settle(r: RunResult): void {
    const p = this.#pending;
    if (!p) return;
    this.#pending = undefined;
    clearTimeout(p.timer);
    p.resolve(r);
  }

  /** Runs one input; resolves with its outcome (never rejects for anything the input does). */
  async run(entry: EntryName, input: unknown): Promise<RunResult> {
    if (this.#pending) throw new Error('invariant: WorkerPool.run calls do not overlap');
    if (!this.#child) await this.#start();
    else await this.#ready;
    const child = this.#child!;
    const id = this.#nextId++;
    return new Promise<RunResult>((resolve) => {
      const timer = setTimeout(() => void this.#overrun(child, id), this.#limitMs);
      this.#pending = { id, resolve, timer };
      child.send({ id, entry, input });
    });
  }

  async #overrun(child: ChildProcess, id: number): Promise<void> {
    if (this.#pending?.id !== id) return;
    const frames = await this.#stackOf(id);
    this.#kill(child);
    this.#settle({ outcome: 'hang', frames });
  }

  /** The child's JavaScript stack, as its watchdog thread took it (watchdog.ts). */
  async #stackOf(id: number): Promise<string[]> {
    const file = join(this.#reportDir, 'stack.json');
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      if (existsSync(file)) {
        try {
          const s = JSON.parse(readFileSync(file, 'utf8')) as { id: number; frames: string[] };
          if (s.id === id) return s.frames;
        } catch {
          // still being written
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return [];
  }

  #kill(child: ChildProcess): void {
    this.restarts++;
    if (this.#child === child) this.#child = undefined;
    child.removeAllListeners('exit');
    child.kill('SIGKILL');
  }

  /** Stops the child and removes the report directory. */
  close(): void {
    if (this.#child) {
      this.#child.removeAllListeners('exit');
      this.#child.kill('SIGKILL');
      this.#child = undefined;
    }
    rmSync(this.#reportDir, { recursive: true, force: true });
  }
}
