import type { RouteFilter } from '../../core/model/routes.js';
import { localReply, sync, type Layer, type RequestContext, type WaypointResponse } from '../context.js';
import { rewritePath } from './rewrite.js';

const WELL_KNOWN: Readonly<Record<string, number>> = { http: 80, https: 443 };

/**
 * RequestRedirect: answers with a `Location` built from the request and the filter (Gateway API
 * rules: a scheme without a port implies the scheme's well-known port, which is left out of the
 * URL; otherwise the request's port is kept).
 */
export const redirectLayer: Layer = (next) => sync((ctx) => {
  const filters = ctx.rule?.filters;
  const f = filters && filters.length > 0 ? filters.find((x) => x.type === 'RequestRedirect') : undefined;
  if (!f || f.type !== 'RequestRedirect') return next(ctx);
  return Promise.resolve(redirect(ctx, f));
});

/** The redirect reply of a `RequestRedirect` filter (a rule's here, a backend's in `backend.ts`). */
export function redirect(ctx: RequestContext, f: Extract<RouteFilter, { type: 'RequestRedirect' }>): WaypointResponse {
  const colon = ctx.authority.lastIndexOf(':');
  const hasPort = colon > 0 && !ctx.authority.endsWith(']');
  const reqHost = hasPort ? ctx.authority.slice(0, colon) : ctx.authority;
  const reqPort = hasPort ? Number(ctx.authority.slice(colon + 1)) : 80;
  const scheme = f.scheme ?? 'http';
  const port = f.port ?? (f.scheme ? WELL_KNOWN[f.scheme] : reqPort);
  const host = f.hostname ?? reqHost;
  const path = f.path ? rewritePath(ctx.path, f.path, ctx.route?.match) : ctx.path;
  const portPart = port === undefined || port === WELL_KNOWN[scheme] ? '' : `:${port}`;
  return localReply(f.statusCode, '', { location: `${scheme}://${host}${portPart}${path}` });
}
