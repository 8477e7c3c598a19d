#!/usr/bin/env node
/**
 * Node agent process: configuration from the environment (docs/cni.md), eBPF through bpftool,
 * desired state from a file. Exit codes: 0 after SIGTERM/SIGINT, 1 when start-up failed, 2 for a
 * bad environment.
 */
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { BpfLoader } from '../../bpf/loader.js';
import { cgroup2Root } from '../../bpf/kernel.js';
import { MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/telemetry/log.js';
import { NodeAgent } from './agent.js';
import { CgroupfsResolver, SystemdResolver, TemplateCgroupResolver, type CgroupResolver } from './cgroup.js';
import { loadConfig, type AgentConfig } from './config.js';
import { FileDesiredStateSource } from './desired-file.js';

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

function resolverFor(config: AgentConfig, root: string): CgroupResolver {
  switch (config.cgroupDriver) {
    case 'template':
      return new TemplateCgroupResolver(root, config.cgroupTemplate!);
    case 'cgroupfs':
      return new CgroupfsResolver(root);
    case 'systemd':
      return new SystemdResolver(root);
  }
}

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`ambient node agent: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ component: 'cni-agent', level: config.logLevel });
  try {
    await BpfLoader.checkKernel({ bpftool: config.bpftool });
    const cgroupRoot = config.cgroupRoot ?? (await cgroup2Root());
    if (!cgroupRoot) throw new MeshError('ERR_NO_CGROUP2', 'no cgroup v2 hierarchy is mounted; set CGROUP_ROOT to the host cgroup v2 mount');
    const desiredSource = new FileDesiredStateSource({ path: config.desiredStateFile, logger: logger.child({ scope: 'desired-state' }), rootNamespace: config.rootNamespace });
    const own = await ownCgroup(cgroupRoot);
    const agent = await NodeAgent.start({
      config,
      logger,
      redirector: new BpfLoader({ pinDir: config.pinDir, cgroupRoot, bpftool: config.bpftool, logger: logger.child({ scope: 'bpf' }) }),
      desiredSource,
      resolver: resolverFor(config, cgroupRoot),
      cgroupRoot,
      nodeIps: config.nodeIps ?? localAddresses(),
      // The root cgroup holds everything; being in it says nothing about which pods are ours.
      ...(own && own !== resolve(cgroupRoot) ? { ownCgroup: own } : {}),
    });
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping');
      agent.stop().then(
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
