/**
 * A mesh with a waypoint, on loopback: ztunnel A (`${base}.2`) and B (`${base}.3`) from the
 * ztunnel fixture, a waypoint workload at `${base}.30` on node-b served by an in-process
 * `Waypoint`, and HTTP backends. Clients reach services through ztunnel A's SOCKS5 listener,
 * from the client workload's address, over keep-alive HTTP/1.1.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { startMesh, baseConfig, type MeshFixture } from '../helpers/mesh.js';
import { socks5Connect } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { LocalCaClient, SecretManager } from '../../core/identity/secret-manager.js';
import { FileConfigSource } from '../../core/node-config/file-source.js';
import type { ConfigSource } from '../../core/model/source.js';
import { silentLogger, type Logger } from '../../core/telemetry/log.js';
import { loadConfig } from '../../waypoint/config.js';
import { Waypoint } from '../../waypoint/waypoint.js';

export const WAYPOINT_ID = 'spiffe://cluster.local/ns/default/sa/waypoint';

export interface WaypointMesh {
  readonly mesh: MeshFixture;
  readonly waypoint: Waypoint;
  readonly base: string;
  /** Rewrites the config (base config + `extra`) and waits until both ztunnels and the waypoint have it. */
  apply(extra: Record<string, unknown>, check: (wp: Waypoint) => boolean): Promise<void>;
  close(): Promise<void>;
}

/** The waypoint workload entry every config carries. */
export function waypointWorkload(base: string): Record<string, unknown> {
  return {
    name: 'waypoint',
    namespace: 'default',
    serviceAccount: 'waypoint',
    node: 'node-b',
    ips: [`${base}.30`],
    labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
  };
}

/** `baseConfig` plus the waypoint workload, extra workloads and `extra`. */
export function meshConfig(base: string, workloads: object[], extra: Record<string, unknown>): Record<string, unknown> {
  const c = baseConfig(base, extra);
  (c.workloads as object[]).push(waypointWorkload(base), ...workloads);
  return c;
}

export async function startWaypointMesh(opts: {
  dir: string;
  base: string;
  workloads: object[];
  config: Record<string, unknown>;
  random?: () => number;
  /** Extra ztunnel environment (e.g. `CERT_RETENTION_SECONDS`), passed to `startMesh`. */
  env?: Record<string, string>;
  /**
   * Wraps the waypoint's file source, for config the file format does not carry (the file
   * source has no `destinationRules` yet; the test adds them to every snapshot).
   */
  wrapSource?: (inner: ConfigSource) => ConfigSource;
  /** The waypoint's logger (access-log lines go to its `access` child); silent by default. */
  logger?: Logger;
  /** Extra waypoint environment (e.g. `JWKS_REFRESH_SECONDS`), read by `loadConfig`. */
  waypointEnv?: Record<string, string>;
}): Promise<WaypointMesh> {
  const mesh = await startMesh({ dir: opts.dir, base: opts.base, config: meshConfig(opts.base, opts.workloads, opts.config), ...(opts.env ? { env: opts.env } : {}) });
  let waypoint: Waypoint;
  try {
    waypoint = await Waypoint.start({
      config: loadConfig({
        WAYPOINT_ADDRESS: `${opts.base}.30`,
        LOCAL_CONFIG_FILE: mesh.configPath,
        CA_ROOT_CERT_FILE: 'unused-in-process',
        CA_ROOT_KEY_FILE: 'unused-in-process',
        ADMIN_ADDRESS: `${opts.base}.30`,
        DRAIN_TIMEOUT_SECONDS: '2',
        LOG_LEVEL: 'silent',
        ...opts.waypointEnv,
      }),
      logger: opts.logger ?? silentLogger,
      configSource: (opts.wrapSource ?? ((s) => s))(new FileConfigSource({ path: mesh.configPath, logger: silentLogger })),
      certificates: new SecretManager({ caClient: new LocalCaClient(mesh.ca), logger: silentLogger }),
      ...(opts.random ? { random: opts.random } : {}),
    });
  } catch (err) {
    await mesh.close();
    throw err;
  }
  return {
    mesh,
    waypoint,
    base: opts.base,
    async apply(extra, check) {
      const cfg = meshConfig(opts.base, opts.workloads, extra);
      await mesh.writeConfig(cfg);
      await until('the waypoint to load the new config', () => check(waypoint), { timeoutMs: 5000 });
      // The ztunnels read the same file: wait until they hold it too.
      await mesh.waitForConfig(cfg);
    },
    async close() {
      await waypoint.shutdown();
      await mesh.close();
    },
  };
}

/**
 * An http.Agent whose connections go through ztunnel A's SOCKS5 listener from `from` (the
 * client workload's address) to the host and port of each request: keep-alive HTTP/1.1 through
 * the mesh.
 */
export function meshAgent(proxy: { host: string; port: number }, from: string): http.Agent {
  class SocksAgent extends http.Agent {
    override createConnection(opts: http.ClientRequestArgs, cb?: (err: Error | null, s: Duplex) => void): Duplex {
      // An HTTP client's socket closes when the server closes (allowHalfOpen false), as curl's and Node's do.
      socks5Connect({ proxy, localAddress: from, host: String(opts.host), port: Number(opts.port), allowHalfOpen: false }).then(
        ({ reply, socket }) => {
          if (reply !== 0) {
            socket.destroy();
            cb?.(new Error(`socks5 reply ${reply}`), socket);
            return;
          }
          socket.resume();
          cb?.(null, socket);
        },
        (err: Error) => cb?.(err, undefined as unknown as Duplex),
      );
      return undefined as unknown as Duplex;
    }
  }
  return new SocksAgent({ keepAlive: true, maxSockets: 16 });
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly ms: number;
}

/** One HTTP/1.1 request through the mesh. */
export function request(
  agent: http.Agent,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - start }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** An HTTP backend answering `{name, method, url, headers}` as JSON; `behave` (given the request body read whole) may take over. */
export async function backend(
  host: string,
  port: number,
  name: string,
  behave?: (req: http.IncomingMessage, res: http.ServerResponse, n: number, body: string) => boolean,
): Promise<{ server: http.Server; hits: () => number }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (behave?.(req, res, n, body)) return;
      const text = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(port, host, r));
  return { server, hits: () => n };
}
