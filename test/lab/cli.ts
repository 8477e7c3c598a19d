/** `ambientctl lab --prefix P ...` from dist/, for the lab tests: each file owns its own prefix. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/ambientctl.js', import.meta.url));

export interface LabResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** A runner of `lab` subcommands under `prefix`; never rejects: the exit code is in the result. */
export function labRunner(prefix: string, timeoutMs = 180_000): (...args: string[]) => Promise<LabResult> {
  return (...args) =>
    new Promise((resolve) => {
      execFile(process.execPath, [CLI, 'lab', '--prefix', prefix, ...args], { encoding: 'utf8', timeout: timeoutMs }, (err, out, errOut) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out, err: errOut });
      });
    });
}
