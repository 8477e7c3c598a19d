import type { CertFiles } from '../certs.js';
import type { ClientLauncher } from '../client.js';
import type { ManagedProcess, ProcessTracker } from '../procs.js';
import type { Target } from '../wait.js';

/** The paths one run measures, in the order they run. */
export const PATH_NAMES = ['direct', 'stunnel', 'haproxy', 'ztunnel'] as const;
export type PathName = (typeof PATH_NAMES)[number];

/** The origin servers every path ends at. */
export interface Origin {
  /** iperf3 server. */
  readonly iperf: Target;
  /** HTTP/1.1 server returning a 1 KiB body. */
  readonly http: Target;
}

/** Everything a path needs to start; passed explicitly, nothing global. */
export interface BenchContext {
  readonly procs: ProcessTracker;
  /** Private temp dir of this run (removed in teardown). */
  readonly dir: string;
  readonly certs: CertFiles;
  readonly origin: Origin;
  /** `dist/ztunnel/main.js`, started with `node`. */
  readonly ztunnelEntry: string;
  /** Progress lines (stderr). */
  readonly log: (msg: string) => void;
}

/** A started path: where clients connect and which processes are the proxies. */
export interface RunningPath {
  readonly launcher: ClientLauncher;
  /** Where iperf3 -c connects. */
  readonly iperf: Target;
  /** Where wrk connects. */
  readonly http: Target;
  /** Proxy processes whose CPU and peak RSS are reported; empty for direct. */
  readonly proxies: readonly ManagedProcess[];
  /**
   * Bytes the proxies themselves counted so far, when they expose such a counter; lets the run
   * prove that each client's traffic went through them.
   */
  readonly countedBytes?: () => Promise<number | undefined>;
  /** Stops the proxies of this path. */
  stop(): Promise<void>;
}

/** One measured path. */
export interface PathDriver {
  readonly name: PathName;
  /** One line for the docs and the JSON output. */
  readonly description: string;
  start(ctx: BenchContext): Promise<RunningPath>;
}
