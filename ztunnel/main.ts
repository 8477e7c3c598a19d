#!/usr/bin/env node
/**
 * ztunnel process entry point: configuration from the environment (see ztunnel/config.ts and
 * docs/ztunnel.md). With `CONTROL_PLANE_ADDRESS`, certificates come from the control plane's CA
 * and workloads from its discovery stream; without it, ztunnel runs standalone on a config file
 * and signs with the mesh root itself.
 */
import { loadConfig, type ZtunnelConfig } from './config.js';
import { createLogger, type Logger } from '../core/telemetry/log.js';
import type { MeshError } from '../core/errors.js';
import { CertificateAuthority } from '../core/identity/ca.js';
import { LocalCaClient, SecretManager } from '../core/identity/secret-manager.js';
import { FileConfigSource } from '../core/node-config/file-source.js';
import { connectControlPlane, readRootsFile } from '../core/discovery/client.js';
import type { ConfigSource } from '../core/model/source.js';
import { ztunnelIdentity } from '../core/discovery/wire.js';
import { checkRedirection } from './redirection.js';
import { Ztunnel, type ZtunnelInputs } from './ztunnel.js';

/** The config source and certificates of either mode, and the identities ztunnel holds for itself. */
async function sources(
  config: ZtunnelConfig,
  logger: Logger,
): Promise<{ configSource: ConfigSource; certificates: ZtunnelInputs['certificates']; ownIdentities: string[] }> {
  const cp = config.controlPlane;
  if (cp) {
    const client = connectControlPlane({
      address: cp.address,
      nodeName: config.nodeName,
      trustDomain: config.trustDomain,
      token: cp.tokenFile,
      rootsPem: await readRootsFile(cp.rootCertFile),
      serverIdentity: cp.identity,
      certTtlSeconds: config.certTtlSeconds,
      logger,
    });
    logger.info({ control_plane: `${cp.address.host}:${cp.address.port}` }, 'using the control plane for certificates and configuration');
    // The discovery stream authenticates with ztunnel's own identity, from the same secret manager.
    return { configSource: client.configSource, certificates: client.certificates, ownIdentities: [ztunnelIdentity(config.trustDomain)] };
  }
  const ca = await CertificateAuthority.load(config.caRootCertFile, config.caRootKeyFile, config.trustDomain, {
    ttlSeconds: config.certTtlSeconds,
  });
  return {
    certificates: new SecretManager({ caClient: new LocalCaClient(ca), logger: logger.child({ scope: 'secrets' }) }),
    configSource: new FileConfigSource({
      path: config.localConfigFile,
      logger: logger.child({ scope: 'config' }),
      rootNamespace: config.rootNamespace,
    }),
    ownIdentities: [],
  };
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`ztunnel: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ component: 'ztunnel', level: config.logLevel });
  try {
    const { configSource, certificates, ownIdentities } = await sources(config, logger);
    const zt = await Ztunnel.start({
      config,
      logger,
      configSource,
      certificates,
      ownIdentities,
      ...(config.redirectionCheck === 'bpftool' ? { checkRedirection: () => checkRedirection() } : {}),
    });
    let signalled: string | undefined;
    let drained = false;
    const stop = (signal: string) => {
      signalled = signal;
      // Already drained (handed over, waiting): nothing is left to finish.
      if (drained) {
        logger.info({ signal }, 'exiting after a handover');
        process.exit(0);
      }
      logger.info({ signal }, 'shutdown requested');
      zt.shutdown().catch((err: Error) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // Signals and /quitquitquit drain through the same path.
    await zt.stopped;
    drained = true;
    if (config.handover && signalled === undefined) {
      // Drained by /quitquitquit: a successor asked for the ports. Exiting now would make the
      // kubelet restart this container, which would find the ports taken and ask the successor to
      // drain in turn. The DaemonSet controller deletes this pod once the successor is ready.
      logger.info('drained for a successor; staying, not ready and without listeners, until SIGTERM');
      setInterval(() => {}, 1 << 30);
      return;
    }
    process.exit(0);
  } catch (err) {
    const e = err as MeshError & NodeJS.ErrnoException;
    logger.fatal({ code: e.code, err: e }, `ztunnel failed to start: ${e.message}`);
    process.exitCode = 1;
    setImmediate(() => process.exit(1));
  }
}

void main();
