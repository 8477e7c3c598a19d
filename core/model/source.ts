/**
 * Where a data plane gets its configuration from. Two implementations: the file
 * (`FileConfigSource`, for standalone ztunnels, tests and the lab) and the control plane's
 * discovery stream.
 */
import type { MeshConfig } from './types.js';

/**
 * A stream of complete configuration snapshots.
 *
 * Contract for implementations:
 * - `start` resolves once the first valid snapshot was delivered to `listener`, and rejects
 *   (with a `ConfigError` when the config is invalid) if none could be obtained;
 * - later snapshots go to `listener` only when valid; an invalid update is logged and the last
 *   good snapshot stays in force;
 * - snapshots are deeply frozen; `listener` must not throw (errors it throws are logged);
 * - after `close` resolves, `listener` is not called again.
 */
export interface ConfigSource {
  start(listener: (cfg: MeshConfig) => void): Promise<void>;
  close(): Promise<void>;
}

/**
 * The lists of `lists` that hold something, to spread into a `MeshConfig`: its optional lists
 * (waypoint policies, routes, ...) are absent when empty, so every source gives a config without
 * them the same exact shape. Key order is kept.
 */
export function presentLists<T extends Record<string, readonly unknown[]>>(lists: T): Partial<T> {
  return Object.fromEntries(Object.entries(lists).filter(([, v]) => v.length > 0)) as Partial<T>;
}
