import { execFile } from 'node:child_process';
import { MeshError } from '../core/errors.js';

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs an external program. Everything the loader does to the kernel goes through this one
 * interface (bpftool, mount), so tests can record or fake it.
 */
export interface CommandRunner {
  /** Resolves with the output on exit code 0; rejects with a {@link CommandError} otherwise. */
  run(file: string, args: readonly string[], opts?: { readonly input?: string }): Promise<CommandResult>;
}

/** A command that could not be started (`exitCode` null, `notFound` when not in PATH) or exited non-zero. */
export class CommandError extends MeshError {
  readonly file: string;
  readonly args: readonly string[];
  readonly exitCode: number | null;
  readonly notFound: boolean;
  readonly stdout: string;
  readonly stderr: string;
  constructor(f: { file: string; args: readonly string[]; exitCode: number | null; notFound: boolean; stdout: string; stderr: string }, options?: { cause?: unknown }) {
    super(
      'ERR_COMMAND_FAILED',
      f.notFound ? `${f.file} not found in PATH` : `${f.file} exited with ${f.exitCode ?? 'a signal'}`,
      options,
    );
    this.file = f.file;
    this.args = f.args;
    this.exitCode = f.exitCode;
    this.notFound = f.notFound;
    this.stdout = f.stdout;
    this.stderr = f.stderr;
  }
}

/** Why a whole bpftool run would hang: never; still, a wedged command must not wedge the agent. */
const DEFAULT_TIMEOUT_MS = 30_000;

/** The real thing: `execFile`, no shell. */
export function execFileRunner(opts: { timeoutMs?: number } = {}): CommandRunner {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return {
    run(file, args, runOpts) {
      return new Promise((resolve, reject) => {
        const child = execFile(file, [...args], { timeout, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
          if (!err) {
            resolve({ stdout, stderr });
            return;
          }
          const e = err as NodeJS.ErrnoException & { code?: unknown };
          reject(
            new CommandError(
              {
                file,
                args,
                exitCode: typeof e.code === 'number' ? e.code : null,
                notFound: e.code === 'ENOENT',
                stdout: stdout ?? '',
                stderr: stderr ?? '',
              },
              { cause: err },
            ),
          );
        });
        child.stdin?.on('error', () => {});
        if (runOpts?.input !== undefined) child.stdin?.end(runOpts.input);
        else child.stdin?.end();
      });
    },
  };
}
