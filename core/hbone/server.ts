import http2, { type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../telemetry/log.js';
import { peerSpiffeId } from '../identity/certificate.js';
import { tryParseSpiffeId } from '../identity/spiffe.js';
import { canonicalIp } from '../model/ip.js';
import { quote } from '../validation/check.js';
import type { CertificateSource } from './client.js';
import { secureContextFor, HBONE_TLS } from './tls.js';
import {
  CONNECTION_WINDOW,
  MAX_FRAME_SIZE,
  MAX_HEADER_LIST_SIZE,
  MAX_SESSION_MEMORY_MB,
  MAX_STREAMS_PER_CONNECTION,
  STREAM_WINDOW,
} from './constants.js';
import { HboneError, badRequest, type ResponseFlag } from './status.js';

/** A validated CONNECT request, handed to the proxy that owns the server. */
export interface HboneStreamRequest {
  readonly stream: ServerHttp2Stream;
  /** Destination `ip:port` split up; the IP in the model's canonical text (`core/model/ip.ts`). */
  readonly targetIp: string;
  readonly targetPort: number;
  readonly authority: string;
  /** The client's verified SPIFFE ID (trust domain already checked). */
  readonly peerIdentity: string;
  /** The TCP peer: the source node's ztunnel (or waypoint). */
  readonly peerAddress: string;
  /** From `Forwarded: for="ip:port"`, when present and well formed. */
  readonly forwardedFor?: { ip: string; port?: number };
  readonly headers: http2.IncomingHttpHeaders;
}

/** A connection or request the server refused before handing anything to the proxy. */
export interface HboneRejection {
  readonly flag: ResponseFlag;
  readonly peerAddress?: string;
  readonly peerIdentity?: string;
  readonly reason: string;
}

export interface HboneServerInputs {
  readonly certificates: CertificateSource;
  readonly logger: Logger;
  readonly trustDomain: string;
  /** Maps the SNI the client sent to a local identity this server may present; undefined refuses. */
  readonly identityForSni: (sni: string) => string | undefined;
  readonly onStream: (req: HboneStreamRequest) => void;
  /** Called for every refused connection/stream, for metrics and logs. */
  readonly onReject?: (r: HboneRejection) => void;
}

const peerIdentities = new WeakMap<ServerHttp2Session, string>();

/**
 * The HBONE server: TLS 1.3 + ALPN h2 only, client certificate required and chained to the mesh
 * root, client SPIFFE ID in the local trust domain, CONNECT only.
 */
export class HboneServer {
  readonly server: Http2SecureServer;
  readonly #in: HboneServerInputs;
  readonly #sessions = new Set<ServerHttp2Session>();

  constructor(inputs: HboneServerInputs) {
    this.#in = inputs;
    const log = inputs.logger;
    this.server = http2.createSecureServer({
      allowHTTP1: false,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: HBONE_TLS.minVersion,
      ALPNProtocols: [HBONE_TLS.alpn],
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: {
        enablePush: false,
        initialWindowSize: STREAM_WINDOW,
        maxFrameSize: MAX_FRAME_SIZE,
        maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION,
        maxHeaderListSize: MAX_HEADER_LIST_SIZE,
      },
      // Node answers an over-long header block itself (RST_STREAM / 431); keep the count bounded too.
      maxHeaderListPairs: 64,
      SNICallback: (servername, cb) => {
        const identity = inputs.identityForSni(servername);
        if (!identity) {
          cb(new Error(`sni ${servername} names no identity served by this node`), undefined);
          return;
        }
        inputs.certificates.fetch(identity).then(
          (cert) => cb(null, secureContextFor(cert)),
          (err: Error) => cb(err, undefined),
        );
      },
    });
    this.server.on('tlsClientError', (err, socket) => {
      this.#reject({ flag: 'TLS', peerAddress: socket.remoteAddress, reason: `tls handshake failed: ${err.message}` });
    });
    this.server.on('unknownProtocol', (socket: TLSSocket) => {
      this.#reject({ flag: 'TLS', peerAddress: socket.remoteAddress, reason: 'client did not negotiate alpn h2' });
      socket.destroy();
    });
    // The raw TCP socket, before TLS: small CONNECT responses and window updates must not wait for Nagle.
    this.server.on('connection', (socket: import('node:net').Socket) => socket.setNoDelay(true));
    this.server.on('session', (session) => this.#onSession(session));
    this.server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    this.server.on('sessionError', (err) => log.debug({ err }, 'hbone session error'));
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting and sends GOAWAY so clients move new streams elsewhere; open streams finish. */
  drain(): void {
    this.server.close();
    for (const s of this.#sessions) s.close();
  }

  /** Closes everything now. */
  close(): void {
    this.server.close();
    for (const s of this.#sessions) s.destroy();
  }

  #reject(r: HboneRejection): void {
    this.#in.logger.warn({ peer: r.peerAddress, peer_identity: r.peerIdentity, response_flags: r.flag }, r.reason);
    this.#in.onReject?.(r);
  }

  #onSession(session: ServerHttp2Session): void {
    const socket = session.socket as TLSSocket;
    const peerAddress = socket.remoteAddress;
    // Runs before any frame of this session is parsed, so no stream is seen from a bad peer.
    const id = peerSpiffeId(socket.getPeerCertificate());
    const parsed = id ? tryParseSpiffeId(id) : undefined;
    if (!id || !parsed || parsed.trustDomain !== this.#in.trustDomain) {
      this.#reject({
        flag: 'TLS',
        peerAddress,
        peerIdentity: id,
        reason: !id
          ? 'client certificate has no single spiffe uri san'
          : `client identity ${id} is not in trust domain ${this.#in.trustDomain}`,
      });
      session.destroy();
      return;
    }
    peerIdentities.set(session, id);
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    session.on('error', () => {});
    session.setLocalWindowSize(CONNECTION_WINDOW);
  }

  #onStream(stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const peerIdentity = peerIdentities.get(stream.session as ServerHttp2Session);
    const peerAddress = stream.session?.socket?.remoteAddress ?? 'unknown';
    stream.on('error', () => {});
    if (!peerIdentity) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    try {
      const req = parseConnect(stream, headers, peerIdentity, peerAddress);
      this.#in.onStream(req);
    } catch (err) {
      const e = err instanceof HboneError ? err : badRequest(String(err));
      this.#reject({ flag: e.flag, peerAddress, peerIdentity, reason: e.message });
      respondError(stream, e.status);
    }
  }
}

