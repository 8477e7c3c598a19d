/**
 * `node dist/bench/waypoint.js [--duration S]`: HTTP/1.1 through the L7 waypoint against the
 * paths it competes with, all measured in one run on loopback with wrk (1 KiB responses):
 *
 *   direct            wrk → origin
 *   haproxy-http      wrk → haproxy (http mode, 90/10 weighted split) → origins
 *   ztunnel           wrk → proxychains → ztunnel A (SOCKS5) → HBONE → ztunnel B → origin
 *   ztunnel+waypoint  wrk → proxychains → ztunnel A → HBONE → waypoint (HTTPRoute 90/10) → HBONE → ztunnel B → origins
 *
 * Requests/s with 32 connections over 2 threads; p50/p99 with 1 connection (`--latency`).
 * Prints a table with ratios; the waypoint hop's added p50 is waypoint − ztunnel. The machine is
 * shared, so each row also gives the CPU its proxies spent per request during the 32-connection
 * run (from /proc, immune to other load): the waypoint's own share is printed apart.
 *
 * `--repeat N` runs the whole sequence N times (one table per round, same processes);
 * `--paths direct,ztunnel+waypoint` measures only the named paths (names as in the table).
 * `--baseline DIR` also runs the waypoint built in another checkout (`DIR/dist/waypoint/main.js`,
 * e.g. `git archive <commit>` + `npm run build`) as a row of its own, so a change is measured
 * against its predecessor in the same run.
 * `--waypoint-node-args '--cpu-prof --cpu-prof-dir=/tmp/wp-prof'` passes Node flags to the
 * waypoint processes (both, with `--baseline`): how the profiles in docs/waypoint.md were taken.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../core/identity/ca.js';
import { NATIVE, type ClientLauncher } from './lib/client.js';
import { ProcessTracker, type ManagedProcess } from './lib/procs.js';
import { formatTable } from './lib/table.js';
import { waitForHttpOk, waitForListen } from './lib/wait.js';
import { runWrk, type WrkResult } from './lib/wrk.js';
import { which } from './lib/which.js';
import { fetchText, sumMetric } from './lib/metrics.js';
import { UsageSampler } from './lib/proc-stats.js';
import { PORTS } from '../core/hbone/constants.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Loopback plan of this benchmark (127.0.8.x, apart from the other suites' ranges). */
const NET = {
  originA: '127.0.8.20',
  originB: '127.0.8.21',
  haproxy: '127.0.8.40',
  ztA: '127.0.8.2',
  ztB: '127.0.8.3',
  waypoint: '127.0.8.30',
  baselineWaypoint: '127.0.8.31',
  vipDirect: '127.0.8.20',
  vipWaypoint: '127.0.8.100',
  vipBaseline: '127.0.8.110',
} as const;
const ORIGIN_PORT = 8080;
const BODY_BYTES = 1024;
const RPS_CONNECTIONS = 32;
const RPS_THREADS = 2;

const log = (m: string) => process.stderr.write(`[bench:waypoint] ${m}\n`);

function originConfig(): string {
  const body = 'x'.repeat(BODY_BYTES);
  return [
    'global',
    '  maxconn 8192',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend a',
    `  bind ${NET.originA}:${ORIGIN_PORT}`,
    `  http-request return status 200 content-type text/plain string "${body}"`,
    'frontend b',
    `  bind ${NET.originB}:${ORIGIN_PORT}`,
    `  http-request return status 200 content-type text/plain string "${body}"`,
    '',
  ].join('\n');
}

/** haproxy as an HTTP reverse proxy with the same 90/10 split the waypoint applies. */
function haproxyConfig(): string {
  return [
    'global',
    '  maxconn 8192',
    '  nbthread 1',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend web',
    `  bind ${NET.haproxy}:80`,
    '  default_backend split',
    'backend split',
    '  balance random',
    '  http-reuse always',
    `  server v1 ${NET.originA}:${ORIGIN_PORT} weight 90`,
    `  server v2 ${NET.originB}:${ORIGIN_PORT} weight 10`,
    '',
  ].join('\n');
}

