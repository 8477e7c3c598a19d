/**
 * Which mesh a command acts on. The rule, kept explicit so no command silently picks the wrong one:
 *
 * - `--lab` (or `--lab-prefix` / `--lab-dir`): the lab on this machine (`ambientctl lab up`).
 * - otherwise a cluster, from the kubeconfig kubectl would use: `--kubeconfig`, else `$KUBECONFIG`,
 *   else `~/.kube/config`; `--context` picks a context. No kubeconfig is an error that says so and
 *   suggests `--lab`; there is no fallback from one to the other.
 */
import { join } from 'node:path';
import { DEFAULT_PREFIX, type LabPaths } from '../lab/index.js';
import type { MeshBackend } from './backend.js';
import { ClusterBackend } from './cluster-backend.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { loadKubeconfig } from './kube.js';
import { LabBackend } from './lab-backend.js';

/** The global options that choose and reach the target. */
export interface TargetOptions {
  readonly lab?: boolean;
  readonly labPrefix?: string;
  readonly labDir?: string;
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly istioNamespace: string;
  readonly ztunnelSelector: string;
  readonly controlPlaneSelector: string;
  readonly proxyAdminPort: string;
}

/** The environment variables the target depends on, passed in (never read from process.env here). */
export interface TargetEnv {
  readonly KUBECONFIG?: string;
  readonly HOME?: string;
}

const PREFIX_RE = /^[a-z][a-z0-9-]{1,30}$/;

/** True when the options choose the lab. */
export function wantsLab(o: TargetOptions): boolean {
  return o.lab === true || o.labPrefix !== undefined || o.labDir !== undefined;
}

/** The lab's paths from `--lab-prefix` (default `amb-lab`) and `--lab-dir` (default `/run/<prefix>`). */
export function labPaths(o: Pick<TargetOptions, 'labPrefix' | 'labDir'>): LabPaths {
  const prefix = o.labPrefix ?? DEFAULT_PREFIX;
  if (!PREFIX_RE.test(prefix)) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `--lab-prefix ${JSON.stringify(prefix)}: use 2-31 lowercase letters, digits and '-', starting with a letter`);
  return { prefix, stateDir: o.labDir ?? join('/run', prefix) };
}

/**
 * Opens the backend the options choose.
 *
 * @example
 * const target = await openTarget({ lab: true, istioNamespace: 'istio-system', ztunnelSelector: 'app=ztunnel', controlPlaneSelector: 'app=istiod', proxyAdminPort: '15000' }, { env: process.env, clientVersion: '0.1.0' });
 */
export async function openTarget(o: TargetOptions, ctx: { env: TargetEnv; clientVersion: string }): Promise<MeshBackend> {
  if (wantsLab(o)) {
    if (o.kubeconfig !== undefined || o.context !== undefined) {
      throw new CliError(CLI_ERROR_CODES.BAD_FLAG, '--lab and --kubeconfig/--context choose different targets; give one of them');
    }
    return LabBackend.open({ paths: labPaths(o), clientVersion: ctx.clientVersion });
  }
  const port = Number(o.proxyAdminPort);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `--proxy-admin-port ${o.proxyAdminPort}: use a port number 1-65535`);
  const kubeconfig = loadKubeconfig({
    ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}),
    ...(o.context !== undefined ? { context: o.context } : {}),
    env: ctx.env,
  });
  return new ClusterBackend({
    kubeconfig,
    istioNamespace: o.istioNamespace,
    ztunnelSelector: o.ztunnelSelector,
    controlPlaneSelector: o.controlPlaneSelector,
    proxyAdminPort: port,
  });
}
