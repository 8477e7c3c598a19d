/**
 * `lab up` and `lab down`: the fabric and node namespaces, the CA and node tokens, and the
 * control plane, node agents and ztunnels as detached processes.
 *
 *   fabric netns <prefix>-fabric: bridge br0, control plane on 10.240.0.254
 *   node i netns <prefix>-node-i: eth0 10.240.0.i (fabric), pods 10.244.i.0/24 behind cni0,
 *                                 routes to the other nodes' pod ranges via their fabric address
 *   services: ClusterIPs from 10.96.0.0/16 (routed by ztunnel for meshed pods)
 *
 * Every name starts with the prefix; `down` removes by prefix, so it works after a crash, with or
 * without the state file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { cgroup2Root } from '../bpf/kernel.js';
import { BpfLoader } from '../bpf/loader.js';
import { CertificateAuthority } from '../core/identity/ca.js';
import { PORTS } from '../core/hbone/constants.js';
import { checkPrerequisites } from './prereq.js';
import { readState, writeAtomic, writeState, type LabPaths, type LabState, type NodeRecord, type ProcRecord } from './state.js';
import { AGENT_MAIN, CNI_WRAPPER, CONTROL_PLANE_MAIN, ZTUNNEL_MAIN } from './components.js';
import { alive, killPid, podArgv, removeCgroup, rssKib, sh, spawnDetached, SYSTEM_CNI_DIR, until } from './sys.js';

export const FABRIC_PREFIX = '10.240.0';
export const CONTROL_PLANE_IP = `${FABRIC_PREFIX}.254`;
export const CONTROL_PLANE_PORT = PORTS.controlPlane;
export const OUTBOUND_PORT = PORTS.outbound;
export const METRICS_PORT = PORTS.metrics;
export const MAX_NODES = 50;

/** Where progress lines go (stdout in the CLI, a buffer in tests). */
export type Progress = (line: string) => void;

export class LabError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** The lab's record, or `ERR_LAB_NOT_UP` when no lab is up: every command but `up` and `down` needs one. */
export async function requireLab(paths: LabPaths): Promise<LabState> {
  const s = await readState(paths);
  if (!s) throw new LabError(`no lab is up (no ${paths.stateDir}/lab.json); run ambientctl lab up`, 'ERR_LAB_NOT_UP');
  return s;
}

export function nodeRecord(paths: LabPaths, cgroupRoot: string, i: number): NodeRecord {
  const name = `node-${i}`;
  return {
    name,
    index: i,
    ip: `${FABRIC_PREFIX}.${i}`,
    podCidr: `10.244.${i}.0/24`,
    gateway: `10.244.${i}.1`,
    netns: `${paths.prefix}-${name}`,
    ztunnelCgroup: join(cgroupRoot, `${paths.prefix}-ztunnel-${name}`),
    pinDir: `/sys/fs/bpf/${paths.prefix}/${name}`,
    socket: join(paths.stateDir, `agent-${i}.sock`),
  };
}

export const netnsPath = (name: string): string => `/var/run/netns/${name}`;

/** The conflist a node's runtime calls: bridge + host-local, then ours chained last. */
export function conflist(paths: LabPaths, n: NodeRecord): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: paths.prefix,
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: n.podCidr, gateway: n.gateway }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(paths.stateDir, 'ipam', n.name) },
      },
      { type: 'ambient-cni', agentSocket: n.socket, cgroupPath: `${paths.prefix}-pod-{podNamespace}-{podName}`, agentRequestTimeoutMs: 20_000 },
    ],
  };
}

export const cniBinDir = (paths: LabPaths): string => join(paths.stateDir, 'cni-bin');
export const desiredFile = (paths: LabPaths): string => join(paths.stateDir, 'desired.yaml');
export const manifestsDir = (paths: LabPaths): string => join(paths.stateDir, 'manifests');
export const logsDir = (paths: LabPaths): string => join(paths.stateDir, 'logs');

interface ProcSpec {
  readonly key: string;
  readonly argv: string[];
  readonly env: Record<string, string>;
  readonly marker: string;
  /** A log line that says it is ready. */
  readonly ready: RegExp;
}

