import { BenchError, InterruptedError, TrafficNotProxiedError } from './errors.js';
import { runIperf } from './iperf.js';
import { UsageSampler } from './proc-stats.js';
import type { ManagedProcess } from './procs.js';
import { sleep } from './wait.js';
import { runWrk, type WrkOpts } from './wrk.js';
import type { BenchContext, PathDriver, PathName, RunningPath } from './paths/types.js';

/** Figures of one path; a failed step leaves its figures undefined and sets `error`. */
export interface PathResult {
  readonly name: PathName;
  readonly description: string;
  error?: string;
  errorCode?: string;
  /** iperf3 single stream, receiver side, Gbit/s. */
  throughputGbps?: number;
  /** wrk -c1 --latency, microseconds. */
  p50Us?: number;
  p99Us?: number;
  /** wrk -c32, requests per second. */
  rps?: number;
  /** CPU seconds of both proxy processes over the measurement window. */
  proxyCpuSec?: number;
  /** Largest VmHWM of the two proxy processes, MiB. */
  proxyPeakRssMiB?: number;
  /** Bytes the proxies counted per step (ztunnel only), as evidence the traffic went through them. */
  countedBytes?: Record<string, number>;
  /** Things worth knowing about the figures (socket errors, unverifiable counters, ...). */
  readonly notes: string[];
}

/** Durations and client shapes of one run. */
export interface MeasureOpts {
  readonly durationSec: number;
  /** wrk connections of the requests/s step. */
  readonly rpsConnections: number;
  readonly rpsThreads: number;
}

/**
 * Starts one path, runs its three client steps (iperf3, wrk -c1, wrk -c32) while sampling the
 * proxies, stops it, and returns the figures. Never throws: a failure becomes `error` on the row.
 */
export async function measurePath(driver: PathDriver, ctx: BenchContext, opts: MeasureOpts): Promise<PathResult> {
  const result: PathResult = { name: driver.name, description: driver.description, notes: [] };
  let path: RunningPath | undefined;
  try {
    ctx.log(`${driver.name}: starting`);
    path = await driver.start(ctx);
    await runSteps(ctx, path, driver.name, opts, result);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // After Ctrl-C the proxies are being killed; their state says nothing.
    const interrupted = err instanceof InterruptedError;
    result.error = path && !interrupted ? message + describeProxies(path.proxies) : message;
    result.errorCode = err instanceof BenchError ? err.code : undefined;
    ctx.log(`${driver.name}: FAILED: ${result.error.split('\n')[0] ?? ''}`);
  } finally {
    await path?.stop();
  }
  return result;
}

async function runSteps(
  ctx: BenchContext,
  path: RunningPath,
  name: PathName,
  opts: MeasureOpts,
  result: PathResult,
): Promise<void> {
  const sampler = new UsageSampler(path.proxies.map((p) => p.pid));
  sampler.start();
  try {
    const step = (label: string, fn: () => Promise<void>): Promise<void> =>
      checkedStep(ctx, path, name, label, fn, result);
    await step('iperf3', async () => {
      const r = await runIperf(ctx.procs, { launcher: path.launcher, target: path.iperf, durationSec: opts.durationSec });
      result.throughputGbps = r.gbps;
    });
    await step('wrk -c1', async () => {
      const r = await runWrk(ctx.procs, wrkOpts(path, opts, 1, 1, true));
      result.p50Us = r.p50Us;
      result.p99Us = r.p99Us;
      noteErrors(result, 'wrk -c1', r);
    });
    await step(`wrk -c${opts.rpsConnections}`, async () => {
      const r = await runWrk(ctx.procs, wrkOpts(path, opts, opts.rpsThreads, opts.rpsConnections, false));
      result.rps = r.rps;
      noteErrors(result, `wrk -c${opts.rpsConnections}`, r);
    });
  } finally {
    const usage = sampler.stop();
    if (path.proxies.length > 0) {
      result.proxyCpuSec = usage.cpuSec;
      result.proxyPeakRssMiB = usage.peakRssMiB;
    }
  }
}

/**
 * Runs one client step; when the path counts bytes, fails the step unless the counter grew
 * during it (proof that this client's traffic, not just some earlier one, went through the proxy).
 */
async function checkedStep(
  ctx: BenchContext,
  path: RunningPath,
  name: PathName,
  label: string,
  fn: () => Promise<void>,
  result: PathResult,
): Promise<void> {
  ctx.log(`${name}: ${label}`);
  const count = path.countedBytes;
  // A counter with no series yet (nothing proxied so far) reads as absent: start from 0.
  const before = (await count?.()) ?? 0;
  await fn();
  if (!count) return;
  const grown = await waitForGrowth(count, before, () => ctx.procs.wasInterrupted);
  if (ctx.procs.wasInterrupted) throw new InterruptedError();
  if (grown === undefined) {
    result.notes.push(`${label}: proxy exposes no byte counter, could not verify the traffic went through it`);
    return;
  }
  if (grown <= 0) {
    throw new TrafficNotProxiedError(name, label, 'the ztunnel byte counters did not grow; check the proxychains config');
  }
  result.countedBytes = { ...result.countedBytes, [label]: grown };
}

/**
 * Growth of the counter over `before`, once it has settled: counters may be updated when a
 * connection closes, a little after the client exits, and a late update must not be credited to
 * the next step. Polls for up to {@link SETTLE_MAX_MS}. Undefined when the counter never appears.
 */
async function waitForGrowth(
  read: () => Promise<number | undefined>,
  before: number,
  cancelled: () => boolean,
): Promise<number | undefined> {
  let last: number | undefined;
  for (let waited = 0; waited < SETTLE_MAX_MS && !cancelled(); waited += SETTLE_POLL_MS) {
    const now = await read();
    if (now !== undefined && now > before && now === last) break;
    last = now;
    await sleep(SETTLE_POLL_MS);
  }
  return last === undefined ? undefined : Math.max(0, last - before);
}

const SETTLE_POLL_MS = 200;
const SETTLE_MAX_MS = 5_000;

function wrkOpts(path: RunningPath, opts: MeasureOpts, threads: number, connections: number, latency: boolean): WrkOpts {
  const url = `http://${path.http.host}:${path.http.port}/`;
  return { launcher: path.launcher, url, threads, connections, durationSec: opts.durationSec, latency };
}

/**
 * What the proxies were doing when a step failed: whether each still runs and its last log lines.
 * A client only sees "connection refused" (proxychains reports every SOCKS failure that way), so
 * the proxies' own words are the useful part.
 */
function describeProxies(proxies: readonly ManagedProcess[]): string {
  return proxies
    .map((p) => {
      const info = p.exitInfo();
      const state = info ? `exited (code ${info.code}, signal ${info.signal})` : 'still running';
      const lines = p
        .outputTail()
        .trim()
        .split('\n')
        .filter(Boolean)
        .slice(-TAIL_LINES)
        .map((l) => `    | ${l.length > TAIL_LINE_CHARS ? `${l.slice(0, TAIL_LINE_CHARS)}...` : l}`);
      return [`\n  ${p.name}: ${state}${lines.length ? ', last output:' : ''}`, ...lines].join('\n');
    })
    .join('');
}

const TAIL_LINES = 8;
const TAIL_LINE_CHARS = 400;

function noteErrors(result: PathResult, label: string, r: { socketErrors: number; non2xx: number }): void {
  if (r.socketErrors > 0) result.notes.push(`${label}: ${r.socketErrors} socket errors`);
  if (r.non2xx > 0) result.notes.push(`${label}: ${r.non2xx} non-2xx responses`);
}
