/**
 * DestinationRule `connectionPool` limits of one cluster (Envoy's circuit breakers): how many
 * requests may be in flight, how many HTTP/1.1 connections may be busy and how many requests may
 * wait for one. What goes over answers 503 `UO` (upstream overflow), never retried (Envoy does
 * not retry an overflow).
 *
 * HTTP/1.1 carries one request per connection at a time, so a busy connection is a request in
 * flight: `maxConnections` bounds those, and a request that finds them all busy waits (pending)
 * if fewer than `http1MaxPendingRequests` already wait, else overflows. `http2MaxRequests`
 * bounds the requests in flight over any protocol (Envoy's `max_requests`), without a queue.
 * Idle pooled connections do not count against `maxConnections`: they close after at most 4 s
 * (waypoint/upstream.ts, `idleTimeout` shortens it).
 */
import type { ConnectionPool } from '../../core/model/traffic-policy.js';
import { upstreamOverflow } from '../status.js';

/** Gives back what `admit` took; call it exactly once, when the response is over. */
export type Release = () => void;

interface Waiter {
  readonly resolve: (r: Release) => void;
  readonly reject: (e: unknown) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
}

export class PoolLimits {
  #limits: ConnectionPool;
  #active = 0;
  #busyH1 = 0;
  readonly #pending: Waiter[] = [];
  /** Retries in flight (`maxRetries`). */
  #retries = 0;
  constructor(
    private readonly cluster: string,
    limits: ConnectionPool | undefined,
  ) {
    this.#limits = limits ?? {};
  }

  /** New limits from a new snapshot; what is in flight stays counted. */
  update(limits: ConnectionPool | undefined): void {
    this.#limits = limits ?? {};
    this.#drain();
  }

  get limits(): ConnectionPool {
    return this.#limits;
  }

  /**
   * Takes a request slot (and, over HTTP/1.1, a connection), waiting in the pending queue when
   * the connections are all busy. Rejects with 503 `UO` when a limit is full, or with the
   * signal's reason when the request is cancelled while it waits.
   */
  admit(http1: boolean, signal: AbortSignal): Promise<Release> {
    const l = this.#limits;
    if (l.http2MaxRequests !== undefined && this.#active >= l.http2MaxRequests) {
      return Promise.reject(upstreamOverflow(this.cluster, `${this.#active} requests in flight, the limit (http2MaxRequests) is ${l.http2MaxRequests}`));
    }
    if (!http1 || l.maxConnections === undefined || this.#busyH1 < l.maxConnections) return Promise.resolve(this.#take(http1));
    const maxPending = l.http1MaxPendingRequests;
    if (maxPending !== undefined && this.#pending.length >= maxPending) {
      return Promise.reject(
        upstreamOverflow(this.cluster, `all ${l.maxConnections} connections (maxConnections) are busy and ${this.#pending.length} requests wait (http1MaxPendingRequests ${maxPending})`),
      );
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<Release>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#pending.indexOf(w);
          if (i >= 0) this.#pending.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.#pending.push(w);
    });
  }

  /**
   * Whether one more retry may be sent (`maxRetries`, retries in flight across the cluster);
   * when it may, the returned function ends it.
   */
  admitRetry(): Release | undefined {
    const max = this.#limits.maxRetries;
    if (max !== undefined && this.#retries >= max) return undefined;
    this.#retries++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#retries--;
    };
  }

  #take(http1: boolean): Release {
    this.#active++;
    if (http1) this.#busyH1++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#active--;
      if (http1) this.#busyH1--;
      this.#drain();
    };
  }

  /** Hands freed connections to waiting requests, first come first served. */
  #drain(): void {
    const max = this.#limits.maxConnections;
    while (this.#pending.length > 0 && (max === undefined || this.#busyH1 < max)) {
      const w = this.#pending.shift()!;
      w.signal.removeEventListener('abort', w.onAbort);
      w.resolve(this.#take(true));
    }
  }

  dump(): { active: number; busyHttp1Connections: number; pending: number; retries: number } {
    return { active: this.#active, busyHttp1Connections: this.#busyH1, pending: this.#pending.length, retries: this.#retries };
  }
}
