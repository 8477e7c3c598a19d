import { firstMatch } from '../../core/model/routes.js';
import { sync, type Layer } from '../context.js';
import { identityNamespace, routeTable } from '../routes.js';
import { noRoute } from '../status.js';

/**
 * Route selection: finds the first rule (in Gateway API precedence, or VirtualService order)
 * whose match holds; none → 404 `NR`. Later layers read `ctx.rule`. The table depends on the
 * client's namespace, from the SPIFFE identity its ztunnel presented in the HBONE tunnel
 * (consumer routes: `routes.ts`).
 */
/** The query of a request without one (`firstMatch` only reads it). */
const NO_QUERY = new URLSearchParams();

export const routeLayer: Layer = (next) => sync((ctx) => {
  const s = ctx.stream;
  const table = routeTable(s.state, s.dstService, s.dstPort, identityNamespace(s.srcIdentity));
  const q = ctx.path.indexOf('?');
  const m = firstMatch(table.ordered, {
    method: ctx.method,
    path: q === -1 ? ctx.path : ctx.path.slice(0, q),
    headers: ctx.headers,
    query: q === -1 ? NO_QUERY : new URLSearchParams(ctx.path.slice(q + 1)),
  });
  if (!m) throw noRoute(`${ctx.method} ${ctx.path} to ${s.dstService?.hostname ?? s.authority}`);
  ctx.route = m;
  ctx.rule = m.rule;
  if (table.source !== 'default') ctx.log['route'] = `${m.route.kind}/${m.route.namespace}/${m.route.name}#${m.rule.name ?? m.ruleIndex}`;
  return next(ctx);
});
