/**
 * The lab's record on disk (`<stateDir>/lab.json`): nodes, the processes it started (pid + a
 * marker checked against /proc so a reused pid is never taken for ours), the objects applied,
 * and every pod's runtime facts. `lab down` needs none of it: it removes by prefix.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where a lab lives and how its things are named. */
export interface LabPaths {
  /** Prefix of every namespace, cgroup, pin dir and the nft table the lab makes. */
  readonly prefix: string;
  /** State, logs, CA, tokens, manifests, desired state, sockets. */
  readonly stateDir: string;
}

/** `amb-lab` in /run/amb-lab: /run is a tmpfs, gone at reboot like the namespaces. */
export const DEFAULT_PREFIX = 'amb-lab';
export function defaultPaths(prefix = DEFAULT_PREFIX): LabPaths {
  return { prefix, stateDir: join('/run', prefix) };
}

export interface NodeRecord {
  readonly name: string;
  readonly index: number;
  /** On the fabric; also the node's ztunnel address. */
  readonly ip: string;
  readonly podCidr: string;
  readonly gateway: string;
  readonly netns: string;
  readonly ztunnelCgroup: string;
  readonly pinDir: string;
  readonly socket: string;
}

export interface ProcRecord {
  pid: number;
  readonly log: string;
  /** A string that /proc/<pid>/cmdline contains while it is ours. */
  readonly marker: string;
  restarts: number;
}

export interface ContainerRecord {
  readonly name: string;
  readonly argv: readonly string[];
  readonly log: string;
  readonly exitFile: string;
  pid: number;
}

export interface PodRecord {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  readonly ip: string;
  readonly netns: string;
  readonly cgroup: string;
  readonly containerId: string;
  readonly cniResult: Record<string, unknown>;
  readonly hosts: string;
  readonly containers: ContainerRecord[];
  /** The Pod document as applied (or generated from a Deployment). */
  readonly raw: Record<string, unknown>;
  readonly rawJson: string;
  readonly owner?: string;
  readonly created: string;
}

export interface LabState {
  readonly prefix: string;
  readonly fabricNetns: string;
  readonly controlPlaneIp: string;
  readonly nodes: NodeRecord[];
  readonly procs: Record<string, ProcRecord>;
  /** Applied objects other than Pods, by `Kind/namespace/name`. */
  readonly objects: Record<string, Record<string, unknown>>;
  readonly pods: Record<string, PodRecord>;
  readonly created: string;
}

/** The key of an applied object in `LabState.objects`: `Kind/namespace/name` (no namespace: `Kind//name`). */
export const objKey = (kind: string, ns: string | undefined, name: string): string => `${kind}/${ns ?? ''}/${name}`;

/** The key of a pod in `LabState.pods`: `namespace/name`. */
export const podKey = (ns: string, name: string): string => `${ns}/${name}`;

/** The lab's namespaces with their labels: `default` (always there) and every applied Namespace. */
export function namespaces(s: LabState): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>([['default', {}]]);
  for (const o of Object.values(s.objects)) {
    if (o.kind !== 'Namespace') continue;
    const m = o.metadata as Record<string, unknown>;
    out.set(m.name as string, { ...((m.labels as Record<string, string>) ?? {}) });
  }
  return out;
}

/** A pod's labels, as applied. */
export function podLabels(p: Pick<PodRecord, 'raw'>): Record<string, string> {
  return { ...(((p.raw.metadata as Record<string, unknown>).labels as Record<string, string>) ?? {}) };
}

export function statePath(paths: LabPaths): string {
  return join(paths.stateDir, 'lab.json');
}

export async function readState(paths: LabPaths): Promise<LabState | undefined> {
  try {
    return JSON.parse(await readFile(statePath(paths), 'utf8')) as LabState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function writeState(paths: LabPaths, s: LabState): Promise<void> {
  await writeAtomic(statePath(paths), `${JSON.stringify(s, null, 2)}\n`);
}

/** Writes by rename, so readers (watchers of the control plane and agents) never see half a file. */
export async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}
