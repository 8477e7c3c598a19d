import { formatTable } from '../table.js';
import type { BackendStats } from './protocol.js';
import type { WorkloadStats } from './workload.js';

/** PASS when the figure meets its rule; SHORT when it falls short of it. */
export type Verdict = 'PASS' | 'SHORT';

/** RSS may move by this share between the post-warm-up and the end figure and still be flat. */
export const RSS_FLAT_SHARE = 0.1;

/** Figures of one ztunnel of the pair. */
export interface ZtunnelFigures {
  readonly name: string;
  /** CPU used during the load, in cores (CPU seconds ÷ wall seconds). */
  readonly cpuCores: number;
  /** `istio_tcp_connections_opened_total` per `response_flags` at the end (refused ones have a flag). */
  readonly connectionsByFlags: Readonly<Record<string, number>>;
  /** The most frequent lines in the last 8 KB of its log (warnings and errors; LOG_LEVEL=warn). */
  readonly frequentLogMessages: readonly { readonly message: string; readonly count: number }[];
  /** VmRSS, MiB: before the users start, mean of the window after warm-up, peak (VmHWM), mean of the last window, after the users closed. */
  readonly rssMiB: { readonly start: number; readonly warm: number; readonly peak: number; readonly end: number; readonly afterClose: number };
  /** (end − warm) ÷ warm. */
  readonly rssChange: number;
  /** Least-squares slope of VmRSS from the end of warm-up to the end of the load, MiB per minute. */
  readonly rssTrendMiBPerMin: number;
  /** Every VmRSS sample of the run as [seconds since the users started, MiB] (JSON only). */
  readonly rssSeries: readonly (readonly [number, number])[];
  readonly rssVerdict: Verdict;
  /** Descriptors (scrape connections not counted): before the run, most during it, after the users closed. */
  readonly fds: {
    readonly baseline: number;
    readonly peak: number;
    readonly end: number;
    /** HBONE connections still pooled at the end (the pool keeps idle ones for 5 minutes). */
    readonly hbonePool: number;
    /** Proxied connections (A: from clients; B: to the backend) still open at the end: must be 0. */
    readonly proxiedLeft: number;
    /** Descriptors of sockets whose connection is gone, more than at the baseline: must be 0. */
    readonly closedSockets: number;
  };
  readonly fdVerdict: Verdict;
  /** prom-client's event-loop delay over consecutive windows; undefined when not exposed. */
  readonly loopDelayMs:
    | { readonly idleP99: number; readonly medianP99: number; readonly worstP99: number; readonly max: number; readonly windows: number }
    | undefined;
}

/** Everything one soak run measured. */
export interface SoakReport {
  readonly benchmark: 'soak';
  readonly startedAt: string;
  readonly host: { readonly cpus: number; readonly node: string; readonly platform: string };
  readonly settings: {
    readonly connections: number;
    readonly durationSec: number;
    readonly rampSec: number;
    readonly warmupSec: number;
    /** Length of the windows averaged for the "after warm-up" and "end" RSS figures. */
    readonly rssWindowSec: number;
    readonly keepAliveMs: number;
    /** When the backend really closes an idle connection, ms. */
    readonly idleCloseMs: number;
    readonly seed: number;
    readonly addresses: Readonly<Record<string, string>>;
  };
  readonly requests: { readonly sent: number; readonly answered: number; readonly lost: number; readonly lostBy: Readonly<Record<string, number>>; readonly verdict: Verdict };
  readonly ztunnels: readonly ZtunnelFigures[];
  readonly workload: WorkloadStats;
  readonly backend: BackendStats | undefined;
  /** CPU during the load, in cores, of the other parties: the backend process, and this process (users' worker and harness). */
  readonly cpuCores: { readonly backend: number; readonly usersAndHarness: number };
  /** Connections the kernel dropped during the run because a listen queue was full (namespace-wide). */
  readonly listenOverflows: number | undefined;
  /** Most proxied client connections ztunnel A held at once (sampled every few seconds). */
  readonly ztunnelAProxiedPeak: number;
  readonly notes: readonly string[];
}

