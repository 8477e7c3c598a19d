/**
 * The mesh's one regular-expression engine for user-supplied patterns: HTTPRoute
 * `RegularExpression` path/header/query matches, VirtualService `regex` matches and the
 * AuthorizationPolicy path templates `{*}` / `{**}`.
 *
 * Gateway API and Istio define these as RE2 (Envoy's `safe_regex`), matched against the whole
 * value. We use `re2js`, a pure-JS port of RE2/J: matching is linear in the input (no
 * backtracking), so no pattern can stall the shared waypoint, which V8's `RegExp` could
 * (`(a+)+$` on 26 characters took 600 ms, doubling per character). Whole-value matching is the
 * engine's own anchored match (`testExact`, RE2's ANCHOR_BOTH), never a `^(?:...)$` wrapper: a
 * malformed pattern such as `/admin)|(/x` would escape such a wrapper and then match more than
 * written; here it fails to parse and is rejected.
 *
 * Rejected, each with an `InvalidRegexError` naming the reason: syntax errors, everything RE2
 * does not have (lookahead, lookbehind, backreferences, possessive quantifiers, `\Z`, ...), and
 * programs larger than Istio allows Envoy (`MAX_REGEX_PROGRAM_SIZE`).
 */
import { RE2JS, RE2JSException, RE2JSSyntaxException } from 're2js';
import { MeshError } from '../errors.js';

/**
 * Largest compiled RE2 program accepted: Istio sets Envoy's `re2.max_program_size.error_level`
 * to 32768 in every proxy's bootstrap, so this is what an Istio user can already write. Matching
 * costs O(program size × input length), so the cap also bounds the per-request work.
 */
export const MAX_REGEX_PROGRAM_SIZE = 32_768;

/**
 * Compiled patterns kept (least recently used evicted). Patterns come from config, so this only
 * bounds memory when config churns through many distinct ones; evicted ones are recompiled.
 */
export const REGEX_CACHE_SIZE = 10_000;

/** A pattern that does not compile as RE2, uses a feature RE2 lacks, or is too large. */
export class InvalidRegexError extends MeshError {
  readonly pattern: string;
  readonly reason: string;
  constructor(pattern: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_INVALID_REGEX', `${JSON.stringify(pattern)} is not a valid regular expression: ${reason}`, options);
    this.pattern = pattern;
    this.reason = reason;
  }
}

/** A compiled user pattern. */
export interface UserRegex {
  readonly source: string;
  /** Whether the pattern matches all of `input` (RE2 full match). */
  fullMatch(input: string): boolean;
}

const LOOKAROUND = ['(?=', '(?!', '(?<=', '(?<!'];

/** Why RE2 refused `source`, in terms a user can act on. */
function reasonOf(source: string, e: unknown): string {
  if (e instanceof RE2JSSyntaxException) {
    const at = e.getPattern() ?? '';
    if (LOOKAROUND.some((l) => at.startsWith(l))) {
      return `lookaround ${at.slice(0, at.startsWith('(?<') ? 4 : 3)} is not supported; matches use RE2 syntax, which has no lookahead or lookbehind`;
    }
    if (/^\\([1-9]|k)/.test(at)) {
      return `backreference ${at.slice(0, 2)} is not supported; matches use RE2 syntax, which has no backreferences`;
    }
    const what = e.getDescription();
    return at && at !== source ? `${what} at \`${at}\` (matches use RE2 syntax)` : `${what} (matches use RE2 syntax)`;
  }
  if (e instanceof RE2JSException) return `${e.message} (matches use RE2 syntax)`;
  throw e;
}

class Compiled implements UserRegex {
  constructor(
    readonly source: string,
    private readonly re: RE2JS,
  ) {}
  fullMatch(input: string): boolean {
    return this.re.testExact(input);
  }
}

// Insertion order is recency: a hit is moved to the end, the first entry is the eviction victim.
// Failures are cached too, so a bad pattern that reaches a matcher is not re-parsed per request.
const cache = new Map<string, UserRegex | InvalidRegexError>();

function remember(key: string, v: UserRegex | InvalidRegexError): void {
  if (cache.size >= REGEX_CACHE_SIZE) cache.delete(cache.keys().next().value!);
  cache.set(key, v);
}

function cached(key: string, build: () => UserRegex): UserRegex {
  let v = cache.get(key);
  if (v !== undefined) {
    cache.delete(key);
    cache.set(key, v);
  } else {
    try {
      v = build();
    } catch (e) {
      if (!(e instanceof InvalidRegexError)) throw e;
      v = e;
    }
    remember(key, v);
  }
  if (v instanceof InvalidRegexError) throw v;
  return v;
}

function compileRe2(source: string, maxProgramSize: number): UserRegex {
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (e) {
    throw new InvalidRegexError(source, reasonOf(source, e), { cause: e });
  }
  const size = re.programSize();
  if (size > maxProgramSize) {
    throw new InvalidRegexError(source, `too large: its RE2 program has ${size} instructions, more than ${maxProgramSize}; simplify it`);
  }
  return new Compiled(source, re);
}

/**
 * Compiles a user pattern with RE2 syntax, for full-value matching (cached).
 * @throws InvalidRegexError when it does not compile, uses a feature RE2 lacks, or is too large.
 * @example
 * compileRegex('/api/v[0-9]+/.*').fullMatch('/api/v2/users') // true
 */
export function compileRegex(source: string): UserRegex {
  return cached(`r:${source}`, () => compileRe2(source, MAX_REGEX_PROGRAM_SIZE));
}

/** Why `source` is not an acceptable pattern, or undefined when it is (for config validation). */
export function regexProblem(source: string): string | undefined {
  try {
    compileRegex(source);
    return undefined;
  } catch (e) {
    if (e instanceof InvalidRegexError) return e.message;
    throw e;
  }
}

/**
 * Whether `source` matches all of `input`. A pattern that does not compile matches nothing:
 * validation rejects those before they reach a matcher, so this only guards the hot path.
 */
export function regexFullMatch(source: string, input: string): boolean {
  try {
    return compileRegex(source).fullMatch(input);
  } catch (e) {
    if (e instanceof InvalidRegexError) return false;
    throw e;
  }
}

/**
 * The matcher for an Istio AuthorizationPolicy path template: `{*}` is one path segment
 * (`[^/]+`), `{**}` is the rest (one or more of any character, `/` included), everything else is
 * literal. Compiled to RE2 with every literal quoted, so it always compiles and matches in linear
 * time however many `{**}` it holds. Not subject to `MAX_REGEX_PROGRAM_SIZE`: the program grows
 * with the template's length only, like a literal path would.
 */
export function compilePathTemplate(template: string): UserRegex {
  return cached(`t:${template}`, () => {
    const src = template
      .split(/(\{\*\*\}|\{\*\})/)
      .map((part) => (part === '{**}' ? '(?s:.+)' : part === '{*}' ? '[^/]+' : part === '' ? '' : RE2JS.quote(part)))
      .join('');
    const re = compileRe2(src, Number.POSITIVE_INFINITY);
    return { source: template, fullMatch: (input) => re.fullMatch(input) };
  });
}
