/** What every command gets from `ambientctl.ts`: the target, its output streams, its environment. */
import type { Command } from 'commander';
import type { MeshBackend } from './backend.js';
import { openTarget, type TargetOptions } from './target.js';

export interface CliContext {
  /** This CLI's version (package.json). */
  readonly clientVersion: string;
  /** The environment, read once at the edge. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Opens the target chosen by the global options of `cmd` (see target.ts). */
  target(cmd: Command): Promise<MeshBackend>;
  /** The global options merged with the command's own. */
  options<T>(cmd: Command): T & TargetOptions;
  /** A result line (or block) on stdout. */
  out(text: string): void;
  /** A warning or note on stderr. */
  warn(text: string): void;
}

/**
 * The real context: stdout/stderr of this process.
 *
 * @example
 * const ctx = processContext({ clientVersion: '0.1.0', env: process.env });
 */
export function processContext(inputs: { clientVersion: string; env: Readonly<Record<string, string | undefined>> }): CliContext {
  const options = <T>(cmd: Command) => cmd.optsWithGlobals() as T & TargetOptions;
  return {
    clientVersion: inputs.clientVersion,
    env: inputs.env,
    options,
    target: (cmd) =>
      openTarget(options<object>(cmd), {
        env: {
          ...(inputs.env['KUBECONFIG'] !== undefined ? { KUBECONFIG: inputs.env['KUBECONFIG'] } : {}),
          ...(inputs.env['HOME'] !== undefined ? { HOME: inputs.env['HOME'] } : {}),
        },
        clientVersion: inputs.clientVersion,
      }),
    out: (text) => process.stdout.write(`${text}\n`),
    warn: (text) => process.stderr.write(`${text}\n`),
  };
}
