/**
 * The cost of the redirect (issue 4): `node --import=@tapjs/typescript/import
 * dist/bench/cni-redirect.js [--json] [--quick] [--connections N] [--mib N] [--output FILE]`
 * (`npm run bench` passes the import). Root only; without root (or eBPF, or the CNI plugins) it
 * says why and exits 0.
 *
 * On one node of the root lab (network namespaces, cgroups, the eBPF redirect; the lab of the CNI
 * tests), connect latency and throughput pod → pod over four paths, all in the same run, against
 * `direct` (a pod outside the mesh) as the baseline measured in that run:
 * `redirect → proxy` (the redirect to a 20-line passthrough: the redirect itself),
 * `redirect → ztunnel` (plain TCP through the real ztunnel) and `ztunnel HBONE` (meshed pod →
 * meshed pod through ztunnel's HBONE). See test/cni-plugin/redirect-paths.ts for the set-up and
 * docs/cni.md ("Cost of the redirect") for figures.
 *
 * The lab is test code (test/cni-plugin/) and stays out of dist/ (and so out of the image): it is
 * loaded from its TypeScript sources at run time, which is why this needs tap's TypeScript
 * loader, and why the few parts used are typed here by shape.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatTable, type Column } from './lib/table.js';
import { NotReadyError } from './lib/errors.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const WARM_UP_CONNECTIONS = 20;
const STREAMS = 3;

interface PodAnswer {
  readonly ok: boolean;
  readonly error?: string;
  readonly connectMs?: number | number[];
  readonly firstByteMs?: number | number[];
  readonly ms?: number;
  readonly bytes?: number;
}
interface PodApp {
  request(cmd: Record<string, unknown>): Promise<PodAnswer>;
}
interface RedirectPath {
  readonly name: string;
  readonly from: PodApp;
  readonly host: string;
  readonly expectedPeer: string;
}
/** What Lab.create needs of its host: tap's `t`, or the stand-in below. */
interface LabHost {
  teardown(fn: () => Promise<void>): void;
  testdir(): string;
}
interface LabModule {
  labSkipReason(): Promise<string | false>;
  Lab: { create(host: LabHost): Promise<unknown> };
}
interface PathsModule {
  readonly HELLO_PORT: number;
  readonly SINK_PORT: number;
  walkRedirectPaths(lab: unknown, hooks: { ready(status: { meshed?: { mode?: string }; plain?: { mode?: string } }): void; path(p: RedirectPath): Promise<void> }): Promise<void>;
  peerSeen(from: PodApp, host: string): Promise<string>;
}

/** One path's figures; `error` instead when it failed (or went elsewhere than it should). */
export interface RedirectRow {
  readonly path: string;
  readonly connectP50Ms?: number;
  readonly connectP99Ms?: number;
  readonly firstByteP50Ms?: number;
  readonly firstByteP99Ms?: number;
  readonly mbps?: number;
  readonly error?: string;
}

interface Args {
  readonly json: boolean;
  readonly connections: number;
  readonly mib: number;
  readonly output?: string;
}

