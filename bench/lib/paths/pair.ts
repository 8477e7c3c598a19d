import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NATIVE } from '../client.js';
import type { ManagedProcess } from '../procs.js';
import { waitForListen, type Target } from '../wait.js';
import type { BenchContext, Origin, RunningPath } from './types.js';

/** One forwarded port: the proxies listen on `port` at their own address and end at `origin`. */
export interface Service {
  readonly name: string;
  readonly port: number;
  readonly origin: Target;
}

/** Listen addresses of the client-side (A) and server-side (B) proxy. */
export interface PairAddresses {
  readonly a: string;
  readonly b: string;
}

/** What differs between the native proxy pairs: the program and its config files. */
export interface PairSpec {
  readonly name: string;
  readonly addresses: PairAddresses;
  /** Config text of A (plaintext in, TLS out) and B (TLS in, plaintext out). */
  readonly configA: string;
  readonly configB: string;
  /** argv that runs one proxy in the foreground with the given config file. */
  readonly argv: (configFile: string) => readonly string[];
}

/** The two services every pair forwards, at the origin's own port numbers. */
export function servicesOf(origin: Origin): readonly Service[] {
  return [
    { name: 'iperf', port: origin.iperf.port, origin: origin.iperf },
    { name: 'http', port: origin.http.port, origin: origin.http },
  ];
}

/**
 * Starts B, then A, waits for all their listeners, and returns the path with A as the clients'
 * target. Either proxy failing stops the other.
 */
export async function startPair(ctx: BenchContext, spec: PairSpec): Promise<RunningPath> {
  const started: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(started.map((p) => ctx.procs.stop(p)));
  };
  try {
    for (const side of ['b', 'a'] as const) {
      const proc = await startSide(ctx, spec, side);
      started.push(proc);
      for (const svc of servicesOf(ctx.origin)) {
        await waitForListen({ host: spec.addresses[side], port: svc.port }, { timeoutMs: 10_000, process: proc });
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    launcher: NATIVE,
    iperf: { host: spec.addresses.a, port: ctx.origin.iperf.port },
    http: { host: spec.addresses.a, port: ctx.origin.http.port },
    proxies: started,
    stop,
  };
}

async function startSide(ctx: BenchContext, spec: PairSpec, side: 'a' | 'b'): Promise<ManagedProcess> {
  const file = join(ctx.dir, `${spec.name}-${side}.conf`);
  await writeFile(file, side === 'a' ? spec.configA : spec.configB);
  const [cmd, ...args] = spec.argv(file);
  return ctx.procs.start(`${spec.name} ${side.toUpperCase()}`, cmd as string, args);
}
