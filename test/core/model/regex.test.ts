/**
 * core/model/regex.ts: RE2 semantics for every user-supplied pattern (full match by the engine,
 * linear time), the patterns it rejects and why, the path templates, the bounded cache.
 *
 * The pathological inputs are long enough that a backtracking engine would not finish within
 * tap's timeout (`(a+)+$` doubles per character: 600 ms at 26 characters under V8's RegExp, so
 * 64 characters would take ~10^14 s); the tests assert the result only, never a time.
 */
import t from 'tap';
import {
  InvalidRegexError,
  MAX_REGEX_PROGRAM_SIZE,
  REGEX_CACHE_SIZE,
  compilePathTemplate,
  compileRegex,
  regexFullMatch,
  regexProblem,
} from '../../../core/model/regex.js';
import { requestMatches } from '../../../core/model/routes.js';

t.test('RE2 semantics: full match, anchors, classes, alternation, flags', async (t) => {
  // [pattern, input, expected]
  const table: [string, string, boolean][] = [
    ['/api', '/api', true],
    ['/api', '/api/v1', false], // full match: no implicit prefix match
    ['/api', 'x/api', false], // ... and no implicit suffix match
    ['/api/.*', '/api/v1/users', true],
    ['/v[0-9]+/users', '/v12/users', true],
    ['/v[0-9]+/users', '/vx/users', false],
    ['a|ab', 'ab', true], // the engine's anchored match tries every alternative, not the leftmost-first one only
    ['a|ab', 'abc', false],
    ['^/a$', '/a', true], // explicit anchors are harmless
    ['/a$', '/a\n', false], // $ is end of text in RE2 (no multiline)
    ['\\d{3}', '123', true],
    ['\\d{3}', '1234', false],
    ['[[:alpha:]]+', 'abc', true], // POSIX classes are RE2
    ['\\pL+', 'héllo', true], // Unicode classes
    ['(?i)Bearer .+', 'bearer x', true], // inline flags
    ['\\Q/a.b\\E', '/a.b', true], // literal quoting
    ['\\Q/a.b\\E', '/axb', false],
    ['.', '\n', false], // dot excludes newline unless (?s)
    ['(?s).', '\n', true],
    ['(?P<ver>v[12])', 'v2', true], // named groups
    ['', '', true],
    ['', 'x', false],
    ['(a+)+$', 'a'.repeat(64), true],
    ['(a+)+$', '/' + 'a'.repeat(64) + '!', false], // catastrophic under backtracking; linear in RE2
    ['(x+x+)+y', 'x'.repeat(5000), false],
    ['(.*a){12}', 'a'.repeat(5000) + 'b', false],
  ];
  for (const [pattern, input, want] of table) {
    t.equal(compileRegex(pattern).fullMatch(input), want, `${JSON.stringify(pattern)} on ${JSON.stringify(input.length > 20 ? input.slice(0, 20) + '...' : input)}`);
    t.equal(regexFullMatch(pattern, input), want);
  }
});

t.test('route matches use the engine: a pathological regex answers, a long header too', async (t) => {
  const m = {
    path: { type: 'RegularExpression' as const, value: '(a+)+$' },
    headers: [{ name: 'x-id', type: 'RegularExpression' as const, value: '(x+x+)+y' }],
    queryParams: [],
  };
  const req = (path: string, id: string) => ({ method: 'GET', path, headers: { 'x-id': id }, query: new URLSearchParams() });
  t.notOk(requestMatches(m, req('/' + 'a'.repeat(64) + '!', 'xy')), 'path does not match (and the call returns)');
  t.notOk(requestMatches(m, req('a'.repeat(64), 'x'.repeat(8000))), 'header does not match (and the call returns)');
  t.ok(requestMatches(m, req('a'.repeat(64), 'x'.repeat(8000) + 'y')), 'both match');
});

