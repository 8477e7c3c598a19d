import { EnvReader, LOG_LEVELS, type LogLevel } from '../core/node-config/env.js';
import { PORTS } from '../core/hbone/constants.js';
import { CONTROL_PLANE_ENV, readSourceMode, type ControlPlaneSettings } from '../core/node-config/control-plane.js';
import { formatSpiffeId } from '../core/identity/spiffe.js';

/** Environment variable names; the only place the waypoint reads the environment is `loadConfig`. */
export const ENV = {
  nodeName: 'NODE_NAME',
  podNamespace: 'POD_NAMESPACE',
  serviceAccount: 'SERVICE_ACCOUNT',
  controlPlaneAddress: CONTROL_PLANE_ENV.address,
  nodeTokenFile: CONTROL_PLANE_ENV.tokenFile,
  controlPlaneRootCertFile: CONTROL_PLANE_ENV.rootCertFile,
  controlPlaneIdentity: CONTROL_PLANE_ENV.identity,
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
  jwksRefreshSeconds: 'JWKS_REFRESH_SECONDS',
  jwksFetchTimeoutSeconds: 'JWKS_FETCH_TIMEOUT_SECONDS',
} as const;

export interface WaypointConfig {
  /**
   * Set when `CONTROL_PLANE_ADDRESS` is: the waypoint's certificate from the control plane's CA,
   * services, routes and policies from its discovery stream. Otherwise standalone on
   * `localConfigFile`, signing with the root in `caRootCertFile`/`caRootKeyFile`.
   */
  readonly controlPlane?: ControlPlaneSettings & {
    /** The node the waypoint runs on (its discovery subscription and CA caller). */
    readonly nodeName: string;
    /** The waypoint's own SPIFFE ID, `spiffe://<td>/ns/<POD_NAMESPACE>/sa/<SERVICE_ACCOUNT>`. */
    readonly proxyIdentity: string;
  };
  /** Standalone mode only ('' with a control plane). */
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
  /** How often a RequestAuthentication's `jwksUri` is fetched again (waypoint/jwt.ts). */
  readonly jwksRefreshMs: number;
  /** How long one JWKS fetch may take, unless the rule's `timeout` says otherwise. */
  readonly jwksFetchTimeoutMs: number;
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
  // istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL: key rotations reach the waypoint within 20 minutes.
  jwksRefreshSeconds: 20 * 60,
  // Istio's default JWTRule timeout: a request waits at most this long for keys it does not have.
  jwksFetchTimeoutSeconds: 5,
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
  const trustDomain = str(ENV.trustDomain, DEFAULTS.trustDomain);
  const gatewayName = str(ENV.gatewayName, '');
  const mode = readSourceMode(env, envRecord, trustDomain, [ENV.localConfigFile, ENV.caRootCertFile, ENV.caRootKeyFile]);
  let controlPlane: WaypointConfig['controlPlane'];
  if (mode.controlPlane) {
    // Istio runs a waypoint as the service account named after its Gateway.
    const namespace = str(ENV.podNamespace);
    const serviceAccount = str(ENV.serviceAccount, gatewayName || undefined);
    if (serviceAccount === '' && gatewayName === '') problems.push(`${ENV.serviceAccount} or ${ENV.gatewayName} is required with ${ENV.controlPlaneAddress} (the waypoint's identity)`);
    let identity = '';
    if (namespace !== '' && serviceAccount !== '') {
      try {
        identity = formatSpiffeId({ trustDomain, namespace, serviceAccount });
      } catch (err) {
        problems.push(`${ENV.podNamespace}/${ENV.serviceAccount}: ${(err as Error).message}`);
      }
    }
    controlPlane = Object.freeze({ ...mode.controlPlane, nodeName: str(ENV.nodeName), proxyIdentity: identity });
  }
  const cfg: WaypointConfig = {
    ...(controlPlane ? { controlPlane } : {}),
    localConfigFile: mode.standaloneFile(ENV.localConfigFile),
    caRootCertFile: mode.standaloneFile(ENV.caRootCertFile),
    caRootKeyFile: mode.standaloneFile(ENV.caRootKeyFile),
    trustDomain,
    rootNamespace: str(ENV.rootNamespace, DEFAULTS.rootNamespace),
    address,
    gatewayName,
    adminAddress: ip(ENV.adminAddress, DEFAULTS.adminAddress),
    statsAddress: ip(ENV.statsAddress, address || '0.0.0.0'),
    hbonePort: port(ENV.hbonePort, PORTS.hbone, false),
    adminPort: port(ENV.adminPort, PORTS.admin),
    metricsPort: port(ENV.metricsPort, PORTS.metrics),
    readinessPort: port(ENV.readinessPort, PORTS.readiness),
    drainTimeoutMs: positive(ENV.drainSeconds, DEFAULTS.drainSeconds) * 1000,
    certTtlSeconds: positive(ENV.certTtlSeconds, DEFAULTS.certTtlSeconds),
    logLevel,
    jwksRefreshMs: positive(ENV.jwksRefreshSeconds, DEFAULTS.jwksRefreshSeconds) * 1000,
    jwksFetchTimeoutMs: positive(ENV.jwksFetchTimeoutSeconds, DEFAULTS.jwksFetchTimeoutSeconds) * 1000,
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
