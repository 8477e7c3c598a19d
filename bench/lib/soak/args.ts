import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../args.js';
import { SHAPE } from './workload.js';

/** Parsed command line of `npm run bench -- --soak ...` (`node dist/bench/soak.js ...`). */
export interface SoakArgs {
  readonly connections: number;
  readonly durationSec: number;
  /** Users start within this many seconds. */
  readonly rampSec: number;
  /** The "after warm-up" figures are taken here (seconds after the users start). */
  readonly warmupSec: number;
  /** First three octets of the loopback addresses the run binds (`A.B.C`). */
  readonly base: string;
  readonly seed: number;
  readonly ztunnelEntry: string | undefined;
  readonly json: boolean;
  readonly output: string | undefined;
  readonly strict: boolean;
  readonly help: boolean;
}

/** Default users (connections): the scale the soak is about. */
export const DEFAULT_CONNECTIONS = 10_000;
/** Default length of the load phase: several minutes, so a slow leak shows above GC noise. */
export const DEFAULT_DURATION_SEC = 300;
/** Default loopback prefix; the L4 benchmark uses 127.0.0.x and the waypoint one 127.0.8.x. */
export const DEFAULT_BASE = '127.0.50';
/** Descriptors each process keeps besides one per connection (listeners, pool, files, scrapes). */
export const FD_RESERVE = 1_000;
/** Users arrive over at most this long (at 10,000 users about 330 new connections a second). */
const MAX_RAMP_SEC = 30;
/** Warm-up never ends later than this share of the run, so there is a window left to compare. */
const MAX_WARMUP_SHARE = 0.5;

export const SOAK_USAGE = `usage: npm run bench -- --soak [options]   (or node dist/bench/soak.js [options])
  --connections N      concurrent users, one connection each (default ${DEFAULT_CONNECTIONS})
  --duration S         seconds of load (default ${DEFAULT_DURATION_SEC})
  --warmup S           seconds after which the "after warm-up" figures are taken (default the
                       ramp + the longest idle gap, at least a quarter and at most half of the run)
  --base A.B.C         loopback prefix of the run's addresses (default ${DEFAULT_BASE})
  --seed N             seed of the users' random choices (default 1)
  --ztunnel-entry F    ztunnel entry point (default dist/ztunnel/main.js)
  --json               print one JSON object instead of the tables
  --output FILE        also write the JSON object to FILE
  --strict             exit 1 when a request was lost or a verdict is SHORT
  -h, --help           this text`;

/**
 * Parses and checks the soak's command line; every problem is collected before failing.
 * `fdLimit` is the soft RLIMIT_NOFILE every process of the run inherits.
 *
 * @example
 * parseSoakArgs(['--connections', '1000', '--duration', '60'], 20_000);
 */
export function parseSoakArgs(argv: readonly string[], fdLimit: number | undefined = readFdLimit()): SoakArgs {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      connections: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      base: { type: 'string' },
      seed: { type: 'string' },
      'ztunnel-entry': { type: 'string' },
      json: { type: 'boolean', default: false },
      output: { type: 'string' },
      strict: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const problems: string[] = [];
  const int = (raw: string | undefined, flag: string, dflt: number, min: number, max: number): number => {
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) problems.push(`${flag} must be a whole number ${min}..${max}, got ${raw}`);
    return n;
  };
  const connections = int(values.connections, '--connections', DEFAULT_CONNECTIONS, 1, 60_000);
  if (fdLimit !== undefined && connections + FD_RESERVE > fdLimit) {
    problems.push(
      `--connections ${connections} needs about ${connections + FD_RESERVE} file descriptors in each process ` +
        `but the limit is ${fdLimit}; raise ulimit -n or use at most ${Math.max(0, fdLimit - FD_RESERVE)} connections`,
    );
  }
  const durationSec = int(values.duration, '--duration', DEFAULT_DURATION_SEC, 5, 86_400);
  const rampSec = Math.min(MAX_RAMP_SEC, durationSec * 0.1);
  // Steady state: every user has started and had time for its longest idle gap once.
  const defaultWarmup = Math.min(durationSec * MAX_WARMUP_SHARE, Math.max(rampSec + SHAPE.longGapMaxMs / 1000, durationSec / 4));
  const warmupSec = values.warmup === undefined ? defaultWarmup : Number(values.warmup);
  if (!Number.isFinite(warmupSec) || warmupSec <= 0 || (Number.isFinite(durationSec) && warmupSec >= durationSec)) {
    problems.push(`--warmup must be more than 0 and less than the duration (${durationSec} s), got ${values.warmup}`);
  }
  const base = values.base ?? DEFAULT_BASE;
  if (!/^127\.(\d{1,3})\.(\d{1,3})$/.test(base) || base.split('.').some((o) => Number(o) > 255)) {
    problems.push(`--base must be three octets of a loopback address such as ${DEFAULT_BASE}, got ${base}`);
  }
  const seed = int(values.seed, '--seed', 1, 0, 2 ** 32 - 1);
  if (problems.length) throw new UsageError(`${problems.join('; ')}\n${SOAK_USAGE}`);
  return {
    connections,
    durationSec,
    rampSec,
    warmupSec,
    base,
    seed,
    ztunnelEntry: values['ztunnel-entry'],
    json: values.json,
    output: values.output,
    strict: values.strict,
    help: values.help,
  };
}

/** The soft "Max open files" of this process (inherited by the processes it starts). */
function readFdLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}
