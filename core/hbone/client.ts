import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import type { Logger } from '../telemetry/log.js';
import type { WorkloadCertificate } from '../identity/certificate.js';
import { peerSpiffeId } from '../identity/certificate.js';
import { secureContextFor, sniForIdentity, HBONE_TLS } from './tls.js';
import {
  CONNECTION_WINDOW,
  MAX_FRAME_SIZE,
  MAX_HEADER_LIST_SIZE,
  MAX_SESSION_MEMORY_MB,
  MAX_STREAMS_PER_CONNECTION,
  POOL_IDLE_TIMEOUT_MS,
  STREAM_WINDOW,
} from './constants.js';
import { HboneError, hboneConnectFailed, hboneStatus, peerIdentityMismatch, tlsFailed } from './status.js';

/** Where certificates come from (the secret manager). */
export interface CertificateSource {
  fetch(identity: string): Promise<WorkloadCertificate>;
}

export interface HboneClientInputs {
  readonly certificates: CertificateSource;
  readonly logger: Logger;
  /** TLS + HTTP/2 setup deadline for a new pooled connection. */
  readonly connectTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
  readonly maxStreamsPerConnection?: number;
  /** Socket creation, swappable in tests. */
  readonly connectTls?: (opts: tls.ConnectionOptions) => tls.TLSSocket;
}

export interface HboneRequest {
  /** SPIFFE ID of the source workload: the certificate this side presents. */
  readonly sourceIdentity: string;
  /** SPIFFE ID the server is asked to present (sent as SNI). */
  readonly serverIdentity: string;
  /** Every SPIFFE ID the server may present: the destination's own plus the service's extra SANs. */
  readonly allowedIdentities: readonly string[];
  /** The HBONE peer: a node's ztunnel or a waypoint. */
  readonly host: string;
  readonly port: number;
  /** `ip:port` of the destination workload (or VIP:port when the peer is a waypoint). */
  readonly authority: string;
  /** Extra request headers: `forwarded`, `baggage`. */
  readonly headers: Readonly<Record<string, string>>;
}

interface PooledConnection {
  readonly key: string;
  session?: ClientHttp2Session;
  readonly ready: Promise<ClientHttp2Session>;
  /** Streams open or reserved (reserved before the session is ready so concurrent callers share it). */
  streams: number;
  closing: boolean;
  idleTimer?: NodeJS.Timeout;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** How long a probed HBONE connection has to answer a PING before it is dropped as dead. */
const PING_TIMEOUT_MS = 2_000;

/**
 * The response headers of a stream; rejects on an error and on a close without a response (a
 * stream of a session that died can close with no error at all: `once(stream, 'response')` would
 * then wait forever).
 */
function responseOf(stream: ClientHttp2Stream): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const onResponse = (h: http2.IncomingHttpHeaders) => {
      cleanup();
      resolve(h);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`stream closed before the CONNECT was answered (rst code ${stream.rstCode ?? 'none'})`));
    };
    const cleanup = () => {
      stream.off('response', onResponse);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    stream.once('response', onResponse);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}

/** A CONNECT lost to a pooled connection that went away under it; `connect` tries once more on a new one. */
class StalePooledConnection extends Error {
  constructor(cause: unknown) {
    super('pooled hbone connection went away', { cause });
  }
}

/**
 * tls.connect over a TCP socket we create, so Nagle can be turned off: `setNoDelay` on a
 * TLSSocket is a no-op (its handle is the TLS wrap, not the TCP handle), and Nagle on the tunnel
 * holds small CONNECT frames and responses back behind unacknowledged data.
 */
function connectTlsNoDelay(opts: tls.ConnectionOptions): tls.TLSSocket {
  const tcp = net.connect({ host: opts.host!, port: opts.port!, noDelay: true });
  // No error forwarding of our own: the TLSSocket already re-emits the TCP socket's errors
  // (connect errors included), and a second emit of the same ECONNREFUSED found no listener left
  // (`once(socket, 'secureConnect')` had taken the first) and crashed the process.
  return tls.connect({ ...opts, socket: tcp });
}

/**
 * The HBONE client: CONNECT streams multiplexed over pooled mTLS HTTP/2 connections, one pool per
 * (source identity, allowed destination identities, peer address).
 */
export class HboneClient {
  readonly #in: Required<Omit<HboneClientInputs, 'connectTls'>> & Pick<HboneClientInputs, 'connectTls'>;
  readonly #pools = new Map<string, PooledConnection[]>();
  #closed = false;

