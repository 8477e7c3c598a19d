/**
 * Immutability helpers for model snapshots. A snapshot is shared by every connection that started
 * under it, so nothing may change it after it is built; an update builds a new snapshot.
 */

/**
 * A Map that refuses writes once constructed. `Object.freeze` does not stop `Map.prototype.set`,
 * and the model holds a few Maps (e.g. `PeerAuthentication.portLevel`).
 */
export class ImmutableMap<K, V> extends Map<K, V> {
  private sealed = false;

  constructor(entries?: Iterable<readonly [K, V]>) {
    // super(entries) would call this.set() before `sealed` exists; fill after construction.
    super();
    if (entries) for (const [k, v] of entries) super.set(k, v);
    this.sealed = true;
    Object.freeze(this);
  }

  override set(key: K, value: V): this {
    if (this.sealed) throw new TypeError('cannot modify an immutable map');
    return super.set(key, value);
  }

  override delete(_key: K): boolean {
    throw new TypeError('cannot modify an immutable map');
  }

  override clear(): void {
    throw new TypeError('cannot modify an immutable map');
  }
}

/**
 * Freezes `value` and everything reachable from it (plain objects, arrays, Map keys and values;
 * Maps themselves should be `ImmutableMap`s). Returns `value` for chaining.
 *
 * @example
 * const cfg = deepFreeze({ nodes: [{ name: 'a' }] });
 * Object.isFrozen(cfg.nodes[0]); // => true
 */
export function deepFreeze<T>(value: T): T {
  // An explicit stack, not recursion: `value` may be JSON an API server sent, nested as deep as its
  // decoder allows (10,000 levels), and a call per level overflows the stack near 5,000. A value is
  // frozen before its children are; freezing is shallow, so the order changes nothing.
  const seen = new Set<unknown>();
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof Map) {
      for (const [k, val] of v) stack.push(k, val);
    } else {
      for (const key of Object.keys(v)) stack.push((v as Record<string, unknown>)[key]);
    }
    Object.freeze(v);
  }
  return value;
}
