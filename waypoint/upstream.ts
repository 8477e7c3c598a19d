/**
 * Connections from the waypoint to backend endpoints, pooled per endpoint:
 * - HTTP/1.1: a keep-alive `http.Agent` per endpoint whose "sockets" are HBONE CONNECT streams
 *   to the endpoint's node ztunnel (`:authority` = `podIP:targetPort`), themselves multiplexed on
 *   the HBONE client's pooled mTLS connections;
 * - HTTP/2 (gRPC): one HTTP/2 session per endpoint, over one HBONE stream;
 * - raw streams for TCP passthrough.
 * Endpoints outside the mesh (`protocol: TCP`) get plain TCP instead of HBONE.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { HboneClient } from '../core/hbone/client.js';
import type { MeshState } from '../core/model/state.js';
import type { Service, Workload } from '../core/model/types.js';
import { upstreamConnectFailed } from './status.js';
import { buffersOnly } from './string-writes.js';
import type { SubsetEndpoints } from './subsets.js';

/** A concrete endpoint of one try. */
export interface Endpoint {
  readonly workload: Workload;
  readonly ip: string;
  /** Target port on the workload. */
  readonly port: number;
  readonly service?: Service;
}

export interface UpstreamInputs {
  readonly hbone: HboneClient;
  /** The waypoint's own SPIFFE id: the client certificate of every HBONE stream it opens. */
  readonly identity: () => string;
  /** `baggage` the waypoint sends (its own workload metadata). */
  readonly baggage: () => string;
  /** Plain TCP, swappable in tests. */
  readonly connectTcp?: (opts: net.NetConnectOpts) => net.Socket;
}

/**
 * Longest a pooled keep-alive stream stays idle. The pool does not rely on it for correctness: a
 * stream whose backend closed is dropped the moment the close arrives (below), as Envoy does.
 * It is kept under the idle timeouts of common servers (Node 5 s, gunicorn 2 s is below it, Go,
 * nginx 60-90 s) so that the race between a backend's close and a new request on the stream is
 * rare; reopening costs one HBONE stream on an already pooled mTLS connection (no handshake).
 * A `Keep-Alive: timeout=N` response header shortens it to N-1 s, as Node's own agent does.
 */
export const IDLE_STREAM_TIMEOUT_MS = 4_000;

const hostPort = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** How long a stream whose backend ended may wait for the rest of its close before it is reset. */
const CLOSING_GRACE_MS = 1_000;

/** The idle time a response's `Keep-Alive: timeout=N` hint allows: N-1 s (Node's rule), 0 = do not reuse. */
export function keepAliveHintMs(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  const m = v ? /(?:^|[,\s])timeout=(\d+)/i.exec(v) : null;
  if (!m) return undefined;
  return Math.max(0, Number(m[1]) * 1000 - 1000);
}

type PooledStream = Duplex & {
  setTimeout?: (ms: number) => void;
  timeout?: number;
  ref?: () => unknown;
  _httpMessage?: (http.ClientRequest & { res?: http.IncomingMessage }) | null;
};

/**
 * An HTTP/1.1 connection is over once the server closed its side: a TCP socket closes itself on
 * the peer's FIN (allowHalfOpen false), an HBONE stream only half-closes (END_STREAM). Without
 * this, a stream whose backend had closed the idle keep-alive connection stayed in the agent's
 * free list, and the next request was written into it and waited for an answer that could never
 * come (the hang of the first request after an idle gap longer than the backend's keep-alive).
 * A free stream leaves the pool at once; a busy one is the ClientRequest's to fail ("socket hang
 * up": the retry layer decides whether the request may be sent again).
 */
function closeOnPeerEnd(stream: PooledStream): PooledStream {
  stream.once('end', () => {
    // Documented way out of an agent's lists for a socket that is not closed yet.
    if (!stream._httpMessage) stream.emit('agentRemove');
    if (!stream.writableEnded) stream.end();
    setTimeout(() => stream.destroy(), CLOSING_GRACE_MS).unref();
  });
  return stream;
}

