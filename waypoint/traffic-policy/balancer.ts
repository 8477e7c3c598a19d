/**
 * DestinationRule `loadBalancer` on the waypoint's endpoint choice, as Envoy balances a cluster:
 * `ROUND_ROBIN`, `RANDOM`, `LEAST_REQUEST` (power of two choices over active requests) and
 * `consistentHash` (a hash ring over the endpoints, keyed by a header, a cookie, the source IP
 * or a query parameter). One `Balancer` per cluster; it sees only the endpoints outlier
 * detection left in (the caller filters them).
 */
import type { Workload } from '../../core/model/types.js';
import type { HashKey, LoadBalancer } from '../../core/model/traffic-policy.js';
import { isFieldValue } from '../../core/model/routes.js';

/** What a balancer reads of a request: the hash input and where a generated cookie goes. */
export interface BalancerRequest {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly path: string;
  readonly srcIp: string;
  readonly srcPort: number;
  /** Adds a response header edit (the generated hash cookie). */
  setCookie(value: string): void;
}

export interface Balancer {
  /** An endpoint out of `eps` (non-empty). */
  pick(eps: readonly Workload[], req: BalancerRequest): Workload;
  /** A request to `w` started / finished (LEAST_REQUEST counts them; the others ignore it). */
  started(w: Workload): void;
  finished(w: Workload): void;
}

/** Envoy's ring-hash default `minimum_ring_size`. */
export const DEFAULT_RING_SIZE = 1024;

/**
 * FNV-1a over the UTF-16 code units, then MurmurHash3's 32-bit finaliser so that near inputs
 * (`host_0`, `host_1`) land far apart on the ring. Stable across processes and restarts, so a
 * key maps to the same endpoint on every waypoint replica with the same endpoints.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class RoundRobin implements Balancer {
  #next = 0;
  pick(eps: readonly Workload[]): Workload {
    const w = eps[this.#next % eps.length]!;
    this.#next = (this.#next + 1) % 1_000_000_007;
    return w;
  }
  started(): void {}
  finished(): void {}
}

class RandomPick implements Balancer {
  constructor(private readonly random: () => number) {}
  pick(eps: readonly Workload[]): Workload {
    return eps[Math.min(eps.length - 1, Math.floor(this.random() * eps.length))]!;
  }
  started(): void {}
  finished(): void {}
}

/**
 * Envoy's LEAST_REQUEST with equal weights: two random choices, the one with fewer active
 * requests wins (ties: the first). The two are distinct endpoints (Envoy may draw the same one
 * twice), so an endpoint holding more requests than some other is never chosen over all of them
 * by chance when there are two or three endpoints.
 */
class LeastRequest implements Balancer {
  readonly #active = new Map<string, number>();
  constructor(private readonly random: () => number) {}
  pick(eps: readonly Workload[]): Workload {
    if (eps.length === 1) return eps[0]!;
    const i = Math.min(eps.length - 1, Math.floor(this.random() * eps.length));
    let j = Math.min(eps.length - 2, Math.floor(this.random() * (eps.length - 1)));
    if (j >= i) j++;
    const a = eps[i]!;
    const b = eps[j]!;
    return (this.#active.get(b.uid) ?? 0) < (this.#active.get(a.uid) ?? 0) ? b : a;
  }
  started(w: Workload): void {
    this.#active.set(w.uid, (this.#active.get(w.uid) ?? 0) + 1);
  }
  finished(w: Workload): void {
    const n = (this.#active.get(w.uid) ?? 1) - 1;
    if (n <= 0) this.#active.delete(w.uid);
    else this.#active.set(w.uid, n);
  }
}

function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const line of Array.isArray(header) ? header : [header]) {
    for (const part of line.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
      const v = part.slice(eq + 1).trim();
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
    }
  }
  return undefined;
}

function queryValue(path: string, name: string): string | undefined {
  const q = path.indexOf('?');
  if (q < 0) return undefined;
  try {
    return new URLSearchParams(path.slice(q + 1)).get(name) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * The hash input of a request, or undefined when the request lacks it (the ring then picks at
 * random, as Envoy does: never an error). A cookie hash with a `ttl` generates the cookie when
 * the request has none, from the client's address (the same value for every request of one
 * connection, as Envoy), and sets it on the response.
 */
export function hashInput(key: HashKey, req: BalancerRequest): string | undefined {
  switch (key.kind) {
    case 'header': {
      const v = req.headers[key.name];
      return v === undefined ? undefined : Array.isArray(v) ? v.join(',') : v;
    }
    case 'sourceIp':
      return req.srcIp;
    case 'queryParameter':
      return queryValue(req.path, key.name);
    case 'cookie': {
      const v = cookieValue(req.headers['cookie'], key.name);
      if (v !== undefined || key.ttlMs === undefined) return v;
      const generated = hash32(`${req.srcIp}:${req.srcPort}`).toString(16).padStart(8, '0') + hash32(`${req.srcPort}:${req.srcIp}`).toString(16).padStart(8, '0');
      const attrs = [`${key.name}="${generated}"`];
      if (key.ttlMs > 0) attrs.push(`Max-Age=${Math.floor(key.ttlMs / 1000)}`);
      if (key.path !== undefined) attrs.push(`Path=${key.path}`);
      attrs.push('HttpOnly');
      const cookie = attrs.join('; ');
      if (isFieldValue(cookie)) req.setCookie(cookie);
      return generated;
    }
  }
}

/**
 * A hash ring (Envoy's RING_HASH; MAGLEV is approximated by the same ring): `size` points spread
 * over the endpoints, each point the hash of `uid_n`; a key goes to the first point at or after
 * its hash. Removing an endpoint moves only the keys that were on it.
 */
class Ring implements Balancer {
  #ring: { readonly points: Uint32Array; readonly owners: Workload[]; readonly key: string } | undefined;
  constructor(
    private readonly key: HashKey,
    private readonly size: number,
    private readonly random: () => number,
  ) {}

  #build(eps: readonly Workload[]): { points: Uint32Array; owners: Workload[]; key: string } {
    const k = eps.map((w) => w.uid).join('\n');
    if (this.#ring?.key === k) return this.#ring;
    const per = Math.max(1, Math.ceil(this.size / eps.length));
    const entries: { h: number; w: Workload }[] = [];
    for (const w of eps) for (let i = 0; i < per; i++) entries.push({ h: hash32(`${w.uid}_${i}`), w });
    entries.sort((a, b) => a.h - b.h);
    this.#ring = { points: Uint32Array.from(entries, (e) => e.h), owners: entries.map((e) => e.w), key: k };
    return this.#ring;
  }

  pick(eps: readonly Workload[], req: BalancerRequest): Workload {
    const ring = this.#build(eps);
    const input = hashInput(this.key, req);
    const h = input === undefined ? Math.floor(this.random() * 0x1_0000_0000) : hash32(input);
    let lo = 0;
    let hi = ring.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return ring.owners[lo === ring.points.length ? 0 : lo]!;
  }
  started(): void {}
  finished(): void {}
}

/** The balancer for `lb` (undefined: round-robin, the waypoint's default). */
export function createBalancer(lb: LoadBalancer | undefined, random: () => number): Balancer {
  if (!lb) return new RoundRobin();
  if ('consistentHash' in lb) return new Ring(lb.consistentHash.key, lb.consistentHash.ringSize ?? DEFAULT_RING_SIZE, random);
  switch (lb.simple) {
    case 'RANDOM':
      return new RandomPick(random);
    case 'LEAST_REQUEST':
      return new LeastRequest(random);
    default:
      return new RoundRobin();
  }
}
