/**
 * The control plane's operational endpoints: Prometheus `/metrics` (15020), readiness
 * `/healthz/ready` (15021), and the local-only admin (15000) with the debug endpoints.
 */
import http from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/telemetry/log.js';

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function json(res: http.ServerResponse, body: unknown): void {
  send(res, 200, JSON.stringify(body, null, 2) + '\n', 'application/json');
}

/** Inputs of the admin server. */
export interface AdminInputs {
  readonly logger: Logger;
  /** Connected proxies and the version each holds. */
  readonly connections: () => unknown;
  /** Problems of stored objects (rejections, warnings), and the current version. */
  readonly status: () => unknown;
  /** The current configuration as sent (workloads, services, policies ...). */
  readonly configDump: () => unknown;
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'silent']);

/**
 * Admin (local only): `GET /debug/connections`, `GET /debug/status`, `GET /debug/config_dump`,
 * `GET /logging?level=`.
 */
export function adminServer(inputs: AdminInputs): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    switch (url.pathname) {
      case '/debug/connections':
        return json(res, inputs.connections());
      case '/debug/status':
        return json(res, inputs.status());
      case '/debug/config_dump':
        return json(res, inputs.configDump());
      case '/logging': {
        const level = url.searchParams.get('level');
        if (level === null) return send(res, 200, `level: ${inputs.logger.level}\n`);
        if (!LEVELS.has(level)) return send(res, 400, `unknown level ${JSON.stringify(level)}; use one of ${[...LEVELS].join(', ')}\n`);
        inputs.logger.level = level;
        return send(res, 200, `level: ${level}\n`);
      }
      default:
        return send(res, 404, 'endpoints: /debug/connections, /debug/status, /debug/config_dump, /logging?level=LEVEL\n');
    }
  });
}

/** Prometheus: `/metrics`. */
export function metricsServer(registry: Registry): http.Server {
  return http.createServer((req, res) => {
    if (req.url !== '/metrics' && req.url !== '/stats/prometheus') return send(res, 404, 'see /metrics\n');
    registry.metrics().then(
      (body) => send(res, 200, body, registry.contentType),
      (err: Error) => send(res, 500, `${err.message}\n`),
    );
  });
}

/** Readiness: 200 once the CA, the node list and the manifests are loaded and 15012 listens. */
export function readinessServer(ready: () => boolean): http.Server {
  return http.createServer((req, res) => {
    if (req.url !== '/healthz/ready') return send(res, 404, 'see /healthz/ready\n');
    return ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
  });
}
