import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessTracker } from './procs.js';

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

/** What a benchmark's `main` differs in; `runBench` does the rest. */
export interface BenchMain<A extends { help?: boolean; json?: boolean; output?: string }, R> {
  readonly parse: (argv: readonly string[]) => A;
  readonly usage: string;
  /** Prefix of the run's temp dir under the OS temp dir. */
  readonly tmpPrefix: string;
  readonly run: (procs: ProcessTracker, dir: string, args: A) => Promise<R>;
  readonly renderText: (report: R) => string;
  readonly renderJson: (report: R) => string;
  /** Exit code of a finished run (e.g. 1 under `--strict` when something fell short). */
  readonly exitCode: (report: R, args: A) => number;
  readonly log: (msg: string) => void;
}

/**
 * A benchmark's `main`: parse (exit 2 on a usage error), `--help`, a temp dir and the process
 * tracker under `installTeardown`, run, print (text or JSON, and `--output`), exit 130 when
 * interrupted; every child stopped and the temp dir removed however it ends.
 */
export async function runBench<A extends { help?: boolean; json?: boolean; output?: string }, R>(
  argv: readonly string[],
  m: BenchMain<A, R>,
  isUsageError: (err: unknown) => boolean,
): Promise<number> {
  let args: A;
  try {
    args = m.parse(argv);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return isUsageError(err) || isParseArgsError(err) ? 2 : 1;
  }
  if (args.help) {
    process.stdout.write(`${m.usage}\n`);
    return 0;
  }
  const procs = new ProcessTracker();
  const dir = mkdtempSync(join(tmpdir(), m.tmpPrefix));
  const teardown = installTeardown(procs, dir, m.log);
  try {
    const report = await m.run(procs, dir, args);
    process.stdout.write(args.json ? m.renderJson(report) : m.renderText(report));
    if (args.output) writeFileSync(args.output, m.renderJson(report));
    if (procs.wasInterrupted) return 130;
    return m.exitCode(report, args);
  } catch (err) {
    m.log(`run failed: ${err instanceof Error ? err.message : String(err)}`);
    return procs.wasInterrupted ? 130 : 1;
  } finally {
    await procs.stopAll();
    teardown();
  }
}
