/**
 * Workloads in the lab: `apply`, `delete`, `get`, `label`, `exec`, `logs`.
 *
 * Manifests are parsed by core's manifest parser (the control plane's own), so a manifest means
 * the same here as in the control plane; everything is checked before anything is changed. Pods
 * (given, or generated from Deployments) are scheduled on the node with the fewest pods, wired
 * through the CNI chain like a runtime does, and their containers run as processes in the pod's
 * network namespace and cgroup. The lab then writes the control plane's manifests (pods with
 * their node and IP, services with their ClusterIP, policies as given) and the node agents'
 * desired state. Service names resolve through a per-pod hosts file bind-mounted on /etc/hosts.
 */
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import * as yaml from 'js-yaml';
import { AgentClient } from '../cni-plugin/agent-client.js';
import type { PodStatus } from '../cni-plugin/api.js';
import { DEFAULTS as AGENT_DEFAULTS } from '../cni-plugin/agent/config.js';
import { decide, type DecideContext } from '../cni-plugin/agent/decide.js';
import { runChain, type NetConfList } from './cni-chain.js';
import { cgroup2Root } from '../bpf/kernel.js';
import { PORTS } from '../core/hbone/constants.js';
import { formatProblem, type DeploymentObject, type ManifestObject, type ObjectProblem } from '../core/kube/objects.js';
import { parseManifests } from '../core/kube/parse.js';
import { podsForDeployment } from '../core/kube/deployments.js';
import { cniBinDir, conflist, desiredFile, LabError, logsDir, manifestsDir, netnsPath, table, type Progress } from './cluster.js';
import { readState, writeAtomic, writeState, type LabPaths, type LabState, type PodRecord } from './state.js';
import { alive, getInNetns, IMAGES_DIR, podArgv, removeCgroup, sh, spawnDetached, until } from './sys.js';
import { derivedObjects, gatewayStatus, isWaypointGateway, ownedBy } from './waypoints.js';

export const SERVICE_CIDR_PREFIX = '10.96.0';
const BUILTIN_IMAGES = ['echo', 'http-echo', 'get', 'sleep', 'waypoint'];
const CLUSTER_DOMAIN = 'svc.cluster.local';

type Raw = Record<string, unknown>;
const objKey = (kind: string, ns: string | undefined, name: string) => `${kind}/${ns ?? ''}/${name}`;
const podKey = (ns: string, name: string) => `${ns}/${name}`;

export async function requireLab(paths: LabPaths): Promise<LabState> {
  const s = await readState(paths);
  if (!s) throw new LabError(`no lab is up (no ${paths.stateDir}/lab.json); run ambientctl lab up`, 'ERR_LAB_NOT_UP');
  return s;
}

/** Manifest files: FILE, or every *.yaml/*.yml/*.json under DIR (sorted, recursive). */
async function manifestFiles(path: string): Promise<string[]> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new LabError(`${path}: no such file or directory`, 'ERR_LAB_NO_FILE');
  if (!st.isDirectory()) return [path];
  const out: string[] = [];
  for (const e of (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(path, e.name);
    if (e.isDirectory()) out.push(...(await manifestFiles(p)));
    else if (['.yaml', '.yml', '.json'].includes(extname(e.name))) out.push(p);
  }
  return out;
}

/** Parses and checks every manifest; throws with every problem (file, object, field) when any is an error. */
export async function loadManifests(path: string): Promise<ManifestObject[]> {
  const objects: ManifestObject[] = [];
  const problems: ObjectProblem[] = [];
  for (const f of await manifestFiles(path)) {
    const r = parseManifests(await readFile(f, 'utf8'), f);
    objects.push(...r.objects);
    problems.push(...r.problems.filter((p) => p.severity === 'error'));
  }
  for (const o of objects) {
    if (o.kind === 'Pod') problems.push(...containerProblems(o.raw.spec as Raw, 'spec', o));
    if (o.kind === 'Deployment') problems.push(...containerProblems((o.raw.spec as Raw).template ? ((o.raw.spec as Raw).template as Raw).spec as Raw : undefined, 'spec.template.spec', o));
  }
  if (problems.length > 0) throw new LabError(`rejected; nothing was applied:\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`, 'ERR_LAB_BAD_MANIFEST');
  return objects;
}

