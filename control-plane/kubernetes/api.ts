/**
 * The few calls the control plane makes to the Kubernetes API, behind one small interface:
 * one JSON request, and one watch stream. The implementation takes its server, credentials and
 * TLS settings from a client-node `KubeConfig` (a kubeconfig file, or the in-cluster service
 * account, whose token file is re-read as it rotates) and streams watches with client-node's
 * `Watch`. Everything above this file sees plain JSON objects, never client-node's typed models.
 */
import http from 'node:http';
import https from 'node:https';
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { MeshError } from '../../core/errors.js';

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

/** A request to the Kubernetes API failed: `status` is the HTTP status (0 when unreachable). */
export class KubeApiError extends MeshError {
  readonly status: number;
  /** The `reason` of the API server's Status (`Conflict`, `NotFound`, `Expired`...). */
  readonly reason: string | undefined;
  constructor(method: string, path: string, status: number, message: string, reason?: string, options?: { cause?: unknown }) {
    const hint =
      status === 0
        ? 'check that the api server is reachable (KUBECONFIG, or KUBERNETES_SERVICE_HOST in a pod)'
        : status === 401
          ? "check the control plane's credentials"
          : status === 403
            ? "check the control plane's RBAC (docs/kubernetes.md lists what it needs)"
            : status === 404
              ? 'check that the resource (its CRD) is installed'
              : 'the api server refused it';
    super('ERR_KUBE_API', `kubernetes api ${method} ${path}: ${status === 0 ? 'unreachable' : `status ${status}`}${reason ? ` ${reason}` : ''}: ${message}; ${hint}`, options);
    this.status = status;
    this.reason = reason;
  }
}

/** How long one non-watch request may take before it is abandoned. */
const REQUEST_TIMEOUT_MS = 30_000;

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

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new MeshError('ERR_KUBE_CONFIG', 'the kubeconfig has no current cluster; check KUBECONFIG and its current-context');
    this.#kc = kc;
    this.#watch = new Watch(kc);
    this.server = cluster.server.replace(/\/+$/, '');
  }

  async request<T = KubeObject>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    const options: https.RequestOptions = {};
    try {
      // Credentials are applied per request: a projected token file is re-read as it rotates.
      await this.#kc.applyToHTTPSOptions(options);
    } catch (err) {
      throw new KubeApiError(method, path, 0, `cannot apply the kubeconfig credentials: ${(err as Error).message}`, undefined, { cause: err });
    }
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: http.OutgoingHttpHeaders = { ...((options.headers ?? {}) as http.OutgoingHttpHeaders), accept: 'application/json' };
    if (body) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = body.length;
    }
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise<T>((resolve, reject) => {
      const req = mod.request(url, { method, headers, agent: options.agent, ...(options.auth ? { auth: options.auth } : {}), timeout: REQUEST_TIMEOUT_MS }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new KubeApiError(method, path, 0, err.message, undefined, { cause: err })));
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
          reject(new KubeApiError(method, path, status >= 200 && status < 300 ? 0 : status, json === undefined ? `the answer is not JSON: ${message}` : message, typeof s?.reason === 'string' ? s.reason : undefined));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      if (opts.deadlineMs !== undefined) {
        const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${opts.deadlineMs} ms`)), opts.deadlineMs);
        req.on('close', () => clearTimeout(deadline));
      }
      req.on('error', (err) => reject(new KubeApiError(method, path, 0, err.message, undefined, { cause: err })));
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
        reject(status !== undefined ? new KubeApiError('GET', `${path} (watch)`, status, (err as Error).message) : new KubeApiError('GET', `${path} (watch)`, 0, (err as Error).message, undefined, { cause: err }));
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
