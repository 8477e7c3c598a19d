/**
 * The project's one Kubernetes REST client, behind one small interface: one JSON request, and one
 * watch stream. The control plane (informers, TokenReview, leases, statuses) and `ambientctl` both
 * use it. The implementation takes its server, credentials and TLS settings from a client-node
 * `KubeConfig` (a kubeconfig file, or the in-cluster service account, whose token file is re-read
 * as it rotates) and streams watches with client-node's `Watch`. Everything above this file sees
 * plain JSON objects, never client-node's typed models.
 */
import http from 'node:http';
import https from 'node:https';
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { MeshError } from '../errors.js';

/** A Kubernetes object as JSON. */
export type KubeObject = Record<string, unknown> & { metadata?: Record<string, unknown> };

/** One line of a watch stream. */
export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: KubeObject;
}

/** A running watch. */
export interface WatchHandle {
  /** Settles when the stream ends: resolves when it closed (by the server, a drop or `stop`), rejects on an HTTP error. */
  readonly done: Promise<void>;
  stop(): void;
}

/** What the Kubernetes source needs from the API server. */
export interface KubeApi {
  /**
   * One request with a JSON body (or none) and a JSON answer.
   *
   * @throws KubeApiError on any status other than 2xx, or when the server cannot be reached.
   */
  request<T = KubeObject>(method: string, path: string, opts?: RequestOptions): Promise<T>;
  /** Opens a watch (`watch=true` is added) and calls `onEvent` for each event. */
  watch(path: string, query: Record<string, string>, onEvent: (e: WatchEvent) => void): Promise<WatchHandle>;
  /** For messages: the server's URL. */
  readonly server: string;
}

/** Options of one request. */
export interface RequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  readonly query?: Record<string, string>;
  /** The whole request's deadline (default 30 s of idle socket): leader election needs a hard one. */
  readonly deadlineMs?: number;
}

/**
 * Why a request failed: the server answered an error `status`; it could not be `unreachable` (no
 * connection, a dropped one, no answer in time); the kubeconfig's `credentials` could not be
 * applied; or the answer was `malformed` (not JSON, or not the shape a list or watch has).
 */
export type KubeFailure = 'status' | 'unreachable' | 'credentials' | 'malformed';

/**
 * A request to the Kubernetes API failed. `status` is the HTTP status (0 when there was no error
 * status: see `failure`); `detail` is the server's own message (or the transport's), without the
 * hint the message adds, for callers that word the failure for their own users (the cli does).
 */
