/**
 * Just enough of the pcap format (tcpdump -w, Ethernet link type) to list IPv4 TCP segments with
 * their payload, so the tests can check what crossed the wire.
 */
import { readFile } from 'node:fs/promises';

export interface Segment {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly flags: number;
  readonly payload: Buffer;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;

export async function readPcap(path: string): Promise<Segment[]> {
  const buf = await readFile(path);
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && buf.readUInt32BE(0) !== 0xa1b2c3d4 && buf.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${path} is not a pcap file`);
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const linkType = u32(20);
  const out: Segment[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const caplen = u32(off + 8);
    const frame = buf.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    let ipOff: number;
    if (linkType === LINKTYPE_ETHERNET) {
      if (frame.length < 14 || frame.readUInt16BE(12) !== 0x0800) continue;
      ipOff = 14;
    } else if (linkType === LINKTYPE_LINUX_SLL) {
      if (frame.length < 16 || frame.readUInt16BE(14) !== 0x0800) continue;
      ipOff = 16;
    } else {
      throw new Error(`pcap link type ${linkType} is not handled`);
    }
    const ip = frame.subarray(ipOff);
    if (ip.length < 20 || ip[0]! >> 4 !== 4 || ip[9] !== 6) continue;
    const ihl = (ip[0]! & 0x0f) * 4;
    const total = ip.readUInt16BE(2);
    const tcp = ip.subarray(ihl, total);
    if (tcp.length < 20) continue;
    const doff = (tcp[12]! >> 4) * 4;
    out.push({
      src: [...ip.subarray(12, 16)].join('.'),
      dst: [...ip.subarray(16, 20)].join('.'),
      sport: tcp.readUInt16BE(0),
      dport: tcp.readUInt16BE(2),
      flags: tcp[13]!,
      payload: tcp.subarray(doff),
    });
  }
  return out;
}
