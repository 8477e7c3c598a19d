/**
 * The object store: the set of accepted objects (`objects.ts`) that the lab's files, the manifest
 * directory and the Kubernetes informers all feed, and that `convert.ts` converts.
 */
import { formatRef, objectRef, refKey, sortObjects, type ManifestObject, type ObjectProblem, type ObjectRef } from './objects.js';

/** The objects a store change touched: `prev` is the replaced version, if any. */
export interface ObjectChanges {
  readonly upserted: readonly { readonly prev?: ManifestObject; readonly next: ManifestObject }[];
  readonly deleted: readonly ManifestObject[];
}

/** What a store change did. */
export interface StoreChange {
  /** Objects added or changed. */
  readonly upserted: number;
  readonly deleted: number;
  /** Objects refused (duplicates); their problems are in `problems`. */
  readonly problems: ObjectProblem[];
}

/**
 * The set of accepted objects. `revision` increases on every real change; re-applying an
 * identical object changes nothing. Listeners run synchronously after each change.
 *
 * @example
 * const store = new ManifestStore();
 * store.onChange(() => schedule(convert));
 * store.apply(parseManifests(text, 'apps.yaml').objects);
 */
export class ManifestStore {
  private readonly byKey = new Map<string, ManifestObject>();
  private readonly listeners = new Set<(change: ObjectChanges) => void>();
  #revision = 0;
  // Objects in conversion order, kept across changes that only replace objects (the common
  // case: a pod's labels or status); re-sorted when objects are added or removed.
  #sorted: ManifestObject[] | undefined;
  #index = new Map<string, number>();

  get revision(): number {
    return this.#revision;
  }

  get size(): number {
    return this.byKey.size;
  }

  objects(): IterableIterator<ManifestObject> {
    return this.byKey.values();
  }

  /** Every object in conversion order (kind, namespace, name); pass to `convertManifests` with `sorted: true`. */
  sortedObjects(): readonly ManifestObject[] {
    if (!this.#sorted) {
      this.#sorted = sortObjects([...this.byKey.values()]);
      this.#index = new Map(this.#sorted.map((o, i) => [refKey(objectRef(o)), i]));
    }
    return this.#sorted;
  }

  get(ref: ObjectRef): ManifestObject | undefined {
    return this.byKey.get(refKey(ref));
  }

  /** Listeners run synchronously after each change, with what changed. */
  onChange(listener: (change: ObjectChanges) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adds or replaces objects (as `kubectl apply` does). */
  apply(objects: readonly ManifestObject[]): StoreChange {
    const upserted: ObjectChanges['upserted'][number][] = [];
    for (const o of objects) {
      const key = refKey(objectRef(o));
      const prev = this.byKey.get(key);
      if (prev && prev.rawJson === o.rawJson && prev.kind === o.kind) continue;
      this.#put(key, prev, o);
      upserted.push(prev ? { prev, next: o } : { next: o });
    }
    return this.#changed({ upserted, deleted: [] }, []);
  }

  /** Removes objects (as `kubectl delete` does); unknown refs are ignored. */
  delete(refs: readonly ObjectRef[]): StoreChange {
    const deleted: ManifestObject[] = [];
    for (const r of refs) {
      const key = refKey(r);
      const prev = this.byKey.get(key);
      if (!prev) continue;
      this.byKey.delete(key);
      deleted.push(prev);
    }
    if (deleted.length > 0) this.#sorted = undefined;
    return this.#changed({ upserted: [], deleted }, []);
  }

  /**
   * Makes the store hold exactly `objects` (a directory re-read). The same object twice (same
   * kind, namespace and name, from two files) is an error for the second one; the first stays.
   * An object identical to the stored one (same text) keeps the stored instance, so conversions
   * recognise it as unchanged.
   */
  replaceAll(objects: readonly ManifestObject[]): StoreChange {
    const next = new Map<string, ManifestObject>();
    const problems: ObjectProblem[] = [];
    for (const o of objects) {
      const ref = objectRef(o);
      const key = refKey(ref);
      const first = next.get(key);
      if (first) {
        problems.push({
          object: formatRef(ref),
          field: 'metadata.name',
          message: `defined twice; the definition in ${first.source ?? 'another document'} is used and this one ignored`,
          severity: 'error',
          ...(o.source !== undefined ? { source: o.source } : {}),
        });
        continue;
      }
      next.set(key, o);
    }
    const upserted: ObjectChanges['upserted'][number][] = [];
    const deleted: ManifestObject[] = [];
    for (const [key, o] of next) {
      const prev = this.byKey.get(key);
      if (prev && prev.rawJson === o.rawJson && prev.kind === o.kind) continue;
      this.#put(key, prev, o);
      upserted.push(prev ? { prev, next: o } : { next: o });
    }
    for (const [key, o] of this.byKey) {
      if (next.has(key)) continue;
      this.byKey.delete(key);
      deleted.push(o);
    }
    if (deleted.length > 0) this.#sorted = undefined;
    return this.#changed({ upserted, deleted }, problems);
  }

  #put(key: string, prev: ManifestObject | undefined, o: ManifestObject): void {
    this.byKey.set(key, o);
    const at = this.#index.get(key);
    if (prev && this.#sorted && at !== undefined) this.#sorted[at] = o;
    else this.#sorted = undefined;
  }

  #changed(change: ObjectChanges, problems: ObjectProblem[]): StoreChange {
    const result = { upserted: change.upserted.length, deleted: change.deleted.length, problems };
    if (result.upserted > 0 || result.deleted > 0) {
      this.#revision++;
      for (const l of this.listeners) l(change);
    }
    return result;
  }
}
