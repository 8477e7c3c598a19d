/**
 * An edge's recent access-log lines: the tail (last `TAIL_BYTES`) of each access-log file, its
 * JSON lines with `"scope":"access"` (ztunnel's `connection complete`, the waypoint's `request
 * complete`), kept when the line touches both ends of the edge. Which nodes a line touches: its
 * source workload, its destination workload and service, the waypoint whose log it is, and the
 * parent Service of a split whose backend it names.
 */
import { open } from 'node:fs/promises';
import type { Topology } from './topology.js';

/** 256 KiB of each file: a few hundred recent lines, read in one call whatever the file's size. */
export const TAIL_BYTES = 256 * 1024;

async function tail(file: string, bytes: number): Promise<string> {
  const fh = await open(file, 'r').catch(() => undefined);
  if (!fh) return '';
  try {
    const { size } = await fh.stat();
    const start = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    const text = buf.toString('utf8');
    // The first line of a cut tail is partial.
    return start > 0 ? text.slice(text.indexOf('\n') + 1) : text;
  } finally {
    await fh.close();
  }
}

type Line = { src?: { workload?: string; namespace?: string }; dst?: { workload?: string; namespace?: string; service?: string }; scope?: string; time?: string };

/** The node ids (aggregate.ts) a line touches. */
export function touched(line: Line, topo: Topology, waypoint: string | undefined): Set<string> {
  const ids = new Set<string>();
  const wl = (ns: string | undefined, pod: string | undefined): void => {
    if (!pod || !ns) return;
    const wp = topo.waypointOf(ns, pod);
    ids.add(wp !== undefined ? `wp:${ns}/${wp}` : `wl:${ns}/${topo.workloadOf(ns, pod)}`);
  };
  wl(line.src?.namespace, line.src?.workload);
  wl(line.dst?.namespace ?? line.src?.namespace, line.dst?.workload);
  if (waypoint) ids.add(waypoint);
  const svc = line.dst?.service;
  if (svc) {
    const [name, ns] = svc.split('.');
    if (name && ns) {
      ids.add(`svc:${ns}/${name}`);
      for (const s of topo.splits) if (s.namespace === ns && s.backends.some((b) => b.service === name)) ids.add(`svc:${ns}/${s.parent}`);
    }
  }
  return ids;
}

/** Up to `max` recent access-log lines of the edge `source` → `target`, newest last. */
export async function edgeLogLines(topo: Topology, source: string, target: string, max = 20): Promise<string[]> {
  const found: Array<{ time: string; text: string }> = [];
  for (const { file, waypoint } of topo.accessLogs) {
    for (const text of (await tail(file, TAIL_BYTES)).split('\n')) {
      if (!text.includes('"scope":"access"')) continue;
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        continue;
      }
      const ids = touched(line, topo, waypoint);
      if (ids.has(source) && ids.has(target)) found.push({ time: line.time ?? '', text });
    }
  }
  return found.sort((a, b) => a.time.localeCompare(b.time)).slice(-max).map((f) => f.text);
}
