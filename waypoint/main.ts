#!/usr/bin/env node
/**
 * waypoint process entry point: configuration from the environment (see waypoint/config.ts and
 * docs/waypoint.md). With `CONTROL_PLANE_ADDRESS`, its certificate (the identity of its Gateway's
 * service account) comes from the control plane's CA and services, routes and policies from its
 * discovery stream; without it, the waypoint runs standalone on a config file and signs with the
 * mesh root itself.
 */
import { loadConfig, type WaypointConfig } from './config.js';
import { pino } from 'pino';
import { createLogger, type Logger } from '../core/telemetry/log.js';
import { MeshError } from '../core/errors.js';
import { CertificateAuthority } from '../core/identity/ca.js';
import { LocalCaClient, SecretManager } from '../core/identity/secret-manager.js';
import { FileConfigSource } from '../core/node-config/file-source.js';
import { connectControlPlane, readRootsFile } from '../core/discovery/client.js';
import type { ConfigSource } from '../core/model/source.js';
import { Waypoint, type WaypointInputs } from './waypoint.js';
import { LineBatcher } from './log-batch.js';

/**
 * Log characters gathered before a write; a burst of requests costs one write(2) per this much.
 * Each write costs ~50 µs of CPU however small (the hand-off to libuv's thread pool and back),
 * so 32 KiB (~50 access-log lines) rather than 8 KiB; a quiet waypoint still flushes on the timer.
 */
const ACCESS_LOG_BUFFER_BYTES = 32 * 1024;
/** A quiet waypoint still writes its last lines within this long. */
const ACCESS_LOG_FLUSH_MS = 250;

/** The config source and certificates of either mode. */
async function sources(config: WaypointConfig, logger: Logger): Promise<{ configSource: ConfigSource; certificates: WaypointInputs['certificates'] }> {
  const cp = config.controlPlane;
  if (cp) {
    const client = connectControlPlane({
      address: cp.address,
      nodeName: cp.nodeName,
      trustDomain: config.trustDomain,
      token: cp.tokenFile,
      rootsPem: await readRootsFile(cp.rootCertFile),
      serverIdentity: cp.identity,
      identity: cp.proxyIdentity,
      proxy: 'waypoint',
      certTtlSeconds: config.certTtlSeconds,
      logger,
    });
    logger.info({ control_plane: `${cp.address.host}:${cp.address.port}`, identity: cp.proxyIdentity }, 'using the control plane for certificates and configuration');
    return { configSource: client.configSource, certificates: client.certificates };
  }
  const ca = await CertificateAuthority.load(config.caRootCertFile, config.caRootKeyFile, config.trustDomain, {
    ttlSeconds: config.certTtlSeconds,
  });
  return {
    certificates: new SecretManager({ caClient: new LocalCaClient(ca), logger: logger.child({ scope: 'secrets' }) }),
    configSource: new FileConfigSource({ path: config.localConfigFile, logger: logger.child({ scope: 'config' }), rootNamespace: config.rootNamespace }),
  };
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`waypoint: ${(err as Error).message}\n`);
    process.exit(2);
  }
  // One access-log line per request: written in batches (at most ACCESS_LOG_FLUSH_MS late), not
  // one write(2) per line, which cost the waypoint ~7% of its CPU under load. Flushed on exit.
  // Lines are gathered by LineBatcher (log-batch.ts says why not by sonic-boom itself); sonic-boom
  // writes each batch at once (minLength 0) and owns the write, EAGAIN retry and flushSync.
  const sonic = pino.destination({ dest: 1, sync: false, minLength: 0 });
  const destination = new LineBatcher(sonic, ACCESS_LOG_BUFFER_BYTES);
  setInterval(() => destination.flush(), ACCESS_LOG_FLUSH_MS).unref();
  const exit = (code: number): never => {
    try {
      destination.flushSync();
    } catch {
      // Nothing left to do with a log line that cannot be written.
    }
    process.exit(code);
  };
  const logger = createLogger({ component: 'waypoint', level: config.logLevel, destination: destination as unknown as NodeJS.WritableStream });
  try {
    const { configSource, certificates } = await sources(config, logger);
    const wp = await Waypoint.start({ config, logger, configSource, certificates });
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutdown requested');
      wp.shutdown().catch((err: Error) => {
        logger.error({ err }, 'shutdown failed');
        exit(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // Signals and /quitquitquit drain through the same path.
    await wp.stopped;
    exit(0);
  } catch (err) {
    const e = err as MeshError & NodeJS.ErrnoException;
    logger.fatal({ code: e.code, err: e }, `waypoint failed to start: ${e.message}`);
    process.exitCode = 1;
    setImmediate(() => exit(1));
  }
}

void main();
