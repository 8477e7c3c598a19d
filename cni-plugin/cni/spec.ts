/**
 * The CNI 1.0 wire shapes the plugin reads: the `CNI_*` environment, `CNI_ARGS`, the network
 * config on stdin (with `prevResult`) and the error JSON it writes. This is the only file that
 * knows them; the rest of the plugin works on {@link CniEnv} and {@link NetConf}.
 *
 * Spec: https://www.cni.dev/docs/spec/ (1.0.0).
 */
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { Problems, describe, field, isMapping, list, mapping, string } from '../../core/validation/check.js';
import { CniError } from './errors.js';

/** The version this plugin writes (VERSION output, errors without a parsed config). */
export const CNI_VERSION = '1.0.0';
/**
 * Versions whose configs and results this plugin reads. The plugin passes prevResult through
 * untouched, so every version with the `ips` result shape works; 0.1/0.2 results (ip4/ip6) and
 * 1.1 (GC, STATUS) do not.
 */
export const SUPPORTED_VERSIONS: readonly string[] = Object.freeze(['0.3.0', '0.3.1', '0.4.0', '1.0.0']);

/** Where the node agent listens unless the config says otherwise. */
export const DEFAULT_AGENT_SOCKET = '/var/run/ambient/cni.sock';
/** sun_path holds 108 bytes with the terminating NUL; a longer path is silently cut. */
export const MAX_SOCKET_PATH = 107;
/**
 * A Unix-socket connect to a live agent completes in microseconds; one that takes a second means
 * the agent is wedged, and the runtime should get "try again later" rather than a hung sandbox.
 */
export const DEFAULT_AGENT_CONNECT_TIMEOUT_MS = 1000;
/** Enrolment runs a few bpftool processes and may queue behind a resync: seconds, not minutes. */
export const DEFAULT_AGENT_REQUEST_TIMEOUT_MS = 20_000;

export const ENV = Object.freeze({
  command: 'CNI_COMMAND',
  containerId: 'CNI_CONTAINERID',
  netns: 'CNI_NETNS',
  ifname: 'CNI_IFNAME',
  args: 'CNI_ARGS',
  path: 'CNI_PATH',
});

/** CNI_ARGS keys the plugin reads (kubelet / containerd / CRI-O set the K8S_ ones). */
export const ARGS = Object.freeze({
  podNamespace: 'K8S_POD_NAMESPACE',
  podName: 'K8S_POD_NAME',
  podUid: 'K8S_POD_UID',
  /** Ours: the pod's cgroup, for runtimes (the lab) that know it. Absolute or relative to the cgroup root. */
  cgroup: 'AMBIENT_CGROUP',
});

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION'];

/** Which variables each command needs (as the reference plugins' skel requires them). */
const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: [ENV.containerId, ENV.netns, ENV.ifname, ENV.path],
  CHECK: [ENV.containerId, ENV.netns, ENV.ifname, ENV.path],
  DEL: [ENV.containerId, ENV.ifname, ENV.path],
  VERSION: [],
};

export interface CniEnv {
  readonly command: CniCommand;
  readonly containerId: string;
  /** Empty on a DEL whose namespace is gone. */
  readonly netns: string;
  readonly ifname: string;
  readonly args: Readonly<Record<string, string>>;
  readonly path: readonly string[];
}

/** The spec's rule for container ids. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** The spec's network name rule (same alphabet). */
const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Reads the `CNI_*` variables for one invocation.
 *
 * @throws CniError ERR_CNI_INVALID_ENV naming every variable at fault.
 */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
  const raw = env[ENV.command];
  if (raw === undefined || raw === '') {
    throw new CniError('ERR_CNI_INVALID_ENV', `${ENV.command} is required; expected one of ${COMMANDS.join(', ')}`);
  }
  if (!(COMMANDS as readonly string[]).includes(raw)) {
    throw new CniError('ERR_CNI_INVALID_ENV', `${ENV.command}=${JSON.stringify(raw)} is not supported; expected one of ${COMMANDS.join(', ')}`);
  }
  const command = raw as CniCommand;
  const problems: string[] = [];
  const missing = REQUIRED[command].filter((name) => (env[name] ?? '') === '');
  if (missing.length > 0) problems.push(`${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} required for ${command}`);
  const containerId = env[ENV.containerId] ?? '';
  if (containerId !== '' && !CONTAINER_ID_RE.test(containerId)) {
    problems.push(`${ENV.containerId}=${JSON.stringify(containerId)} is not a valid container id (letters, digits, _ . -; starting with a letter or digit)`);
  }
  const ifname = env[ENV.ifname] ?? '';
  if (ifname !== '') {
    const bad = interfaceNameProblem(ifname);
    if (bad) problems.push(`${ENV.ifname}=${JSON.stringify(ifname)} ${bad}`);
  }
  const netns = env[ENV.netns] ?? '';
  if (netns !== '' && !isAbsolute(netns)) problems.push(`${ENV.netns}=${JSON.stringify(netns)} is not an absolute path`);
  let args: Record<string, string> = {};
  try {
    args = parseArgs(env[ENV.args] ?? '');
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (problems.length > 0) {
    throw new CniError('ERR_CNI_INVALID_ENV', problems[0]!, problems.length > 1 ? problems.join('; ') : '');
  }
  return Object.freeze({
    command,
    containerId,
    netns,
    ifname,
    args: Object.freeze(args),
    path: Object.freeze((env[ENV.path] ?? '').split(':').filter((p) => p !== '')),
  });
}

