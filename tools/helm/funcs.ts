/**
 * The template functions: Go's text/template built-ins and the part of Helm/Sprig our charts
 * use, each behaving as its Go original does (including where that surprises: `printf "%d"` of a
 * float64 value prints `%!d(float64=...)`, `quote` of nil is empty, `toYaml` drops the final
 * newline). `lookup` is refused: it needs a cluster, and `helm template` would silently return an
 * empty map. A function not listed here is an error at the call site, never a silent no-op.
 */
import { createHash } from 'node:crypto';
import { dump, YAML11_SCHEMA } from 'js-yaml';
import { FailSignal, type CallContext, type TemplateFunc } from './engine.js';
import { GoMethod, formatValue, goType, isMap, isNil, toPlain, truthy, type GoMap } from './values-model.js';

/** Every function a template may call. */
export function helmFuncs(): ReadonlyMap<string, TemplateFunc> {
  const f = new Map<string, TemplateFunc>();
  const def = (name: string, fn: (...args: unknown[]) => unknown, arity?: number | [number, number]): void => {
    f.set(name, (_ctx, ...args) => {
      checkArity(name, args.length, arity);
      return fn(...args);
    });
  };

  // Go's built-ins (and/or are in the engine: they short-circuit).
  def('not', (v) => !truthy(v), 1);
  def('len', (v) => {
    if (typeof v === 'string') return BigInt(Buffer.byteLength(v));
    if (Array.isArray(v)) return BigInt(v.length);
    if (isMap(v)) return BigInt(Object.keys(v).length);
    throw new Error(`len of ${goType(v)}`);
  }, 1);
  def('index', (v, ...keys) => {
    let cur = v;
    for (const k of keys) {
      if (Array.isArray(cur) || typeof cur === 'string') {
        const i = toInt(k, 'index');
        if (i < 0 || i >= cur.length) throw new Error(`index out of range: ${i}`);
        cur = Array.isArray(cur) ? cur[Number(i)] : BigInt(Buffer.from(cur)[Number(i)]!);
      } else if (isMap(cur)) {
        if (typeof k !== 'string') throw new Error(`value has type ${goType(k)}; should be string`);
        cur = Object.prototype.hasOwnProperty.call(cur, k) ? cur[k] : null;
      } else if (isNil(cur)) {
        throw new Error('index of untyped nil');
      } else {
        throw new Error(`can't index item of type ${goType(cur)}`);
      }
    }
    return cur;
  });
  def('print', (...args) => goPrint(args));
  def('println', (...args) => `${args.map((a) => formatValue(a)).join(' ')}\n`);
  def('printf', (format, ...args) => sprintf(str(format, 'printf'), args));
  def('eq', (a, ...bs) => {
    if (bs.length === 0) throw new Error('missing argument for comparison');
    return bs.some((b) => compare(a, b, 'eq') === 0);
  });
  def('ne', (a, b) => compare(a, b, 'ne') !== 0, 2);
  def('lt', (a, b) => ordered(a, b, 'lt') < 0, 2);
  def('le', (a, b) => ordered(a, b, 'le') <= 0, 2);
  def('gt', (a, b) => ordered(a, b, 'gt') > 0, 2);
  def('ge', (a, b) => ordered(a, b, 'ge') >= 0, 2);

  // Sprig: defaults and logic.
  def('default', (d, ...given) => (given.length === 0 || isEmpty(given[0]) ? d : given[0]), [1, 2]);
  def('empty', (v) => isEmpty(v), 1);
  def('coalesce', (...vs) => vs.find((v) => !isEmpty(v)) ?? null);
  def('ternary', (a, b, c) => (c === true ? a : b), 3);
  def('required', (msg, v) => {
    if (isNil(v) || v === '') throw new FailSignal(str(msg, 'required'));
    return v;
  }, 2);
  def('fail', (msg) => {
    throw new FailSignal(str(msg, 'fail'));
  }, 1);

  // Strings.
  def('quote', (...vs) => vs.filter((v) => !isNil(v)).map((v) => goQuote(toStr(v))).join(' '));
  def('squote', (...vs) => vs.filter((v) => !isNil(v)).map((v) => `'${toStr(v)}'`).join(' '));
  def('toString', (v) => toStr(v), 1);
  def('trim', (s) => toStr(s).trim(), 1);
  def('trimSuffix', (suffix, s) => {
    const a = toStr(suffix);
    const b = toStr(s);
    return a !== '' && b.endsWith(a) ? b.slice(0, b.length - a.length) : b;
  }, 2);
  def('trimPrefix', (prefix, s) => {
    const a = toStr(prefix);
    const b = toStr(s);
    return a !== '' && b.startsWith(a) ? b.slice(a.length) : b;
  }, 2);
  def('trunc', (n, s) => {
    const c = Number(toInt(n, 'trunc'));
    const v = toStr(s);
    if (c < 0) return v.length + c < 0 ? v : v.slice(v.length + c);
    return v.length > c ? v.slice(0, c) : v;
  }, 2);
  def('upper', (s) => toStr(s).toUpperCase(), 1);
  def('lower', (s) => toStr(s).toLowerCase(), 1);
  def('replace', (old, nw, s) => toStr(s).split(toStr(old)).join(toStr(nw)), 3);
  def('contains', (sub, s) => toStr(s).includes(toStr(sub)), 2);
  def('hasPrefix', (p, s) => toStr(s).startsWith(toStr(p)), 2);
  def('hasSuffix', (p, s) => toStr(s).endsWith(toStr(p)), 2);
  def('join', (sep, l) => {
    if (isNil(l)) return '';
    if (!Array.isArray(l)) return toStr(l);
    return l.filter((x) => !isNil(x)).map(toStr).join(toStr(sep));
  }, 2);
  def('indent', (n, s) => indent(Number(toInt(n, 'indent')), toStr(s)), 2);
  def('nindent', (n, s) => `\n${indent(Number(toInt(n, 'nindent')), toStr(s))}`, 2);
  def('b64enc', (s) => Buffer.from(toStr(s)).toString('base64'), 1);
  def('b64dec', (s) => Buffer.from(toStr(s), 'base64').toString('utf8'), 1);
  def('sha256sum', (s) => createHash('sha256').update(toStr(s)).digest('hex'), 1);

  // Numbers (Sprig's arithmetic works on int64).
  def('int', (v) => toInt(v, 'int'), 1);
  def('int64', (v) => toInt(v, 'int64'), 1);
  def('float64', (v) => Number(typeof v === 'bigint' ? v : toNumber(v)), 1);
  def('add', (...vs) => vs.reduce<bigint>((a, b) => a + toInt(b, 'add'), 0n));
  def('sub', (a, b) => toInt(a, 'sub') - toInt(b, 'sub'), 2);
  def('mul', (...vs) => vs.reduce<bigint>((a, b) => a * toInt(b, 'mul'), 1n));
  def('div', (a, b) => {
    const d = toInt(b, 'div');
    if (d === 0n) throw new Error('integer divide by zero');
    return toInt(a, 'div') / d;
  }, 2);
  def('max', (...vs) => vs.map((v) => toInt(v, 'max')).reduce((a, b) => (b > a ? b : a)));
  def('min', (...vs) => vs.map((v) => toInt(v, 'min')).reduce((a, b) => (b < a ? b : a)));

  // Lists and dicts.
  def('list', (...vs) => vs);
  def('dict', (...kv) => {
    const out: GoMap = {};
    for (let i = 0; i < kv.length; i += 2) out[toStr(kv[i])] = i + 1 < kv.length ? kv[i + 1] : '';
    return out;
  });
  def('hasKey', (m, k) => isMap(m) && Object.prototype.hasOwnProperty.call(m, toStr(k)), 2);
  def('get', (m, k) => (isMap(m) && Object.prototype.hasOwnProperty.call(m, toStr(k)) ? m[toStr(k)] : ''), 2);
  def('set', (m, k, v) => {
    if (!isMap(m)) throw new Error(`set on ${goType(m)}`);
    m[toStr(k)] = v;
    return m;
  }, 3);
  def('keys', (...ms) => ms.flatMap((m) => (isMap(m) ? Object.keys(m) : [])));
  def('sortAlpha', (l) => (Array.isArray(l) ? l.map(toStr).sort() : [toStr(l)]), 1);
  def('first', (l) => (Array.isArray(l) && l.length > 0 ? l[0] : null), 1);
  def('last', (l) => (Array.isArray(l) && l.length > 0 ? l[l.length - 1] : null), 1);
  def('has', (needle, l) => Array.isArray(l) && l.some((x) => compareLoose(x, needle)), 2);
  def('concat', (...ls) => ls.flatMap((l) => (Array.isArray(l) ? l : [])));
  def('merge', (dst, ...srcs) => mergeInto(asMap(dst, 'merge'), srcs.map((s) => asMap(s, 'merge')), false));
  def('mergeOverwrite', (dst, ...srcs) => mergeInto(asMap(dst, 'mergeOverwrite'), srcs.map((s) => asMap(s, 'mergeOverwrite')), true));
  def('deepCopy', (v) => structuredClone(v), 1);
  def('kindIs', (kind, v) => kindOf(v) === toStr(kind), 2);
  def('kindOf', (v) => kindOf(v), 1);

  // Encoding.
  def('toYaml', (v) => toYaml(v), 1);
  def('toJson', (v) => JSON.stringify(toPlain(v)), 1);

  // Helm's own.
  f.set('include', (ctx: CallContext, ...args) => {
    checkArity('include', args.length, 2);
    return ctx.engine.executeDefine(str(args[0], 'include'), args[1], ctx);
  });
  f.set('tpl', (ctx: CallContext, ...args) => {
    checkArity('tpl', args.length, 2);
    return ctx.engine.executeText(str(args[0], 'tpl'), args[1], ctx);
  });
  f.set('lookup', () => {
    throw new FailSignal('lookup is not supported: it needs a live cluster (helm template returns an empty map there); charts here must not depend on it');
  });
  return f;
}

