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
