import { realTimers, type Timers } from '../../core/identity/secret-manager.js';

/**
 * A task that runs after a quiet time, one run at a time: a change during a run schedules one
 * more run after it, never a second concurrent one. The status writer and the waypoint
 * controller are both "compare everything, write the differences" passes of this shape, active
 * only on the leader.
 */
export class DebouncedTask {
  #active = false;
  /** The pending run's timer (a `Timers` handle, truthy while a run is scheduled). */
  #timer: unknown;
  #running: Promise<void> | undefined;
  #again = false;

  /**
   * @example
   * const task = new DebouncedTask(() => writer.compareAndWrite(), 200);
   * task.setActive(true); // on becoming the leader: runs once
   * task.schedule();      // on every change
   */
  constructor(
    private readonly body: () => Promise<void>,
    private readonly debounceMs: number,
    /** A run that threw: said here, and tried again after a while (never an unhandled rejection). */
    private readonly onError: (err: unknown) => void = () => undefined,
    /** The quiet-time timer; `realTimers` (unref'd: a pending run never keeps a process alive) unless set (tests: a fake clock). */
    private readonly timers: Timers = realTimers,
  ) {}

  get active(): boolean {
    return this.#active;
  }

  /** Inactive: nothing is scheduled and a pending run is dropped (a run under way finishes). */
  setActive(active: boolean): void {
    this.#active = active;
    if (active) this.schedule();
    else {
      this.timers.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Runs after the quiet time (or `delayMs`), unless a run is already scheduled. */
  schedule(delayMs = this.debounceMs): void {
    if (!this.#active || this.#timer) return;
    this.#timer = this.timers.setTimeout(() => {
      this.#timer = undefined;
      void this.run();
    }, delayMs);
  }

  /** Runs now, or, when a run is under way, once more after it; resolves when the current run ends. */
  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const body = this.#active ? Promise.resolve().then(() => this.body()) : Promise.resolve();
    let failed = false;
    this.#running = body
      .catch((err: unknown) => {
        this.onError(err);
        failed = true;
      })
      .finally(() => {
        this.#running = undefined;
        if (failed) {
          this.#again = false;
          this.schedule(Math.max(this.debounceMs, 5_000));
        } else if (this.#again) {
          this.#again = false;
          this.schedule();
        }
      });
    return this.#running;
  }
}
