/**
 * The mutations of issue 19, applied to parsed seeds (structured values) or to bytes, driven by a
 * seeded generator so that a run is reproducible from its seed. Some mutations cannot be expressed
 * as a value (YAML aliases, nesting deeper than a serialiser recurses): they leave a marker string
 * that `render` expands in the text.
 */
import { dump } from 'js-yaml';
import { seededRandom } from '../core/seeded-random.js';

/** The fuzz run's seeded PRNG (core/seeded-random.ts). */
export const rng = seededRandom;

/** A per-input seed from the run's seed, the entry and the input's index. */
export function inputSeed(runSeed: number, entry: string, i: number): number {
  let h = (runSeed ^ 0x9e3779b9) >>> 0;
  for (const c of `${entry}#${i}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

export type Rand = () => number;
export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

export const MiB = 1024 * 1024;
/** Largest rendered input (16 MiB: ten times the API server's request limit). */
export const MAX_INPUT = 16 * MiB;

/** Strings that break what a name, host, principal or header may hold. */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  'Bad_SA',
  '!!! bad host',
  '-leading-dash',
  'trailing.',
  'UPPER',
  'n\u001b[31mode-a',
  'a\r\nx-injected: 1',
  'a\nb',
  '\u0000',
  '*\u0000',
  'a\u202eb',
  'a\u200bb',
  '\ufeffname',
  'x'.repeat(64),
  'x'.repeat(254),
  '..',
  '/',
  'a/b',
  '%2F',
  '${x}',
  '{{ .x }}',
];

export const ODD_PRINCIPALS: readonly string[] = ['', '*', '**', '*a*', '*\n\t', '\u0000', 'spiffe://cluster.local/ns/a/sa/b', 'cluster.local/ns//sa/x', 'cluster.local/ns/a/sa/', '/ns/a/sa/b', 'cluster.local/ns/a/sa/b/c'];
export const ODD_NUMBERS: readonly unknown[] = [0, -1, 65535, 65536, 2147483647, 2147483648, 1e300, -1e300, 1.5, 9007199254740993, '08080', '0x50', ' 80', '8e1', '', '1e3'];
export const BAD_CIDRS: readonly string[] = ['999.1.1.1/40', '10.0.0.0/024', '010.0.0.1', '10.0.0.0/33', '::/129', '10.0.0.1/', '/8', '10.0.0.0/-1', '1.2.3.4.5', 'fe80::1%eth0', '0.0.0.0/0', '::ffff:10.0.0.1'];
export const BAD_REGEXES: readonly string[] = ['(a+)+$', '/admin)|(/x', '(?=x)', '((((((a*)*)*)*)*)*)', '[', '\\1', '(a|a)*b', 'a{1000}{1000}', '(?i)' + '(a|b)'.repeat(500), '.*'.repeat(200)];
export const BAD_PATHS: readonly string[] = ['/{**}{**}{**}{**}{**}{**}x', '/{*}/{**}', '{', '/{**}', '{**}', '/a/{*}{*}', '/{***}', '*', '/*/*'];
/** What a hostile request carries to the waypoint's matchers. */
export const HOSTILE_REQUEST_PATHS: readonly string[] = [
  '/',
  '/admin/anything',
  '/' + 'a'.repeat(26) + '!',
  '/' + 'a/'.repeat(5000) + 'x',
  '/' + 'x'.repeat(100_000),
  '/a\u0000b',
  '/%2e%2e/admin',
  '/\u202eadmin',
  '//admin',
];

/** A marker `render` replaces by text: nesting `depth` deep, or a YAML alias bomb of `levels`. */
const DEEP = (depth: number) => `__FUZZ_DEEP_${depth}__`;
const BOMB = (levels: number) => `__FUZZ_BOMB_${levels}__`;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Slot {
  readonly get: () => Json;
  readonly set: (v: Json) => void;
  readonly parent?: Json[] | { [k: string]: Json };
  readonly key?: string | number;
}

/**
 * Lists longer than this are leaves to the mutations (replaced whole, never entered): a long list
 * shares one element, and a second long list inside it would multiply instead of add.
 */
const LEAF_LIST = 1000;

/** Every place in `root` a value can be replaced (the root itself excluded). */
function slots(root: Json): Slot[] {
  const out: Slot[] = [];
  const walk = (v: Json, depth: number) => {
    if (depth > 40 || v === null || typeof v !== 'object') return;
    if (Array.isArray(v) && v.length > LEAF_LIST) return;
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        out.push({ get: () => v[i]!, set: (n) => (v[i] = n), parent: v, key: i });
        walk(x, depth + 1);
      });
    } else {
      for (const k of Object.keys(v)) {
        out.push({ get: () => v[k]!, set: (n) => (v[k] = n), parent: v, key: k });
        walk(v[k]!, depth + 1);
      }
    }
  };
  walk(root, 0);
  return out;
}

function mappings(root: Json): { [k: string]: Json }[] {
  const out: { [k: string]: Json }[] = [];
  const walk = (v: Json, depth: number) => {
    if (depth > 40 || v === null || typeof v !== 'object' || (Array.isArray(v) && v.length > LEAF_LIST)) return;
    if (!Array.isArray(v)) out.push(v);
    for (const x of Array.isArray(v) ? v : Object.values(v)) walk(x, depth + 1);
  };
  walk(root, 0);
  return out;
}

const SWAPS: readonly Json[] = [null, true, 0, -1, 'x', '80', [], {}, ['x'], { x: 'y' }];

/** One structured mutation: each returns its name (the class a finding is reported under). */
const MUTATIONS: ReadonlyArray<readonly [string, (r: Rand, root: Json, donors: readonly Json[]) => void]> = [
  ['type-swap', (r, root) => { const s = slots(root); if (s.length) pick(r, s).set(structuredClone(pick(r, SWAPS))); }],
  ['delete-key', (r, root) => { const m = mappings(root); const o = m.length ? pick(r, m) : undefined; const ks = o ? Object.keys(o) : []; if (o && ks.length) delete o[pick(r, ks)]; }],
  ['duplicate', (r, root) => {
    const s = slots(root).filter((x) => Array.isArray(x.parent));
    if (s.length) { const x = pick(r, s); (x.parent as Json[]).push(structuredClone(x.get())); }
    else { const m = mappings(root); const o = m.length ? pick(r, m) : undefined; const ks = o ? Object.keys(o) : []; if (o && ks.length) o[`${pick(r, ks)}x`] = structuredClone(o[pick(r, ks)]!); }
  }],
  ['big-string', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'string'); if (s.length) pick(r, s).set(pick(r, ['a', 'x.', '-', '\u200b']).repeat(int(r, 1, 2) * MiB / 2)); }],
  ['big-key', (r, root) => { const m = mappings(root); if (m.length) pick(r, m)['k'.repeat(MiB)] = 'v'; }],
  ['deep-nesting', (r, root) => { const s = slots(root); if (s.length) pick(r, s).set(DEEP(pick(r, [1000, 10_000, 50_000]))); }],
  ['long-list', (r, root) => {
    const s = slots(root);
    if (!s.length) return;
    const x = pick(r, s);
    const v = x.get();
    const small = Array.isArray(v) && v.length && JSON.stringify(v[0]).length <= 4096;
    const el = small ? (v as Json[])[0]! : pick(r, ['', '*', 'x', 'cluster.local/ns/a/sa/b', '10.0.0.1', 80] as Json[]);
    x.set(Array.from({ length: pick(r, [10_000, 50_000, 150_000]) }, () => el));
  }],
  ['alias-bomb', (r, root) => { const s = slots(root); if (s.length) pick(r, s).set(BOMB(pick(r, [6, 8, 9]))); }],
  ['hostile-string', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'string'); if (s.length) pick(r, s).set(pick(r, HOSTILE_STRINGS)); }],
  ['control-chars', (r, root) => {
    const s = slots(root).filter((x) => typeof x.get() === 'string');
    if (!s.length) return;
    const x = pick(r, s);
    const v = x.get() as string;
    const at = int(r, 0, v.length);
    x.set(v.slice(0, at) + pick(r, ['\u0000', '\r\n', '\u001b[31m', '\u202e', '\u200b', '\t', '\u0085', '\ud800']) + v.slice(at));
  }],
  ['out-of-range-number', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'number' || /^\d+$/.test(String(x.get()))); const t = s.length ? s : slots(root); if (t.length) pick(r, t).set(pick(r, ODD_NUMBERS) as Json); }],
  ['bad-cidr', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'string' && /[.:]\d|\//.test(x.get() as string)); const t = s.length ? s : slots(root); if (t.length) pick(r, t).set(pick(r, BAD_CIDRS)); }],
  ['odd-principal', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'string'); if (s.length) pick(r, s).set(pick(r, ODD_PRINCIPALS)); }],
  ['bad-regex', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'string'); if (s.length) pick(r, s).set(pick(r, BAD_REGEXES)); }],
  ['bad-path-template', (r, root) => { const s = slots(root).filter((x) => typeof x.get() === 'string'); if (s.length) pick(r, s).set(pick(r, BAD_PATHS)); }],
  ['crossover', (r, root, donors) => {
    const s = slots(root);
    const d = donors.length ? slots(structuredClone(pick(r, donors))) : [];
    if (s.length && d.length) pick(r, s).set(structuredClone(pick(r, d).get()));
  }],
];

export const MUTATION_NAMES: readonly string[] = MUTATIONS.map(([n]) => n);

/**
 * Mutates a deep copy of `seed` with 1-3 mutations; returns the copy and the names applied.
 * `only` restricts the choice (the property tests use it to pick mutations through fast-check).
 */
export function mutateValue(r: Rand, seed: unknown, donors: readonly unknown[], only?: readonly number[]): { value: unknown; applied: string[] } {
  const box: Json = [structuredClone(seed) as Json];
  const applied: string[] = [];
  const ops = only ?? Array.from({ length: int(r, 1, 3) }, () => int(r, 0, MUTATIONS.length - 1));
  for (const i of ops) {
    const [name, f] = MUTATIONS[i % MUTATIONS.length]!;
    f(r, box, donors as Json[]);
    applied.push(name);
  }
  return { value: (box as Json[])[0], applied };
}

/** Nesting `depth` deep in flow style (valid YAML and JSON). */
function deep(depth: number, r: Rand): string {
  return r() < 0.5 ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

/** A billion-laughs mapping in flow style: `levels` anchors, each nine aliases of the one before. */
function bomb(levels: number, n: number): string {
  const parts = [`l${n}_0: &l${n}_0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]`];
  for (let i = 1; i < levels; i++) parts.push(`l${n}_${i}: &l${n}_${i} [${Array(9).fill(`*l${n}_${i - 1}`).join(', ')}]`);
  return `{${parts.join(', ')}}`;
}

/**
 * Serialises a (mutated) value: YAML or JSON as `format` says (YAML also in flow or block style),
 * then expands the markers. JSON has no aliases: a bomb marker becomes deep nesting there.
 */
export function render(r: Rand, v: unknown, format: 'yaml' | 'json' | 'any'): string {
  const asJson = format === 'json' || (format === 'any' && r() < 0.3);
  let text: string;
  // Mutations compound (a long list of a long string); past MAX_INPUT the input is no longer one
  // a transport would carry, so the mutated value is dropped for an empty document.
  let json: string;
  try {
    json = JSON.stringify(v) ?? 'null';
  } catch {
    json = 'null';
  }
  if (json.length > MAX_INPUT) return asJson ? 'null' : '';
  if (asJson) text = json;
  else {
    try {
      text = dump(v, { lineWidth: -1, noRefs: true, flowLevel: r() < 0.2 ? 1 : -1 });
    } catch {
      text = JSON.stringify(v);
    }
  }
  // YAML can be longer than the JSON checked above (indentation, escapes), and every placeholder
  // below expands: both are held to MAX_INPUT too (a meshConfig input once passed V8's largest string).
  if (text.length > MAX_INPUT) return asJson ? 'null' : '';
  let n = 0;
  let size = text.length;
  const out = text.replace(/"?__FUZZ_(DEEP|BOMB)_(\d+)__"?/g, (_, what: string, k: string) => {
    if (size > MAX_INPUT) return '';
    const piece = what === 'DEEP' || asJson ? deep(Number(k), r) : bomb(Number(k), n++);
    size += piece.length;
    return piece;
  });
  return size > MAX_INPUT ? (asJson ? 'null' : '') : out;
}

/** Byte mutations of a binary seed (the SOCKS5 handshake). */
export function mutateBytes(r: Rand, seed: Uint8Array, only?: readonly number[]): { value: Buffer; applied: string[] } {
  let b = Buffer.from(seed);
  const applied: string[] = [];
  const ops: ReadonlyArray<readonly [string, () => void]> = [
    ['flip-byte', () => { if (b.length) b[int(r, 0, b.length - 1)] = int(r, 0, 255); }],
    ['truncate', () => { b = b.subarray(0, int(r, 0, b.length)); }],
    ['extend', () => { b = Buffer.concat([b, Buffer.alloc(int(r, 1, 2000), int(r, 0, 255))]); }],
    ['lie-length', () => { if (b.length > 4) b[int(r, 1, Math.min(b.length - 1, 8))] = pick(r, [0, 1, 255, 254]); }],
    ['zero-port', () => { if (b.length >= 2) b.writeUInt16BE(0, b.length - 2); }],
    ['empty-host', () => { b = Buffer.from([5, 1, 0, 5, 1, 0, 3, 0, 0, 80]); }],
    ['control-host', () => { const h = Buffer.from(pick(r, ['a\r\nb', '\u0000', 'a b', '..', '999.1.1.1', 'x'.repeat(255)]), 'latin1'); b = Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, h.length & 255]), h, Buffer.from([0, 80])]); }],
    ['random', () => { b = Buffer.from(Array.from({ length: int(r, 0, 64) }, () => int(r, 0, 255))); }],
  ];
  const chosen = only ?? Array.from({ length: int(r, 1, 3) }, () => int(r, 0, ops.length - 1));
  for (const i of chosen) {
    const [name, f] = ops[i % ops.length]!;
    f();
    applied.push(name);
  }
  return { value: b, applied };
}
