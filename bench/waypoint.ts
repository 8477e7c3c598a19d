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
 * Prints a table with ratios; the waypoint hop's added p50 is waypoint − ztunnel.
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

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Loopback plan of this benchmark (127.0.8.x, apart from the other suites' ranges). */
const NET = {
  originA: '127.0.8.20',
  originB: '127.0.8.21',
  haproxy: '127.0.8.40',
  ztA: '127.0.8.2',
  ztB: '127.0.8.3',
  waypoint: '127.0.8.30',
  vipDirect: '127.0.8.20',
  vipWaypoint: '127.0.8.100',
} as const;
const ORIGIN_PORT = 8080;
const BODY_BYTES = 1024;
const SOCKS5_PORT = 15080;
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
services:
  - {name: web, namespace: bench, vips: [${NET.vipWaypoint}], ports: [{port: 80, targetPort: ${ORIGIN_PORT}, name: http}], selector: {app: origin}, waypoint: {address: ${NET.waypoint}}}
  - {name: web-v1, namespace: bench, vips: [127.0.8.101], ports: [{port: 80, targetPort: ${ORIGIN_PORT}}], selector: {app: origin, version: v1}}
  - {name: web-v2, namespace: bench, vips: [127.0.8.102], ports: [{port: 80, targetPort: ${ORIGIN_PORT}}], selector: {app: origin, version: v2}}
httpRoutes:
  - name: web-split
    namespace: bench
    spec:
      parentRefs: [{kind: Service, name: web, port: 80}]
      rules:
        - backendRefs: [{name: web-v1, port: 80, weight: 90}, {name: web-v2, port: 80, weight: 10}]
`;
}

interface Row {
  readonly path: string;
  readonly rps?: WrkResult;
  readonly lat?: WrkResult;
  readonly error?: string;
}

async function measure(procs: ProcessTracker, launcher: ClientLauncher, url: string, durationSec: number): Promise<{ rps: WrkResult; lat: WrkResult }> {
  // A short warm-up fills pools and JIT caches so the measured runs compare steady states.
  await runWrk(procs, { launcher, url, threads: 1, connections: 4, durationSec: 1, latency: false });
  const rps = await runWrk(procs, { launcher, url, threads: RPS_THREADS, connections: RPS_CONNECTIONS, durationSec, latency: false });
  const lat = await runWrk(procs, { launcher, url, threads: 1, connections: 1, durationSec, latency: true });
  return { rps, lat };
}

async function main(): Promise<number> {
  const i = process.argv.indexOf('--duration');
  const durationSec = i > 0 ? Number(process.argv[i + 1]) : 5;
  if (!(durationSec > 0)) {
    process.stderr.write('usage: node dist/bench/waypoint.js [--duration SECONDS]\n');
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
  const rows: Row[] = [];
  try {
    const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
    await ca.save(dir);
    writeFileSync(join(dir, 'origin.cfg'), originConfig());
    writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig());
    writeFileSync(join(dir, 'mesh.yaml'), meshConfig());
    writeFileSync(join(dir, 'proxychains.conf'), ['strict_chain', 'quiet_mode', '[ProxyList]', `socks5 ${NET.ztA} ${SOCKS5_PORT}`, ''].join('\n'));
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
        env: { ...common, NODE_NAME: node, ZTUNNEL_ADDRESS: address, ADMIN_ADDRESS: address, SOCKS5_PORT: String(SOCKS5_PORT), OUTBOUND_PORT: '0' },
      });
      started.push(p);
      await waitForHttpOk(`http://${address}:15021/healthz/ready`, { timeoutMs: 30_000, process: p });
    }
    const wp = await procs.start('waypoint', process.execPath, [join(REPO_ROOT, 'dist', 'waypoint', 'main.js')], {
      // The access log is part of the measured work: it stays on (info), as in production.
      env: { ...common, LOG_LEVEL: 'info', WAYPOINT_ADDRESS: NET.waypoint, ADMIN_ADDRESS: NET.waypoint },
    });
    await waitForHttpOk(`http://${NET.waypoint}:15021/healthz/ready`, { timeoutMs: 30_000, process: wp });
    const chain: ClientLauncher = { prefix: ['proxychains4', '-q', '-f', join(dir, 'proxychains.conf')] };
    const paths: Array<[string, ClientLauncher, string]> = [
      ['direct', NATIVE, `http://${NET.originA}:${ORIGIN_PORT}/`],
      ['haproxy-http (90/10)', NATIVE, `http://${NET.haproxy}/`],
      ['ztunnel', chain, `http://${NET.originA}:${ORIGIN_PORT}/`],
      ['ztunnel+waypoint (90/10)', chain, `http://${NET.vipWaypoint}/`],
    ];
    for (const [name, launcher, url] of paths) {
      if (procs.wasInterrupted) break;
      log(`measuring ${name}`);
      try {
        rows.push({ path: name, ...(await measure(procs, launcher, url, durationSec)) });
      } catch (err) {
        rows.push({ path: name, error: (err as Error).message.split('\n')[0] ?? 'failed' });
      }
    }
    // Proof the last path went through the waypoint.
    const page = await fetchText(`http://${NET.waypoint}:15020/metrics`);
    const counted = page ? sumMetric(page, 'istio_requests_total') : undefined;
    log(`waypoint counted ${counted ?? 0} requests`);
  } finally {
    await procs.stopAll();
    process.off('SIGINT', onSignal);
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(render(rows, durationSec));
  return rows.some((r) => r.error) ? 1 : 0;
}

function render(rows: readonly Row[], durationSec: number): string {
  const ms = (us: number | undefined) => (us === undefined ? '-' : (us / 1000).toFixed(3));
  const by = (name: string) => rows.find((r) => r.path.startsWith(name));
  const direct = by('direct')?.rps?.rps;
  const hap = by('haproxy')?.rps?.rps;
  const table = formatTable(
    [
      { header: 'path', align: 'left' },
      { header: `req/s (${RPS_CONNECTIONS} conns)`, align: 'right' },
      { header: 'vs direct', align: 'right' },
      { header: 'vs haproxy-http', align: 'right' },
      { header: 'p50 ms (1 conn)', align: 'right' },
      { header: 'p99 ms (1 conn)', align: 'right' },
    ],
    rows.map((r) =>
      r.error
        ? [r.path, `error: ${r.error}`, '', '', '', '']
        : [
            r.path,
            r.rps!.rps.toFixed(0),
            direct ? (r.rps!.rps / direct).toFixed(2) : '-',
            hap ? (r.rps!.rps / hap).toFixed(2) : '-',
            ms(r.lat!.p50Us),
            ms(r.lat!.p99Us),
          ],
    ),
  );
  const zt = by('ztunnel')?.lat?.p50Us;
  const wp = by('ztunnel+waypoint')?.lat?.p50Us;
  const added = zt !== undefined && wp !== undefined ? `waypoint hop adds ${((wp - zt) / 1000).toFixed(3)} ms at p50 (ztunnel+waypoint − ztunnel)\n` : '';
  return `HTTP/1.1, ${BODY_BYTES} B responses, ${durationSec} s per step, wrk on loopback\n\n${table}\n\n${added}`;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    log(`failed: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
