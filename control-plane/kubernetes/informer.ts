/**
 * List + watch of one resource, kept current for as long as the control plane runs.
 *
 * client-node 1.4's `ListWatch` (dist/cache.js) was read and not used: on any error other than
 * 410 it calls its error callbacks and stops for good (no retry, no backoff); a watch that ends
 * re-watches at once with no delay (a server that closes watches immediately makes it spin); it
 * never asks for bookmarks; and lists are not paginated. This loop does what client-go's
 * reflector does, over client-node's `Watch` (through `KubeApi`):
 *
 * - list (paginated, `limit` 500), hand the full set over (`replace`), remember the list's
 *   resourceVersion;
 * - watch from it with `allowWatchBookmarks=true` and a server-side timeout; every event and
 *   every BOOKMARK advances the resourceVersion;
 * - a watch that ends (timeout, dropped connection, API server restart) is opened again from the
 *   last resourceVersion: no re-list;
 * - `410 Gone` (an ERROR event with code 410, or the HTTP status, or an expired continue token)
 *   means that resourceVersion is too old: list again (objects gone meanwhile are removed by
 *   `replace`);
 * - any other failure (unreachable, 5xx, 403, a watch that ends at once without an event) waits
 *   with exponential backoff and equal jitter before the next try, and keeps the resourceVersion.
 */
import type { Logger } from '../../core/telemetry/log.js';
import { KubeApiError, type KubeApi, type KubeObject, type WatchEvent } from '../../core/kube/api.js';

/** Where the changes go. Calls are synchronous and in order. */
export interface InformerHandler {
  /** The complete set after a (re-)list. */
  replace(items: readonly KubeObject[]): void;
  /** ADDED or MODIFIED. */
  upsert(object: KubeObject): void;
  /** DELETED (the object's last state). */
  remove(object: KubeObject): void;
}

/** Retry timings; defaults suit a cluster, tests shorten them. */
export interface InformerTimings {
  /** First retry delay after a failure; doubles per consecutive failure. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  /** A watch that lasted at least this long, or delivered an event, counts as healthy. */
  readonly healthyWatchMs: number;
  /** Server-side watch timeout, randomized in [t, 2t) so informers do not all reconnect at once. */
  readonly watchTimeoutSeconds: number;
  /** Page size of lists. */
  readonly pageSize: number;
}

export const DEFAULT_INFORMER_TIMINGS: InformerTimings = Object.freeze({
  // client-go's reflector backs off from 800 ms to 30 s; a little faster first retry here.
  initialBackoffMs: 500,
  maxBackoffMs: 30_000,
  healthyWatchMs: 5_000,
  // client-go's reflector: 5 to 10 minutes.
  watchTimeoutSeconds: 300,
  pageSize: 500,
});

/** What an informer has done; tests and /debug read it. */
export interface InformerStats {
  lists: number;
  /** Lists caused by 410 Gone. */
  relists: number;
  watches: number;
  bookmarks: number;
  events: number;
  failures: number;
  /** Delays waited after failures, in order (tests check they grow and are capped). */
  readonly backoffs: number[];
}

export interface InformerInputs {
  readonly api: KubeApi;
  /** Collection path, e.g. `/api/v1/pods`. */
  readonly path: string;
  /** Selectors sent with every list and watch (`labelSelector`, `fieldSelector`). */
  readonly selectors?: { readonly labelSelector?: string; readonly fieldSelector?: string };
  readonly handler: InformerHandler;
  readonly logger: Logger;
  readonly timings?: Partial<InformerTimings>;
  /** [0, 1); injectable so tests can pin the jitter. */
  readonly random?: () => number;
}

interface ListAnswer {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

class GoneError extends Error {}

/**
 * One resource's list/watch loop.
 *
 * @example
 * const pods = new Informer({ api, path: '/api/v1/pods', handler, logger });
 * await pods.start(); // resolves once the first list was handed over
 * // ...
 * pods.close();
 */
export class Informer {
  readonly stats: InformerStats = { lists: 0, relists: 0, watches: 0, bookmarks: 0, events: 0, failures: 0, backoffs: [] };
  readonly #in: InformerInputs;
  readonly #t: InformerTimings;
  readonly #random: () => number;
  #rv: string | undefined;
  #closed = false;
  #watch: { stop(): void } | undefined;
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #isSynced = false;
  #resolveSynced!: () => void;
  readonly #syncedP = new Promise<void>((r) => (this.#resolveSynced = r));
  #running: Promise<void> | undefined;

  #synced(): void {
    this.#isSynced = true;
    this.#resolveSynced();
  }

  constructor(inputs: InformerInputs) {
    this.#in = inputs;
    this.#t = { ...DEFAULT_INFORMER_TIMINGS, ...inputs.timings };
    this.#random = inputs.random ?? Math.random;
  }

  /** The last resourceVersion seen (list, event or bookmark); undefined before the first list or after a 410. */
  get resourceVersion(): string | undefined {
    return this.#rv;
  }

