/**
 * The soak's users: one connection each through ztunnel A's SOCKS5 listener to the backend, used
 * the way people use apps. A user opens its connection, sends a burst of requests with short
 * think times between them, goes idle, and comes back. Most idle gaps are longer than the
 * backend's keep-alive timeout, so the backend closes the idle connection and that close has to
 * reach the user through both ztunnels; the user then opens a new connection for its next burst,
 * as any keep-alive client does. Some gaps are shorter, so a kept-alive connection is reused.
 * After a burst a user sometimes closes the connection itself (FIN, sometimes a reset).
 *
 * Every request ends exactly once, either answered (whole, status 200, the body for its own
 * path, within {@link SHAPE}.requestTimeoutMs) or lost with a reason; a request that could not be
 * sent because its connection could not be opened is lost too. So sent = answered + lost.
 */
import { seededRandom } from '../../../core/seeded-random.js';
import net from 'node:net';
import { parseResponse, requestBytes } from './protocol.js';

/** A TCP address. */
export interface Address {
  readonly host: string;
  readonly port: number;
}

/** Everything the users need; passed to the worker as `workerData`. */
export interface WorkloadConfig {
  readonly connections: number;
  /** No burst starts after this; requests in flight still finish, then every connection closes. */
  readonly durationMs: number;
  /** Users start at random times within this window. */
  readonly rampMs: number;
  /** ztunnel A's SOCKS5 listener. */
  readonly socks: Address;
  /** The client workloads' IPs (all on node A); user i connects from `sourceIps[i % n]`. */
  readonly sourceIps: readonly string[];
  readonly backend: Address;
  /** The keep-alive timeout the backend announces (`Keep-Alive: timeout=5`). */
  readonly keepAliveMs: number;
  /** When the backend really closes an idle connection (Node waits a second past what it announces). */
  readonly idleCloseMs: number;
  readonly seed: number;
}

/**
 * The users' behaviour. Short idle gaps end `marginMs` before the announced keep-alive timeout,
 * long ones start `marginMs` after the backend really closes: a request sent at the very moment
 * the backend's timer fires is lost by any client, proxied or not, and that race says nothing
 * about ztunnel.
 */
export const SHAPE = {
  burstRequests: { min: 1, max: 6 },
  thinkMs: { min: 50, max: 500 },
  /** Share of idle gaps shorter than the keep-alive timeout (the connection is reused). */
  shortGapShare: 0.25,
  shortGapMinMs: 500,
  marginMs: 2_000,
  longGapMaxMs: 40_000,
  /** After a burst: share of users that close their connection with FIN, and with a reset. */
  clientEndShare: 0.15,
  clientResetShare: 0.03,
  requestTimeoutMs: 10_000,
  /** TCP connect plus the SOCKS5 exchange, which ends once ztunnel B reached the backend. */
  connectTimeoutMs: 10_000,
  /** How long the final FIN of each connection may take to be answered before it is destroyed. */
  closeTimeoutMs: 10_000,
} as const;

/** Count, median, 99th percentile and maximum of a set of durations, ms. */
export interface Percentiles {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** What the users did and saw. */
export interface WorkloadStats {
  readonly sent: number;
  readonly answered: number;
  readonly lost: number;
  /** Lost requests by reason. */
  readonly lostBy: Readonly<Record<string, number>>;
  /** Connections opened (SOCKS5 succeeded). */
  readonly connects: number;
  readonly clientEnds: number;
  readonly clientResets: number;
  /** Closes that came from the backend side while the connection was idle. */
  readonly serverCloses: number;
  /** Requests sent on a connection opened to replace one the backend had closed. */
  readonly requestsAfterServerClose: number;
  /** First requests of a burst sent on a connection kept alive over an idle gap. */
  readonly requestsAfterShortGap: number;
  /** Bytes received with no request outstanding (the connection is then closed). */
  readonly unsolicited: number;
  /** Most connections open at once. */
  readonly openPeak: number;
  /** Answered requests: send to last byte. */
  readonly latencyMs: Percentiles;
  /** Idle time between a connection's last response and the backend's close reaching the user. */
  readonly closeSeenAfterIdleMs: Percentiles;
}

/** Counters the harness logs while the run goes on. */
export interface WorkloadProgress {
  readonly elapsedMs: number;
  readonly open: number;
  readonly sent: number;
  readonly answered: number;
  readonly lost: number;
}

type Outcome = { readonly ok: true } | { readonly ok: false; readonly why: string };

/** Suffix of a lost request's reason when its connection had sat idle past the backend's close. */
export const STALE_SUFFIX = ', on a connection idle past the backend close';

/**
 * Runs the users to the end and returns what they saw; never rejects.
 *
 * @example
 * const stats = await runWorkload(config, (p) => log(p.sent));
 */
export async function runWorkload(cfg: WorkloadConfig, onProgress?: (p: WorkloadProgress) => void, progressMs = 1_000): Promise<WorkloadStats> {
  const w = new Workload(cfg);
  const timer = onProgress ? setInterval(() => onProgress(w.progress()), progressMs) : undefined;
  try {
    await Promise.all(Array.from({ length: cfg.connections }, (_, i) => w.user(i)));
  } finally {
    clearInterval(timer);
  }
  return w.stats();
}

class Workload {
  private readonly t0 = performance.now();
  private readonly stopAt: number;
  private readonly random: () => number;
  private readonly greeting: Buffer;
  sent = 0;
  answered = 0;
  lost = 0;
  readonly lostBy = new Map<string, number>();
  connects = 0;
  clientEnds = 0;
  clientResets = 0;
  serverCloses = 0;
  requestsAfterServerClose = 0;
  requestsAfterShortGap = 0;
  unsolicited = 0;
  open = 0;
  openPeak = 0;
  readonly latencies: number[] = [];
  readonly closeSeenAfter: number[] = [];

