import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';
import { quote } from '../validation/check.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Reads typed values from an environment record and collects every problem instead of stopping
 * at the first: a process reports all of its bad variables at once, then `finish()` throws one
 * ConfigError. The only sanctioned way components read their environment. A bad value is shown
 * as `quote()` shows user strings: escaped (a bidi override or control character cannot disguise
 * the log line) and cut at 100 characters (a variable may hold 128 KiB).
 *
 * @example
 * const env = new EnvReader(process.env);
 * const port = env.port('ADMIN_PORT', 15000);
 * env.finish(); // throws ConfigError listing every problem
 */
export class EnvReader {
  readonly problems: string[] = [];
  readonly #env: Readonly<Record<string, string | undefined>>;

  constructor(env: Readonly<Record<string, string | undefined>>) {
    this.#env = env;
  }

  /** A string; required when there is no fallback. */
  str(name: string, fallback?: string): string {
    const v = this.#env[name];
    if (v === undefined || v === '') {
      if (fallback === undefined) this.problems.push(`${name} is required`);
      return fallback ?? '';
    }
    return v;
  }

  /** A TCP port; 0 means "disabled" unless `allowZero` is false. */
  port(name: string, fallback: number, allowZero = true): number {
    const v = this.#env[name];
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n > 65535 || (!allowZero && n === 0)) {
      this.problems.push(`${name}=${quote(v)} is not a port (${allowZero ? '0 to disable, or ' : ''}1-65535)`);
      return fallback;
    }
    return n;
  }

  /** An IPv4 or IPv6 address; required when there is no fallback. */
  ip(name: string, fallback?: string): string {
    const v = this.str(name, fallback);
    if (v !== '' && isIP(v) === 0) this.problems.push(`${name}=${quote(v)} is not an IPv4 or IPv6 address`);
    return v;
  }

  /** A number above zero. */
  positive(name: string, fallback: number): number {
    const v = this.#env[name];
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      this.problems.push(`${name}=${quote(v)} is not a positive number`);
      return fallback;
    }
    return n;
  }

  /** One of a fixed set of words. */
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.str(name, fallback);
    if (!(allowed as readonly string[]).includes(v)) {
      this.problems.push(`${name}=${quote(v)} is not one of ${allowed.join(', ')}`);
      return fallback;
    }
    return v as T;
  }

  /** Throws one ConfigError naming every problem found so far. */
  finish(): void {
    if (this.problems.length > 0) throw new ConfigError('the environment', this.problems);
  }
}