function controlPlaneSpec(paths: LabPaths, s: LabState): ProcSpec {
  return {
    key: 'control-plane',
    argv: podArgv([process.execPath, CONTROL_PLANE_MAIN], { netns: netnsPath(s.fabricNetns) }),
    marker: CONTROL_PLANE_MAIN,
    ready: /"msg":"control plane ready"/,
    env: {
      MANIFESTS_PATH: manifestsDir(paths),
      NODES_FILE: join(paths.stateDir, 'nodes.yaml'),
      CA_CERT_FILE: join(paths.stateDir, 'ca', 'root-cert.pem'),
      CA_KEY_FILE: join(paths.stateDir, 'ca', 'root-key.pem'),
      LISTEN_ADDRESS: s.controlPlaneIp,
      LOG_LEVEL: 'info',
    },
  };
}

function agentSpec(paths: LabPaths, n: NodeRecord): ProcSpec {
  return {
    key: `agent/${n.name}`,
    argv: podArgv([process.execPath, AGENT_MAIN], { netns: netnsPath(n.netns) }),
    marker: AGENT_MAIN,
    ready: /"msg":"node agent ready"/,
    env: {
      NODE_NAME: n.name,
      AGENT_SOCKET: n.socket,
      STATE_FILE: join(paths.stateDir, `agent-${n.name}.json`),
      DESIRED_STATE_FILE: desiredFile(paths),
      PIN_DIR: n.pinDir,
      ZTUNNEL_IP: n.ip,
      OUTBOUND_PORT: String(OUTBOUND_PORT),
      ZTUNNEL_CGROUP: n.ztunnelCgroup,
      NODE_IPS: `${n.ip},${n.gateway}`,
      CGROUP_DRIVER: 'template',
      CGROUP_TEMPLATE: `${paths.prefix}-pod-{podNamespace}-{podName}`,
      // The lab lists a pod in the desired state only after its ADD (which gives it its IP).
      ADD_WAIT_SECONDS: '0',
      LOG_LEVEL: 'info',
    },
  };
}

function ztunnelSpec(paths: LabPaths, s: LabState, n: NodeRecord): ProcSpec {
  return {
    key: `ztunnel/${n.name}`,
    argv: podArgv([process.execPath, ZTUNNEL_MAIN], { netns: netnsPath(n.netns), cgroup: n.ztunnelCgroup }),
    marker: ZTUNNEL_MAIN,
    ready: /"msg":"ztunnel ready"/,
    env: {
      NODE_NAME: n.name,
      CONTROL_PLANE_ADDRESS: `${s.controlPlaneIp}:${CONTROL_PLANE_PORT}`,
      NODE_TOKEN_FILE: join(paths.stateDir, 'tokens', `${n.name}.token`),
      CONTROL_PLANE_ROOT_CERT_FILE: join(paths.stateDir, 'ca', 'root-cert.pem'),
      ZTUNNEL_ADDRESS: n.ip,
      OUTBOUND_PORT: String(OUTBOUND_PORT),
      DRAIN_TIMEOUT_SECONDS: '1',
      LOG_LEVEL: 'info',
    },
  };
}

/** Every process of the lab, in start order (the agent before its ztunnel, which waits for its hook). */
export function procSpecs(paths: LabPaths, s: LabState): ProcSpec[] {
  return [controlPlaneSpec(paths, s), ...s.nodes.flatMap((n) => [agentSpec(paths, n), ztunnelSpec(paths, s, n)])];
}

async function logText(path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(path, 'utf8').catch(() => '');
}

