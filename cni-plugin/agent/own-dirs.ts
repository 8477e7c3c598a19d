/**
 * The directories the agent itself owns on the node, and their removal at a full uninstall
 * (`UNINSTALL_ON_EXIT=all`, `main.js --uninstall`): once the agent removed everything of its own
 * inside them they would stay behind empty. They are removed with rmdir only, so a directory that
 * still holds anything (another agent's socket, a file someone put there) stays.
 */
import { rmdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DEFAULT_AGENT_SOCKET } from '../cni/spec.js';
import { isAncestorOrSelf } from './cgroup.js';
import { DEFAULTS, defaultPinDir } from './config.js';

/**
 * The agent's own top directories, by the default layout: `/var/run/ambient` (socket, state
 * file) and `/sys/fs/bpf/ambient` (the pin dirs of every node name). A configured path elsewhere
 * (STATE_FILE=/tmp/x.json) lives in someone else's directory, which is never touched.
 */
export const OWN_ROOTS: readonly string[] = Object.freeze([...new Set([dirname(DEFAULTS.stateFile), dirname(DEFAULT_AGENT_SOCKET), dirname(defaultPinDir('node'))])]);

/**
 * The directories to remove for the agent's configured paths: for each path under one of
 * `roots`, its directory (for `pinDir`, the pin dir itself) and every parent up to that root,
 * innermost first.
 */
export function ownDirectories(paths: { readonly stateFile: string; readonly socket: string; readonly pinDir: string }, roots: readonly string[] = OWN_ROOTS): string[] {
  const out = new Set<string>();
  const chains = [dirname(resolve(paths.stateFile)), dirname(resolve(paths.socket)), resolve(paths.pinDir)];
  for (const start of chains) {
    const root = roots.map((r) => resolve(r)).find((r) => isAncestorOrSelf(r, start));
    if (!root) continue;
    for (let d = start; isAncestorOrSelf(root, d); d = dirname(d)) {
      out.add(d);
      if (d === root) break;
    }
  }
  // Innermost first: a parent can only go once its children did.
  return [...out].sort((a, b) => b.split('/').length - a.split('/').length || a.localeCompare(b));
}

export interface RemovedDirectories {
  readonly removed: readonly string[];
  /** Kept, with why: not empty, or a mount point (a hostPath volume: the host's directory stays). */
  readonly kept: ReadonlyArray<{ readonly dir: string; readonly why: string }>;
}

/** rmdir of each of `dirs` in order; absent ones are skipped, non-empty ones and mount points kept. */
export async function removeEmptyDirectories(dirs: readonly string[]): Promise<RemovedDirectories> {
  const removed: string[] = [];
  const kept: Array<{ dir: string; why: string }> = [];
  for (const dir of dirs) {
    try {
      await rmdir(dir);
      removed.push(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      const why =
        code === 'ENOTEMPTY' || code === 'EEXIST'
          ? 'not empty: something other than the agent put files there'
          : code === 'EBUSY'
            ? 'a mount point (a hostPath volume): the container cannot remove it, the host directory stays'
            : `rmdir failed (${code ?? (err as Error).message})`;
      kept.push({ dir, why });
    }
  }
  return { removed, kept };
}
