import { parseArgs } from 'node:util';
import { PATH_NAMES, type PathName } from './paths/types.js';

/** Parsed command line of `npm run bench -- ...`. */
export interface BenchArgs {
  readonly json: boolean;
  /** Seconds per client step (three steps per path). */
  readonly durationSec: number;
  readonly paths: readonly PathName[];
  /** Overrides `dist/ztunnel/main.js`. */
  readonly ztunnelEntry: string | undefined;
  /** Also write the JSON report to this file (clean JSON even when npm prints its banner). */
  readonly output: string | undefined;
  /** Exit 1 when any path failed (default: only when the run itself could not start). */
  readonly strict: boolean;
  readonly help: boolean;
}

/** Default seconds per step: long enough for wrk's percentiles to settle on loopback. */
export const DEFAULT_DURATION_SEC = 5;
/** `--quick`: a smoke run, figures are noisy. */
export const QUICK_DURATION_SEC = 2;

/** Usage text of the benchmark. */
export const USAGE = `usage: npm run bench -- [options]
  --json               print one JSON object instead of the table
  --duration N         seconds per step (default ${DEFAULT_DURATION_SEC}); 3 steps per path
  --quick              same as --duration ${QUICK_DURATION_SEC}
  --only a,b           run only these paths (${PATH_NAMES.join(', ')}; direct is needed for added latency)
  --output FILE        also write the JSON object to FILE
  --ztunnel-entry F    ztunnel entry point (default dist/ztunnel/main.js)
  --strict             exit 1 when any path failed
  -h, --help           this text`;

/** Thrown for a bad command line; the message says what to use instead. */
export class UsageError extends Error {
  readonly code = 'ERR_BENCH_USAGE';
}

/**
 * Parses and checks the command line; every problem is collected before failing.
 *
 * @example
 * parseBenchArgs(['--quick', '--json']); // { json: true, durationSec: 2, ... }
 */
export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      duration: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'ztunnel-entry': { type: 'string' },
      output: { type: 'string' },
      strict: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const problems: string[] = [];
  const durationSec = parseDuration(values.duration, values.quick, problems);
  const paths = parsePaths(values.only, problems);
  if (problems.length) throw new UsageError(`${problems.join('; ')}\n${USAGE}`);
  return {
    json: values.json,
    durationSec,
    paths,
    ztunnelEntry: values['ztunnel-entry'],
    output: values.output,
    strict: values.strict,
    help: values.help,
  };
}

function parseDuration(raw: string | undefined, quick: boolean, problems: string[]): number {
  if (raw !== undefined && quick) problems.push('give either --duration or --quick, not both');
  if (raw === undefined) return quick ? QUICK_DURATION_SEC : DEFAULT_DURATION_SEC;
  const n = Number(raw);
  // iperf3 -t takes whole seconds.
  if (!Number.isInteger(n) || n < 1 || n > 600) problems.push(`--duration must be whole seconds 1..600, got ${raw}`);
  return n;
}

function parsePaths(raw: string | undefined, problems: string[]): readonly PathName[] {
  if (raw === undefined) return PATH_NAMES;
  const wanted = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted.filter((w) => !(PATH_NAMES as readonly string[]).includes(w));
  if (unknown.length) problems.push(`unknown path(s) ${unknown.join(', ')}; use ${PATH_NAMES.join(', ')}`);
  if (!wanted.length) problems.push('--only needs at least one path');
  // Keep the canonical order so direct always runs first.
  return PATH_NAMES.filter((p) => wanted.includes(p));
}
