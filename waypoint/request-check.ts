/**
 * What the waypoint refuses of a client's request before routing it (issue 19: nothing hostile
 * passes the HTTP entry). Node's parsers refuse what breaks framing (CR, LF or NUL in a field, a
 * bare CR, obsolete line folding, Content-Length with Transfer-Encoding, a header block over
 * `MAX_HEADER_BYTES`, no Host in HTTP/1.1; nghttp2 the same for HTTP/2 and a bad `:path` or
 * `:authority` character); this adds what they let through, as Envoy refuses it:
 *
 * - more than `MAX_HEADERS_COUNT` header fields: 431 (Envoy's `max_headers_count`, default 100
 *   since 1.11.2; HTTP/2 gets a stream reset, as in Envoy, from `maxHeaderListPairs`);
 * - an HTTP/1.1 request with more than one Host (RFC 9112, section 3.2: "MUST respond with a 400");
 * - a Host / `:authority` that is not `host[:port]` (RFC 9110, section 7.2; RFC 3986's reg-name or
 *   IP-literal, no userinfo, a port of at most 5 digits): 400;
 * - a request target that is not an absolute path (origin-form, RFC 9112, section 3.2.1), or `*`
 *   for OPTIONS; a fragment (`#`) is never part of one: 400. The absolute-form
 *   (`GET http://host/x`, what a client configured with a proxy sends) is taken as RFC 9112,
 *   section 3.2.2 says a server must, and as Envoy does: its authority replaces Host, its path is
 *   the target (`originForm`), and both are then checked as above.
 *
 * Every check is one linear scan of what the parser already bounded.
 */
import type http from 'node:http';
import type http2 from 'node:http2';
import type { Layer } from './context.js';
import { WaypointError, badRequest } from './status.js';
import { quote } from '../core/validation/check.js';

/** Header fields per request, pseudo-headers not counted (Envoy's default `max_headers_count`). */
export const MAX_HEADERS_COUNT = 100;

const AUTHORITY_RE = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]{0,5})?$/;
const ORIGIN_FORM_RE = /^\/[^#]*$/;
const ABSOLUTE_FORM_RE = /^https?:\/\/([^/?#]*)([/?][^#]*)?$/i;

/** The path and authority of an HTTP/1.1 request target: the absolute-form's own (then checked by `requestRefusal`), else `target` and the Host header. */
export function originForm(target: string, host: string): { path: string; authority: string } {
  const m = ABSOLUTE_FORM_RE.exec(target);
  if (!m) return { path: target, authority: host };
  const rest = m[2] ?? '/';
  return { authority: m[1]!, path: rest.startsWith('?') ? `/${rest}` : rest };
}

const tooManyHeaders = (n: number) =>
  new WaypointError('ERR_WAYPOINT_BAD_REQUEST', 431, 'DPE', `bad request: ${n} header fields; at most ${MAX_HEADERS_COUNT} are allowed`, {
    body: 'request header fields too large',
  });

/** Why the waypoint refuses `req` (its reply), or undefined when it may be routed. */
export function requestRefusal(req: http.IncomingMessage | http2.Http2ServerRequest, version: '1.1' | '2.0', authority: string, path: string): WaypointError | undefined {
  const raw = req.rawHeaders;
  let fields = 0;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.startsWith(':')) continue;
    fields++;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
  }
  if (fields > MAX_HEADERS_COUNT) return tooManyHeaders(fields);
  if (version === '1.1' && hosts > 1) return badRequest(`${hosts} Host headers; an HTTP/1.1 request has exactly one`);
  if (!AUTHORITY_RE.test(authority)) return badRequest(`host ${quote(authority)} is not host[:port]`);
  if (!ORIGIN_FORM_RE.test(path) && !(path === '*' && req.method === 'OPTIONS')) {
    return badRequest(`request target ${quote(path)} is not an absolute path (or * for OPTIONS)`);
  }
  return undefined;
}

/** Right below the errors layer: a refused request becomes its local reply, counted and logged like any other. */
export const refusalLayer: Layer = (next) => (ctx) => (ctx.refusal ? Promise.reject(ctx.refusal) : next(ctx));