function checkArity(name: string, got: number, arity: number | [number, number] | undefined): void {
  if (arity === undefined) return;
  const [lo, hi] = typeof arity === 'number' ? [arity, arity] : arity;
  if (got < lo || got > hi) throw new Error(`wrong number of args for ${name}: want ${lo === hi ? lo : `${lo} to ${hi}`} got ${got}`);
}

/** Sprig's `empty`: nil, false, 0, "" and empty collections. */
export function isEmpty(v: unknown): boolean {
  return !truthy(v);
}

/** Sprig's strval. */
export function toStr(v: unknown): string {
  if (typeof v === 'string') return v;
  return formatValue(v);
}

function str(v: unknown, fn: string): string {
  if (typeof v !== 'string') throw new Error(`${fn} expects a string, got ${goType(v)}`);
  return v;
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const n = Number(v);
    return Number.isFinite(n) && v.trim() !== '' ? n : 0;
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  return 0;
}

/** Sprig's toInt64: strings are parsed, anything unparsable is 0 (as in Sprig). */
function toInt(v: unknown, fn: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`${fn}: ${v} is not a finite number`);
    return BigInt(Math.trunc(v));
  }
  return BigInt(Math.trunc(toNumber(v)));
}

function asMap(v: unknown, fn: string): GoMap {
  if (!isMap(v)) throw new Error(`${fn} expects dicts, got ${goType(v)}`);
  return v;
}

