/**
 * Change notification for files the control plane reads (manifests, the node list, CA files).
 *
 * Directories are watched, not files: editors save by renaming a new file over the old one, and
 * Kubernetes updates a mounted Secret or ConfigMap by swapping a `..data` symlink; both leave a
 * watch on the old inode silent. Events are debounced, because writers save in several steps.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Logger } from '../core/telemetry/log.js';

/** Debounce of change events: long enough to coalesce one save, short for interactive use. */
export const DEFAULT_DEBOUNCE_MS = 100;

/**
 * Calls `onChange` (debounced, never concurrently with itself) after any change under the
 * directories holding `paths` (a path that is a directory is watched recursively).
 * Returns a function that stops watching.
 */
export async function watchPaths(
  paths: readonly string[],
  onChange: () => Promise<void> | void,
  opts: { logger: Logger; debounceMs?: number },
): Promise<() => void> {
  const dirs = new Map<string, boolean>();
  for (const p of paths) {
    const abs = resolve(p);
    const isDir = await stat(abs).then((s) => s.isDirectory(), () => false);
    const dir = isDir ? abs : dirname(abs);
    dirs.set(dir, (dirs.get(dir) ?? false) || isDir);
  }
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const run = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = Promise.resolve()
      .then(onChange)
      .catch((err: unknown) => opts.logger.error({ err }, 'reloading after a file change failed'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          run();
        }
      });
  };
  const schedule = () => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(run, opts.debounceMs ?? DEFAULT_DEBOUNCE_MS);
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, recursive] of dirs) {
    const w = watch(dir, { persistent: false, recursive }, schedule);
    w.on('error', (err) => opts.logger.error({ err, dir }, 'watching a directory failed; its changes will not be picked up'));
    watchers.push(w);
  }
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
