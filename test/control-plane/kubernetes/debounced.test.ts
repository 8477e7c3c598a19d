import t from 'tap';
import { DebouncedTask } from '../../../control-plane/kubernetes/debounced.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { until } from '../../helpers/until.js';

// The quiet time runs on a fake clock: a timer fires when the test says so, so run counts are
// exact with no sleeps. Runs themselves are promises: the test waits on their visible effects.

t.test('a burst of changes is one run; a change during a run is one more run after it', async (t) => {
  const clock = new FakeClock();
  let runs = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let release!: () => void;
  const task = new DebouncedTask(
    async () => {
      runs++;
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      if (runs === 1) await new Promise<void>((r) => (release = r));
      inFlight--;
    },
    10,
    undefined,
    clock,
  );
  t.teardown(() => task.setActive(false));
  task.schedule();
  t.equal(clock.pending, 0, 'nothing scheduled while inactive');
  t.equal(runs, 0, 'nothing run while inactive');
  task.setActive(true);
  for (let i = 0; i < 5; i++) task.schedule();
  t.equal(clock.pending, 1, 'the activation and the burst share one timer');
  t.equal(clock.nextDelay(), 10, 'after the quiet time');
  clock.fireNext();
  await until('the first run', () => runs === 1 && release);
  t.equal(runs, 1, 'one run for the activation and the burst');
  task.schedule(); // during the run: the timer fires, run() sees it running and asks for one more
  t.equal(clock.pending, 1);
  clock.fireNext();
  t.equal(clock.pending, 0, 'the change during the run waits for the run, not for a timer');
  release();
  await until('the follow-up run is scheduled after the first run ends', () => clock.pending === 1);
  clock.fireNext();
  await until('the second run ends', () => runs === 2 && inFlight === 0);
  t.equal(runs, 2, 'the change during the run got its own run');
  t.equal(maxInFlight, 1, 'never two at once');
  t.equal(clock.pending, 0, 'and no third');
});

t.test('a run that throws is reported, never an unhandled rejection, and tried again later', async (t) => {
  const clock = new FakeClock();
  const errors: unknown[] = [];
  let calls = 0;
  const task = new DebouncedTask(
    () => {
      calls++;
      throw new Error('boom');
    },
    10,
    (err) => errors.push(err),
    clock,
  );
  t.teardown(() => task.setActive(false));
  task.setActive(true);
  clock.fireNext();
  await until('the failed run is reported and a retry scheduled', () => errors.length === 1 && clock.pending === 1);
  t.equal(calls, 1);
  t.match(errors, [{ message: 'boom' }]);
  t.equal(clock.nextDelay(), 5000, 'tried again after 5 s, not after the 10 ms quiet time');
  await t.resolves(task.run(), 'run() resolves even when the body throws');
  t.equal(errors.length, 2);
  clock.fireNext();
  await until('the retry ran', () => calls === 3 && errors.length === 3);
  t.equal(calls, 3, 'the scheduled retry ran the body again');
});
