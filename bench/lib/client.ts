/**
 * How a path's clients are launched: natively, or behind a wrapper such as
 * `proxychains4 -q -f conf` that execs the real client (same pid, LD_PRELOAD on connect()).
 */
export interface ClientLauncher {
  /** Prepended to the client's argv; empty for a direct launch. */
  readonly prefix: readonly string[];
}

/** The argv split into the program to spawn and its arguments. */
export function clientCommand(launcher: ClientLauncher, argv: readonly string[]): [string, string[]] {
  const all = [...launcher.prefix, ...argv];
  return [all[0] as string, all.slice(1)];
}

/** A launcher that starts clients as they are. */
export const NATIVE: ClientLauncher = { prefix: [] };
