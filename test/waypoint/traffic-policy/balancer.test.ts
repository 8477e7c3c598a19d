/**
 * Load balancers (waypoint/traffic-policy/balancer.ts): round-robin, random, least request
 * (two distinct choices), the hash ring (stable keys, few moves when an endpoint leaves, a
 * missing key picks at random), the hash inputs and the generated cookie.
 */
import t from 'tap';
import type { Workload } from '../../../core/model/types.js';
import { createBalancer, hashInput, type BalancerRequest } from '../../../waypoint/traffic-policy/balancer.js';

const w = (uid: string) => ({ uid }) as Workload;
const eps = ['a', 'b', 'c'].map(w);
const req = (headers: Record<string, string> = {}, path = '/'): BalancerRequest & { cookies: string[] } => {
  const cookies: string[] = [];
  return { headers, path, srcIp: '10.0.0.1', srcPort: 40000, setCookie: (v) => cookies.push(v), cookies };
};
/** A seeded generator, so these runs are repeatable. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('round-robin (the default and ROUND_ROBIN) cycles in order', async (t) => {
  for (const b of [createBalancer(undefined, Math.random), createBalancer({ simple: 'ROUND_ROBIN' }, Math.random)]) {
    t.same(Array.from({ length: 6 }, () => b.pick(eps, req()).uid), ['a', 'b', 'c', 'a', 'b', 'c']);
  }
});

t.test('RANDOM follows the random source', async (t) => {
  const b = createBalancer({ simple: 'RANDOM' }, seeded(1));
  const counts: Record<string, number> = {};
  for (let i = 0; i < 3000; i++) counts[b.pick(eps, req()).uid] = (counts[b.pick(eps, req()).uid] ?? 0) + 1;
  for (const k of ['a', 'b', 'c']) t.ok(counts[k]! > 800, `${k}: ${counts[k]}`);
});

t.test('LEAST_REQUEST never picks the busiest of three, and spreads over the idle ones', async (t) => {
  const b = createBalancer({ simple: 'LEAST_REQUEST' }, seeded(2));
  b.started(eps[1]!);
  b.started(eps[1]!);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 300; i++) {
    const p = b.pick(eps, req()).uid;
    counts[p] = (counts[p] ?? 0) + 1;
  }
  t.equal(counts['b'], undefined, 'b holds two requests');
  t.ok(counts['a']! > 0 && counts['c']! > 0, JSON.stringify(counts));
  b.finished(eps[1]!);
  b.finished(eps[1]!);
  b.finished(eps[1]!); // more finishes than starts never goes negative
  const after = new Set(Array.from({ length: 100 }, () => b.pick(eps, req()).uid));
  t.ok(after.has('b'), 'idle again: chosen again');
  t.equal(b.pick([eps[0]!], req()).uid, 'a', 'one endpoint');
});

t.test('the ring: a key always maps to one endpoint; removing one moves only its keys; a missing key picks at random', async (t) => {
  const b = createBalancer({ consistentHash: { key: { kind: 'header', name: 'x-user' } } }, seeded(3));
  const owner = new Map<string, string>();
  for (let i = 0; i < 300; i++) owner.set(`u${i}`, b.pick(eps, req({ 'x-user': `u${i}` })).uid);
  for (let i = 0; i < 300; i++) t.equal(b.pick(eps, req({ 'x-user': `u${i}` })).uid, owner.get(`u${i}`));
  const per = [...owner.values()].reduce<Record<string, number>>((m, v) => ((m[v] = (m[v] ?? 0) + 1), m), {});
  for (const k of ['a', 'b', 'c']) t.ok(per[k]! > 50, `the ring spreads keys: ${JSON.stringify(per)}`);
  const without = [eps[0]!, eps[2]!];
  let moved = 0;
  let stayed = 0;
  for (const [k, v] of owner) {
    const now = b.pick(without, req({ 'x-user': k })).uid;
    if (v === 'b') continue;
    stayed++;
    if (now !== v) moved++;
  }
  // The others get more points each (the ring keeps its size), so a few of their keys move
  // between them; a modulo hash would move about half.
  t.ok(moved <= stayed * 0.2, `${moved} of the ${stayed} keys of the endpoints that stayed moved`);
  const missing = new Set(Array.from({ length: 60 }, () => b.pick(eps, req()).uid));
  t.ok(missing.size > 1, 'no header: random picks, never an error');
});

t.test('hash inputs: header (joined), source IP, query parameter, cookie; a cookie with ttl is generated once per connection', async (t) => {
  t.equal(hashInput({ kind: 'header', name: 'x-user' }, req({ 'x-user': 'alice' })), 'alice');
  t.equal(hashInput({ kind: 'header', name: 'x-user' }, req()), undefined);
  t.equal(hashInput({ kind: 'sourceIp' }, req()), '10.0.0.1');
  t.equal(hashInput({ kind: 'queryParameter', name: 'u' }, req({}, '/x?a=1&u=bob')), 'bob');
  t.equal(hashInput({ kind: 'queryParameter', name: 'u' }, req({}, '/x')), undefined);
  t.equal(hashInput({ kind: 'cookie', name: 's' }, req({ cookie: 'a=1; s="v42"; b=2' })), 'v42');
  const noTtl = req();
  t.equal(hashInput({ kind: 'cookie', name: 's' }, noTtl), undefined, 'no ttl: nothing generated');
  t.same(noTtl.cookies, []);
  const gen = req();
  const v = hashInput({ kind: 'cookie', name: 's', ttlMs: 90_500, path: '/app' }, gen);
  t.match(v, /^[0-9a-f]{16}$/);
  t.same(gen.cookies, [`s="${v}"; Max-Age=90; Path=/app; HttpOnly`]);
  const session = req();
  hashInput({ kind: 'cookie', name: 's', ttlMs: 0 }, session);
  t.match(session.cookies[0], /^s="[0-9a-f]{16}"; HttpOnly$/, 'ttl 0: a session cookie');
  t.equal(hashInput({ kind: 'cookie', name: 's', ttlMs: 1000 }, req()), v, 'the same client connection: the same value');
});
