/**
 * Rolling-update handover (HANDOVER=true). On the host network a new ztunnel (the DaemonSet's
 * surge pod) starts while the old one still holds every port, and Node 20 cannot share them
 * (SO_REUSEPORT needs Node 22.12+). So the new ztunnel, once its configuration and certificates
 * are in hand, checks its ports; if one is taken it asks the previous ztunnel to drain through
 * its admin endpoint (`POST /quitquitquit`: readiness fails, listeners close, open connections
 * get DRAIN_TIMEOUT_SECONDS in that process), then retries until every port is free, within a
 * bound. Open connections of the old ztunnel are untouched: they live in its process.
 */
import net from 'node:net';
import { MeshError } from '../core/errors.js';
import type { Logger } from '../core/telemetry/log.js';
import { describePortOwner } from './port-owner.js';

/** The ports were still taken when the handover gave up. */
export class HandoverTimeoutError extends MeshError {
  constructor(message: string) {
    super('ERR_HANDOVER_TIMEOUT', message);
  }
}

/** One listener ztunnel is about to bind. */
export interface PortClaim {
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

export interface HandoverInputs {
  readonly claims: readonly PortClaim[];
  /** The previous ztunnel's `/quitquitquit` (this ztunnel's own admin address and port); undefined: admin is off, only wait. */
  readonly quitUrl: string | undefined;
  readonly timeoutMs: number;
  readonly logger: Logger;
  /** Between two bind attempts. */
  readonly retryMs?: number;
  /** Who holds a port, for the give-up message. */
  readonly describeOwner?: (host: string, port: number) => Promise<string>;
}

export interface HandoverResult {
  /** A previous ztunnel held ports and was asked to drain. */
  readonly tookOver: boolean;
  /** From the first busy port to every port free. */
  readonly waitedMs: number;
}

/** Binds and releases `host:port`: true when it is free, false on EADDRINUSE; other bind errors throw (the real bind would fail alike). */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

async function busy(claims: readonly PortClaim[]): Promise<PortClaim[]> {
  const out: PortClaim[] = [];
  for (const c of claims) if (!(await portFree(c.host, c.port))) out.push(c);
  return out;
}

/** Asks the previous ztunnel to drain; resolves with what happened, for the log. */
async function askToDrain(url: string): Promise<string> {
  try {
    const res = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(2000) });
    return `answered ${res.status}`;
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return `failed: ${cause?.code ?? (err as Error).message}`;
  }
}

/**
 * Returns at once when every port is free; otherwise asks the holder to drain and waits for the
 * ports. Throws {@link HandoverTimeoutError} naming each port still taken and its holder.
 */
export async function takeOverPorts(inputs: HandoverInputs): Promise<HandoverResult> {
  const { logger: log } = inputs;
  const claims = inputs.claims.filter((c) => c.port !== 0);
  let taken = await busy(claims);
  if (taken.length === 0) return { tookOver: false, waitedMs: 0 };
  const started = Date.now();
  const deadline = started + inputs.timeoutMs;
  const names = (cs: readonly PortClaim[]) => cs.map((c) => `${c.name} ${c.host}:${c.port}`).join(', ');
  log.info({ ports: names(taken) }, 'ports held by a previous ztunnel; asking it to drain (handover)');
  let lastAsk = 0;
  let answer = 'not asked (admin is off)';
  while (taken.length > 0) {
    // Asked again every few seconds: a previous ztunnel still starting has no admin server yet.
    if (inputs.quitUrl && Date.now() - lastAsk >= 3000) {
      lastAsk = Date.now();
      answer = await askToDrain(inputs.quitUrl);
      log.info({ url: inputs.quitUrl, answer }, 'asked the previous ztunnel to drain');
    }
    if (Date.now() >= deadline) {
      const describe = inputs.describeOwner ?? describePortOwner;
      const held = await Promise.all(taken.map(async (c) => `${c.name} port ${c.port} on ${c.host} is held by ${await describe(c.host, c.port).catch((e: Error) => `an unknown process (${e.message})`)}`));
      throw new HandoverTimeoutError(
        `handover gave up after ${Math.round(inputs.timeoutMs / 1000)} s: ${held.join('; ')}. ` +
          `The drain request to ${inputs.quitUrl ?? '(admin off)'} ${answer}; stop that process, or check that ADMIN_ADDRESS/ADMIN_PORT match the previous ztunnel's`,
      );
    }
    await new Promise((r) => setTimeout(r, inputs.retryMs ?? 50));
    taken = await busy(claims);
  }
  const waitedMs = Date.now() - started;
  log.info({ waited_ms: waitedMs }, 'the previous ztunnel released its ports; taking over');
  return { tookOver: true, waitedMs };
}