  /** Starts the loop; resolves once the first list was handed over (it retries until then). */
  start(): Promise<void> {
    this.#running ??= this.#run();
    return Promise.race([this.#syncedP, this.#running]);
  }

  close(): void {
    this.#closed = true;
    this.#watch?.stop();
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.wake();
    }
    this.#synced();
  }

  async #run(): Promise<void> {
    let failures = 0;
    const log = this.#in.logger;
    while (!this.#closed) {
      try {
        if (this.#rv === undefined) {
          await this.#list();
          this.#synced();
          failures = 0;
        }
        if (this.#closed) return;
        const healthy = await this.#watchOnce();
        if (healthy) {
          failures = 0;
          continue;
        }
        failures++;
        log.debug({ path: this.#in.path, failures }, 'the watch ended at once without an event; backing off');
      } catch (err) {
        if (this.#closed) return;
        if (err instanceof GoneError || (err instanceof KubeApiError && err.status === 410)) {
          this.#rv = undefined;
          this.stats.relists++;
          log.info({ path: this.#in.path }, 'resourceVersion too old (410 gone); listing again');
          continue;
        }
        if (err instanceof KubeApiError && err.status === 404 && this.#rv === undefined && !this.#isSynced) {
          // The resource is not served (a CRD not installed): start without its objects and keep
          // trying, so the rest of the mesh is not held up by a missing optional API.
          this.#in.handler.replace([]);
          this.#synced();
          log.warn({ path: this.#in.path }, 'the api server does not serve this resource (is its CRD installed?); going on without it and retrying');
        }
        failures++;
        this.stats.failures++;
        log.warn({ path: this.#in.path, err: (err as Error).message, code: (err as { code?: string }).code, failures }, 'list/watch failed; retrying with backoff');
      }
      await this.#wait(this.#backoff(failures));
    }
  }

  #backoff(failures: number): number {
    const exp = Math.min(this.#t.maxBackoffMs, this.#t.initialBackoffMs * 2 ** Math.min(failures - 1, 30));
    // Equal jitter: at least half the delay, so retries spread out but never collapse to zero.
    const d = Math.round(exp / 2 + (this.#random() * exp) / 2);
    this.stats.backoffs.push(d);
    return d;
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#closed) return resolve();
      const timer = setTimeout(() => {
        this.#sleep = undefined;
        resolve();
      }, ms);
      this.#sleep = { timer, wake: resolve };
    });
  }

  async #list(): Promise<void> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let rv: string | undefined;
    this.stats.lists++;
    do {
      const page = await this.#in.api.request<ListAnswer>('GET', this.#in.path, {
        query: { ...this.#in.selectors, limit: String(this.#t.pageSize), ...(cont ? { continue: cont } : {}) },
      });
      if (!Array.isArray(page.items)) throw new KubeApiError('GET', this.#in.path, 0, 'the list answer has no items array');
      items.push(...page.items);
      rv ??= page.metadata?.resourceVersion;
      cont = page.metadata?.continue || undefined;
    } while (cont && !this.#closed);
    if (this.#closed) return;
    if (!rv) throw new KubeApiError('GET', this.#in.path, 0, 'the list answer has no metadata.resourceVersion');
    this.#in.handler.replace(items);
    this.#rv = rv;
    this.#in.logger.debug({ path: this.#in.path, items: items.length, resource_version: rv }, 'listed');
  }

  /** One watch from the current resourceVersion; true when it was healthy (events, or long enough). */
  async #watchOnce(): Promise<boolean> {
    const started = Date.now();
    let events = 0;
    let gone = false;
    let failed: Error | undefined;
    const timeout = this.#t.watchTimeoutSeconds + Math.floor(this.#random() * this.#t.watchTimeoutSeconds);
    this.stats.watches++;
    // Events can arrive before `watch` returns its handle; a stop asked for then is done after.
    let handle: { stop(): void } | undefined;
    let stopAsked = false;
    const stop = () => (handle ? handle.stop() : (stopAsked = true));
    const opened = await this.#in.api.watch(
      this.#in.path,
      { ...this.#in.selectors, resourceVersion: this.#rv!, allowWatchBookmarks: 'true', timeoutSeconds: String(timeout) },
      (e: WatchEvent) => {
        if (gone || failed || this.#closed) return;
        if (e.type === 'ERROR') {
          const code = (e.object as { code?: unknown }).code;
          if (code === 410) gone = true;
          else failed = new KubeApiError('GET', `${this.#in.path} (watch)`, typeof code === 'number' ? code : 0, String((e.object as { message?: unknown }).message ?? 'error event'));
          stop();
          return;
        }
        const rv = e.object.metadata?.resourceVersion;
        if (typeof rv !== 'string' || rv === '') return;
        events++;
        if (e.type === 'BOOKMARK') this.stats.bookmarks++;
        else {
          this.stats.events++;
          if (e.type === 'DELETED') this.#in.handler.remove(e.object);
          else this.#in.handler.upsert(e.object);
        }
        this.#rv = rv;
      },
    );
    handle = opened;
    // close() may have run while the watch was opening: it could not stop what it did not have.
    if (stopAsked || this.#closed) opened.stop();
    this.#watch = opened;
    const healthy = () => events > 0 || Date.now() - started >= this.#t.healthyWatchMs;
    try {
      await opened.done;
    } catch (err) {
      // A connection that broke after a healthy watch is a drop like any other: resume at once.
      // HTTP errors, and breaks of a watch that never worked, go through the backoff.
      if (!(err instanceof KubeApiError && err.status === 0 && healthy())) throw err;
    } finally {
      this.#watch = undefined;
    }
    if (gone) throw new GoneError();
    if (failed) throw failed;
    return healthy();
  }
}
