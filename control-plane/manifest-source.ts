/**
 * The file/lab object source: a manifest file or a directory of them (what the lab writes, what
 * a user would `kubectl apply`), kept in a `ManifestStore`. The Kubernetes source (informers) is
 * the other implementation of `ObjectSource`.
 *
 * Only files whose size or modification time changed are read again, and only files whose text
 * changed are parsed again, so a directory of many objects costs little per change. A file with a
 * YAML error contributes nothing (none of its objects, old or new) until it is fixed; a rejected
 * object never affects the others.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import type { Logger } from '../core/telemetry/log.js';
import { formatProblem, type ManifestObject, type ObjectProblem } from '../core/kube/objects.js';
import { parseManifests } from '../core/kube/parse.js';
import type { ManifestStore } from '../core/kube/store.js';
import { watchPaths } from './watch.js';

/** A source of Kubernetes objects feeding a store. */
export interface ObjectSource {
  /** Loads everything once into `store`, then keeps it current until `close`. */
  start(store: ManifestStore): Promise<void>;
  /** Problems of the objects as last read (rejected objects and warnings). */
  problems(): readonly ObjectProblem[];
  close(): Promise<void>;
}

interface FileEntry {
  readonly ino: number;
  readonly mtimeMs: number;
  readonly size: number;
  readonly text: string;
  readonly objects: ManifestObject[];
  readonly problems: ObjectProblem[];
}

const MANIFEST_RE = /\.(ya?ml|json)$/i;

/** Problems kept (listed, logged, written to a status) per object; the rest are counted in one more. */
export const MAX_PROBLEMS_PER_OBJECT = 50;

/**
 * The first `MAX_PROBLEMS_PER_OBJECT` problems of each object (by source and object), then, for
 * each object that had more, one error saying how many more there were. What a source keeps of
 * an object must not be many times the object: one 1.4 MiB AuthorizationPolicy of 240,000 bad
 * principals (24 rules of 10,000, within every list bound) is 240,000 problems, about 120 MB held
 * for as long as the object exists, a 146 MB `/debug/status` and as many log lines; four of them
 * outgrew the chart's 512 MiB limit. The object is refused either way; the first problems say why.
 */
export function limitProblems(problems: readonly ObjectProblem[]): ObjectProblem[] {
  const kept: ObjectProblem[] = [];
  const count = new Map<string, { first: ObjectProblem; n: number }>();
  for (const p of problems) {
    const key = `${p.source ?? ''}\u0000${p.object}`;
    const c = count.get(key);
    if (!c) count.set(key, { first: p, n: 1 });
    else c.n++;
    if ((c?.n ?? 1) <= MAX_PROBLEMS_PER_OBJECT) kept.push(p);
  }
  for (const { first, n } of count.values()) {
    if (n <= MAX_PROBLEMS_PER_OBJECT) continue;
    kept.push({
      object: first.object,
      field: '',
      message: `${n - MAX_PROBLEMS_PER_OBJECT} more problems of this object are not listed (the first ${MAX_PROBLEMS_PER_OBJECT} are); fix those and check it again`,
      severity: 'error',
      ...(first.source !== undefined ? { source: first.source } : {}),
    });
  }
  return kept;
}

/** Inputs of `ManifestDirSource`. */
export interface ManifestDirSourceInputs {
  /** A file or a directory (read recursively; names starting with "." are skipped). */
  readonly path: string;
  readonly rootNamespace: string;
  readonly logger: Logger;
  readonly debounceMs?: number;
  /** Called after each reload that failed to read the path. */
  readonly onError?: (err: Error) => void;
}

/**
 * @example
 * const source = new ManifestDirSource({ path: '/var/lib/mesh/manifests', rootNamespace: 'istio-system', logger });
 * await source.start(store);
 */
export class ManifestDirSource implements ObjectSource {
  readonly #in: ManifestDirSourceInputs;
  readonly #root: string;
  readonly #files = new Map<string, FileEntry>();
  #problems: readonly ObjectProblem[] = [];
  #logged = new Set<string>();
  #stopWatch: (() => void) | undefined;
  #store: ManifestStore | undefined;

  constructor(inputs: ManifestDirSourceInputs) {
    this.#in = inputs;
    this.#root = resolve(inputs.path);
  }