function containerProblems(spec: Raw | undefined, at: string, o: ManifestObject): ObjectProblem[] {
  const object = `${o.kind} ${o.meta.namespace ?? ''}/${o.meta.name}`;
  const problem = (field: string, message: string): ObjectProblem => ({ object, field, message, severity: 'error', ...(o.source ? { source: o.source } : {}) });
  const containers = spec?.containers;
  if (!Array.isArray(containers) || containers.length === 0) return [problem(`${at}.containers`, 'is required: a list with at least one container')];
  const out: ObjectProblem[] = [];
  containers.forEach((c: Raw, i) => {
    const f = `${at}.containers[${i}]`;
    if (typeof c?.name !== 'string' || c.name === '') out.push(problem(`${f}.name`, 'is required'));
    const image = typeof c?.image === 'string' ? c.image : '';
    const hasCommand = Array.isArray(c?.command) && c.command.length > 0;
    if (image.startsWith('lab/') && !BUILTIN_IMAGES.includes(image.slice(4))) out.push(problem(`${f}.image`, `${JSON.stringify(image)} is not a built-in image; use one of ${BUILTIN_IMAGES.map((b) => `lab/${b}`).join(', ')}`));
    else if (!image.startsWith('lab/') && !hasCommand) out.push(problem(`${f}.command`, `the lab runs no container images; give a command (run on this machine's filesystem) or use a built-in image (${BUILTIN_IMAGES.map((b) => `lab/${b}`).join(', ')})`));
    for (const k of ['command', 'args']) if (c?.[k] !== undefined && !(Array.isArray(c[k]) && (c[k] as unknown[]).every((x) => typeof x === 'string'))) out.push(problem(`${f}.${k}`, 'must be a list of strings'));
  });
  return out;
}

/** The argv of a container: command + args, or the built-in program of a `lab/` image. */
export function containerArgv(c: Raw): string[] {
  const image = typeof c.image === 'string' ? c.image : '';
  const command = Array.isArray(c.command) ? (c.command as string[]) : undefined;
  const args = Array.isArray(c.args) ? (c.args as string[]) : [];
  if (command) return [...builtin(command), ...args];
  return [process.execPath, join(IMAGES_DIR, `${image.slice(4)}.js`), ...args];
}

/** `lab/get ...` → node dist/lab/images/get.js ...: the built-in programs as commands. */
export function builtin(argv: readonly string[]): string[] {
  const first = argv[0] ?? '';
  if (first.startsWith('lab/') && BUILTIN_IMAGES.includes(first.slice(4))) return [process.execPath, join(IMAGES_DIR, `${first.slice(4)}.js`), ...argv.slice(1)];
  return [...argv];
}

// ---- the files the control plane and the agents read -------------------------------------------

function namespaces(s: LabState): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>([['default', {}]]);
  for (const o of Object.values(s.objects)) {
    if (o.kind !== 'Namespace') continue;
    const m = o.metadata as Raw;
    out.set(m.name as string, { ...((m.labels as Record<string, string>) ?? {}) });
  }
  return out;
}

function podLabels(p: Pick<PodRecord, 'raw'>): Record<string, string> {
  return { ...(((p.raw.metadata as Raw).labels as Record<string, string>) ?? {}) };
}

/** Writes the control plane's manifests and the agents' desired state from the lab's record. */
export async function writeClusterFiles(paths: LabPaths, s: LabState): Promise<void> {
  const nss = namespaces(s);
  const docs: Raw[] = [];
  for (const [name, labels] of nss) {
    const applied = s.objects[objKey('Namespace', undefined, name)];
    docs.push(applied ?? { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  }
  for (const o of Object.values(s.objects)) if (o.kind !== 'Namespace' && o.kind !== 'Deployment') docs.push(o);
  for (const p of Object.values(s.pods)) {
    docs.push({ ...p.raw, spec: { ...(p.raw.spec as Raw), nodeName: p.node }, status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] } });
  }
  await writeAtomic(join(manifestsDir(paths), 'lab.yaml'), docs.map((d) => yaml.dump(d, { noRefs: true })).join('---\n'));
  const peerAuthentications = Object.values(s.objects)
    .filter((o) => o.kind === 'PeerAuthentication')
    .map((o) => ({ name: (o.metadata as Raw).name, namespace: (o.metadata as Raw).namespace ?? 'default', spec: o.spec ?? {} }));
  const desired = {
    namespaces: [...nss].map(([name, labels]) => ({ name, labels })),
    pods: Object.values(s.pods).map((p) => ({ namespace: p.namespace, name: p.name, uid: p.uid, node: p.node, labels: podLabels(p), ips: [p.ip] })),
    peerAuthentications,
  };
  await writeAtomic(desiredFile(paths), yaml.dump(desired));
  await writeHostsFiles(s);
  await writeServiceRules(s);
}

