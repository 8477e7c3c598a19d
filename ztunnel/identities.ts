/**
 * Which workload identities this ztunnel needs certificates for: fetching them as soon as they
 * are needed (Istio ztunnel's `CertFetcher::prefetch_cert`), and forgetting the others
 * (`CertFetcher::clear_cert`).
 *
 * An identity is needed while a meshed (HBONE) workload on this node has it, or when it is one of
 * ztunnel's own (its control-plane identity).
 *
 * Prefetch: every snapshot (the first one at start included) asks the secret manager for every
 * needed workload identity, so certificates are in hand before any connection needs one. A
 * connection then never waits on the CA while a valid certificate exists, and a control plane
 * that goes away right after a ztunnel restart does not take the node's pods off the network.
 * Asking is idempotent (the secret manager holds one entry per identity and retries a failed
 * request itself, with backoff, until the identity is forgotten), so asking on every snapshot
 * costs nothing more than a map lookup for an identity already held, and re-requests one that
 * was dropped behind our back (a CA rotation drops every certificate).
 *
 * Forget: without it the secret manager would renew the certificate of every identity ever held
 * on the node, forever: with pod churn that is unbounded memory, a CSR per stale identity at each
 * half-life, and, with the control plane's CA, a 403 retried with backoff for every identity that
 * left the node. Only identities ztunnel itself asked for (prefetched, or asked for by the data
 * path) are ever forgotten: another user of the same secret manager (the discovery stream, with
 * ztunnel's own identity) keeps what it fetched. Forgetting also stops the retries of an identity
 * whose requests are failing. An identity that stops being needed is forgotten only once it has
 * been unneeded in every snapshot, and unused, for a whole grace period:
 * - a transient snapshot (a control plane answering from caches that are not synced yet after a
 *   restart, a pod deleted and recreated on the node with the same service account) must not
 *   cost a CSR on the next connection, nor fail it while the CA is unreachable;
 * - a connection that read the previous snapshot may still ask for the certificate after the
 *   update; its use restarts the wait.
 * Forgetting never breaks anything: TLS sessions already open do not need the certificate after
 * the handshake, and a later `fetch` of a forgotten identity simply requests it again.
 */
import type { Logger } from '../core/telemetry/log.js';
import type { MeshState } from '../core/model/state.js';
import type { WorkloadCertificate } from '../core/identity/certificate.js';
import { realTimers, type Timers } from '../core/identity/secret-manager.js';

/**
 * The identities of the meshed workloads on `node`: those ztunnel presents as an HBONE server
 * (inbound) and as a client (outbound). Both directions use exactly this set.
 */
export function localIdentities(state: MeshState, node: string): Set<string> {
  const ids = new Set<string>();
  for (const w of state.workloadsOnNode(node)) {
    if (w.protocol === 'HBONE') ids.add(state.workloadIdentity(w));
  }
  return ids;
}

/** Inputs of `IdentityRetention`. */
export interface IdentityRetentionInputs {
  readonly nodeName: string;
  /** How long an identity stays unneeded and unused before it is forgotten. */
  readonly graceMs: number;
  /**
   * Drops an identity from the secret manager. Absent when the certificate source cannot forget:
   * then nothing is forgotten and `/config_dump` only marks such identities as not needed.
   */
  readonly forget: ((identity: string) => void) | undefined;
  /**
   * Asks the certificate source for an identity's certificate ahead of use, without waiting and
   * without failing (the source retries by itself). Called for every needed workload identity on
   * every snapshot. Absent: certificates are fetched when a connection first needs them.
   */
  readonly prefetch?: (identity: string) => void;
  /** Identities never forgotten: ztunnel's own (the one its discovery stream uses). */
  readonly pinned?: readonly string[];
  readonly logger: Logger;
  /** Clock in ms; tests inject one, with `timers` to match. */
  readonly now?: () => number;
  /** Timers of the grace period; `realTimers` (unref'd) unless set. */
  readonly timers?: Timers;
}

/** One identity's entry in `/config_dump` (never the key). */
export interface HeldIdentityDump {
  /** Absent until the first certificate arrived (the request is in flight or failing). */
  notBefore?: Date;
  notAfter?: Date;
  /** Certificates issued after the first. */
  rotations: number;
  /** Whether a meshed workload on this node (or ztunnel itself) has this identity now. */
  needed: boolean;
  /** When not needed and forgetting is possible: when it will be forgotten if it stays unneeded and unused. */
  forgetAt?: Date;
}

interface Held {
  cert?: { notBefore: Date; notAfter: Date };
  /** Issued certificates; rotations = issued - 1. */
  issued: number;
  /** Last `fetch` by the data path (ms); 0 if it never asked. */
  lastUsed: number;
  /** Prefetched because a snapshot needed it. Prefetched or used: ours to forget. */
  prefetched: boolean;
  /** When the snapshots stopped needing it; undefined while needed. */
  unneededSince?: number;
  /** The grace-period timer (a `Timers` handle). */
  timer?: unknown;
}