function parseArgs(argv: readonly string[]): Args {
  const value = (name: string, fallback: number): number => {
    const i = argv.indexOf(name);
    if (i < 0) return fallback;
    const v = Number(argv[i + 1]);
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} needs a positive whole number`);
    return v;
  };
  const quick = argv.includes('--quick');
  const out = argv.indexOf('--output');
  // The defaults are the sizes of the published figures; --quick is a smoke run.
  return {
    json: argv.includes('--json'),
    connections: value('--connections', quick ? 100 : 600),
    mib: value('--mib', quick ? 64 : 512),
    ...(out >= 0 && argv[out + 1] ? { output: argv[out + 1]! } : {}),
  };
}

const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const list = (v: number | number[] | undefined): number[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

async function measure(paths: PathsModule, p: RedirectPath, args: Args): Promise<RedirectRow> {
  const peer = await paths.peerSeen(p.from, p.host);
  // A path that went elsewhere would measure the wrong thing: a row error, not a figure.
  if (peer !== p.expectedPeer) return { path: p.name, error: `the destination saw ${peer || 'nothing'}, expected ${p.expectedPeer}` };
  await p.from.request({ op: 'latency', host: p.host, port: paths.HELLO_PORT, n: WARM_UP_CONNECTIONS });
  const lat = await p.from.request({ op: 'latency', host: p.host, port: paths.HELLO_PORT, n: args.connections });
  if (!lat.ok) return { path: p.name, error: `connections failed: ${lat.error}` };
  const bytes = args.mib * 1024 * 1024;
  const rates: number[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const r = await p.from.request({ op: 'throughput', host: p.host, port: paths.SINK_PORT, bytes });
    if (!r.ok || !r.ms) return { path: p.name, error: `stream ${i + 1} failed: ${r.error ?? `${r.bytes} bytes`}` };
    rates.push((bytes * 8) / (r.ms / 1000) / 1e6);
  }
  const c = list(lat.connectMs);
  const f = list(lat.firstByteMs);
  return { path: p.name, connectP50Ms: pct(c, 50), connectP99Ms: pct(c, 99), firstByteP50Ms: pct(f, 50), firstByteP99Ms: pct(f, 99), mbps: pct(rates, 50) };
}

/** `x` relative to direct's, as "1.23x"; "-" when either is missing. */
function ratio(x: number | undefined, base: number | undefined): string {
  return x === undefined || base === undefined || base <= 0 ? '-' : `${(x / base).toFixed(2)}x`;
}

export function formatRedirectTable(rows: readonly RedirectRow[], args: Args): string {
  const direct = rows.find((r) => r.path === 'direct' && !r.error);
  const cols: Column[] = [
    { header: 'path', align: 'left' },
    { header: 'connect p50/p99 ms', align: 'right' },
    { header: 'first byte p50/p99 ms', align: 'right' },
    { header: 'Mbit/s', align: 'right' },
    { header: 'connect p50 vs direct', align: 'right' },
    { header: 'first byte p50 vs direct', align: 'right' },
    { header: 'throughput vs direct', align: 'right' },
  ];
  const ms = (a?: number, b?: number) => (a === undefined ? '-' : `${a.toFixed(3)} / ${b?.toFixed(3)}`);
  const body = rows.map((r) =>
    r.error
      ? [r.path, `error: ${r.error}`, '', '', '', '', '']
      : [r.path, ms(r.connectP50Ms, r.connectP99Ms), ms(r.firstByteP50Ms, r.firstByteP99Ms), (r.mbps ?? 0).toFixed(0), ratio(r.connectP50Ms, direct?.connectP50Ms), ratio(r.firstByteP50Ms, direct?.firstByteP50Ms), ratio(r.mbps, direct?.mbps)],
  );
  return [
    `redirect cost, one node: ${args.connections} sequential connections after ${WARM_UP_CONNECTIONS} for warm-up, ${STREAMS} x ${args.mib} MiB per path (medians); ratios against direct, measured in the same run`,
    formatTable(cols, body),
  ].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  const load = async <T>(rel: string): Promise<T> => (await import(pathToFileURL(join(REPO, rel)).href)) as T;
  let labs: LabModule;
  let paths: PathsModule;
  try {
    labs = await load<LabModule>('test/cni-plugin/lab.ts');
    paths = await load<PathsModule>('test/cni-plugin/redirect-paths.ts');
  } catch (err) {
    process.stderr.write(`cannot load the lab from test/cni-plugin (run with --import=@tapjs/typescript/import, as npm run bench does): ${(err as Error).message}\n`);
    return 1;
  }
  const skip = await labs.labSkipReason();
  if (skip) {
    process.stderr.write(`redirect cost skipped: ${skip}\n`);
    if (args.json) process.stdout.write(`${JSON.stringify({ skipped: skip })}\n`);
    return 0;
  }
  // Lab.create registers its cleanup here; it runs however the run ends (Ctrl-C included).
  const cleanups: Array<() => Promise<void>> = [];
  const dirs: string[] = [];
  const host: LabHost = {
    teardown: (fn) => void cleanups.push(fn),
    testdir: () => {
      const d = mkdtempSync(join(tmpdir(), 'amb-cni-bench-'));
      dirs.push(d);
      return d;
    },
  };
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch((err: Error) => process.stderr.write(`cleanup: ${err.message}\n`));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  const rows: RedirectRow[] = [];
  try {
    const lab = await labs.Lab.create(host);
    await paths.walkRedirectPaths(lab, {
      ready: ({ meshed, plain }) => {
        if (meshed?.mode !== 'enrolled' || plain?.mode !== 'not-ambient') throw new NotReadyError("the lab's pods", `not set up as expected (meshed: ${meshed?.mode}, want enrolled; plain: ${plain?.mode}, want not-ambient); check the node agent's answer for each pod`);
      },
      path: async (p) => {
        process.stderr.write(`[cni-redirect] ${p.name}\n`);
        rows.push(await measure(paths, p, args));
      },
    });
  } finally {
    await cleanup();
  }
  const json = JSON.stringify({ connections: args.connections, mib: args.mib, streams: STREAMS, rows });
  if (args.output) writeFileSync(args.output, `${json}\n`);
  process.stdout.write(args.json ? `${json}\n` : `${formatRedirectTable(rows, args)}\n`);
  return rows.some((r) => r.error) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`redirect cost failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