/** The nft table in each node namespace that does kube-proxy's job for pods outside the mesh. */
export const SERVICE_TABLE = 'lab_services';

/**
 * ClusterIP → endpoints as DNAT rules in every node namespace (round-robin with numgen), replacing
 * the whole table in one `nft -f` transaction. Meshed pods never reach these rules: their
 * connect() is redirected to ztunnel, which balances on its own. DNATed connections are
 * masqueraded so a reply from an endpoint on the client's own bridge still passes the node's
 * conntrack.
 */
export function serviceRules(s: LabState): string {
  const lines = [`table ip ${SERVICE_TABLE}`, `delete table ip ${SERVICE_TABLE}`, `table ip ${SERVICE_TABLE} {`, '  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;'];
  for (const svc of Object.values(s.objects)) {
    if (svc.kind !== 'Service') continue;
    const spec = svc.spec as Raw;
    const vip = spec.clusterIP;
    const selector = spec.selector as Record<string, string> | undefined;
    if (typeof vip !== 'string' || !/^\d+\.\d+\.\d+\.\d+$/.test(vip) || !selector) continue;
    const ns = ((svc.metadata as Raw).namespace as string) ?? 'default';
    const endpoints = Object.values(s.pods).filter((p) => p.namespace === ns && Object.entries(selector).every(([k, v]) => podLabels(p)[k] === v));
    for (const port of (spec.ports as Raw[]) ?? []) {
      const targets = endpoints.flatMap((p) => {
        const t = targetPort(p, port.targetPort ?? port.port);
        return t === undefined ? [] : [{ ip: p.ip, port: t }];
      });
      if (targets.length === 0) continue;
      // One rule per distinct target port (a named targetPort may differ per pod).
      for (const tp of new Set(targets.map((x) => x.port))) {
        const ips = targets.filter((x) => x.port === tp).map((x) => x.ip);
        lines.push(`    ip daddr ${vip} tcp dport ${Number(port.port)} dnat to numgen inc mod ${ips.length} map { ${ips.map((ip, i) => `${i} : ${ip}`).join(', ')} } : ${tp}`);
      }
    }
  }
  lines.push('  }', '  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;', '    ct status dnat masquerade', '  }', '}');
  return `${lines.join('\n')}\n`;
}

function targetPort(p: PodRecord, target: unknown): number | undefined {
  if (typeof target === 'number') return target;
  if (typeof target === 'string' && /^\d+$/.test(target)) return Number(target);
  for (const c of ((p.raw.spec as Raw).containers as Raw[]) ?? []) {
    for (const port of (c.ports as Raw[]) ?? []) if (port.name === target) return Number(port.containerPort);
  }
  return undefined;
}

async function writeServiceRules(s: LabState): Promise<void> {
  const rules = serviceRules(s);
  for (const n of s.nodes) await sh('ip', ['netns', 'exec', n.netns, 'nft', '-f', '-'], { input: rules });
}

/** Each pod's /etc/hosts: every Service as `svc.ns.svc.cluster.local svc.ns` (and `svc` in the pod's own namespace). */
async function writeHostsFiles(s: LabState, only?: readonly PodRecord[]): Promise<void> {
  const services = Object.values(s.objects).filter((o) => o.kind === 'Service' && typeof (o.spec as Raw)?.clusterIP === 'string');
  for (const p of only ?? Object.values(s.pods)) {
    const lines = ['127.0.0.1\tlocalhost', `${p.ip}\t${p.name}`];
    for (const svc of services) {
      const m = svc.metadata as Raw;
      const ns = (m.namespace as string) ?? 'default';
      const names = [`${m.name}.${ns}.${CLUSTER_DOMAIN}`, `${m.name}.${ns}`, ...(ns === p.namespace ? [m.name as string] : [])];
      lines.push(`${(svc.spec as Raw).clusterIP}\t${names.join(' ')}`);
    }
    // In place (not by rename): the file is bind-mounted into running pods by inode.
    await writeFile(p.hosts, `${lines.join('\n')}\n`);
  }
}

// ---- pods ---------------------------------------------------------------------------------------

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

async function removePod(paths: LabPaths, s: LabState, p: PodRecord, say: Progress): Promise<void> {
  await removeCgroup(p.cgroup);
  await runChain({ ...chainBase(paths, s, p), command: 'DEL', prevResult: p.cniResult }).catch(() => undefined);
  await sh('ip', ['netns', 'del', p.netns]).catch(() => undefined);
  await rm(join(logsDir(paths), 'pods', `${p.namespace}-${p.name}`), { recursive: true, force: true });
  delete s.pods[podKey(p.namespace, p.name)];
  say(`pod ${p.namespace}/${p.name} deleted`);
}

