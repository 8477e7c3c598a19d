/**
 * Issue 19, item 4, in `npm test`: a bounded property-based run per entry point of the fuzz
 * harness (fuzz/, docs/fuzz.md), and the regression corpus (test/fuzz/corpus/<entry>/*.json)
 * replayed with the behaviour a user should see. Every input runs in the harness's child process
 * with a limit, so a hang is a failed assertion, not a stuck test.
 *
 * Assertions the tree does not satisfy yet are tap `todo`s naming the finding: they still run, the
 * file stays green and the gap stays visible. Remove the todo when the fix lands.
 */
import t from 'tap';
import fc from 'fast-check';
import { ENTRY_NAMES, type EntryName } from '../../fuzz/entries.js';
import { MUTATION_NAMES, rng } from '../../fuzz/mutate.js';
import { WorkerPool, type RunResult } from '../../fuzz/pool.js';
import { corpusCases, expand, generate } from '../../fuzz/seeds.js';
import { classOf } from '../../fuzz/main.js';

/** Fixed, so a failure reproduces; fast-check prints the counterexample's path. */
const SEED = 19;
/**
 * Runs per entry. A failing property stops at its first failure (no shrinking), so the time is that
 * of the passing entries: well under 30 s when nothing hangs.
 */
const RUNS = 200;

/**
 * Entry points whose property fails on the current tree, with the finding (fuzz run, seed 19):
 * these properties are todo until it is fixed.
 */
const OPEN: Partial<Record<EntryName, string>> = {};

/**
 * The limit of one input here: five times `npm run fuzz`'s 2 s. The 2 s figure is measured on a
 * quiet machine; `npm test` shares two cores with other test files (load averages of 10-15 made
 * YAML parses of 3 MB inputs take 2-3 s), and a test must not judge speed. What this catches is
 * work that grows faster than its input (the hangs issue 19 lists took 3.7-52 s before their
 * fixes); the 2 s figures come from `npm run fuzz` (docs/fuzz.md).
 */
const LIMIT_MS = 10_000;

const pool = new WorkerPool({ socksHost: '127.19.0.1', limitMs: LIMIT_MS });
t.teardown(() => pool.close());

const describe = (r: RunResult) => classOf(r) ?? r.outcome;

for (const entry of ENTRY_NAMES) {
  const todo = OPEN[entry];
  t.test(`${entry}: only the documented error leaves the boundary, and every input finishes within the limit`, async (t) => {
    let seen = 0;
    const failures: string[] = [];
    await fc
      .assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.array(fc.nat({ max: MUTATION_NAMES.length - 1 }), { minLength: 1, maxLength: 3 }), async (s, ops) => {
          const { input } = generate(entry, rng(s), ops);
          const r = await pool.run(entry, input);
          seen++;
          if (r.outcome === 'hang' || r.outcome === 'exception') {
            failures.push(`${describe(r)} (mutations ${ops.map((i) => MUTATION_NAMES[i]).join('+')}, input seed ${s})`);
            return false;
          }
          return true;
        }),
        // No shrinking: each shrink step of a hang costs the full limit; the findings file of
        // `npm run fuzz` keeps the smallest input instead.
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      )
      .catch(() => undefined);
    t.ok(seen > 0, `${seen} inputs ran`);
    // An assertion-level todo still runs: a fix shows up as a passing todo.
    t.same(failures, [], 'no hang over the limit and no undocumented exception', todo ? { todo } : {});
  });
}

t.test('regression corpus: each case gives what a user should see', async (t) => {
  let cases = 0;
  for (const entry of ENTRY_NAMES) {
    for (const { file, case: c } of corpusCases(entry)) {
      cases++;
      const name = `${entry}/${file.split('/').pop()}: ${c.what}`;
      await t.test(name, async (t) => {
        const r = await pool.run(entry, expand(c));
        const todo = c.todo ? { todo: c.todo } : {};
        t.equal(describe(r), c.expect.outcome, `outcome is ${c.expect.outcome}`, todo);
        if (c.expect.detail !== undefined) t.match(r.detail ?? '', c.expect.detail, `the message names ${JSON.stringify(c.expect.detail)}`, todo);
      });
    }
  }
  // The corpus holds every case issue 19 lists; an empty directory must not pass silently.
  t.ok(cases >= 25, `${cases} corpus cases replayed`);
});
