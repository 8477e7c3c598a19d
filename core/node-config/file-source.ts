/**
 * `FileConfigSource`: the ztunnel config file as a `ConfigSource`, reloaded when it changes.
 */
import { resolve } from 'node:path';
import type { Logger } from '../telemetry/log.js';
import type { MeshConfig } from '../model/types.js';
import { configWarnings, parseMeshConfig } from './file.js';
import type { ConfigSource } from '../model/source.js';
import { WatchedFile } from './watched-file.js';

/**
 * Quiet time before a change is read. Editors and `kubectl` write a file in several steps
 * (truncate + write, or write a temp file + rename); reading after the burst settles avoids
 * parsing half-written files and reloading several times for one save.
 */
export const DEFAULT_RELOAD_DEBOUNCE_MS = 100;

/** Inputs of `FileConfigSource`. */
export interface FileConfigSourceOptions {
  /** Path of the YAML config file (docs/config-file.md). */
  readonly path: string;
  readonly logger: Logger;
  /** Istio root namespace; default `istio-system`. */
  readonly rootNamespace?: string;
  /** Debounce of change events, in ms; default `DEFAULT_RELOAD_DEBOUNCE_MS`. */
  readonly debounceMs?: number;
}

/**
 * Reads the config file at `start`, then watches it and delivers every valid new version.
 *
 * Watching and reloading are `WatchedFile`'s (core/node-config/watched-file.ts).
 *
 * @example
 * const source = new FileConfigSource({ path: '/etc/ztunnel/config.yaml', logger });
 * await source.start((cfg) => { state = new MeshState(cfg); });
 * // ... later
 * await source.close();
 */
export class FileConfigSource implements ConfigSource {
  readonly #path: string;
  readonly #logger: Logger;
  readonly #rootNamespace: string | undefined;
  readonly #debounceMs: number;
  #file: WatchedFile<MeshConfig> | undefined;
  #closed = false;

  constructor(opts: FileConfigSourceOptions) {
    this.#path = resolve(opts.path);
    this.#logger = opts.logger.child({ config_file: this.#path });
    this.#rootNamespace = opts.rootNamespace;
    this.#debounceMs = opts.debounceMs ?? DEFAULT_RELOAD_DEBOUNCE_MS;
  }

  /** Why the latest read was rejected; undefined once a read succeeds again. */
  get lastError(): Error | undefined {
    return this.#file?.lastError;
  }

  /**
   * Reads and delivers the file, then starts watching it.
   *
   * @throws ConfigError when the file cannot be read or is invalid; nothing is watched then.
   */
  async start(listener: (cfg: MeshConfig) => void): Promise<void> {
    // invariant: the owner starts a source once and before closing it; breaking that is a bug here.
    if (this.#closed) throw new Error('FileConfigSource.start was called after close');
    if (this.#file) throw new Error('FileConfigSource.start was called twice');
    const logger = this.#logger;
    this.#file = new WatchedFile<MeshConfig>({
      path: this.#path,
      logger,
      what: 'config file',
      debounceMs: this.#debounceMs,
      parse: (text) => parseMeshConfig(text, this.#path, this.#rootNamespace ? { rootNamespace: this.#rootNamespace } : {}),
      readHint: 'check the path and its permissions',
      rejected: 'config file rejected; keeping the last good configuration',
      acceptFailed: 'the config listener threw; the new configuration may be only partly applied',
      accept: (cfg) => {
        for (const w of configWarnings(cfg)) logger.warn(w);
        listener(cfg);
      },
    });
    try {
      await this.#file.start();
    } catch (err) {
      // The watched file closed itself; so is this source.
      this.#closed = true;
      throw err;
    }
  }

  /** Stops watching; waits for a reload in progress. The listener is not called afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#file?.close();
  }
}
