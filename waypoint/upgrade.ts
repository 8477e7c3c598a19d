/**
 * HTTP/1.1 `Upgrade` (WebSocket and friends): policy and route selection as for any request,
 * then the request head goes to one endpoint of the chosen backend and the two byte streams are
 * spliced; the backend's `101` and everything after pass through untouched. The request head gets
 * the rule's, then the chosen backend's, `URLRewrite` (hostname, path) and `RequestHeaderModifier`,
 * in the order the request pipeline applies them (rewrite, headers, then the backend's: filters/
 * rewrite.ts, headers.ts, backend.ts). Retries, timeouts and faults do not apply to an upgraded
 * connection (Envoy does the same); `ResponseHeaderModifier` does not touch the `101`.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { backendPermitted } from '../core/model/reference-grant.js';
import { firstMatch, pickWeighted, type RequestMatch, type RouteFilter } from '../core/model/routes.js';
import { splice } from '../core/net/splice.js';
import type { Logger } from '../core/telemetry/log.js';
import type { StreamInfo } from './context.js';
import { authorizeRequest } from '../core/authz/evaluate.js';
import { policiesFor, requestAuthenticationsFor, type GatewayRef } from './authz.js';
import { JwtRejectedError, authenticate, type JwksFetcher } from './jwt.js';
import type { RequestAuth } from '../core/authz/evaluate.js';
import { identityNamespace, routeTable } from './routes.js';
import { subsetEndpoints } from './subsets.js';
import type { Endpoint, UpstreamPool } from './upstream.js';
import { applyModifier } from './filters/headers.js';
import { rewritePath } from './filters/rewrite.js';

export interface UpgradeInputs {
  readonly pool: UpstreamPool;
  readonly gateway: () => GatewayRef;
  readonly logger: Logger;
  /** The key sets of RequestAuthentication `jwksUri` rules (waypoint/jwt.ts), shared with the request pipeline. */
  readonly jwks: JwksFetcher;
}

