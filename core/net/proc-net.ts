/**
 * Parsers for the few /proc files the node agent reads to find ztunnel from the host's view (and
 * ztunnel reads to name who holds a port it cannot bind): the
 * listening sockets of its network namespace (`/proc/net/tcp`, `/proc/net/tcp6`), which process
 * holds a socket (`/proc/PID/fd/* -> socket:[inode]`) and where that process sits in the cgroup v2
 * tree (`/proc/PID/cgroup`). Pure functions over text, so they are tested on fixture files.
 */
import { endianness } from 'node:os';

/** `st` of a listening socket in /proc/net/tcp (the kernel's TCP_LISTEN). */
export const TCP_LISTEN = 0x0a;

export interface TcpSocketEntry {
  /** IPv4 dotted quad, or IPv6 (`::`, `::ffff:a.b.c.d`, else eight uncompressed groups). */
  readonly localAddress: string;
  readonly localPort: number;
  /** The kernel's TCP state number (0x0A = LISTEN). */
  readonly state: number;
  /** Socket inode: what /proc/PID/fd/N links to as `socket:[inode]`. 0 for sockets without one. */
  readonly inode: number;
}

/**
 * The kernel prints each 32-bit word of an address with `%08X` of the value in host byte order:
 * on a little-endian machine 127.0.0.1 is `0100007F`. Ports are printed as numbers (`%04X`).
 */
function wordBytes(hex: string, order: 'LE' | 'BE'): number[] {
  const b = [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return order === 'LE' ? b.reverse() : b;
}

function hexToAddress(hex: string, order: 'LE' | 'BE'): string | undefined {
  if (!/^[0-9A-Fa-f]+$/.test(hex)) return undefined;
  if (hex.length === 8) return wordBytes(hex, order).join('.');
  if (hex.length !== 32) return undefined;
  const bytes = [0, 8, 16, 24].flatMap((i) => wordBytes(hex.slice(i, i + 8), order));
  if (bytes.every((x) => x === 0)) return '::';
  if (bytes.slice(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

/**
 * Parses /proc/net/tcp or /proc/net/tcp6 (the header line and malformed lines are skipped).
 *
 * @example
 * parseProcNetTcp('  sl  local_address ...\n   0: 0100007F:3A99 00000000:0000 0A ... 0 0 4242 1 ...')
 * // [{ localAddress: '127.0.0.1', localPort: 15001, state: 10, inode: 4242 }]
 */
export function parseProcNetTcp(text: string, order: 'LE' | 'BE' = endianness()): TcpSocketEntry[] {
  const out: TcpSocketEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if (f.length < 10 || !/^\d+:$/.test(f[0]!)) continue;
    const [addrHex, portHex] = f[1]!.split(':');
    const localAddress = addrHex ? hexToAddress(addrHex, order) : undefined;
    const localPort = parseInt(portHex ?? '', 16);
    const state = parseInt(f[3]!, 16);
    const inode = Number(f[9]);
    if (localAddress === undefined || !Number.isInteger(localPort) || !Number.isInteger(state) || !Number.isInteger(inode)) continue;
    out.push({ localAddress, localPort, state, inode });
  }
  return out;
}

/** `socket:[4242]` → 4242; anything else (files, pipes, anon inodes) → undefined. */
export function socketInode(link: string): number | undefined {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : undefined;
}

/**
 * The cgroup v2 path of /proc/PID/cgroup (the `0::` line), as the reading process's cgroup
 * namespace shows it; undefined when the process is in no cgroup v2 hierarchy.
 */
export function parseCgroupV2(text: string): string | undefined {
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line === undefined ? undefined : line.slice(3).trim() || '/';
}

/** A path seen from a nested cgroup namespace (`/../../kubepods.slice/...`) cannot be mapped under the host root directly. */
export function isOutsideNamespace(path: string): boolean {
  return path.split('/').includes('..');
}

// kubelet names a pod's cgroup after its UID: `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
const POD_SEGMENT = /(^|-)pod[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}(\.slice)?$/;

/**
 * The pod-level cgroup of a container's cgroup: the deepest ancestor-or-self kubelet named after a
 * pod UID, so hooks attached there survive a container restart in the same pod. A path with no
 * such segment (the lab, tests, a ztunnel run by systemd) is returned as it is.
 *
 * @example
 * podLevelCgroup('/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c..._9f.slice/cri-containerd-ab12.scope')
 * // '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c..._9f.slice'
 */
export function podLevelCgroup(path: string): string {
  const segments = path.split('/');
  for (let i = segments.length - 1; i >= 0; i--) {
    if (POD_SEGMENT.test(segments[i]!)) return segments.slice(0, i + 1).join('/') || '/';
  }
  return path;
}
