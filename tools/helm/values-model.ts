/**
 * How template values behave, following Go. Values from YAML/JSON (chart values, `--set`) are
 * JavaScript numbers and stand for Go's float64, as they do in Helm; integer literals in templates
 * and the results of `int`, `len`, `add`... are bigints and stand for Go's int64. The difference
 * shows where it shows in Helm: `eq .Values.replicas 1` is an error (float64 vs int), and a
 * float64 of a million prints as `1e+06` (use `int` or `toYaml`).
 */

export type GoMap = { [k: string]: unknown };

/** A method on a built-in object (`.Capabilities.APIVersions.Has`, `.Files.Get`). */
export class GoMethod {
  constructor(
    readonly name: string,
    readonly fn: (...args: unknown[]) => unknown,
  ) {}
}

export function isMap(v: unknown): v is GoMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof GoMethod);
}

export function isNil(v: unknown): v is null | undefined {
  return v === null || v === undefined;
}

/** Go template truth: false, 0, nil, and empty strings, lists and maps are false. */
export function truthy(v: unknown): boolean {
  if (isNil(v)) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'bigint') return v !== 0n;
  if (typeof v === 'string') return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (isMap(v)) return Object.keys(v).length > 0;
  return true;
}

/** Go's name for a value's type, for error messages. */
export function goType(v: unknown): string {
  if (isNil(v)) return 'nil';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return 'float64';
  if (typeof v === 'bigint') return 'int';
  if (Array.isArray(v)) return '[]interface {}';
  if (v instanceof GoMethod) return 'method';
  return 'map[string]interface {}';
}

/**
 * fmt's `%v` of a float64: strconv's `%g` with the shortest digits, which switches to exponent
 * form when the exponent is below -4 or at least 6 (so a million prints as `1e+06`, Helm's
 * well-known surprise with large numbers in values).
 */
export function formatFloat(f: number): string {
  if (Number.isNaN(f)) return 'NaN';
  if (f === Infinity) return '+Inf';
  if (f === -Infinity) return '-Inf';
  if (f === 0) return Object.is(f, -0) ? '-0' : '0';
  const [mant, e] = f.toExponential().split('e') as [string, string];
  const exp = Number(e);
  if (exp < -4 || exp >= 6) {
    const abs = Math.abs(exp);
    return `${mant}e${exp < 0 ? '-' : '+'}${abs < 10 ? '0' : ''}${abs}`;
  }
  return String(f);
}

/** fmt's `%v` of a value, as `{{ . }}` and `print` show it. nil is `<no value>` in template output. */
export function formatValue(v: unknown, nilText = '<nil>'): string {
  if (isNil(v)) return nilText;
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return formatFloat(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map((x) => formatValue(x)).join(' ')}]`;
  if (v instanceof GoMethod) return `<method ${v.name}>`;
  if (isMap(v)) {
    return `map[${Object.keys(v)
      .sort()
      .map((k) => `${k}:${formatValue(v[k])}`)
      .join(' ')}]`;
  }
  return String(v);
}

/** Replaces Go ints (bigint) by numbers, so the value can be written as YAML or JSON. */
export function toPlain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(toPlain);
  if (isMap(v)) {
    const out: GoMap = {};
    for (const [k, x] of Object.entries(v)) out[k] = toPlain(x);
    return out;
  }
  if (v === undefined) return null;
  return v;
}
