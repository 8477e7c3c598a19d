/**
 * The control plane's configuration as the discovery stream sends it: every resource encoded
 * once (JSON text and a hash), the version of the whole, and what changed between versions.
 *
 * The version is a digest of the content (the XOR of a hash per resource), not a counter. Two
 * states with the same resources have the same version, so a proxy that reconnects after a
 * control-plane restart with the version it holds is recognised as up to date when nothing
 * changed meanwhile, and nothing is resent. `seq` is a per-process counter for humans.
 */
import { createHash } from 'node:crypto';
import { MeshState } from '../../core/model/state.js';
import { DEFAULT_ROOT_NAMESPACE, labelsMatch } from '../../core/model/scope.js';
import { RESOURCE_KINDS, SPEC_KINDS, encodeResource, resourceKey, type ResourceKind, type ResourceTypes } from '../../core/discovery/wire.js';
import type { AuthorizationPolicy, MeshConfig, Workload } from '../../core/model/types.js';

/** One encoded resource. */
export interface Entry {
  readonly key: string;
  /** Its JSON text, as it goes on the wire. */
  readonly json: string;
  readonly hash: Buffer;
}

/** What changed from version `from` to version `to`. */
export interface GlobalDelta {
  readonly from: string;
  readonly to: string;
  readonly seq: number;
  /** Keys upserted or removed, per kind. */
  readonly changed: ReadonlyMap<ResourceKind, ReadonlySet<string>>;
}

/** The spec as written of a `SPEC_KINDS` resource (`namespace/name` key), which travels instead of the model. */
export type SpecLookup = (kind: ResourceKind, key: string) => unknown;
const NO_SPECS: SpecLookup = () => undefined;

const HASH_BYTES = 16;
/** The version of the empty state; never sent for a loaded configuration. */
export const EMPTY_VERSION = '0'.repeat(HASH_BYTES * 2);

function entryHash(kind: string, key: string, json: string): Buffer {
  return createHash('sha256').update(kind).update('\u0000').update(key).update('\u0000').update(json).digest().subarray(0, HASH_BYTES);
}

function xorInto(acc: Buffer, h: Buffer): void {
  for (let i = 0; i < HASH_BYTES; i++) acc[i]! ^= h[i]!;
}

/**
 * The current encoded configuration. `update` is the only mutator.
 *
 * @example
 * const state = new EncodedState();
 * const delta = state.update(config); // undefined when nothing changed
 */
export class EncodedState {
  #digest = Buffer.alloc(HASH_BYTES);
  #version = EMPTY_VERSION;
  #seq = 0;
  #config: MeshConfig | undefined;
  // Built on first use per version: only the CA needs the full index.
  #mesh: MeshState | undefined;
  // Workloads per node, per namespace: what node-scoped policy selection needs.
  #byNode = new Map<string, Map<string, Workload[]>>();
  readonly #kinds = new Map<ResourceKind, Map<string, Entry>>(RESOURCE_KINDS.map((k) => [k, new Map()]));
  // Encoded JSON per model object: a converter that reuses unchanged objects skips re-encoding.
  readonly #jsonCache = new WeakMap<object, string>();
  // Per-version caches.
  readonly #joined = new Map<ResourceKind, string>();
  readonly #bodies = new Map<string, Buffer>();
  readonly #nodePolicies = new Map<string, ReadonlySet<string>>();
  #workloadNode = new Map<string, string>();

  get version(): string {
    return this.#version;
  }

  get seq(): number {
    return this.#seq;
  }

  /** Whether a configuration was loaded (discovery refuses clients before that). */
  get loaded(): boolean {
    return this.#config !== undefined;
  }

  get config(): MeshConfig | undefined {
    return this.#config;
  }

  /** The indexed current configuration (the CA authorizes against it). */
  get mesh(): MeshState {
    this.#mesh ??= this.#config ? new MeshState(this.#config) : MeshState.empty();
    return this.#mesh;
  }

