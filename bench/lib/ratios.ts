import type { PathResult } from './measure.js';

/** A ratio with what it was computed from; `value` is null (kept in the JSON) when an input is missing. */
export interface Ratio {
  readonly value: number | null;
  /** The path the ztunnel is compared with. */
  readonly baseline: string | null;
  /** Why `value` is null. */
  readonly missing?: string;
}

/** The three headline comparisons of a run. */
export interface Ratios {
  /** ztunnel throughput ÷ the better native pair's; higher is better. */
  readonly throughput: Ratio;
  /** ztunnel requests/s ÷ the better native pair's; higher is better. */
  readonly rps: Ratio;
  /** (ztunnel p50 − direct p50) ÷ (haproxy p50 − direct p50); lower is better. */
  readonly addedP50VsHaproxy: Ratio;
}

const NATIVE_PAIRS = ['stunnel', 'haproxy'] as const;

/**
 * Computes the ratios from the rows of one run; rows that failed simply leave a ratio undefined.
 *
 * @example
 * const r = computeRatios(results);
 * r.throughput.value; // e.g. 0.42 = ztunnel reaches 42 % of the better native pair
 */
export function computeRatios(results: readonly PathResult[]): Ratios {
  const by = (name: string): PathResult | undefined => results.find((r) => r.name === name && !r.error);
  const zt = by('ztunnel');
  return {
    throughput: vsBestPair(zt, results, (r) => r.throughputGbps),
    rps: vsBestPair(zt, results, (r) => r.rps),
    addedP50VsHaproxy: addedLatency(zt, by('haproxy'), by('direct')),
  };
}

function vsBestPair(
  zt: PathResult | undefined,
  results: readonly PathResult[],
  figure: (r: PathResult) => number | undefined,
): Ratio {
  const pairs = results.filter((r) => (NATIVE_PAIRS as readonly string[]).includes(r.name) && !r.error);
  const best = pairs
    .filter((r) => figure(r) !== undefined)
    .sort((x, y) => (figure(y) as number) - (figure(x) as number))[0];
  const z = zt ? figure(zt) : undefined;
  if (z === undefined) return { value: null, baseline: best?.name ?? null, missing: 'no ztunnel figure' };
  if (!best) return { value: null, baseline: null, missing: 'no native pair figure' };
  return { value: z / (figure(best) as number), baseline: best.name };
}

function addedLatency(zt: PathResult | undefined, ha: PathResult | undefined, direct: PathResult | undefined): Ratio {
  const base = direct?.p50Us;
  const z = zt?.p50Us;
  const h = ha?.p50Us;
  if (base === undefined || z === undefined || h === undefined) {
    return { value: null, baseline: 'haproxy', missing: 'needs direct, haproxy and ztunnel p50' };
  }
  if (h - base <= 0) {
    return { value: null, baseline: 'haproxy', missing: 'haproxy added no measurable p50 latency' };
  }
  return { value: (z - base) / (h - base), baseline: 'haproxy' };
}
