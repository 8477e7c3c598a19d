/**
 * Answers on the control plane's HTTP/2 port. Every error has the same body,
 * `{"error": {"code": "...", "message": "..."}}`, and its status comes from here only.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { MeshError } from '../core/errors.js';

/** A request the control plane refuses; `status` is the HTTP status it answers with. */
export class RequestRefusedError extends MeshError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** Stable codes of refusals (docs/control-plane.md lists them). */
export const REFUSAL = {
  badRequest: { status: 400, code: 'ERR_BAD_REQUEST' },
  csrRejected: { status: 400, code: 'ERR_CSR_REJECTED' },
  unauthenticated: { status: 401, code: 'ERR_UNAUTHENTICATED' },
  notAllowed: { status: 403, code: 'ERR_IDENTITY_NOT_ALLOWED' },
  notFound: { status: 404, code: 'ERR_NOT_FOUND' },
  method: { status: 405, code: 'ERR_METHOD' },
  tooLarge: { status: 413, code: 'ERR_TOO_LARGE' },
  notReady: { status: 503, code: 'ERR_NOT_READY' },
  internal: { status: 500, code: 'ERR_INTERNAL' },
} as const;

export function refuse(kind: keyof typeof REFUSAL, message: string): RequestRefusedError {
  return new RequestRefusedError(REFUSAL[kind].status, REFUSAL[kind].code, message);
}

/** Writes a JSON answer and ends the stream (no-op when the stream is gone). */
export function sendJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return;
  const text = JSON.stringify(body);
  try {
    stream.respond({ ':status': status, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    stream.end(text);
  } catch {
    // The peer reset the stream meanwhile.
  }
}

export function sendError(stream: ServerHttp2Stream, err: RequestRefusedError): void {
  sendJson(stream, err.status, { error: { code: err.code, message: err.message } });
}

/** Reads a request body up to `limit` bytes; larger bodies are refused with 413. */
export function readBody(stream: ServerHttp2Stream, limit: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => reject(refuse('badRequest', `the request body did not arrive within ${timeoutMs} ms`)), timeoutMs);
    stream.on('data', (d: Buffer) => {
      size += d.length;
      if (size > limit) {
        clearTimeout(timer);
        reject(refuse('tooLarge', `the request body is larger than ${limit} bytes`));
        stream.pause();
        return;
      }
      chunks.push(d);
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