  get rootNamespace(): string {
    return this.#config?.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  }

  entries(kind: ResourceKind): ReadonlyMap<string, Entry> {
    return this.#kinds.get(kind)!;
  }

  /** Number of resources of every kind. */
  get size(): number {
    let n = 0;
    for (const m of this.#kinds.values()) n += m.size;
    return n;
  }

  /** Every entry of `kind` joined with commas (the inside of a JSON list), cached per version. */
  joined(kind: ResourceKind): string {
    let s = this.#joined.get(kind);
    if (s === undefined) {
      const parts: string[] = [];
      for (const e of this.#kinds.get(kind)!.values()) parts.push(e.json);
      s = parts.join(',');
      this.#joined.set(kind, s);
    }
    return s;
  }

  /**
   * `"kind":[...],"kind":[...]` for `kinds`, as one Buffer cached per version: every snapshot of
   * a version shares it, so fifty proxies reconnecting at once cost one copy, not fifty.
   */
  snapshotBody(kinds: readonly ResourceKind[]): Buffer {
    const key = kinds.join(',');
    let b = this.#bodies.get(key);
    if (!b) {
      b = Buffer.from(kinds.map((k) => `${JSON.stringify(k)}:[${this.joined(k)}]`).join(','));
      this.#bodies.set(key, b);
    }
    return b;
  }

  /**
   * Keys of the AuthorizationPolicies that apply to at least one workload on `node`: what that
   * node's ztunnel enforces. Cached per version.
   */
  policiesForNode(node: string): ReadonlySet<string> {
    let set = this.#nodePolicies.get(node);
    if (!set) {
      const out = new Set<string>();
      const byNs = this.#byNode.get(node);
      const root = this.rootNamespace;
      if (byNs) {
        for (const p of (this.#config?.authorizationPolicies ?? []) as readonly AuthorizationPolicy[]) {
          if (appliesOnNode(p, byNs, root)) out.add(`${p.namespace}/${p.name}`);
        }
      }
      set = out;
      this.#nodePolicies.set(node, set);
    }
    return set;
  }

  /**
   * Replaces the configuration. Returns what changed, or undefined when the new configuration
   * encodes to exactly the current one (the version stays).
   */
  update(config: MeshConfig, specs: SpecLookup = NO_SPECS): GlobalDelta | undefined {
    const changed = new Map<ResourceKind, Set<string>>();
    const from = this.#version;
    // The root namespace decides every policy's scope, so it is part of the version too.
    const oldRoot = this.#config === undefined ? undefined : (this.#config.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
    const newRoot = config.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    const rootChanged = oldRoot !== newRoot;
    if (rootChanged) {
      if (oldRoot !== undefined) xorInto(this.#digest, entryHash('rootNamespace', '', oldRoot));
      xorInto(this.#digest, entryHash('rootNamespace', '', newRoot));
    }
    for (const kind of RESOURCE_KINDS) {
      const old = this.#kinds.get(kind)!;
      const next = new Map<string, Entry>();
      const keys = new Set<string>();
      for (const r of (config[kind] ?? []) as readonly ResourceTypes[typeof kind][]) {
        const key = resourceKey(kind, r);
        if (next.has(key)) continue; // duplicates: first wins, as in MeshState
        let json = this.#jsonCache.get(r);
        if (json === undefined) {
          json = JSON.stringify(encodeResource(kind, r, SPEC_KINDS.has(kind) ? specs(kind, key) : undefined));
          this.#jsonCache.set(r, json);
        }
        const prev = old.get(key);
        if (prev && prev.json === json) {
          next.set(key, prev);
          continue;
        }
        const e: Entry = { key, json, hash: entryHash(kind, key, json) };
        next.set(key, e);
        if (prev) xorInto(this.#digest, prev.hash);
        xorInto(this.#digest, e.hash);
        keys.add(key);
      }
      for (const [key, e] of old) {
        if (next.has(key)) continue;
        xorInto(this.#digest, e.hash);
        keys.add(key);
      }
      this.#kinds.set(kind, next);
      if (keys.size > 0) changed.set(kind, keys);
    }
    const workloadsChanged = changed.get('workloads');
    const policiesChanged = changed.has('authorizationPolicies') || rootChanged;
    // Node policy sets stay valid for nodes none of whose workloads changed, unless policies did.
    const stale = new Set<string>();
    if (workloadsChanged) {
      for (const key of workloadsChanged) {
        const before = this.#workloadNode.get(key);
        if (before !== undefined) stale.add(before);
      }
    }
    this.#config = config;
    this.#mesh = undefined;
    this.#byNode = new Map();
    this.#workloadNode = new Map();
    for (const w of config.workloads) {
      if (this.#workloadNode.has(w.uid)) continue;
      this.#workloadNode.set(w.uid, w.node);
      let byNs = this.#byNode.get(w.node);
      if (!byNs) this.#byNode.set(w.node, (byNs = new Map()));
      let list = byNs.get(w.namespace);
      if (!list) byNs.set(w.namespace, (list = []));
      list.push(w);
    }
    if (workloadsChanged) for (const key of workloadsChanged) {
      const after = this.#workloadNode.get(key);
      if (after !== undefined) stale.add(after);
    }
    if (policiesChanged) this.#nodePolicies.clear();
    else for (const n of stale) this.#nodePolicies.delete(n);
    if (changed.size === 0 && !rootChanged) return undefined;
    this.#joined.clear();
    this.#bodies.clear();
    this.#version = this.#digest.toString('hex');
    this.#seq++;
    return { from, to: this.#version, seq: this.#seq, changed };
  }
}

/** Whether `p` applies to at least one workload of a node (its workloads grouped by namespace). */
function appliesOnNode(p: AuthorizationPolicy, byNs: ReadonlyMap<string, readonly Workload[]>, root: string): boolean {
  switch (p.scope) {
    case 'mesh':
      return true;
    case 'namespace':
      return byNs.has(p.namespace);
    case 'workload': {
      // A root-namespace policy with a selector selects in every namespace (Istio).
      const lists = p.namespace === root ? [...byNs.values()] : [byNs.get(p.namespace) ?? []];
      return lists.some((l) => l.some((w) => labelsMatch(p.selector, w.labels)));
    }
  }
}
