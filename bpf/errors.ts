import { MeshError } from '../core/errors.js';

/**
 * The eBPF loader's failures, one class each with a stable `code`. They live beside the loader
 * rather than in core/errors.ts because only the node agent and ztunnel (through the loader) ever
 * see them.
 */

/** The kernel or the node lacks something the redirection needs; `missing` lists every gap found. */
export class BpfUnavailableError extends MeshError {
  readonly missing: readonly string[];
  constructor(missing: readonly string[]) {
    super('ERR_BPF_UNAVAILABLE', `ebpf redirection is not available on this node:\n  - ${missing.join('\n  - ')}`);
    this.missing = missing;
  }
}

/** A bpftool (or mount) invocation failed; `stderr` carries the tool's own words. */
export class BpfCommandError extends MeshError {
  readonly command: string;
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(what: string, command: string, exitCode: number | null, stderr: string, hint: string, options?: { cause?: unknown }) {
    const detail = stderr.trim().split('\n').filter((l) => l.trim() !== '').slice(-3).join(' | ');
    super('ERR_BPF_COMMAND', `${what} failed (${command}): ${detail || `exit code ${exitCode}`}; ${hint}`, options);
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** A cgroup path that does not exist or is not on the cgroup v2 hierarchy. */
export class CgroupNotFoundError extends MeshError {
  readonly cgroup: string;
  constructor(cgroup: string, why: string) {
    super('ERR_BPF_CGROUP_NOT_FOUND', `cgroup ${cgroup} ${why}`);
    this.cgroup = cgroup;
  }
}

/** attach/setStrict before load(), or pins removed under a running agent. */
export class BpfNotLoadedError extends MeshError {
  constructor(pinDir: string, missing: string) {
    super(
      'ERR_BPF_NOT_LOADED',
      `ebpf programs are not loaded under ${pinDir} (${missing} is missing); load them first (is the node agent running with the same pin dir?)`,
    );
  }
}

/** A prebuilt object is missing or does not hold what the loader expects. */
export class BpfObjectError extends MeshError {
  constructor(object: string, why: string) {
    super('ERR_BPF_OBJECT', `ebpf object ${object} ${why}; rebuild the objects with \`make -C bpf\``);
  }
}
