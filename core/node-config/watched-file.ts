/**
 * A YAML (or any text) file that is read at start and re-read when it changes, delivering every
 * valid new version and keeping the last good one when a new version is invalid. The config
 * file source and the node agent's desired-state file are both this.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Logger } from '../telemetry/log.js';

export interface WatchedFileInputs<T> {
  /** Absolute path of the file. */
  readonly path: string;
  readonly logger: Logger;
  /** How logs name the file, e.g. `config file`. */
  readonly what: string;
  /** Quiet time before a change is read (editors write in several steps). */
  readonly debounceMs: number;
  /** Parses a version; throws ConfigError naming the problems. */
  readonly parse: (text: string) => T;
  /** What to check when the file cannot be read, e.g. `check the path and its permissions`. */
  readonly readHint: string;
  /** Log line when `accept` throws. */
  readonly acceptFailed: string;
  /** Log line when a new version is rejected. */
  readonly rejected: string;
  /** Receives the first version and every valid new one. */
  readonly accept: (value: T) => void;
}

/**
 * The watch is on the file's directory, not the file: editors save by renaming a new file over
 * the old one, and Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink, and
 * both leave a watch on the old inode silent. Any event in the directory triggers a (debounced)
 * read; a read whose text equals the last good one is ignored, so unrelated files cost one read.
 * Reloads never overlap: a change during a reload schedules exactly one more.
 */
export class WatchedFile<T> {
  /** Why the latest read was rejected; undefined once a read succeeds again. */
  lastError: Error | undefined;
  readonly #in: WatchedFileInputs<T>;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastText: string | undefined;
  #reloading: Promise<void> | undefined;
  #again = false;
  #closed = false;
  #started = false;

  constructor(inputs: WatchedFileInputs<T>) {
    this.#in = inputs;
  }

  /**
   * Reads and delivers the file, then keeps watching it.
   *
   * @throws ConfigError when the file cannot be read or is invalid; nothing is watched then.
   */
  async start(): Promise<void> {
    // invariant: the owner starts a watched file once and before closing it; breaking that is a bug here.
    if (this.#closed) throw new Error(`${this.#in.what}: start was called after close`);
    if (this.#started) throw new Error(`${this.#in.what}: start was called twice`);
    this.#started = true;
    // Watch before the first read so that a change racing with it is not lost.
    this.#watcher = watch(dirname(this.#in.path), { persistent: false }, () => this.#schedule());
    this.#watcher.on('error', (err) => {
      this.lastError = err;
      this.#in.logger.error({ err }, `watching the ${this.#in.what}'s directory failed; the file will not be reloaded`);
    });
    try {
      const text = await this.#read();
      this.#accept(text, this.#in.parse(text));
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Stops watching; waits for a reload in progress. `accept` is not called afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#reloading;
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#kick();
    }, this.#in.debounceMs);
  }

  #kick(): void {
    if (this.#closed) return;
    if (this.#reloading) {
      this.#again = true;
      return;
    }
    this.#reloading = this.#reload().finally(() => {
      this.#reloading = undefined;
      if (this.#again) {
        this.#again = false;
        this.#kick();
      }
    });
  }

  async #reload(): Promise<void> {
    let text: string;
    let value: T;
    try {
      text = await this.#read();
      if (text === this.#lastText) {
        // Unrelated file in the directory, or a save without changes; the file is good (again).
        this.lastError = undefined;
        return;
      }
      value = this.#in.parse(text);
    } catch (err) {
      if (this.#closed) return;
      this.lastError = err as Error;
      this.#in.logger.error({ err, problems: err instanceof ConfigError ? err.problems : undefined }, this.#in.rejected);
      return;
    }
    if (this.#closed) return;
    this.#accept(text, value);
    this.#in.logger.info(`${this.#in.what} reloaded`);
  }

  async #read(): Promise<string> {
    try {
      return await readFile(this.#in.path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      throw new ConfigError(this.#in.path, [`cannot read the file (${code}: ${(e as Error).message}); ${this.#in.readHint}`]);
    }
  }

  #accept(text: string, value: T): void {
    this.#lastText = text;
    this.lastError = undefined;
    try {
      this.#in.accept(value);
    } catch (err) {
      this.#in.logger.error({ err }, this.#in.acceptFailed);
    }
  }
}
