/**
 * Small building blocks for validating parsed YAML/JSON while collecting every problem.
 *
 * Each checker takes the path of the value inside the document (`workloads[2].ips[0]`), records a
 * problem that names the path, what was found and what was expected, and returns `undefined` when
 * the value is unusable. Callers keep going after a problem so that one run reports all of them.
 */

/** Accumulates problems; the caller throws one ConfigError with all of them at the end. */
export class Problems {
  readonly list: string[] = [];

  /** Records `path: message` (or just `message` at the document root). */
  add(path: string, message: string): void {
    this.list.push(path === '' ? message : `${path}: ${message}`);
  }

  get size(): number {
    return this.list.length;
  }
}

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Longest piece of a user's string a message repeats; the rest is counted, not copied. */
const QUOTE_MAX = 100;

/**
 * `s` as a message shows it: JSON-quoted (control characters escaped, and the invisible ones
 * JSON leaves raw, so a message cannot forge or disguise a log line) and cut at `QUOTE_MAX` characters with the full length said, so a 1 MiB key or value
 * makes a short message.
 */
export function quote(s: string): string {
  const shown = s.length <= QUOTE_MAX ? s : s.slice(0, QUOTE_MAX);
  const quoted = JSON.stringify(shown).replace(INVISIBLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return s.length <= QUOTE_MAX ? quoted : `${quoted}… (${s.length} characters)`;
}

/**
 * Characters JSON leaves raw that change how a line reads: C1 controls, the soft hyphen,
 * zero-width and bidirectional marks and overrides (U+202E turns the rest of a log line around),
 * line and paragraph separators, the byte-order mark. Shown escaped, as `\u202e`.
 */
const INVISIBLE = /[\u007f-\u009f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g;

/** The path of key `k` under `path`: `a.b`, or `a["app.kubernetes.io/name"]` for odd keys. */
export function keyPath(path: string, k: string): string {
  if (k.length <= QUOTE_MAX && IDENT_RE.test(k)) return path === '' ? k : `${path}.${k}`;
  return `${path}[${quote(k)}]`;
}

/** The path of element `i` under `path`: `a[3]`. */
export function indexPath(path: string, i: number): string {
  return `${path}[${i}]`;
}

/** How a found value reads in a message: strings quoted, containers by kind. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/** A mapping as YAML produces it: a plain object that is not an array. */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keys longer than twice this are never "near" an allowed key (no allowed key is this long). */
const LONGEST_KEY_COMPARED = 64;
/**
 * Unknown keys given a "did you mean", per collector of problems (one object, one file): a typo
 * makes one or two; a mapping with 100,000 unknown keys (a 1.5 MiB object) took 14 s comparing
 * each with every allowed key, and 18,000 mappings with one unknown key each (a standalone file)
 * 0.5 s.
 */
const UNKNOWN_KEYS_COMPARED = 20;
const compared = new WeakMap<Problems, number>();

/** Edit distance counting a swap of adjacent letters as one edit, to suggest the key meant. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
      row[j] = v;
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/**
 * Checks that `v` is a mapping and that it holds only `allowed` keys. Unknown keys are reported
 * one by one with the list of allowed keys (and a "did you mean" when one is close); keys in
 * `unsupported` (fields the upstream resource has and the mesh does not implement) are reported
 * as not supported instead. Returns the mapping even when it has unknown keys, so the known ones
 * are still checked.
 */
export function mapping(
  problems: Problems,
  path: string,
  v: unknown,
  allowed: readonly string[],
  what = 'a mapping',
  unsupported: readonly string[] = [],
): Record<string, unknown> | undefined {
  if (!isMapping(v)) {
    problems.add(path, `expected ${what}, got ${describe(v)}`);
    return undefined;
  }
  for (const k of Object.keys(v)) {
    if (allowed.includes(k)) continue;
    if (unsupported.includes(k)) {
      problems.add(keyPath(path, k), 'is not supported by the mesh');
      continue;
    }
    // The distance is at least the difference in length: a key far longer than every allowed one
    // (up to 1 MiB) is near none, and is not compared (the comparison is quadratic).
    const done = compared.get(problems) ?? 0;
    if (k.length <= 2 * LONGEST_KEY_COMPARED && done < UNKNOWN_KEYS_COMPARED) compared.set(problems, done + 1);
    const near = k.length > 2 * LONGEST_KEY_COMPARED || done >= UNKNOWN_KEYS_COMPARED ? undefined : allowed
      .map((a) => ({ a, d: distance(k.toLowerCase(), a.toLowerCase()) }))
      .filter(
        (x) =>
          x.d <= Math.max(1, Math.floor(x.a.length / 3)) ||
          (k.length >= 3 && x.a.toLowerCase().includes(k.toLowerCase())),
      )
      .sort((x, y) => x.d - y.d)[0];
    const hint = near ? `did you mean "${near.a}"? ` : '';
    problems.add(keyPath(path, k), `unknown key; ${hint}allowed keys here: ${allowed.join(', ')}`);
  }
  return v;
}

/**
 * Reads field `k` of `m`. Absent (or YAML null) fields are reported when `required`, else yield
 * `undefined` without a problem; present ones go through `parse`.
 */
export function field<T>(
  problems: Problems,
  path: string,
  m: Record<string, unknown>,
  k: string,
  parse: (v: unknown, path: string) => T | undefined,
  opts: { required?: boolean; expected?: string } = {},
): T | undefined {
  const p = keyPath(path, k);
  const v = Object.hasOwn(m, k) ? m[k] : undefined;
  if (v === undefined || v === null) {
    if (opts.required) problems.add(p, `required field is missing${opts.expected ? `; expected ${opts.expected}` : ''}`);
    return undefined;
  }
  return parse(v, p);
}

/** A string; `test` may refine it (return an error text to reject). */
export function string(
  problems: Problems,
  path: string,
  v: unknown,
  expected: string,
  test?: (s: string) => string | undefined,
): string | undefined {
  if (typeof v !== 'string' || v === '') {
    problems.add(path, `expected ${expected}, got ${describe(v)}`);
    return undefined;
  }
  const err = test?.(v);
  if (err !== undefined) {
    problems.add(path, err);
    return undefined;
  }
  return v;
}

/** Field `k` of `m` as a string (`field` and `string` in one call); `what` names the string expected. */
export function stringField(
  problems: Problems,
  path: string,
  m: Record<string, unknown>,
  k: string,
  what: string,
  test?: (s: string) => string | undefined,
  opts: { required?: boolean; expected?: string } = {},
): string | undefined {
  return field(problems, path, m, k, (x, q) => string(problems, q, x, what, test), opts);
}

/**
 * The required `key` of an AuthorizationPolicy `when` entry, shared by the L4 (`authorization-policy.ts`)
 * and waypoint (`waypoint-policy.ts`) converters, which differ only in the keys their proxy
 * evaluates: `accepts` says which, `expected` lists them for the message. That `key` is present is
 * the upstream schema's check (core/kube/schema.ts), made before either converter runs. (It lives
 * here because waypoint-policy.ts cannot import authorization-policy.ts: that would close a cycle
 * through core/authz/evaluate.ts.)
 */
export function conditionKeyField(
  problems: Problems,
  path: string,
  m: Record<string, unknown>,
  accepts: (key: string) => boolean,
  expected: string,
): string | undefined {
  return stringField(problems, path, m, 'key', 'a condition key', (s) =>
    accepts(s) ? undefined : `${JSON.stringify(s)} is not a supported condition key; expected ${expected}`,
  );
}

/** A boolean (YAML true/false only: `yes`/`no` are strings in YAML 1.2). */
export function boolean(problems: Problems, path: string, v: unknown): boolean | undefined {
  if (typeof v !== 'boolean') {
    problems.add(path, `expected true or false, got ${describe(v)}`);
    return undefined;
  }
  return v;
}

/** A TCP port: an integer from 1 to 65535. `allowString` also takes "8080" (Istio writes ports as strings). */
export function port(problems: Problems, path: string, v: unknown, allowString = false): number | undefined {
  const n = allowString && typeof v === 'string' && /^\d{1,5}$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
    problems.add(path, `${describe(v)} is not a port; expected an integer from 1 to 65535`);
    return undefined;
  }
  return n;
}

/** One of `allowed` (an enum); the message lists the allowed values. */
export function oneOf<T extends string>(
  problems: Problems,
  path: string,
  v: unknown,
  allowed: readonly T[],
): T | undefined {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    problems.add(path, `${describe(v)} is not allowed; expected one of ${allowed.join(', ')}`);
    return undefined;
  }
  return v as T;
}

