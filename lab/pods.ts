/**
 * Pods in the lab, made the way a container runtime makes them: scheduled on the node with the
 * fewest pods, a network namespace and a cgroup each, wired through the node's CNI chain (bridge +
 * host-local, our plugin chained last, so the node agent enrols them as it would in a cluster),
 * then their containers started as processes in that namespace and cgroup, with the pod's hosts
 * file on /etc/hosts. Removal runs the chain's DEL. What the node agents make of each pod is read
 * back from their socket API.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentClient } from '../cni-plugin/agent-client.js';
import type { PodStatus } from '../cni-plugin/api.js';
import { cgroup2Root } from '../bpf/kernel.js';
import { runChain, type NetConfList } from './cni-chain.js';
import { cniBinDir, conflist, logsDir, netnsPath, type Progress } from './cluster.js';
import { writeHostsFiles } from './hosts.js';
import { containerArgv } from './manifests.js';
import { podKey, type LabPaths, type LabState, type PodRecord } from './state.js';
import { podArgv, removeCgroup, sh, spawnDetached } from './sys.js';

type Raw = Record<string, unknown>;

/** A pod to make: its Pod document, and the `Kind/namespace/name` of the Deployment it comes from. */
export interface PodToAdd {
  readonly raw: Raw;
  readonly owner?: string;
}

function chainBase(paths: LabPaths, s: LabState, p: Pick<PodRecord, 'node' | 'namespace' | 'name' | 'uid' | 'containerId' | 'netns'>) {
  const n = s.nodes.find((x) => x.name === p.node)!;
  return {
    conflist: conflist(paths, n) as unknown as NetConfList,
    containerId: p.containerId,
    netns: netnsPath(p.netns),
    ifname: 'eth0',
    cniPath: [cniBinDir(paths)],
    runInNetns: netnsPath(n.netns),
    args: { K8S_POD_NAMESPACE: p.namespace, K8S_POD_NAME: p.name, K8S_POD_UID: p.uid },
  };
}

/** How many pods are set up at once: the CNI chain and process starts are mostly waiting. */
const POD_CONCURRENCY = 4;

/** Fewest pods first, counting those already planned. */
function schedule(s: LabState, count: number): string[] {
  const load = new Map(s.nodes.map((n) => [n.name, 0]));
  for (const p of Object.values(s.pods)) load.set(p.node, (load.get(p.node) ?? 0) + 1);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const node = [...s.nodes].sort((a, b) => load.get(a.name)! - load.get(b.name)! || a.index - b.index)[0]!;
    load.set(node.name, load.get(node.name)! + 1);
    out.push(node.name);
  }
  return out;
}

/**
 * Schedules and adds `todo`, `POD_CONCURRENCY` at a time. Each pod is in `s.pods` once made, so
 * the caller can record what was made even when one pod fails.
 */
export async function addPods(paths: LabPaths, s: LabState, todo: readonly PodToAdd[], say: Progress): Promise<void> {
  const nodes = schedule(s, todo.length);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const i = next++;
      await addPod(paths, s, todo[i]!.raw, todo[i]!.owner, nodes[i]!, say);
    }
  };
  await Promise.all(Array.from({ length: Math.min(POD_CONCURRENCY, todo.length) }, worker));
}

async function addPod(paths: LabPaths, s: LabState, raw: Raw, owner: string | undefined, nodeName: string, say: Progress): Promise<PodRecord> {
  const meta = raw.metadata as Raw;
  const namespace = (meta.namespace as string) ?? 'default';
  const name = meta.name as string;
  const node = s.nodes.find((n) => n.name === nodeName)!;
  const id = `${namespace}-${name}`;
  const netns = `${paths.prefix}-pod-${id}`;
  const cgroup = join((await cgroup2Root())!, `${paths.prefix}-pod-${id}`);
  const base = { node: node.name, namespace, name, uid: randomUUID(), containerId: `${id}-${Date.now().toString(36)}`, netns };
  await sh('ip', ['netns', 'add', netns]);
  await mkdir(cgroup, { recursive: true });
  await runChain({ conflist: { cniVersion: '1.0.0', name: 'lo', plugins: [{ type: 'loopback' }] }, command: 'ADD', containerId: base.containerId, netns: netnsPath(netns), ifname: 'lo', cniPath: [cniBinDir(paths)], runInNetns: netnsPath(node.netns) });
  const cniResult = (await runChain({ ...chainBase(paths, s, base), command: 'ADD' }))! as Record<string, unknown>;
  const ip = String((cniResult['ips'] as Array<{ address: string }>)[0]!.address).split('/')[0]!;
  const dir = join(logsDir(paths), 'pods', id);
  await mkdir(dir, { recursive: true });
  const pod: PodRecord = { ...base, ip, cgroup, cniResult, hosts: join(dir, 'hosts'), containers: [], raw, rawJson: JSON.stringify(raw), ...(owner ? { owner } : {}), created: new Date().toISOString() };
  s.pods[podKey(namespace, name)] = pod;
  await writeHostsFiles(s, [pod]);
  for (const c of (raw.spec as Raw).containers as Raw[]) {
    const argv = containerArgv(c);
    const env: Record<string, string> = { POD_NAME: name, POD_NAMESPACE: namespace, NODE_NAME: node.name, POD_IP: ip, HOSTNAME: name };
    const ports = Array.isArray(c.ports) ? (c.ports as Raw[]) : [];
    if (ports[0]?.containerPort !== undefined) env['PORT'] = String(ports[0].containerPort);
    for (const e of Array.isArray(c.env) ? (c.env as Raw[]) : []) if (typeof e.name === 'string') env[e.name] = String(e.value ?? '');
    const log = join(dir, `${c.name as string}.log`);
    const exitFile = join(dir, `${c.name as string}.exit`);
    const pid = spawnDetached(podArgv(argv, { cgroup, netns: netnsPath(netns), hosts: pod.hosts, exitFile }), { log, env });
    pod.containers.push({ name: c.name as string, argv, log, exitFile, pid });
  }
  say(`pod ${namespace}/${name} on ${node.name}, ip ${ip}`);
  return pod;
}

/** Removes a pod: its processes (with its cgroup), its CNI chain (DEL), its network namespace, its logs and its record. */
export async function removePod(paths: LabPaths, s: LabState, p: PodRecord, say: Progress): Promise<void> {
  await removeCgroup(p.cgroup);
  await runChain({ ...chainBase(paths, s, p), command: 'DEL', prevResult: p.cniResult }).catch(() => undefined);
  await sh('ip', ['netns', 'del', p.netns]).catch(() => undefined);
  await rm(join(logsDir(paths), 'pods', `${p.namespace}-${p.name}`), { recursive: true, force: true });
  delete s.pods[podKey(p.namespace, p.name)];
  say(`pod ${p.namespace}/${p.name} deleted`);
}

/** What each node's agent reports for its pods (enrolment), by `podKey`; a node whose agent does not answer adds nothing. */
export async function podStatuses(paths: LabPaths, s: LabState): Promise<Map<string, PodStatus>> {
  const out = new Map<string, PodStatus>();
  for (const n of s.nodes) {
    const st = await new AgentClient({ socketPath: n.socket, connectTimeoutMs: 1000, requestTimeoutMs: 5000 }).state().catch(() => undefined);
    for (const p of st?.pods ?? []) out.set(podKey(p.namespace, p.name), p);
  }
  void paths;
  return out;
}
