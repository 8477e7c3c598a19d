/**
 * One bounded HTTP GET per source and tick: at most `maxBytes` of body and `timeoutMs` from
 * connect to the last byte, then the request is destroyed. A source that fails (no answer, a
 * status other than 200, too large, too slow, garbage) rejects with a DashboardError whose code
 * says which; aggregate.ts marks that source stale and keeps the others live.
 *
 * A request either goes straight to the address, or, for an address inside another network
 * namespace (the lab's nodes), through that namespace's relay (netns-relay.ts): a Unix socket in
 * a directory of ours, reachable from every network namespace because its name is a path.
 */
import http from 'node:http';
import net from 'node:net';
import { DASHBOARD_ERROR_CODES, DashboardError } from './errors.js';

export interface ScrapeLimits {
  readonly maxBytes: number;
  readonly timeoutMs: number;
}

/**
 * A waypoint prints ~25 KB per (source pod, destination) pair (a counter and three histograms), so a
 * 200-pod namespace with two peers each is ~10 MB; 32 MiB leaves room, and still cuts a runaway
 * exporter before it holds the heap. 1.5 s keeps a 2 s tick.
 */
export const DEFAULT_SCRAPE_LIMITS: ScrapeLimits = { maxBytes: 32 * 1024 * 1024, timeoutMs: 1500 };

/** How a request reaches its address: directly, or through the relay listening on `relaySocket`. */
export interface Route {
  readonly relaySocket?: string;
}

/** The relay's request line: the address to connect to, then the HTTP bytes follow on the same stream. */
export function relayConnect(socketPath: string, host: string, port: number): net.Socket {
  const s = net.connect(socketPath);
  s.write(`${host}:${port}\n`);
  return s;
}

/**
 * GETs `url` within `limits`; resolves with the body as text.
 *
 * @example
 * await fetchBounded('http://10.240.0.1:15020/metrics', { relaySocket: '/tmp/x/node-1.sock' }, DEFAULT_SCRAPE_LIMITS);
 */
export function fetchBounded(url: string, route: Route, limits: ScrapeLimits): Promise<string> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const port = Number(u.port || 80);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    let done = false;
    const fail = (err: DashboardError): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = http.request(
      {
        host,
        port,
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers: { accept: 'text/plain', connection: 'close' },
        // No agent with createConnection: an agent (even agent: false) would open its own socket and ignore it.
        ...(route.relaySocket ? { createConnection: () => relayConnect(route.relaySocket!, host, port) } : { agent: false }),
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return fail(new DashboardError(DASHBOARD_ERROR_CODES.UNREACHABLE, `${url} answered ${res.statusCode}; check that it is a /metrics endpoint`));
        }
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > limits.maxBytes) return fail(tooLarge(url, limits));
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > limits.maxBytes) return fail(tooLarge(url, limits));
          chunks.push(c);
        });
        res.on('end', () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
        res.on('error', (err) => fail(new DashboardError(DASHBOARD_ERROR_CODES.UNREACHABLE, `${url}: ${err.message}`, { cause: err })));
      },
    );
    const timer = setTimeout(() => fail(new DashboardError(DASHBOARD_ERROR_CODES.TIMEOUT, `${url} gave no complete answer in ${limits.timeoutMs} ms; check that the component runs and is not overloaded`)), limits.timeoutMs);
    req.on('error', (err) => fail(new DashboardError(DASHBOARD_ERROR_CODES.UNREACHABLE, `${url}: ${err.message}; check that the component runs`, { cause: err })));
    req.end();
  });
}

const tooLarge = (url: string, l: ScrapeLimits): DashboardError =>
  new DashboardError(DASHBOARD_ERROR_CODES.TOO_LARGE, `${url} sent more than ${l.maxBytes} bytes; check the exporter's label cardinality`);
