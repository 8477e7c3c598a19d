/**
 * Fixtures for control-plane tests: a real CA on disk, a node list with tokens, manifests in a
 * directory, the control plane in-process on a loopback address, and ztunnels wired to it
 * exactly as `ztunnel/main.ts` wires them (only the control plane's address and a token).
 */
import { mkdir, rename, writeFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { silentLogger, type Logger } from '../../core/telemetry/log.js';
import { connectControlPlane, readRootsFile, type ControlPlaneClient } from '../../core/discovery/client.js';
import { loadConfig as loadCpConfig, type ControlPlaneConfig } from '../../control-plane/config.js';
import { ControlPlane } from '../../control-plane/control-plane.js';
import { loadConfig as loadZtConfig } from '../../ztunnel/config.js';
import { Ztunnel } from '../../ztunnel/ztunnel.js';

export interface NodeSpec {
  readonly name: string;
  readonly address: string;
}

export interface CpFiles {
  readonly dir: string;
  readonly manifests: string;
  readonly nodesFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly tokens: Record<string, string>;
  readonly tokenFiles: Record<string, string>;
}

/** Writes a file atomically (as the lab and editors do). */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/** Multi-document YAML of `objects`. */
export function manifestYaml(objects: readonly object[]): string {
  return objects.map((o) => yaml.dump(o)).join('---\n');
}

/** A generated root CA, a node list with one random token per node, an empty manifests dir. */
export async function makeFiles(dir: string, nodes: readonly NodeSpec[]): Promise<CpFiles> {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  await ca.save(dir);
  const manifests = join(dir, 'manifests');
  await mkdir(manifests, { recursive: true });
  const tokens: Record<string, string> = {};
  const tokenFiles: Record<string, string> = {};
  for (const n of nodes) {
    tokens[n.name] = randomBytes(24).toString('hex');
    tokenFiles[n.name] = join(dir, `${n.name}.token`);
    await writeFile(tokenFiles[n.name]!, `${tokens[n.name]}\n`, { mode: 0o600 });
  }
  const nodesFile = join(dir, 'nodes.yaml');
  await writeFile(nodesFile, yaml.dump({ nodes: nodes.map((n) => ({ name: n.name, ztunnelAddress: n.address, token: tokens[n.name] })) }));
  return { dir, manifests, nodesFile, certFile: join(dir, 'root-cert.pem'), keyFile: join(dir, 'root-key.pem'), tokens, tokenFiles };
}

/** The control-plane environment for `files`, listening on `address` (port 0 unless set). */
export function cpEnv(files: CpFiles, address: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MANIFESTS_PATH: files.manifests,
    NODES_FILE: files.nodesFile,
    CA_CERT_FILE: files.certFile,
    CA_KEY_FILE: files.keyFile,
    LISTEN_ADDRESS: address,
    CONTROL_PLANE_PORT: '0',
    ADMIN_ADDRESS: address,
    METRICS_PORT: '15020',
    READINESS_PORT: '15021',
    LOG_LEVEL: 'silent',
    ...extra,
  };
}

export async function startControlPlane(files: CpFiles, address: string, extra: Record<string, string> = {}, logger: Logger = silentLogger): Promise<ControlPlane> {
  const config: ControlPlaneConfig = loadCpConfig(cpEnv(files, address, extra));
  return ControlPlane.start({ config, logger });
}

export interface ZtunnelHandle {
  readonly zt: Ztunnel;
  readonly client: ControlPlaneClient;
}

/** A ztunnel started with only the control plane's address, its node token and the root file. */
export async function startZtunnel(opts: {
  files: CpFiles;
  node: NodeSpec;
  controlPlane: string;
  env?: Record<string, string>;
  logger?: Logger;
}): Promise<ZtunnelHandle> {
  const config = loadZtConfig({
    NODE_NAME: opts.node.name,
    CONTROL_PLANE_ADDRESS: opts.controlPlane,
    NODE_TOKEN_FILE: opts.files.tokenFiles[opts.node.name]!,
    CONTROL_PLANE_ROOT_CERT_FILE: opts.files.certFile,
    ZTUNNEL_ADDRESS: opts.node.address,
    ADMIN_ADDRESS: opts.node.address,
    SOCKS5_PORT: '15080',
    OUTBOUND_PORT: '0',
    DRAIN_TIMEOUT_SECONDS: '1',
    ...opts.env,
  });
  const cp = config.controlPlane!;
  const logger = opts.logger ?? silentLogger;
  const client = connectControlPlane({
    address: cp.address,
    nodeName: config.nodeName,
    trustDomain: config.trustDomain,
    token: cp.tokenFile,
    rootsPem: await readRootsFile(cp.rootCertFile),
    serverIdentity: cp.identity,
    certTtlSeconds: config.certTtlSeconds,
    logger,
    discovery: { initialBackoffMs: 50, maxBackoffMs: 500, pingIntervalMs: 1000, pingTimeoutMs: 1000 },
    secrets: { initialBackoffMs: 50, maxBackoffMs: 500 },
  });
  const zt = await Ztunnel.start({ config, logger, configSource: client.configSource, certificates: client.certificates });
  return { zt, client };
}

