import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { NotReadyError } from './errors.js';
import type { ManagedProcess } from './procs.js';

/** A TCP address on loopback. */
export interface Target {
  readonly host: string;
  readonly port: number;
}

/** Options of the wait helpers. */
export interface WaitOpts {
  readonly timeoutMs: number;
  /** When this process exits while we wait, fail at once with its output. */
  readonly process?: ManagedProcess;
  readonly intervalMs?: number;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until something listens on `target`, by reading /proc/net/tcp rather than connecting:
 * a probe connection would be a bogus client to iperf3 and a TLS handshake to the proxies.
 *
 * @example
 * await waitForListen({ host: '127.0.0.20', port: 5201 }, { timeoutMs: 5_000, process: srv });
 */
export async function waitForListen(target: Target, opts: WaitOpts): Promise<void> {
  const what = `listener ${target.host}:${target.port}`;
  await poll(what, opts, async () => listens(await readFile('/proc/net/tcp', 'utf8'), target));
}

/** Waits until GET `url` answers 200 (readiness endpoints). */
export async function waitForHttpOk(url: string, opts: WaitOpts): Promise<void> {
  await poll(url, opts, async () => (await httpStatus(url)) === 200);
}

/** True when /proc/net/tcp text has a LISTEN socket on the target (or on 0.0.0.0 at its port). */
export function listens(procNetTcp: string, target: Target): boolean {
  const port = target.port.toString(16).toUpperCase().padStart(4, '0');
  const wanted = new Set([`${ipv4ToProcHex(target.host)}:${port}`, `00000000:${port}`]);
  return procNetTcp
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .some((f) => f[3] === '0A' && wanted.has(f[1] ?? ''));
}

/** /proc/net/tcp prints IPv4 addresses as the host-order (little-endian on x86) u32 in hex. */
function ipv4ToProcHex(ip: string): string {
  return ip
    .split('.')
    .reverse()
    .map((b) => Number(b).toString(16).toUpperCase().padStart(2, '0'))
    .join('');
}

/** Status code of GET `url`, or 0 when it cannot connect. */
export function httpStatus(url: string, timeoutMs = 1_000): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function poll(what: string, opts: WaitOpts, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (opts.process && !opts.process.isRunning()) {
      throw new NotReadyError(what, `${opts.process.name} exited`, opts.process.outputTail());
    }
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new NotReadyError(what, `still not ready after ${opts.timeoutMs} ms`, opts.process?.outputTail());
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