function interfaceNameProblem(name: string): string | undefined {
  if (name.length > 15) return 'is longer than 15 characters';
  if (name === '.' || name === '..') return 'is not a valid interface name';
  if (/[/:\s]/.test(name)) return 'must not contain "/", ":" or whitespace';
  return undefined;
}

/**
 * `K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IgnoreUnknown=1` → a record. Keys the plugin does
 * not read are kept and ignored: runtimes add their own.
 */
export function parseArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (text === '') return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError('ERR_CNI_INVALID_ENV', `${ENV.args}: ${JSON.stringify(pair)} is not KEY=VALUE (pairs are separated by ";")`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** Our keys in the plugin's entry of the conflist (docs/cni.md). */
export interface PluginConf {
  readonly agentSocket: string;
  readonly agentConnectTimeoutMs: number;
  readonly agentRequestTimeoutMs: number;
  /** Pods in these namespaces pass through without asking the agent (the agent's own namespace must be here, or it could never start). */
  readonly exemptNamespaces: readonly string[];
  /** Template of the pod's cgroup; see {@link expandCgroupPath}. */
  readonly cgroupPath?: string;
}

export interface NetConf {
  readonly cniVersion: string;
  readonly name: string;
  readonly type: string;
  /** The previous plugin's result, exactly as received. */
  readonly prevResult?: Readonly<Record<string, unknown>>;
  readonly plugin: PluginConf;
}

/** Keys the spec defines for every plugin's config; accepted and left alone. */
const WELL_KNOWN_KEYS = ['cniVersion', 'name', 'type', 'prevResult', 'runtimeConfig', 'capabilities', 'args', 'dns', 'ipam', 'ipMasq', 'disableCheck', 'disableGC'];
const PLUGIN_KEYS = ['agentSocket', 'agentConnectTimeoutMs', 'agentRequestTimeoutMs', 'exemptNamespaces', 'cgroupPath'];
const TEMPLATE_VARS = ['containerId', 'podUid', 'podNamespace', 'podName'];

/**
 * Parses the network config on stdin.
 *
 * @throws CniError ERR_CNI_DECODE (not JSON), ERR_CNI_INCOMPATIBLE_VERSION, ERR_CNI_INVALID_CONFIG
 *   (wrong values; every problem in `details`) or ERR_CNI_UNSUPPORTED_FIELD (unknown keys only).
 */
export function parseNetConf(stdin: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    const what = stdin.trim() === '' ? 'stdin is empty' : `stdin is not JSON (${(err as Error).message})`;
    throw new CniError('ERR_CNI_DECODE', `cannot decode the network config: ${what}`);
  }
  if (!isMapping(raw)) throw new CniError('ERR_CNI_DECODE', `cannot decode the network config: expected a JSON object, got ${describe(raw)}`);

  const unknown = new Problems();
  mapping(unknown, '', raw, [...WELL_KNOWN_KEYS, ...PLUGIN_KEYS]);
  const p = new Problems();
  const cniVersion = field(p, '', raw, 'cniVersion', (v, path) => string(p, path, v, 'a version such as "1.0.0"'), { required: true });
  if (cniVersion !== undefined && !SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new CniError(
      'ERR_CNI_INCOMPATIBLE_VERSION',
      `cniVersion ${JSON.stringify(cniVersion)} is not supported; this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  const name = field(p, '', raw, 'name', (v, path) =>
    string(p, path, v, 'the network name', (s) => (NETWORK_NAME_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a valid network name (letters, digits, _ . -)`)),
    { required: true },
  );
  const type = field(p, '', raw, 'type', (v, path) => string(p, path, v, 'the plugin name'), { required: true });
  const prevResult = field(p, '', raw, 'prevResult', (v, path) => {
    if (!isMapping(v)) {
      p.add(path, `expected the previous plugin's result (an object), got ${describe(v)}`);
      return undefined;
    }
    return v;
  });
  const agentSocket = field(p, '', raw, 'agentSocket', (v, path) =>
    string(p, path, v, 'the path of the node agent socket', (s) =>
      !isAbsolute(s)
        ? `${JSON.stringify(s)} is not an absolute path`
        : Buffer.byteLength(s) > MAX_SOCKET_PATH
          ? `${JSON.stringify(s)} is longer than ${MAX_SOCKET_PATH} bytes, the limit of a Unix socket path`
          : undefined,
    ),
  );
  const ms = (k: string) =>
    field(p, '', raw, k, (v, path) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
        p.add(path, `expected a positive number of milliseconds, got ${describe(v)}`);
        return undefined;
      }
      return v;
    });
  const connectMs = ms('agentConnectTimeoutMs');
  const requestMs = ms('agentRequestTimeoutMs');
  const exemptNamespaces = field(p, '', raw, 'exemptNamespaces', (v, path) => list(p, path, v, (x, ip) => string(p, ip, x, 'a namespace name')));
  const cgroupPath = field(p, '', raw, 'cgroupPath', (v, path) =>
    string(p, path, v, 'a cgroup path template', (s) => {
      const bad = [...s.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!).filter((n) => !TEMPLATE_VARS.includes(n));
      return bad.length > 0 ? `unknown placeholder {${bad[0]}}; use ${TEMPLATE_VARS.map((n) => `{${n}}`).join(', ')}` : undefined;
    }),
  );

  if (p.size > 0) {
    const all = [...p.list, ...unknown.list];
    throw new CniError('ERR_CNI_INVALID_CONFIG', `invalid network config: ${all[0]}`, all.join('; '));
  }
  if (unknown.size > 0) {
    throw new CniError('ERR_CNI_UNSUPPORTED_FIELD', `unsupported field in network config: ${unknown.list[0]}`, unknown.list.join('; '));
  }
  return Object.freeze({
    cniVersion: cniVersion!,
    name: name!,
    type: type!,
    ...(prevResult ? { prevResult } : {}),
    plugin: Object.freeze({
      agentSocket: agentSocket ?? DEFAULT_AGENT_SOCKET,
      agentConnectTimeoutMs: connectMs ?? DEFAULT_AGENT_CONNECT_TIMEOUT_MS,
      agentRequestTimeoutMs: requestMs ?? DEFAULT_AGENT_REQUEST_TIMEOUT_MS,
      exemptNamespaces: Object.freeze(exemptNamespaces ?? []),
      ...(cgroupPath !== undefined ? { cgroupPath } : {}),
    }),
  });
}

