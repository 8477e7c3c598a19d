import type { PathRewrite, RequestMatch, RouteFilter } from '../../core/model/routes.js';
import { sync, type Layer, type RequestContext } from '../context.js';

/**
 * The path after a Gateway API path modifier. `ReplacePrefixMatch` swaps the matched prefix
 * (element-wise, so `/foo` → `/bar` turns `/foo/x` into `/bar/x` and `/foo` into `/bar`); the
 * query string is kept.
 */
export function rewritePath(pathAndQuery: string, rewrite: PathRewrite, match: RequestMatch | undefined): string {
  const q = pathAndQuery.indexOf('?');
  const path = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q === -1 ? '' : pathAndQuery.slice(q);
  if (rewrite.type === 'ReplaceFullPath') return rewrite.value + query;
  const m = match?.path;
  if (!m || (m.type !== 'PathPrefix' && m.type !== 'Prefix')) return rewrite.value + query;
  const prefix = m.type === 'PathPrefix' && m.value.length > 1 && m.value.endsWith('/') ? m.value.slice(0, -1) : m.value;
  let rest = path.slice(prefix === '/' && m.type === 'PathPrefix' ? 0 : prefix.length);
  let out = rewrite.value;
  if (out.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
  else if (!out.endsWith('/') && rest !== '' && !rest.startsWith('/') && m.type === 'PathPrefix') out += '/';
  out += rest;
  return (out === '' ? '/' : out) + query;
}

/** Applies one URLRewrite (a rule's here, a backend's in `backend.ts`) to the request. */
export function applyRewrite(ctx: RequestContext, f: Extract<RouteFilter, { type: 'URLRewrite' }>): void {
  if (f.hostname) ctx.authority = f.hostname;
  if (f.path) ctx.path = rewritePath(ctx.path, f.path, ctx.route?.match);
}

/** URLRewrite: hostname and path, before the request goes upstream. */
export const rewriteLayer: Layer = (next) => sync((ctx) => {
  const filters = ctx.rule?.filters;
  if (!filters || filters.length === 0) return next(ctx);
  for (const f of filters) if (f.type === 'URLRewrite') applyRewrite(ctx, f);
  return next(ctx);
});