t.test('rejected: malformed, non-RE2 features, too large; each says why', async (t) => {
  // [pattern, what the reason must say]
  const table: [string, RegExp][] = [
    // With ^(?:...)$ string-wrapping this would have compiled as `^(?:/admin)|(/x)$`, i.e. "starts with /admin".
    ['/admin)|(/x', /unexpected \)/],
    ['/(unclosed', /missing closing \)/],
    ['[a-z', /missing closing \]/],
    ['*x', /missing argument to repetition operator/],
    ['(?=/admin)/.*', /lookaround \(\?= is not supported.*no lookahead or lookbehind/],
    ['/(?!admin).*', /lookaround \(\?! is not supported/],
    ['(?<=/a)b', /lookaround \(\?<= is not supported/],
    ['(?<!/a)b', /lookaround \(\?<! is not supported/],
    ['(a)\\1', /backreference \\1 is not supported.*no backreferences/],
    ['(?<n>a)\\k<n>', /backreference \\k is not supported/],
    ['a++', /invalid nested repetition operator at `\+\+`/],
    ['/a\\Z', /invalid escape sequence at `\\Z`/],
    ['a{1001}', /invalid repeat count/],
    ['(a{1,1000}){1,1000}', /expression too large/],
  ];
  for (const [pattern, why] of table) {
    const err = t.throws(() => compileRegex(pattern), InvalidRegexError, JSON.stringify(pattern)) as InvalidRegexError;
    t.equal(err.code, 'ERR_INVALID_REGEX');
    t.equal(err.pattern, pattern);
    t.match(err.message, new RegExp(`^${JSON.stringify(pattern).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a valid regular expression: `));
    t.match(err.reason, why);
    t.equal(regexProblem(pattern), err.message, 'validation reports the same message');
    t.equal(regexFullMatch(pattern, '/admin'), false, 'a pattern that does not compile matches nothing');
    t.throws(() => compileRegex(pattern), err, 'the failure is cached: the same error again');
  }
  t.equal(regexProblem('/v[0-9]+/.*'), undefined);
});

t.test('a program larger than Istio allows Envoy is rejected', async (t) => {
  const big = '[a-z]{1000}'.repeat(Math.ceil(MAX_REGEX_PROGRAM_SIZE / 1000) + 1);
  const err = t.throws(() => compileRegex(big), InvalidRegexError) as InvalidRegexError;
  t.match(err.reason, new RegExp(`too large: its RE2 program has \\d+ instructions, more than ${MAX_REGEX_PROGRAM_SIZE}; simplify it`));
  t.equal(regexProblem('[a-z]{1000}'), undefined, 'a large but allowed one compiles');
});

t.test('path templates: {*} is one segment, {**} the rest, the rest literal; linear', async (t) => {
  const table: [string, string, boolean][] = [
    ['/a/{*}', '/a/b', true],
    ['/a/{*}', '/a/b/c', false],
    ['/a/{*}', '/a/', false],
    ['/a/{**}', '/a/b/c', true],
    ['/a/{**}', '/a/', false],
    ['/a/{*}/c', '/a/b/c', true],
    ['/a/{*}/c', '/a/b/x/c', false],
    ['/a/{**}/c', '/a/b/x/c', true],
    ['/a.b/{*}', '/axb/c', false], // literal parts are literal ...
    ['/(x)|[y]/{*}', '/(x)|[y]/z', true], // ... whatever RE2 would make of them
    ['/\\E.*\\Q/{*}', '/\\E.*\\Q/z', true],
    ['/{a}/{*}', '/{a}/z', true],
    ['/{**}{**}{**}{**}{**}{**}x', '/' + 'a'.repeat(1000), false], // n^6 steps under backtracking
    ['/{**}{**}{**}{**}{**}{**}x', '/' + 'a'.repeat(1000) + 'x', true],
  ];
  for (const [template, path, want] of table) {
    t.equal(compilePathTemplate(template).fullMatch(path), want, `${template} on ${path.length > 20 ? path.slice(0, 20) + '...' : path}`);
  }
  t.equal(compilePathTemplate('/a/{*}').source, '/a/{*}');
});

t.test('the cache is bounded and keeps working past its bound', async (t) => {
  const first = compileRegex('/first/[0-9]+');
  t.equal(compileRegex('/first/[0-9]+'), first, 'a hit returns the compiled pattern');
  for (let i = 0; i < REGEX_CACHE_SIZE + 10; i++) compileRegex(`/evict/${i}`);
  const again = compileRegex('/first/[0-9]+');
  t.not(again, first, 'the least recently used entry was evicted');
  t.ok(again.fullMatch('/first/42'), 'and compiles again when needed');
});
