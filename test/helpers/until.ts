/**
 * The one polling helper of the tests. Tests wait on a state or an event, never on a fixed sleep;
 * where no event exists, `until` polls a check against a deadline.
 *
 * Invariants:
 * - `check` is called at once and then every `everyMs` until it returns a truthy value, which
 *   `until` returns (so a test can wait for a value and use it).
 * - A check that throws counts as "not yet"; the last error is kept and shown at the deadline, so a
 *   time-out says what was awaited and what was last seen instead of a bare "timed out".
 * - The polling timer is ref'd on purpose: code under test often unrefs its own timers, and the
 *   test must keep the event loop alive while it waits.
 * - Nothing here asserts on time: the deadline only turns a hang into a readable failure.
 *
 * @example
 *   const cfg = await until('the second config', () => configs[1]);
 *   await until('the pod answers 200', async () => (await fetch(url)).status === 200, { timeoutMs: 20_000 });
 */

export interface UntilOptions {
  /** How long to keep trying before failing (ms). Default 10 s: long enough for a loaded 2-core CI box. */
  readonly timeoutMs?: number;
  /** The pause between two checks (ms). Default 20 ms: quick to notice, cheap on the CPU. */
  readonly everyMs?: number;
}

/** What `until` throws at its deadline; `code` is stable, `cause` is the check's last error (if any). */
export class UntilTimeoutError extends Error {
  readonly code = 'ERR_TEST_UNTIL_TIMEOUT';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly last: unknown,
  ) {
    super(
      `timed out after ${timeoutMs} ms waiting for ${what}` +
        (last === undefined ? '' : ` (last error: ${last instanceof Error ? last.message : String(last)})`),
      last === undefined ? undefined : { cause: last },
    );
    this.name = 'UntilTimeoutError';
  }
}

/** Falsy results mean "not yet"; the truthy result is returned. */
type Falsy = undefined | null | false | 0 | '';

/**
 * Calls `check` until it returns a truthy value and returns that value; throws
 * {@link UntilTimeoutError} naming `what` (and the last error `check` threw) at the deadline.
 */
export async function until<T>(
  what: string,
  check: () => T | Falsy | Promise<T | Falsy>,
  { timeoutMs = 10_000, everyMs = 20 }: UntilOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw new UntilTimeoutError(what, timeoutMs, last);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
