import { backendPermitted } from '../../core/model/reference-grant.js';
import type { RouteFilter } from '../../core/model/routes.js';
import { sync, type Handler, type Layer, type RequestContext } from '../context.js';
import { subsetEndpoints } from '../subsets.js';

type Mirror = Extract<RouteFilter, { type: 'RequestMirror' }>;

/**
 * RequestMirror: every `RequestMirror` of the rule, then of the chosen backend, sends its own
 * copy of `percent` of the requests (each drawn on its own) to its backend, fire and forget
 * (its response and failures are ignored; `Host` gets Envoy's `-shadow` suffix). Several
 * mirrors in one rule each get a copy (upstream conformance: HTTPRouteRequestMultipleMirrors;
 * Envoy's `request_mirror_policies` is a list too). Only requests whose body is empty or
 * buffered are mirrored: a streaming body can be read once. A mirror to a Service in another
 * namespace needs a ReferenceGrant, as a backend does.
 */
export const mirrorLayer =
  (send: Handler, random: () => number = Math.random): Layer =>
  (next) =>
  sync((ctx) => {
    const rule = ctx.rule?.filters;
    const own = ctx.backend?.ref.filters;
    if ((!rule || rule.length === 0) && (!own || own.length === 0)) return next(ctx);
    if (ctx.body.kind === 'stream') return next(ctx);
    for (const list of [rule, own]) {
      if (!list) continue;
      for (const f of list) if (f.type === 'RequestMirror' && random() * 100 < f.percent) mirror(ctx, f, send);
    }
    return next(ctx);
  });

function mirror(ctx: RequestContext, f: Mirror, send: Handler): void {
  const state = ctx.stream.state;
  const ref = f.backend;
  // A mirror to a Service in another namespace needs a ReferenceGrant as a backend does; without
  // one nothing is mirrored (Gateway API: the backend is not configured; the status says RefNotPermitted).
  if (ctx.route && !backendPermitted(state.config.referenceGrants, ctx.route.route, ref)) return;
  const service = ref.hostname !== undefined ? state.serviceByHostname(ref.hostname) : state.serviceByName(ref.namespace ?? '', ref.name ?? '');
  const port = ref.port ?? ctx.stream.dstPort;
  // A mirror to a subset no DestinationRule defines is dropped, as a failed mirror is.
  const subset = service && ref.subset !== undefined ? subsetEndpoints(state, service, ref.subset, ctx.route?.route.namespace ?? service.namespace) : undefined;
  if (!service || !state.servicePort(service, port) || (ref.subset !== undefined && !subset)) return;
  const colon = ctx.authority.lastIndexOf(':');
  const host = colon > 0 ? `${ctx.authority.slice(0, colon)}-shadow${ctx.authority.slice(colon)}` : `${ctx.authority}-shadow`;
  const copy = {
    ...ctx,
    authority: host,
    headers: { ...ctx.headers },
    backend: subset ? { ref, service, port, subset } : { ref, service, port },
    signal: AbortSignal.timeout(30_000),
    flags: [],
    log: {},
    responseEdits: [],
  };
  send(copy).then((r) => r.discard?.(), () => {});
}
