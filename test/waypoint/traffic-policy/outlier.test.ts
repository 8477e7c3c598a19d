/**
 * Outlier detection (waypoint/traffic-policy/outlier.ts) on a clock the test moves: consecutive
 * 5xx and gateway errors, ejection time growing with the ejection count (capped), the return,
 * maxEjectionPercent (at least one), minHealthPercent's panic mode.
 */
import t from 'tap';
import type { Workload } from '../../../core/model/types.js';
import { MAX_EJECTION_TIME_MS, OutlierDetector } from '../../../waypoint/traffic-policy/outlier.js';

const w = (uid: string) => ({ uid }) as Workload;
const eps = [w('a'), w('b'), w('c'), w('d')];
const uids = (l: readonly Workload[]) => l.map((x) => x.uid);

t.test('consecutive 5xx eject; a success in between resets the count', async (t) => {
  let now = 0;
  const od = new OutlierDetector({ consecutive5xxErrors: 2, maxEjectionPercent: 100 }, () => now);
  od.record(eps[0]!, 500, eps);
  od.record(eps[0]!, 200, eps);
  od.record(eps[0]!, 500, eps);
  t.same(uids(od.eligible(eps)), ['a', 'b', 'c', 'd'], 'not consecutive: still in');
  od.record(eps[0]!, 503, eps);
  t.same(uids(od.eligible(eps)), ['b', 'c', 'd'], 'ejected');
  now += 30_000;
  t.same(uids(od.eligible(eps)), ['a', 'b', 'c', 'd'], 'back after the default baseEjectionTime (30 s)');
});

t.test('ejection time is baseEjectionTime × times ejected, capped at max_ejection_time; the multiplier decays per interval', async (t) => {
  let now = 0;
  const od = new OutlierDetector({ consecutive5xxErrors: 1, baseEjectionTimeMs: 100_000, intervalMs: 1000, maxEjectionPercent: 100 }, () => now);
  const a = eps[0]!;
  const ejectedFor = () => {
    od.record(a, 500, eps);
    let ms = 0;
    while (od.eligible(eps).length !== eps.length) {
      now += 1000;
      ms += 1000;
    }
    return ms;
  };
  t.equal(ejectedFor(), 100_000, 'first: base');
  t.equal(ejectedFor(), 200_000, 'again at once: twice');
  t.equal(ejectedFor(), MAX_EJECTION_TIME_MS, 'three times would be 300 s: the cap');
  t.equal(ejectedFor(), MAX_EJECTION_TIME_MS, 'capped');
  now += 3_000; // three intervals in: the multiplier (4) goes down by 3
  t.equal(ejectedFor(), 200_000, 'after three intervals in service: (4 - 3 + 1) × base');
});

t.test('gateway errors count only 502/503/504 and only when set; 0 turns the 5xx detector off', async (t) => {
  const od = new OutlierDetector({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, maxEjectionPercent: 100 }, () => 0);
  od.record(eps[0]!, 500, eps);
  od.record(eps[0]!, 500, eps);
  od.record(eps[0]!, 500, eps);
  t.equal(od.eligible(eps).length, 4, '500s are not gateway errors, and the 5xx detector is off');
  od.record(eps[0]!, 502, eps);
  od.record(eps[0]!, 504, eps);
  t.same(uids(od.eligible(eps)), ['b', 'c', 'd']);
});

t.test('maxEjectionPercent: no ejection past it, but always at least one', async (t) => {
  const od = new OutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 10 }, () => 0);
  for (const e of eps) od.record(e, 500, eps);
  t.same(uids(od.eligible(eps)), ['b', 'c', 'd'], '10 % of 4 is less than one host: one is ejected anyway (Envoy)');
  const half = new OutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 50 }, () => 0);
  for (const e of eps) half.record(e, 500, eps);
  t.same(uids(half.eligible(eps)), ['c', 'd'], 'two of four');
  const all = new OutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 100 }, () => 0);
  for (const e of eps) all.record(e, 500, eps);
  t.same(all.eligible(eps), [], 'every one ejected: the caller answers 503 UH');
});

t.test('minHealthPercent: below it, panic mode balances over every endpoint', async (t) => {
  const od = new OutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 100, minHealthPercent: 50 }, () => 0);
  od.record(eps[0]!, 500, eps);
  od.record(eps[1]!, 500, eps);
  t.same(uids(od.eligible(eps)), ['c', 'd'], '50 % in: outlier detection holds');
  od.record(eps[2]!, 500, eps);
  t.same(uids(od.eligible(eps)), ['a', 'b', 'c', 'd'], '25 % in: panic, all of them');
});

t.test('a failure of an ejected endpoint is not counted; retain forgets endpoints that left', async (t) => {
  const od = new OutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 100 }, () => 0);
  od.record(eps[0]!, 500, eps);
  od.record(eps[0]!, 500, eps);
  t.equal((od.dump()['a'] as { ejections: number }).ejections, 1);
  od.retain([eps[1]!]);
  t.same(Object.keys(od.dump()), [], 'a is gone from the cluster');
});
