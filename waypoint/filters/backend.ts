import { backendPermitted } from '../../core/model/reference-grant.js';
import { pickWeighted } from '../../core/model/routes.js';
import { sync, type Layer } from '../context.js';
import { backendNotFound, noBackend, subsetNotFound } from '../status.js';
import { subsetEndpoints } from '../subsets.js';
import { applyHeaderFilters } from './headers.js';
import { redirect } from './redirect.js';
import { applyRewrite } from './rewrite.js';

/**
 * Traffic splitting: picks one backend of the rule by weight (per request), resolves it to a
 * service and port (and, for a VirtualService destination with `subset`, to that subset's
 * endpoints: undefined subset → 503 `NC`), and applies its own filters. A request to a
 * workload addressed directly (no service) has no backends and goes to that workload.
 *
 * A backend's filters apply only to the requests sent to it, after the rule's (Gateway API
 * `backendRefs[].filters`): header modifiers and `URLRewrite` change the request, a
 * `RequestRedirect` answers it here (nothing is forwarded), and its `RequestMirror`s are read by
 * the mirror layer below. A backend of a kind that is not a Service answers 500, as does a
 * Service that does not exist (its share of a split: HTTPRouteInvalidBackendRefUnknownKind) and a
 * Service in another namespace that no ReferenceGrant lets the route use.
 */
export const backendLayer =
  (random: () => number = Math.random): Layer =>
  (next) =>
  sync((ctx) => {
    const rule = ctx.rule;
    if (!rule || (rule.backends.length === 0 && ctx.stream.dstWorkload && !ctx.stream.dstService)) return next(ctx);
    const i = pickWeighted(rule.backends.map((b) => b.weight), random);
    if (i < 0) throw noBackend(rule.name ?? String(ctx.route?.ruleIndex ?? 0));
    const ref = rule.backends[i]!;
    const state = ctx.stream.state;
    const port = ref.port ?? ctx.stream.dstPort;
    if (ref.invalidKind !== undefined) {
      ctx.log['backend'] = `${ref.invalidKind} ${ref.namespace}/${ref.name}`;
      throw backendNotFound(`${ref.invalidKind} ${ref.namespace}/${ref.name} (not a Service)`);
    }
    // A Service in another namespace without a ReferenceGrant (RefNotPermitted): 500, whether
    // it exists or not (upstream HTTPRouteInvalidCrossNamespaceBackendRef).
    if (ctx.route && !backendPermitted(state.config.referenceGrants, ctx.route.route, ref)) {
      ctx.log['backend'] = `${ref.namespace}/${ref.name}`;
      throw backendNotFound(`${ref.namespace}/${ref.name} (not permitted: no ReferenceGrant in ${ref.namespace})`);
    }
    const service = ref.hostname !== undefined ? state.serviceByHostname(ref.hostname) : state.serviceByName(ref.namespace ?? '', ref.name ?? '');
    const label = `${ref.hostname ?? `${ref.namespace}/${ref.name}:${port}`}${ref.subset !== undefined ? `#${ref.subset}` : ''}`;
    if (!service || !state.servicePort(service, port)) throw backendNotFound(label);
    if (ref.subset !== undefined) {
      const subset = subsetEndpoints(state, service, ref.subset, ctx.route?.route.namespace ?? service.namespace);
      if (!subset) throw subsetNotFound(label, ref.subset);
      ctx.backend = { ref, service, port, subset };
    } else {
      ctx.backend = { ref, service, port };
    }
    if (rule.backends.length > 1) ctx.log['backend'] = label;
    if (ref.filters.length > 0) {
      for (const f of ref.filters) {
        if (f.type === 'RequestRedirect') return Promise.resolve(redirect(ctx, f));
        if (f.type === 'URLRewrite') applyRewrite(ctx, f);
      }
      applyHeaderFilters(ctx, ref.filters);
    }
    return next(ctx);
  });
