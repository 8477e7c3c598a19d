/**
 * `npm run bench -- --soak` (`node dist/bench/soak.js`): many users with idle-then-active
 * connections through a real ztunnel pair for minutes, to show that nothing is lost and nothing
 * piles up. See docs/benchmarks.md, "Soak".
 *
 *   users (worker thread) → ztunnel A (SOCKS5) → HBONE (mTLS, HTTP/2 CONNECT) → ztunnel B → backend
 *
 * The users (workload.ts) burst requests, go idle past the backend's keep-alive timeout so the
 * backend closes their connections, reconnect, and sometimes close connections themselves. The
 * harness samples both ztunnels from outside (/proc, `/metrics`) and prints: requests sent /
 * answered / lost with reasons; VmRSS at start, after warm-up, peak and end (flat: end within
 * 10 % of after warm-up); descriptors at the end against the baseline before the run; event-loop
 * delay p99 per window.
 */

import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UsageError } from './lib/args.js';
import { generateCerts } from './lib/certs.js';
import { ProcessDiedError } from './lib/errors.js';
import { fetchText } from './lib/metrics.js';
import { requireZtunnelBuild, startZtunnel, type ZtunnelNode } from './lib/paths/ztunnel.js';
import { ProcessTracker, type ManagedProcess } from './lib/procs.js';
import { parseSoakArgs, SOAK_USAGE, type SoakArgs } from './lib/soak/args.js';
import type { WorkerMessage } from './lib/soak/client-worker.js';
import {
  census,
  countByLabel,
  countFds,
  frequentLogMessages,
  readListenOverflows,
  readMemory,
  readSocketTables,
  scrapeLoopDelay,
  type LoopWindow,
  type SocketCensus,
  type SocketRoles,
} from './lib/soak/observe.js';
import { CLOCK_TICKS_PER_SEC, readProc } from './lib/proc-stats.js';
import type { BackendStats } from './lib/soak/protocol.js';
import { renderSoakJson, renderSoakText, RSS_FLAT_SHARE, type SoakReport, type Verdict, type ZtunnelFigures } from './lib/soak/report.js';
import { SHAPE, type WorkloadConfig, type WorkloadProgress, type WorkloadStats } from './lib/soak/workload.js';
import { runBench } from './lib/teardown.js';
import { sleep, waitForListen } from './lib/wait.js';
import { PORTS } from '../core/hbone/constants.js';

/** dist/bench/soak.js → repository root. */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Node's http server default (`server.keepAliveTimeout`), set explicitly so the users' gaps match it. */
const BACKEND_KEEPALIVE_MS = 5_000;
/**
 * Node 20's server announces `Keep-Alive: timeout=5` but closes an idle connection a second
 * later, so clients that honour the header never race the close.
 */
const BACKEND_IDLE_CLOSE_MS = BACKEND_KEEPALIVE_MS + 1_000;
const BACKEND_PORT = 8080;
const BACKEND_STATS_PORT = 8081;
/** Client workloads on node A; users spread over them so no source address runs short of ports. */
const CLIENT_WORKLOADS = 8;
/** prom-client's loop-delay histogram is read (and reset) this often; also the idle window before the run. */
const LOOP_WINDOW_MS = 5_000;
const SAMPLE_MS = 1_000;
const PROGRESS_LOG_MS = 15_000;
/** After the users closed, how long descriptors may take to come back before the verdict. */
const SETTLE_DEADLINE_MS = 30_000;
/**
 * RSS is compared as means over windows of this share of the run (at most RSS_WINDOW_MAX_MS): a
 * Node heap saws up and down by tens of MiB between collections under this load, and a single
 * sample or a short window lands anywhere on the saw.
 */
const RSS_WINDOW_SHARE = 0.1;
const RSS_WINDOW_MAX_MS = 30_000;

const log = (msg: string): void => {
  process.stderr.write(`[soak] ${msg}\n`);
};

/** The run's loopback plan under `--base`. */
function addresses(base: string) {
  return {
    ztunnelA: `${base}.2`,
    ztunnelB: `${base}.3`,
    backend: `${base}.20`,
    clients: Array.from({ length: CLIENT_WORKLOADS }, (_, i) => `${base}.${10 + i}`),
  };
}
type Addresses = ReturnType<typeof addresses>;

