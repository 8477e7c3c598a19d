import { rmSync } from 'node:fs';
import type { ProcessTracker } from './procs.js';

/**
 * Ctrl-C / SIGTERM stop every child and let the caller's `main` unwind; a second signal, an
 * uncaught exception or any other exit kills what is left synchronously and removes the temp dir.
 * Returns the normal-path cleanup.
 *
 * @example
 * const teardown = installTeardown(procs, dir, log);
 * try { await run(); } finally { await procs.stopAll(); teardown(); }
 */
export function installTeardown(procs: ProcessTracker, dir: string, log: (msg: string) => void): () => void {
  const lastResort = (): void => {
    procs.killAllNow();
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (procs.wasInterrupted) {
      lastResort();
      process.exit(130);
    }
    log(`${signal}: stopping everything`);
    void procs.interrupt();
  };
  process.on('exit', lastResort);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    lastResort();
  };
}

/** True for the errors `util.parseArgs` throws on a bad command line (unknown flag, missing value). */
export function isParseArgsError(err: unknown): boolean {
  return typeof (err as { code?: unknown })?.code === 'string' && String((err as { code: string }).code).startsWith('ERR_PARSE_ARGS');
}
