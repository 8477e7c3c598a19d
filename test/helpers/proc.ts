import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { until } from './until.js';

export const ZTUNNEL_MAIN = fileURLToPath(new URL('../../dist/ztunnel/main.js', import.meta.url));

export interface Proc {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `node dist/ztunnel/main.js` (compiled: the data path never runs through a TS loader). */
export function startZtunnelProcess(env: Record<string, string>): Proc {
  return startNodeProcess(ZTUNNEL_MAIN, env);
}

/** How `startNodeProcess` runs node. */
export interface NodeProcessOptions {
  /** Arguments to node itself (e.g. `--max-old-space-size=259`). */
  readonly nodeArgs?: readonly string[];
  /**
   * Run as operators do: without the NODE_OPTIONS tap puts in every child (its process-info hook
   * keeps the source of every module loaded, about 230 MiB), through `env -u NODE_OPTIONS`, which
   * execs node, so the pid is node's. For measuring a process's memory.
   */
  readonly withoutTapHook?: boolean;
}

/** Starts a compiled entry point with only PATH and `env` in its environment; output is captured. */
export function startNodeProcess(main: string, env: Record<string, string>, opts: NodeProcessOptions = {}): Proc {
  const node = [process.execPath, ...(opts.nodeArgs ?? []), main];
  const [command, ...args] = opts.withoutTapHook ? ['env', '-u', 'NODE_OPTIONS', ...node] : node;
  const child = spawn(command!, args, {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // A test process killed by its runner must not leave ztunnels behind.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  const exited = once(child, 'exit').then(([code, signal]) => {
    process.off('exit', reap);
    return (code ?? signal) as number | string;
  });
  return {
    child,
    output: () => out,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

/** Polls an HTTP URL until it answers `status`. */
export async function waitForStatus(url: string, status: number, timeoutMs = 10_000): Promise<void> {
  await until(
    `${url} to answer ${status}`,
    async () => {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.status !== status) throw new Error(`status ${res.status}`);
      return true;
    },
    { timeoutMs, everyMs: 50 },
  );
}
