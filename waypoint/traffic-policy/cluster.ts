/**
 * One Envoy cluster per backend (`outbound|port|subset|host`) whose DestinationRule sets a
 * `trafficPolicy`: its load balancer, connection-pool limits and outlier detection, applied
 * around every try the forwarder makes. A backend without one keeps the waypoint's defaults
 * (round-robin in `UpstreamPool.pick`, no limits, no ejection) and never reaches this file.
 *
 * The policy is resolved once per (snapshot, route namespace, service, port, subset)
 * (`waypoint/subsets.ts`); the cluster's state (active requests, pending queue, ejections)
 * outlives snapshots, keyed by route namespace and cluster name, and takes a changed policy
 * in place, as Envoy updates a cluster without forgetting its hosts.
 */
import type { Readable } from 'node:stream';
import type { MeshState } from '../../core/model/state.js';
import type { Workload } from '../../core/model/types.js';
import type { PolicySettings } from '../../core/model/traffic-policy.js';
import type { RequestContext, WaypointResponse } from '../context.js';
import { allEjected, noHealthyUpstream, WaypointError } from '../status.js';
import { trafficPolicyOf } from '../subsets.js';
import { createBalancer, type Balancer, type BalancerRequest } from './balancer.js';
import { OutlierDetector } from './outlier.js';
import { PoolLimits, type Release } from './pool.js';

export class Cluster {
  #settings: PolicySettings;
  #json: string;
  #balancer: Balancer;
  readonly limits: PoolLimits;
  #outlier: OutlierDetector | undefined;
  constructor(
    readonly name: string,
    settings: PolicySettings,
    private readonly random: () => number,
    private readonly now?: () => number,
  ) {
    this.#settings = settings;
    this.#json = JSON.stringify(settings);
    this.#balancer = createBalancer(settings.loadBalancer, random);
    this.limits = new PoolLimits(name, settings.connectionPool);
    this.#outlier = settings.outlierDetection ? new OutlierDetector(settings.outlierDetection, now) : undefined;
  }

  get settings(): PolicySettings {
    return this.#settings;
  }