function meshConfig(): string {
  return `
nodes:
  - {name: node-a, ztunnelAddress: ${NET.ztA}}
  - {name: node-b, ztunnelAddress: ${NET.ztB}}
workloads:
  # On loopback, connections to 127.0.8.x leave from 127.0.0.1: that is the client workload.
  - {name: client, namespace: bench, serviceAccount: client, node: node-a, ips: [127.0.0.1]}
  - {name: origin-a, namespace: bench, serviceAccount: origin, node: node-b, ips: [${NET.originA}], labels: {app: origin, version: v1}}
  - {name: origin-b, namespace: bench, serviceAccount: origin, node: node-b, ips: [${NET.originB}], labels: {app: origin, version: v2}}
  - {name: waypoint, namespace: bench, serviceAccount: waypoint, node: node-b, ips: [${NET.waypoint}]}
  - {name: waypoint-baseline, namespace: bench, serviceAccount: waypoint, node: node-b, ips: [${NET.baselineWaypoint}]}
services:
  - {name: web, namespace: bench, vips: [${NET.vipWaypoint}], ports: [{port: 80, targetPort: ${ORIGIN_PORT}, name: http}], selector: {app: origin}, waypoint: {address: ${NET.waypoint}}}
  - {name: web-baseline, namespace: bench, vips: [${NET.vipBaseline}], ports: [{port: 80, targetPort: ${ORIGIN_PORT}, name: http}], selector: {app: origin}, waypoint: {address: ${NET.baselineWaypoint}}}
  - {name: web-v1, namespace: bench, vips: [127.0.8.101], ports: [{port: 80, targetPort: ${ORIGIN_PORT}}], selector: {app: origin, version: v1}}
  - {name: web-v2, namespace: bench, vips: [127.0.8.102], ports: [{port: 80, targetPort: ${ORIGIN_PORT}}], selector: {app: origin, version: v2}}
httpRoutes:
  - name: web-split
    namespace: bench
    spec:
      parentRefs: [{kind: Service, name: web, port: 80}, {kind: Service, name: web-baseline, port: 80}]
      rules:
        - backendRefs: [{name: web-v1, port: 80, weight: 90}, {name: web-v2, port: 80, weight: 10}]
`;
}

interface Row {
  readonly path: string;
  readonly rps?: WrkResult;
  readonly lat?: WrkResult;
  /** CPU µs per request of the path's proxies during the requests/s run. */
  readonly cpuUsPerReq?: number;
  /** The waypoint's own share of it. */
  readonly waypointUsPerReq?: number;
  readonly error?: string;
}

interface Measured {
  rps: WrkResult;
  lat: WrkResult;
  cpuUsPerReq?: number;
  waypointUsPerReq?: number;
}