  constructor(inputs: HboneClientInputs) {
    this.#in = {
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      idleTimeoutMs: POOL_IDLE_TIMEOUT_MS,
      maxStreamsPerConnection: MAX_STREAMS_PER_CONNECTION,
      ...inputs,
    };
  }

  /**
   * Opens a CONNECT stream; resolves once the server answered 200, rejects with an HboneError.
   * A CONNECT lost to a pooled connection that went away under it (the peer closed or reset it,
   * GOAWAY, a refused stream) before any answer is sent once more on a new connection: a CONNECT
   * has no effect before its 200, so this is never a second request to the destination.
   */
  async connect(req: HboneRequest): Promise<ClientHttp2Stream> {
    try {
      return await this.#connectOnce(req, false);
    } catch (err) {
      if (!(err instanceof StalePooledConnection)) throw err;
      this.#in.logger.debug({ peer: `${req.host}:${req.port}`, err: err.cause }, 'pooled hbone connection went away; connecting again');
      return this.#connectOnce(req, true);
    }
  }

  async #connectOnce(req: HboneRequest, fresh: boolean): Promise<ClientHttp2Stream> {
    if (this.#closed) throw hboneConnectFailed(`${req.host}:${req.port}`, new Error('client closed'));
    const conn = this.#reserve(req, fresh);
    // Reused: the connection was up before this stream; only then can it have died unnoticed.
    const reused = conn.session !== undefined;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#release(conn);
    };
    try {
      const session = await conn.ready;
      let stream: ClientHttp2Stream;
      try {
        stream = session.request({ ':method': 'CONNECT', ':authority': req.authority, ...req.headers }, { endStream: false });
      } catch (err) {
        // The session closed between the pool's check and this request.
        this.#retire(conn, true);
        throw new StalePooledConnection(err);
      }
      stream.once('close', release);
      const timer = setTimeout(() => {
        stream.destroy(new Error(`no answer to CONNECT within ${this.#in.connectTimeoutMs} ms`));
        this.#probe(conn, session);
      }, this.#in.connectTimeoutMs);
      let headers: http2.IncomingHttpHeaders;
      try {
        headers = await responseOf(stream);
      } catch (err) {
        // ENHANCE_YOUR_CALM: the peer's HTTP/2 stack refuses more streams on this connection (its
        // reset-flood guard, or memory accounting); like REFUSED_STREAM, the CONNECT had no effect.
        const calm = stream.rstCode === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM;
        if (calm) this.#retire(conn, false);
        const lost = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM || calm || session.closed || session.destroyed;
        if (reused && !fresh && lost) throw new StalePooledConnection(err);
        throw err;
      } finally {
        clearTimeout(timer);
      }
      const status = Number(headers[':status']);
      if (status !== 200) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        throw hboneStatus(`${req.host}:${req.port}`, status);
      }
      return stream;
    } catch (err) {
      release();
      if (err instanceof HboneError || err instanceof StalePooledConnection) throw err;
      throw hboneConnectFailed(`${req.host}:${req.port}`, err);
    }
  }

  /** Number of pooled connections (for tests and `/config_dump`). */
  get connectionCount(): number {
    let n = 0;
    for (const list of this.#pools.values()) n += list.length;
    return n;
  }

  /** Pool contents for `/config_dump`. */
  dump(): Array<{ key: string; streams: number; closing: boolean }> {
    return [...this.#pools.values()].flat().map((c) => ({ key: c.key, streams: c.streams, closing: c.closing }));
  }

  /** Sends GOAWAY on every pooled connection; open streams finish. */
  drain(): void {
    for (const c of [...this.#pools.values()].flat()) this.#retire(c, false);
  }

  close(): void {
    this.#closed = true;
    for (const c of [...this.#pools.values()].flat()) this.#retire(c, true);
  }

  /** A stream slot on a pooled connection; `fresh` opens a new connection whatever the pool holds. */
  #reserve(req: HboneRequest, fresh: boolean): PooledConnection {
    const key = `${req.sourceIdentity}|${[...req.allowedIdentities].sort().join(',')}|${req.host}:${req.port}`;
    let list = this.#pools.get(key);
    if (!list) this.#pools.set(key, (list = []));
    // Retired outside the search: retiring removes the connection from `list`.
    for (const dead of list.filter((c) => this.#dead(c))) this.#retire(dead, true);
    let conn = fresh ? undefined : list.find((c) => !c.closing && c.streams < this.#in.maxStreamsPerConnection);
    if (!conn) {
      conn = this.#open(key, req);
      list.push(conn);
    }
    conn.streams++;
    if (conn.idleTimer) {
      clearTimeout(conn.idleTimer);
      conn.idleTimer = undefined;
    }
    return conn;
  }

  /**
   * Whether `c`'s session is gone although its events have not run yet (the moment between the
   * socket closing and 'close'/'goaway' marking the connection `closing`): no new stream may go on it.
   */
  #dead(c: PooledConnection): boolean {
    // A connection already `closing` (GOAWAY, idle retire) may still carry streams: never forced.
    const s = c.session;
    return !c.closing && s !== undefined && (s.closed || s.destroyed || s.socket?.destroyed === true);
  }

  /**
   * A CONNECT went unanswered: the peer may be slow (its upstream connect), or gone without a FIN
   * or RST (a node that vanished). A PING tells them apart: no PING ACK within the probe time and
   * the connection is dropped, so later CONNECTs open a new one instead of waiting on a dead one.
   */
  #probe(conn: PooledConnection, session: ClientHttp2Session): void {
    if (session.closed || session.destroyed) return;
    const dead = () => {
      this.#in.logger.warn({ peer: conn.key }, 'hbone peer did not answer a ping; dropping the pooled connection');
      this.#retire(conn, true);
    };
    const timer = setTimeout(dead, PING_TIMEOUT_MS);
    timer.unref();
    try {
      session.ping((err) => {
        clearTimeout(timer);
        if (err) dead();
      });
    } catch {
      clearTimeout(timer);
      dead();
    }
  }

  #release(conn: PooledConnection): void {
    conn.streams--;
    if (conn.streams === 0 && !conn.closing) {
      conn.idleTimer = setTimeout(() => this.#retire(conn, false), this.#in.idleTimeoutMs);
      conn.idleTimer.unref();
    }
  }

  #open(key: string, req: HboneRequest): PooledConnection {
    const conn: PooledConnection = {
      key,
      streams: 0,
      closing: false,
      ready: this.#handshake(req).then((session) => {
        conn.session = session;
        const drop = () => this.#remove(conn);
        session.once('close', drop);
        session.once('goaway', () => this.#retire(conn, false));
        session.on('error', (err) => this.#in.logger.debug({ err, peer: key }, 'hbone pooled connection error'));
        if (conn.closing) session.close();
        return session;
      }),
    };
    // A failed handshake fails every stream reserved on it; the next request opens a new one.
    conn.ready.catch(() => this.#remove(conn));
    return conn;
  }

  async #handshake(req: HboneRequest): Promise<ClientHttp2Session> {
    const peer = `${req.host}:${req.port}`;
    const cert = await this.#in.certificates.fetch(req.sourceIdentity);
    const connectTls = this.#in.connectTls ?? connectTlsNoDelay;
    const socket = connectTls({
      host: req.host,
      port: req.port,
      secureContext: secureContextFor(cert),
      servername: sniForIdentity(req.serverIdentity),
      ALPNProtocols: [HBONE_TLS.alpn],
      minVersion: HBONE_TLS.minVersion,
      // Identity is checked against SPIFFE IDs below, not against DNS names.
      checkServerIdentity: () => undefined,
      rejectUnauthorized: true,
    });
    const timer = setTimeout(
      () => socket.destroy(new Error(`no tls handshake within ${this.#in.connectTimeoutMs} ms`)),
      this.#in.connectTimeoutMs,
    );
    try {
      await once(socket, 'secureConnect');
    } catch (err) {
      socket.destroy();
      const e = err as NodeJS.ErrnoException;
      throw e.code && /^(ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET)$/.test(e.code) || /handshake within/.test(e.message)
        ? hboneConnectFailed(peer, err)
        : tlsFailed(peer, err);
    } finally {
      clearTimeout(timer);
    }
    const got = peerSpiffeId(socket.getPeerCertificate());
    if (!got || !req.allowedIdentities.includes(got)) {
      socket.destroy();
      throw peerIdentityMismatch(got, req.allowedIdentities);
    }
    if (socket.alpnProtocol !== HBONE_TLS.alpn) {
      socket.destroy();
      throw tlsFailed(peer, new Error(`peer did not negotiate alpn h2 (got ${socket.alpnProtocol || 'none'})`));
    }
    const session = http2.connect(`https://${peer}`, {
      createConnection: () => socket,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: {
        enablePush: false,
        initialWindowSize: STREAM_WINDOW,
        maxFrameSize: MAX_FRAME_SIZE,
        maxHeaderListSize: MAX_HEADER_LIST_SIZE,
      },
    });
    session.setLocalWindowSize(CONNECTION_WINDOW);
    return session;
  }

  #retire(conn: PooledConnection, force: boolean): void {
    conn.closing = true;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    if (conn.session) {
      if (force) conn.session.destroy();
      else conn.session.close();
    }
    if (force || !conn.session) this.#remove(conn);
  }

  #remove(conn: PooledConnection): void {
    conn.closing = true;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    const list = this.#pools.get(conn.key);
    if (!list) return;
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#pools.delete(conn.key);
  }
}