/** Answers a CONNECT stream with an error status and closes it. */
export function respondError(stream: ServerHttp2Stream, status: number): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
  else stream.close(http2.constants.NGHTTP2_CANCEL);
}

function parseConnect(
  stream: ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  peerIdentity: string,
  peerAddress: string,
): HboneStreamRequest {
  // The advertised SETTINGS_MAX_HEADER_LIST_SIZE binds nghttp2 only once the client has
  // acknowledged the server's SETTINGS; a HEADERS frame sent before that is held to Node's default
  // (64 KiB). The limit is the same for every request: counted as RFC 9113, section 6.5.2 does
  // (name + value + 32 per field). CR, LF and NUL never get here: nghttp2 resets a request with
  // one in a pseudo-header and drops a regular field that holds one (RFC 9113, section 8.2.1).
  let size = 0;
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) size += name.length + String(v ?? '').length + 32;
  }
  if (size > MAX_HEADER_LIST_SIZE) throw badRequest(`header list of ${size} bytes exceeds ${MAX_HEADER_LIST_SIZE}`);
  const method = headers[':method'];
  if (method !== 'CONNECT') throw badRequest(`method ${method} is not CONNECT`);
  const authority = headers[':authority'];
  if (typeof authority !== 'string' || authority.length === 0) throw badRequest('missing :authority');
  const target = parseHostPort(authority);
  if (!target || target.port === undefined) throw badRequest(`authority ${quote(authority)} is not ip:port`);
  const fwd = headers['forwarded'];
  const forwardedFor = typeof fwd === 'string' ? parseForwardedFor(fwd) : undefined;
  return {
    stream,
    targetIp: target.ip,
    targetPort: target.port,
    authority,
    peerIdentity,
    peerAddress,
    ...(forwardedFor ? { forwardedFor } : {}),
    headers,
  };
}

/** Parses `1.2.3.4:80`, `[::1]:80` (and, for Forwarded, the same without a port). */
export function parseHostPort(s: string): { ip: string; port?: number } | undefined {
  let host: string;
  let portStr: string | undefined;
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1]!;
    portStr = v6[2];
  } else {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d+))?$/.exec(s);
    if (!m) return undefined;
    host = m[1]!;
    portStr = m[2];
  }
  // The canonical text (core/model/ip.ts), as the model stores addresses: `[::::]` or `[1:2]` is
  // no address (the character class above lets them through), `[FD00::0001]` is `fd00::1`, and an
  // IPv4-mapped address is the IPv4 one. Leading zeros in an IPv4 octet are refused (`isIP`).
  const ip = canonicalIp(host);
  if (ip === undefined) return undefined;
  if (portStr === undefined) return { ip };
  // At most 5 digits: a 1,000-digit port is not parsed into a number first.
  if (portStr.length > 5) return undefined;
  const port = Number(portStr);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { ip, port };
}

/** Reads the `for=` element of RFC 7239 `Forwarded`, e.g. `for="10.0.0.1:3456"`. */
export function parseForwardedFor(value: string): { ip: string; port?: number } | undefined {
  const m = /(?:^|[;,\s])for=("?)([^";,\s]+)\1/i.exec(value);
  return m ? parseHostPort(m[2]!) : undefined;
}

/** Formats `Forwarded: for="ip:port"` (IPv6 bracketed, as RFC 7239 requires). */
export function formatForwardedFor(ip: string, port: number): string {
  return `for="${ip.includes(':') ? `[${ip}]` : ip}:${port}"`;
}
