/** Hop-by-hop headers (RFC 9110 §7.6.1) and HTTP/2 connection-specific ones: never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'transfer-encoding',
  'upgrade',
  'trailer',
  'http2-settings',
  'host',
]);

type In = Readonly<Record<string, string | string[] | number | undefined>>;

/**
 * A forwardable copy of `headers`: lowercase, without pseudo headers, hop-by-hop headers, and
 * whatever `Connection` names; `te` survives only as `trailers` (gRPC needs it).
 */
export function forwardable(headers: In): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  const conn = headers['connection'];
  const named = typeof conn === 'string' ? conn.toLowerCase().split(',').map((s) => s.trim()) : [];
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || k.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(k) || named.includes(k)) continue;
    if (k === 'te') {
      if (String(v).toLowerCase().includes('trailers')) out[k] = 'trailers';
      continue;
    }
    out[k] = typeof v === 'number' ? String(v) : v;
  }
  return out;
}
