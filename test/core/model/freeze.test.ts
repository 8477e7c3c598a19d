import t from 'tap';
import { deepFreeze, ImmutableMap } from '../../../core/model/freeze.js';

t.test('ImmutableMap refuses writes after construction', async (t) => {
  const m = new ImmutableMap<number, string>([[1, 'a']]);
  t.equal(m.get(1), 'a');
  t.equal(m.size, 1);
  t.throws(() => m.set(2, 'a'), TypeError);
  t.throws(() => m.delete(1), TypeError);
  t.throws(() => m.clear(), TypeError);
  t.equal(m.size, 1);
  t.ok(m instanceof Map, 'still a Map for callers');
});

t.test('deepFreeze freezes nested objects, arrays and map contents', async (t) => {
  const inner = { x: 1 };
  const v = deepFreeze({ a: [{ b: 1 }], m: new ImmutableMap([['k', inner]]) });
  t.ok(Object.isFrozen(v));
  t.ok(Object.isFrozen(v.a));
  t.ok(Object.isFrozen(v.a[0]));
  t.ok(Object.isFrozen(inner));
  const cyclic: { self?: unknown } = {};
  cyclic.self = cyclic;
  t.doesNotThrow(() => deepFreeze(cyclic), 'cycles are fine');
});

t.test('issue 19: deepFreeze freezes an object 1,000,000 levels deep (JSON an API server may send), every level, without a call per level', async (t) => {
  // Built by JSON.parse, as a response body is: it has no depth limit.
  const deep = JSON.parse(`${'{"a":'.repeat(1_000_000)}{"leaf":[1]}${'}'.repeat(1_000_000)}`) as { a?: unknown };
  t.doesNotThrow(() => deepFreeze(deep), 'no RangeError: Maximum call stack size exceeded');
  let level: { a?: unknown; leaf?: unknown } = deep;
  let levels = 0;
  let allFrozen = true;
  while (level.a !== undefined) {
    allFrozen &&= Object.isFrozen(level);
    level = level.a as typeof level;
    levels++;
  }
  t.equal(levels, 1_000_000);
  t.ok(allFrozen && Object.isFrozen(level) && Object.isFrozen(level.leaf), 'every level is frozen, down to the innermost list');
});
