/**
 * `CaClient` over the control plane's CA (`POST /v1/certificates` on port 15012, HTTP/2 over
 * TLS). The caller authenticates with a bearer token (a node token in the lab; a service-account
 * token in a cluster); the control plane signs only identities the caller may hold.
 */
import http2, { type ClientHttp2Session } from 'node:http2';
import { MeshError } from '../errors.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { CA_PATH, formatHostPort, type CaRequest, type CaResponse } from './wire.js';
import { controlPlaneTlsOptions } from '../identity/control-plane-tls.js';
import type { CaClient, CaSignResult } from '../identity/secret-manager.js';
import type { TrustAnchors } from '../identity/trust-anchors.js';

/** The control plane refused or failed a certificate request. */
export class CaRequestError extends MeshError {
  /** HTTP status (0 when the request never got an answer). */
  readonly status: number;
  /** The control plane's error code (`ERR_IDENTITY_NOT_ALLOWED` ...), or a local one. */
  readonly reason: string;
  constructor(status: number, reason: string, message: string, options?: { cause?: unknown }) {
    super('ERR_CA_REQUEST', `certificate request failed${status ? ` (${status} ${reason})` : ''}: ${message}`, options);
    this.status = status;
    this.reason = reason;
  }
}

/** Inputs of `RemoteCaClient`. */
export interface RemoteCaClientInputs {
  /** The control plane, `host:port`. */
  readonly address: { host: string; port: number };
  /** The bearer token, read on every request (tokens rotate). */
  readonly token: () => Promise<string>;
  /** Roots the control plane's certificate must chain to; updated with every answer's bundle. */
  readonly trust: TrustAnchors;
  /** SPIFFE ID the control plane must present. */
  readonly serverIdentity: string;
  /** Lifetime to ask for; the control plane caps it. */
  readonly ttlSeconds?: number;
  /** Deadline of one request. */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
}

/** One request's deadline: long enough for a busy control plane, short enough to retry soon. */
export const DEFAULT_CA_TIMEOUT_MS = 10_000;
/** A connection with no request for this long is closed; certificates are requested rarely. */
const IDLE_CLOSE_MS = 30_000;
/** Largest answer accepted: a chain and a bundle are a few KiB. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/**
 * @example
 * const ca = new RemoteCaClient({ address: { host: '10.0.0.1', port: 15012 }, token: () => readFile(tokenFile, 'utf8'), trust, serverIdentity });
 * const secrets = new SecretManager({ caClient: ca });
 */
export class RemoteCaClient implements CaClient {
  readonly #in: RemoteCaClientInputs;
  readonly #log: Logger;
  #session: ClientHttp2Session | undefined;
  #closed = false;

  constructor(inputs: RemoteCaClientInputs) {
    this.#in = inputs;
    this.#log = inputs.logger ?? silentLogger;
  }

  /**
   * Sends the CSR for `identity`; resolves with the chain and the trust bundle.
   *
   * @throws CaRequestError with the control plane's status and reason, or status 0 for a
   *   connection failure or timeout.
   */
  async sign(csrPem: string, identity: string): Promise<CaSignResult> {
    if (this.#closed) throw new CaRequestError(0, 'closed', 'the ca client is closed');
    let token: string;
    try {
      token = (await this.#in.token()).trim();
    } catch (err) {
      throw new CaRequestError(0, 'token', `cannot read the node token (${(err as Error).message}); check NODE_TOKEN_FILE`, { cause: err });
    }
    const body: CaRequest = { csr: csrPem, identity, ...(this.#in.ttlSeconds !== undefined ? { ttlSeconds: this.#in.ttlSeconds } : {}) };
    const { status, text } = await this.#request(token, JSON.stringify(body));
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CaRequestError(status, 'bad_response', `the control plane answered ${status} with a body that is not JSON`);
    }
    if (status !== 200) {
      const e = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
      const code = typeof e?.code === 'string' ? e.code : 'unknown';
      const msg = typeof e?.message === 'string' ? e.message : text.slice(0, 200);
      throw new CaRequestError(status, code, msg);
    }
    const r = parsed as Partial<CaResponse>;
    const okList = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string');
    if (!okList(r.certChain) || !okList(r.roots)) {
      throw new CaRequestError(status, 'bad_response', 'the answer lacks certChain or roots');
    }
    if (this.#in.trust.update(r.roots)) this.#log.info({ roots: r.roots.length }, 'control plane trust bundle updated');
    return { certChainPem: r.certChain, rootsPem: r.roots };
  }

  /** Closes the connection; later `sign` calls fail. */
  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }

  #connect(): ClientHttp2Session {
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) return s;
    const session = http2.connect(`https://${formatHostPort(this.#in.address)}`, {
      ...controlPlaneTlsOptions({ trust: this.#in.trust, serverIdentity: this.#in.serverIdentity }),
    });
    session.on('error', (err) => this.#log.debug({ err }, 'ca connection error'));
    session.setTimeout(IDLE_CLOSE_MS, () => session.close());
    session.once('close', () => {
      if (this.#session === session) this.#session = undefined;
    });
    // CA calls are rare; never keep a process alive for this connection alone.
    session.unref();
    this.#session = session;
    return session;
  }

  #request(token: string, body: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let session: ClientHttp2Session;
      try {
        session = this.#connect();
      } catch (err) {
        reject(new CaRequestError(0, 'connect', (err as Error).message, { cause: err }));
        return;
      }
      const where = formatHostPort(this.#in.address);
      const stream = session.request({
        ':method': 'POST',
        ':path': CA_PATH,
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
      });
      let status = 0;
      const chunks: Buffer[] = [];
      let size = 0;
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        fail(new CaRequestError(0, 'timeout', `no answer from the control plane at ${where} within ${this.#in.timeoutMs ?? DEFAULT_CA_TIMEOUT_MS} ms`));
      }, this.#in.timeoutMs ?? DEFAULT_CA_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_RESPONSE_BYTES) {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          fail(new CaRequestError(status, 'bad_response', 'the answer is larger than 1 MiB'));
          return;
        }
        chunks.push(d);
      });
      stream.on('end', () => {
        clearTimeout(timer);
        resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
      });
      stream.on('error', (err: Error) =>
        fail(new CaRequestError(0, 'connect', `cannot reach the control plane at ${where}: ${err.message}; check CONTROL_PLANE_ADDRESS and that the control plane runs`, { cause: err })),
      );
      stream.end(body);
    });
  }
}
