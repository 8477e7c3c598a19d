#!/usr/bin/env node
/**
 * ztunnel process entry point: configuration from the environment (see ztunnel/config.ts and
 * docs/ztunnel.md), workloads from the config file, certificates from the in-process CA.
 */
import { loadConfig } from './config.js';
import { createLogger } from '../core/telemetry/log.js';
import { MeshError } from '../core/errors.js';
import { CertificateAuthority } from '../core/identity/ca.js';
import { LocalCaClient, SecretManager } from '../core/identity/secret-manager.js';
import { FileConfigSource } from '../core/config/file-source.js';
import { Ztunnel } from './ztunnel.js';

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
    const ca = await CertificateAuthority.load(config.caRootCertFile, config.caRootKeyFile, config.trustDomain, {
      ttlSeconds: config.certTtlSeconds,
    });
    const certificates = new SecretManager({
      caClient: new LocalCaClient(ca),
      logger: logger.child({ scope: 'secrets' }),
    });
    const configSource = new FileConfigSource({
      path: config.localConfigFile,
      logger: logger.child({ scope: 'config' }),
      rootNamespace: config.rootNamespace,
    });
    const zt = await Ztunnel.start({ config, logger, configSource, certificates });
    const stop = (signal: string) => {
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
    process.exit(0);
  } catch (err) {
    const e = err as MeshError & NodeJS.ErrnoException;
    logger.fatal({ code: e.code, err: e }, `ztunnel failed to start: ${e.message}`);
    process.exitCode = 1;
    setImmediate(() => process.exit(1));
  }
}

void main();
