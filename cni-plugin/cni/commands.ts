/**
 * ADD, DEL, CHECK and VERSION, given the environment, stdin and a way to reach the agent. No
 * process globals: `plugin.ts` feeds the real ones, tests feed records.
 */
import { stat } from 'node:fs/promises';
import type { AddResponse, CheckResponse, DelResponse, PodRequest } from '../api.js';
import { AgentRequestError, AgentUnavailableError } from '../agent-client.js';
import { CniError, cniCodeForAgentError } from './errors.js';
import {
  ARGS,
  CNI_VERSION,
  ENV,
  errorJson,
  expandCgroupPath,
  parseEnv,
  parseNetConf,
  resultIps,
  versionAtLeast,
  versionJson,
  type CniEnv,
  type NetConf,
  type PluginConf,
} from './spec.js';

/** The agent calls the plugin makes; `AgentClient` implements it. */
export interface AgentApi {
  add(req: PodRequest): Promise<AddResponse>;
  del(req: PodRequest): Promise<DelResponse>;
  check(req: PodRequest): Promise<CheckResponse>;
}

export interface PluginInputs {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: string;
  /** Builds the agent client from the plugin's config. */
  readonly agent: (conf: PluginConf) => AgentApi;
  /** Whether a path exists; swappable in tests. Default: stat(). */
  readonly exists?: (path: string) => Promise<boolean>;
}

export interface PluginOutput {
  /** What goes to stdout: the result, the VERSION answer, an error object, or nothing. */
  readonly stdout: string;
  readonly exitCode: 0 | 1;
  /** One line for stderr (the runtime's logs), when there is something an operator should know. */
  readonly log?: string;
}

const defaultExists = async (path: string): Promise<boolean> => {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
};

/**
 * Runs one plugin invocation. Never throws: every failure becomes the spec's error JSON and exit 1.
 *
 * @example
 * const out = await runPlugin({ env: process.env, stdin, agent: (c) => new AgentClient({ socketPath: c.agentSocket, ... }) });
 * process.stdout.write(out.stdout); process.exitCode = out.exitCode;
 */
export async function runPlugin(inputs: PluginInputs): Promise<PluginOutput> {
  let version = CNI_VERSION;
  try {
    const env = parseEnv(inputs.env);
    if (env.command === 'VERSION') return { stdout: versionJson(), exitCode: 0 };
    const conf = parseNetConf(inputs.stdin);
    version = conf.cniVersion;
    switch (env.command) {
      case 'ADD':
        return await add(env, conf, inputs);
      case 'DEL':
        return await del(env, conf, inputs);
      case 'CHECK':
        return await check(env, conf, inputs);
    }
  } catch (err) {
    // invariant: the parsers and the agent client throw CniError or are wrapped above; anything
    // else is a bug, still answered in the spec's shape (whatever was thrown, even a non-Error).
    const e = err instanceof CniError ? err : new CniError('ERR_CNI_AGENT_PROTOCOL', `unexpected failure: ${err instanceof Error ? err.message : String(err)}`, err instanceof Error ? (err.stack ?? '') : '');
    return { stdout: errorJson(e, version), exitCode: 1, log: `ambient-cni: ${e.code}: ${e.message}` };
  }
}

interface Pod {
  readonly namespace?: string;
  readonly name?: string;
  readonly uid?: string;
}

function podOf(env: CniEnv): Pod {
  const a = env.args;
  return {
    ...(a[ARGS.podNamespace] ? { namespace: a[ARGS.podNamespace] } : {}),
    ...(a[ARGS.podName] ? { name: a[ARGS.podName] } : {}),
    ...(a[ARGS.podUid] ? { uid: a[ARGS.podUid] } : {}),
  };
}

function request(env: CniEnv, conf: NetConf, pod: Pod, ips: readonly string[]): PodRequest {
  const cgroup =
    env.args[ARGS.cgroup] ||
    (conf.plugin.cgroupPath !== undefined
      ? expandCgroupPath(conf.plugin.cgroupPath, {
          containerId: env.containerId,
          ...(pod.uid ? { podUid: pod.uid } : {}),
          ...(pod.namespace ? { podNamespace: pod.namespace } : {}),
          ...(pod.name ? { podName: pod.name } : {}),
        })
      : undefined);
  return {
    containerId: env.containerId,
    ...(pod.namespace ? { podNamespace: pod.namespace } : {}),
    ...(pod.name ? { podName: pod.name } : {}),
    ...(pod.uid ? { podUid: pod.uid } : {}),
    ...(env.netns ? { netns: env.netns } : {}),
    ifname: env.ifname,
    ips,
    ...(cgroup ? { cgroup } : {}),
  };
}