/** The tables of a soak run, as text. */
export function renderSoakText(r: SoakReport): string {
  const s = r.settings;
  const mib = (n: number): string => n.toFixed(1);
  const ms = (n: number): string => n.toFixed(1);
  const pct = (n: number): string => `${n >= 0 ? '+' : ''}${(n * 100).toFixed(1)} %`;
  const w = r.workload;
  const out: string[] = [
    `soak: ${s.connections} users for ${s.durationSec} s (ramp ${s.rampSec.toFixed(1)} s, warm-up ${s.warmupSec.toFixed(1)} s), ` +
      `client -> ztunnel A ${s.addresses['ztunnelA']} (SOCKS5) -> HBONE -> ztunnel B ${s.addresses['ztunnelB']} -> ` +
      `Node http backend ${s.addresses['backend']} (announces keep-alive ${s.keepAliveMs / 1000} s, closes idle connections at ${s.idleCloseMs / 1000} s), seed ${s.seed}`,
    '',
    formatTable(
      [
        { header: 'requests', align: 'left' },
        { header: 'sent', align: 'right' },
        { header: 'answered', align: 'right' },
        { header: 'lost', align: 'right' },
        { header: 'verdict', align: 'left' },
      ],
      [['all', String(r.requests.sent), String(r.requests.answered), String(r.requests.lost), r.requests.verdict]],
    ),
  ];
  const reasons = Object.entries(r.requests.lostBy);
  if (reasons.length) {
    out.push('lost, by reason:', ...reasons.map(([why, n]) => `  ${String(n).padStart(8)}  ${why}`));
  }
  out.push(
    '',
    formatTable(
      [
        { header: 'VmRSS MiB', align: 'left' },
        { header: 'start', align: 'right' },
        { header: 'after warm-up', align: 'right' },
        { header: 'peak', align: 'right' },
        { header: 'end', align: 'right' },
        { header: 'end vs warm-up', align: 'right' },
        { header: `flat (±${RSS_FLAT_SHARE * 100} %)`, align: 'left' },
        { header: 'trend MiB/min', align: 'right' },
        { header: 'after close', align: 'right' },
      ],
      r.ztunnels.map((z) => [
        z.name,
        mib(z.rssMiB.start),
        mib(z.rssMiB.warm),
        mib(z.rssMiB.peak),
        mib(z.rssMiB.end),
        pct(z.rssChange),
        z.rssVerdict,
        `${z.rssTrendMiBPerMin >= 0 ? '+' : ''}${z.rssTrendMiBPerMin.toFixed(2)}`,
        mib(z.rssMiB.afterClose),
      ]),
    ),
    '',
    formatTable(
      [
        { header: 'file descriptors', align: 'left' },
        { header: 'baseline', align: 'right' },
        { header: 'peak', align: 'right' },
        { header: 'end', align: 'right' },
        { header: 'HBONE pool at end', align: 'right' },
        { header: 'proxied left', align: 'right' },
        { header: 'closed-socket fds', align: 'right' },
        { header: 'back to baseline', align: 'left' },
      ],
      r.ztunnels.map((z) => [
        z.name,
        String(z.fds.baseline),
        String(z.fds.peak),
        String(z.fds.end),
        String(z.fds.hbonePool),
        String(z.fds.proxiedLeft),
        String(z.fds.closedSockets),
        z.fdVerdict,
      ]),
    ),
    '',
    formatTable(
      [
        { header: 'event-loop delay ms', align: 'left' },
        { header: 'idle p99', align: 'right' },
        { header: 'median window p99', align: 'right' },
        { header: 'worst window p99', align: 'right' },
        { header: 'max', align: 'right' },
        { header: 'windows', align: 'right' },
      ],
      r.ztunnels.map((z) =>
        z.loopDelayMs
          ? [z.name, ms(z.loopDelayMs.idleP99), ms(z.loopDelayMs.medianP99), ms(z.loopDelayMs.worstP99), ms(z.loopDelayMs.max), String(z.loopDelayMs.windows)]
          : [z.name, '-', '-', '-', '-', '0'],
      ),
    ),
    '',
    formatTable(
      [
        { header: 'CPU during the load', align: 'left' },
        { header: 'cores', align: 'right' },
      ],
      [
        ...r.ztunnels.map((z) => [z.name, z.cpuCores.toFixed(2)]),
        ['backend', r.cpuCores.backend.toFixed(2)],
        ['users + harness', r.cpuCores.usersAndHarness.toFixed(2)],
      ],
    ),
    '',
    'traffic:',
    `  connections opened ${w.connects}; closed by the client ${w.clientEnds} (FIN) + ${w.clientResets} (reset) after a burst; ` +
      `most open at once ${w.openPeak} (client), ${r.ztunnelAProxiedPeak} (ztunnel A, sampled)`,
    `  backend: ${r.backend ? `${r.backend.accepted} connections, ${r.backend.requests} requests, ${r.backend.idleClosed} closed idle by the backend, ${r.backend.peerClosed} closed by ztunnel B first` : 'stats not available'}`,
    `  backend closes seen by the clients while idle: ${w.serverCloses}, after idle p50 ${(w.closeSeenAfterIdleMs.p50 / 1000).toFixed(2)} s, ` +
      `p99 ${(w.closeSeenAfterIdleMs.p99 / 1000).toFixed(2)} s, max ${(w.closeSeenAfterIdleMs.max / 1000).toFixed(2)} s (the backend closes at ${(s.idleCloseMs / 1000).toFixed(2)} s)`,
    `  requests on connections replacing one the backend closed: ${w.requestsAfterServerClose}; bursts reusing a kept-alive connection: ${w.requestsAfterShortGap}`,
    `  answered latency p50 ${ms(w.latencyMs.p50)} ms, p99 ${ms(w.latencyMs.p99)} ms, max ${ms(w.latencyMs.max)} ms` +
      (w.unsolicited ? `; ${w.unsolicited} connections got bytes nobody asked for` : ''),
  );
  for (const z of r.ztunnels) {
    const flags = Object.entries(z.connectionsByFlags).sort((a, b) => b[1] - a[1]);
    out.push(`  ${z.name} connections by response_flags: ${flags.length ? flags.map(([f, n]) => `${f} ${n}`).join(', ') : 'not available'}`);
  }
  out.push(`  listen queue overflows (kernel, whole namespace): ${r.listenOverflows ?? 'not available'}`);
  const logs = r.ztunnels.filter((z) => z.frequentLogMessages.length);
  if (logs.length) {
    out.push('', 'most frequent lines in the last 8 KB of each ztunnel log:');
    for (const z of logs) out.push(...z.frequentLogMessages.map((m) => `  ${z.name}  ${String(m.count).padStart(4)}×  ${m.message}`));
  }
  if (r.notes.length) out.push('', 'notes:', ...r.notes.map((n) => `  - ${n}`));
  return `${out.join('\n')}\n`;
}

/** One JSON object, one line. */
export function renderSoakJson(r: SoakReport): string {
  return `${JSON.stringify(r)}\n`;
}
