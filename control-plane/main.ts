#!/usr/bin/env node
/**
 * Control-plane process entry point: configuration from the environment (control-plane/config.ts,
 * docs/control-plane.md), then the CA and discovery server on 15012.
 */
import { loadConfig, type ControlPlaneConfig } from './config.js';
import { ControlPlane } from './control-plane.js';
import { createLogger } from '../core/telemetry/log.js';
import type { MeshError } from '../core/errors.js';

async function main(): Promise<void> {
  let config: ControlPlaneConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`control-plane: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ component: 'control-plane', level: config.logLevel });
  let cp: ControlPlane;
  try {
    cp = await ControlPlane.start({ config, logger });
  } catch (err) {
    const e = err as MeshError;
    logger.fatal({ code: e.code, err: e }, `control plane failed to start: ${e.message}`);
    setImmediate(() => process.exit(1));
    return;
  }
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutdown requested');
    cp.close().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // SIGHUP re-reads the CA files and the node list (they are also watched).
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the ca files and the node list');
    void cp.reloadCa().catch(() => undefined);
    void cp.reloadNodes().catch(() => undefined);
  });
}

void main();