/** mergo: `dst` wins unless `overwrite`; nested dicts are merged, not replaced. */
function mergeInto(dst: GoMap, srcs: GoMap[], overwrite: boolean): GoMap {
  for (const src of srcs) {
    for (const [k, v] of Object.entries(src)) {
      const cur = dst[k];
      if (isMap(cur) && isMap(v)) mergeInto(cur, [v], overwrite);
      else if (overwrite ? !isEmpty(v) || !(k in dst) : isEmpty(cur)) dst[k] = isMap(v) ? structuredClone(v) : v;
    }
  }
  return dst;
}

function kindOf(v: unknown): string {
  if (isNil(v)) return 'invalid';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return 'float64';
  if (typeof v === 'bigint') return 'int64';
  if (Array.isArray(v)) return 'slice';
  if (v instanceof GoMethod) return 'func';
  return 'map';
}

/** Sprig's indent: every line, empty ones included, gets the pad. */
function indent(n: number, s: string): string {
  const pad = ' '.repeat(Math.max(0, n));
  return pad + s.split('\n').join(`\n${pad}`);
}

type Kind = 'bool' | 'int' | 'float' | 'string' | 'nil' | 'other';

function basicKind(v: unknown): Kind {
  if (isNil(v)) return 'nil';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'number') return 'float';
  if (typeof v === 'string') return 'string';
  return 'other';
}

