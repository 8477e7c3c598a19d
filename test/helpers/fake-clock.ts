/**
 * A fake clock (named as such: a stand-in for time, not for any part of the product) for code that
 * takes `now` and `Timers` inputs (the secret manager, ztunnel's identity retention). Tests jump
 * from one scheduled timer to the next, so retries over hours are counted without waiting. Work
 * a timer starts (key generation, a CA call) still runs for real: after `fireNext`, wait on its
 * visible effect (a CA call counted, the next timer scheduled), never a fixed sleep.
 */
import type { Timers } from '../../core/identity/secret-manager.js';

interface Pending {
  readonly at: number;
  readonly fn: () => void;
}

export class FakeClock implements Timers {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, Pending>();

  /** Starts at `start` (ms since the epoch): real now unless set, so certificates look ordinary. */
  constructor(start = Date.now()) {
    this.#now = start;
  }

  /** The clock, for `now` inputs. */
  readonly now = (): number => this.#now;

  readonly setTimeout = (fn: () => void, ms: number): number => {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  };

  readonly clearTimeout = (handle: unknown): void => {
    if (typeof handle === 'number') this.#timers.delete(handle);
  };

  /** Timers scheduled and not yet run or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the earliest pending timer is due (ms since the epoch); undefined with none. */
  nextAt(): number | undefined {
    let min: number | undefined;
    for (const p of this.#timers.values()) if (min === undefined || p.at < min) min = p.at;
    return min;
  }

  /** How far ahead the earliest pending timer is (ms); undefined with none. */
  nextDelay(): number | undefined {
    const at = this.nextAt();
    return at === undefined ? undefined : at - this.#now;
  }

  /**
   * Moves the clock to the earliest pending timer and runs it (the earliest scheduled first on a
   * tie). Returns false, moving nothing, with no timer pending.
   */
  fireNext(): boolean {
    let first: [number, Pending] | undefined;
    for (const e of this.#timers) if (!first || e[1].at < first[1].at) first = e;
    if (!first) return false;
    this.#timers.delete(first[0]);
    this.#now = Math.max(this.#now, first[1].at);
    first[1].fn();
    return true;
  }

  /** Moves the clock forward without running anything (timers due meanwhile run at the next `fireNext`). */
  advance(ms: number): void {
    this.#now += ms;
  }
}
