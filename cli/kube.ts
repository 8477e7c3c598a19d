/**
 * The cluster side of `ambientctl`: which kubeconfig (as kubectl finds it), and the project's one
 * Kubernetes REST client (core/kube/api.ts) over it with its failures worded for the command line.
 * Requests go through node's http(s) with the agent and headers `@kubernetes/client-node`'s
 * `KubeConfig` prepares (client certificates, tokens, exec plugins, proxies), so the wire is plain
 * Kubernetes REST: GET/POST/PATCH (merge patch)/DELETE, plus GETs on a pod's own port through the
 * `portforward` subresource (port-forward.ts).
 */
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, KubeConfigApi } from '../core/kube/api.js';
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

export interface KubeRequest {
  readonly body?: unknown;
  /** `application/json` by default; `application/merge-patch+json` for PATCH. */
  readonly contentType?: string;
}

/**
 * The HTTP status of a failed API request (`KubeApiError`, also when the cli has worded it as a
 * `CliError` with it as the cause), else undefined.
 */
export function apiStatus(err: unknown): number | undefined {
  const api = err instanceof KubeApiError ? err : err instanceof CliError && err.cause instanceof KubeApiError ? err.cause : undefined;
  return api && api.failure === 'status' ? api.status : undefined;
}

/**
 * The project's Kubernetes client (core/kube/api.ts) for one kubeconfig context, with its failures
 * worded for the command line: `ERR_CLI_UNREACHABLE`, `ERR_CLI_NO_KUBECONFIG` or `ERR_CLI_API`
 * (docs/ambientctl.md), each with the `KubeApiError` as its cause.
 *
 * @example
 * const kube = new KubeClient({ kubeconfig: loadKubeconfig({ env: process.env }) });
 * const ns = await kube.get<Namespace>('/api/v1/namespaces/default');
 */
export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #api: KubeConfigApi;
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
    this.#api = new KubeConfigApi(this.#kc, { requestTimeoutMs: this.#timeoutMs });
  }

  get server(): string {
    return this.#server.origin;
  }

  /** A JSON request; any failure is a `CliError` (an error status: `ERR_CLI_API` carrying the server's message). */
  async json<T>(method: string, path: string, req: KubeRequest = {}): Promise<T> {
    try {
      return await this.#api.request<T>(method, path, {
        ...(req.body !== undefined ? { body: req.body } : {}),
        ...(req.contentType !== undefined ? { contentType: req.contentType } : {}),
      });
    } catch (err) {
      throw err instanceof KubeApiError ? this.#worded(err) : err;
    }
  }

  #worded(err: KubeApiError): CliError {
    const context = this.#kc.getCurrentContext();
    switch (err.failure) {
      case 'unreachable': {
        const cause = err.cause as NodeJS.ErrnoException | undefined;
        const code = cause?.code;
        return new CliError(
          CLI_ERROR_CODES.UNREACHABLE,
          `cannot reach the API server ${this.server} (context ${context}): ${code ? `${code} ` : ''}${cause?.message ?? err.detail}; check the kubeconfig's server address and that the cluster is up`,
          { cause: err },
        );
      }
      case 'credentials':
        return new CliError(CLI_ERROR_CODES.NO_KUBECONFIG, `kubeconfig context ${context}: ${err.detail}`, { cause: err });
      case 'malformed':
        return new CliError(CLI_ERROR_CODES.API, `${err.method} ${err.path}: the API server ${this.server} answered with something that is not a Kubernetes object (${err.detail})`, { cause: err });
      case 'status': {
        const hint = err.status === 401 ? '; check the kubeconfig credentials' : err.status === 403 ? '; check your RBAC permissions' : '';
        return new CliError(CLI_ERROR_CODES.API, `${err.method} ${err.path}: ${err.status}${err.reason ? ` ${err.reason}` : ''}: ${err.detail}${hint}`, { cause: err });
      }
    }
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
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }
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
