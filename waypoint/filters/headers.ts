import type { OutgoingHttpHeaders } from 'node:http';
import { isFieldValue, type HeaderModifier, type RouteFilter } from '../../core/model/routes.js';
import { sync, type Layer, type RequestContext } from '../context.js';

type Headers = Record<string, string | string[] | number | undefined>;

/**
 * Applies a Gateway API header modifier: set replaces, add appends (comma-joined), remove deletes.
 * A value that is not an HTTP field value (CR, LF, NUL ...) is skipped: the converters refuse it,
 * and this keeps one that reached the model another way from being sent (header injection).
 */
export function applyModifier(h: Headers, m: HeaderModifier): void {
  for (const { name, value } of m.set) if (isFieldValue(value)) h[name] = value;
  for (const { name, value } of m.add) {
    if (!isFieldValue(value)) continue;
    const prev = h[name];
    h[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : `${prev},${value}`;
  }
  for (const name of m.remove) delete h[name];
}

/** Applies header filters of a rule (or backend) to the request, and queues the response ones. */
export function applyHeaderFilters(ctx: RequestContext, filters: readonly RouteFilter[]): void {
  for (const f of filters) {
    if (f.type === 'RequestHeaderModifier') applyModifier(ctx.headers, f.modifier);
    else if (f.type === 'ResponseHeaderModifier') {
      const m = f.modifier;
      ctx.responseEdits.push((h: OutgoingHttpHeaders) => applyModifier(h as Headers, m));
    }
  }
}

/** RequestHeaderModifier and ResponseHeaderModifier of the matched rule. */
export const headersLayer: Layer = (next) =>
  sync((ctx) => {
    if (ctx.rule && ctx.rule.filters.length > 0) applyHeaderFilters(ctx, ctx.rule.filters);
    return next(ctx);
  });
