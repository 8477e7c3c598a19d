#!/usr/bin/env node
/**
 * Node agent process: configuration from the environment (docs/cni.md), eBPF through bpftool,
 * desired state from a file or the control plane, and (with CNI_BIN_DIR/CNI_CONF_DIR) the CNI
 * plugin installed on the node. `main.js --uninstall` removes the plugin, every program and the
 * pins, then exits. Exit codes: 0 after SIGTERM/SIGINT (or a finished --uninstall), 1 when
 * start-up (or the uninstall) failed, 2 for a bad environment or command line.
 */
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { BpfLoader } from '../../bpf/loader.js';
import { cgroup2Root } from '../../bpf/kernel.js';
import { MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/telemetry/log.js';
import { NodeAgent } from './agent.js';
import { CgroupfsResolver, cgroupV1Roots, resolveKubeletCgroupRoot, SystemdResolver, TemplateCgroupResolver, type CgroupResolver, type KubeletLayout } from './cgroup.js';
import { loadConfig, type AgentConfig } from './config.js';
import { FileDesiredStateSource } from './desired-file.js';
import { ControlPlaneDesiredStateSource } from './desired-control-plane.js';
import type { DesiredStateSource } from './desired-state.js';
import { CniInstaller } from './install.js';
import { connectControlPlane, readRootsFile } from '../../core/discovery/client.js';
import type { Logger } from '../../core/telemetry/log.js';
import { rm } from 'node:fs/promises';
import { ownDirectories, removeEmptyDirectories } from './own-dirs.js';

/** Every IPv4/IPv6 address of this network namespace except loopback. */
function localAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => !a.internal)
    .map((a) => a.address);
}

