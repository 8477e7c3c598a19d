import { ToolFailedError } from './errors.js';
import type { ProcessTracker } from './procs.js';
import { clientCommand, type ClientLauncher } from './client.js';
import type { Target } from './wait.js';

/** Result of one single-stream iperf3 run. */
export interface IperfResult {
  /** Receiver-side goodput in Gbit/s (10^9 bits). */
  readonly gbps: number;
  /** TCP retransmits the sender saw (0 on loopback unless something is badly wrong). */
  readonly retransmits: number | undefined;
}

/** Options of {@link runIperf}. */
export interface IperfOpts {
  readonly launcher: ClientLauncher;
  readonly target: Target;
  readonly durationSec: number;
}

/**
 * Runs `iperf3 -c HOST -p PORT -t D -P 1 -J` and returns the receiver-side throughput.
 *
 * @example
 * const { gbps } = await runIperf(procs, { launcher: NATIVE, target: { host: '127.0.0.20', port: 5201 }, durationSec: 5 });
 */
export async function runIperf(procs: ProcessTracker, opts: IperfOpts): Promise<IperfResult> {
  const argv = ['iperf3', '-c', opts.target.host, '-p', String(opts.target.port), '-t', String(opts.durationSec), '-P', '1', '-J'];
  const [cmd, args] = clientCommand(opts.launcher, argv);
  // iperf3 adds a few seconds of set-up and tear-down around the test itself.
  const res = await procs.run('iperf3 client', cmd, args, { timeoutMs: (opts.durationSec + 30) * 1_000 });
  return parseIperfJson(res.stdout, res.stderr);
}

/** Extracts the figures from `iperf3 -J` output; throws with iperf3's own error when it has one. */
export function parseIperfJson(stdout: string, stderr = ''): IperfResult {
  let doc: IperfJson;
  try {
    doc = JSON.parse(stdout) as IperfJson;
  } catch {
    throw new ToolFailedError('iperf3', 'output is not JSON', stdout + stderr);
  }
  if (doc.error) throw new ToolFailedError('iperf3', doc.error, stderr);
  const bps = doc.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number' || !(bps > 0)) {
    throw new ToolFailedError('iperf3', 'no receiver throughput in the result', stderr);
  }
  return { gbps: bps / 1e9, retransmits: doc.end?.sum_sent?.retransmits };
}

/** The part of iperf3's JSON result this harness reads. */
interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    sum_sent?: { retransmits?: number };
  };
}
