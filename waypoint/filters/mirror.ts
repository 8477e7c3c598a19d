import { sync, type Handler, type Layer } from '../context.js';
import { subsetEndpoints } from '../subsets.js';

/**
 * RequestMirror: a copy of `percent` of the requests goes to the mirror backend, fire and forget
 * (its response and failures are ignored; `Host` gets Envoy's `-shadow` suffix). Only requests
 * whose body is empty or buffered are mirrored: a streaming body can be read once.
 */
export const mirrorLayer =
  (send: Handler, random: () => number = Math.random): Layer =>
  (next) =>
  sync((ctx) => {
    const filters = ctx.rule?.filters;
    const f = filters && filters.length > 0 ? filters.find((x) => x.type === 'RequestMirror') : undefined;
    if (!f || f.type !== 'RequestMirror' || ctx.body.kind === 'stream' || random() * 100 >= f.percent) return next(ctx);
    const state = ctx.stream.state;
    const ref = f.backend;
    const service = ref.hostname !== undefined ? state.serviceByHostname(ref.hostname) : state.serviceByName(ref.namespace ?? '', ref.name ?? '');
    const port = ref.port ?? ctx.stream.dstPort;
    // A mirror to a subset no DestinationRule defines is dropped, as a failed mirror is.
    const subset = service && ref.subset !== undefined ? subsetEndpoints(state, service, ref.subset, ctx.route?.route.namespace ?? service.namespace) : undefined;
    if (service && state.servicePort(service, port) && (ref.subset === undefined || subset)) {
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
    return next(ctx);
  });
