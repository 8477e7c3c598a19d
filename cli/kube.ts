/**
 * The cluster side of `ambientctl`: which kubeconfig (as kubectl finds it) and a small REST client
 * over it. Requests go through node's http(s) with the agent and headers `@kubernetes/client-node`'s
 * `KubeConfig` prepares (client certificates, tokens, exec plugins, proxies), so the wire is plain
 * Kubernetes REST: GET/POST/PATCH (merge patch)/DELETE, plus GETs on a pod's own port through the
 * `portforward` subresource (port-forward.ts).
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { getThroughPortForward } from './port-forward.js';

/** What decides the kubeconfig: `--kubeconfig`, `--context`, and `$KUBECONFIG` / `$HOME` from the environment. */
export interface KubeconfigInputs {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly env: { readonly KUBECONFIG?: string; readonly HOME?: string };
}

export interface LoadedKubeconfig {
  readonly kc: KubeConfig;
  /** The files read, in order. */
  readonly files: readonly string[];
  readonly context: string;
  readonly server: string;
}

/**
 * Finds and loads the kubeconfig the way kubectl does: `--kubeconfig`, else every existing file of
 * `$KUBECONFIG` (merged, the first one's current context wins), else `~/.kube/config`. There is no
 * in-cluster or localhost fallback: no kubeconfig is an error that says where it looked.
 *
 * @example
 * const { kc, server } = loadKubeconfig({ context: 'kind-ambient', env: process.env });
 */
export function loadKubeconfig(inputs: KubeconfigInputs): LoadedKubeconfig {
  let files: string[];
  if (inputs.kubeconfig !== undefined) {
    if (!existsSync(inputs.kubeconfig)) throw new CliError(CLI_ERROR_CODES.NO_KUBECONFIG, `--kubeconfig ${inputs.kubeconfig}: no such file`);
    files = [inputs.kubeconfig];
  } else if (inputs.env.KUBECONFIG) {
    const listed = inputs.env.KUBECONFIG.split(delimiter).filter(Boolean);
    files = listed.filter((f) => existsSync(f));
    if (files.length === 0) throw new CliError(CLI_ERROR_CODES.NO_KUBECONFIG, `no kubeconfig: none of the files in $KUBECONFIG exists (${listed.join(delimiter)})`);
  } else {
    const home = inputs.env.HOME ? join(inputs.env.HOME, '.kube', 'config') : undefined;
    if (!home || !existsSync(home)) {
      throw new CliError(
        CLI_ERROR_CODES.NO_KUBECONFIG,
        `no kubeconfig: no --kubeconfig, $KUBECONFIG is unset and ${home ?? '~/.kube/config'} does not exist; for the lab on this machine add --lab`,
      );
    }
    files = [home];
  }
  const kc = new KubeConfig();
  for (const [i, f] of files.entries()) {
    try {
      if (i === 0) kc.loadFromFile(f);
      else {
        const more = new KubeConfig();
        more.loadFromFile(f);
        kc.mergeConfig(more, true);
      }
    } catch (err) {
      throw new CliError(CLI_ERROR_CODES.NO_KUBECONFIG, `kubeconfig ${f} cannot be read: ${(err as Error).message}`, { cause: err });
    }
  }
  if (inputs.context !== undefined) {
    if (!kc.getContextObject(inputs.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new CliError(CLI_ERROR_CODES.NO_CONTEXT, `--context ${inputs.context}: no such context in ${files.join(', ')} (contexts: ${known.join(', ') || 'none'})`);
    }
    kc.setCurrentContext(inputs.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new CliError(CLI_ERROR_CODES.NO_CONTEXT, `kubeconfig ${files.join(', ')}: the current context ${JSON.stringify(kc.getCurrentContext())} names no cluster; use --context`);
  }
  return { kc, files, context: kc.getCurrentContext(), server: cluster.server };
}

/** The `Status` object the API server sends with errors. */
interface KubeStatus {
  readonly kind?: string;
  readonly message?: string;
  readonly reason?: string;
}

/** An API server answer outside 2xx; `status` is the HTTP status. */
export class KubeApiError extends CliError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(CLI_ERROR_CODES.API, message);
  }
}

export interface KubeRequest {
  readonly body?: unknown;
  /** `application/json` by default; `application/merge-patch+json` for PATCH. */
  readonly contentType?: string;
}

/**
 * A Kubernetes REST client for one kubeconfig context.
 *
 * @example
 * const kube = new KubeClient({ kubeconfig: loadKubeconfig({ env: process.env }) });
 * const ns = await kube.get<Namespace>('/api/v1/namespaces/default');
 */
