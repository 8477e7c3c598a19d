import type { MeasureOpts, PathResult } from './measure.js';
import type { Ratio, Ratios } from './ratios.js';
import { formatTable, type Column } from './table.js';

/** Everything `--json` prints, as one object. */
export interface BenchReport {
  readonly benchmark: 'ztunnel-l4';
  readonly startedAt: string;
  readonly host: { readonly cpus: number; readonly node: string; readonly platform: string };
  readonly settings: MeasureOpts;
  readonly paths: readonly PathResult[];
  readonly ratios: Ratios;
}

const COLUMNS: readonly Column[] = [
  { header: 'path', align: 'left' },
  { header: 'throughput Gbit/s', align: 'right' },
  { header: 'p50 µs (c1)', align: 'right' },
  { header: 'p99 µs (c1)', align: 'right' },
  { header: 'added p50 µs', align: 'right' },
  { header: 'req/s (c32)', align: 'right' },
  { header: 'proxy CPU s', align: 'right' },
  { header: 'proxy peak RSS MiB', align: 'right' },
  { header: 'status', align: 'left' },
];

/**
 * The human-readable report: settings, the table, the ratio lines, then errors and notes.
 *
 * @example
 * process.stdout.write(renderText(report));
 */
export function renderText(report: BenchReport): string {
  const direct = report.paths.find((p) => p.name === 'direct' && !p.error)?.p50Us;
  const rows = report.paths.map((p) => [
    p.name,
    fmt(p.throughputGbps, 2),
    fmt(p.p50Us, 0),
    fmt(p.p99Us, 0),
    p.name === 'direct' || direct === undefined || p.p50Us === undefined ? '-' : fmt(p.p50Us - direct, 0),
    fmt(p.rps, 0),
    fmt(p.proxyCpuSec, 2),
    fmt(p.proxyPeakRssMiB, 1),
    p.error ? 'ERROR' : 'ok',
  ]);
  const s = report.settings;
  return [
    `loopback, ${report.host.cpus} CPUs, ${s.durationSec} s per step; iperf3 -P 1; wrk -t1 -c1 --latency; wrk -t${s.rpsThreads} -c${s.rpsConnections}`,
    '',
    formatTable(COLUMNS, rows),
    '',
    ratioLine('throughput  ztunnel / best native pair', report.ratios.throughput, 'higher is better'),
    ratioLine('req/s       ztunnel / best native pair', report.ratios.rps, 'higher is better'),
    ratioLine('added p50   ztunnel / haproxy         ', report.ratios.addedP50VsHaproxy, 'lower is better'),
    ...problems(report.paths),
    '',
  ].join('\n');
}

/** The `--json` output: one object, one line. */
export function renderJson(report: BenchReport): string {
  return `${JSON.stringify(report)}\n`;
}

function ratioLine(label: string, r: Ratio, hint: string): string {
  const value = r.value === null ? `n/a (${r.missing ?? 'missing'})` : `${r.value.toFixed(2)}x`;
  const against = r.baseline ? ` [vs ${r.baseline}]` : '';
  return `${label} = ${value}${r.value === null ? '' : against}  (${hint})`;
}

function problems(paths: readonly PathResult[]): string[] {
  const lines = paths.flatMap((p) => [
    ...(p.error ? [`${p.name}: error: ${p.error}`] : []),
    ...p.notes.map((n) => `${p.name}: note: ${n}`),
  ]);
  return lines.length ? ['', ...lines] : [];
}

function fmt(v: number | undefined, digits: number): string {
  return v === undefined ? '-' : v.toFixed(digits);
}
