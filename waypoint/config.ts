import { EnvReader, LOG_LEVELS, type LogLevel } from '../core/config/env.js';
import { PORTS } from '../core/hbone/constants.js';

/** Environment variable names; the only place the waypoint reads the environment is `loadConfig`. */
export const ENV = {
  localConfigFile: 'LOCAL_CONFIG_FILE',
  caRootCertFile: 'CA_ROOT_CERT_FILE',
  caRootKeyFile: 'CA_ROOT_KEY_FILE',
  trustDomain: 'TRUST_DOMAIN',
  rootNamespace: 'ROOT_NAMESPACE',
  address: 'WAYPOINT_ADDRESS',
  gatewayName: 'WAYPOINT_NAME',
  adminAddress: 'ADMIN_ADDRESS',
  statsAddress: 'STATS_ADDRESS',
  hbonePort: 'HBONE_PORT',
  adminPort: 'ADMIN_PORT',
  metricsPort: 'METRICS_PORT',
  readinessPort: 'READINESS_PORT',
  drainSeconds: 'DRAIN_TIMEOUT_SECONDS',
  certTtlSeconds: 'WORKLOAD_CERT_TTL_SECONDS',
  logLevel: 'LOG_LEVEL',
} as const;

export interface WaypointConfig {
  readonly localConfigFile: string;
  readonly caRootCertFile: string;
  readonly caRootKeyFile: string;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  /**
   * The waypoint's own IP: the HBONE listener binds it, and the workload with this IP in the
   * config is the waypoint (its namespace and service account are the waypoint's identity).
   */
  readonly address: string;
  /**
   * Name of the waypoint's Gateway (what `targetRefs: [{kind: Gateway}]` names). Empty: the
   * workload's `gateway.networking.k8s.io/gateway-name` label, else the workload's name.
   */
  readonly gatewayName: string;
  readonly adminAddress: string;
  readonly statsAddress: string;
  /** 0 disables a listener (not the HBONE one). */
  readonly hbonePort: number;
  readonly adminPort: number;
  readonly metricsPort: number;
  readonly readinessPort: number;
  readonly drainTimeoutMs: number;
  readonly certTtlSeconds: number;
  readonly logLevel: LogLevel;
}

const DEFAULTS = {
  trustDomain: 'cluster.local',
  // Istio's root namespace: a policy there targeting GatewayClass istio-waypoint covers every waypoint.
  rootNamespace: 'istio-system',
  // Admin can quit the process and dump config: local only, as in Istio.
  adminAddress: '127.0.0.1',
  // Kubernetes' default terminationGracePeriodSeconds is 30; leave 5 s for the forced close.
  drainSeconds: 25,
  // Istio's default workload certificate lifetime.
  certTtlSeconds: 24 * 3600,
  logLevel: 'info',
} as const;


/**
 * Builds the waypoint configuration from an environment record: collects every problem before
 * failing, applies cross-field rules, then freezes.
 *
 * @example
 * const cfg = loadConfig({ WAYPOINT_ADDRESS: '10.0.0.30', LOCAL_CONFIG_FILE: 'mesh.yaml', CA_ROOT_CERT_FILE: 'root-cert.pem', CA_ROOT_KEY_FILE: 'root-key.pem' });
 */
export function loadConfig(envRecord: Readonly<Record<string, string | undefined>>): WaypointConfig {
  const env = new EnvReader(envRecord);
  const { problems } = env;
  const str = env.str.bind(env);
  const port = env.port.bind(env);
  const ip = env.ip.bind(env);
  const positive = env.positive.bind(env);
  const logLevel = env.oneOf(ENV.logLevel, LOG_LEVELS, DEFAULTS.logLevel);
  const address = ip(ENV.address);
  const cfg: WaypointConfig = {
    localConfigFile: str(ENV.localConfigFile),
    caRootCertFile: str(ENV.caRootCertFile),
    caRootKeyFile: str(ENV.caRootKeyFile),
    trustDomain: str(ENV.trustDomain, DEFAULTS.trustDomain),
    rootNamespace: str(ENV.rootNamespace, DEFAULTS.rootNamespace),
    address,
    gatewayName: str(ENV.gatewayName, ''),
    adminAddress: ip(ENV.adminAddress, DEFAULTS.adminAddress),
    statsAddress: ip(ENV.statsAddress, address || '0.0.0.0'),
    hbonePort: port(ENV.hbonePort, PORTS.hbone, false),
    adminPort: port(ENV.adminPort, PORTS.admin),
    metricsPort: port(ENV.metricsPort, PORTS.metrics),
    readinessPort: port(ENV.readinessPort, PORTS.readiness),
    drainTimeoutMs: positive(ENV.drainSeconds, DEFAULTS.drainSeconds) * 1000,
    certTtlSeconds: positive(ENV.certTtlSeconds, DEFAULTS.certTtlSeconds),
    logLevel,
  };
  if (cfg.address !== '' && cfg.statsAddress === cfg.address) {
    const bound = [cfg.hbonePort, cfg.metricsPort, cfg.readinessPort].filter((p) => p !== 0);
    if (new Set(bound).size !== bound.length) {
      problems.push(`${ENV.hbonePort}, ${ENV.metricsPort} and ${ENV.readinessPort} must differ (all bind ${address})`);
    }
  }
  env.finish();
  return Object.freeze(cfg);
}
