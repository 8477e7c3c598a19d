import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProcessTracker } from './procs.js';
import { waitForListen } from './wait.js';
import type { Origin } from './paths/types.js';

/**
 * The server workload's address; the ztunnel config puts workload `server` here, and every path
 * ends here.
 */
export const ORIGIN_HOST = '127.0.0.20';
/** Size of the HTTP response body. */
export const HTTP_BODY_BYTES = 1024;

/**
 * Starts the two origin servers shared by all paths: `iperf3 -s` and a haproxy in http mode that
 * answers every request with 200 and a 1 KiB body (native and fast, so the proxies are what
 * differ between paths).
 *
 * @example
 * const origin = await startOrigin(procs, tmpDir);
 */
export async function startOrigin(procs: ProcessTracker, dir: string): Promise<Origin> {
  const origin: Origin = { iperf: { host: ORIGIN_HOST, port: 5201 }, http: { host: ORIGIN_HOST, port: 8080 } };
  const iperf = await procs.start('iperf3 server', 'iperf3', ['-s', '-B', ORIGIN_HOST, '-p', String(origin.iperf.port)]);
  await waitForListen(origin.iperf, { timeoutMs: 10_000, process: iperf });
  const file = join(dir, 'origin-http.cfg');
  await writeFile(file, httpServerConfig(origin.http.port));
  const web = await procs.start('http server', 'haproxy', ['-db', '-f', file]);
  await waitForListen(origin.http, { timeoutMs: 10_000, process: web });
  return origin;
}

/** haproxy config of the HTTP origin: keep-alive HTTP/1.1, every request gets the same body. */
export function httpServerConfig(port: number): string {
  return [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend web',
    `  bind ${ORIGIN_HOST}:${port}`,
    `  http-request return status 200 content-type text/plain string "${'x'.repeat(HTTP_BODY_BYTES)}"`,
    '',
  ].join('\n');
}
