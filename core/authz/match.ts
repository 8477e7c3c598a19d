/**
 * The value matchers of Istio's AuthorizationPolicy, shared by every layer that enforces one
 * (`evaluate.ts`). Each exists once: ztunnel (L4) and the waypoint (L7) must agree on what a
 * pattern means.
 */
import { compilePathTemplate } from '../model/regex.js';
import { quote } from '../validation/check.js';

/**
 * Istio string match: `*` = any non-empty value, `*x` = suffix, `x*` = prefix, else exact.
 * The order of the checks is Istio's (`*x*` is a suffix match on `x*`). An absent value matches
 * no pattern, so it always satisfies the `not*` form.
 *
 * @example
 * matchesPattern('*\/sa/sleep', 'cluster.local/ns/default/sa/sleep'); // true
 */
export function matchesPattern(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (pattern === '*') return value !== '';
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return pattern === value;
}

/**
 * Istio path match: `*`, `prefix*`, `*suffix`, exact, and the `{*}` / `{**}` templates. Templates
 * are matched by RE2 (`compilePathTemplate`), linear in the path however many wildcards they hold.
 *
 * @example
 * pathMatches('/api/{*}/items', '/api/v1/items'); // true
 */
export function pathMatches(pattern: string, path: string): boolean {
  if (pattern.includes('{')) return compilePathTemplate(pattern).fullMatch(path);
  return matchesPattern(pattern, path);
}

/** Longest policy path: Gateway API's path limit (1024), which Istio's `paths` lack. */
export const POLICY_PATH_MAX = 1024;

/**
 * Why `s` is not a policy path (`paths`, `notPaths`), or undefined. Without `{*}`/`{**}`: a path
 * starting with `/`, or a `*` wildcard at the start or end. With them it is a path template, and
 * Istio's rules apply (istio/api security/v1beta1/authorization.proto, `Operation.paths`): each
 * operator is a whole path segment (`/foo/{*}.txt` is refused), `*`, `{` and `}` appear nowhere
 * else, and `{**}` is the last operator (so at most one). Either way at most `POLICY_PATH_MAX`
 * characters and no control characters (no request path has them).
 *
 * @example
 * policyPathProblem('/api/{*}/items/{**}'); // undefined
 * policyPathProblem('/{**}{**}x'); // '"/{**}{**}x" is not a valid path template: ...'
 */
export function policyPathProblem(s: string): string | undefined {
  const q = quote(s);
  if (s.length > POLICY_PATH_MAX) return `${q} is too long for a path; at most ${POLICY_PATH_MAX} characters`;
  if (/[\u0000-\u001f\u007f]/.test(s)) return `${q} is not a path: control characters are not allowed`;
  if (!s.includes('{*}') && !s.includes('{**}')) {
    return s.startsWith('/') || s.startsWith('*') ? undefined : `${q} is not a path; expected /..., optionally with * at the start or end`;
  }
  const rule = 'in a path template {*} and {**} are each a whole path segment, *, { and } appear nowhere else, and {**} is the last operator (Istio)';
  if (!s.startsWith('/')) return `${q} is not a valid path template: it must start with /; ${rule}`;
  let sawAny = false;
  for (const seg of s.split('/')) {
    const op = seg === '{*}' || seg === '{**}';
    if (!op && /[*{}]/.test(seg)) return `${q} is not a valid path template: segment ${quote(seg)}; ${rule}`;
    if (op && sawAny) return `${q} is not a valid path template: {**} is not the last operator; ${rule}`;
    if (seg === '{**}') sawAny = true;
  }
  return undefined;
}

/**
 * Istio host match: case-insensitive, wildcards as for other strings, a pattern without a port
 * matches any port.
 *
 * @example
 * hostMatches('*.example.com', 'api.example.com:8080'); // true
 */
export function hostMatches(pattern: string, host: string): boolean {
  const h = host.toLowerCase();
  const p = pattern.toLowerCase();
  if (matchesPattern(p, h)) return true;
  const colon = h.lastIndexOf(':');
  return colon > 0 && !h.endsWith(']') && !p.includes(':') && matchesPattern(p, h.slice(0, colon));
}

/**
 * A policy port (`ports`, `notPorts`, `destination.port` values): decimal digits only, 1..65535,
 * as Istio parses them (`strconv.ParseUint(v, 10, ...)`); numbers must be integers in that range.
 * Undefined otherwise: '' (which `Number` reads as 0), '0x50', ' 80', '8e1' are not ports.
 *
 * @example
 * parsePolicyPort('8080'); // 8080
 * parsePolicyPort(''); // undefined
 */
export function parsePolicyPort(v: string | number): number | undefined {
  const n = typeof v === 'number' ? v : /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}