/**
 * Tracks the identities the secret manager holds for ztunnel, prefetches the needed ones, and
 * forgets those no longer needed. Fed with every configuration snapshot (`update`), every
 * certificate request of the data path (`used`) and every certificate issued (`issued`).
 *
 * @example
 * const retention = new IdentityRetention({
 *   nodeName, graceMs: 300_000, logger,
 *   forget: (id) => secrets.forget(id),
 *   prefetch: (id) => void secrets.fetch(id).catch(() => undefined),
 * });
 * configSource.start((cfg) => retention.update(new MeshState(cfg)));
 * secrets.onRotate((cert) => retention.issued(cert));
 */
export class IdentityRetention {
  readonly #in: IdentityRetentionInputs;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #pinned: ReadonlySet<string>;
  readonly #held = new Map<string, Held>();
  #needed: ReadonlySet<string>;
  #closed = false;

  constructor(inputs: IdentityRetentionInputs) {
    if (!(inputs.graceMs > 0)) throw new RangeError(`graceMs must be positive, got ${inputs.graceMs}`);
    this.#in = inputs;
    this.#now = inputs.now ?? Date.now;
    this.#timers = inputs.timers ?? realTimers;
    this.#pinned = new Set(inputs.pinned ?? []);
    this.#needed = this.#pinned;
  }

  /**
   * A new configuration snapshot: recomputes the needed identities, prefetches the needed workload
   * identities (those of ztunnel itself are its discovery stream's to fetch), and reviews every
   * held one.
   */
  update(state: MeshState): void {
    const workloads = localIdentities(state, this.#in.nodeName);
    const needed = new Set([...workloads, ...this.#pinned]);
    this.#needed = needed;
    const prefetch = this.#in.prefetch;
    if (prefetch && !this.#closed) {
      for (const id of workloads) {
        if (this.#pinned.has(id)) continue;
        this.#track(id).prefetched = true;
        prefetch(id);
      }
    }
    for (const [id, h] of this.#held) this.#review(id, h);
  }

  /** A connection asks for the certificate of `identity`. */
  used(identity: string): void {
    const h = this.#track(identity);
    h.lastUsed = this.#now();
    this.#review(identity, h);
  }

  /** The secret manager obtained a certificate (the first or a renewal). */
  issued(cert: Pick<WorkloadCertificate, 'identity' | 'notBefore' | 'notAfter'>): void {
    const h = this.#track(cert.identity);
    h.cert = { notBefore: cert.notBefore, notAfter: cert.notAfter };
    h.issued++;
    this.#review(cert.identity, h);
  }

  /** The identities held, for `/config_dump`. */
  dump(): Record<string, HeldIdentityDump> {
    const out: Record<string, HeldIdentityDump> = {};
    for (const [id, h] of [...this.#held].sort(([a], [b]) => a.localeCompare(b))) {
      const needed = this.#needed.has(id);
      out[id] = {
        ...(h.cert ? { notBefore: h.cert.notBefore, notAfter: h.cert.notAfter } : {}),
        rotations: Math.max(0, h.issued - 1),
        needed,
        ...(!needed && this.#forgettable(h) ? { forgetAt: new Date(this.#forgetAt(h)) } : {}),
      };
    }
    return out;
  }

  /** Stops every timer; nothing is prefetched or forgotten afterwards. */
  close(): void {
    this.#closed = true;
    for (const h of this.#held.values()) this.#timers.clearTimeout(h.timer);
  }

  #track(identity: string): Held {
    let h = this.#held.get(identity);
    if (!h) {
      h = { issued: 0, lastUsed: 0, prefetched: false };
      this.#held.set(identity, h);
    }
    return h;
  }

  #forgettable(h: Held): boolean {
    return this.#in.forget !== undefined && (h.lastUsed > 0 || h.prefetched);
  }

  #forgetAt(h: Held): number {
    return Math.max(h.unneededSince ?? this.#now(), h.lastUsed) + this.#in.graceMs;
  }

  /** Needed: cancel any pending forget. Unneeded: make sure a forget is scheduled. */
  #review(id: string, h: Held): void {
    if (this.#needed.has(id)) {
      h.unneededSince = undefined;
      this.#timers.clearTimeout(h.timer);
      h.timer = undefined;
      return;
    }
    h.unneededSince ??= this.#now();
    if (!h.timer) this.#schedule(id, h);
  }

  #schedule(id: string, h: Held): void {
    if (this.#closed || !this.#forgettable(h)) return;
    h.timer = this.#timers.setTimeout(() => this.#expire(id, h), Math.max(0, this.#forgetAt(h) - this.#now()));
  }

  /** The grace period ran out: forget, unless the identity was needed or used meanwhile. */
  #expire(id: string, h: Held): void {
    h.timer = undefined;
    if (this.#held.get(id) !== h || this.#needed.has(id)) return;
    // A use during the wait moved the deadline.
    if (this.#forgetAt(h) > this.#now()) {
      this.#schedule(id, h);
      return;
    }
    this.#held.delete(id);
    this.#in.forget?.(id);
    this.#in.logger.info(
      { identity: id, unneeded_since: new Date(h.unneededSince!).toISOString(), grace_ms: this.#in.graceMs },
      'certificate forgotten: no meshed workload on this node has this identity any more',
    );
  }
}