/** Starts `spec` detached and waits for its ready line; a process that exits first fails with its log's tail. */
async function startProc(paths: LabPaths, spec: ProcSpec, restarts: number): Promise<ProcRecord> {
  const log = join(logsDir(paths), `${spec.key.replace('/', '-')}.log`);
  const { stat } = await import('node:fs/promises');
  const offset = (await stat(log).catch(() => ({ size: 0 }))).size;
  const pid = spawnDetached(spec.argv, { log, env: spec.env });
  const rec: ProcRecord = { pid, log, marker: spec.marker, restarts };
  await until(
    `${spec.key} to be ready (log: ${log})`,
    async () => {
      const text = (await logText(log)).slice(offset);
      if (spec.ready.test(text)) return true;
      if (!(await alive(pid, spec.marker))) throw new LabError(`${spec.key} exited while starting; the end of ${log}:\n${text.slice(-2000)}`, 'ERR_LAB_PROCESS_EXITED');
      return false;
    },
    45_000,
    100,
  ).catch((err: Error) => {
    throw new LabError(err.message, 'ERR_LAB_PROCESS_NOT_READY');
  });
  return rec;
}

export interface UpOptions {
  readonly nodes?: number;
  readonly progress?: Progress;
}

/**
 * Brings the lab up, or, when it is up, restarts what died and changes nothing else.
 *
 * @throws LabError `ERR_LAB_PREREQUISITES` before changing anything when the machine lacks something.
 */
