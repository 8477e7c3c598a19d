/**
 * IP addresses and CIDR blocks, IPv4 and IPv6, as the model and the data path need them.
 *
 * Addresses are held as bigints so one containment check covers both families. IPv4-mapped IPv6
 * addresses (`::ffff:10.0.0.1`, what a dual-stack Node socket reports for an IPv4 peer) are treated
 * as the IPv4 address they carry: otherwise a policy `ipBlocks: [10.0.0.0/8]` would silently stop
 * matching as soon as a listener binds `::`.
 */
import { isIP } from 'node:net';

/** A parsed address: `value` is the 32-bit (family 4) or 128-bit (family 6) number. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly value: bigint;
}

/** A parsed CIDR block; `network` has its host bits cleared. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefixLength: number;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n;
const V4_MAPPED_MASK = ((1n << 96n) - 1n) << 32n;

function parseV4(s: string): bigint {
  let v = 0n;
  for (const part of s.split('.')) v = (v << 8n) | BigInt(Number(part));
  return v;
}

function parseV6(s: string): bigint {
  // Invariant: `s` already passed net.isIP() === 6, so the structure is valid.
  let tail4: bigint | undefined;
  let text = s;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    tail4 = parseV4(text.slice(lastColon + 1));
    // Replace the dotted tail by two placeholder groups so the group arithmetic below holds.
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(rest === undefined ? 0 : zeros).fill('0'), ...tailGroups];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  if (tail4 !== undefined) v = (v & ~0xffffffffn) | tail4;
  return v;
}

/**
 * Parses an IPv4 or IPv6 address; a zone suffix (`%eth0`) is dropped, and an IPv4-mapped IPv6
 * address is returned as IPv4. Returns undefined for anything else.
 *
 * @example
 * parseIp('::ffff:10.0.0.1') // => { family: 4, value: 167772161n }
 */
export function parseIp(input: string): IpAddress | undefined {
  const pct = input.indexOf('%');
  const s = pct === -1 ? input : input.slice(0, pct);
  const fam = isIP(s);
  if (fam === 4) return { family: 4, value: parseV4(s) };
  if (fam !== 6) return undefined;
  const v = parseV6(s);
  if ((v & V4_MAPPED_MASK) === V4_MAPPED_PREFIX) return { family: 4, value: v & 0xffffffffn };
  return { family: 6, value: v };
}

/** Formats a parsed address: dotted quad, or RFC 5952 text (lowercase, longest zero run as `::`). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((sh) => String((v >> sh) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let sh = 112n; sh >= 0n; sh -= 16n) groups.push(Number((ip.value >> sh) & 0xffffn));
  // RFC 5952 4.2: compress the longest run of two or more zero groups; the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * The canonical text of an address (see `formatIp`), or undefined when `input` is not one.
 * The model stores addresses in this form so that lookups can compare strings.
 */
export function canonicalIp(input: string): string | undefined {
  const ip = parseIp(input);
  return ip === undefined ? undefined : formatIp(ip);
}

/**
 * Parses `addr/len` or a single address (a /32 or /128), as Istio's `ipBlocks` allow. Host bits
 * set below the prefix are cleared (Istio accepts `10.0.0.1/24` and means `10.0.0.0/24`). Leading
 * zeros are refused in the length and in IPv4 octets, as Go's net/netip refuses them.
 */
export function parseCidr(input: string): Cidr | undefined {
  const slash = input.indexOf('/');
  const addrText = slash === -1 ? input : input.slice(0, slash);
  if (addrText.includes('%')) return undefined;
  const ip = parseIp(addrText);
  if (ip === undefined) return undefined;
  // A v4-mapped v6 block is unmapped by parseIp; its prefix length then counts from bit 96.
  const mapped = ip.family === 4 && isIP(addrText) === 6;
  const bits = ip.family === 4 ? 32 : 128;
  let len = bits;
  if (slash !== -1) {
    const lenText = input.slice(slash + 1);
    // Go's netip.ParsePrefix, which Istio's ValidateIPs uses, refuses a sign and leading zeros
    // (`/024`); the address part already refuses them (`010.0.0.1`: net.isIP, like netip.ParseAddr).
    if (!/^(0|[1-9]\d{0,2})$/.test(lenText)) return undefined;
    len = Number(lenText) - (mapped ? 96 : 0);
    if (len < 0 || len > bits) return undefined;
  }
  const hostBits = BigInt(bits - len);
  return { family: ip.family, network: (ip.value >> hostBits) << hostBits, prefixLength: len };
}

/** Whether `ip` lies inside `cidr`; addresses of the other family never do. */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const hostBits = BigInt((cidr.family === 4 ? 32 : 128) - cidr.prefixLength);
  return (ip.value >> hostBits) << hostBits === cidr.network;
}
