/**
 * The control plane's configuration, from an environment record (the only place it reads the
 * environment): every problem is collected before failing, then cross-field rules, then frozen.
 * docs/control-plane.md lists the variables.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../core/errors.js';
import { PORTS } from '../core/hbone/constants.js';
import { TRUST_DOMAIN_RE } from '../core/kube/names.js';
import { parseHostPort } from '../core/discovery/wire.js';
import { DEFAULT_WAYPOINT_RESOURCES, parseContainerResources, type ContainerResources } from './kubernetes/resources.js';

/** Environment variable names. */
export const ENV = {
  configSource: 'CONFIG_SOURCE',
  manifests: 'MANIFESTS_PATH',
  manifestsDebounceMs: 'MANIFESTS_DEBOUNCE_MS',
  nodesFile: 'NODES_FILE',
  caCertFile: 'CA_CERT_FILE',
  caKeyFile: 'CA_KEY_FILE',
  caChainFile: 'CA_CERT_CHAIN_FILE',
  trustBundleFile: 'TRUST_BUNDLE_FILE',
  trustDomain: 'TRUST_DOMAIN',
  rootNamespace: 'ROOT_NAMESPACE',
  address: 'LISTEN_ADDRESS',
  port: 'CONTROL_PLANE_PORT',
  adminAddress: 'ADMIN_ADDRESS',
  adminPort: 'ADMIN_PORT',
  statsAddress: 'STATS_ADDRESS',
  metricsPort: 'METRICS_PORT',
  readinessPort: 'READINESS_PORT',
  certTtlSeconds: 'WORKLOAD_CERT_TTL_SECONDS',
  historySize: 'DISCOVERY_HISTORY',
  slowClientSeconds: 'SLOW_CLIENT_TIMEOUT_SECONDS',
  logLevel: 'LOG_LEVEL',
  // CONFIG_SOURCE=kubernetes only:
  kubeconfig: 'KUBECONFIG',
  podName: 'POD_NAME',
  podNamespace: 'POD_NAMESPACE',
  leaderElectionNamespace: 'LEADER_ELECTION_NAMESPACE',
  leaderElectionLease: 'LEADER_ELECTION_LEASE',
  ztunnelNamespace: 'ZTUNNEL_NAMESPACE',
  ztunnelServiceAccount: 'ZTUNNEL_SERVICE_ACCOUNT',
  tokenAudience: 'TOKEN_AUDIENCE',
  waypointImage: 'WAYPOINT_IMAGE',
  waypointImagePullPolicy: 'WAYPOINT_IMAGE_PULL_POLICY',
  waypointResources: 'WAYPOINT_RESOURCES',
  serviceAddress: 'CONTROL_PLANE_SERVICE_ADDRESS',
} as const;

/** Where the objects and the node list come from. */
export type ConfigSourceKind = 'files' | 'kubernetes';