export class KubeApiError extends MeshError {
  readonly status: number;
  /** The `reason` of the API server's Status (`Conflict`, `NotFound`, `Expired`...). */
  readonly reason: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly detail: string;
  readonly failure: KubeFailure;
  constructor(method: string, path: string, status: number, message: string, reason?: string, options?: { cause?: unknown; failure?: KubeFailure }) {
    // Without a status, a failure the caller did not classify is an answer it could not use.
    const failure = options?.failure ?? (status === 0 ? 'malformed' : 'status');
    const hint =
      failure === 'unreachable'
        ? 'check that the api server is reachable (the kubeconfig, or KUBERNETES_SERVICE_HOST in a pod)'
        : failure === 'credentials'
          ? 'check the kubeconfig (its user, token file or exec plugin)'
          : status === 401
            ? 'check the credentials (the kubeconfig, or the service-account token)'
            : status === 403
              ? "check the account's RBAC (docs/kubernetes.md lists what the control plane needs)"
              : status === 404
                ? 'check that the resource (its CRD) is installed'
                : 'the api server refused it';
    const what = failure === 'unreachable' ? 'unreachable' : status === 0 ? 'unusable answer' : `status ${status}`;
    super('ERR_KUBE_API', `kubernetes api ${method} ${path}: ${what}${reason ? ` ${reason}` : ''}: ${message}; ${hint}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.reason = reason;
    this.method = method;
    this.path = path;
    this.detail = message;
    this.failure = failure;
  }
}

/** How long one non-watch request may go without an answer before it is abandoned, by default. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface KubeConfigApiOptions {
  /** Socket idle time after which a request fails as unreachable (default 30 s). */
  readonly requestTimeoutMs?: number;
}

/**
 * The API as a `KubeConfig` describes it.
 *
 * @example
 * const kc = new KubeConfig(); kc.loadFromFile(process.env.KUBECONFIG!);
 * const api = new KubeConfigApi(kc);
 * const pods = await api.request<{ items: KubeObject[] }>('GET', '/api/v1/pods');
 */
export class KubeConfigApi implements KubeApi {
  readonly #kc: KubeConfig;
  readonly #watch: Watch;
  readonly server: string;
  readonly #timeoutMs: number;

  constructor(kc: KubeConfig, opts: KubeConfigApiOptions = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new MeshError('ERR_KUBE_CONFIG', 'the kubeconfig has no current cluster; check KUBECONFIG and its current-context');
    this.#kc = kc;
    this.#watch = new Watch(kc);
    this.server = cluster.server.replace(/\/+$/, '');
    this.#timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  async request<T = KubeObject>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    const options: https.RequestOptions = {};
    try {
      // Credentials are applied per request: a projected token file is re-read as it rotates.
      await this.#kc.applyToHTTPSOptions(options);
    } catch (err) {
      throw new KubeApiError(method, path, 0, `cannot apply the kubeconfig credentials: ${(err as Error).message}`, undefined, { cause: err, failure: 'credentials' });
    }
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: http.OutgoingHttpHeaders = { ...((options.headers ?? {}) as http.OutgoingHttpHeaders), accept: 'application/json' };
    if (body) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = body.length;
    }
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise<T>((resolve, reject) => {
      const req = mod.request(url, { method, headers, agent: options.agent, ...(options.auth ? { auth: options.auth } : {}), timeout: this.#timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new KubeApiError(method, path, 0, err.message, undefined, { cause: err, failure: 'unreachable' })));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text === '' ? {} : JSON.parse(text);
          } catch {
            json = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300 && json !== undefined) return resolve(json as T);
          const s = json as { message?: unknown; reason?: unknown } | undefined;
          const message = typeof s?.message === 'string' ? s.message : text.slice(0, 200) || res.statusMessage || 'no message';
          const ok = status >= 200 && status < 300;
          reject(new KubeApiError(method, path, ok ? 0 : status, json === undefined ? `the answer (${status}) is not JSON: ${message}` : message, typeof s?.reason === 'string' ? s.reason : undefined, { failure: ok ? 'malformed' : 'status' }));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`)));
      if (opts.deadlineMs !== undefined) {
        const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${opts.deadlineMs} ms`)), opts.deadlineMs);
        req.on('close', () => clearTimeout(deadline));
      }
      req.on('error', (err) => reject(new KubeApiError(method, path, 0, err.message, undefined, { cause: err, failure: 'unreachable' })));
      req.end(body);
    });
  }

  async watch(path: string, query: Record<string, string>, onEvent: (e: WatchEvent) => void): Promise<WatchHandle> {
    let settle!: (err: unknown) => void;
    let stopped = false;
    const done = new Promise<void>((resolve, reject) => {
      settle = (err) => {
        if (!err || stopped) return resolve();
        const status = (err as { statusCode?: number }).statusCode;
        reject(status !== undefined ? new KubeApiError('GET', `${path} (watch)`, status, (err as Error).message) : new KubeApiError('GET', `${path} (watch)`, 0, (err as Error).message, undefined, { cause: err, failure: 'unreachable' }));
      };
    });
    let controller: AbortController | undefined;
    try {
      controller = await this.#watch.watch(
        path,
        query,
        (type: string, object: unknown) => {
          if (stopped || typeof object !== 'object' || object === null) return;
          onEvent({ type: type as WatchEvent['type'], object: object as KubeObject });
        },
        (err: unknown) => settle(err),
      );
    } catch (err) {
      settle(err);
    }
    return {
      done,
      stop: () => {
        stopped = true;
        controller?.abort();
        settle(null);
      },
    };
  }
}