function reply(socket: Duplex, status: string, body: string, extra = ''): void {
  socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n${extra}\r\n${body}`);
}

/** Where an upgrade request goes, and the filters of its rule and of the chosen backend. */
interface Chosen {
  readonly ep: Endpoint;
  readonly match?: RequestMatch;
  readonly filters: readonly (readonly RouteFilter[])[];
}

/** The endpoint an upgrade request goes to (with the filters to apply), or a reply explaining why none. */
function choose(info: StreamInfo, req: http.IncomingMessage, pool: UpstreamPool): Chosen | [string, string] {
  const state = info.state;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const m = firstMatch(routeTable(state, info.dstService, info.dstPort, identityNamespace(info.srcIdentity)).ordered, {
    method: req.method ?? 'GET',
    path: q === -1 ? url : url.slice(0, q),
    headers: req.headers,
    query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)),
  });
  if (!m) return ['404 Not Found', 'no route'];
  if (m.rule.backends.length === 0) {
    const w = info.dstWorkload;
    return w ? { ep: { workload: w, ip: info.dstIp, port: info.dstPort }, match: m.match, filters: [m.rule.filters] } : ['500 Internal Server Error', 'no backend for this route'];
  }
  const i = pickWeighted(m.rule.backends.map((b) => b.weight));
  const ref = m.rule.backends[i];
  if (!ref) return ['500 Internal Server Error', 'no backend for this route'];
  if (ref.invalidKind !== undefined || !backendPermitted(state.config.referenceGrants, m.route, ref)) return ['500 Internal Server Error', 'backend not found'];
  const service = ref.hostname !== undefined ? state.serviceByHostname(ref.hostname) : state.serviceByName(ref.namespace ?? '', ref.name ?? '');
  const sp = service ? state.servicePort(service, ref.port ?? info.dstPort) : undefined;
  if (!service || !sp) return ['500 Internal Server Error', 'backend not found'];
  const subset = ref.subset !== undefined ? subsetEndpoints(state, service, ref.subset, m.route.namespace) : undefined;
  if (ref.subset !== undefined && !subset) return ['503 Service Unavailable', ''];
  const w = pool.pick(state, service, subset);
  if (!w) return ['503 Service Unavailable', 'no healthy upstream'];
  return { ep: { workload: w, ip: w.ips[0]!, port: sp.targetPort, service }, match: m.match, filters: [m.rule.filters, ref.filters] };
}

/**
 * Applies URLRewrite and RequestHeaderModifier of each filter list in turn (the rule's, then the
 * backend's) to the request target and a copy of its headers (lowercase names). Returns
 * undefined when no such filter applies: the head then goes out as the client wrote it.
 */
function applyFilters(chosen: Chosen, url: string, headers: http.IncomingHttpHeaders): { url: string; headers: http.IncomingHttpHeaders } | undefined {
  if (!chosen.filters.some((l) => l.some((f) => f.type === 'URLRewrite' || f.type === 'RequestHeaderModifier'))) return undefined;
  const h: Record<string, string | string[] | number | undefined> = { ...headers };
  let target = url;
  for (const list of chosen.filters) {
    for (const f of list) {
      if (f.type !== 'URLRewrite') continue;
      if (f.hostname) h['host'] = f.hostname;
      if (f.path) target = rewritePath(target, f.path, chosen.match);
    }
    for (const f of list) if (f.type === 'RequestHeaderModifier') applyModifier(h, f.modifier);
  }
  return { url: target, headers: h as http.IncomingHttpHeaders };
}

/** Handles one `upgrade` event of the HTTP/1.1 server. */
export async function handleUpgrade(inputs: UpgradeInputs, info: StreamInfo, req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const log = inputs.logger;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  // RequestAuthentication as for any request (filters/jwt.ts): 401 for a token that does not
  // verify; the token and output headers are edited on a copy, which is then what goes upstream.
  const authn = requestAuthenticationsFor(info.state, inputs.gateway(), info.dstService);
  let headers: Record<string, string | string[] | undefined> = req.headers;
  let auth: RequestAuth | undefined;
  if (authn.length > 0) {
    headers = { ...req.headers };
    try {
      auth = await authenticate(authn, { headers, path: url }, inputs.jwks);
    } catch (err) {
      // Invariant: authenticate rejects only with JwtRejectedError; anything else is a bug, answered, never thrown out of this void-called handler.
      if (!(err instanceof JwtRejectedError)) {
        log.error({ err }, 'upgrade: jwt check failed unexpectedly (a bug in the mesh)');
        return reply(socket, '500 Internal Server Error', 'internal error');
      }
      log.info({ method: req.method, path: url, src: info.srcIdentity, code: err.code, error: err.message }, 'upgrade refused: jwt');
      return reply(socket, '401 Unauthorized', err.reason, 'www-authenticate: Bearer realm="waypoint", error="invalid_token"\r\n');
    }
  }
  const d = authorizeRequest(policiesFor(info.state, inputs.gateway(), info.dstService), {
    sourcePrincipal: info.srcIdentity,
    sourceIp: info.srcIp,
    destinationIp: info.dstIp,
    destinationPort: info.dstPort,
    http: { host: req.headers.host ?? info.authority, method: req.method ?? 'GET', path: q === -1 ? url : url.slice(0, q), headers, ...(auth ? { auth } : {}) },
  });
  if (!d.allowed) return reply(socket, '403 Forbidden', 'RBAC: access denied');
  const chosen = choose(info, req, inputs.pool);
  if (Array.isArray(chosen)) return reply(socket, chosen[0], chosen[1]);
  const ep = chosen.ep;
  const edited = applyFilters(chosen, url, headers);
  let up: Duplex;
  try {
    up = await inputs.pool.open(info.state, ep);
  } catch (err) {
    log.warn({ authority: info.authority, error: (err as Error).message }, 'upgrade: upstream connect failed');
    return reply(socket, '503 Service Unavailable', 'upstream connect error or disconnect/reset before headers. reset reason: connection failure');
  }
  let headText = `${req.method} ${edited?.url ?? url} HTTP/1.1\r\n`;
  if (authn.length === 0 && !edited) {
    for (let i = 0; i < req.rawHeaders.length; i += 2) headText += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
  } else {
    // The edited copy (lowercase names; Node joined repeated fields as RFC 9110 allows).
    for (const [k, v] of Object.entries(edited?.headers ?? headers)) for (const x of Array.isArray(v) ? v : v === undefined ? [] : [v]) headText += `${k}: ${x}\r\n`;
  }
  headText += `x-forwarded-for: ${info.srcIp}\r\n\r\n`;
  up.write(Buffer.from(headText, 'latin1'));
  if (head.length > 0) up.write(head);
  const start = Date.now();
  splice(socket, up, (err) => {
    log.info(
      { method: req.method, path: url, upgrade: req.headers.upgrade, src: info.srcIdentity, upstream: `${ep.ip}:${ep.port}`, duration_ms: Date.now() - start, ...(err ? { error: err.message } : {}) },
      'upgraded connection complete',
    );
  });
}
