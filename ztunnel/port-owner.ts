/**
 * Which process holds a listening TCP port, for error messages: the socket's inode from
 * /proc/net/tcp{,6}, then the process whose /proc/PID/fd links to it (parsers shared with the
 * node agent: core/net/proc-net.ts).
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProcNetTcp, socketInode, TCP_LISTEN } from '../core/net/proc-net.js';

/** Inodes of sockets listening on `port` at `host` or the wildcard address. */
export async function listeningInodes(host: string, port: number, procRoot = '/proc'): Promise<number[]> {
  const accept = new Set([host, '0.0.0.0', '::', `::ffff:${host}`]);
  const out: number[] = [];
  for (const file of ['tcp', 'tcp6']) {
    const text = await readFile(join(procRoot, 'net', file), 'utf8').catch(() => '');
    for (const e of parseProcNetTcp(text)) {
      if (e.state === TCP_LISTEN && e.localPort === port && e.inode !== 0 && accept.has(e.localAddress)) out.push(e.inode);
    }
  }
  return out;
}

/**
 * "pid 4242 (node dist/ztunnel/main.js)", or what is known when the holder is not visible from
 * this PID namespace (another pod's process, seen without hostPID).
 */
export async function describePortOwner(host: string, port: number, procRoot = '/proc'): Promise<string> {
  const inodes = new Set(await listeningInodes(host, port, procRoot));
  if (inodes.size === 0) return 'no listener visible in this network namespace (a socket in TIME_WAIT does not block a bind: check the address)';
  const pids = (await readdir(procRoot).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d));
  for (const pid of pids) {
    const fds = await readdir(join(procRoot, pid, 'fd')).catch(() => [] as string[]);
    for (const fd of fds) {
      const inode = socketInode(await readlink(join(procRoot, pid, 'fd', fd)).catch(() => ''));
      if (inode === undefined || !inodes.has(inode)) continue;
      const cmd = (await readFile(join(procRoot, pid, 'cmdline'), 'utf8').catch(() => '')).split('\0').filter(Boolean).join(' ');
      return `pid ${pid}${cmd ? ` (${cmd})` : ''}`;
    }
  }
  return `a process not visible from this PID namespace (socket inode ${[...inodes].join(', ')}; another pod's)`;
}