function freeClusterIp(s: LabState): string {
  const used = new Set(Object.values(s.objects).map((o) => (o.spec as Raw | undefined)?.clusterIP));
  for (let i = 10; i < 255; i++) if (!used.has(`${SERVICE_CIDR_PREFIX}.${i}`)) return `${SERVICE_CIDR_PREFIX}.${i}`;
  throw new LabError(`no free ClusterIP left in ${SERVICE_CIDR_PREFIX}.0/24`, 'ERR_LAB_NO_CLUSTER_IP');
}

/** Applies manifests: checked as a whole first, then objects, then pods, then the files the mesh reads. */
export async function apply(paths: LabPaths, path: string, say: Progress = () => {}): Promise<void> {
  const s = await requireLab(paths);
  const objects = withWaypoints(paths, s, await loadManifests(path));
  const known = new Set([...namespaces(s).keys(), ...objects.filter((o) => o.kind === 'Namespace').map((o) => o.meta.name)]);
  const missingNs = objects.filter((o) => o.meta.namespace !== undefined && !known.has(o.meta.namespace));
  if (missingNs.length > 0) {
    throw new LabError(`rejected; nothing was applied:\n${missingNs.map((o) => `  ${o.source ?? path}: ${o.kind} ${o.meta.namespace}/${o.meta.name}: metadata.namespace: namespace ${o.meta.namespace} does not exist; apply a Namespace first`).join('\n')}`, 'ERR_LAB_NO_NAMESPACE');
  }
  const wantPods: Array<{ raw: Raw; owner?: string }> = [];
  const owners = new Set<string>();
  for (const o of objects) {
    const key = objKey(o.kind, o.meta.namespace, o.meta.name);
    if (o.kind === 'Pod') {
      wantPods.push({ raw: JSON.parse(o.rawJson) as Raw });
      continue;
    }
    const raw = JSON.parse(o.rawJson) as Raw;
    if (o.kind === 'Service' && !o.headless) {
      const prev = s.objects[key]?.spec as Raw | undefined;
      const spec = (raw.spec ?? {}) as Raw;
      if (typeof spec.clusterIP !== 'string' || spec.clusterIP === '') spec.clusterIP = (prev?.clusterIP as string) ?? freeClusterIp(s);
      raw.spec = spec;
    }
    if (o.kind === 'Deployment') {
      owners.add(key);
      for (const p of podsForDeployment(o as DeploymentObject)) wantPods.push({ raw: p, owner: key });
    }
    // Status is the controller's: re-applying a Gateway keeps it.
    const prevStatus = s.objects[key]?.status;
    if (o.kind === 'Gateway' && raw.status === undefined && prevStatus !== undefined) raw.status = prevStatus;
    const changed = s.objects[key] === undefined ? 'created' : JSON.stringify(s.objects[key]) === JSON.stringify(raw) ? 'unchanged' : 'configured';
    s.objects[key] = raw;
    say(`${o.kind.toLowerCase()}/${o.meta.name}${o.meta.namespace ? ` -n ${o.meta.namespace}` : ''} ${changed}`);
  }
  // Namespaces and labels first: the agent decides enrolment at CNI ADD from them.
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  const wanted = new Set(wantPods.map((w) => podKey(((w.raw.metadata as Raw).namespace as string) ?? 'default', (w.raw.metadata as Raw).name as string)));
  for (const p of Object.values(s.pods)) {
    const stale = (p.owner && owners.has(p.owner) && !wanted.has(podKey(p.namespace, p.name))) || (wanted.has(podKey(p.namespace, p.name)) && !wantPods.some((w) => JSON.stringify(w.raw) === p.rawJson));
    if (stale) await removePod(paths, s, p, say);
  }
  const todo = wantPods.filter((w) => !s.pods[podKey(((w.raw.metadata as Raw).namespace as string) ?? 'default', (w.raw.metadata as Raw).name as string)]);
  const nodes = schedule(s, todo.length);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const i = next++;
      await addPod(paths, s, todo[i]!.raw, todo[i]!.owner, nodes[i]!, say);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(POD_CONCURRENCY, todo.length) }, worker));
  } finally {
    // Whatever was made is recorded, so delete and down find it even when one pod failed.
    await writeState(paths, s);
  }
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  await waitForMesh(paths, s);
  await programWaypoints(paths, s, objects, say);
}

