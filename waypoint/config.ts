import { isIP } from 'node:net';
import { ConfigError } from '../core/errors.js';
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
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';
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

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

/**
 * Builds the waypoint configuration from an environment record: collects every problem before
 * failing, applies cross-field rules, then freezes.
 *
 * @example
 * const cfg = loadConfig({ WAYPOINT_ADDRESS: '10.0.0.30', LOCAL_CONFIG_FILE: 'mesh.yaml', CA_ROOT_CERT_FILE: 'root-cert.pem', CA_ROOT_KEY_FILE: 'root-key.pem' });
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): WaypointConfig {
  const problems: string[] = [];
  const str = (name: string, fallback?: string): string => {
    const v = env[name];
    if (v === undefined || v === '') {
      if (fallback === undefined) problems.push(`${name} is required`);
      return fallback ?? '';
    }
    return v;
  };
  const port = (name: string, fallback: number, allowZero = true): number => {
    const v = env[name];
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n > 65535 || (!allowZero && n === 0)) {
      problems.push(`${name}=${JSON.stringify(v)} is not a port (${allowZero ? '0 to disable, or ' : ''}1-65535)`);
      return fallback;
    }
    return n;
  };
  const ip = (name: string, fallback?: string): string => {
    const v = str(name, fallback);
    if (v !== '' && isIP(v) === 0) problems.push(`${name}=${JSON.stringify(v)} is not an IPv4 or IPv6 address`);
    return v;
  };
  const positive = (name: string, fallback: number): number => {
    const v = env[name];
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      problems.push(`${name}=${JSON.stringify(v)} is not a positive number`);
      return fallback;
    }
    return n;
  };
  const logLevel = str(ENV.logLevel, DEFAULTS.logLevel);
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`${ENV.logLevel}=${JSON.stringify(logLevel)} is not one of ${LOG_LEVELS.join(', ')}`);
  }
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
    logLevel: logLevel as WaypointConfig['logLevel'],
  };
  if (cfg.address !== '' && cfg.statsAddress === cfg.address) {
    const bound = [cfg.hbonePort, cfg.metricsPort, cfg.readinessPort].filter((p) => p !== 0);
    if (new Set(bound).size !== bound.length) {
      problems.push(`${ENV.hbonePort}, ${ENV.metricsPort} and ${ENV.readinessPort} must differ (all bind ${address})`);
    }
  }
  if (problems.length > 0) throw new ConfigError('the environment', problems);
  return Object.freeze(cfg);
}
