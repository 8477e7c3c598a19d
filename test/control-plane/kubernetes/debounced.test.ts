import t from 'tap';
import { DebouncedTask } from '../../../control-plane/kubernetes/debounced.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a burst of changes is one run; a change during a run is one more run after it', async (t) => {
  let runs = 0;
  let release!: () => void;
  const task = new DebouncedTask(async () => {
    runs++;
    if (runs === 1) await new Promise<void>((r) => (release = r));
  }, 10);
  task.schedule();
  t.equal(runs, 0, 'nothing while inactive');
  await sleep(30);
  t.equal(runs, 0);
  task.setActive(true);
  for (let i = 0; i < 5; i++) task.schedule();
  await sleep(40);
  t.equal(runs, 1, 'one run for the activation and the burst');
  task.schedule(); // during the run: a timer fires, run() sees it running and asks for one more
  await sleep(40);
  t.equal(runs, 1, 'never two at once');
  release();
  await sleep(40);
  t.equal(runs, 2, 'the change during the run got its own run');
  task.setActive(false);
});

t.test('a run that throws is reported, never an unhandled rejection, and tried again later', async (t) => {
  const errors: unknown[] = [];
  let calls = 0;
  const task = new DebouncedTask(
    () => {
      calls++;
      throw new Error('boom');
    },
    10,
    (err) => errors.push(err),
  );
  task.setActive(true);
  await sleep(30);
  t.equal(calls, 1);
  t.match(errors, [{ message: 'boom' }]);
  await t.resolves(task.run(), 'run() resolves even when the body throws');
  t.equal(errors.length, 2);
  task.setActive(false);
});