/** `objects` plus, for each waypoint Gateway among them, what the lab's waypoint controller derives. */
function withWaypoints(paths: LabPaths, s: LabState, objects: ManifestObject[]): ManifestObject[] {
  const out = [...objects];
  for (const o of objects) {
    const raw = JSON.parse(o.rawJson) as Raw;
    if (!isWaypointGateway(raw)) continue;
    const where = `${o.source ?? 'manifest'} (the waypoint of Gateway ${o.meta.namespace ?? 'default'}/${o.meta.name})`;
    const r = parseManifests(derivedObjects(paths, s, raw).map((d) => yaml.dump(d, { noRefs: true })).join('---\n'), where);
    const errors = r.problems.filter((p) => p.severity === 'error');
    if (errors.length > 0) throw new LabError(`rejected; nothing was applied:\n${errors.map((p) => `  ${formatProblem(p)}`).join('\n')}`, 'ERR_LAB_BAD_MANIFEST');
    // What the user applied under the same name wins (a Service or ServiceAccount of their own).
    for (const d of r.objects) if (!objects.some((x) => x.kind === d.kind && x.meta.name === d.meta.name && x.meta.namespace === d.meta.namespace)) out.push(d);
  }
  return out;
}

/** Waits for each applied waypoint Gateway's pod to be ready, then writes the Gateway's status (address, Programmed). */
async function programWaypoints(paths: LabPaths, s: LabState, applied: readonly ManifestObject[], say: Progress): Promise<void> {
  const gateways = applied.filter((o) => o.kind === 'Gateway' && isWaypointGateway(s.objects[objKey('Gateway', o.meta.namespace, o.meta.name)] ?? {}));
  if (gateways.length === 0) return;
  for (const o of gateways) {
    const ns = o.meta.namespace ?? 'default';
    const key = objKey('Gateway', o.meta.namespace, o.meta.name);
    const pods = Object.values(s.pods).filter((p) => p.owner === objKey('Deployment', o.meta.namespace, o.meta.name));
    const svc = s.objects[objKey('Service', o.meta.namespace, o.meta.name)]?.spec as Raw | undefined;
    let ready = false;
    try {
      await until(
        `the waypoint of Gateway ${ns}/${o.meta.name} to be ready`,
        async () => {
          for (const p of pods) {
            const n = s.nodes.find((x) => x.name === p.node)!;
            const ok = await getInNetns(netnsPath(n.netns), `http://${p.ip}:${PORTS.readiness}/healthz/ready`).then(() => true, () => false);
            if (ok) return true;
          }
          return false;
        },
        20_000,
        200,
      );
      ready = true;
    } catch (err) {
      say(`gateway/${o.meta.name} -n ${ns}: ${(err as Error).message}; see ambientctl lab logs ${pods[0]?.name ?? o.meta.name} -n ${ns}`);
    }
    const gw = s.objects[key]!;
    s.objects[key] = { ...gw, status: gatewayStatus(svc?.clusterIP as string | undefined, ready, Number((gw.metadata as Raw).generation ?? 1)) };
    if (ready) say(`gateway/${o.meta.name} -n ${ns} programmed: waypoint ${pods.map((p) => `${p.name} (${p.ip})`).join(', ')} behind ${svc?.clusterIP as string}:${PORTS.hbone}`);
  }
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
}

/** Deletes what the manifests name (a Deployment with its pods, a Namespace with everything in it). */
export async function remove(paths: LabPaths, path: string, say: Progress = () => {}): Promise<void> {
  const s = await requireLab(paths);
  const objects = await loadManifests(path);
  for (const o of objects) {
    const key = objKey(o.kind, o.meta.namespace, o.meta.name);
    if (o.kind === 'Pod') {
      const p = s.pods[podKey(o.meta.namespace ?? 'default', o.meta.name)];
      if (p) await removePod(paths, s, p, say);
      continue;
    }
    if (o.kind === 'Namespace') {
      for (const p of Object.values(s.pods)) if (p.namespace === o.meta.name) await removePod(paths, s, p, say);
      for (const [k, v] of Object.entries(s.objects)) if ((v.metadata as Raw).namespace === o.meta.name) delete s.objects[k];
    }
    if (o.kind === 'Deployment') for (const p of Object.values(s.pods)) if (p.owner === key) await removePod(paths, s, p, say);
    if (o.kind === 'Gateway') {
      // The waypoint's Deployment (and its pods), Service and ServiceAccount go with it.
      const ns = o.meta.namespace ?? 'default';
      for (const p of Object.values(s.pods)) if (p.owner === objKey('Deployment', o.meta.namespace, o.meta.name) && ownedBy(s.objects[p.owner] ?? {}, ns, o.meta.name)) await removePod(paths, s, p, say);
      for (const [k, v] of Object.entries(s.objects)) if (ownedBy(v, ns, o.meta.name)) delete s.objects[k];
    }
    if (s.objects[key]) {
      delete s.objects[key];
      say(`${o.kind.toLowerCase()}/${o.meta.name} deleted`);
    }
  }
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  await waitForMesh(paths, s);
}

