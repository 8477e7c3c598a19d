/**
 * Runs a CNI network configuration list the way a container runtime (libcni) does: each plugin
 * exec'd from CNI_PATH with the CNI_* environment and its config on stdin, the previous plugin's
 * result injected as `prevResult`; DEL in reverse order with the cached ADD result. It lives in the
 * lab because the lab is the only program that plays the container runtime (tests of the plugin use
 * it too); in a cluster, containerd or CRI-O does the same.
 */
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { MeshError } from '../core/errors.js';

/** A conflist (`.conflist` file): `{ cniVersion, name, plugins: [...] }`. */
export interface NetConfList {
  readonly cniVersion: string;
  readonly name: string;
  readonly plugins: ReadonlyArray<Readonly<Record<string, unknown>> & { readonly type: string }>;
}

export type CniResult = Readonly<Record<string, unknown>>;

export interface ChainInputs {
  readonly conflist: NetConfList;
  readonly command: 'ADD' | 'DEL' | 'CHECK';
  readonly containerId: string;
  /** Path of the pod's network namespace (empty allowed for DEL). */
  readonly netns: string;
  readonly ifname: string;
  /** CNI_ARGS pairs, e.g. K8S_POD_NAMESPACE. `IgnoreUnknown=1` is added: the reference plugins refuse unknown args without it. */
  readonly args?: Readonly<Record<string, string>>;
  /** Directories searched for plugin binaries (CNI_PATH). */
  readonly cniPath: readonly string[];
  /** The cached ADD result, for DEL and CHECK. */
  readonly prevResult?: CniResult;
  /** Run the plugins inside this network namespace (`nsenter --net=`): the runtime's "host" side, a node in the lab. */
  readonly runInNetns?: string;
  /** Per plugin; default 30 s. */
  readonly timeoutMs?: number;
  /** Extra environment for the plugins (PATH is passed through). */
  readonly env?: Readonly<Record<string, string>>;
}

/** A plugin failed: its error JSON (code, msg, details) when it printed one, and its stderr. */
export class CniPluginError extends MeshError {
  readonly plugin: string;
  readonly cniCode: number | undefined;
  readonly msg: string;
  readonly details: string;
  readonly stderr: string;
  constructor(plugin: string, command: string, f: { cniCode?: number; msg: string; details?: string; stderr: string; exit: number | string | null }) {
    super(
      'ERR_CNI_PLUGIN',
      `cni plugin ${plugin} ${command} failed${f.cniCode !== undefined ? ` with code ${f.cniCode}` : ''} (exit ${f.exit}): ${f.msg}${f.details ? ` (${f.details})` : ''}`,
    );
    this.plugin = plugin;
    this.cniCode = f.cniCode;
    this.msg = f.msg;
    this.details = f.details ?? '';
    this.stderr = f.stderr;
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** `K=V;K=V`, with IgnoreUnknown first. */
export function formatArgs(args: Readonly<Record<string, string>> = {}): string {
  return Object.entries({ IgnoreUnknown: '1', ...args })
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}

async function findPlugin(type: string, cniPath: readonly string[]): Promise<string> {
  if (!/^[A-Za-z0-9_.-]+$/.test(type)) throw new CniPluginError(type, 'lookup', { msg: `plugin type ${JSON.stringify(type)} is not a file name`, stderr: '', exit: null });
  for (const dir of cniPath) {
    const p = join(dir, type);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // next directory
    }
  }
  throw new CniPluginError(type, 'lookup', { msg: `no executable ${type} in CNI_PATH ${cniPath.join(':')}`, stderr: '', exit: null });
}

/** Runs one plugin; resolves with its parsed stdout (undefined when empty). */
export async function execPlugin(plugin: Readonly<Record<string, unknown>> & { type: string }, inputs: ChainInputs, config: Record<string, unknown>): Promise<CniResult | undefined> {
  const bin = await findPlugin(plugin.type, inputs.cniPath);
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    ...inputs.env,
    CNI_COMMAND: inputs.command,
    CNI_CONTAINERID: inputs.containerId,
    CNI_NETNS: inputs.netns,
    CNI_IFNAME: inputs.ifname,
    CNI_ARGS: formatArgs(inputs.args),
    CNI_PATH: inputs.cniPath.join(':'),
  };
  const [file, argv] = inputs.runInNetns ? ['nsenter', [`--net=${inputs.runInNetns}`, '--', bin]] : [bin, []];
  const child = spawn(file, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => {});
  child.stdin.end(JSON.stringify(config));
  const timer = setTimeout(() => child.kill('SIGKILL'), inputs.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const exit = await new Promise<number | string | null>((resolve) => {
    child.once('error', (err) => {
      stderr += err.message;
      resolve(null);
    });
    child.once('close', (code, signal) => resolve(code ?? signal));
  });
  clearTimeout(timer);
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = stdout.trim() === '' ? undefined : (JSON.parse(stdout) as Record<string, unknown>);
  } catch {
    parsed = undefined;
  }
  if (exit !== 0) {
    throw new CniPluginError(plugin.type, inputs.command, {
      ...(typeof parsed?.['code'] === 'number' ? { cniCode: parsed['code'] } : {}),
      msg: typeof parsed?.['msg'] === 'string' ? parsed['msg'] : stdout.trim() || stderr.trim() || 'no output',
      ...(typeof parsed?.['details'] === 'string' ? { details: parsed['details'] } : {}),
      stderr,
      exit,
    });
  }
  if (stdout.trim() !== '' && parsed === undefined) {
    throw new CniPluginError(plugin.type, inputs.command, { msg: `stdout is not JSON: ${stdout.slice(0, 200)}`, stderr, exit });
  }
  return parsed;
}

/**
 * Runs the list. ADD returns the last plugin's result (cache it for DEL and CHECK); DEL and CHECK
 * return undefined. Stops at the first failure, as libcni does.
 *
 * @example
 * const result = await runChain({ conflist, command: 'ADD', containerId: 'pod1', netns: '/var/run/netns/pod1', ifname: 'eth0', cniPath: ['/usr/lib/cni'], args: { K8S_POD_NAMESPACE: 'apps', K8S_POD_NAME: 'web' } });
 * await runChain({ ...same, command: 'DEL', prevResult: result });
 */
export async function runChain(inputs: ChainInputs): Promise<CniResult | undefined> {
  const { conflist } = inputs;
  const plugins = inputs.command === 'DEL' ? [...conflist.plugins].reverse() : conflist.plugins;
  let prev: CniResult | undefined = inputs.command === 'ADD' ? undefined : inputs.prevResult;
  for (const plugin of plugins) {
    const config: Record<string, unknown> = { ...plugin, cniVersion: conflist.cniVersion, name: conflist.name };
    if (prev !== undefined) config['prevResult'] = prev;
    const out = await execPlugin(plugin, inputs, config);
    if (inputs.command === 'ADD') {
      if (out === undefined) throw new CniPluginError(plugin.type, 'ADD', { msg: 'printed no result', stderr: '', exit: 0 });
      prev = out;
    }
  }
  return inputs.command === 'ADD' ? prev : undefined;
}
