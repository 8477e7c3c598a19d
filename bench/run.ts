/**
 * `npm run bench`: measures direct, stunnel pair, haproxy pair and ztunnel pair over loopback in
 * one run and prints a table (or, with `--json`, one JSON object). See docs/benchmarks.md.
 */

import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, UsageError, USAGE, type BenchArgs } from './lib/args.js';
import { generateCerts } from './lib/certs.js';
import { measurePath, type MeasureOpts, type PathResult } from './lib/measure.js';
import { startOrigin } from './lib/origin.js';
import { direct } from './lib/paths/direct.js';
import { haproxy } from './lib/paths/haproxy.js';
import { stunnel } from './lib/paths/stunnel.js';
import type { BenchContext, PathDriver, PathName } from './lib/paths/types.js';
import { ztunnel } from './lib/paths/ztunnel.js';
import { ProcessTracker } from './lib/procs.js';
import { computeRatios } from './lib/ratios.js';
import { renderJson, renderText, type BenchReport } from './lib/report.js';
import { runBench } from './lib/teardown.js';

const DRIVERS: Record<PathName, PathDriver> = { direct, stunnel, haproxy, ztunnel };
/** dist/bench/run.js → repository root. */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** wrk shape of the requests/s step: 32 connections over 2 threads (the host has 2 cores). */
const RPS_CONNECTIONS = 32;
const RPS_THREADS = 2;

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

function main(argv: readonly string[]): Promise<number> {
  return runBench(
    argv,
    {
      parse: parseBenchArgs,
      usage: USAGE,
      tmpPrefix: 'mesh-bench-',
      run: runAll,
      renderText,
      renderJson,
      exitCode: (report, args) => (args.strict && report.paths.some((p) => p.error) ? 1 : 0),
      log,
    },
    (err) => err instanceof UsageError,
  );
}

/** Certificates, origin servers, then each path in turn; a failing path becomes an error row. */
async function runAll(procs: ProcessTracker, dir: string, args: BenchArgs): Promise<BenchReport> {
  const startedAt = new Date().toISOString();
  log(`temp dir ${dir}`);
  const certs = await generateCerts(procs, dir);
  const origin = await startOrigin(procs, dir);
  const ctx: BenchContext = {
    procs,
    dir,
    certs,
    origin,
    ztunnelEntry: args.ztunnelEntry ?? join(REPO_ROOT, 'dist', 'ztunnel', 'main.js'),
    log,
  };
  const opts: MeasureOpts = { durationSec: args.durationSec, rpsConnections: RPS_CONNECTIONS, rpsThreads: RPS_THREADS };
  const paths: PathResult[] = [];
  for (const name of args.paths) {
    if (procs.wasInterrupted) break;
    paths.push(await measurePath(DRIVERS[name], ctx, opts));
  }
  return {
    benchmark: 'ztunnel-l4',
    startedAt,
    host: { cpus: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` },
    settings: opts,
    paths,
    ratios: computeRatios(paths),
  };
}

process.exitCode = await main(process.argv.slice(2));