/** Waits until every node's ztunnel knows every pod and ClusterIP (its admin config dump lists them). */
export async function waitForMesh(paths: LabPaths, s: LabState, timeoutMs = 20_000): Promise<void> {
  const ips = [...Object.values(s.pods).map((p) => p.ip), ...Object.values(s.objects).flatMap((o) => (o.kind === 'Service' && typeof (o.spec as Raw)?.clusterIP === 'string' ? [(o.spec as Raw).clusterIP as string] : []))];
  await Promise.all(
    s.nodes.map((n) =>
      until(
        `ztunnel on ${n.name} to learn the lab's pods and services from the control plane`,
        async () => {
          const dump = await getInNetns(netnsPath(n.netns), `http://127.0.0.1:${PORTS.admin}/config_dump`);
          return ips.every((ip) => dump.includes(`"${ip}"`));
        },
        timeoutMs,
        200,
      ),
    ),
  );
  void paths;
}

// ---- label, get, exec, logs --------------------------------------------------------------------

/** A pod whose enrolment a namespace label change alters, with what the node agent will make of it. */
export interface EnrolmentChange {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** The state to wait for: enrolled, or released (not-ambient or exempt). */
  readonly enrolled: boolean;
  readonly reason: string;
}

/**
 * The pods whose enrolment differs between two sets of namespace labels, decided by the node
 * agent's own rule (cni-plugin/agent/decide.ts) on the desired state the lab writes for it
 * (`writeClusterFiles`: namespaces with labels, pods with labels, no `ambient` verdict, the
 * agent's default EXEMPT_NAMESPACES). Only enrolled/not matters here, so PeerAuthentications
 * (which only decide STRICT) are left out; the cgroup rule never applies to lab pods, whose
 * cgroups hold no mesh process. A pod that opts out (`istio.io/dataplane-mode=none`, as every
 * waypoint pod does) or a label that does not touch enrolment (`istio.io/use-waypoint`) yields
 * no change, so nothing is waited for.
 */
export function enrolmentChanges(
  pods: readonly Pick<PodRecord, 'namespace' | 'name' | 'node' | 'raw'>[],
  before: ReadonlyMap<string, Readonly<Record<string, string>>>,
  after: ReadonlyMap<string, Readonly<Record<string, string>>>,
): EnrolmentChange[] {
  const ctx = (nss: ReadonlyMap<string, Readonly<Record<string, string>>>): DecideContext => ({
    namespaces: new Map([...nss].map(([name, labels]) => [name, { name, labels }])),
    peerAuthentications: [],
    exemptNamespaces: AGENT_DEFAULTS.exemptNamespaces,
    protectedCgroups: [],
    rootNamespace: AGENT_DEFAULTS.rootNamespace,
  });
  const was = ctx(before);
  const will = ctx(after);
  const out: EnrolmentChange[] = [];
  for (const p of pods) {
    const facts = { namespace: p.namespace, name: p.name, labels: podLabels(p) };
    const a = decide(facts, was);
    const b = decide(facts, will);
    if ((a.mode === 'enrolled') !== (b.mode === 'enrolled')) {
      out.push({ namespace: p.namespace, name: p.name, node: p.node, enrolled: b.mode === 'enrolled', reason: b.reason });
    }
  }
  return out;
}

