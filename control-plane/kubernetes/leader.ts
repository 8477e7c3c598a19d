/**
 * Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it, so
 * that of several control-plane replicas exactly one writes status (every replica serves the CA
 * and discovery; those need no leader).
 *
 * - A replica takes the Lease when it does not exist, is released (`holderIdentity` empty), or
 *   has not been renewed for `leaseDurationSeconds` as measured on this replica's own clock since
 *   it last saw the record change (clocks of different machines are never compared).
 * - Every write carries the resourceVersion read just before (optimistic locking): of two
 *   replicas racing for an expired Lease, one gets 409 Conflict and stays a follower.
 * - The leader renews every `retryPeriodMs`; when no renew succeeded for `renewDeadlineMs` (counted
 *   from before the read, by a timer, so a hung request cannot delay it) it steps down, before
 *   the Lease can expire for the others (renewDeadline < leaseDuration). Lease requests are
 *   abandoned after half the renew deadline.
 * - `close()` releases the Lease, so a rolling update hands over without waiting for expiry.
 */
import type { Logger } from '../../core/telemetry/log.js';
import { KubeApiError, type KubeApi, type KubeObject } from '../../core/kube/api.js';

export interface LeaderTimings {
  readonly leaseDurationSeconds: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
}

/** client-go's defaults (and Istio's). */
export const DEFAULT_LEADER_TIMINGS: LeaderTimings = Object.freeze({ leaseDurationSeconds: 15, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });

export interface LeaderElectorInputs {
  readonly api: KubeApi;
  readonly namespace: string;
  readonly name: string;
  /** This replica's identity (its pod name). */
  readonly identity: string;
  readonly logger: Logger;
  readonly timings?: Partial<LeaderTimings>;
  readonly now?: () => number;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** Lease times are RFC 3339 with microseconds (`MicroTime`). */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

/**
 * @example
 * const elector = new LeaderElector({ api, namespace: 'istio-system', name: 'ambient-control-plane', identity: podName, logger });
 * elector.onChange((leader) => (leader ? statusWriter.start() : statusWriter.stop()));
 * elector.start();
 */
export class LeaderElector {
  readonly #in: LeaderElectorInputs;
  readonly #t: LeaderTimings;
  readonly #listeners = new Set<(leader: boolean) => void>();
  #leader = false;
  /** The record as last seen, and when (our clock) it last changed. */
  #observed: { key: string; at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Steps down when no renew succeeded within renewDeadlineMs, even while a request hangs. */
  #stepDown: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(inputs: LeaderElectorInputs) {
    this.#in = inputs;
    this.#t = { ...DEFAULT_LEADER_TIMINGS, ...inputs.timings };
    if (this.#t.renewDeadlineMs >= this.#t.leaseDurationSeconds * 1000) {
      throw new RangeError('renewDeadlineMs must be shorter than leaseDurationSeconds, or two leaders could overlap');
    }
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  /** Called with `true` on becoming the leader and `false` on stepping down. */
  onChange(listener: (leader: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): void {
    if (this.#timer || this.#closed) return;
    const tick = () => {
      this.#running = this.#tick().finally(() => {
        this.#running = undefined;
        if (!this.#closed) this.#timer = setTimeout(tick, this.#t.retryPeriodMs);
      });
    };
    tick();
  }

  /** Stops, and releases the Lease if held. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#stepDown);
    await this.#running;
    if (!this.#leader) return;
    try {
      const lease = await this.#get();
      const spec = (lease?.spec ?? {}) as LeaseSpec;
      if (lease && spec.holderIdentity === this.#in.identity) {
        await this.#put(lease, { ...spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.#now()) });
        this.#in.logger.info({ lease: this.#leaseName() }, 'leader lease released');
      }
    } catch (err) {
      this.#in.logger.warn({ err }, 'could not release the leader lease; it expires on its own');
    }
    this.#set(false);
  }

  #now(): number {
    return (this.#in.now ?? Date.now)();
  }

  #leaseName(): string {
    return `${this.#in.namespace}/${this.#in.name}`;
  }

  #path(name?: string): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.#in.namespace)}/leases${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  /** Lease requests never outlive the renew deadline: a hung call must not keep a stale leader. */
  #deadline(): number {
    return Math.max(100, this.#t.renewDeadlineMs / 2);
  }

  async #get(): Promise<KubeObject | undefined> {
    try {
      return await this.#in.api.request('GET', this.#path(this.#in.name), { deadlineMs: this.#deadline() });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  async #put(lease: KubeObject, spec: LeaseSpec): Promise<void> {
    const meta = lease.metadata ?? {};
    await this.#in.api.request('PUT', this.#path(this.#in.name), {
      deadlineMs: this.#deadline(),
      body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.#in.name, namespace: this.#in.namespace, resourceVersion: meta.resourceVersion }, spec },
    });
  }

  async #tick(): Promise<void> {
    // The renew counts from before the read: others measure the lease from what they saw written.
    const attempt = this.#now();
    try {
      if (await this.#tryAcquireOrRenew()) {
        this.#set(true);
        clearTimeout(this.#stepDown);
        const left = this.#t.renewDeadlineMs - (this.#now() - attempt);
        this.#stepDown = setTimeout(() => {
          this.#in.logger.error({ lease: this.#leaseName() }, 'the leader lease was not renewed in time; stepping down');
          this.#set(false);
        }, Math.max(0, left));
        return;
      }
      this.#set(false);
    } catch (err) {
      // A leader that keeps failing steps down by its timer (set at the last successful renew).
      this.#in.logger.warn({ err }, 'leader election: the lease could not be read or written; retrying');
    }
  }

  /** True when this replica holds the Lease after the call. Throws on API errors other than a lost race. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = this.#now();
    const me = this.#in.identity;
    const wanted = (prev: LeaseSpec | undefined): LeaseSpec => {
      const held = prev?.holderIdentity === me;
      return {
        holderIdentity: me,
        leaseDurationSeconds: this.#t.leaseDurationSeconds,
        acquireTime: held && prev?.acquireTime ? prev.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (prev?.leaseTransitions ?? 0) + (held || prev === undefined ? 0 : 1),
      };
    };
    const lease = await this.#get();
    try {
      if (!lease) {
        await this.#in.api.request('POST', this.#path(), {
          deadlineMs: this.#deadline(),
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.#in.name, namespace: this.#in.namespace }, spec: wanted(undefined) },
        });
        return true;
      }
      const spec = (lease.spec ?? {}) as LeaseSpec;
      const key = `${spec.holderIdentity ?? ''}|${spec.renewTime ?? ''}|${lease.metadata?.resourceVersion ?? ''}`;
      if (this.#observed?.key !== key) this.#observed = { key, at: now };
      const holder = spec.holderIdentity ?? '';
      const duration = (spec.leaseDurationSeconds ?? this.#t.leaseDurationSeconds) * 1000;
      if (holder !== '' && holder !== me && this.#observed.at + duration > now) return false;
      await this.#put(lease, wanted(spec));
      return true;
    } catch (err) {
      // Another replica wrote first (create or update): it is the leader for now.
      if (err instanceof KubeApiError && (err.status === 409 || err.reason === 'AlreadyExists')) return false;
      throw err;
    }
  }

  #set(leader: boolean): void {
    if (!leader) clearTimeout(this.#stepDown);
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.#in.logger.info({ lease: this.#leaseName(), identity: this.#in.identity }, leader ? 'became the leader: writing status' : 'not the leader: status writes stop');
    for (const l of this.#listeners) l(leader);
  }
}