async function measure(
  procs: ProcessTracker,
  launcher: ClientLauncher,
  url: string,
  durationSec: number,
  proxies: { all: readonly number[]; waypoint?: number },
): Promise<Measured> {
  // A short warm-up fills pools and JIT caches so the measured runs compare steady states.
  await runWrk(procs, { launcher, url, threads: 1, connections: 4, durationSec: 1, latency: false });
  const all = new UsageSampler(proxies.all);
  const own = new UsageSampler(proxies.waypoint !== undefined ? [proxies.waypoint] : []);
  all.start();
  own.start();
  const rps = await runWrk(procs, { launcher, url, threads: RPS_THREADS, connections: RPS_CONNECTIONS, durationSec, latency: false });
  const perReq = (cpuSec: number) => (cpuSec * 1e6) / rps.requests;
  const cpu = all.stop().cpuSec;
  const wpCpu = own.stop().cpuSec;
  const lat = await runWrk(procs, { launcher, url, threads: 1, connections: 1, durationSec, latency: true });
  return {
    rps,
    lat,
    ...(proxies.all.length > 0 ? { cpuUsPerReq: perReq(cpu) } : {}),
    ...(proxies.waypoint !== undefined ? { waypointUsPerReq: perReq(wpCpu) } : {}),
  };
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
  const durationSec = Number(flag('--duration') ?? 5);
  const repeat = Number(flag('--repeat') ?? 1);
  const only = flag('--paths')?.split(',');
  const baseline = flag('--baseline');
  const nodeArgs = flag('--waypoint-node-args')?.split(/\s+/).filter((a) => a !== '') ?? [];
  if (!(durationSec > 0) || !(Number.isInteger(repeat) && repeat > 0)) {
    process.stderr.write('usage: node dist/bench/waypoint.js [--duration SECONDS] [--repeat N] [--paths NAME,...] [--baseline DIR] [--waypoint-node-args ARGS]\n');
    return 2;
  }
  for (const tool of ['wrk', 'haproxy', 'proxychains4']) {
    if (!(await which(tool))) {
      process.stderr.write(`${tool} is missing; install it (apt-get install ${tool})\n`);
      return 1;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'waypoint-bench-'));
  const procs = new ProcessTracker();
  const onSignal = () => void procs.interrupt();
  process.once('SIGINT', onSignal);
  const rounds: Row[][] = [];
  try {
    const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
    await ca.save(dir);
    writeFileSync(join(dir, 'origin.cfg'), originConfig());
    writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig());
    writeFileSync(join(dir, 'mesh.yaml'), meshConfig());
    writeFileSync(join(dir, 'proxychains.conf'), ['strict_chain', 'quiet_mode', '[ProxyList]', `socks5 ${NET.ztA} ${PORTS.socks5}`, ''].join('\n'));
    const origin = await procs.start('origin', 'haproxy', ['-db', '-f', join(dir, 'origin.cfg')]);
    await waitForListen({ host: NET.originA, port: ORIGIN_PORT }, { timeoutMs: 10_000, process: origin });
    const hap = await procs.start('haproxy-http', 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
    await waitForListen({ host: NET.haproxy, port: 80 }, { timeoutMs: 10_000, process: hap });
    const common = {
      LOCAL_CONFIG_FILE: join(dir, 'mesh.yaml'),
      CA_ROOT_CERT_FILE: join(dir, 'root-cert.pem'),
      CA_ROOT_KEY_FILE: join(dir, 'root-key.pem'),
      LOG_LEVEL: 'warn',
    };
    const started: ManagedProcess[] = [];
    for (const [node, address] of [['node-a', NET.ztA], ['node-b', NET.ztB]] as const) {
      const p = await procs.start(`ztunnel ${node}`, process.execPath, [join(REPO_ROOT, 'dist', 'ztunnel', 'main.js')], {
        env: { ...common, NODE_NAME: node, ZTUNNEL_ADDRESS: address, ADMIN_ADDRESS: address, SOCKS5_PORT: String(PORTS.socks5), OUTBOUND_PORT: '0' },
      });
      started.push(p);
      await waitForHttpOk(`http://${address}:${PORTS.readiness}/healthz/ready`, { timeoutMs: 30_000, process: p });
    }
    const wp = await procs.start('waypoint', process.execPath, [...nodeArgs, join(REPO_ROOT, 'dist', 'waypoint', 'main.js')], {
      // The access log is part of the measured work: it stays on (info), as in production.
      env: { ...common, LOG_LEVEL: 'info', WAYPOINT_ADDRESS: NET.waypoint, ADMIN_ADDRESS: NET.waypoint },
    });
    await waitForHttpOk(`http://${NET.waypoint}:${PORTS.readiness}/healthz/ready`, { timeoutMs: 30_000, process: wp });
    const base = baseline
      ? await procs.start('waypoint (baseline)', process.execPath, [...nodeArgs, join(resolve(baseline), 'dist', 'waypoint', 'main.js')], {
          env: { ...common, LOG_LEVEL: 'info', WAYPOINT_ADDRESS: NET.baselineWaypoint, ADMIN_ADDRESS: NET.baselineWaypoint },
        })
      : undefined;
    if (base) await waitForHttpOk(`http://${NET.baselineWaypoint}:${PORTS.readiness}/healthz/ready`, { timeoutMs: 30_000, process: base });
    const chain: ClientLauncher = { prefix: ['proxychains4', '-q', '-f', join(dir, 'proxychains.conf')] };
    const zts = started.map((p) => p.pid);
    const paths: Array<[string, ClientLauncher, string, { all: number[]; waypoint?: number }]> = [
      ['direct', NATIVE, `http://${NET.originA}:${ORIGIN_PORT}/`, { all: [] }],
      ['haproxy-http (90/10)', NATIVE, `http://${NET.haproxy}/`, { all: [hap.pid] }],
      ['ztunnel', chain, `http://${NET.originA}:${ORIGIN_PORT}/`, { all: zts }],
      ['ztunnel+waypoint (90/10)', chain, `http://${NET.vipWaypoint}/`, { all: [...zts, wp.pid], waypoint: wp.pid }],
    ];
    if (base) paths.push(['ztunnel+waypoint-baseline (90/10)', chain, `http://${NET.vipBaseline}/`, { all: [...zts, base.pid], waypoint: base.pid }]);
    for (let round = 1; round <= repeat; round++) {
      const rows: Row[] = [];
      rounds.push(rows);
      for (const [name, launcher, url, proxies] of paths) {
        if (procs.wasInterrupted) break;
        if (only && !only.some((o) => name === o || name.startsWith(`${o} `))) continue;
        log(`round ${round}: measuring ${name}`);
        try {
          rows.push({ path: name, ...(await measure(procs, launcher, url, durationSec, proxies)) });
        } catch (err) {
          rows.push({ path: name, error: (err as Error).message.split('\n')[0] ?? 'failed' });
        }
      }
    }
    // Proof the last path went through the waypoint.
    const page = await fetchText(`http://${NET.waypoint}:${PORTS.metrics}/metrics`);
    const counted = page ? sumMetric(page, 'istio_requests_total') : undefined;
    log(`waypoint counted ${counted ?? 0} requests`);
  } finally {
    await procs.stopAll();
    process.off('SIGINT', onSignal);
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(rounds.map((rows) => render(rows, durationSec)).join('\n'));
  return rounds.some((rows) => rows.some((r) => r.error)) ? 1 : 0;
}

function render(rows: readonly Row[], durationSec: number): string {
  const ms = (us: number | undefined) => (us === undefined ? '-' : (us / 1000).toFixed(3));
  const by = (name: string) => rows.find((r) => r.path === name || r.path.startsWith(`${name} `));
  const direct = by('direct')?.rps?.rps;
  const hap = by('haproxy-http')?.rps?.rps;
  const table = formatTable(
    [
      { header: 'path', align: 'left' },
      { header: `req/s (${RPS_CONNECTIONS} conns)`, align: 'right' },
      { header: 'vs direct', align: 'right' },
      { header: 'vs haproxy-http', align: 'right' },
      { header: 'p50 ms (1 conn)', align: 'right' },
      { header: 'p99 ms (1 conn)', align: 'right' },
      { header: 'proxy CPU µs/req', align: 'right' },
    ],
    rows.map((r) =>
      r.error
        ? [r.path, `error: ${r.error}`, '', '', '', '', '']
        : [
            r.path,
            r.rps!.rps.toFixed(0),
            direct ? (r.rps!.rps / direct).toFixed(2) : '-',
            hap ? (r.rps!.rps / hap).toFixed(2) : '-',
            ms(r.lat!.p50Us),
            ms(r.lat!.p99Us),
            r.cpuUsPerReq === undefined ? '-' : r.cpuUsPerReq.toFixed(0),
          ],
    ),
  );
  const zt = by('ztunnel')?.lat?.p50Us;
  const wp = by('ztunnel+waypoint')?.lat?.p50Us;
  const added = zt !== undefined && wp !== undefined ? `waypoint hop adds ${((wp - zt) / 1000).toFixed(3)} ms at p50 (ztunnel+waypoint − ztunnel)\n` : '';
  const own = (name: string) => {
    const us = by(name)?.waypointUsPerReq;
    return us === undefined ? '' : `${name} process alone: ${us.toFixed(0)} µs CPU per request (32 conns)\n`;
  };
  const ownLine = own('ztunnel+waypoint') + own('ztunnel+waypoint-baseline');
  return `HTTP/1.1, ${BODY_BYTES} B responses, ${durationSec} s per step, wrk on loopback\n\n${table}\n\n${added}${ownLine}`;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    log(`failed: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