/** Go's eq/ne: same basic kind or an error ("incompatible types for comparison"); nil equals only nil. */
function compare(a: unknown, b: unknown, fn: string): number {
  const ka = basicKind(a);
  const kb = basicKind(b);
  if (ka === 'other' || kb === 'other') throw new Error(`${fn}: non-comparable type ${goType(ka === 'other' ? a : b)}`);
  if (ka === 'nil' || kb === 'nil') return ka === kb ? 0 : 1;
  if (ka !== kb) throw new Error(`${fn}: incompatible types for comparison (${goType(a)} and ${goType(b)}; values from values.yaml are float64: use int, or compare with a float)`);
  return a === b ? 0 : 1;
}

function ordered(a: unknown, b: unknown, fn: string): number {
  const ka = basicKind(a);
  const kb = basicKind(b);
  if (ka !== kb || !['int', 'float', 'string'].includes(ka)) throw new Error(`${fn}: incompatible types for comparison (${goType(a)} and ${goType(b)})`);
  const x = a as string | number | bigint;
  const y = b as string | number | bigint;
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareLoose(a: unknown, b: unknown): boolean {
  return basicKind(a) === basicKind(b) && a === b;
}

/** fmt.Sprint: spaces between operands when neither is a string. */
function goPrint(args: unknown[]): string {
  let out = '';
  args.forEach((a, i) => {
    if (i > 0 && typeof a !== 'string' && typeof args[i - 1] !== 'string') out += ' ';
    out += formatValue(a);
  });
  return out;
}

/** strconv.Quote. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c === 7) out += '\\a';
    else if (c === 8) out += '\\b';
    else if (c === 12) out += '\\f';
    else if (c === 11) out += '\\v';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** fmt.Sprintf for %s %v %d %q %t %x %f and %%, with Go's `%!verb(type=value)` for a mismatch. */
export function sprintf(format: string, args: unknown[]): string {
  let out = '';
  let n = 0;
  for (let i = 0; i < format.length; i += 1) {
    const c = format[i];
    if (c !== '%') {
      out += c;
      continue;
    }
    const m = /^([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])/.exec(format.slice(i + 1));
    if (!m) {
      out += '%!(NOVERB)';
      break;
    }
    i += m[0].length;
    const [, flags, width, prec, verb] = m as unknown as [string, string, string, string | undefined, string];
    if (verb === '%') {
      out += '%';
      continue;
    }
    if (n >= args.length) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    const a = args[n];
    n += 1;
    const bad = (): string => `%!${verb}(${goType(a)}=${formatValue(a)})`;
    let s: string;
    switch (verb) {
      case 'v':
        s = formatValue(a);
        break;
      case 's':
        s = typeof a === 'string' ? a : typeof a === 'bigint' || typeof a === 'number' || typeof a === 'boolean' || isNil(a) ? bad() : formatValue(a);
        break;
      case 'q':
        s = typeof a === 'string' ? goQuote(a) : bad();
        break;
      case 'd':
        s = typeof a === 'bigint' ? a.toString() : bad();
        break;
      case 't':
        s = typeof a === 'boolean' ? String(a) : bad();
        break;
      case 'x':
        s = typeof a === 'bigint' ? a.toString(16) : typeof a === 'string' ? Buffer.from(a).toString('hex') : bad();
        break;
      case 'f':
        s = typeof a === 'number' ? a.toFixed(prec === undefined ? 6 : Number(prec)) : bad();
        break;
      default:
        s = bad();
    }
    const w = width === '' ? 0 : Number(width);
    if (s.length < w) s = flags.includes('-') ? s.padEnd(w) : s.padStart(w, flags.includes('0') && verb === 'd' ? '0' : ' ');
    out += s;
  }
  if (n < args.length) out += `%!(EXTRA ${args.slice(n).map((a) => `${goType(a)}=${formatValue(a)}`).join(', ')})`;
  return out;
}

/**
 * Helm's toYaml: keys sorted, sequences not indented under their key (as sigs.k8s.io/yaml writes
 * them), strings that YAML 1.1 would read as something else quoted, no trailing newline.
 */
export function toYaml(v: unknown): string {
  const text = dump(toPlain(v), { schema: YAML11_SCHEMA, sortKeys: true, seqNoIndent: true, lineWidth: -1, noRefs: true, quoteStyle: 'double' });
  return text.replace(/\n$/, '');
}