  constructor(readonly cfg: WorkloadConfig) {
    this.stopAt = this.t0 + cfg.durationMs;
    this.random = seededRandom(cfg.seed);
    const ip = cfg.backend.host.split('.').map(Number);
    const { port } = cfg.backend;
    // Greeting (version 5, one method: no authentication) and CONNECT to an IPv4 address, in one write.
    this.greeting = Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, ...ip, port >> 8, port & 0xff]);
  }

  progress(): WorkloadProgress {
    return { elapsedMs: performance.now() - this.t0, open: this.open, sent: this.sent, answered: this.answered, lost: this.lost };
  }

  stats(): WorkloadStats {
    return {
      sent: this.sent,
      answered: this.answered,
      lost: this.lost,
      lostBy: Object.fromEntries([...this.lostBy].sort((a, b) => b[1] - a[1])),
      connects: this.connects,
      clientEnds: this.clientEnds,
      clientResets: this.clientResets,
      serverCloses: this.serverCloses,
      requestsAfterServerClose: this.requestsAfterServerClose,
      requestsAfterShortGap: this.requestsAfterShortGap,
      unsolicited: this.unsolicited,
      openPeak: this.openPeak,
      latencyMs: percentiles(this.latencies),
      closeSeenAfterIdleMs: percentiles(this.closeSeenAfter),
    };
  }

  /** One user, from its random start to its last close. */
  async user(id: number): Promise<void> {
    const { cfg } = this;
    const source = cfg.sourceIps[id % cfg.sourceIps.length] as string;
    await sleep(this.random() * cfg.rampMs);
    let conn: Connection | undefined;
    let previousClosedByServer = false;
    let seq = 0;
    while (performance.now() < this.stopAt) {
      const n = this.between(SHAPE.burstRequests.min, SHAPE.burstRequests.max + 1) | 0;
      for (let i = 0; i < n && performance.now() < this.stopAt; i++) {
        if (i > 0) await sleep(this.between(SHAPE.thinkMs.min, SHAPE.thinkMs.max));
        if (conn && !conn.usable) {
          previousClosedByServer = conn.closedByServer;
          conn = undefined;
        }
        const path = `/u${id}/r${seq++}`;
        this.sent++;
        if (!conn) {
          const opened = await this.connect(source);
          if (typeof opened === 'string') {
            this.lose(opened);
            continue;
          }
          conn = opened;
          conn.replacesServerClosed = previousClosedByServer;
          previousClosedByServer = false;
        } else if (i === 0) {
          this.requestsAfterShortGap++;
        }
        if (conn.replacesServerClosed) this.requestsAfterServerClose++;
        const idleMs = performance.now() - conn.lastActivity;
        const started = performance.now();
        const outcome = await conn.request(path);
        if (outcome.ok) {
          this.answered++;
          this.latencies.push(performance.now() - started);
        } else {
          // An idle connection the backend should have closed, but whose close never arrived.
          this.lose(outcome.why + (idleMs > cfg.idleCloseMs ? STALE_SUFFIX : ''));
          conn.abort();
          conn = undefined;
        }
      }
      if (conn?.usable) {
        const r = this.random();
        if (r < SHAPE.clientEndShare) {
          this.clientEnds++;
          conn.endByClient();
          conn = undefined;
        } else if (r < SHAPE.clientEndShare + SHAPE.clientResetShare) {
          this.clientResets++;
          conn.resetByClient();
          conn = undefined;
        }
      }
      await sleep(Math.min(this.idleGap(), this.stopAt - performance.now()));
    }
    if (conn?.usable) await conn.close();
  }

  /** Short (connection reused) or long (the backend closes it first), never near the timeout. */
  private idleGap(): number {
    const shortMax = Math.max(0, this.cfg.keepAliveMs - SHAPE.marginMs);
    const longMin = this.cfg.idleCloseMs + SHAPE.marginMs;
    return this.random() < SHAPE.shortGapShare
      ? this.between(Math.min(SHAPE.shortGapMinMs, shortMax), shortMax)
      : this.between(longMin, Math.max(SHAPE.longGapMaxMs, longMin + SHAPE.marginMs));
  }

  private between(min: number, max: number): number {
    return min + this.random() * (max - min);
  }

  lose(why: string): void {
    this.lost++;
    this.lostBy.set(why, (this.lostBy.get(why) ?? 0) + 1);
  }

  opened(): void {
    this.connects++;
    this.open++;
    if (this.open > this.openPeak) this.openPeak = this.open;
  }

  /** TCP to ztunnel A, then SOCKS5 CONNECT to the backend; a string says why it failed. */
  private connect(localAddress: string): Promise<Connection | string> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: this.cfg.socks.host, port: this.cfg.socks.port, localAddress });
      socket.setNoDelay(true);
      let phase: 'connect' | 'socks' = 'connect';
      let got = Buffer.alloc(0);
      let settled = false;
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(why);
      };
      const timer = setTimeout(() => fail(`${phase} timeout`), SHAPE.connectTimeoutMs);
      const onData = (chunk: Buffer): void => {
        got = Buffer.concat([got, chunk]);
        if (got[0] !== undefined && got[0] !== 0x05) return fail('socks bad version');
        if (got[1] !== undefined && got[1] !== 0x00) return fail('socks no acceptable method');
        // Method reply (2 bytes), then the CONNECT reply: 4 bytes, IPv4 address, port.
        if (got[3] !== undefined && got[3] !== 0x00) return fail(`socks reply ${got[3]}`);
        if (got.length < 12) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        this.opened();
        resolve(new Connection(socket, got.subarray(12), this));
      };
      const onError = (err: NodeJS.ErrnoException): void => fail(`${phase} ${err.code ?? err.message}`);
      const onClose = (): void => fail(`${phase} closed`);
      socket.once('connect', () => {
        phase = 'socks';
        socket.write(this.greeting);
      });
      socket.on('data', onData);
      socket.once('error', onError);
      socket.once('close', onClose);
    });
  }
}