export async function labelNamespace(paths: LabPaths, ns: string, changes: readonly string[], say: Progress = () => {}): Promise<void> {
  const s = await requireLab(paths);
  if (!namespaces(s).has(ns)) throw new LabError(`namespace ${ns} does not exist`, 'ERR_LAB_NO_NAMESPACE');
  const key = objKey('Namespace', undefined, ns);
  const obj = (s.objects[key] ?? { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: {} } }) as Raw;
  const meta = obj.metadata as Raw;
  const labels = { ...((meta.labels as Record<string, string>) ?? {}) };
  for (const c of changes) {
    const m = /^([A-Za-z0-9./_-]+)(=(.*)|-)$/.exec(c);
    if (!m) throw new LabError(`${JSON.stringify(c)} is not key=value or key-`, 'ERR_LAB_BAD_LABEL');
    if (m[2] === '-') delete labels[m[1]!];
    else labels[m[1]!] = m[3]!;
  }
  const before = namespaces(s);
  s.objects[key] = { ...obj, metadata: { ...meta, labels } };
  const moved = enrolmentChanges(Object.values(s.pods), before, namespaces(s));
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  // The agents enrol or release, from the desired state, exactly the pods whose decision changed.
  for (const p of moved) {
    await until(`the agent on ${p.node} to ${p.enrolled ? 'enrol' : 'release'} ${p.namespace}/${p.name} (${p.reason})`, async () => {
      const st = (await podStatuses(paths, s)).get(podKey(p.namespace, p.name));
      return st !== undefined && (st.mode === 'enrolled') === p.enrolled;
    });
  }
  const enrolled = moved.filter((p) => p.enrolled).length;
  const parts = [...(enrolled ? [`${enrolled} enrolled in`] : []), ...(moved.length - enrolled ? [`${moved.length - enrolled} taken out of`] : [])];
  say(`namespace/${ns} labeled; ${moved.length === 0 ? 'no pod changed enrolment' : `${moved.length} pod(s) changed enrolment: ${parts.join(', ')} the mesh`}`);
}

async function podStatuses(paths: LabPaths, s: LabState): Promise<Map<string, PodStatus>> {
  const out = new Map<string, PodStatus>();
  for (const n of s.nodes) {
    const st = await new AgentClient({ socketPath: n.socket, connectTimeoutMs: 1000, requestTimeoutMs: 5000 }).state().catch(() => undefined);
    for (const p of st?.pods ?? []) out.set(podKey(p.namespace, p.name), p);
  }
  void paths;
  return out;
}

async function containerStatus(c: PodRecord['containers'][number]): Promise<string> {
  const code = (await readFile(c.exitFile, 'utf8').catch(() => '')).trim();
  if (code !== '') return `Exited(${code})`;
  return (await alive(c.pid, '')) ? 'Running' : 'Unknown';
}

export interface GetOptions {
  readonly namespace?: string;
  readonly output?: 'table' | 'yaml' | 'json';
}

export async function get(paths: LabPaths, what: string, opts: GetOptions = {}): Promise<string> {
  const s = await requireLab(paths);
  const inNs = (ns: string) => opts.namespace === undefined || opts.namespace === ns;
  const out = (items: Raw[], rows: Array<Array<string | number>>) => {
    if (opts.output === 'json') return JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 2);
    if (opts.output === 'yaml') return yaml.dump({ apiVersion: 'v1', kind: 'List', items }, { noRefs: true }).trimEnd();
    return table(rows);
  };
  switch (what) {
    case 'pods':
    case 'pod':
    case 'po': {
      const statuses = await podStatuses(paths, s);
      const rows: Array<Array<string | number>> = [['NAMESPACE', 'NAME', 'STATUS', 'NODE', 'IP', 'MESH', 'AGE']];
      const items: Raw[] = [];
      const failed: string[] = [];
      for (const p of Object.values(s.pods).filter((x) => inNs(x.namespace))) {
        const cs = await Promise.all(p.containers.map(containerStatus));
        const status = cs.find((c) => c !== 'Running') ?? 'Running';
        for (const [i, c] of p.containers.entries()) {
          if (cs[i] === 'Running') continue;
          const tail = (await readFile(c.log, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-5).join('\n    ');
          failed.push(`${p.namespace}/${p.name} container ${c.name}: ${cs[i]}; the end of its log (lab logs ${p.name} -n ${p.namespace}):\n    ${tail || '(empty)'}`);
        }
        const mesh = statuses.get(podKey(p.namespace, p.name))?.mode ?? '?';
        rows.push([p.namespace, p.name, status, p.node, p.ip, mesh, age(p.created)]);
        items.push({ ...p.raw, spec: { ...(p.raw.spec as Raw), nodeName: p.node }, status: { phase: status === 'Running' ? 'Running' : 'Failed', podIP: p.ip, containerStatuses: p.containers.map((c, i) => ({ name: c.name, state: cs[i] })), mesh } });
      }
      const text = out(items, rows);
      return opts.output === undefined && failed.length > 0 ? `${text}\n\n${failed.join('\n')}` : text;
    }
    case 'svc':
    case 'service':
    case 'services': {
      const rows: Array<Array<string | number>> = [['NAMESPACE', 'NAME', 'CLUSTER-IP', 'PORTS', 'SELECTOR']];
      const items = Object.values(s.objects).filter((o) => o.kind === 'Service' && inNs(((o.metadata as Raw).namespace as string) ?? 'default'));
      for (const o of items) {
        const spec = o.spec as Raw;
        const ports = ((spec.ports as Raw[]) ?? []).map((p) => `${p.port}${p.targetPort !== undefined ? `->${p.targetPort}` : ''}/TCP`).join(',');
        const sel = Object.entries((spec.selector as Record<string, string>) ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
        rows.push([((o.metadata as Raw).namespace as string) ?? 'default', (o.metadata as Raw).name as string, (spec.clusterIP as string) ?? 'None', ports, sel || '<none>']);
      }
      return out(items, rows);
    }
    case 'ns':
    case 'namespace':
    case 'namespaces': {
      const rows: Array<Array<string | number>> = [['NAME', 'LABELS']];
      const items: Raw[] = [];
      for (const [name, labels] of namespaces(s)) {
        rows.push([name, Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',') || '<none>']);
        items.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
      }
      return out(items, rows);
    }
    default: {
      // Policy and route kinds, by their kind name (case-insensitive).
      const items = Object.values(s.objects).filter((o) => kindMatches(String(o.kind), what) && inNs(((o.metadata as Raw).namespace as string) ?? ''));
      if (!KNOWN_KINDS.some((k) => kindMatches(k, what))) {
        throw new LabError(`unknown resource ${JSON.stringify(what)}; use pods, svc, ns, or a kind such as authorizationpolicies`, 'ERR_LAB_UNKNOWN_RESOURCE');
      }
      const rows: Array<Array<string | number>> = [['NAMESPACE', 'KIND', 'NAME']];
      for (const o of items) rows.push([((o.metadata as Raw).namespace as string) ?? '', o.kind as string, (o.metadata as Raw).name as string]);
      return out(items, rows);
    }
  }
}

