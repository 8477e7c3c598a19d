/**
 * The client side of the waypoint: Node's HTTP/1.1 and HTTP/2 (prior knowledge, h2c) servers,
 * never listening themselves — each tunnelled HBONE stream is handed to one of them with
 * `emit('connection', stream)`. Builds the `RequestContext`, runs the layer stack, writes the
 * response (trailers included) and resolves `ctx.done`.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { setMaxListeners } from 'node:events';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Handler, RequestContext, StreamInfo, WaypointResponse, WriteResult } from './context.js';
import { forwardable } from './hop.js';
import { buffersOnly } from './string-writes.js';
import { MAX_HEADERS_COUNT, originForm, requestRefusal } from './request-check.js';

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Largest request header block accepted (Envoy's default, 60 KiB); bigger gets 431. */
export const MAX_HEADER_BYTES = 60 * 1024;

/** Per HBONE stream: what it is and how many requests are in flight on it (for drain). */
export interface StreamState {
  /** Replaced per request by `refresh` when the configuration changed. */
  info: StreamInfo;
  /** The stream's info under the current configuration snapshot; undefined when its destination left the mesh configuration. */
  readonly refresh?: (info: StreamInfo) => StreamInfo | undefined;
  inFlight: number;
  draining: boolean;
  /** Closes the stream (drain: when idle). */
  close(): void;
}

export class Downstream {
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  readonly #handler: Handler;
  // HTTP/1.1: the request's socket is the HBONE stream itself.
  readonly #byStream = new WeakMap<Duplex, StreamState>();
  // HTTP/2: Node wraps the stream; the session is created synchronously inside emit('connection').
  readonly #bySession = new WeakMap<http2.Http2Session, StreamState>();
  #pending: StreamState | undefined;
  // Per HTTP/1.1 connection: aborted when it goes before a response is complete.
  readonly #h1Abort = new WeakMap<StreamState, AbortController>();

