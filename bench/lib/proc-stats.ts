import { readFileSync } from 'node:fs';

/** One reading of a process from /proc. */
export interface ProcReading {
  /** utime + stime, in clock ticks (all threads of the process). */
  readonly cpuTicks: number;
  /** VmHWM: peak resident set size so far, in KiB. */
  readonly hwmKiB: number;
}

/** What a {@link UsageSampler} saw over its window. */
export interface Usage {
  /** CPU seconds (user + system) all sampled processes used between start() and stop(). */
  readonly cpuSec: number;
  /** Largest VmHWM of any sampled process, in MiB. */
  readonly peakRssMiB: number;
}

/** Linux USER_HZ; 100 on every mainstream architecture (`getconf CLK_TCK`). */
export const CLOCK_TICKS_PER_SEC = 100;

/**
 * Reads utime+stime from /proc/PID/stat and VmHWM from /proc/PID/status; undefined once the
 * process is gone.
 */
export function readProc(pid: number): ProcReading | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { cpuTicks: parseStatCpuTicks(stat), hwmKiB: parseStatusHwmKiB(status) };
  } catch {
    return undefined;
  }
}

/** utime (field 14) + stime (field 15) of a /proc/PID/stat line. */
export function parseStatCpuTicks(stat: string): number {
  // comm (field 2) may hold spaces and parentheses, so count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  return Number(fields[11]) + Number(fields[12]);
}

/** VmHWM in KiB from /proc/PID/status; 0 when absent (kernel threads). */
export function parseStatusHwmKiB(status: string): number {
  return Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
}

/** VmRSS (resident set size now) in KiB from /proc/PID/status; 0 when absent (kernel threads). */
export function parseStatusRssKiB(status: string): number {
  return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
}

/**
 * Samples a set of processes periodically so the figures survive a process that dies mid-run:
 * the CPU delta and peak RSS come from the last good reading of each.
 *
 * @example
 * const s = new UsageSampler([pidA, pidB]);
 * s.start(); await load(); const { cpuSec, peakRssMiB } = s.stop();
 */
export class UsageSampler {
  private readonly first = new Map<number, ProcReading>();
  private readonly last = new Map<number, ProcReading>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pids: readonly number[],
    private readonly intervalMs = 250,
  ) {}

  /** Takes the baseline reading and starts sampling. */
  start(): void {
    for (const pid of this.pids) {
      const r = readProc(pid);
      if (!r) continue;
      this.first.set(pid, r);
      this.last.set(pid, r);
    }
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  /** Takes a final reading, stops sampling and returns the totals. */
  stop(): Usage {
    clearInterval(this.timer);
    this.sample();
    let ticks = 0;
    let hwm = 0;
    for (const [pid, first] of this.first) {
      const last = this.last.get(pid) ?? first;
      ticks += last.cpuTicks - first.cpuTicks;
      hwm = Math.max(hwm, last.hwmKiB);
    }
    return { cpuSec: ticks / CLOCK_TICKS_PER_SEC, peakRssMiB: hwm / 1024 };
  }

  private sample(): void {
    for (const pid of this.first.keys()) {
      const r = readProc(pid);
      if (r) this.last.set(pid, r);
    }
  }
}
