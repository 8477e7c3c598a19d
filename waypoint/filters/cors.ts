import type { OutgoingHttpHeaders } from 'node:http';
import { valueMatches, type CorsPolicy } from '../../core/model/routes.js';
import { localReply, sync, type Layer } from '../context.js';

/**
 * CORS (Gateway API `CORS` filter, GEP-1767), as Envoy's CORS filter does it. A request without
 * `Origin`, or from an origin the policy does not allow, passes untouched (no CORS header: the
 * browser then refuses the response). From an allowed origin:
 * - a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, 200 with an
 *   empty body, never forwarded: `access-control-allow-origin` (the request's origin),
 *   `-allow-methods`, `-allow-headers` (a `*` policy echoes the requested method / headers),
 *   `-expose-headers`, `-max-age`, and `-allow-credentials: true` when the policy says so;
 * - any other request goes on, and its response gets `access-control-allow-origin`,
 *   `-expose-headers` and `-allow-credentials` (and `vary: origin`, since the answer depends on it).
 * The origin is echoed rather than answered with `*` even for a `*` policy: a `*` cannot go with
 * credentials, and Envoy echoes too.
 */
export const corsLayer: Layer = (next) =>
  sync((ctx) => {
    const filters = ctx.rule?.filters;
    const f = filters && filters.length > 0 ? filters.find((x) => x.type === 'CORS') : undefined;
    if (!f || f.type !== 'CORS') return next(ctx);
    const origin = one(ctx.headers['origin']);
    if (origin === undefined) return next(ctx);
    const requested = one(ctx.headers['access-control-request-method']);
    if (!originAllowed(f.cors, origin)) {
      // Istio `unmatchedPreflights: IGNORE`: such a preflight is answered, without CORS headers.
      if (f.cors.unmatchedPreflights === 'ignore' && ctx.method === 'OPTIONS' && requested !== undefined) return Promise.resolve(localReply(200, ''));
      return next(ctx);
    }
    if (ctx.method === 'OPTIONS' && requested !== undefined) return Promise.resolve(localReply(200, '', preflightHeaders(f.cors, origin, requested, one(ctx.headers['access-control-request-headers']))));
    ctx.responseEdits.push((h) => addCorsHeaders(h, f.cors, origin));
    return next(ctx);
  });

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Whether `origin` is one the policy allows: `*`, an exact origin (ASCII case-insensitive), or a pattern whose `*` stands for any characters. */
export function originAllowed(p: CorsPolicy, origin: string): boolean {
  if (p.originMatches?.some((m) => valueMatches(m, origin))) return true;
  const o = origin.toLowerCase();
  for (const a of p.allowOrigins) {
    if (a === '*') return true;
    const pat = a.toLowerCase();
    const star = pat.indexOf('*');
    if (star < 0) {
      if (pat === o) return true;
      continue;
    }
    const head = pat.slice(0, star);
    const tail = pat.slice(star + 1);
    if (o.length >= head.length + tail.length + 1 && o.startsWith(head) && o.endsWith(tail)) return true;
  }
  return false;
}

function preflightHeaders(p: CorsPolicy, origin: string, method: string, headers: string | undefined): OutgoingHttpHeaders {
  const h: OutgoingHttpHeaders = { 'access-control-allow-origin': origin, vary: 'origin' };
  const methods = p.allowMethods.includes('*') ? method : p.allowMethods.join(', ');
  if (methods !== '') h['access-control-allow-methods'] = methods;
  const allowHeaders = p.allowHeaders.includes('*') ? (headers ?? '') : p.allowHeaders.join(', ');
  if (allowHeaders !== '') h['access-control-allow-headers'] = allowHeaders;
  if (p.exposeHeaders.length > 0) h['access-control-expose-headers'] = p.exposeHeaders.join(', ');
  if (p.maxAge !== undefined) h['access-control-max-age'] = String(p.maxAge);
  if (p.allowCredentials) h['access-control-allow-credentials'] = 'true';
  return h;
}

function addCorsHeaders(h: OutgoingHttpHeaders, p: CorsPolicy, origin: string): void {
  h['access-control-allow-origin'] = origin;
  if (p.exposeHeaders.length > 0) h['access-control-expose-headers'] = p.exposeHeaders.join(', ');
  if (p.allowCredentials) h['access-control-allow-credentials'] = 'true';
  const vary = h['vary'];
  if (vary === undefined) h['vary'] = 'origin';
  else if (!String(vary).toLowerCase().split(',').some((v) => v.trim() === 'origin' || v.trim() === '*')) h['vary'] = `${String(vary)}, origin`;
}

