/**
 * `FileConfigSource`: the ztunnel config file as a `ConfigSource`, reloaded when it changes.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Logger } from '../telemetry/log.js';
import type { MeshConfig } from '../model/types.js';
import { configWarnings, parseMeshConfig } from './file.js';
import type { ConfigSource } from './source.js';

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
 * The watch is on the file's directory, not the file: editors save by renaming a new file over
 * the old one, and Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink, and
 * both leave a watch on the old inode silent. Any event in the directory triggers a (debounced)
 * read; a read whose text equals the last good one is ignored, so unrelated files cost one read.
 *
 * @example
 * const source = new FileConfigSource({ path: '/etc/ztunnel/config.yaml', logger });
 * await source.start((cfg) => { state = new MeshState(cfg); });
 * // ... later
 * await source.close();
 */
export class FileConfigSource implements ConfigSource {
  /** Why the latest read was rejected; undefined once a read succeeds again. */
  lastError: Error | undefined;

  private readonly path: string;
  private readonly logger: Logger;
  private readonly rootNamespace: string | undefined;
  private readonly debounceMs: number;
  private listener: ((cfg: MeshConfig) => void) | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  // Reloads never overlap: a change during a reload schedules exactly one more.
  private reloading: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(opts: FileConfigSourceOptions) {
    this.path = resolve(opts.path);
    this.logger = opts.logger.child({ config_file: this.path });
    this.rootNamespace = opts.rootNamespace;
    this.debounceMs = opts.debounceMs ?? DEFAULT_RELOAD_DEBOUNCE_MS;
  }

  /**
   * Reads and delivers the file, then starts watching it.
   *
   * @throws ConfigError when the file cannot be read or is invalid; nothing is watched then.
   */
  async start(listener: (cfg: MeshConfig) => void): Promise<void> {
    if (this.closed) throw new Error('FileConfigSource.start was called after close');
    if (this.listener) throw new Error('FileConfigSource.start was called twice');
    this.listener = listener;
    // Watch before the first read so that a change racing with it is not lost.
    this.watcher = watch(dirname(this.path), { persistent: false }, () => this.schedule());
    this.watcher.on('error', (err) => {
      this.lastError = err;
      this.logger.error({ err }, 'watching the config directory failed; the file will not be reloaded');
    });
    try {
      const text = await this.readText();
      this.accept(text, this.parse(text));
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Stops watching; waits for a reload in progress. The listener is not called afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    await this.reloading;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, this.debounceMs);
  }

  private kick(): void {
    if (this.closed) return;
    if (this.reloading) {
      this.again = true;
      return;
    }
    this.reloading = this.reload().finally(() => {
      this.reloading = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async reload(): Promise<void> {
    let text: string;
    let cfg: MeshConfig;
    try {
      text = await this.readText();
      if (text === this.lastText) {
        // Unrelated file in the directory, or a save without changes; the file is good (again).
        this.lastError = undefined;
        return;
      }
      cfg = this.parse(text);
    } catch (err) {
      if (this.closed) return;
      this.lastError = err as Error;
      this.logger.error(
        { err, problems: err instanceof ConfigError ? err.problems : undefined },
        'config file rejected; keeping the last good configuration',
      );
      return;
    }
    if (this.closed) return;
    this.accept(text, cfg);
    this.logger.info('config file reloaded');
  }

  private async readText(): Promise<string> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      throw new ConfigError(this.path, [
        `cannot read the file (${code}: ${(e as Error).message}); check the path and its permissions`,
      ]);
    }
  }

  private parse(text: string): MeshConfig {
    return parseMeshConfig(text, this.path, this.rootNamespace ? { rootNamespace: this.rootNamespace } : {});
  }

  private accept(text: string, cfg: MeshConfig): void {
    this.lastText = text;
    this.lastError = undefined;
    for (const w of configWarnings(cfg)) this.logger.warn(w);
    try {
      this.listener?.(cfg);
    } catch (err) {
      this.logger.error({ err }, 'the config listener threw; the new configuration may be only partly applied');
    }
  }
}
