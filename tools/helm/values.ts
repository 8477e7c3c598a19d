/**
 * Values as Helm builds them: the chart's values.yaml, then each `-f` file, then each `--set`,
 * later ones winning. Maps merge key by key; lists and scalars are replaced; a `null` deletes the
 * key it overrides (Helm's way to drop a default).
 */
import { load, YAML11_SCHEMA } from 'js-yaml';
import { ValuesInputError } from './errors.js';
import { isMap, type GoMap } from './values-model.js';

/**
 * Parses a values document (YAML 1.1, as Helm's YAML library reads it: `yes`/`no` are booleans).
 * An empty document is `{}`.
 *
 * @example
 * parseValuesYaml('a: {b: 1}', 'my-values.yaml'); // { a: { b: 1 } }
 */
export function parseValuesYaml(text: string, source: string): GoMap {
  if (text.trim() === '' || text.split('\n').every((l) => /^\s*(#.*)?$/.test(l))) return {};
  let v: unknown;
  try {
    v = load(text, { schema: YAML11_SCHEMA, filename: source });
  } catch (e) {
    throw new ValuesInputError(source, `not valid YAML: ${(e as Error).message}`);
  }
  if (v === null || v === undefined) return {};
  if (!isMap(v)) throw new ValuesInputError(source, `the top level must be a map of values, got ${Array.isArray(v) ? 'a list' : typeof v}`);
  return v;
}

/**
 * Returns `base` with `over` merged in (neither is modified): maps recursively, everything else
 * replaced, `null` removing the key.
 *
 * @example
 * coalesce({ image: { hub: 'a', tag: '1' } }, { image: { tag: '2' } }); // { image: { hub: 'a', tag: '2' } }
 */
export function coalesce(base: GoMap, over: GoMap): GoMap {
  const out: GoMap = structuredClone(base);
  for (const [k, v] of Object.entries(over)) {
    if (v === null) {
      delete out[k];
      continue;
    }
    const cur = out[k];
    out[k] = isMap(cur) && isMap(v) ? coalesce(cur, v) : structuredClone(v);
  }
  return out;
}

/**
 * Parses one `--set` argument into a values map, as Helm's strvals does for the forms charts
 * need: `a.b=c`, several pairs separated by commas, list items `a[0]=x` and `a[1].b=y`, `\,` and
 * `\.` escapes, and typed values (`true`/`false`, `null`, integers; everything else a string).
 * Use `--set-string` semantics with `asString`.
 *
 * @example
 * parseSetArg('image.tag=1.2,replicaCount=3'); // { image: { tag: '1.2' }, replicaCount: 3 }
 */
export function parseSetArg(arg: string, asString = false, into: GoMap = {}): GoMap {
  const source = `--set ${arg}`;
  for (const pair of splitUnescaped(arg, ',')) {
    if (pair === '') continue;
    const eq = indexUnescaped(pair, '=');
    if (eq === -1) throw new ValuesInputError(source, `key "${unescape(pair)}" has no value (expected key=value)`);
    const keyText = pair.slice(0, eq);
    const raw = unescape(pair.slice(eq + 1));
    const path = parseKeyPath(keyText, source);
    setPath(into, path, asString ? raw : typedValue(raw), source);
  }
  return into;
}

type Seg = { key: string } | { index: number };

function parseKeyPath(text: string, source: string): Seg[] {
  const segs: Seg[] = [];
  for (const part of splitUnescaped(text, '.')) {
    const m = /^((?:[^[\]\\]|\\.)*)((?:\[\d+\])*)$/.exec(part);
    if (!m || (m[1] === '' && m[2] === '')) throw new ValuesInputError(source, `bad key ${JSON.stringify(text)} (expected a.b.c or a[0].b)`);
    if (m[1] !== '') segs.push({ key: unescape(m[1]!) });
    else if (segs.length === 0) throw new ValuesInputError(source, `bad key ${JSON.stringify(text)}: an index needs a list name before it`);
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) {
      const n = Number(idx[1]);
      if (n > 65536) throw new ValuesInputError(source, `index ${n} in ${JSON.stringify(text)} is too large`);
      segs.push({ index: n });
    }
  }
  return segs;
}

function setPath(root: GoMap, path: Seg[], value: unknown, source: string): void {
  let cur: unknown = root;
  for (let i = 0; i < path.length; i += 1) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    const next = path[i + 1];
    const fresh = (): unknown => (next && 'index' in next ? [] : {});
    if ('key' in seg) {
      if (!isMap(cur)) throw new ValuesInputError(source, `${seg.key}: the value before it is not a map`);
      if (last) cur[seg.key] = value;
      else {
        const child = cur[seg.key];
        const wantList = next !== undefined && 'index' in next;
        if (wantList ? !Array.isArray(child) : !isMap(child)) cur[seg.key] = fresh();
        cur = cur[seg.key];
      }
    } else {
      if (!Array.isArray(cur)) throw new ValuesInputError(source, `[${seg.index}]: the value before it is not a list`);
      while (cur.length <= seg.index) cur.push(null);
      if (last) cur[seg.index] = value;
      else {
        const child = cur[seg.index];
        const wantList = next !== undefined && 'index' in next;
        if (wantList ? !Array.isArray(child) : !isMap(child)) cur[seg.index] = fresh();
        cur = cur[seg.index];
      }
    }
  }
}

/** strvals' typedVal: booleans, null and 64-bit integers; a leading zero keeps a string ("0755"). */
function typedValue(v: string): unknown {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (v === 'null') return null;
  if (v === '0') return 0;
  if (/^-?[1-9]\d*$/.test(v)) {
    const n = Number(v);
    if (Number.isSafeInteger(n)) return n;
  }
  return v;
}

function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i += 1) {
    if (s[i] === '\\' && i + 1 < s.length) {
      cur += s[i]! + s[i + 1]!;
      i += 1;
    } else if (s[i] === sep) {
      out.push(cur);
      cur = '';
    } else cur += s[i];
  }
  out.push(cur);
  return out;
}

function indexUnescaped(s: string, ch: string): number {
  for (let i = 0; i < s.length; i += 1) {
    if (s[i] === '\\') i += 1;
    else if (s[i] === ch) return i;
  }
  return -1;
}

function unescape(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}
