/**
 * Graceful drain: every open connection registers here; on drain, listeners stop accepting,
 * connections get `deadlineMs` to finish on their own, then the rest are forced closed.
 */
export interface Drainable {
  /** Ask to finish: e.g. GOAWAY on an HTTP/2 session. Optional. */
  graceful?(): void;
  /** Close now. */
  force(): void;
}

export class DrainTracker {
  readonly #open = new Set<Drainable>();
  #draining = false;
  #idle: (() => void) | undefined;

  get draining(): boolean {
    return this.#draining;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Registers a connection; returns the function that unregisters it (call it once, on close). */
  track(d: Drainable): () => void {
    this.#open.add(d);
    if (this.#draining) d.graceful?.();
    return () => {
      this.#open.delete(d);
      if (this.#open.size === 0) this.#idle?.();
    };
  }

  /** Resolves when every tracked connection closed or, after `deadlineMs`, was forced closed. */
  async drain(deadlineMs: number): Promise<{ forced: number }> {
    this.#draining = true;
    for (const d of this.#open) d.graceful?.();
    if (this.#open.size === 0) return { forced: 0 };
    const idle = new Promise<void>((resolve) => (this.#idle = resolve));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs);
    });
    const outcome = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (outcome !== 'deadline') return { forced: 0 };
    const forced = this.#open.size;
    for (const d of [...this.#open]) d.force();
    return { forced };
  }
}
