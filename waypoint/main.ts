#!/usr/bin/env node
/**
 * waypoint process entry point: configuration from the environment (see waypoint/config.ts and
 * docs/waypoint.md), services, routes and policies from the config file, its certificate from the in-process CA.
 */
import { loadConfig } from './config.js';
import { createLogger } from '../core/telemetry/log.js';
import { MeshError } from '../core/errors.js';
import { CertificateAuthority } from '../core/identity/ca.js';
import { LocalCaClient, SecretManager } from '../core/identity/secret-manager.js';
import { FileConfigSource } from '../core/config/file-source.js';
import { Waypoint } from './waypoint.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`waypoint: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ component: 'waypoint', level: config.logLevel });
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
    const wp = await Waypoint.start({ config, logger, configSource, certificates });
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutdown requested');
      wp.shutdown().catch((err: Error) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // Signals and /quitquitquit drain through the same path.
    await wp.stopped;
    process.exit(0);
  } catch (err) {
    const e = err as MeshError & NodeJS.ErrnoException;
    logger.fatal({ code: e.code, err: e }, `waypoint failed to start: ${e.message}`);
    process.exitCode = 1;
    setImmediate(() => process.exit(1));
  }
}

void main();