  async start(store: ManifestStore): Promise<void> {
    this.#store = store;
    // Watch first, so a change racing with the first read is not lost.
    this.#stopWatch = await watchPaths([this.#root], (changed) => this.reload(changed), {
      logger: this.#in.logger,
      ...(this.#in.debounceMs !== undefined ? { debounceMs: this.#in.debounceMs } : {}),
    });
    await this.reload();
  }

  problems(): readonly ObjectProblem[] {
    return this.#problems;
  }

  async close(): Promise<void> {
    this.#stopWatch?.();
    this.#stopWatch = undefined;
  }

  /**
   * Re-reads what changed and updates the store. Files named in `changed` are always read again;
   * others only when their inode, size or modification time differ (file timestamps are coarse,
   * so a quick rewrite of the same size can keep all three: the watcher's file names catch it).
   */
  async reload(changed?: ReadonlySet<string>): Promise<void> {
    const store = this.#store;
    if (!store) return;
    this.#in.logger.debug({ changed: changed ? [...changed] : 'all' }, 'reading manifests');
    let paths: string[];
    try {
      paths = await this.#list();
    } catch (err) {
      this.#in.logger.error({ err, path: this.#root }, 'cannot read the manifests path; keeping the objects read before');
      this.#in.onError?.(err as Error);
      return;
    }
    const seen = new Set<string>();
    for (const p of paths) {
      seen.add(p);
      let st;
      try {
        st = await stat(p);
      } catch {
        continue; // removed meanwhile
      }
      const prev = this.#files.get(p);
      const named = changed === undefined || changed.has(p);
      if (prev && !named && prev.ino === st.ino && prev.mtimeMs === st.mtimeMs && prev.size === st.size) continue;
      let text: string;
      try {
        text = await readFile(p, 'utf8');
      } catch {
        continue;
      }
      if (prev && prev.text === text) {
        this.#files.set(p, { ...prev, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size });
        continue;
      }
      const source = relative(this.#isDir ? this.#root : resolve(this.#root, '..'), p) || p;
      const parsed = parseManifests(text, source, { rootNamespace: this.#in.rootNamespace });
      this.#files.set(p, { ino: st.ino, mtimeMs: st.mtimeMs, size: st.size, text, objects: parsed.objects, problems: limitProblems(parsed.problems) });
    }
    for (const p of [...this.#files.keys()]) if (!seen.has(p)) this.#files.delete(p);
    const ordered = [...this.#files.keys()].sort();
    const objects: ManifestObject[] = [];
    const problems: ObjectProblem[] = [];
    // Loops, not push(...list): a file may hold more objects or problems than a call takes
    // arguments (RangeError: Maximum call stack size exceeded), which failed the whole reload, so
    // one such file kept every other file's changes out.
    for (const p of ordered) {
      const f = this.#files.get(p)!;
      for (const o of f.objects) objects.push(o);
      for (const x of f.problems) problems.push(x);
    }
    const change = store.replaceAll(objects);
    for (const x of change.problems) problems.push(x);
    this.#problems = problems;
    this.#logNew(problems);
    if (change.upserted > 0 || change.deleted > 0) {
      this.#in.logger.info({ upserted: change.upserted, deleted: change.deleted, objects: store.size, files: ordered.length }, 'manifests loaded');
    }
  }

  #isDir = false;

  async #list(): Promise<string[]> {
    const st = await stat(this.#root);
    this.#isDir = st.isDirectory();
    if (!this.#isDir) return [this.#root];
    const out: string[] = [];
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > 8) return;
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.name.startsWith('.')) continue;
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p, depth + 1);
        else if ((e.isFile() || e.isSymbolicLink()) && MANIFEST_RE.test(e.name)) out.push(p);
      }
    };
    await walk(this.#root, 0);
    return out;
  }

  /** Logs each problem once (until it goes away), so a reload does not repeat old ones. */
  #logNew(problems: readonly ObjectProblem[]): void {
    const now = new Set<string>();
    for (const p of problems) {
      const text = formatProblem(p);
      now.add(text);
      if (this.#logged.has(text)) continue;
      const level = p.severity === 'error' ? 'warn' : p.severity === 'warning' ? 'warn' : 'debug';
      this.#in.logger[level]({ object: p.object, field: p.field, severity: p.severity, source: p.source }, text);
    }
    this.#logged = now;
  }
}