  /** Takes the policy of a new snapshot; only what changed is rebuilt. */
  update(settings: PolicySettings, eps: readonly Workload[]): void {
    const json = JSON.stringify(settings);
    if (json === this.#json) {
      this.#outlier?.retain(eps);
      return;
    }
    if (JSON.stringify(settings.loadBalancer) !== JSON.stringify(this.#settings.loadBalancer)) this.#balancer = createBalancer(settings.loadBalancer, this.random);
    this.limits.update(settings.connectionPool);
    if (!settings.outlierDetection) this.#outlier = undefined;
    else if (this.#outlier) this.#outlier.update(settings.outlierDetection);
    else this.#outlier = new OutlierDetector(settings.outlierDetection, this.now);
    this.#outlier?.retain(eps);
    this.#settings = settings;
    this.#json = json;
  }

  /**
   * One try through this cluster: waits for (or overflows) the connection pool, picks an
   * endpoint among those outlier detection leaves in, sends through `send`, and records the
   * outcome. The pool slot and the endpoint's active-request count are held until the response
   * body is over.
   */
  async forward(ctx: RequestContext, eps: readonly Workload[], send: (w: Workload) => Promise<WaypointResponse>): Promise<WaypointResponse> {
    clusterOf.set(ctx, this);
    const retry = retrySlot.get(ctx);
    retrySlot.delete(ctx);
    let release: Release;
    try {
      release = await this.limits.admit(ctx.httpVersion === '1.1', ctx.signal);
    } catch (err) {
      retry?.();
      throw err;
    }
    let w: Workload;
    try {
      w = this.pick(ctx, eps);
    } catch (err) {
      release();
      retry?.();
      throw err;
    }
    const balancer = this.#balancer;
    const outlier = this.#outlier;
    balancer.started(w);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      balancer.finished(w);
      release();
    };
    let res: WaypointResponse;
    try {
      res = await send(w);
    } catch (err) {
      finish();
      retry?.();
      // A cancelled request (the client left) says nothing about the endpoint; a timeout does.
      const e = err instanceof WaypointError ? err : undefined;
      if (outlier && e && (e.flag === 'UT' || e.flag === 'UF' || e.flag === 'UC')) outlier.record(w, e.status, eps);
      throw err;
    }
    // The retry this try was is over once its answer is in (the retry layer judges it now).
    retry?.();
    outlier?.record(w, res.status, eps);
    const body = res.body as Readable | undefined;
    if (!body || body.destroyed || body.readableEnded) finish();
    else {
      body.once('end', finish);
      body.once('close', finish);
      body.once('error', finish);
    }
    return res;
  }

  /** The endpoint of this try; 503 `UH` when there is none, or none outlier detection leaves in. */
  pick(ctx: RequestContext, eps: readonly Workload[]): Workload {
    if (eps.length === 0) throw noHealthyUpstream(this.name);
    const eligible = this.#outlier ? this.#outlier.eligible(eps) : eps;
    if (eligible.length === 0) throw allEjected(this.name, eps.length);
    const req: BalancerRequest = {
      headers: ctx.headers,
      path: ctx.path,
      srcIp: ctx.stream.srcIp,
      srcPort: ctx.stream.srcPort,
      setCookie: (v) => {
        ctx.responseEdits.push((h) => {
          const prev = h['set-cookie'];
          h['set-cookie'] = prev === undefined ? [v] : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
        });
      },
    };
    return this.#balancer.pick(eligible, req);
  }

  dump(): Record<string, unknown> {
    return { name: this.name, policy: this.#settings, pool: this.limits.dump(), ...(this.#outlier ? { outlier: this.#outlier.dump() } : {}) };
  }
}

/** The cluster each request's last try went through (what `admitRetry` asks). */
const clusterOf = new WeakMap<RequestContext, Cluster>();
/** A retry admitted and not yet sent: its slot, which the retry's try gives back when it is over. */
const retrySlot = new WeakMap<RequestContext, Release>();

/**
 * Whether the retry layer may send one more try of `ctx` (`connectionPool.http.maxRetries`:
 * retries in flight across the cluster, Envoy's retry circuit breaker). False: the retry
 * overflows, and the client gets the last try's outcome with flag `UO`, as Envoy answers. The
 * slot is held until that retry's try has its answer (or the request is over, if it never goes
 * out), so one request may retry again after it. Requests without a cluster always may.
 */
export function admitRetry(ctx: RequestContext): boolean {
  const c = clusterOf.get(ctx);
  if (!c) return true;
  const release = c.limits.admitRetry();
  if (!release) return false;
  retrySlot.set(ctx, release);
  void ctx.done.then(release, release);
  return true;
}

/** Inputs: randomness (LEAST_REQUEST, RANDOM, a hash without its key) and the clock, both swappable in tests. */
export interface TrafficPolicyInputs {
  readonly random?: () => number;
  readonly now?: () => number;
}

/** Every cluster of the waypoint that has a policy. */
export class TrafficPolicies {
  readonly #clusters = new Map<string, Cluster>();
  readonly #perState = new WeakMap<MeshState, Map<string, Cluster | null>>();
  readonly #random: () => number;
  readonly #now: (() => number) | undefined;
  constructor(inputs: TrafficPolicyInputs = {}) {
    this.#random = inputs.random ?? Math.random;
    this.#now = inputs.now;
  }

  /** The cluster of the request's backend, or undefined when no DestinationRule gives it a traffic policy. */
  cluster(ctx: RequestContext, eps: readonly Workload[]): Cluster | undefined {
    const b = ctx.backend;
    if (!b) return undefined;
    const state = ctx.stream.state;
    const routeNamespace = ctx.route?.route.namespace ?? b.service.namespace;
    const name = `outbound|${b.port}|${b.subset?.name ?? ''}|${b.service.hostname}`;
    const key = `${routeNamespace}|${name}`;
    let m = this.#perState.get(state);
    if (!m) this.#perState.set(state, (m = new Map()));
    let c = m.get(key);
    if (c === undefined) {
      const settings = trafficPolicyOf(state, b.service, b.port, b.subset?.name, routeNamespace);
      if (!settings) {
        c = null;
        this.#clusters.delete(key);
      } else {
        c = this.#clusters.get(key) ?? null;
        if (c) c.update(settings, eps);
        else this.#clusters.set(key, (c = new Cluster(name, settings, this.#random, this.#now)));
      }
      m.set(key, c);
    }
    return c ?? undefined;
  }

  /** Cluster states for `/config_dump`. */
  dump(): Record<string, unknown>[] {
    return [...this.#clusters.values()].map((c) => c.dump());
  }
}
