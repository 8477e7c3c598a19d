/**
 * The redirect configuration the programs read from their maps, and its byte encoding. This is the
 * only place that knows the layouts of bpf/src/common.h; keep the two in step.
 */
import { endianness } from 'node:os';
import { ConfigError } from '../core/errors.js';
import { parseCidr, parseIp } from '../core/model/ip.js';

/** What the connect hooks need to know about the node. */
export interface RedirectConfig {
  /** The node's ztunnel address (IPv4): where redirected connections go. */
  readonly ztunnelIp: string;
  /** ztunnel's outbound capture port (15001). */
  readonly outboundPort: number;
  /** The node's own addresses: never redirected. IPv6 entries are accepted and have no effect (IPv6 is never redirected). */
  readonly nodeIps: readonly string[];
  /** Destinations never redirected (e.g. the API server's range). IPv6 entries have no effect. */
  readonly excludeCidrs: readonly string[];
  /** Destination ports never redirected. */
  readonly excludePorts: readonly number[];
}

/** Map capacities, as declared in bpf/src/common.h. */
export const MAP_CAPACITY = { nodeIps: 256, excludeCidrs: 1024, excludePorts: 256 } as const;

/** amb_config.flags bit: redirect new connections. */
const FLAG_ENABLED = 1;

/** Indexes of amb_stats, in the order of `enum amb_stat` in common.h. */
export const STAT_NAMES = [
  'redirected',
  'bypassed',
  'noStorage',
  'peerRecorded',
  'peerMoved',
  'peerMissing',
  'peerExpired',
  'strictDropped',
  'origDstServed',
] as const;
export type StatName = (typeof STAT_NAMES)[number];

/** Bytes as bpftool wants them: `hex 0a f4 00 01`. */
export type MapBytes = readonly number[];

/** A validated config in map form: every key and value already encoded. */
export interface EncodedConfig {
  readonly config: { readonly key: MapBytes; readonly value: MapBytes };
  readonly nodeIps: readonly MapBytes[];
  readonly excludeCidrs: readonly MapBytes[];
  readonly excludePorts: readonly MapBytes[];
}

const LITTLE = endianness() === 'LE';

function u16(n: number): number[] {
  const b = [n & 0xff, (n >> 8) & 0xff];
  return LITTLE ? b : b.reverse();
}

function u32(n: number): number[] {
  const b = [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  return LITTLE ? b : b.reverse();
}

/** Network byte order. */
function ip4(v: bigint): number[] {
  return [24n, 16n, 8n, 0n].map((sh) => Number((v >> sh) & 0xffn));
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * Checks a config and encodes it for the maps; every problem is reported at once.
 *
 * @example
 * encodeRedirectConfig({ ztunnelIp: '10.244.0.1', outboundPort: 15001, nodeIps: ['192.168.1.10'],
 *   excludeCidrs: ['10.96.0.1/32'], excludePorts: [22] });
 */
export function encodeRedirectConfig(cfg: RedirectConfig): EncodedConfig {
  const problems: string[] = [];
  const zt = typeof cfg.ztunnelIp === 'string' ? parseIp(cfg.ztunnelIp) : undefined;
  if (!zt || zt.family !== 4) {
    problems.push(`ztunnelIp: ${JSON.stringify(cfg.ztunnelIp)} is not an ipv4 address (ztunnel is reached over ipv4)`);
  } else if (zt.value === 0n || zt.value >> 24n === 127n) {
    problems.push(`ztunnelIp: ${cfg.ztunnelIp} cannot be used: loopback and 0.0.0.0 are never redirected; use the ztunnel's address on the pod network`);
  }
  if (!isPort(cfg.outboundPort)) problems.push(`outboundPort: ${JSON.stringify(cfg.outboundPort)} is not a port (1-65535)`);

  const nodeIps = new Map<string, MapBytes>();
  (cfg.nodeIps ?? []).forEach((text, i) => {
    const ip = typeof text === 'string' ? parseIp(text) : undefined;
    if (!ip) problems.push(`nodeIps[${i}]: ${JSON.stringify(text)} is not an ip address`);
    else if (ip.family === 4) nodeIps.set(String(ip.value), ip4(ip.value));
  });
  if (nodeIps.size > MAP_CAPACITY.nodeIps) problems.push(`nodeIps: ${nodeIps.size} ipv4 addresses, at most ${MAP_CAPACITY.nodeIps} fit`);

  const cidrs = new Map<string, MapBytes>();
  (cfg.excludeCidrs ?? []).forEach((text, i) => {
    const c = typeof text === 'string' ? parseCidr(text) : undefined;
    if (!c) problems.push(`excludeCidrs[${i}]: ${JSON.stringify(text)} is not a cidr (addr/len) or an address`);
    else if (c.family === 4) cidrs.set(`${c.network}/${c.prefixLength}`, [...u32(c.prefixLength), ...ip4(c.network)]);
  });
  if (cidrs.size > MAP_CAPACITY.excludeCidrs) problems.push(`excludeCidrs: ${cidrs.size} ipv4 blocks, at most ${MAP_CAPACITY.excludeCidrs} fit`);

  const ports = new Map<number, MapBytes>();
  (cfg.excludePorts ?? []).forEach((p, i) => {
    if (!isPort(p)) problems.push(`excludePorts[${i}]: ${JSON.stringify(p)} is not a port (1-65535)`);
    else ports.set(p, u16(p));
  });
  if (ports.size > MAP_CAPACITY.excludePorts) problems.push(`excludePorts: ${ports.size} ports, at most ${MAP_CAPACITY.excludePorts} fit`);

  if (problems.length > 0) throw new ConfigError('redirect config', problems);
  return {
    config: {
      key: u32(0),
      value: [...ip4(zt!.value), ...u16(cfg.outboundPort), ...u16(FLAG_ENABLED)],
    },
    nodeIps: [...nodeIps.values()],
    excludeCidrs: [...cidrs.values()],
    excludePorts: [...ports.values()],
  };
}

/** The value written for set-like maps (node IPs, CIDRs, ports): present. */
export const PRESENT: MapBytes = [1];

/** `[0x0a, 0xf4]` → `['0a', 'f4']`, as bpftool takes after `hex`. */
export function hexBytes(b: MapBytes): string[] {
  return b.map((x) => x.toString(16).padStart(2, '0'));
}

/** A host-order u32 map key, e.g. an array index. */
export function hostU32(b: MapBytes): number {
  const buf = Buffer.from([...b, 0, 0, 0, 0].slice(0, 4));
  return LITTLE ? buf.readUInt32LE(0) : buf.readUInt32BE(0);
}

/** Sums a per-CPU counter dump (`values[cpu]` = 8 little/host-endian bytes) for each stat. */
export function decodeStats(perIndex: ReadonlyMap<number, readonly MapBytes[]>): Record<StatName, number> {
  const out = {} as Record<StatName, number>;
  STAT_NAMES.forEach((name, i) => {
    let total = 0n;
    for (const bytes of perIndex.get(i) ?? []) {
      const ordered = LITTLE ? [...bytes].reverse() : [...bytes];
      total += ordered.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
    }
    out[name] = Number(total);
  });
  return out;
}
