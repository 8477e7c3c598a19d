/**
 * Change notification for files the control plane reads (manifests, the node list, CA files).
 *
 * Directories are watched, not files: editors save by renaming a new file over the old one, and
 * Kubernetes updates a mounted Secret or ConfigMap by swapping a `..data` symlink; both leave a
 * watch on the old inode silent. Events are debounced, because writers save in several steps.
 *
 * A directory tree is watched one directory at a time (each with its own inotify watch, added as
 * subdirectories appear), not with `recursive: true`: Node 20's recursive watcher on Linux loses
 * events when a file is replaced by a rename, which is exactly how the lab writes manifests.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Logger } from '../core/telemetry/log.js';

/** Debounce of change events: long enough to coalesce one save, short for interactive use. */
export const DEFAULT_DEBOUNCE_MS = 100;
/** Subdirectories deeper than this are not watched (nor read by the manifest source). */
export const MAX_DEPTH = 8;

/** Directories under `root` (itself included), skipping hidden ones, down to `MAX_DEPTH`. */
async function directories(root: string): Promise<string[]> {
  const out = [root];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth >= MAX_DEPTH) return;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      out.push(p);
      await walk(p, depth + 1);
    }
  };
  await walk(root, 0);
  return out;
}

/**
 * Calls `onChange` (debounced, never concurrently with itself) after any change in the
 * directories holding `paths` (a path that is a directory is watched with its subdirectories),
 * with the absolute paths the events named since the last call (`undefined` when an event named
 * none, so everything must be looked at). Returns a function that stops watching.
 */
export async function watchPaths(
  paths: readonly string[],
  onChange: (changed: ReadonlySet<string> | undefined) => Promise<void> | void,
  opts: { logger: Logger; debounceMs?: number },
): Promise<() => void> {
  /** Directory of watched files → the names of those files in it. */
  const flat = new Map<string, Set<string>>();
  const trees = new Set<string>();
  for (const p of paths) {
    const abs = resolve(p);
    const isDir = await stat(abs).then((s) => s.isDirectory(), () => false);
    if (isDir) trees.add(abs);
    else {
      const dir = dirname(abs);
      if (!flat.has(dir)) flat.set(dir, new Set());
      flat.get(dir)!.add(basename(abs));
    }
  }
  const inTree = (dir: string) => [...trees].some((root) => dir === root || dir.startsWith(`${root}${sep}`));
  /**
   * Whether an event in a directory watched for some of its files is about them: the file's own
   * name (a write, or an editor's rename over it), or a name starting with `..` (Kubernetes swaps a
   * mounted ConfigMap's `..data` symlink). Other files there (a log file beside the node list)
   * made the control plane reload on every write of theirs.
   */
  const relevant = (dir: string, filename: string | Buffer | null): boolean => {
    const names = flat.get(dir);
    if (!names || filename === null || inTree(dir)) return true;
    const name = filename.toString();
    return names.has(name) || name.startsWith('..');
  };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let changed: Set<string> | undefined = new Set();
  const watchers = new Map<string, FSWatcher>();

  const addWatch = (dir: string) => {
    if (watchers.has(dir) || stopped) return;
    try {
      const w = watch(dir, { persistent: false }, (_event, filename) => schedule(dir, filename));
      w.on('error', (err) => {
        // A watched subdirectory that was removed; anything else is worth a line.
        watchers.delete(dir);
        w.close();
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'EPERM') {
          opts.logger.error({ err, dir }, 'watching a directory failed; its changes will not be picked up');
        }
      });
      watchers.set(dir, w);
    } catch (err) {
      opts.logger.error({ err, dir }, 'cannot watch a directory; its changes will not be picked up');
    }
  };
  const refreshTrees = async () => {
    for (const root of trees) for (const d of await directories(root)) addWatch(d);
  };
  const run = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    const batch = changed;
    changed = new Set();
    running = refreshTrees()
      .then(() => onChange(batch))
      .catch((err: unknown) => opts.logger.error({ err }, 'reloading after a file change failed'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          run();
        }
      });
  };
  const schedule = (dir: string, filename: string | Buffer | null) => {
    if (stopped || !relevant(dir, filename)) return;
    if (filename === null) changed = undefined;
    else changed?.add(resolve(dir, filename.toString()));
    if (timer) clearTimeout(timer);
    timer = setTimeout(run, opts.debounceMs ?? DEFAULT_DEBOUNCE_MS);
  };
  for (const d of flat.keys()) addWatch(d);
  await refreshTrees();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    for (const w of watchers.values()) w.close();
    watchers.clear();
  };
}