  constructor(handler: Handler, upgrade?: (info: StreamInfo, req: http.IncomingMessage, socket: Duplex, head: Buffer) => void) {
    this.#handler = handler;
    this.http1 = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES, keepAlive: true }, (req, res) => this.#onRequest(req, res, '1.1'));
    // Requests may take as long as their routes allow; the timeouts are the routes' to set.
    this.http1.requestTimeout = 0;
    this.http1.headersTimeout = 60_000;
    this.http1.keepAliveTimeout = 0;
    // Node keeps the first `maxHeadersCount` fields and drops the rest silently: one more than the
    // limit is kept, so that requestRefusal sees the request is over it and answers 431.
    this.http1.maxHeadersCount = MAX_HEADERS_COUNT + 1;
    this.http1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Node answers nothing on its own for a socket it was handed; say why, then close.
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      if ((socket as { writable?: boolean }).writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      else socket.destroy();
    });
    this.http1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const st = this.#byStream.get(socket);
      if (!st || !upgrade) {
        socket.end('HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      // An upgraded tunnel is busy until it closes: drain must not cut it as idle.
      const info = st.refresh ? st.refresh(st.info) : st.info;
      if (!info) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      st.info = info;
      st.inFlight++;
      upgrade(st.info, req, socket, head);
    });
    // Over `maxHeaderListPairs` nghttp2 resets the stream, as Envoy does over max_headers_count;
    // Node counts the 4 request pseudo-headers in it.
    this.http2 = http2.createServer({ maxSessionMemory: 64, maxHeaderListPairs: MAX_HEADERS_COUNT + 4, settings: { enablePush: false } });
    this.http2.on('session', (session) => {
      if (this.#pending) this.#bySession.set(session, this.#pending);
      session.on('error', () => {});
    });
    this.http2.on('request', (req, res) => this.#onRequest(req, res, '2.0'));
  }

  /** Serves HTTP/1.1 or HTTP/2 (after the sniffed preface) on a tunnelled stream. */
  serve(stream: Duplex, state: StreamState, version: '1.1' | '2.0'): void {
    if (version === '1.1') {
      this.#byStream.set(stream, state);
      this.http1.emit('connection', buffersOnly(stream));
      return;
    }
    this.#pending = state;
    try {
      this.http2.emit('connection', stream);
    } finally {
      this.#pending = undefined;
    }
  }

  #newH1Abort(st: StreamState): AbortController {
    const ac = new AbortController();
    // Pipelined requests each listen while in flight: no MaxListenersExceededWarning for them.
    setMaxListeners(0, ac.signal);
    this.#h1Abort.set(st, ac);
    return ac;
  }

  #stateOf(req: Req): StreamState | undefined {
    if ('stream' in req && req.stream) return this.#bySession.get(req.stream.session as http2.Http2Session);
    return this.#byStream.get(req.socket as Duplex);
  }

  #onRequest(req: Req, res: Res, version: '1.1' | '2.0'): void {
    const st = this.#stateOf(req);
    if (!st) {
      res.statusCode = 500;
      res.end();
      return;
    }
    const info = st.refresh ? st.refresh(st.info) : st.info;
    if (!info) {
      // The tunnel's destination is gone from the configuration: nothing may be served under the
      // old one (its policies may be stale). The client reconnects and is told by the new one.
      if (version === '1.1') res.setHeader('connection', 'close');
      res.statusCode = 503;
      res.end();
      st.draining = true;
      if (st.inFlight === 0) st.close();
      return;
    }
    st.info = info;
    st.inFlight++;
    // HTTP/1.1: a response closes unfinished only when its connection goes (or is destroyed), so
    // one controller per connection serves every request on it; HTTP/2 streams close one by one.
    const ac = version === '1.1' ? (this.#h1Abort.get(st) ?? this.#newH1Abort(st)) : new AbortController();
    let resolveDone!: (r: WriteResult) => void;
    const done = new Promise<WriteResult>((r) => (resolveDone = r));
    const headers = forwardable(req.headers);
    const hostHeader = String((version === '2.0' ? req.headers[':authority'] : req.headers.host) ?? st.info.authority);
    const { path, authority } = version === '1.1' ? originForm(req.url ?? '/', hostHeader) : { path: req.url ?? '/', authority: hostHeader };
    const ct = headers['content-type'];
    const protocol = version === '2.0' && typeof ct === 'string' && ct.startsWith('application/grpc') ? 'grpc' : 'http';
    const traceparent = headers['traceparent'];
    const traceId = typeof traceparent === 'string' ? /^[\da-f]{2}-([\da-f]{32})-/.exec(traceparent)?.[1] : undefined;
    const refusal = requestRefusal(req, version, authority, path);
    // A refused HTTP/1.1 request closes its connection: what follows it may be framed as badly.
    if (refusal && version === '1.1') (res as http.ServerResponse).shouldKeepAlive = false;
    const ctx: RequestContext = {
      stream: st.info,
      protocol,
      httpVersion: version,
      method: req.method ?? 'GET',
      path,
      authority,
      headers,
      body: hasBody(req, version) ? { kind: 'stream', stream: req, consumed: false } : { kind: 'none' },
      responseEdits: [],
      signal: ac.signal,
      tries: 0,
      flags: [],
      log: {},
      requestBytes: 0,
      ...(traceId ? { traceId } : {}),
      ...(refusal ? { refusal } : {}),
      done,
      startedAt: performance.now(),
    };
    if (ctx.body.kind === 'none') req.resume();
    let finished = false;
    res.once('close', () => {
      st.inFlight--;
      // `writableFinished`: the response went out whole even when 'close' runs before the write's
      // promise settles (a synchronous socket write): that is no abort, and on HTTP/1.1 the
      // controller is the connection's, shared by its next requests.
      if (!finished && !res.writableFinished) {
        const err = new Error('client closed before the response was complete');
        ac.abort(err);
        resolveDone({ status: res.statusCode, responseBytes: 0, error: err });
      }
      if (st.draining && st.inFlight === 0) st.close();
    });
    if (st.draining && version === '1.1') (res as http.ServerResponse).shouldKeepAlive = false;
    this.#handler(ctx).then(
      (r) => write(ctx, res, r, version).then((w) => {
        finished = true;
        resolveDone(w);
      }),
      (err: Error) => {
        // The error layer turns every failure into a reply; this is the last resort.
        finished = true;
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
        resolveDone({ status: 500, responseBytes: 0, error: err });
      },
    );
  }
}

