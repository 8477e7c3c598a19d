/**
 * What the soak reads about each ztunnel from outside: memory and file descriptors from /proc, its
 * TCP sockets by role (from /proc/PID/fd and /proc/net/tcp), and event-loop delay from its
 * `/metrics` (prom-client's default metrics, which ztunnel registers).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parseProcNetTcp, socketInode, TCP_LISTEN, type TcpSocketEntry } from '../../../core/net/proc-net.js';
import { fetchText, sumMetric } from '../metrics.js';
import { parseStatusHwmKiB, parseStatusRssKiB } from '../proc-stats.js';

/** Memory of a process now, KiB; undefined once it is gone. */
export function readMemory(pid: number): { rssKiB: number; hwmKiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rssKiB: parseStatusRssKiB(status), hwmKiB: parseStatusHwmKiB(status) };
  } catch {
    return undefined;
  }
}

/** Open file descriptors of a process (entries of /proc/PID/fd); undefined once it is gone. */
export function countFds(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** The ports that tell a ztunnel's sockets apart. */
export interface SocketRoles {
  /** Accepted connections on this local port are proxied ones (A: SOCKS5; B: none, use -1). */
  readonly proxiedLocalPort: number;
  /** Accepted connections on this local port are HBONE (B: 15008; A: none, use -1). */
  readonly hboneLocalPort: number;
  /** Admin, metrics and readiness: accepted sockets there are the harness's own scrapes. */
  readonly controlPorts: readonly number[];
  /** What every other (outgoing) socket is: A's go to B over HBONE, B's to the backend. */
  readonly outgoing: 'hbone' | 'proxied';
}

/** A process's TCP sockets by role, and its file descriptors not counting scrape connections. */
export interface SocketCensus {
  readonly fds: number;
  /**
   * Socket descriptors whose socket is in no table of the namespace (/proc/net/tcp, tcp6, udp,
   * unix): the connection is gone, but the process never closed its descriptor.
   */
  readonly closedSockets: number;
  readonly listening: number;
  /** Client-facing (A) or backend-facing (B) connections: one per proxied connection. */
  readonly proxied: number;
  /** HBONE (TLS + HTTP/2) connections between the two ztunnels: the pool. */
  readonly hbone: number;
  /** Connections of the harness's own scrapes (metrics, readiness). */
  readonly control: number;
}

/**
 * Counts a process's sockets by role. The roles follow from the local port alone because in the
 * soak each ztunnel has exactly one kind of outgoing connection; the count is over the process's
 * own descriptors (socket inodes), so other processes in the network namespace do not matter.
 * Undefined once the process is gone.
 */
export function census(pid: number, roles: SocketRoles, tables: SocketTables): SocketCensus | undefined {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const inodes = new Set<number>();
  for (const name of names) {
    try {
      const inode = socketInode(readlinkSync(`/proc/${pid}/fd/${name}`));
      if (inode !== undefined) inodes.add(inode);
    } catch {
      // Closed between readdir and readlink.
    }
  }
  const counts = { listening: 0, proxied: 0, hbone: 0, control: 0 };
  let known = 0;
  for (const inode of inodes) if (tables.otherInodes.has(inode)) known++;
  for (const e of tables.tcp) {
    if (!inodes.has(e.inode)) continue;
    known++;
    if (e.state === TCP_LISTEN) counts.listening++;
    else if (e.localPort === roles.proxiedLocalPort) counts.proxied++;
    else if (e.localPort === roles.hboneLocalPort) counts.hbone++;
    else if (roles.controlPorts.includes(e.localPort)) counts.control++;
    else counts[roles.outgoing]++;
  }
  return { fds: names.length - counts.control, closedSockets: inodes.size - known, ...counts };
}

/** The socket tables of this network namespace. */
export interface SocketTables {
  /** /proc/net/tcp, parsed (ztunnel binds IPv4 addresses only). */
  readonly tcp: readonly TcpSocketEntry[];
  /** Inodes of every other live socket: tcp6, udp, udp6, unix. */
  readonly otherInodes: ReadonlySet<number>;
}

/** Reads /proc/net/{tcp,tcp6,udp,udp6,unix}. */
export function readSocketTables(): SocketTables {
  const read = (name: string): string => {
    try {
      return readFileSync(`/proc/net/${name}`, 'utf8');
    } catch {
      return '';
    }
  };
  const otherInodes = new Set<number>();
  for (const e of parseProcNetTcp(read('tcp6'))) otherInodes.add(e.inode);
  // udp, udp6: "sl local rem st tx:rx tr:when retrnsmt uid timeout inode", as tcp.
  for (const name of ['udp', 'udp6']) {
    for (const line of read(name).split('\n').slice(1)) {
      const inode = Number(line.trim().split(/\s+/)[9]);
      if (inode > 0) otherInodes.add(inode);
    }
  }
  // unix: "Num RefCount Protocol Flags Type St Inode Path".
  for (const line of read('unix').split('\n').slice(1)) {
    const inode = Number(line.trim().split(/\s+/)[6]);
    if (inode > 0) otherInodes.add(inode);
  }
  return { tcp: parseProcNetTcp(read('tcp')), otherInodes };
}

/** Event-loop delay of one window, ms, as prom-client's histogram saw it. */
export interface LoopWindow {
  readonly p99Ms: number;
  readonly maxMs: number;
}

/**
 * Scrapes `/metrics` and returns the event-loop delay since the previous scrape: prom-client
 * resets its `monitorEventLoopDelay` histogram at every collection, so consecutive scrapes give
 * consecutive windows. The histogram samples every 10 ms and its values include that interval:
 * an idle loop reads about 10 ms. Undefined when the page or the metric is missing.
 */
export async function scrapeLoopDelay(metricsUrl: string): Promise<LoopWindow | undefined> {
  const page = await fetchText(metricsUrl);
  if (page === undefined) return undefined;
  const p99 = sumMetric(page, 'nodejs_eventloop_lag_p99_seconds');
  const max = sumMetric(page, 'nodejs_eventloop_lag_max_seconds');
  if (p99 === undefined || max === undefined) return undefined;
  return { p99Ms: p99 * 1000, maxMs: max * 1000 };
}

/**
 * Sum of every series of `metric` per value of `label` in a Prometheus text exposition.
 *
 * @example
 * countByLabel('m{a="x",response_flags="-"} 3\nm{response_flags="CONNECT"} 1\n', 'm', 'response_flags'); // { '-': 3, CONNECT: 1 }
 */
export function countByLabel(text: string, metric: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const find = new RegExp(`[{,]${label}="([^"]*)"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const value = Number(line.slice(line.lastIndexOf('}') + 1).trim().split(/\s+/)[0]);
    const key = find.exec(line)?.[1] ?? '';
    if (Number.isFinite(value)) out[key] = (out[key] ?? 0) + value;
  }
  return out;
}

/**
 * The kernel's count of connections dropped because a listen queue was full (`TcpExt:
 * ListenOverflows` in /proc/net/netstat, for the whole network namespace); undefined when absent.
 */
export function readListenOverflows(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]?.split(/\s+/) ?? [];
    const values = lines[1]?.split(/\s+/) ?? [];
    const i = names.indexOf('ListenOverflows');
    return i < 0 ? undefined : Number(values[i]);
  } catch {
    return undefined;
  }
}

/**
 * The most frequent messages among a process's last log lines (pino JSON): message, then the
 * error and its code when the line has them. Lines that are not JSON are counted as they are.
 */
export function frequentLogMessages(tail: string, limit = 5): { readonly message: string; readonly count: number }[] {
  const counts = new Map<string, number>();
  const lines = tail.split('\n');
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let key: string;
    try {
      const o = JSON.parse(line) as { msg?: unknown; error?: unknown; code?: unknown; response_flags?: unknown };
      key = [o.msg, o.response_flags && `flags ${String(o.response_flags)}`, o.error, o.code].filter(Boolean).map(String).join(': ');
    } catch {
      // A tail of a long log starts anywhere: its first line may be cut.
      if (i === 0) continue;
      key = line.slice(0, 200);
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([message, count]) => ({ message, count }));
}
