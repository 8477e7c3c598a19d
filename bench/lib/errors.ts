/**
 * Errors of the benchmark harness. One class per failure, each with a stable `code`; messages are
 * lowercase and say what to check.
 */
export class BenchError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A tool or file the benchmark needs is not there. */
export class PrerequisiteMissingError extends BenchError {
  constructor(what: string, fix: string) {
    super('ERR_BENCH_PREREQUISITE', `${what} is missing; ${fix}`);
  }
}

/** A helper program (openssl, iperf3, wrk, ...) exited badly or printed something unusable. */
export class ToolFailedError extends BenchError {
  constructor(tool: string, why: string, output = '') {
    const tail = output.trim() ? `\n${indent(output.trim())}` : '';
    super('ERR_BENCH_TOOL_FAILED', `${tool} failed: ${why}${tail}`);
  }
}

/** A server or proxy did not become ready in time, or died while starting. */
export class NotReadyError extends BenchError {
  constructor(what: string, why: string, output = '') {
    const tail = output.trim() ? `\n${indent(output.trim())}` : '';
    super('ERR_BENCH_NOT_READY', `${what} not ready: ${why}${tail}`);
  }
}

/** The proxy under test did not count the traffic, so the figures would not be about it. */
export class TrafficNotProxiedError extends BenchError {
  constructor(path: string, step: string, check: string) {
    super('ERR_BENCH_NOT_PROXIED', `${path}: ${step} traffic did not go through the proxy; ${check}`);
  }
}

/** What the run waits for (clients converging on a configuration, a change arriving) did not happen in time. */
export class TimedOutError extends BenchError {
  constructor(what: string, check: string) {
    super('ERR_BENCH_TIMEOUT', `${what}; check ${check}`);
  }
}

/** The run was interrupted (Ctrl-C or SIGTERM). */
export class InterruptedError extends BenchError {
  constructor() {
    super('ERR_BENCH_INTERRUPTED', 'interrupted');
  }
}

function indent(text: string): string {
  const lines = text.split('\n');
  const last = lines.slice(-12);
  return last.map((l) => `    | ${l}`).join('\n');
}

/** A process the run depends on (a proxy, the backend, the client worker) died while it ran. */
export class ProcessDiedError extends BenchError {
  constructor(what: string, how: string, output = '') {
    const tail = output.trim() ? `\n${indent(output.trim())}` : '';
    super('ERR_BENCH_PROCESS_DIED', `${what} ${how} during the run; its last output is below, check it for the cause${tail}`);
  }
}
