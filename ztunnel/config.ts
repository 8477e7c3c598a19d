import { EnvReader, LOG_LEVELS, type LogLevel } from '../core/node-config/env.js';
import { PORTS } from '../core/hbone/constants.js';
import { CONTROL_PLANE_ENV, readSourceMode, type ControlPlaneSettings } from '../core/node-config/control-plane.js';

/** Environment variable names; the only place ztunnel reads the environment is `loadConfig`. */
export const ENV = {
  nodeName: 'NODE_NAME',
  localConfigFile: 'LOCAL_CONFIG_FILE',
  caRootCertFile: 'CA_ROOT_CERT_FILE',
  caRootKeyFile: 'CA_ROOT_KEY_FILE',
  controlPlaneAddress: CONTROL_PLANE_ENV.address,
  nodeTokenFile: CONTROL_PLANE_ENV.tokenFile,
  controlPlaneRootCertFile: CONTROL_PLANE_ENV.rootCertFile,
  controlPlaneIdentity: CONTROL_PLANE_ENV.identity,
  trustDomain: 'TRUST_DOMAIN',
  rootNamespace: 'ROOT_NAMESPACE',
  address: 'ZTUNNEL_ADDRESS',
  adminAddress: 'ADMIN_ADDRESS',
  statsAddress: 'STATS_ADDRESS',
  outboundPort: 'OUTBOUND_PORT',
  inboundPort: 'INBOUND_PORT',
  socks5Port: 'SOCKS5_PORT',
  adminPort: 'ADMIN_PORT',
  metricsPort: 'METRICS_PORT',
  readinessPort: 'READINESS_PORT',
  drainSeconds: 'DRAIN_TIMEOUT_SECONDS',
  certTtlSeconds: 'WORKLOAD_CERT_TTL_SECONDS',
  certRetentionSeconds: 'CERT_RETENTION_SECONDS',
  redirectionCheck: 'REDIRECTION_CHECK',
  redirectionWaitSeconds: 'REDIRECTION_WAIT_SECONDS',
  handover: 'HANDOVER',
  handoverTimeoutSeconds: 'HANDOVER_TIMEOUT_SECONDS',
  readyFile: 'READY_FILE',
  logLevel: 'LOG_LEVEL',
} as const;

export interface ZtunnelConfig {
  readonly nodeName: string;
  /**
   * Set when `CONTROL_PLANE_ADDRESS` is: certificates from the control plane's CA, configuration
   * from its discovery stream. Otherwise ztunnel runs standalone on `localConfigFile` and signs
   * with the root in `caRootCertFile`/`caRootKeyFile`.
   */
  readonly controlPlane?: ControlPlaneSettings;
  /** Standalone mode only ('' with a control plane). */
  readonly localConfigFile: string;
  readonly caRootCertFile: string;
  readonly caRootKeyFile: string;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  /** Bind address of the outbound, inbound and SOCKS5 listeners. */
  readonly address: string;
  readonly adminAddress: string;
  readonly statsAddress: string;
  /** 0 disables a listener. */
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly socks5Port: number;
  readonly adminPort: number;
  readonly metricsPort: number;
  readonly readinessPort: number;
  readonly drainTimeoutMs: number;
  readonly certTtlSeconds: number;
  /**
   * How long the certificate of an identity that no meshed workload on this node has any more is
   * kept (and renewed) before it is forgotten (ztunnel/identities.ts).
   */
  readonly certRetentionMs: number;
  /** With outbound capture on: wait for the eBPF getsockname hook on ztunnel's cgroup (`bpftool`), or trust it is there (`off`). */
  readonly redirectionCheck: 'bpftool' | 'off';
  readonly redirectionWaitMs: number;
  /**
   * Rolling-update handover (ztunnel/handover.ts): when a port is taken at start, ask the previous
   * ztunnel on the same address to drain and take over its ports; and, drained through
   * /quitquitquit, stay (not ready, no listeners) until SIGTERM instead of exiting, so the kubelet
   * does not restart this container into a handover of its own.
   */
  readonly handover: boolean;
  readonly handoverTimeoutMs: number;
  /**
   * A file that exists exactly while this process is ready (written when ready, removed when
   * draining). On the host network two ztunnels of a rollout share :15021, so an HTTP probe can be
   * answered by the other one; a file in the pod's own volume cannot (the charts probe it).
   */
  readonly readyFile?: string;
  readonly logLevel: LogLevel;
}