const KNOWN_KINDS = ['Namespace', 'ServiceAccount', 'Deployment', 'AuthorizationPolicy', 'PeerAuthentication', 'Gateway', 'HTTPRoute', 'VirtualService'];

/** `authorizationpolicies`, `authorizationpolicy`, `AuthorizationPolicy` all name the kind. */
function kindMatches(kind: string, what: string): boolean {
  const k = kind.toLowerCase();
  const w = what.toLowerCase();
  return w === k || w === `${k}s` || (k.endsWith('y') && w === `${k.slice(0, -1)}ies`);
}

function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** Finds a pod by name (or a Deployment's pod by the Deployment's name). */
export function findPod(s: LabState, name: string, namespace = 'default'): PodRecord {
  const exact = s.pods[podKey(namespace, name)];
  if (exact) return exact;
  const owned = Object.values(s.pods).filter((p) => p.owner === objKey('Deployment', namespace, name));
  if (owned.length > 0) return owned[0]!;
  throw new LabError(`pod ${namespace}/${name} not found (lab get pods -n ${namespace})`, 'ERR_LAB_NO_POD');
}

/** Runs a command in a pod (its netns, cgroup and hosts file), with this terminal's stdio; resolves to its exit code. */
export async function exec(paths: LabPaths, pod: string, namespace: string | undefined, argv: readonly string[], stdio: 'inherit' | 'pipe' = 'inherit'): Promise<{ code: number; stdout: string; stderr: string }> {
  const s = await requireLab(paths);
  const p = findPod(s, pod, namespace);
  if (argv.length === 0) throw new LabError('no command given: lab exec POD -- CMD [ARGS...]', 'ERR_LAB_NO_COMMAND');
  const full = podArgv(builtin(argv), { cgroup: p.cgroup, netns: netnsPath(p.netns), hosts: p.hosts });
  const child = spawn(full[0]!, full.slice(1), { stdio: stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'], env: { ...process.env, POD_NAME: p.name, POD_NAMESPACE: p.namespace } });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  return { code, stdout, stderr };
}

/** The log of a pod's containers, of `ztunnel/NODE`, `agent/NODE` or `control-plane`. */
export async function logs(paths: LabPaths, target: string, namespace?: string): Promise<string> {
  const s = await requireLab(paths);
  const proc = s.procs[target];
  if (proc) return readFile(proc.log, 'utf8');
  if (target.includes('/') && !target.startsWith('pod/')) throw new LabError(`unknown log ${target}; use POD, ${Object.keys(s.procs).join(', ')}`, 'ERR_LAB_NO_LOG');
  const p = findPod(s, target.replace(/^pod\//, ''), namespace);
  const parts = await Promise.all(p.containers.map(async (c) => ({ c, text: await readFile(c.log, 'utf8').catch(() => '') })));
  return parts.length === 1 ? parts[0]!.text : parts.map(({ c, text }) => `==> ${c.name} <==\n${text}`).join('\n');
}