export async function removeFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

// ---- manifests ----

export function namespace(name: string, labels: Record<string, string> = {}): object {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

export function pod(name: string, opts: { ns?: string; node: string; ip: string; sa?: string; labels?: Record<string, string> }): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.ns ?? 'default', labels: opts.labels ?? { app: name } },
    spec: { nodeName: opts.node, serviceAccountName: opts.sa ?? name, containers: [{ name: 'main', image: 'echo' }] },
    status: { phase: 'Running', podIP: opts.ip, podIPs: [{ ip: opts.ip }] },
  };
}

export function serviceAccount(name: string, ns = 'default'): object {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } };
}

// ---- the control plane as a process ----

import { fileURLToPath } from 'node:url';
import { startNodeProcess, type Proc } from '../helpers/proc.js';

export const CONTROL_PLANE_MAIN = fileURLToPath(new URL('../../dist/control-plane/main.js', import.meta.url));

export type CpProcess = Proc;

/** Starts `node dist/control-plane/main.js` (compiled, as operators run it). */
export function startControlPlaneProcess(env: Record<string, string>): CpProcess {
  return startNodeProcess(CONTROL_PLANE_MAIN, env);
}

export const WAYPOINT_MAIN = fileURLToPath(new URL('../../dist/waypoint/main.js', import.meta.url));

/**
 * Starts `node dist/waypoint/main.js` in control-plane mode as the waypoint of namespace `apps`
 * on node-b (its token from `files`), listening and serving its admin port on `address`.
 */
export function startWaypointProcess(files: CpFiles, controlPlaneAddress: string, address: string): CpProcess {
  return startNodeProcess(WAYPOINT_MAIN, {
    CONTROL_PLANE_ADDRESS: controlPlaneAddress,
    NODE_TOKEN_FILE: files.tokenFiles['node-b']!,
    CONTROL_PLANE_ROOT_CERT_FILE: files.certFile,
    NODE_NAME: 'node-b',
    POD_NAMESPACE: 'apps',
    WAYPOINT_NAME: 'waypoint',
    WAYPOINT_ADDRESS: address,
    ADMIN_ADDRESS: address,
    DRAIN_TIMEOUT_SECONDS: '1',
    LOG_LEVEL: 'info',
  });
}

// ---- memory ----

import { readFileSync } from 'node:fs';

/** VmRSS (resident now) and VmHWM (the peak resident) of a process, in KiB, from `/proc/<pid>/status`. */
export function processMemory(pid: number): { rssKiB: number; hwmKiB: number } {
  return parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** VmRSS and VmHWM of a `/proc/<pid>/status` text (read here or in a pod); throws when either is missing. */
export function parseProcStatus(text: string): { rssKiB: number; hwmKiB: number } {
  const kib = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (!m) throw new Error(`no ${key} in /proc/<pid>/status (is it a kernel thread or a zombie?)`);
    return Number(m[1]);
  };
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

/**
 * The control plane's memory target as docs/control-plane.md states it ("RSS stays under N MiB"),
 * so that the tests hold the process to the documented figure and not to a copy of it.
 */
export function documentedMemoryTarget(): { mib: number; sentence: string } {
  const doc = readFileSync(fileURLToPath(new URL('../../docs/control-plane.md', import.meta.url)), 'utf8');
  const m = /\*\*Memory target\*\*[^.]*?RSS stays under (\d[\d,]*) MiB[^.]*\./.exec(doc.replace(/\s+/g, ' '));
  if (!m) throw new Error('docs/control-plane.md states no memory target ("**Memory target** ... RSS stays under N MiB ...")');
  return { mib: Number(m[1]!.replace(/,/g, '')), sentence: m[0] };
}

/**
 * Starts `node dist/control-plane/main.js` as `startControlPlaneProcess` does, but without tap's
 * hook (`withoutTapHook`), so that the process's memory is the control plane's own. `nodeArgs` go
 * to node (e.g. `--max-old-space-size`).
 */
export function startBareControlPlaneProcess(env: Record<string, string>, nodeArgs: readonly string[] = []): CpProcess {
  return startNodeProcess(CONTROL_PLANE_MAIN, env, { nodeArgs, withoutTapHook: true });
}
