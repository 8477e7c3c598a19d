#!/usr/bin/env node
/**
 * Control-plane process entry point: configuration from the environment (control-plane/config.ts,
 * docs/control-plane.md), then the CA and discovery server on 15012.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { loadConfig, type ControlPlaneConfig } from './config.js';
import { ControlPlane } from './control-plane.js';
import { KubeConfigApi } from '../core/kube/api.js';
import { startClusterControlPlane } from './kubernetes/cluster.js';
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
  let close: () => Promise<void>;
  try {
    if (config.kubernetes) {
      const kc = new KubeConfig();
      // A kubeconfig file when given (running outside the cluster), else the pod's service account.
      if (config.kubernetes.kubeconfig) kc.loadFromFile(config.kubernetes.kubeconfig);
      else kc.loadFromCluster();
      const cluster = await startClusterControlPlane({ config, logger, api: new KubeConfigApi(kc) });
      cp = cluster.controlPlane;
      close = () => cluster.close();
    } else {
      const files = await ControlPlane.start({ config, logger });
      cp = files;
      close = () => files.close();
    }
  } catch (err) {
    const e = err as MeshError;
    logger.fatal({ code: e.code, err: e }, `control plane failed to start: ${e.message}`);
    setImmediate(() => process.exit(1));
    return;
  }
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutdown requested');
    close().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // SIGHUP re-reads the CA files and the node list (they are also watched; in a cluster the node list is the api server's).
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the ca files and the node list');
    void cp.reloadCa().catch(() => undefined);
    void cp.reloadNodes().catch(() => undefined);
  });
}

void main();