const DEFAULTS = {
  trustDomain: 'cluster.local',
  // Istio's root namespace: policies there without a selector apply mesh-wide.
  rootNamespace: 'istio-system',
  // Node-level proxy: listens on every address of the node, like ztunnel with host networking.
  address: '0.0.0.0',
  // Admin can quit the process and dump config: local only, as in Istio.
  adminAddress: '127.0.0.1',
  // Kubernetes' default terminationGracePeriodSeconds is 30; leave 5 s for the forced close.
  drainSeconds: 25,
  // Istio's default workload certificate lifetime.
  certTtlSeconds: 24 * 3600,
  // Longer than a pod's delete-and-recreate on the node and than a restarted control plane takes
  // to sync its caches (its first snapshots may lack workloads): neither should cost a CSR, or fail
  // a connection while the CA is unreachable. Keeping a certificate a few minutes more costs nothing.
  certRetentionSeconds: 300,
  logLevel: 'info',
  // The node agent may start after ztunnel; give it this long to attach the hooks.
  redirectionWaitSeconds: 60,
  // The previous ztunnel closes its listeners as soon as it is asked; this only bounds a holder
  // that never answers (admin off or elsewhere, not a ztunnel at all).
  handoverTimeoutSeconds: 30,
} as const;


/**
 * Builds the ztunnel configuration from an environment record: collects every problem before
 * failing, applies cross-field rules, then freezes.
 */
export function loadConfig(envRecord: Readonly<Record<string, string | undefined>>): ZtunnelConfig {
  const env = new EnvReader(envRecord);
  const { problems } = env;
  const str = env.str.bind(env);
  const port = env.port.bind(env);
  const ip = env.ip.bind(env);
  const positive = env.positive.bind(env);
  const logLevel = env.oneOf(ENV.logLevel, LOG_LEVELS, DEFAULTS.logLevel);
  const address = ip(ENV.address, DEFAULTS.address);
  const redirectionCheck = env.oneOf(ENV.redirectionCheck, ['bpftool', 'off'] as const, 'bpftool');
  const trustDomain = str(ENV.trustDomain, DEFAULTS.trustDomain);
  // Two modes: the control plane when its address is set, else standalone on local files.
  const mode = readSourceMode(env, envRecord, trustDomain, [ENV.localConfigFile, ENV.caRootCertFile, ENV.caRootKeyFile]);
  const { controlPlane } = mode;
  const standaloneFile = (name: string) => mode.standaloneFile(name);
  const cfg: ZtunnelConfig = {
    nodeName: str(ENV.nodeName),
    ...(controlPlane ? { controlPlane } : {}),
    localConfigFile: standaloneFile(ENV.localConfigFile),
    caRootCertFile: standaloneFile(ENV.caRootCertFile),
    caRootKeyFile: standaloneFile(ENV.caRootKeyFile),
    trustDomain,
    rootNamespace: str(ENV.rootNamespace, DEFAULTS.rootNamespace),
    address,
    adminAddress: ip(ENV.adminAddress, DEFAULTS.adminAddress),
    statsAddress: ip(ENV.statsAddress, address),
    outboundPort: port(ENV.outboundPort, PORTS.outbound),
    inboundPort: port(ENV.inboundPort, PORTS.hbone),
    // SOCKS5 accepts explicit-proxy traffic from anyone who can reach it: off unless asked for.
    socks5Port: port(ENV.socks5Port, 0),
    adminPort: port(ENV.adminPort, PORTS.admin),
    metricsPort: port(ENV.metricsPort, PORTS.metrics),
    readinessPort: port(ENV.readinessPort, PORTS.readiness),
    drainTimeoutMs: positive(ENV.drainSeconds, DEFAULTS.drainSeconds) * 1000,
    certTtlSeconds: positive(ENV.certTtlSeconds, DEFAULTS.certTtlSeconds),
    certRetentionMs: positive(ENV.certRetentionSeconds, DEFAULTS.certRetentionSeconds) * 1000,
    logLevel,
    redirectionCheck,
    redirectionWaitMs: positive(ENV.redirectionWaitSeconds, DEFAULTS.redirectionWaitSeconds) * 1000,
    // Off by default: outside a DaemonSet rolling update, a taken port is a mistake to report, not a process to stop.
    handover: env.oneOf(ENV.handover, ['true', 'false'] as const, 'false') === 'true',
    handoverTimeoutMs: positive(ENV.handoverTimeoutSeconds, DEFAULTS.handoverTimeoutSeconds) * 1000,
    ...(envRecord[ENV.readyFile] ? { readyFile: envRecord[ENV.readyFile] } : {}),
  };
  const bound = [cfg.outboundPort, cfg.inboundPort, cfg.socks5Port].filter((p) => p !== 0);
  if (new Set(bound).size !== bound.length) {
    problems.push(`${ENV.outboundPort}, ${ENV.inboundPort} and ${ENV.socks5Port} must differ (all bind ${address})`);
  }
  env.finish();
  return Object.freeze(cfg);
}
