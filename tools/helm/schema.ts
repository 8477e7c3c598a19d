/**
 * A JSON Schema (draft-07) validator for the keywords our charts' values.schema.json files use.
 * A schema that uses any other keyword is refused when it is loaded, so a constraint is never
 * silently ignored. Every violation is reported at once, with the path of the value
 * (`ztunnel.resources.limits.cpu`) and what was expected.
 */
import { SchemaDefinitionError } from './errors.js';
import { isMap, type GoMap } from './values-model.js';

const ANNOTATIONS = new Set(['$schema', '$id', '$comment', 'title', 'description', 'default', 'examples']);
const KEYWORDS = new Set([
  'type', 'properties', 'additionalProperties', 'required', 'enum', 'const', 'items', 'minItems', 'maxItems', 'uniqueItems',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'pattern', 'definitions', '$ref',
  'anyOf', 'oneOf', 'minProperties',
]);
const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean', 'null']);

type Schema = GoMap;

/**
 * A checked schema, ready to validate values.
 *
 * @example
 * const s = ValuesSchema.load({ type: 'object', additionalProperties: false, properties: { a: { type: 'integer' } } }, 'values.schema.json');
 * s.validate({ a: 'x', b: 1 }); // ['a: expected integer, got string "x"', '(root): additional property "b" is not allowed (allowed: a)']
 */
export class ValuesSchema {
  private constructor(
    private readonly root: Schema,
    private readonly file: string,
  ) {}

  /** Checks the schema itself: known keywords, well-formed values, resolvable `$ref`s. */
  static load(schema: unknown, file: string): ValuesSchema {
    if (!isMap(schema)) throw new SchemaDefinitionError(file, '#', 'the schema must be a JSON object');
    const s = new ValuesSchema(schema, file);
    s.check(schema, '#');
    return s;
  }

  /** Every violation in `value`, each prefixed with its path; empty when valid. */
  validate(value: unknown): string[] {
    const problems: string[] = [];
    this.visit(this.root, value, [], problems);
    return problems;
  }

  private check(s: unknown, at: string): void {
    if (typeof s === 'boolean') return;
    if (!isMap(s)) throw new SchemaDefinitionError(this.file, at, 'a schema must be an object or a boolean');
    for (const [k, v] of Object.entries(s)) {
      if (ANNOTATIONS.has(k)) continue;
      if (!KEYWORDS.has(k)) throw new SchemaDefinitionError(this.file, at, `keyword "${k}" is not supported by this renderer (supported: ${[...KEYWORDS].join(', ')})`);
      switch (k) {
        case 'type': {
          const ts = Array.isArray(v) ? v : [v];
          for (const t of ts) if (typeof t !== 'string' || !TYPES.has(t)) throw new SchemaDefinitionError(this.file, `${at}/type`, `unknown type ${JSON.stringify(t)}`);
          break;
        }
        case 'properties':
        case 'definitions':
          if (!isMap(v)) throw new SchemaDefinitionError(this.file, `${at}/${k}`, 'must be an object');
          for (const [name, sub] of Object.entries(v)) this.check(sub, `${at}/${k}/${name}`);
          break;
        case 'additionalProperties':
        case 'items':
          this.check(v, `${at}/${k}`);
          break;
        case 'anyOf':
        case 'oneOf':
          if (!Array.isArray(v) || v.length === 0) throw new SchemaDefinitionError(this.file, `${at}/${k}`, 'must be a non-empty array');
          v.forEach((sub, i) => this.check(sub, `${at}/${k}/${i}`));
          break;
        case 'required':
          if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new SchemaDefinitionError(this.file, `${at}/required`, 'must be an array of strings');
          break;
        case 'enum':
          if (!Array.isArray(v)) throw new SchemaDefinitionError(this.file, `${at}/enum`, 'must be an array');
          break;
        case 'pattern':
          try {
            new RegExp(String(v), 'u');
          } catch (e) {
            throw new SchemaDefinitionError(this.file, `${at}/pattern`, `does not compile: ${(e as Error).message}`);
          }
          break;
        case '$ref':
          this.resolve(String(v), at);
          break;
        default:
          if (['minItems', 'maxItems', 'minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minProperties'].includes(k) && typeof v !== 'number') {
            throw new SchemaDefinitionError(this.file, `${at}/${k}`, 'must be a number');
          }
      }
    }
  }

  private resolve(ref: string, at: string): unknown {
    const m = /^#\/definitions\/([^/]+)$/.exec(ref);
    const defs = this.root['definitions'];
    if (!m || !isMap(defs) || !(m[1]! in defs)) throw new SchemaDefinitionError(this.file, `${at}/$ref`, `cannot resolve ${JSON.stringify(ref)} (only "#/definitions/NAME" is supported)`);
    return defs[m[1]!];
  }

