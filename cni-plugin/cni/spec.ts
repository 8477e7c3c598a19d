/**
 * The CNI 1.0 wire shapes the plugin reads: the `CNI_*` environment, `CNI_ARGS`, the network
 * config on stdin (with `prevResult`) and the error JSON it writes. This is the only file that
 * knows them; the rest of the plugin works on {@link CniEnv} and {@link NetConf}.
 *
 * Spec: https://www.cni.dev/docs/spec/ (1.0.0).
 */
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { LABEL_RE, SUBDOMAIN_RE, UID_RE } from '../../core/kube/names.js';
import { Problems, describe, field, isMapping, keyPath, list, mapping, quote, string } from '../../core/validation/check.js';
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
/**
 * The longest delay a Node timer takes (2^31-1 ms, about 24.8 days); a longer one fires after 1 ms,
 * so `agentConnectTimeoutMs: 1e308` would have failed every ADD with "try again" at once.
 */
export const MAX_TIMER_MS = 2_147_483_647;

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
 * C0 and C1 controls and DEL. Paths, names and ids the plugin reads end up in the agent's pod
 * table, its state file and log lines; none a runtime makes holds one, so one there is an attack on
 * a log line (ANSI escapes, a forged newline) or a bug, and is refused.
 */
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
/** Longest path the kernel takes (PATH_MAX 4096 with the terminating NUL): CNI_NETNS, cgroup paths. */
export const MAX_PATH_BYTES = 4095;
/**
 * Deepest nesting read from stdin, as the YAML loader's limit (core/validation/yaml.ts): a network
 * config nests about 5 deep (prevResult.ips[0].address); JSON.stringify, which prints prevResult
 * back, recurses once per level and overflows the stack at a few thousand.
 */
export const MAX_CONFIG_DEPTH = 100;

/** Why `path` is not a path the plugin takes (absolute, at most PATH_MAX, no control characters), or undefined. */
function pathProblem(path: string): string | undefined {
  if (!isAbsolute(path)) return 'is not an absolute path';
  if (CONTROL_RE.test(path)) return 'holds a control character';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes (PATH_MAX)`;
  return undefined;
}

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
    throw new CniError('ERR_CNI_INVALID_ENV', `${ENV.command}=${quote(raw)} is not supported; expected one of ${COMMANDS.join(', ')}`);
  }
  const command = raw as CniCommand;
  const problems: string[] = [];
  const missing = REQUIRED[command].filter((name) => (env[name] ?? '') === '');
  if (missing.length > 0) problems.push(`${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} required for ${command}`);
  const containerId = env[ENV.containerId] ?? '';
  if (containerId !== '' && !CONTAINER_ID_RE.test(containerId)) {
    problems.push(`${ENV.containerId}=${quote(containerId)} is not a valid container id (letters, digits, _ . -; starting with a letter or digit)`);
  }
  const ifname = env[ENV.ifname] ?? '';
  if (ifname !== '') {
    const bad = interfaceNameProblem(ifname);
    if (bad) problems.push(`${ENV.ifname}=${quote(ifname)} ${bad}`);
  }
  const netns = env[ENV.netns] ?? '';
  const badNetns = netns === '' ? undefined : pathProblem(netns);
  if (badNetns) problems.push(`${ENV.netns}=${quote(netns)} ${badNetns}`);
  let args: Record<string, string> = {};
  try {
    args = parseArgs(env[ENV.args] ?? '');
    problems.push(...argsProblems(args));
  } catch (err) {
    if (!(err instanceof CniError)) throw err;
    problems.push(err.message);
  }
  if (problems.length > 0) {
    throw new CniError('ERR_CNI_INVALID_ENV', problems[0]!, problems.length > 1 ? detailsOf(problems) : '');
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

/**
 * The kernel's rule for interface names (`dev_valid_name`: fewer than IFNAMSIZ = 16 bytes, not "."
 * or "..", no "/", ":" or whitespace), which libcni's `ValidateInterfaceName` repeats; counted in
 * bytes, as both count. Control characters too (see CONTROL_RE).
 */
function interfaceNameProblem(name: string): string | undefined {
  if (Buffer.byteLength(name) > 15) return 'is longer than 15 bytes';
  if (name === '.' || name === '..') return 'is not a valid interface name';
  if (/[/:\s]/.test(name)) return 'must not contain "/", ":" or whitespace';
  if (CONTROL_RE.test(name)) return 'holds a control character';
  return undefined;
}

/**
 * The `CNI_ARGS` values the plugin reads, held to what kubelet can send: the namespace is a
 * DNS-1123 label and the name a DNS-1123 subdomain (the API server's rules for a Pod), the uid as
 * the manifest parser holds `metadata.uid` (core/kube/names.ts), the cgroup a path. They travel to
 * the agent, which keys its pod table and its log lines by them. Empty means absent (not a pod).
 * Keys the plugin does not read are not looked at.
 */
function argsProblems(args: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  const check = (key: string, ok: (v: string) => boolean, expected: string) => {
    const v = args[key];
    if (v !== undefined && v !== '' && !ok(v)) out.push(`${ENV.args}: ${key}=${quote(v)} is not ${expected}`);
  };
  check(ARGS.podNamespace, (v) => LABEL_RE.test(v), 'a namespace name (a DNS-1123 label: lowercase letters, digits and "-", at most 63)');
  check(ARGS.podName, (v) => SUBDOMAIN_RE.test(v), 'a pod name (a DNS-1123 subdomain: lowercase letters, digits, "-" and ".", at most 253)');
  check(ARGS.podUid, (v) => UID_RE.test(v), 'a pod uid (letters, digits, "-", "_" and ".", at most 128, e.g. a UUID)');
  const cgroup = args[ARGS.cgroup];
  if (cgroup !== undefined && cgroup !== '') {
    const bad = cgroupPathProblem(cgroup);
    if (bad) out.push(`${ENV.args}: ${ARGS.cgroup}=${quote(cgroup)} ${bad}`);
  }
  return out;
}

/** A cgroup path may be relative to the agent's cgroup root; otherwise as {@link pathProblem}. */
function cgroupPathProblem(path: string): string | undefined {
  if (CONTROL_RE.test(path)) return 'holds a control character';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes (PATH_MAX)`;
  return undefined;
}

