import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LogOptions {
  /** pino level; `silent` turns logging off (tests). */
  readonly level?: LevelWithSilent;
  /** Where lines go; defaults to stdout. JSON lines always: pipe through `pino-pretty` to read them. */
  readonly destination?: NodeJS.WritableStream;
  /** Component name, e.g. `ztunnel`; set as the `component` field of every line. */
  readonly component: string;
}

/** Creates the root logger of a process or an in-process component. */
export function createLogger(opts: LogOptions): Logger {
  const base = { component: opts.component };
  const level = opts.level ?? 'info';
  return opts.destination
    ? pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, opts.destination)
    : pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything, for tests and libraries used without one. */
export const silentLogger: Logger = pino({ level: 'silent' });