/** One open connection (after SOCKS5) and the request on it, if any. */
class Connection {
  /** When the last response completed (or the connection opened). */
  lastActivity = performance.now();
  /** The other side (the backend, through the ztunnels) closed or reset it while it was idle. */
  closedByServer = false;
  /** Opened because the backend had closed this user's previous connection. */
  replacesServerClosed = false;
  private closedByClient = false;
  private closed = false;
  private readonly closedPromise: Promise<void>;
  private buf: Buffer;
  private errorCode: string | undefined;
  private pending: { readonly path: string; readonly done: (o: Outcome) => void; readonly timer: NodeJS.Timeout } | undefined;

  constructor(
    readonly socket: net.Socket,
    leftover: Buffer,
    private readonly w: Workload,
  ) {
    this.buf = leftover;
    if (leftover.length > 0) {
      w.unsolicited++;
      this.abort();
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      if (this.pending) return this.finish({ ok: false, why: 'closed before response' });
      if (this.closedByClient) return;
      this.closedByServer = true;
      w.serverCloses++;
      w.closeSeenAfter.push(performance.now() - this.lastActivity);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (this.errorCode ??= err.code ?? err.message));
    this.closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        w.open--;
        if (this.pending) {
          this.finish({ ok: false, why: this.errorCode ? `reset (${this.errorCode})` : 'closed before response' });
        } else if (!this.closedByClient && !this.closedByServer) {
          // A reset while idle: the other side gave up on the connection.
          this.closedByServer = true;
          w.serverCloses++;
          w.closeSeenAfter.push(performance.now() - this.lastActivity);
        }
        resolve();
      }),
    );
  }

  /** Neither side has closed it. */
  get usable(): boolean {
    return !this.closed && !this.closedByServer && !this.closedByClient && this.socket.writable;
  }

  request(path: string): Promise<Outcome> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.finish({ ok: false, why: 'timeout' });
        this.abort();
      }, SHAPE.requestTimeoutMs);
      this.pending = { path, done: resolve, timer };
      this.buf = Buffer.alloc(0);
      this.socket.write(requestBytes(path));
    });
  }

  endByClient(): void {
    this.closedByClient = true;
    this.socket.end();
  }

  resetByClient(): void {
    this.closedByClient = true;
    this.socket.resetAndDestroy();
  }

  /** Gives the connection up (after a lost request or garbage): not a close by the other side. */
  abort(): void {
    this.closedByClient = true;
    this.socket.destroy();
  }

  /** FIN, then wait for the other side's; destroyed when that does not come in time. */
  async close(): Promise<void> {
    this.endByClient();
    const timer = setTimeout(() => this.socket.destroy(), SHAPE.closeTimeoutMs);
    await this.closedPromise;
    clearTimeout(timer);
  }

  private onData(chunk: Buffer): void {
    if (!this.pending) {
      this.w.unsolicited++;
      this.abort();
      return;
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const r = parseResponse(this.buf, this.pending.path);
    if (r.kind === 'incomplete') return;
    if (r.kind === 'ok') {
      this.lastActivity = performance.now();
      this.finish({ ok: true });
      return;
    }
    this.finish({ ok: false, why: r.why });
    this.abort();
  }

  private finish(o: Outcome): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.done(o);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}


/** Nearest-rank percentiles; zeros for an empty set. */
export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const sorted = Float64Array.from(values).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] as number };
}