export async function up(paths: LabPaths, opts: UpOptions = {}): Promise<LabState> {
  const say = opts.progress ?? (() => {});
  const missing = await checkPrerequisites();
  if (missing.length > 0) {
    throw new LabError(`the lab cannot start; missing:\n${missing.map((m) => `  - ${m.what}: ${m.fix}`).join('\n')}\nnothing was changed`, 'ERR_LAB_PREREQUISITES');
  }
  const existing = await readState(paths);
  if (existing && (await netnsExists(existing.fabricNetns))) {
    if (opts.nodes !== undefined && opts.nodes !== existing.nodes.length) {
      say(`the lab is already up with ${existing.nodes.length} nodes; --nodes ${opts.nodes} ignored (lab down first to change it)`);
    }
    const restarted = await ensureProcesses(paths, existing, say);
    say(restarted.length === 0 ? 'the lab is already up; nothing changed' : `restarted: ${restarted.join(', ')}`);
    return existing;
  }
  if (existing || (await leftovers(paths)).length > 0) {
    say('removing the remains of an earlier lab');
    await down(paths);
  }
  const count = opts.nodes ?? 2;
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) throw new LabError(`--nodes must be 1 to ${MAX_NODES}`, 'ERR_LAB_BAD_NODES');
  const root = (await cgroup2Root())!;
  const nodes = Array.from({ length: count }, (_, i) => nodeRecord(paths, root, i + 1));
  const s: LabState = { prefix: paths.prefix, fabricNetns: `${paths.prefix}-fabric`, controlPlaneIp: CONTROL_PLANE_IP, nodes, procs: {}, objects: {}, pods: {}, created: new Date().toISOString() };

  await mkdir(logsDir(paths), { recursive: true });
  await mkdir(manifestsDir(paths), { recursive: true });
  await mkdir(join(paths.stateDir, 'tokens'), { recursive: true });
  await writeState(paths, s);

  say('certificates: a mesh root CA and one token per node');
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  await ca.save(join(paths.stateDir, 'ca'));
  const tokens: Array<{ name: string; ztunnelAddress: string; token: string }> = [];
  for (const n of nodes) {
    const token = randomBytes(32).toString('hex');
    await writeFile(join(paths.stateDir, 'tokens', `${n.name}.token`), `${token}\n`, { mode: 0o600 });
    tokens.push({ name: n.name, ztunnelAddress: n.ip, token });
  }
  await writeFile(join(paths.stateDir, 'nodes.yaml'), yaml.dump({ nodes: tokens }), { mode: 0o600 });

  say(`network: fabric ${FABRIC_PREFIX}.0/24 and ${count} node namespaces`);
  await sh('ip', ['netns', 'add', s.fabricNetns]);
  await sh('ip', ['-n', s.fabricNetns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['-n', s.fabricNetns, 'link', 'add', 'br0', 'type', 'bridge']);
  await sh('ip', ['-n', s.fabricNetns, 'addr', 'add', `${CONTROL_PLANE_IP}/24`, 'dev', 'br0']);
  await sh('ip', ['-n', s.fabricNetns, 'link', 'set', 'br0', 'up']);
  for (const n of nodes) {
    await sh('ip', ['netns', 'add', n.netns]);
    await sh('ip', ['-n', n.netns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', s.fabricNetns, 'link', 'add', `v${n.index}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns]);
    await sh('ip', ['-n', s.fabricNetns, 'link', 'set', `v${n.index}`, 'master', 'br0', 'up']);
    await sh('ip', ['-n', n.netns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', n.netns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['netns', 'exec', n.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await mkdir(n.ztunnelCgroup, { recursive: true });
  }
  for (const n of nodes) for (const o of nodes) if (o !== n) await sh('ip', ['-n', n.netns, 'route', 'add', o.podCidr, 'via', o.ip]);
  // Pods that talk to the control plane themselves (waypoints) are answered through their node.
  for (const n of nodes) await sh('ip', ['-n', s.fabricNetns, 'route', 'add', n.podCidr, 'via', n.ip]);

  say('cni: bridge + host-local + loopback, ambient-cni chained last');
  await mkdir(cniBinDir(paths), { recursive: true });
  for (const p of ['bridge', 'host-local', 'loopback']) await symlink(join(SYSTEM_CNI_DIR, p), join(cniBinDir(paths), p));
  await symlink(CNI_WRAPPER, join(cniBinDir(paths), 'ambient-cni'));
  for (const n of nodes) await writeAtomic(join(paths.stateDir, 'net.d', n.name, '10-ambient.conflist'), `${JSON.stringify(conflist(paths, n), null, 2)}\n`);

  const { writeClusterFiles } = await import('./cluster-files.js');
  await writeClusterFiles(paths, s);
  await ensureProcesses(paths, s, say);
  return s;
}

/** Starts every process of the lab that is not running (the first time, or after a crash); returns the restarted ones. */
export async function ensureProcesses(paths: LabPaths, s: LabState, say: Progress): Promise<string[]> {
  const restarted: string[] = [];
  for (const spec of procSpecs(paths, s)) {
    const rec = s.procs[spec.key];
    if (rec && (await alive(rec.pid, rec.marker))) continue;
    if (rec) {
      restarted.push(spec.key);
      say(`${spec.key} (pid ${rec.pid}) is not running; restarting it (its log: ${rec.log})`);
    } else say(`starting ${spec.key}`);
    s.procs[spec.key] = await startProc(paths, spec, rec ? rec.restarts + 1 : 0);
    await writeState(paths, s);
  }
  return restarted;
}

async function netnsExists(name: string): Promise<boolean> {
  return (await listNetns()).includes(name);
}

async function listNetns(): Promise<string[]> {
  return (await sh('ip', ['netns', 'list']).catch(() => ''))
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/** What of a lab with this prefix exists on the machine: namespaces, cgroups, pins, state dir. */
export async function leftovers(paths: LabPaths): Promise<string[]> {
  const found: string[] = [];
  const mine = (n: string) => n === paths.prefix || n.startsWith(`${paths.prefix}-`);
  for (const ns of await listNetns()) if (mine(ns)) found.push(`netns ${ns}`);
  const root = await cgroup2Root();
  if (root) for (const d of await readdir(root).catch(() => [] as string[])) if (mine(d)) found.push(`cgroup ${join(root, d)}`);
  if ((await readdir(`/sys/fs/bpf/${paths.prefix}`).catch(() => undefined)) !== undefined) found.push(`bpf pins /sys/fs/bpf/${paths.prefix}`);
  if ((await readdir(paths.stateDir).catch(() => undefined)) !== undefined) found.push(`state dir ${paths.stateDir}`);
  for (const pid of await processesOf(paths)) found.push(`process ${pid}`);
  return found;
}

/** Pids of processes inside the lab's network namespaces. */
async function processesOf(paths: LabPaths): Promise<number[]> {
  const pids: number[] = [];
  for (const ns of await listNetns()) {
    if (!ns.startsWith(`${paths.prefix}-`)) continue;
    const out = await sh('ip', ['netns', 'pids', ns]).catch(() => '');
    for (const p of out.split(/\s+/)) if (/^\d+$/.test(p)) pids.push(Number(p));
  }
  return pids;
}

/**
 * Removes everything of the lab: processes (recorded ones first, gracefully; then whatever is
 * left in its cgroups and namespaces), eBPF programs and pins, cgroups, namespaces (and with them
 * every veth and bridge and nft table inside), the state dir. Every step is tried.
 */
export async function down(paths: LabPaths, say: Progress = () => {}): Promise<string[]> {
  const failures: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      failures.push(`${what}: ${(err as Error).message}`);
    }
  };
  const s = await readState(paths).catch(() => undefined);
  if (s) {
    // ztunnels first (they drain), then agents, then the control plane.
    const recs = Object.entries(s.procs).reverse();
    await Promise.all(recs.map(([key, rec]) => step(`stop ${key}`, () => killPid(rec.pid, rec.marker))));
    // Pod processes go with their cgroups below.
  }
  const mine = (n: string) => n.startsWith(`${paths.prefix}-`);
  const root = await cgroup2Root();
  if (root) {
    for (const d of await readdir(root).catch(() => [] as string[])) if (mine(d)) await step(`cgroup ${d}`, () => removeCgroup(join(root, d)));
  }
  for (const pid of await processesOf(paths)) {
    await step(`kill ${pid}`, async () => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    });
  }
  const pinRoot = `/sys/fs/bpf/${paths.prefix}`;
  for (const d of await readdir(pinRoot).catch(() => [] as string[])) {
    await step(`pins ${d}`, () => new BpfLoader({ pinDir: join(pinRoot, d), cgroupRoot: root ?? '/sys/fs/cgroup' }).unload());
    await step(`pins ${d}`, () => rm(join(pinRoot, d), { recursive: true, force: true }));
  }
  await step('pin dir', async () => {
    if ((await readdir(pinRoot).catch(() => undefined)) !== undefined) await rmdir(pinRoot);
  });
  for (const ns of await listNetns()) if (mine(ns)) await step(`netns ${ns}`, () => sh('ip', ['netns', 'del', ns]));
  await step('state dir', () => rm(paths.stateDir, { recursive: true, force: true }));
  say(failures.length === 0 ? `lab ${paths.prefix} removed` : `lab ${paths.prefix} removed, except:\n  ${failures.join('\n  ')}`);
  return failures;
}

export interface ProcStatus {
  readonly name: string;
  readonly pid: number;
  readonly running: boolean;
  readonly rssMib: number;
  readonly restarts: number;
  readonly where: string;
}

export async function processStatus(s: LabState): Promise<ProcStatus[]> {
  const out: ProcStatus[] = [];
  for (const [key, rec] of Object.entries(s.procs)) {
    const node = s.nodes.find((n) => key.endsWith(`/${n.name}`));
    out.push({
      name: key,
      pid: rec.pid,
      running: await alive(rec.pid, rec.marker),
      rssMib: Math.round((await rssKib(rec.pid)) / 102.4) / 10,
      restarts: rec.restarts,
      where: node ? `${node.netns} ${node.ip}` : `${s.fabricNetns} ${s.controlPlaneIp}:${CONTROL_PLANE_PORT}`,
    });
  }
  return out;
}

/** A fixed-width table. */
export function table(rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export async function statusTable(s: LabState): Promise<string> {
  const rows: Array<Array<string | number>> = [['COMPONENT', 'PID', 'STATUS', 'RSS', 'RESTARTS', 'WHERE']];
  for (const p of await processStatus(s)) rows.push([p.name, p.pid, p.running ? 'Running' : 'NotRunning', `${p.rssMib} MiB`, p.restarts, p.where]);
  const pods = Object.keys(s.pods).length;
  return `${table(rows)}\nnodes: ${s.nodes.map((n) => `${n.name} (${n.ip}, pods ${n.podCidr})`).join(', ')}; pods: ${pods}`;
}