/** An http.Agent whose connections are streams opened by `open` (HBONE here). */
class StreamAgent extends http.Agent {
  constructor(private readonly open: () => Promise<Duplex>) {
    super({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo', timeout: IDLE_STREAM_TIMEOUT_MS });
  }

  // Node calls back asynchronously when createConnection returns nothing.
  override createConnection(_opts: unknown, cb: (err: Error | null, s?: Duplex) => void): Duplex {
    this.open().then(
      (s) => cb(null, closeOnPeerEnd(s)),
      (err: Error) => cb(err),
    );
    return undefined as unknown as Duplex;
  }

  /**
   * Whether a stream goes back to the free list after a response. An HTTP/2 stream has no TCP
   * keep-alive or ref/unref (so Node's own version cannot run), but the idle timeout applies:
   * ours, or shorter when the backend announced its own (`Keep-Alive: timeout=N`). A stream whose
   * backend already ended is never kept.
   */
  override keepSocketAlive(socket: PooledStream): boolean {
    if (socket.readableEnded || socket.writableEnded || socket.destroyed) return false;
    const hint = keepAliveHintMs(socket._httpMessage?.res?.headers['keep-alive']);
    if (hint === 0) return false;
    const idle = hint !== undefined ? Math.min(hint, IDLE_STREAM_TIMEOUT_MS) : IDLE_STREAM_TIMEOUT_MS;
    // The stream refreshes its timer on activity, so it is only set when it changes (re-arming it
    // per request allocated a timer and a bound callback each time).
    if (socket.timeout !== idle) socket.setTimeout?.(idle);
    return true;
  }

  // Node's own reuseSocket must run: it removes the 'error' listener it adds each time a socket
  // goes back to the free list (skipping it leaked one listener per request on every pooled
  // stream: MaxListenersExceededWarning on ClientHttp2Stream). It also calls `ref()`, which an
  // HTTP/2 stream lacks (its session holds the event loop), hence the no-op.
  override reuseSocket(socket: PooledStream, req: http.ClientRequest): void {
    if (typeof socket.ref !== 'function') socket.ref = () => socket;
    super.reuseSocket(socket, req);
  }
}

export class UpstreamPool {
  readonly #in: UpstreamInputs;
  readonly #agents = new Map<string, StreamAgent>();
  readonly #h2 = new Map<string, Promise<http2.ClientHttp2Session>>();
  // Round-robin position per service: the only balancing state that outlives a config update.
  readonly #next = new Map<string, number>();

  constructor(inputs: UpstreamInputs) {
    this.#in = inputs;
  }

  /**
   * Per-request load balancing: round-robin over the service's healthy endpoints, or over those of
   * one of its DestinationRule subsets. A retry moves on to the next endpoint naturally.
   */
  pick(state: MeshState, service: Service, subset?: SubsetEndpoints): Workload | undefined {
    const eps = subset ? subset.endpoints : state.endpointsOf(service);
    if (eps.length === 0) return undefined;
    const key = subset ? `${service.namespace}/${service.name}#${subset.name}` : `${service.namespace}/${service.name}`;
    const i = (this.#next.get(key) ?? 0) % eps.length;
    this.#next.set(key, i + 1);
    return eps[i];
  }

  /** Opens a byte stream to the endpoint: HBONE to its node's ztunnel, or plain TCP off-mesh. */
  async open(state: MeshState, ep: Endpoint): Promise<Duplex> {
    const target = hostPort(ep.ip, ep.port);
    const w = ep.workload;
    if (w.protocol !== 'HBONE') {
      const connect = this.#in.connectTcp ?? ((o: net.NetConnectOpts) => net.connect(o));
      const s = connect({ host: ep.ip, port: ep.port, noDelay: true, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', (err) => reject(upstreamConnectFailed(target, err)));
      });
      return s;
    }
    const node = state.node(w.node);
    if (!node) throw upstreamConnectFailed(target, new Error(`node ${w.node} of ${w.namespace}/${w.name} is unknown`));
    const identity = state.workloadIdentity(w);
    try {
      return await this.#in.hbone.connect({
        sourceIdentity: this.#in.identity(),
        serverIdentity: identity,
        allowedIdentities: ep.service ? [identity, ...ep.service.subjectAltNames] : [identity],
        host: node.ztunnelAddress,
        port: node.hbonePort,
        authority: target,
        // The client's address travels per request (X-Forwarded-For): a pooled stream carries
        // requests of many clients, so the tunnel itself is the waypoint's.
        headers: { baggage: this.#in.baggage() },
      });
    } catch (err) {
      throw upstreamConnectFailed(`${target} via ${node.ztunnelAddress}:${node.hbonePort}`, err);
    }
  }

  /** The keep-alive agent of an endpoint (HTTP/1.1). */
  agent(state: MeshState, ep: Endpoint): http.Agent {
    const key = `${ep.workload.uid}|${hostPort(ep.ip, ep.port)}|${ep.service?.subjectAltNames.join(',') ?? ''}`;
    let a = this.#agents.get(key);
    if (!a) {
      // The agent outlives this snapshot: it reads the state of the request that opens a stream.
      const ref = { state };
      a = new StreamAgent(() => this.open(ref.state, ep).then(buffersOnly));
      this.#agents.set(key, a);
    }
    return a;
  }

  /** The HTTP/2 session of an endpoint (gRPC and h2c clients), opened on first use. */
  h2Session(state: MeshState, ep: Endpoint): Promise<http2.ClientHttp2Session> {
    const key = `${ep.workload.uid}|${hostPort(ep.ip, ep.port)}`;
    let p = this.#h2.get(key);
    if (!p) {
      p = this.open(state, ep).then((stream) => {
        const session = http2.connect(`http://${hostPort(ep.ip, ep.port)}`, { createConnection: () => stream });
        const drop = () => {
          if (this.#h2.get(key) === p) this.#h2.delete(key);
        };
        session.once('close', drop);
        session.once('goaway', drop);
        session.on('error', drop);
        return session;
      });
      p.catch(() => this.#h2.delete(key));
      this.#h2.set(key, p);
    }
    return p;
  }

  /** Pool contents for `/config_dump`. */
  dump(): { http1Agents: number; http2Sessions: number } {
    return { http1Agents: this.#agents.size, http2Sessions: this.#h2.size };
  }

  /** Closes idle streams and every HTTP/2 session. */
  close(): void {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
    for (const p of this.#h2.values()) p.then((s) => s.destroy(), () => {});
    this.#h2.clear();
  }
}