  private visit(s: unknown, v: unknown, path: Array<string | number>, problems: string[]): void {
    if (s === true) return;
    const where = formatPath(path);
    if (s === false) {
      problems.push(`${where}: no value is allowed here`);
      return;
    }
    const sch = s as Schema;
    if (typeof sch['$ref'] === 'string') this.visit(this.resolve(sch['$ref'], '#'), v, path, problems);
    if (sch['type'] !== undefined) {
      const types = (Array.isArray(sch['type']) ? sch['type'] : [sch['type']]) as string[];
      if (!types.some((t) => hasType(v, t))) {
        problems.push(`${where}: expected ${types.join(' or ')}, got ${describe(v)}`);
        return;
      }
    }
    if (Array.isArray(sch['enum']) && !sch['enum'].some((e) => deepEqual(e, v))) {
      problems.push(`${where}: ${describe(v)} is not one of ${sch['enum'].map((e) => JSON.stringify(e)).join(', ')}`);
    }
    if ('const' in sch && !deepEqual(sch['const'], v)) problems.push(`${where}: must be ${JSON.stringify(sch['const'])}`);
    if (typeof v === 'string') {
      const len = [...v].length;
      if (typeof sch['minLength'] === 'number' && len < sch['minLength']) problems.push(`${where}: "${v}" is shorter than ${sch['minLength']} characters`);
      if (typeof sch['maxLength'] === 'number' && len > sch['maxLength']) problems.push(`${where}: "${v}" is longer than ${sch['maxLength']} characters`);
      if (typeof sch['pattern'] === 'string' && !new RegExp(sch['pattern'], 'u').test(v)) problems.push(`${where}: "${v}" does not match ${sch['pattern']}`);
    }
    if (typeof v === 'number') {
      if (typeof sch['minimum'] === 'number' && v < sch['minimum']) problems.push(`${where}: ${v} is less than the minimum ${sch['minimum']}`);
      if (typeof sch['maximum'] === 'number' && v > sch['maximum']) problems.push(`${where}: ${v} is greater than the maximum ${sch['maximum']}`);
      if (typeof sch['exclusiveMinimum'] === 'number' && v <= sch['exclusiveMinimum']) problems.push(`${where}: ${v} must be greater than ${sch['exclusiveMinimum']}`);
      if (typeof sch['exclusiveMaximum'] === 'number' && v >= sch['exclusiveMaximum']) problems.push(`${where}: ${v} must be less than ${sch['exclusiveMaximum']}`);
    }
    if (Array.isArray(v)) {
      if (typeof sch['minItems'] === 'number' && v.length < sch['minItems']) problems.push(`${where}: needs at least ${sch['minItems']} items, has ${v.length}`);
      if (typeof sch['maxItems'] === 'number' && v.length > sch['maxItems']) problems.push(`${where}: allows at most ${sch['maxItems']} items, has ${v.length}`);
      if (sch['uniqueItems'] === true && v.some((x, i) => v.findIndex((y) => deepEqual(x, y)) !== i)) problems.push(`${where}: items must be unique`);
      if (sch['items'] !== undefined) v.forEach((x, i) => this.visit(sch['items'], x, [...path, i], problems));
    }
    if (isMap(v)) {
      const props = (isMap(sch['properties']) ? sch['properties'] : {}) as Schema;
      for (const r of (sch['required'] as string[] | undefined) ?? []) if (!(r in v)) problems.push(`${where}: missing required property "${r}"`);
      if (typeof sch['minProperties'] === 'number' && Object.keys(v).length < sch['minProperties']) problems.push(`${where}: needs at least ${sch['minProperties']} properties`);
      for (const [k, x] of Object.entries(v)) {
        if (k in props) this.visit(props[k], x, [...path, k], problems);
        else if (sch['additionalProperties'] === false) {
          const known = Object.keys(props);
          const near = closest(k, known);
          problems.push(`${where}: additional property "${k}" is not allowed${near ? ` (did you mean "${near}"?)` : ''}${known.length ? ` (allowed: ${known.join(', ')})` : ''}`);
        } else if (sch['additionalProperties'] !== undefined) this.visit(sch['additionalProperties'], x, [...path, k], problems);
      }
    }
    for (const k of ['anyOf', 'oneOf'] as const) {
      const alts = sch[k];
      if (!Array.isArray(alts)) continue;
      const results = alts.map((alt) => {
        const sub: string[] = [];
        this.visit(alt, v, path, sub);
        return sub;
      });
      const passing = results.filter((r) => r.length === 0).length;
      if (k === 'anyOf' && passing === 0) problems.push(`${where}: matches none of the allowed forms: ${results.map((r) => r.join('; ')).join(' | ')}`);
      if (k === 'oneOf' && passing !== 1) problems.push(`${where}: must match exactly one of the allowed forms, matches ${passing}`);
    }
  }
}

function hasType(v: unknown, t: string): boolean {
  switch (t) {
    case 'object':
      return isMap(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'boolean':
      return typeof v === 'boolean';
    case 'null':
      return v === null;
    default:
      return false;
  }
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'array';
  if (isMap(v)) return 'object';
  if (typeof v === 'number') return `${Number.isInteger(v) ? 'integer' : 'number'} ${v}`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

function formatPath(path: Array<string | number>): string {
  if (path.length === 0) return '(root)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The known key at edit distance 2 or less, for "did you mean". */
function closest(k: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of known) {
    const d = editDistance(k.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j += 1) dp[0]![j] = j;
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      dp[i]![j] = Math.min(dp[i - 1]![j]! + 1, dp[i]![j - 1]! + 1, dp[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return dp[a.length]![b.length]!;
}
