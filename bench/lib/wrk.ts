import { ToolFailedError } from './errors.js';
import type { ProcessTracker } from './procs.js';
import { clientCommand, type ClientLauncher } from './client.js';

/** Figures of one wrk run. */
export interface WrkResult {
  readonly requests: number;
  readonly rps: number;
  /** Latency percentiles in microseconds; present when run with `--latency`. */
  readonly p50Us: number | undefined;
  readonly p99Us: number | undefined;
  /** Sum of connect/read/write/timeout socket errors. */
  readonly socketErrors: number;
  readonly non2xx: number;
}

/** Options of {@link runWrk}. */
export interface WrkOpts {
  readonly launcher: ClientLauncher;
  readonly url: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationSec: number;
  readonly latency: boolean;
}

/**
 * Runs `wrk -tT -cC -dDs [--latency] URL` and parses its text report.
 *
 * @example
 * const r = await runWrk(procs, { launcher: NATIVE, url: 'http://127.0.0.20:8080/', threads: 1,
 *   connections: 1, durationSec: 5, latency: true });
 */
export async function runWrk(procs: ProcessTracker, opts: WrkOpts): Promise<WrkResult> {
  const argv = ['wrk', `-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.durationSec}s`];
  if (opts.latency) argv.push('--latency');
  argv.push(opts.url);
  const [cmd, args] = clientCommand(opts.launcher, argv);
  const res = await procs.run(`wrk -c${opts.connections}`, cmd, args, { timeoutMs: (opts.durationSec + 30) * 1_000 });
  if (res.code !== 0) throw new ToolFailedError('wrk', `exit code ${res.code}`, res.stdout + res.stderr);
  const parsed = parseWrkOutput(res.stdout);
  if (parsed.requests === 0 || parsed.non2xx === parsed.requests) {
    throw new ToolFailedError('wrk', 'no successful request; is the path up?', res.stdout + res.stderr);
  }
  return parsed;
}

/** Parses wrk 4's text report. */
export function parseWrkOutput(text: string): WrkResult {
  const requests = Number(/(\d+) requests in /.exec(text)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  if (!Number.isFinite(requests) || !Number.isFinite(rps)) {
    throw new ToolFailedError('wrk', 'report has no request count', text);
  }
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = errs ? errs.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  return { requests, rps, p50Us: percentileUs(text, 50), p99Us: percentileUs(text, 99), socketErrors, non2xx };
}

/** Reads one line of the "Latency Distribution" block, e.g. `     99%    1.90ms`. */
function percentileUs(text: string, pct: number): number | undefined {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
  if (!m) return undefined;
  const scale: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, m: 60e6 };
  return Number(m[1]) * (scale[m[2] as string] as number);
}
