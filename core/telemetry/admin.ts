/** The admin, metrics and readiness servers every data-plane proxy runs (ztunnel, waypoint). */
import http from 'node:http';
import type { Logger } from './log.js';
import type { Registry } from 'prom-client';
import type { AddressInfo } from 'node:net';
import { listen } from '../net/listen.js';

export interface AdminInputs {
  readonly logger: Logger;
  readonly registry: Registry;
  /** JSON-able dump of the proxy's state. */
  readonly configDump: () => unknown;
  readonly ready: () => boolean;
  /** Starts a graceful shutdown (as SIGTERM does). */
  readonly quit: () => void;
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'silent']);

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Admin (15000, local only): `/config_dump`, `/logging?level=`, `POST /quitquitquit`. */
export function adminServer(inputs: AdminInputs): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    switch (url.pathname) {
      case '/config_dump':
        return send(res, 200, JSON.stringify(inputs.configDump(), null, 2) + '\n', 'application/json');
      case '/logging': {
        const level = url.searchParams.get('level');
        if (level === null) return send(res, 200, `level: ${inputs.logger.level}\n`);
        if (!LEVELS.has(level)) return send(res, 400, `unknown level ${JSON.stringify(level)}; use one of ${[...LEVELS].join(', ')}\n`);
        inputs.logger.level = level;
        return send(res, 200, `level: ${level}\n`);
      }
      case '/quitquitquit':
        if (req.method !== 'POST') return send(res, 405, 'use POST\n');
        send(res, 200, 'draining\n');
        inputs.quit();
        return;
      default:
        return send(res, 404, 'endpoints: /config_dump, /logging?level=LEVEL, POST /quitquitquit\n');
    }
  });
}

/** Prometheus (15020): `/metrics`. */
export function metricsServer(inputs: Pick<AdminInputs, 'registry'>): http.Server {
  return http.createServer((req, res) => {
    if (req.url !== '/metrics' && req.url !== '/stats/prometheus') return send(res, 404, 'see /metrics\n');
    inputs.registry.metrics().then(
      (body) => send(res, 200, body, inputs.registry.contentType),
      (err: Error) => send(res, 500, `${err.message}\n`),
    );
  });
}

/** Readiness (15021): `/healthz/ready` answers 200 once config and certificates are usable, 503 while draining. */
export function readinessServer(inputs: Pick<AdminInputs, 'ready'>): http.Server {
  return http.createServer((req, res) => {
    if (req.url !== '/healthz/ready') return send(res, 404, 'see /healthz/ready\n');
    return inputs.ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
  });
}

/** What the operational servers report on and act upon: the proxy, once it exists. */
export interface OpsTarget {
  configDump(): unknown;
  readonly ready: boolean;
  shutdown(): Promise<void>;
}

export interface OpsInputs {
  readonly logger: Logger;
  readonly registry: Registry;
  /** The proxy; undefined while it is still starting (readiness answers 503 then). */
  readonly target: () => OpsTarget | undefined;
  readonly adminAddress: string;
  readonly statsAddress: string;
  /** 0 disables a server. */
  readonly adminPort: number;
  readonly metricsPort: number;
  readonly readinessPort: number;
}

/**
 * Binds admin, metrics and readiness, as every proxy does. On a bind failure the servers
 * already bound are closed before the error is rethrown.
 */
export async function listenOps(inputs: OpsInputs): Promise<{
  servers: http.Server[];
  addresses: { admin?: AddressInfo; metrics?: AddressInfo; readiness?: AddressInfo };
}> {
  const ready = () => inputs.target()?.ready ?? false;
  const plan: Array<[name: 'admin' | 'metrics' | 'readiness', server: http.Server, port: number, host: string]> = [
    [
      'admin',
      adminServer({
        logger: inputs.logger,
        registry: inputs.registry,
        configDump: () => inputs.target()?.configDump(),
        ready,
        quit: () => void inputs.target()?.shutdown(),
      }),
      inputs.adminPort,
      inputs.adminAddress,
    ],
    ['metrics', metricsServer({ registry: inputs.registry }), inputs.metricsPort, inputs.statsAddress],
    ['readiness', readinessServer({ ready }), inputs.readinessPort, inputs.statsAddress],
  ];
  const servers: http.Server[] = [];
  const addresses: { admin?: AddressInfo; metrics?: AddressInfo; readiness?: AddressInfo } = {};
  try {
    for (const [name, server, port, host] of plan) {
      if (port === 0) continue;
      addresses[name] = await listen(server, port, host);
      servers.push(server);
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  return { servers, addresses };
}
