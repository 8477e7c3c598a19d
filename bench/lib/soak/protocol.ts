/**
 * What the soak's clients and backend say to each other: HTTP/1.1 requests whose path names the
 * connection and the request, answered with a body that repeats the path. A response counts as
 * answered only when it is whole, has status 200 and carries exactly the body for its own path.
 */

/** Size of every response body: about an API response. */
export const RESPONSE_BYTES = 1024;
/** Longest response head accepted; Node's server sends about 150 bytes. */
const MAX_HEAD_BYTES = 8192;

/** What the backend saw; the harness reads it from the backend's stats port after the run. */
export interface BackendStats {
  /** The keep-alive timeout the server ran with, ms. */
  readonly keepAliveTimeoutMs: number;
  readonly accepted: number;
  /** Connections open when asked. */
  readonly open: number;
  readonly requests: number;
  /** Connections the server closed because they were idle longer than its keep-alive timeout. */
  readonly idleClosed: number;
  /** Connections whose peer (ztunnel B) sent FIN or reset first. */
  readonly peerClosed: number;
}

/** The body answering `path`: the path, a newline, then padding up to {@link RESPONSE_BYTES}. */
export function responseBody(path: string): string {
  const head = `${path}\n`;
  return head + 'x'.repeat(Math.max(0, RESPONSE_BYTES - Buffer.byteLength(head)));
}

/** The bytes of a keep-alive GET for `path` (HTTP/1.1 needs a Host header). */
export function requestBytes(path: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: soak-backend\r\n\r\n`, 'latin1');
}

/** Outcome of reading the bytes received so far for one request. */
export type ParseResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'ok' }
  /** `why` is a short, stable reason used as a lost-request label. */
  | { readonly kind: 'bad'; readonly why: string };

/**
 * Checks the bytes received for the request of `path`. The client never pipelines, so anything
 * after the one response is an error too.
 *
 * @example
 * parseResponse(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'), '/x'); // { kind: 'bad', why: 'wrong body' }
 */
export function parseResponse(buf: Buffer, path: string): ParseResult {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return buf.length > MAX_HEAD_BYTES ? { kind: 'bad', why: 'response head too long' } : { kind: 'incomplete' };
  const head = buf.toString('latin1', 0, headEnd);
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!status) return { kind: 'bad', why: 'not an http/1.1 response' };
  if (status[1] !== '200') return { kind: 'bad', why: `status ${status[1]}` };
  const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
  if (!length) return { kind: 'bad', why: 'no content-length' };
  const end = headEnd + 4 + Number(length[1]);
  if (buf.length < end) return { kind: 'incomplete' };
  if (buf.length > end) return { kind: 'bad', why: 'bytes after the response' };
  return buf.toString('latin1', headEnd + 4, end) === responseBody(path) ? { kind: 'ok' } : { kind: 'bad', why: 'wrong body' };
}
