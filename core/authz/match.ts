/**
 * The value matchers of Istio's AuthorizationPolicy, shared by every layer that enforces one
 * (`evaluate.ts`). Each exists once: ztunnel (L4) and the waypoint (L7) must agree on what a
 * pattern means.
 */
import { compilePathTemplate } from '../model/regex.js';

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
