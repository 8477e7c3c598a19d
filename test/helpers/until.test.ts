import t from 'tap';
import { until, UntilTimeoutError } from './until.js';

t.test('returns the first truthy value of the check, sync or async', async (t) => {
  let n = 0;
  t.equal(await until('the third call', () => (++n >= 3 ? n : undefined), { everyMs: 1 }), 3);
  let m = 0;
  t.same(await until('an async value', async () => (++m >= 2 ? { m } : false), { everyMs: 1 }), { m: 2 });
});

t.test('a check that throws counts as not yet', async (t) => {
  let n = 0;
  const v = await until('no more errors', () => {
    if (++n < 3) throw new Error('not ready');
    return 'ready';
  }, { everyMs: 1 });
  t.equal(v, 'ready');
  t.equal(n, 3, 'called again after each error');
});

t.test('at the deadline: a stable code, what was awaited, and the last error seen', async (t) => {
  const err = await until('the unreachable', () => {
    throw new Error('connection refused');
  }, { timeoutMs: 30, everyMs: 5 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, UntilTimeoutError);
  t.equal((err as UntilTimeoutError).code, 'ERR_TEST_UNTIL_TIMEOUT');
  t.match((err as Error).message, /waiting for the unreachable \(last error: connection refused\)/);
  const plain = await until('never true', () => false, { timeoutMs: 10, everyMs: 2 }).catch((e: unknown) => e);
  t.match((plain as Error).message, /waiting for never true$/);
});