function meshConfig(net: Addresses): string {
  return [
    'nodes:',
    `  - {name: node-a, ztunnelAddress: ${net.ztunnelA}}`,
    `  - {name: node-b, ztunnelAddress: ${net.ztunnelB}}`,
    'workloads:',
    ...net.clients.map((ip, i) => `  - {name: client-${i}, namespace: soak, serviceAccount: client, node: node-a, ips: [${ip}], protocol: HBONE}`),
    `  - {name: backend, namespace: soak, serviceAccount: backend, node: node-b, ips: [${net.backend}], protocol: HBONE}`,
    '',
  ].join('\n');
}

function main(argv: readonly string[]): Promise<number> {
  return runBench(
    argv,
    {
      parse: parseSoakArgs,
      usage: SOAK_USAGE,
      tmpPrefix: 'mesh-soak-',
      run: runSoak,
      renderText: renderSoakText,
      renderJson: renderSoakJson,
      exitCode: (report, args) => {
        const short = report.requests.verdict === 'SHORT' || report.ztunnels.some((z) => z.rssVerdict === 'SHORT' || z.fdVerdict === 'SHORT');
        return args.strict && short ? 1 : 0;
      },
      log,
    },
    (err) => err instanceof UsageError,
  );
}

/** One watched ztunnel: its process, how to tell its sockets apart, and what was sampled. */
interface Watched {
  readonly name: string;
  readonly node: ZtunnelNode;
  readonly proc: ManagedProcess;
  readonly roles: SocketRoles;
  readonly rss: { t: number; kib: number }[];
  fdPeak: number;
  readonly loop: LoopWindow[];
}

