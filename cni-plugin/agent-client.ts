/**
 * The client side of the agent's Unix-socket API (api.ts), used by the CNI plugin and by
 * `ambientctl`. Every call is bounded: a connect that does not complete within
 * `connectTimeoutMs`, or an answer that does not arrive within `requestTimeoutMs`, fails with
 * {@link AgentUnavailableError}, so a dead or wedged agent never hangs a pod sandbox.
 */
import http from 'node:http';
import { MeshError } from '../core/errors.js';
import {
  AGENT_PATHS,
  type AddResponse,
  type AgentState,
  type CheckResponse,
  type DelResponse,
  type ErrorBody,
  type PodRequest,
} from './api.js';

/** The agent could not be reached or did not answer in time. */
export class AgentUnavailableError extends MeshError {
  readonly socketPath: string;
  constructor(socketPath: string, why: string, options?: { cause?: unknown }) {
    super('ERR_AGENT_UNAVAILABLE', `node agent at ${socketPath} ${why}; check that the ambient node agent runs on this node (and that the plugin's agentSocket matches its AGENT_SOCKET)`, options);
    this.socketPath = socketPath;
  }
}

/** The agent answered with an error body; `agentCode` is one of api.ts's AGENT_ERROR_CODES. */
export class AgentRequestError extends MeshError {
  readonly agentCode: string;
  readonly status: number;
  constructor(agentCode: string, status: number, message: string) {
    super('ERR_AGENT_REQUEST', message);
    this.agentCode = agentCode;
    this.status = status;
  }
}

export interface AgentClientOptions {
  readonly socketPath: string;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

/** Answers larger than this are not an agent talking. */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

/**
 * @example
 * const agent = new AgentClient({ socketPath: '/var/run/ambient/cni.sock', connectTimeoutMs: 1000, requestTimeoutMs: 20000 });
 * const { mode } = await agent.add({ containerId: 'abc', podNamespace: 'default', podName: 'web-0' });
 */
export class AgentClient {
  constructor(private readonly opts: AgentClientOptions) {}

  add(req: PodRequest): Promise<AddResponse> {
    return this.call<AddResponse>('POST', AGENT_PATHS.add, req);
  }

  del(req: PodRequest): Promise<DelResponse> {
    return this.call<DelResponse>('POST', AGENT_PATHS.del, req);
  }

  check(req: PodRequest): Promise<CheckResponse> {
    return this.call<CheckResponse>('POST', AGENT_PATHS.check, req);
  }

  state(): Promise<AgentState> {
    return this.call<AgentState>('GET', AGENT_PATHS.state);
  }

  private call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const { socketPath, connectTimeoutMs, requestTimeoutMs } = this.opts;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, value?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        clearTimeout(requestTimer);
        if (err) {
          req.destroy();
          reject(err);
        } else {
          resolve(value as T);
        }
      };
      const req = http.request({
        socketPath,
        method,
        path,
        agent: false,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      });
      const connectTimer = setTimeout(() => finish(new AgentUnavailableError(socketPath, `did not accept a connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
      const requestTimer = setTimeout(() => finish(new AgentUnavailableError(socketPath, `did not answer ${method} ${path} within ${requestTimeoutMs} ms`)), requestTimeoutMs);
      req.on('socket', (s) => {
        // A Unix socket connects at once or fails at once; only a wedged listener leaves it pending.
        if (!s.connecting) clearTimeout(connectTimer);
        else s.once('connect', () => clearTimeout(connectTimer));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'ENOENT'
            ? 'is not there (no socket file)'
            : err.code === 'ECONNREFUSED'
              ? 'refused the connection (nothing listens on the socket)'
              : err.code === 'EACCES'
                ? 'cannot be opened (permission denied: the plugin runs as root)'
                : `failed: ${err.code ?? err.message}`;
        finish(new AgentUnavailableError(socketPath, why, { cause: err }));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size > MAX_RESPONSE_BYTES) finish(new AgentRequestError('ERR_BAD_RESPONSE', res.statusCode ?? 0, `the agent's answer to ${path} exceeds ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(d);
        });
        res.on('error', (err) => finish(new AgentUnavailableError(socketPath, `closed the connection mid-answer (${err.message})`, { cause: err })));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            finish(new AgentRequestError('ERR_BAD_RESPONSE', res.statusCode ?? 0, `the agent answered ${path} with status ${res.statusCode} and a body that is not JSON: ${text.slice(0, 200)}`));
            return;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            finish(undefined, parsed as T);
            return;
          }
          const e = (parsed as Partial<ErrorBody>)?.error;
          finish(
            new AgentRequestError(
              typeof e?.code === 'string' ? e.code : 'ERR_BAD_RESPONSE',
              status,
              typeof e?.message === 'string' ? e.message : `the agent answered ${path} with status ${status}`,
            ),
          );
        });
      });
      req.end(payload);
    });
  }
}