function hasBody(req: Req, version: '1.1' | '2.0'): boolean {
  if (version === '2.0') return !(req as http2.Http2ServerRequest).stream.endAfterHeaders;
  const te = req.headers['transfer-encoding'];
  const cl = req.headers['content-length'];
  return te !== undefined || (cl !== undefined && cl !== '0');
}

/** Writes a response: headers (after the route's edits), body, trailers. */
function write(ctx: RequestContext, res: Res, r: WaypointResponse, version: '1.1' | '2.0'): Promise<WriteResult> {
  for (const edit of ctx.responseEdits) edit(r.headers);
  const grpcHeader = r.headers['grpc-status'];
  return new Promise((resolve) => {
    if (res.destroyed) {
      r.discard?.();
      resolve({ status: r.status, responseBytes: 0, error: new Error('client closed before the response') });
      return;
    }
    if (!r.body) {
      const text = r.text ?? '';
      if (version === '2.0' && grpcHeader !== undefined && text === '') {
        // gRPC's Trailers-Only answer: one HEADERS frame with END_STREAM carrying grpc-status.
        // writeHead first would send the headers without END_STREAM and end the stream with no
        // trailers, which gRPC clients take for a call without a status (grpc-js: INTERNAL,
        // "Call ended without gRPC status"); end() before any head sends both as one frame.
        res.statusCode = r.status;
        for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) res.setHeader(k, v as string | string[]);
        res.end();
        resolve({ status: r.status, responseBytes: 0, grpcStatus: String(grpcHeader) });
        return;
      }
      const h = { ...r.headers, 'content-length': Buffer.byteLength(text) };
      res.writeHead(r.status, h as http.OutgoingHttpHeaders);
      res.end(text);
      resolve({ status: r.status, responseBytes: Buffer.byteLength(text), ...(grpcHeader !== undefined ? { grpcStatus: String(grpcHeader) } : {}) });
      return;
    }
    const body = r.body;
    let bytes = 0;
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      const t = r.trailers?.();
      const g = t?.['grpc-status'] ?? grpcHeader;
      resolve({ status: r.status, responseBytes: bytes, ...(g !== undefined ? { grpcStatus: String(g) } : {}), ...(error ? { error } : {}) });
    };
    res.writeHead(r.status, r.headers as http.OutgoingHttpHeaders);
    // What `pipe` does, with backpressure, and the byte count in the same listener: pipe adds
    // and removes half a dozen listeners on both streams per response.
    const out = res as NodeJS.WritableStream;
    let waiting = false;
    const resume = () => {
      waiting = false;
      body.resume();
    };
    body.on('data', (c: Buffer) => {
      bytes += c.length;
      if (!out.write(c) && !waiting) {
        waiting = true;
        body.pause();
        out.once('drain', resume);
      }
    });
    body.once('end', () => {
      const t = r.trailers?.();
      if (t && Object.keys(t).length > 0 && (version === '2.0' || res.getHeader('content-length') === undefined)) {
        res.addTrailers(t as http.OutgoingHttpHeaders);
      }
      res.end();
      finish();
    });
    body.once('error', (err) => {
      res.destroy(err);
      finish(err);
    });
    body.once('close', () => {
      if (!body.readableEnded) {
        res.destroy();
        finish(new Error('upstream closed before the response body ended'));
      }
    });
    res.once('close', () => {
      if (!settled) {
        body.destroy();
        finish(new Error('client closed before the response was complete'));
      }
    });
  });
}