/** `CONFIG_SOURCE=kubernetes`: the API server and what the control plane needs to know of the cluster. */
export interface KubernetesSettings {
  /** A kubeconfig file; absent: the pod's own service account (in-cluster). */
  readonly kubeconfig?: string;
  /** This replica's name: its identity in the leader-election Lease. */
  readonly podName: string;
  readonly podNamespace: string;
  readonly leaderElectionNamespace: string;
  readonly leaderElectionLease: string;
  /** The ztunnel DaemonSet's namespace and service account: what a node credential looks like. */
  readonly ztunnelNamespace: string;
  readonly ztunnelServiceAccount: string;
  /** The audience TokenReview checks tokens against (the charts project tokens for it). */
  readonly tokenAudience: string;
  /** The image waypoint Deployments run; unset: no waypoint is deployed (Gateways say why). */
  readonly waypointImage?: string;
  readonly waypointImagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** Requests and limits of the waypoint container (JSON; unset: Istio's waypoint defaults, `{}`: none). */
  readonly waypointResources: ContainerResources;
  /** `host:port` pods reach the control plane at (its Service), written into waypoint Deployments. */
  readonly serviceAddress: string;
}

export interface ControlPlaneConfig {
  readonly configSource: ConfigSourceKind;
  /** `files`: a manifest file, or a directory of them (read recursively: *.yaml, *.yml, *.json); '' otherwise. */
  readonly manifestsPath: string;
  /** Quiet time after a change under the manifests path before it is read (writers save in steps). */
  readonly manifestsDebounceMs: number;
  /** `files`: the node list with per-node tokens; '' otherwise. */
  readonly nodesFile: string;
  /** Set with `CONFIG_SOURCE=kubernetes`. */
  readonly kubernetes?: KubernetesSettings;
  readonly caCertFile: string;
  readonly caKeyFile: string;
  readonly caChainFile?: string;
  readonly trustBundleFile?: string;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly address: string;
  /** CA + discovery (TLS, HTTP/2); 0 picks a free port (tests). */
  readonly port: number;
  readonly adminAddress: string;
  readonly adminPort: number;
  readonly statsAddress: string;
  readonly metricsPort: number;
  readonly readinessPort: number;
  /** Lifetime of workload certificates, and the most a client may ask for. */
  readonly certTtlSeconds: number;
  readonly historySize: number;
  readonly slowClientTimeoutMs: number;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';
}

const DEFAULTS = {
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  // Coalesces one save (truncate + write, or write + rename) into one read; short enough to feel instant.
  manifestsDebounceMs: 100,
  // Proxies on every node connect here.
  address: '0.0.0.0',
  // Debug endpoints list proxies and object problems: local only, as ztunnel's admin.
  adminAddress: '127.0.0.1',
  // Istio's default workload certificate lifetime.
  certTtlSeconds: 24 * 3600,
  // Enough for a proxy that missed a few minutes of steady changes to resume without a snapshot;
  // older versions get a snapshot, which is always correct.
  historySize: 100,
  // A proxy that has not read its stream for this long is stuck; dropping it frees its buffer
  // and it resyncs on reconnect.
  slowClientSeconds: 30,
  logLevel: 'info',
  configSource: 'files',
  // Istio's names: the chart's Lease, the ztunnel DaemonSet's account, istiod's token audience.
  leaderElectionLease: 'ambient-control-plane',
  ztunnelServiceAccount: 'ztunnel',
  tokenAudience: 'istio-ca',
} as const;

const CONFIG_SOURCES: readonly ConfigSourceKind[] = ['files', 'kubernetes'];

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

/** Builds the configuration from an environment record. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): ControlPlaneConfig {
  const problems: string[] = [];
  const str = (name: string, fallback?: string): string => {
    const v = env[name];
    if (v === undefined || v === '') {
      if (fallback === undefined) problems.push(`${name} is required`);
      return fallback ?? '';
    }
    return v;
  };
  const opt = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const port = (name: string, fallback: number): number => {
    const v = env[name];
    if (v === undefined || v === '') return fallback;
    if (!/^\d+$/.test(v) || Number(v) > 65535) {
      problems.push(`${name}=${JSON.stringify(v)} is not a port (0 to disable or pick a free one, or 1-65535)`);
      return fallback;
    }
    return Number(v);
  };
  const ip = (name: string, fallback: string): string => {
    const v = str(name, fallback);
    if (isIP(v) === 0) problems.push(`${name}=${JSON.stringify(v)} is not an IPv4 or IPv6 address`);
    return v;
  };
  const positive = (name: string, fallback: number, integer = false): number => {
    const v = env[name];
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
      problems.push(`${name}=${JSON.stringify(v)} is not a positive ${integer ? 'integer' : 'number'}`);
      return fallback;
    }
    return n;
  };
  const logLevel = str(ENV.logLevel, DEFAULTS.logLevel);
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) problems.push(`${ENV.logLevel}=${JSON.stringify(logLevel)} is not one of ${LOG_LEVELS.join(', ')}`);
  const trustDomain = str(ENV.trustDomain, DEFAULTS.trustDomain);
  if (!TRUST_DOMAIN_RE.test(trustDomain)) problems.push(`${ENV.trustDomain}=${JSON.stringify(trustDomain)} may only hold lowercase letters, digits, '.', '-' and '_'`);
  const address = ip(ENV.address, DEFAULTS.address);
  const configSource = str(ENV.configSource, DEFAULTS.configSource) as ConfigSourceKind;
  if (!CONFIG_SOURCES.includes(configSource)) problems.push(`${ENV.configSource}=${JSON.stringify(configSource)} is not one of ${CONFIG_SOURCES.join(', ')}`);
  const kube = configSource === 'kubernetes';
  if (kube) {
    for (const name of [ENV.manifests, ENV.nodesFile]) {
      if (opt(name) !== undefined) problems.push(`${name} is for ${ENV.configSource}=files; with kubernetes, objects and nodes come from the api server (unset it)`);
    }
  }
  const rootNamespace = str(ENV.rootNamespace, DEFAULTS.rootNamespace);
  let kubernetes: KubernetesSettings | undefined;
  if (kube) {
    const podNamespace = str(ENV.podNamespace, rootNamespace);
    const kubeconfig = opt(ENV.kubeconfig);
    const waypointImage = opt(ENV.waypointImage);
    const pullPolicy = opt(ENV.waypointImagePullPolicy);
    if (pullPolicy !== undefined && !['Always', 'IfNotPresent', 'Never'].includes(pullPolicy)) {
      problems.push(`${ENV.waypointImagePullPolicy}=${JSON.stringify(pullPolicy)} is not one of Always, IfNotPresent, Never`);
    }
    const waypointResources = opt(ENV.waypointResources) === undefined ? DEFAULT_WAYPOINT_RESOURCES : parseContainerResources(ENV.waypointResources, env[ENV.waypointResources]!, problems);
    const serviceAddress = str(ENV.serviceAddress, `istiod.${podNamespace}.svc:${PORTS.controlPlane}`);
    if (!/:\d+$/.test(serviceAddress) || !parseHostPort(serviceAddress)) problems.push(`${ENV.serviceAddress}=${JSON.stringify(serviceAddress)} is not host:port with a port 1-65535 (e.g. istiod.istio-system.svc:15012)`);
    kubernetes = Object.freeze({
      ...(kubeconfig !== undefined ? { kubeconfig } : {}),
      ...(waypointImage !== undefined ? { waypointImage } : {}),
      ...(pullPolicy !== undefined ? { waypointImagePullPolicy: pullPolicy as 'Always' | 'IfNotPresent' | 'Never' } : {}),
      waypointResources,
      serviceAddress,
      podName: str(ENV.podName),
      podNamespace,
      leaderElectionNamespace: str(ENV.leaderElectionNamespace, podNamespace),
      leaderElectionLease: str(ENV.leaderElectionLease, DEFAULTS.leaderElectionLease),
      ztunnelNamespace: str(ENV.ztunnelNamespace, podNamespace),
      ztunnelServiceAccount: str(ENV.ztunnelServiceAccount, DEFAULTS.ztunnelServiceAccount),
      tokenAudience: str(ENV.tokenAudience, DEFAULTS.tokenAudience),
    });
  }
  const caChainFile = opt(ENV.caChainFile);
  const trustBundleFile = opt(ENV.trustBundleFile);
  const cfg: ControlPlaneConfig = {
    configSource,
    manifestsPath: kube ? '' : str(ENV.manifests),
    manifestsDebounceMs: positive(ENV.manifestsDebounceMs, DEFAULTS.manifestsDebounceMs, true),
    nodesFile: kube ? '' : str(ENV.nodesFile),
    ...(kubernetes ? { kubernetes } : {}),
    caCertFile: str(ENV.caCertFile),
    caKeyFile: str(ENV.caKeyFile),
    ...(caChainFile !== undefined ? { caChainFile } : {}),
    ...(trustBundleFile !== undefined ? { trustBundleFile } : {}),
    trustDomain,
    rootNamespace,
    address,
    port: port(ENV.port, PORTS.controlPlane),
    adminAddress: ip(ENV.adminAddress, DEFAULTS.adminAddress),
    adminPort: port(ENV.adminPort, PORTS.admin),
    // Defaults to the listen address, reported once when that is bad.
    statsAddress: opt(ENV.statsAddress) === undefined ? address : ip(ENV.statsAddress, address),
    metricsPort: port(ENV.metricsPort, PORTS.metrics),
    readinessPort: port(ENV.readinessPort, PORTS.readiness),
    certTtlSeconds: positive(ENV.certTtlSeconds, DEFAULTS.certTtlSeconds),
    historySize: positive(ENV.historySize, DEFAULTS.historySize, true),
    slowClientTimeoutMs: positive(ENV.slowClientSeconds, DEFAULTS.slowClientSeconds) * 1000,
    logLevel: logLevel as ControlPlaneConfig['logLevel'],
  };
  if (cfg.statsAddress === cfg.address) {
    const bound = [cfg.port, cfg.metricsPort, cfg.readinessPort].filter((p) => p !== 0);
    if (new Set(bound).size !== bound.length) problems.push(`${ENV.port}, ${ENV.metricsPort} and ${ENV.readinessPort} must differ (they share ${address})`);
  }
  if (problems.length > 0) throw new ConfigError('the environment', problems);
  return Object.freeze(cfg);
}