/** The agent's own cgroup (cgroup v2 line `0::/path`), under `root`. */
async function ownCgroup(root: string): Promise<string | undefined> {
  try {
    const line = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').find((l) => l.startsWith('0::'));
    return line ? resolve(root, `.${line.slice(3)}`) : undefined;
  } catch {
    return undefined;
  }
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

function resolverFor(config: AgentConfig, root: string, layout: KubeletLayout): CgroupResolver {
  switch (config.cgroupDriver) {
    case 'template':
      return new TemplateCgroupResolver(root, config.cgroupTemplate!);
    case 'cgroupfs':
      return new CgroupfsResolver(root, layout);
    case 'systemd':
      return new SystemdResolver(root, layout);
  }
}

async function desiredSourceFor(config: AgentConfig, logger: Logger): Promise<DesiredStateSource> {
  const log = logger.child({ scope: 'desired-state' });
  const cp = config.controlPlane;
  if (!cp) return new FileDesiredStateSource({ path: config.desiredStateFile, logger: log, rootNamespace: config.rootNamespace });
  // The agent subscribes as its node's ztunnel does (ztunnel identity + node token): it needs the
  // same view, the workloads of its node.
  const client = connectControlPlane({
    address: cp.address,
    nodeName: config.nodeName,
    trustDomain: config.trustDomain,
    token: cp.tokenFile,
    rootsPem: await readRootsFile(cp.rootCertFile),
    serverIdentity: cp.identity,
    logger: log,
  });
  const source = new ControlPlaneDesiredStateSource({
    configSource: client.configSource,
    nodeName: config.nodeName,
    describe: `control-plane:${cp.address.host}:${cp.address.port}`,
    logger: log,
    lastError: () => (client.configSource.connected ? undefined : client.configSource.stats.lastError),
  });
  return {
    describe: source.describe,
    get lastError() {
      return source.lastError;
    },
    start: (l) => source.start(l),
    close: async () => {
      await source.close();
      client.certificates.close();
    },
  };
}

function installerFor(config: AgentConfig, logger: Logger): CniInstaller | undefined {
  if (!config.cniBinDir || !config.cniConfDir) return undefined;
  return new CniInstaller({
    binDir: config.cniBinDir,
    confDir: config.cniConfDir,
    // The plugin runs on the host: the socket path must be the same on the host and here.
    entry: { agentSocket: config.socket, exemptNamespaces: [...config.exemptNamespaces] },
    checkIntervalMs: config.cniCheckIntervalMs,
    logger: logger.child({ scope: 'cni-install' }),
  });
}

/** `--uninstall`: the plugin out of the node's CNI config, every program detached and unpinned, the state file removed. */
async function uninstall(config: AgentConfig, logger: Logger): Promise<void> {
  const installer = installerFor(config, logger);
  const failures: string[] = [];
  if (installer) {
    const { errors } = await installer.uninstall();
    failures.push(...errors.map((e) => e.message));
  }
  const cgroupRoot = config.cgroupRoot ?? (await cgroup2Root());
  await new BpfLoader({ pinDir: config.pinDir, ...(cgroupRoot ? { cgroupRoot } : {}), bpftool: config.bpftool, logger: logger.child({ scope: 'bpf' }) }).unload();
  await rm(config.stateFile, { force: true });
  // The agent's own directories, now empty unless something else is inside (then they stay).
  const dirs = await removeEmptyDirectories(ownDirectories(config));
  if (dirs.removed.length > 0) logger.info({ removed: dirs.removed }, "removed the agent's own directories");
  for (const k of dirs.kept) logger.info({ dir: k.dir }, `kept ${k.dir}: ${k.why}`);
  if (failures.length > 0) throw new MeshError('ERR_UNINSTALL_INCOMPLETE', `uninstall finished with problems:\n  - ${failures.join('\n  - ')}`);
  logger.info({ pinDir: config.pinDir }, 'node agent uninstalled: plugin removed, programs detached and unpinned');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.some((a) => a !== '--uninstall')) {
    process.stderr.write(`ambient node agent: unknown argument(s) ${args.join(' ')}; the only one is --uninstall\n`);
    process.exit(2);
  }
  let config: AgentConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`ambient node agent: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ component: 'cni-agent', level: config.logLevel });
  if (args.includes('--uninstall')) {
    try {
      await uninstall(config, logger);
      setImmediate(() => process.exit(0));
    } catch (err) {
      logger.fatal({ code: (err as MeshError).code, err }, `uninstall failed: ${(err as Error).message}`);
      setImmediate(() => process.exit(1));
    }
    return;
  }
  try {
    await BpfLoader.checkKernel({ bpftool: config.bpftool });
    const cgroupRoot = config.cgroupRoot ?? (await cgroup2Root());
    if (!cgroupRoot) throw new MeshError('ERR_NO_CGROUP2', 'no cgroup v2 hierarchy is mounted; set CGROUP_ROOT to the host cgroup v2 mount');
    const desiredSource = await desiredSourceFor(config, logger);
    const own = await ownCgroup(cgroupRoot);
    // kubelet's cgroup root and, on a hybrid host, the v1 hierarchies where kubelet makes a pod's
    // cgroup before its sandbox (the kubelet drivers only).
    const kubelet = config.cgroupDriver === 'template' ? undefined : resolveKubeletCgroupRoot(config.kubeletCgroupRoot, await readOrUndefined('/proc/self/cgroup'));
    if (kubelet?.fallback) logger.warn({ kubeletCgroupRoot: kubelet.path }, `KUBELET_CGROUP_ROOT=auto: ${kubelet.fallback}; using /`);
    const v1Roots = config.cgroupDriver === 'template' ? [] : cgroupV1Roots((await readOrUndefined('/proc/self/mountinfo')) ?? '');
    const installer = installerFor(config, logger);
    // The binary first: a config naming a plugin that is not there fails every pod on the node.
    await installer?.installBinary();
    const agent = await NodeAgent.start({
      config,
      logger,
      redirector: new BpfLoader({ pinDir: config.pinDir, cgroupRoot, bpftool: config.bpftool, logger: logger.child({ scope: 'bpf' }) }),
      desiredSource,
      resolver: resolverFor(config, cgroupRoot, { ...(kubelet ? { kubeletRoot: kubelet.path } : {}), v1Roots }),
      cgroupRoot,
      ...(kubelet ? { kubeletCgroupRoot: kubelet } : {}),
      v1Roots,
      nodeIps: config.nodeIps ?? localAddresses(),
      // The root cgroup holds everything; being in it says nothing about which pods are ours.
      ...(own && own !== resolve(cgroupRoot) ? { ownCgroup: own } : {}),
    });
    // Chained only once the agent answers: from here on every new pod is enrolled.
    await installer?.start();
    const stop = (signal: string) => {
      logger.info({ signal, uninstall: config.uninstallOnExit }, 'stopping');
      const finish = async () => {
        await installer?.stop();
        await agent.stop();
        if (config.uninstallOnExit === 'all') await uninstall(config, logger);
        else if (config.uninstallOnExit === 'cni') await installer?.uninstall();
      };
      finish().then(
        () => process.exit(0),
        (err: Error) => {
          logger.error({ err }, 'stop failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  } catch (err) {
    const e = err as MeshError;
    logger.fatal({ code: e.code, err: e }, `node agent failed to start: ${e.message}`);
    setImmediate(() => process.exit(1));
  }
}

void main();