/** The previous plugin's result, as it came (the spec requires it in the config's version already). */
function passThrough(conf: NetConf): string {
  // A runtime always stamps cniVersion on prevResult; only a hand-made config may lack it, and a
  // result without one is unreadable to the runtime.
  const result = conf.prevResult!;
  return JSON.stringify(result['cniVersion'] === undefined ? { cniVersion: conf.cniVersion, ...result } : result);
}

function agentFailure(err: unknown, what: string): CniError {
  if (err instanceof AgentUnavailableError) return new CniError('ERR_CNI_TRY_AGAIN', `${what}: ${err.message}`, '', { cause: err });
  if (err instanceof AgentRequestError) return new CniError(cniCodeForAgentError(err.agentCode), `${what}: ${err.message}`, `agent error ${err.agentCode} (http ${err.status})`, { cause: err });
  return new CniError('ERR_CNI_AGENT_PROTOCOL', `${what}: ${(err as Error).message}`, '', { cause: err });
}

async function add(env: CniEnv, conf: NetConf, inputs: PluginInputs): Promise<PluginOutput> {
  if (!conf.prevResult) {
    throw new CniError(
      'ERR_CNI_INVALID_CONFIG',
      'invalid network config: prevResult is required: ambient-cni is a chained plugin; list it after the interface plugin (e.g. bridge) in the conflist',
    );
  }
  const ips = resultIps(conf.prevResult);
  const pod = podOf(env);
  if (!pod.namespace || !pod.name) {
    // Not a Kubernetes pod (no K8S_POD_* args): no namespace, so it cannot be in an ambient one.
    return { stdout: passThrough(conf), exitCode: 0, log: `ambient-cni: ${env.containerId}: no ${ARGS.podNamespace}/${ARGS.podName} in ${ENV.args}; not a pod, left alone` };
  }
  if (conf.plugin.exemptNamespaces.includes(pod.namespace)) return { stdout: passThrough(conf), exitCode: 0 };
  const exists = inputs.exists ?? defaultExists;
  if (!(await exists(env.netns))) {
    throw new CniError('ERR_CNI_NETNS_NOT_FOUND', `${ENV.netns}=${env.netns} does not exist; the sandbox's network namespace is gone`);
  }
  let res: AddResponse;
  try {
    res = await inputs.agent(conf.plugin).add(request(env, conf, pod, ips));
  } catch (err) {
    throw agentFailure(err, `enrolling pod ${pod.namespace}/${pod.name}`);
  }
  if (res?.mode !== 'enrolled' && res?.mode !== 'not-ambient' && res?.mode !== 'exempt') {
    throw new CniError('ERR_CNI_AGENT_PROTOCOL', `enrolling pod ${pod.namespace}/${pod.name}: the agent answered an unknown mode ${JSON.stringify(res?.mode)}`);
  }
  return { stdout: passThrough(conf), exitCode: 0 };
}

async function del(env: CniEnv, conf: NetConf, inputs: PluginInputs): Promise<PluginOutput> {
  const pod = podOf(env);
  if (pod.namespace && conf.plugin.exemptNamespaces.includes(pod.namespace)) return { stdout: '', exitCode: 0 };
  try {
    await inputs.agent(conf.plugin).del(request(env, conf, pod, []));
    return { stdout: '', exitCode: 0 };
  } catch (err) {
    // DEL must succeed when things are already gone. An agent that is down reconciles on start:
    // it forgets pods whose cgroup has disappeared.
    return { stdout: '', exitCode: 0, log: `ambient-cni: DEL ${env.containerId}: ${(err as Error).message} (ignored: DEL always succeeds)` };
  }
}

async function check(env: CniEnv, conf: NetConf, inputs: PluginInputs): Promise<PluginOutput> {
  if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
    throw new CniError('ERR_CNI_INCOMPATIBLE_VERSION', `CHECK needs cniVersion 0.4.0 or later; the config says ${conf.cniVersion}`);
  }
  if (!conf.prevResult) throw new CniError('ERR_CNI_INVALID_CONFIG', 'invalid network config: prevResult is required for CHECK');
  const ips = resultIps(conf.prevResult);
  const pod = podOf(env);
  if (!pod.namespace || !pod.name || conf.plugin.exemptNamespaces.includes(pod.namespace)) return { stdout: '', exitCode: 0 };
  try {
    await inputs.agent(conf.plugin).check(request(env, conf, pod, ips));
  } catch (err) {
    throw agentFailure(err, `checking pod ${pod.namespace}/${pod.name}`);
  }
  return { stdout: '', exitCode: 0 };
}
