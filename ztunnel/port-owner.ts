/**
 * Which process holds a listening TCP port, for error messages: the socket's inode from
 * /proc/net/tcp{,6}, then the process whose /proc/PID/fd links to it. The node agent reads the
 * same files to find ztunnel (cni-plugin/agent/proc-net.ts, tested there on fixtures); this is the
 * small subset ztunnel needs, kept here because components import core/ only.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';

const LISTEN = '0A';

/** `0100007F` (little-endian host) → 127.0.0.1; 32 hex digits → `::`, `::ffff:a.b.c.d`, or `ipv6`. */
function decode(hex: string): string {
  const word = (h: string) => {
    const b = [0, 2, 4, 6].map((i) => parseInt(h.slice(i, i + 2), 16));
    return endianness() === 'LE' ? b.reverse() : b;
  };
  if (hex.length === 8) return word(hex).join('.');
  const bytes = [0, 8, 16, 24].flatMap((i) => word(hex.slice(i, i + 8)));
  if (bytes.every((x) => x === 0)) return '::';
  if (bytes.slice(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  return 'ipv6';
}

/** Inodes of sockets listening on `port` at `host` or the wildcard address. */
export async function listeningInodes(host: string, port: number, procRoot = '/proc'): Promise<number[]> {
  const accept = new Set([host, '0.0.0.0', '::', `::ffff:${host}`]);
  const out: number[] = [];
  for (const file of ['tcp', 'tcp6']) {
    const text = await readFile(join(procRoot, 'net', file), 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== LISTEN) continue;
      const [addr, p] = f[1]!.split(':');
      if (parseInt(p ?? '', 16) === port && accept.has(decode(addr ?? '')) && f[9] !== '0') out.push(Number(f[9]));
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
  const links = new Set([...inodes].map((i) => `socket:[${i}]`));
  const pids = (await readdir(procRoot).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d));
  for (const pid of pids) {
    const fds = await readdir(join(procRoot, pid, 'fd')).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await readlink(join(procRoot, pid, 'fd', fd)).catch(() => '');
      if (!links.has(link)) continue;
      const cmd = (await readFile(join(procRoot, pid, 'cmdline'), 'utf8').catch(() => '')).split('\0').filter(Boolean).join(' ');
      return `pid ${pid}${cmd ? ` (${cmd})` : ''}`;
    }
  }
  return `a process not visible from this PID namespace (socket inode ${[...inodes].join(', ')}; another pod's)`;
}