/**
 * A list whose elements go through `item`. Returns undefined when `v` is not a list; otherwise
 * the elements that parsed (the caller learns of failures through `problems`).
 */
export function list<T>(
  problems: Problems,
  path: string,
  v: unknown,
  item: (v: unknown, path: string, index: number) => T | undefined,
  opts: { nonEmpty?: string; expected?: string } = {},
): T[] | undefined {
  if (!Array.isArray(v)) {
    problems.add(path, `expected ${opts.expected ?? 'a list'}, got ${describe(v)}`);
    return undefined;
  }
  if (opts.nonEmpty !== undefined && v.length === 0) {
    problems.add(path, `must not be empty; ${opts.nonEmpty}`);
    return undefined;
  }
  const out: T[] = [];
  v.forEach((x, i) => {
    const r = item(x, indexPath(path, i), i);
    if (r !== undefined) out.push(r);
  });
  return out;
}

/** Reads one element of a list at `path` (its index also given); undefined when it is unusable. */
export type ListItem<T> = (v: unknown, path: string, index: number) => T | undefined;

/**
 * How `listField` reports: `expected` is what a missing required field should have been,
 * `listExpected` what a present non-list should have been (default `a list`), `nonEmpty` why an
 * empty list is refused.
 */
export interface ListFieldOptions {
  readonly required?: boolean;
  readonly expected?: string;
  readonly nonEmpty?: string;
  readonly listExpected?: string;
}