/** Whether `version` (x.y.z) is at least `min`. */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

/**
 * The pod's addresses from a prevResult (`ips[].address`, CIDR notation) without the prefix.
 *
 * @throws CniError ERR_CNI_INVALID_CONFIG naming the entry at fault.
 */
export function resultIps(prevResult: Readonly<Record<string, unknown>>): string[] {
  const ips = prevResult['ips'];
  if (ips === undefined) return [];
  if (!Array.isArray(ips)) throw new CniError('ERR_CNI_INVALID_CONFIG', `invalid network config: prevResult.ips: expected a list, got ${describe(ips)}`);
  return ips.map((entry, i) => {
    const address = isMapping(entry) ? entry['address'] : undefined;
    const ip = typeof address === 'string' ? address.split('/')[0]! : '';
    if (isIP(ip) === 0) {
      throw new CniError('ERR_CNI_INVALID_CONFIG', `invalid network config: prevResult.ips[${i}].address: expected an address in CIDR notation, got ${describe(address)}`);
    }
    return ip;
  });
}

/** What a cgroup template may refer to. */
export interface TemplateVars {
  readonly containerId: string;
  readonly podUid?: string;
  readonly podNamespace?: string;
  readonly podName?: string;
}

/**
 * Expands `{containerId}`, `{podUid}`, `{podNamespace}`, `{podName}` in a `cgroupPath` template.
 * Returns undefined when the template needs a value the runtime did not pass.
 *
 * @example
 * expandCgroupPath('lab/{podNamespace}-{podName}', { containerId: 'c1', podNamespace: 'apps', podName: 'web' }) // => 'lab/apps-web'
 */
export function expandCgroupPath(template: string, vars: TemplateVars): string | undefined {
  let missing = false;
  const out = template.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = vars[k as keyof TemplateVars];
    if (v === undefined || v === '') missing = true;
    return v ?? '';
  });
  return missing ? undefined : out;
}

/** The spec's error object. */
export function errorJson(err: CniError, cniVersion: string): string {
  return JSON.stringify({ cniVersion, code: err.cniCode, msg: err.message, details: err.details });
}

/** The VERSION answer. */
export function versionJson(): string {
  return JSON.stringify({ cniVersion: CNI_VERSION, supportedVersions: SUPPORTED_VERSIONS });
}