export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #timeoutMs: number;

  constructor(inputs: { kubeconfig: LoadedKubeconfig; timeoutMs?: number }) {
    this.#kc = inputs.kubeconfig.kc;
    try {
      this.#server = new URL(inputs.kubeconfig.server);
    } catch {
      throw new CliError(CLI_ERROR_CODES.NO_KUBECONFIG, `kubeconfig: the cluster server ${JSON.stringify(inputs.kubeconfig.server)} is not a URL`);
    }
    // 15 s: long enough for a loaded API server, short enough that a wrong address fails soon.
    this.#timeoutMs = inputs.timeoutMs ?? 15_000;
  }

  get server(): string {
    return this.#server.origin;
  }

  /** Sends one request; resolves with any HTTP status, rejects only when the server cannot be reached. */
  async raw(method: string, path: string, req: KubeRequest = {}): Promise<{ status: number; body: string }> {
    const url = new URL(this.#server.pathname.replace(/\/$/, '') + path, this.#server);
    const opts: https.RequestOptions = { method, headers: { accept: 'application/json' } };
    try {
      await this.#kc.applyToHTTPSOptions(opts);
    } catch (err) {
      throw new CliError(CLI_ERROR_CODES.NO_KUBECONFIG, `kubeconfig context ${this.#kc.getCurrentContext()}: ${(err as Error).message}`, { cause: err });
    }
    const payload = req.body === undefined ? undefined : JSON.stringify(req.body);
    const headers: Record<string, string | number> = { ...(opts.headers as Record<string, string>), accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = req.contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const r = mod.request(url, { ...opts, headers, timeout: this.#timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(this.#unreachable(err)));
      });
      r.on('timeout', () => r.destroy(new Error(`no answer in ${this.#timeoutMs / 1000} s`)));
      r.on('error', (err) => reject(this.#unreachable(err)));
      r.end(payload);
    });
  }

  #unreachable(err: Error): CliError {
    const code = (err as NodeJS.ErrnoException).code;
    return new CliError(
      CLI_ERROR_CODES.UNREACHABLE,
      `cannot reach the API server ${this.server} (context ${this.#kc.getCurrentContext()}): ${code ? `${code} ` : ''}${err.message}; check the kubeconfig's server address and that the cluster is up`,
      { cause: err },
    );
  }

  /** A JSON request; a non-2xx answer throws `KubeApiError` carrying the server's message. */
  async json<T>(method: string, path: string, req: KubeRequest = {}): Promise<T> {
    const res = await this.raw(method, path, req);
    if (res.status >= 200 && res.status < 300) {
      try {
        return JSON.parse(res.body) as T;
      } catch {
        throw new KubeApiError(res.status, `${method} ${path}: the API server ${this.server} answered ${res.status} with a body that is not JSON`);
      }
    }
    throw new KubeApiError(res.status, `${method} ${path}: ${describeStatus(res.status, res.body)}`);
  }

  /**
   * `GET path` on `localhost:port` inside a pod (a port-forward, as kubectl's): reaches listeners
   * bound to the pod's loopback, which the pod proxy cannot. Resolves with any HTTP status.
   */
  async podGet(namespace: string, pod: string, port: number, path: string): Promise<{ status: number; body: string }> {
    return getThroughPortForward(this.#kc, this.server, { namespace, pod, port }, path, this.#timeoutMs);
  }

  /** GET, with 404 as undefined. */
  async get<T>(path: string): Promise<T | undefined> {
    try {
      return await this.json<T>('GET', path);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }
}

/** `403 Forbidden: gateways is forbidden: ...`, with a hint for the statuses operators act on. */
export function describeStatus(status: number, body: string): string {
  let s: KubeStatus = {};
  try {
    s = JSON.parse(body) as KubeStatus;
  } catch {
    // not a Status object
  }
  const text = s.message ?? (body.trim().slice(0, 300) || '(empty body)');
  const hint = status === 401 ? '; check the kubeconfig credentials' : status === 403 ? '; check your RBAC permissions' : '';
  return `${status}${s.reason ? ` ${s.reason}` : ''}: ${text}${hint}`;
}

/** `/api/v1/...` or `/apis/group/version/...` path of a resource. */
export function resourcePath(r: { group?: string; version: string; plural: string; namespace?: string; name?: string; subresource?: string; query?: Record<string, string | undefined> }): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespace !== undefined ? `/namespaces/${encodeURIComponent(r.namespace)}` : '';
  const name = r.name !== undefined ? `/${encodeURIComponent(r.name)}` : '';
  const sub = r.subresource ? `/${r.subresource}` : '';
  const q = Object.entries(r.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '');
  return `${base}${ns}/${r.plural}${name}${sub}${q.length ? `?${new URLSearchParams(q).toString()}` : ''}`;
}
