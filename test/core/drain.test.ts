import t from 'tap';
import { DrainTracker } from '../../core/drain.js';

t.test('drain resolves when the last connection closes on its own', async (t) => {
  const d = new DrainTracker();
  let graceful = 0;
  // The connection finishes when asked to, as a real one does: after its in-flight work, here a
  // microtask later, not a timer.
  const untrack = d.track({
    graceful: () => {
      graceful++;
      queueMicrotask(untrack);
    },
    force: () => t.fail('not forced'),
  });
  t.same(await d.drain(5000), { forced: 0 });
  t.equal(graceful, 1, 'asked to finish');
  t.ok(d.draining);
});

t.test('past the deadline the rest is forced closed', async (t) => {
  const d = new DrainTracker();
  let forced = 0;
  d.track({ force: () => forced++ });
  d.track({ force: () => forced++ });
  t.same(await d.drain(30), { forced: 2 });
  t.equal(forced, 2);
});

t.test('a connection tracked while draining is asked to finish at once', async (t) => {
  const d = new DrainTracker();
  const untrack = d.track({ force: () => {} });
  const draining = d.drain(1000);
  let asked = false;
  const late = d.track({ graceful: () => (asked = true), force: () => {} });
  t.ok(asked);
  untrack();
  late();
  t.same(await draining, { forced: 0 });
});