/**
 * `K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IgnoreUnknown=1` → a record. Keys the plugin does
 * not read are kept and ignored: runtimes add their own.
 */
export function parseArgs(text: string): Record<string, string> {
  // No prototype: a key such as __proto__ or constructor is a key like any other.
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  if (text === '') return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError('ERR_CNI_INVALID_ENV', `${ENV.args}: ${quote(pair)} is not KEY=VALUE (pairs are separated by ";")`);
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
    // The parser's message repeats a piece of the input: quoted, so it cannot hold a raw control character.
    const what = stdin.trim() === '' ? 'stdin is empty' : `stdin is not JSON (${quote((err as Error).message)})`;
    throw new CniError('ERR_CNI_DECODE', `cannot decode the network config: ${what}`);
  }
  if (!isMapping(raw)) throw new CniError('ERR_CNI_DECODE', `cannot decode the network config: expected a JSON object, got ${describe(raw)}`);
  const deep = tooDeep(raw, MAX_CONFIG_DEPTH);
  if (deep !== undefined) {
    throw new CniError('ERR_CNI_DECODE', `cannot decode the network config: the value at ${deep} nests deeper than ${MAX_CONFIG_DEPTH} levels (a network config nests a few)`);
  }

  const unknown = new Problems();
  mapping(unknown, '', raw, [...WELL_KNOWN_KEYS, ...PLUGIN_KEYS]);
  const p = new Problems();
  const cniVersion = field(p, '', raw, 'cniVersion', (v, path) => string(p, path, v, 'a version such as "1.0.0"'), { required: true });
  if (cniVersion !== undefined && !SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new CniError(
      'ERR_CNI_INCOMPATIBLE_VERSION',
      `cniVersion ${quote(cniVersion)} is not supported; this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  const name = field(p, '', raw, 'name', (v, path) =>
    string(p, path, v, 'the network name', (s) => (NETWORK_NAME_RE.test(s) ? undefined : `${quote(s)} is not a valid network name (letters, digits, _ . -)`)),
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
        ? `${quote(s)} is not an absolute path`
        : CONTROL_RE.test(s)
          ? `${quote(s)} holds a control character`
          : Buffer.byteLength(s) > MAX_SOCKET_PATH
            ? `${quote(s)} is longer than ${MAX_SOCKET_PATH} bytes, the limit of a Unix socket path`
            : undefined,
    ),
  );
  const ms = (k: string) =>
    field(p, '', raw, k, (v, path) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > MAX_TIMER_MS) {
        p.add(path, `expected a positive number of milliseconds (at most ${MAX_TIMER_MS}), got ${describe(v)}`);
        return undefined;
      }
      return v;
    });
  const connectMs = ms('agentConnectTimeoutMs');
  const requestMs = ms('agentRequestTimeoutMs');
  const exemptNamespaces = field(p, '', raw, 'exemptNamespaces', (v, path) =>
    list(p, path, v, (x, ip) => string(p, ip, x, 'a namespace name', (s) => (LABEL_RE.test(s) ? undefined : `${quote(s)} is not a namespace name (a DNS-1123 label: lowercase letters, digits and "-", at most 63)`))),
  );
  const cgroupPath = field(p, '', raw, 'cgroupPath', (v, path) =>
    string(p, path, v, 'a cgroup path template', (s) => {
      const bad = cgroupPathProblem(s);
      if (bad) return `${quote(s)} ${bad}`;
      // The first unknown placeholder only: the scan stops there, so it is linear in the template.
      const unknown = /\{([^}]*)\}/g;
      for (let m = unknown.exec(s); m !== null; m = unknown.exec(s)) {
        const name = m[1]!;
        if (!TEMPLATE_VARS.includes(name)) return `unknown placeholder ${/^\w{0,64}$/.test(name) ? `{${name}}` : quote(`{${name}}`)}; use ${TEMPLATE_VARS.map((n) => `{${n}}`).join(', ')}`;
      }
      return undefined;
    }),
  );

  if (p.size > 0) {
    const all = [...p.list, ...unknown.list];
    throw new CniError('ERR_CNI_INVALID_CONFIG', `invalid network config: ${all[0]}`, detailsOf(all));
  }
  if (unknown.size > 0) {
    throw new CniError('ERR_CNI_UNSUPPORTED_FIELD', `unsupported field in network config: ${unknown.list[0]}`, detailsOf(unknown.list));
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

/**
 * The path of the first value of `root` nested deeper than `max` levels, or undefined. An explicit
 * stack, no recursion: the input may nest as deep as JSON.parse allows (millions of levels).
 */
function tooDeep(root: unknown, max: number): string | undefined {
  if (root === null || typeof root !== 'object') return undefined;
  // Only mappings and lists take a frame (a 150,000-element list of scalars took none), and a
  // frame names its field only in the first levels: enough to find the key, and the message stays short.
  const stack: Array<{ v: object; depth: number; path: string }> = [{ v: root, depth: 0, path: '' }];
  while (stack.length > 0) {
    const { v, depth, path } = stack.pop()!;
    if (depth >= max) return path === '' ? 'the config' : path;
    const named = depth < 3;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (x !== null && typeof x === 'object') stack.push({ v: x, depth: depth + 1, path: named ? `${path}[${i}]` : path });
      }
    } else {
      for (const k of Object.keys(v)) {
        const x: unknown = (v as Record<string, unknown>)[k];
        if (x !== null && typeof x === 'object') stack.push({ v: x, depth: depth + 1, path: named ? keyPath(path, k) : path });
      }
    }
  }
  return undefined;
}

/**
 * Problems an error's `details` lists. A runtime logs the error whole; a config with 100,000 wrong
 * keys would otherwise print tens of MiB.
 */
export const MAX_DETAILS = 20;

function detailsOf(problems: readonly string[]): string {
  if (problems.length <= MAX_DETAILS) return problems.join('; ');
  return `${problems.slice(0, MAX_DETAILS).join('; ')}; … and ${problems.length - MAX_DETAILS} more`;
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
