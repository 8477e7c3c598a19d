import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MeshError } from '../core/errors.js';

const run = promisify(execFile);

/** Outbound capture is enabled but the node agent's eBPF programs are not attached to ztunnel. */
export class RedirectionMissingError extends MeshError {
  constructor(why: string) {
    super(
      'ERR_REDIRECTION_MISSING',
      `outbound capture is enabled but ${why}; start the node agent (it attaches the getsockname hooks to ` +
        "ztunnel's cgroup), or set OUTBOUND_PORT=0 to run without capture (SOCKS5 / HBONE only)",
    );
  }
}

/** Where this process's cgroup v2 directory is: the `0::` line of /proc/self/cgroup under the cgroup2 mount. */
export async function ownCgroupDir(): Promise<string> {
  const cgroup = await readFile('/proc/self/cgroup', 'utf8');
  const line = cgroup.split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new RedirectionMissingError('this process is not in a cgroup v2 hierarchy (no 0:: line in /proc/self/cgroup)');
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  // Fields: id parent major:minor root mountpoint options ... - fstype source superoptions
  const mount = mountinfo
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[f.indexOf('-') + 1] === 'cgroup2');
  if (!mount) throw new RedirectionMissingError('cgroup v2 is not mounted');
  return join(mount[4]!, line.slice(3));
}

/**
 * Checks that the getsockname hook (which hands ztunnel each redirected connection's original
 * destination) is attached to ztunnel's own cgroup, reading the kernel's view through bpftool.
 * Without it every captured connection would look un-redirected and be closed.
 */
export async function checkRedirection(cgroupDir?: string): Promise<void> {
  const dir = cgroupDir ?? (await ownCgroupDir());
  let out: string;
  try {
    ({ stdout: out } = await run('bpftool', ['-j', 'cgroup', 'show', dir], { timeout: 5000 }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new RedirectionMissingError('bpftool is not installed (Debian package bpftool), so the hooks cannot be checked');
    throw new RedirectionMissingError(`bpftool could not read cgroup ${dir}: ${(e.stderr ?? e.message).trim()}`);
  }
  const progs = JSON.parse(out.trim() || '[]') as Array<{ attach_type?: string; name?: string }>;
  if (!progs.some((p) => /getsockname4|inet4_getsockname/.test(p.attach_type ?? ''))) {
    throw new RedirectionMissingError(`no getsockname4 program is attached to ztunnel's cgroup ${dir}`);
  }
}