async function runSoak(procs: ProcessTracker, dir: string, args: SoakArgs): Promise<SoakReport> {
  const startedAt = new Date().toISOString();
  const net = addresses(args.base);
  const entry = args.ztunnelEntry ?? join(REPO_ROOT, 'dist', 'ztunnel', 'main.js');
  await requireZtunnelBuild(entry);
  log(`temp dir ${dir}`);
  const certs = await generateCerts(procs, dir);
  const configFile = join(dir, 'mesh.yaml');
  await writeFile(configFile, meshConfig(net));

  const backendArgs = [fileURLToPath(new URL('./lib/soak/backend.js', import.meta.url)), net.backend, String(BACKEND_PORT), String(BACKEND_STATS_PORT), String(BACKEND_KEEPALIVE_MS)];
  const backend = await procs.start('soak backend', process.execPath, backendArgs);
  for (const port of [BACKEND_PORT, BACKEND_STATS_PORT]) await waitForListen({ host: net.backend, port }, { timeoutMs: 10_000, process: backend });

  const started: ManagedProcess[] = [];
  const nodeA: ZtunnelNode = { name: 'node-a', address: net.ztunnelA };
  const nodeB: ZtunnelNode = { name: 'node-b', address: net.ztunnelB };
  const controlPorts = [PORTS.admin, PORTS.metrics, PORTS.readiness];
  // B first: A's first HBONE connection must find it.
  const procB = await startZtunnel(procs, { node: nodeB, entry, configFile, certs, started });
  const procA = await startZtunnel(procs, { node: nodeA, entry, configFile, certs, started });
  const watched: Watched[] = [
    { name: 'ztunnel A', node: nodeA, proc: procA, roles: { proxiedLocalPort: PORTS.socks5, hboneLocalPort: -1, controlPorts, outgoing: 'hbone' }, rss: [], fdPeak: 0, loop: [] },
    { name: 'ztunnel B', node: nodeB, proc: procB, roles: { proxiedLocalPort: -1, hboneLocalPort: PORTS.hbone, controlPorts, outgoing: 'proxied' }, rss: [], fdPeak: 0, loop: [] },
  ];
  const metricsUrl = (z: Watched): string => `http://${z.node.address}:${PORTS.metrics}/metrics`;

  // Baselines, before any user: descriptors, memory, and one idle loop-delay window.
  const baseline = takeCensus(watched);
  const startRss = watched.map((z) => readMemory(z.proc.pid)?.rssKiB ?? 0);
  await Promise.all(watched.map((z) => scrapeLoopDelay(metricsUrl(z))));
  await sleep(LOOP_WINDOW_MS); // the idle window being measured, not a wait for readiness
  const idleLoop = await Promise.all(watched.map((z) => scrapeLoopDelay(metricsUrl(z))));
  const notes: string[] = [];
  if (idleLoop.some((l) => l === undefined)) {
    notes.push('a ztunnel exposes no nodejs_eventloop_lag_p99_seconds on /metrics: event-loop delay not measured for it');
  }

  const config: WorkloadConfig = {
    connections: args.connections,
    durationMs: args.durationSec * 1000,
    rampMs: args.rampSec * 1000,
    socks: { host: net.ztunnelA, port: PORTS.socks5 },
    sourceIps: net.clients,
    backend: { host: net.backend, port: BACKEND_PORT },
    keepAliveMs: BACKEND_KEEPALIVE_MS,
    idleCloseMs: BACKEND_IDLE_CLOSE_MS,
    seed: args.seed,
  };
  log(`${args.connections} users for ${args.durationSec} s (ramp ${args.rampSec.toFixed(1)} s, warm-up ${args.warmupSec.toFixed(1)} s)`);
  const overflowsBefore = readListenOverflows();
  const cpuProcs = [procA, procB, backend];
  const ticksBefore = cpuProcs.map((p) => readProc(p.pid)?.cpuTicks ?? 0);
  const ownCpuBefore = process.cpuUsage();
  const t0 = performance.now();
  const worker = new Worker(new URL('./lib/soak/client-worker.js', import.meta.url), { workerData: config });
  let progress: WorkloadProgress | undefined;
  let proxiedPeakA = 0;
  let sampling = false;
  let tick = 0;
  const sample = async (): Promise<void> => {
    if (sampling) return;
    sampling = true;
    try {
      const t = performance.now() - t0;
      for (const z of watched) {
        const mem = readMemory(z.proc.pid);
        if (mem) z.rss.push({ t, kib: mem.rssKiB });
        z.fdPeak = Math.max(z.fdPeak, countFds(z.proc.pid) ?? 0);
      }
      // The heavier readings (an HTTP scrape each, 10,000 readlinks) every few seconds only.
      if (++tick % (LOOP_WINDOW_MS / SAMPLE_MS) === 0 && t <= config.durationMs + SAMPLE_MS) {
        const windows = await Promise.all(watched.map((z) => scrapeLoopDelay(metricsUrl(z))));
        windows.forEach((w, i) => w && watched[i]!.loop.push(w));
        const a = census(procA.pid, watched[0]!.roles, readSocketTables());
        if (a) proxiedPeakA = Math.max(proxiedPeakA, a.proxied);
      }
      if (tick % (PROGRESS_LOG_MS / SAMPLE_MS) === 0 && progress) {
        const mem = watched.map((z) => `${z.name} ${((z.rss.at(-1)?.kib ?? 0) / 1024).toFixed(0)} MiB`).join(', ');
        log(`t=${(t / 1000).toFixed(0)} s: open ${progress.open}, sent ${progress.sent}, answered ${progress.answered}, lost ${progress.lost}; ${mem}`);
      }
    } finally {
      sampling = false;
    }
  };
  const timer = setInterval(() => void sample(), SAMPLE_MS);
  let stats: WorkloadStats;
  try {
    stats = await untilDone(worker, (p) => (progress = p), [procA, procB, backend], config);
  } finally {
    clearInterval(timer);
    await worker.terminate();
  }
  const loadSec = (performance.now() - t0) / 1000;
  // CPU over the whole load, set-up excluded: cores = CPU seconds ÷ wall seconds.
  const cores = cpuProcs.map((p, i) => ((readProc(p.pid)?.cpuTicks ?? 0) - ticksBefore[i]!) / CLOCK_TICKS_PER_SEC / loadSec);
  const ownCpu = process.cpuUsage(ownCpuBefore);
  const usersCores = (ownCpu.user + ownCpu.system) / 1e6 / loadSec;
  const overflowsAfter = readListenOverflows();
  log(`users done after ${((performance.now() - t0) / 1000).toFixed(0)} s; waiting for descriptors to settle`);
  const end = await settle(watched, baseline);
  const backendStats = await fetchBackendStats(net.backend);
  const pages = await Promise.all(watched.map((z) => fetchText(metricsUrl(z))));
  if (backendStats && backendStats.open > 0) notes.push(`the backend still had ${backendStats.open} connections open after the users closed theirs`);

  const windowMs = Math.min(RSS_WINDOW_MAX_MS, Math.max(SAMPLE_MS, config.durationMs * RSS_WINDOW_SHARE));
  const warmMs = args.warmupSec * 1000;
  const ztunnels = watched.map((z, i): ZtunnelFigures => {
    const warm = meanOver(z.rss, warmMs, warmMs + windowMs);
    const last = meanOver(z.rss, config.durationMs - windowMs, config.durationMs);
    const change = warm > 0 ? (last - warm) / warm : 0;
    const base = baseline[i]!;
    const after = end[i]!;
    const fdsBack = after.proxied === 0 && after.closedSockets <= base.closedSockets && after.fds - after.hbone <= base.fds;
    const loop = z.loop.length && idleLoop[i]
      ? {
          idleP99: idleLoop[i]!.p99Ms,
          medianP99: median(z.loop.map((w) => w.p99Ms)),
          worstP99: Math.max(...z.loop.map((w) => w.p99Ms)),
          max: Math.max(...z.loop.map((w) => w.maxMs)),
          windows: z.loop.length,
        }
      : undefined;
    const mem = readMemory(z.proc.pid);
    const page = pages[i];
    return {
      name: z.name,
      cpuCores: cores[i]!,
      connectionsByFlags: page === undefined ? {} : countByLabel(page, 'istio_tcp_connections_opened_total', 'response_flags'),
      frequentLogMessages: frequentLogMessages(z.proc.outputTail()),
      rssMiB: {
        start: startRss[i]! / 1024,
        warm: warm / 1024,
        peak: (mem?.hwmKiB ?? 0) / 1024,
        end: last / 1024,
        afterClose: (mem?.rssKiB ?? 0) / 1024,
      },
      rssChange: change,
      rssTrendMiBPerMin: slopePerMin(z.rss.filter((r) => r.t >= warmMs && r.t <= config.durationMs)),
      rssSeries: z.rss.map((r) => [Math.round(r.t / 100) / 10, Math.round(r.kib / 102.4) / 10] as const),
      rssVerdict: verdict(Math.abs(change) <= RSS_FLAT_SHARE),
      fds: {
        baseline: base.fds,
        peak: Math.max(z.fdPeak, base.fds),
        end: after.fds,
        hbonePool: after.hbone,
        proxiedLeft: after.proxied,
        closedSockets: after.closedSockets - base.closedSockets,
      },
      fdVerdict: verdict(fdsBack),
      loopDelayMs: loop,
    };
  });
  return {
    benchmark: 'soak',
    startedAt,
    host: { cpus: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` },
    settings: {
      connections: args.connections,
      durationSec: args.durationSec,
      rampSec: args.rampSec,
      warmupSec: args.warmupSec,
      rssWindowSec: windowMs / 1000,
      keepAliveMs: BACKEND_KEEPALIVE_MS,
      idleCloseMs: BACKEND_IDLE_CLOSE_MS,
      seed: args.seed,
      addresses: { ztunnelA: net.ztunnelA, ztunnelB: net.ztunnelB, backend: net.backend, clients: net.clients.join(',') },
    },
    requests: { sent: stats.sent, answered: stats.answered, lost: stats.lost, lostBy: stats.lostBy, verdict: verdict(stats.lost === 0 && stats.sent > 0) },
    ztunnels,
    workload: stats,
    backend: backendStats,
    cpuCores: { backend: cores[2]!, usersAndHarness: usersCores },
    listenOverflows: overflowsBefore === undefined || overflowsAfter === undefined ? undefined : overflowsAfter - overflowsBefore,
    ztunnelAProxiedPeak: proxiedPeakA,
    notes,
  };
}

/**
 * Resolves with the users' stats; rejects when the worker fails, a process of the path dies, or
 * the users overrun their own deadlines (every request and close has a timeout, so that is a bug).
 */
function untilDone(
  worker: Worker,
  onProgress: (p: WorkloadProgress) => void,
  deps: readonly ManagedProcess[],
  config: WorkloadConfig,
): Promise<WorkloadStats> {
  const limitMs = config.durationMs + SHAPE.requestTimeoutMs * 2 + SHAPE.connectTimeoutMs + SHAPE.closeTimeoutMs + 60_000;
  return new Promise((resolve, reject) => {
    const overrun = setTimeout(
      () => reject(new ProcessDiedError('the client worker', `did not finish within ${limitMs / 1000} s`)),
      limitMs,
    );
    const settle = (): void => clearTimeout(overrun);
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'progress') onProgress(m.progress);
      else {
        settle();
        resolve(m.stats);
      }
    });
    worker.once('error', (err) => {
      settle();
      reject(new ProcessDiedError('the client worker', `failed (${err.message})`));
    });
    worker.once('exit', (code) => {
      settle();
      reject(new ProcessDiedError('the client worker', `exited with code ${code} before reporting`));
    });
    for (const p of deps) {
      void p.exited.then((info) => {
        settle();
        reject(new ProcessDiedError(p.name, `exited (code ${info.code}, signal ${info.signal})`, p.outputTail()));
      });
    }
  });
}

function takeCensus(watched: readonly Watched[]): SocketCensus[] {
  const tcp = readSocketTables();
  return watched.map((z) => {
    const c = census(z.proc.pid, z.roles, tcp);
    if (!c) throw new ProcessDiedError(z.name, 'exited', z.proc.outputTail());
    return c;
  });
}

/**
 * After the users closed: polls until each ztunnel holds no proxied connection and no more
 * descriptors than at the baseline plus its pooled HBONE connections, or the deadline passes;
 * returns the last reading either way (the verdict is made from it).
 */
async function settle(watched: readonly Watched[], baseline: readonly SocketCensus[]): Promise<SocketCensus[]> {
  const deadline = Date.now() + SETTLE_DEADLINE_MS;
  for (;;) {
    const now = takeCensus(watched);
    const back = now.every((c, i) => c.proxied === 0 && c.closedSockets <= baseline[i]!.closedSockets && c.fds - c.hbone <= baseline[i]!.fds);
    if (back || Date.now() > deadline) return now;
    await sleep(500);
  }
}

async function fetchBackendStats(host: string): Promise<BackendStats | undefined> {
  const text = await fetchText(`http://${host}:${BACKEND_STATS_PORT}/stats`);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as BackendStats);
  } catch {
    return undefined;
  }
}

/** Mean of the samples with from ≤ t ≤ to; the nearest sample when none falls inside. */
function meanOver(samples: readonly { t: number; kib: number }[], from: number, to: number): number {
  const inside = samples.filter((s) => s.t >= from && s.t <= to);
  if (inside.length) return inside.reduce((a, s) => a + s.kib, 0) / inside.length;
  const nearest = [...samples].sort((x, y) => Math.abs(x.t - from) - Math.abs(y.t - from))[0];
  return nearest?.kib ?? 0;
}

/** Least-squares slope of the samples, MiB per minute; 0 with fewer than two. */
function slopePerMin(samples: readonly { t: number; kib: number }[]): number {
  if (samples.length < 2) return 0;
  const n = samples.length;
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const mk = samples.reduce((a, s) => a + s.kib, 0) / n;
  const cov = samples.reduce((a, s) => a + (s.t - mt) * (s.kib - mk), 0);
  const varT = samples.reduce((a, s) => a + (s.t - mt) ** 2, 0);
  return varT === 0 ? 0 : ((cov / varT) * 60_000) / 1024;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? 0;
}

function verdict(ok: boolean): Verdict {
  return ok ? 'PASS' : 'SHORT';
}

process.exitCode = await main(process.argv.slice(2));