/** Field `k` of `m` as a list whose elements go through `item`: `field` and `list` in one call. */
export function listField<T>(problems: Problems, path: string, m: Record<string, unknown>, k: string, item: ListItem<T>, opts: ListFieldOptions = {}): T[] | undefined {
  return field(problems, path, m, k, (x, q) => list(problems, q, x, item, { nonEmpty: opts.nonEmpty, expected: opts.listExpected }), {
    required: opts.required,
    expected: opts.expected,
  });
}

/**
 * Field `k` of `m` as a list of single-key wrappers `{inner: {...}}` (Istio's `from: [{source}]`,
 * `to: [{operation}]`), each unwrapped through `parse`. Absent: an empty list.
 */
export function wrappedListField<T>(
  problems: Problems,
  path: string,
  m: Record<string, unknown>,
  k: string,
  inner: string,
  parse: (v: unknown, path: string) => T | undefined,
  opts: { nonEmpty: string; listExpected?: string; innerExpected?: string },
): T[] {
  return (
    listField(
      problems,
      path,
      m,
      k,
      (e, eq) => {
        const em = mapping(problems, eq, e, [inner], `a mapping {${inner}: {...}}`);
        return em ? field(problems, eq, em, inner, parse, { required: true, expected: opts.innerExpected }) : undefined;
      },
      { nonEmpty: opts.nonEmpty, listExpected: opts.listExpected },
    ) ?? []
  );
}

/**
 * A map of string to string (labels, selectors). Values must be strings: YAML reads `version: 1`
 * as a number, and a label value of 1 would never match the string "1" a workload carries, so it
 * is rejected with a hint to quote it.
 */
export function stringMap(
  problems: Problems,
  path: string,
  v: unknown,
  checkEntry?: (k: string, val: string) => string | undefined,
): Record<string, string> | undefined {
  if (!isMapping(v)) {
    problems.add(path, `expected a map of string keys to string values, got ${describe(v)}`);
    return undefined;
  }
  const out: Record<string, string> = {};
  let ok = true;
  for (const [k, val] of Object.entries(v)) {
    const p = keyPath(path, k);
    if (typeof val !== 'string') {
      const hint = typeof val === 'number' || typeof val === 'boolean' ? ` (quote it: "${String(val)}")` : '';
      problems.add(p, `expected a string value, got ${describe(val)}${hint}`);
      ok = false;
      continue;
    }
    const err = checkEntry?.(k, val);
    if (err !== undefined) {
      problems.add(p, err);
      ok = false;
      continue;
    }
    out[k] = val;
  }
  return ok ? out : undefined;
}

/** Records a duplicate: the second and later holders of `key` get a problem naming the first. */
export class Uniq {
  private readonly first = new Map<string, string>();
  constructor(
    private readonly problems: Problems,
    private readonly what: string,
  ) {}

  /** Returns false (after recording a problem) when `key` was seen already. */
  check(key: string, path: string): boolean {
    const prev = this.first.get(key);
    if (prev !== undefined) {
      this.problems.add(path, `duplicate ${this.what} ${JSON.stringify(key)}; first used at ${prev}`);
      return false;
    }
    this.first.set(key, path);
    return true;
  }

  /** Where `key` was first used, if it was. */
  where(key: string): string | undefined {
    return this.first.get(key);
  }
}
