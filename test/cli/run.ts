/** Runs the built CLI (`node dist/cli/ambientctl.js`) as a real process, with a HOME of the test's own. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/ambientctl.js', import.meta.url));

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunningCli {
  readonly done: Promise<CliRun>;
  kill(): void;
}

/**
 * Starts `ambientctl ARGS`. The environment is only PATH, HOME (a directory without a kubeconfig
 * unless the test puts one there) and `env`, so nothing of the machine's own kubeconfig leaks in.
 */
export function startCli(args: readonly string[], opts: { home: string; env?: Record<string, string>; input?: string }): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: opts.home, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.input ?? '');
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      process.off('exit', reap);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
  return { done, kill: () => child.kill('SIGKILL') };
}

export function runCli(args: readonly string[], opts: { home: string; env?: Record<string, string>; input?: string }): Promise<CliRun> {
  return startCli(args, opts).done;
}

/** The CLI's contract for bad input: exit 1 and exactly one `ambientctl: ...` line on stderr, no stack. */
export function oneErrorLine(r: CliRun): string | undefined {
  if (r.code !== 1) return undefined;
  const lines = r.stderr.split('\n').filter(Boolean);
  const errors = lines.filter((l) => l.startsWith('ambientctl: '));
  if (errors.length !== 1 || lines.some((l) => /^\s+at /.test(l))) return undefined;
  return errors[0];
}
