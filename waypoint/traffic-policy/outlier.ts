/**
 * DestinationRule `outlierDetection` of one cluster (Envoy's consecutive-5xx and
 * consecutive-gateway-failure detectors): an endpoint that answers `consecutive5xxErrors` 5xx in
 * a row (or `consecutiveGatewayErrors` 502/503/504) is ejected, i.e. left out of load balancing,
 * for `baseEjectionTime` × the number of times it has been ejected (at most Envoy's
 * `max_ejection_time`, 300 s, or `baseEjectionTime` when longer); the multiplier goes down by one
 * for every `interval` the endpoint then stays in. Failures the waypoint itself sees (no
 * connection, a reset, a per-try timeout) count as 503/504, as Envoy counts local-origin errors
 * when `splitExternalLocalOriginErrors` is off (Istio's default).
 *
 * Envoy ejects only while the ejected share stays within `maxEjectionPercent` (at least one
 * endpoint may always be ejected) and brings endpoints back at its next `interval` sweep after
 * their time is up; here an endpoint comes back at the first request after its time is up
 * (no timer runs, so an idle cluster costs nothing). With every endpoint ejected requests get
 * 503 `UH`, unless fewer than `minHealthPercent` are in, where Envoy's panic mode balances over
 * all of them.
 */
import type { Workload } from '../../core/model/types.js';
import type { OutlierDetection } from '../../core/model/traffic-policy.js';

/** Istio's defaults for what an `outlierDetection` block leaves out. */
export const OUTLIER_DEFAULTS = Object.freeze({
  consecutive5xxErrors: 5,
  /** 0: the gateway-error detector is off unless set (Envoy's enforcing_consecutive_gateway_failure 0). */
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
  minHealthPercent: 0,
});

/** Envoy's default `max_ejection_time`. */
export const MAX_EJECTION_TIME_MS = 300_000;

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Times ejected, minus the intervals spent in since (Envoy's ejection multiplier). */
  multiplier: number;
  /** While ejected: when it comes back. */
  ejectedUntil?: number;
  /** When it last came back (for the multiplier's decay). */
  backSince: number;
  ejections: number;
}

export class OutlierDetector {
  #cfg: Required<OutlierDetection>;
  readonly #hosts = new Map<string, HostState>();
  constructor(
    cfg: OutlierDetection,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#cfg = { ...OUTLIER_DEFAULTS, ...cfg };
  }

  update(cfg: OutlierDetection): void {
    this.#cfg = { ...OUTLIER_DEFAULTS, ...cfg };
  }

  #host(uid: string): HostState {
    let h = this.#hosts.get(uid);
    if (!h) this.#hosts.set(uid, (h = { consecutive5xx: 0, consecutiveGateway: 0, multiplier: 0, backSince: this.now(), ejections: 0 }));
    return h;
  }

  /** Brings back endpoints whose ejection time is over. */
  #sweep(): void {
    const t = this.now();
    for (const h of this.#hosts.values()) {
      if (h.ejectedUntil !== undefined && t >= h.ejectedUntil) {
        h.ejectedUntil = undefined;
        h.backSince = t;
        h.consecutive5xx = 0;
        h.consecutiveGateway = 0;
      }
    }
  }

  /**
   * The endpoints load balancing may use: those not ejected, or all of them in panic mode
   * (fewer than `minHealthPercent` in). Empty when every endpoint is ejected (503 `UH`).
   */
  eligible(eps: readonly Workload[]): readonly Workload[] {
    this.#sweep();
    const ejected = (w: Workload) => this.#hosts.get(w.uid)?.ejectedUntil !== undefined;
    if (!eps.some(ejected)) return eps;
    const inService = eps.filter((w) => !ejected(w));
    if (this.#cfg.minHealthPercent > 0 && inService.length * 100 < this.#cfg.minHealthPercent * eps.length) return eps;
    return inService;
  }

  /** An outcome of a try on `w` among `eps`: an HTTP status, or a local-origin failure (as 503, or 504 for a timeout). */
  record(w: Workload, status: number, eps: readonly Workload[]): void {
    const h = this.#host(w.uid);
    if (h.ejectedUntil !== undefined) return;
    if (status < 500) {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    h.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    const c = this.#cfg;
    const by5xx = c.consecutive5xxErrors > 0 && h.consecutive5xx >= c.consecutive5xxErrors;
    const byGateway = c.consecutiveGatewayErrors > 0 && h.consecutiveGateway >= c.consecutiveGatewayErrors;
    if (by5xx || byGateway) this.#eject(h, eps);
  }

  #eject(h: HostState, eps: readonly Workload[]): void {
    this.#sweep();
    const c = this.#cfg;
    const ejectedNow = eps.filter((w) => this.#hosts.get(w.uid)?.ejectedUntil !== undefined).length;
    // Envoy's rule: the share after this ejection within maxEjectionPercent, or none ejected yet.
    if (ejectedNow > 0 && ((ejectedNow + 1) * 100) / Math.max(1, eps.length) > c.maxEjectionPercent) {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    const t = this.now();
    const decay = Math.floor((t - h.backSince) / c.intervalMs);
    h.multiplier = Math.max(0, h.multiplier - decay) + 1;
    const cap = Math.max(MAX_EJECTION_TIME_MS, c.baseEjectionTimeMs);
    h.ejectedUntil = t + Math.min(cap, c.baseEjectionTimeMs * h.multiplier);
    h.ejections++;
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
  }

  /** Forgets endpoints that are gone from the cluster. */
  retain(eps: readonly Workload[]): void {
    const keep = new Set(eps.map((w) => w.uid));
    for (const uid of this.#hosts.keys()) if (!keep.has(uid)) this.#hosts.delete(uid);
  }

  dump(): Record<string, { ejected: boolean; ejections: number; consecutive5xx: number }> {
    this.#sweep();
    const out: Record<string, { ejected: boolean; ejections: number; consecutive5xx: number }> = {};
    for (const [uid, h] of this.#hosts) out[uid] = { ejected: h.ejectedUntil !== undefined, ejections: h.ejections, consecutive5xx: h.consecutive5xx };
    return out;
  }
}
