/**
 * The agent's HTTP API (api.ts): the CNI calls on the root-only Unix socket, and the read-only
 * state (also on an optional localhost port). Errors map to statuses here and nowhere else.
 */
import http from 'node:http';
import net from 'node:net';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../core/telemetry/log.js';
import { AGENT_ERROR_CODES, AGENT_PATHS, type ErrorBody, type PodRequest } from '../api.js';
import { AgentApiError, type Reconciler } from './reconciler.js';
import { MeshError } from '../../core/errors.js';

/** CNI bodies are a few hundred bytes; anything this large is not the plugin. */
const MAX_BODY_BYTES = 64 * 1024;

export interface ServerInputs {
  readonly reconciler: Reconciler;
  readonly logger: Logger;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  const body: ErrorBody = { error: { code, message } };
  send(res, status, body);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new AgentApiError(AGENT_ERROR_CODES.badRequest, 413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const optString = (v: unknown): v is string | undefined => v === undefined || typeof v === 'string';

/** Checks a CNI call's body; the plugin only asks for pods it has a namespace and name for. */
export function parsePodRequest(text: string): PodRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AgentApiError(AGENT_ERROR_CODES.badRequest, 400, 'request body is not JSON');
  }
  const b = body as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new AgentApiError(AGENT_ERROR_CODES.badRequest, 400, 'request body is not a JSON object');
  if (typeof b['containerId'] !== 'string' || b['containerId'] === '') problems.push('containerId is required');
  for (const k of ['podNamespace', 'podName', 'podUid', 'netns', 'ifname', 'cgroup']) if (!optString(b[k])) problems.push(`${k} must be a string`);
  if (b['ips'] !== undefined && !(Array.isArray(b['ips']) && b['ips'].every((x) => typeof x === 'string'))) problems.push('ips must be a list of strings');
  if (problems.length > 0) throw new AgentApiError(AGENT_ERROR_CODES.badRequest, 400, `bad request: ${problems.join('; ')}`);
  return b as unknown as PodRequest;
}

function needPod(req: PodRequest): void {
  if (!req.podNamespace || !req.podName) throw new AgentApiError(AGENT_ERROR_CODES.badRequest, 400, 'bad request: podNamespace and podName are required');
}

/** The full API: CNI calls and state. */
export function apiHandler(inputs: ServerInputs, opts: { readOnly: boolean }): http.RequestListener {
  const { reconciler, logger } = inputs;
  return (req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0];
      try {
        if (req.method === 'GET' && path === AGENT_PATHS.state) return send(res, 200, reconciler.state());
        if (req.method === 'GET' && path === AGENT_PATHS.ready) return send(res, reconciler.ready ? 200 : 503, { ready: reconciler.ready });
        if (!opts.readOnly && req.method === 'POST') {
          if (path === AGENT_PATHS.add) {
            const body = parsePodRequest(await readBody(req));
            needPod(body);
            return send(res, 200, await reconciler.add(body));
          }
          if (path === AGENT_PATHS.del) return send(res, 200, await reconciler.del(parsePodRequest(await readBody(req))));
          if (path === AGENT_PATHS.check) {
            const body = parsePodRequest(await readBody(req));
            needPod(body);
            return send(res, 200, await reconciler.check(body));
          }
        }
        sendError(res, 404, AGENT_ERROR_CODES.notFound, `no ${req.method} ${path} here; see cni-plugin/api.ts`);
      } catch (err) {
        if (err instanceof AgentApiError) {
          if (err.status >= 500) logger.error({ err, path }, err.message);
          else logger.warn({ path, code: err.agentCode }, err.message);
          sendError(res, err.status, err.agentCode, err.message);
        } else {
          logger.error({ err, path }, 'request failed');
          sendError(res, 500, AGENT_ERROR_CODES.enrolmentFailed, `internal error: ${(err as Error).message}`);
        }
      }
    })();
  };
}

/** A live agent already answers on the API socket; this one must not take it over. */
export class AgentSocketInUseError extends MeshError {
  constructor(message: string) {
    super('ERR_AGENT_SOCKET_IN_USE', message);
  }
}

/**
 * Listens on a Unix socket, root only (0600). A socket file left by a dead agent is replaced; one
 * that a live agent answers on is not (two agents on one node would fight over every pod).
 */
export async function listenUnix(server: http.Server, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  if (await answers(path)) throw new AgentSocketInUseError(`another agent is already listening on ${path}; stop it first (or set AGENT_SOCKET)`);
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
}

export async function listenTcp(server: http.Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
