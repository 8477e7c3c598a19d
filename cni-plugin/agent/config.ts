/**
 * The node agent's configuration, from an environment record: every problem collected, then the
 * rules across variables, then frozen. `process.env` is read nowhere else (main.ts passes it in).
 */
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { ConfigError } from '../../core/errors.js';
import { parseCidr } from '../../core/model/ip.js';
import { PORTS } from '../../core/hbone/constants.js';
import { DEFAULT_AGENT_SOCKET, MAX_SOCKET_PATH } from '../cni/spec.js';
import { CONTROL_PLANE_ENV, readSourceMode, type ControlPlaneSettings } from '../../core/node-config/control-plane.js';
import { EnvReader } from '../../core/node-config/env.js';
import { KUBELET_CGROUP_ROOT_AUTO } from './cgroup.js';

export { KUBELET_CGROUP_ROOT_AUTO };

export const ENV = Object.freeze({
  nodeName: 'NODE_NAME',
  socket: 'AGENT_SOCKET',
  stateFile: 'STATE_FILE',
  desiredStateFile: 'DESIRED_STATE_FILE',
  pinDir: 'PIN_DIR',
  ztunnelIp: 'ZTUNNEL_IP',
  outboundPort: 'OUTBOUND_PORT',
  ztunnelCgroup: 'ZTUNNEL_CGROUP',
  ztunnelInboundPort: 'ZTUNNEL_INBOUND_PORT',
  ztunnelCheckSeconds: 'ZTUNNEL_CHECK_INTERVAL_SECONDS',
  procRoot: 'PROC_ROOT',
  nodeIps: 'NODE_IPS',
  excludeCidrs: 'EXCLUDE_CIDRS',
  excludePorts: 'EXCLUDE_PORTS',
  cgroupRoot: 'CGROUP_ROOT',
  cgroupDriver: 'CGROUP_DRIVER',
  cgroupTemplate: 'CGROUP_TEMPLATE',
  kubeletCgroupRoot: 'KUBELET_CGROUP_ROOT',
  addWaitSeconds: 'ADD_WAIT_SECONDS',
  exemptNamespaces: 'EXEMPT_NAMESPACES',
  rootNamespace: 'ROOT_NAMESPACE',
  resyncSeconds: 'RESYNC_INTERVAL_SECONDS',
  stateAddress: 'STATE_ADDRESS',
  statePort: 'STATE_PORT',
  bpftool: 'BPFTOOL',
  logLevel: 'LOG_LEVEL',
  trustDomain: 'TRUST_DOMAIN',
  controlPlaneAddress: CONTROL_PLANE_ENV.address,
  nodeTokenFile: CONTROL_PLANE_ENV.tokenFile,
  controlPlaneRootCertFile: CONTROL_PLANE_ENV.rootCertFile,
  controlPlaneIdentity: CONTROL_PLANE_ENV.identity,
  cniBinDir: 'CNI_BIN_DIR',
  cniConfDir: 'CNI_CONF_DIR',
  cniCheckSeconds: 'CNI_CONF_CHECK_SECONDS',
  uninstallOnExit: 'UNINSTALL_ON_EXIT',
} as const);

/** What a stopping agent removes: nothing (an upgrade), the CNI plugin, or also every program. */
export type UninstallOnExit = 'none' | 'cni' | 'all';
const UNINSTALL_MODES: readonly UninstallOnExit[] = ['none', 'cni', 'all'];

/** ZTUNNEL_CGROUP's value that finds ztunnel through /proc instead of a fixed path. */
export const ZTUNNEL_CGROUP_AUTO = 'auto';

export type CgroupDriver = 'systemd' | 'cgroupfs' | 'template';
const DRIVERS: readonly CgroupDriver[] = ['systemd', 'cgroupfs', 'template'];
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

export interface AgentConfig {
  readonly nodeName: string;
  /** Where the plugin reaches the agent (root-only, mode 0600). */
  readonly socket: string;
  /** Enrolment records, so a restarted agent knows what it did. */
  readonly stateFile: string;
  /** '' when the desired state comes from the control plane. */
  readonly desiredStateFile: string;
  /** Set when CONTROL_PLANE_ADDRESS is: the desired state comes from the discovery stream. */
  readonly controlPlane?: ControlPlaneSettings;
  readonly trustDomain: string;
  /** Set: install the plugin into this dir (the host's /opt/cni/bin as mounted) and keep it chained. */
  readonly cniBinDir: string | undefined;
  /** The host's CNI conf dir as mounted; set exactly when cniBinDir is. */
  readonly cniConfDir: string | undefined;
  readonly cniCheckIntervalMs: number;
  readonly uninstallOnExit: UninstallOnExit;
  readonly pinDir: string;
  readonly ztunnelIp: string;
  readonly outboundPort: number;
  /**
   * The ztunnel's cgroup (absolute): gets the getsockname hooks, and is never enrolled. Or
   * `auto`: every cgroup holding a process that listens on ztunnelIp:outboundPort or
   * ztunnelIp:ztunnelInboundPort, re-resolved every `ztunnelCheckIntervalMs` (ztunnel-finder.ts).
   */
  readonly ztunnelCgroup: string | typeof ZTUNNEL_CGROUP_AUTO;
  /** With `auto`: ztunnel's HBONE port, also looked for (0: the outbound port only). */
  readonly ztunnelInboundPort: number;
  readonly ztunnelCheckIntervalMs: number;
  /** Where procfs is mounted (the host's, with hostPID). */
  readonly procRoot: string;
  /** undefined: every non-loopback address of the agent's network namespace at start. */
  readonly nodeIps: readonly string[] | undefined;
  readonly excludeCidrs: readonly string[];
  readonly excludePorts: readonly number[];
  /** undefined: the first cgroup2 mount. */
  readonly cgroupRoot: string | undefined;
  readonly cgroupDriver: CgroupDriver;
  readonly cgroupTemplate: string | undefined;
  /**
   * kubelet's `cgroupRoot` as a cgroup path (`/amc-node-1`), or `auto`: read from the agent's own
   * cgroup at start (cgroup.ts resolveKubeletCgroupRoot). Used by the cgroupfs and systemd drivers.
   */
  readonly kubeletCgroupRoot: string | typeof KUBELET_CGROUP_ROOT_AUTO;
  /**
   * How long a CNI ADD for a pod the desired state does not list waits for it to be listed
   * before deciding from what is known; 0: decide at once.
   */
  readonly addWaitMs: number;
  readonly exemptNamespaces: readonly string[];
  readonly rootNamespace: string;
  readonly resyncIntervalMs: number;
  readonly stateAddress: string;
  /** 0: the state is served on the Unix socket only. */
  readonly statePort: number;
  readonly bpftool: string;
  readonly logLevel: (typeof LOG_LEVELS)[number];
}

export const DEFAULTS = Object.freeze({
  socket: DEFAULT_AGENT_SOCKET,
  // Under /var/run: a reboot clears it, and a reboot also ends every pod it describes.
  stateFile: '/var/run/ambient/agent-state.json',
  // Istio's ports.
  outboundPort: PORTS.outbound,
  ztunnelInboundPort: PORTS.hbone,
  // With ZTUNNEL_CGROUP=auto, a rolling update of ztunnel leaves new redirected connections
  // failing until the new ztunnel is hooked: this bounds that part of the gap. Each check reads
  // /proc/net/tcp{,6} only; the processes are walked only when the listening sockets changed.
  ztunnelCheckSeconds: 1,
  procRoot: '/proc',
  // kubelet's default driver on systemd hosts (and the one kubeadm configures).
  cgroupDriver: 'systemd' as CgroupDriver,
  // Every node of a chart may have its own kubelet cgroupRoot; the agent, a pod of that kubelet, can tell.
  kubeletCgroupRoot: KUBELET_CGROUP_ROOT_AUTO as string,
  // A pod created right after its namespace was labelled, or a waypoint (never enrolled), can reach
  // ADD before the desired state lists it; deciding from stale facts enrols wrongly or not at all.
  // Bounded so an ADD never hangs on a desired state that does not come.
  addWaitSeconds: 10,
  // The mesh's own pods and the cluster's system pods: enrolling them would loop ztunnel into itself.
  exemptNamespaces: ['istio-system', 'kube-system'],
  rootNamespace: 'istio-system',
  // Events (CNI calls, desired-state changes) act at once; the resync only repairs drift, such as
  // programs detached by someone else or a cgroup that appeared late.
  resyncSeconds: 30,
  // The state is read-only but lists every pod of the node: local only.
  stateAddress: '127.0.0.1',
  logLevel: 'info',
  trustDomain: 'cluster.local',
  // fs.watch misses changes on some volume types; this bounds how long our entry can stay out.
  cniCheckSeconds: 10,
  // Stopping is usually a restart or an upgrade: enrolled pods must stay enrolled.
  uninstallOnExit: 'none' as UninstallOnExit,
});

/** Pin dir of a node's programs, as the brief lays it out: /sys/fs/bpf/<mesh>/<node>. */
export function defaultPinDir(nodeName: string): string {
  return join('/sys/fs/bpf/ambient', nodeName);
}

/**
 * @throws ConfigError naming every bad variable.
 *
 * @example
 * loadConfig({ NODE_NAME: 'node-a', ZTUNNEL_IP: '10.0.0.1', ZTUNNEL_CGROUP: '/sys/fs/cgroup/ztunnel', DESIRED_STATE_FILE: '/etc/ambient/desired.yaml' })
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): AgentConfig {
  const problems: string[] = [];
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const required = (name: string, what: string): string => {
    const v = get(name);
    if (v === undefined) problems.push(`${name} is required (${what})`);
    return v ?? '';
  };
  const absPath = (name: string, v: string | undefined): string | undefined => {
    if (v !== undefined && v !== '' && !isAbsolute(v)) problems.push(`${name}=${JSON.stringify(v)} is not an absolute path`);
    return v;
  };
  const list = (name: string): string[] | undefined => {
    const v = get(name);
    return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  };
  const port = (name: string, fallback: number, allowZero: boolean): number => {
    const v = get(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n > 65535 || (!allowZero && n === 0)) {
      problems.push(`${name}=${JSON.stringify(v)} is not a port (${allowZero ? '0 to disable, or ' : ''}1-65535)`);
      return fallback;
    }
    return n;
  };

  const nodeName = required(ENV.nodeName, "this node's name, as pods' node field names it");
  const ztunnelIp = required(ENV.ztunnelIp, "the node's ztunnel address, where pods' connections are redirected");
  if (ztunnelIp !== '' && isIP(ztunnelIp) !== 4) problems.push(`${ENV.ztunnelIp}=${JSON.stringify(ztunnelIp)} is not an IPv4 address (redirection is IPv4)`);
  const ztunnelCgroupText = required(ENV.ztunnelCgroup, `the ztunnel's cgroup v2 directory, which gets the getsockname hooks, or ${ZTUNNEL_CGROUP_AUTO} to find it through /proc`);
  if (ztunnelCgroupText !== '' && ztunnelCgroupText !== ZTUNNEL_CGROUP_AUTO && !isAbsolute(ztunnelCgroupText)) {
    problems.push(`${ENV.ztunnelCgroup}=${JSON.stringify(ztunnelCgroupText)} is neither an absolute path nor ${ZTUNNEL_CGROUP_AUTO}`);
  }
  const ztunnelCgroup = ztunnelCgroupText;
  const ztunnelCheckText = get(ENV.ztunnelCheckSeconds);
  let ztunnelCheckSeconds: number = DEFAULTS.ztunnelCheckSeconds;
  if (ztunnelCheckText !== undefined) {
    const n = Number(ztunnelCheckText);
    if (!Number.isFinite(n) || n <= 0) problems.push(`${ENV.ztunnelCheckSeconds}=${JSON.stringify(ztunnelCheckText)} is not a positive number`);
    else ztunnelCheckSeconds = n;
  }
  const procRoot = absPath(ENV.procRoot, get(ENV.procRoot)) ?? DEFAULTS.procRoot;
  const trustDomain = get(ENV.trustDomain) ?? DEFAULTS.trustDomain;
  // Two sources of the desired state: the control plane when its address is set, else a file.
  const envReader = new EnvReader(env);
  const mode = readSourceMode(envReader, env, trustDomain, [ENV.desiredStateFile]);
  const controlPlane = mode.controlPlane;
  const desiredStateFile = controlPlane ? '' : (absPath(ENV.desiredStateFile, required(ENV.desiredStateFile, `the file listing namespaces, pods and peer authentications, or set ${ENV.controlPlaneAddress}; see docs/cni.md`)) ?? '');
  if (controlPlane) {
    absPath(ENV.nodeTokenFile, controlPlane.tokenFile);
    absPath(ENV.controlPlaneRootCertFile, controlPlane.rootCertFile);
  }
  const cniBinDir = absPath(ENV.cniBinDir, get(ENV.cniBinDir));
  const cniConfDir = absPath(ENV.cniConfDir, get(ENV.cniConfDir));
  if ((cniBinDir === undefined) !== (cniConfDir === undefined)) {
    problems.push(`${ENV.cniBinDir} and ${ENV.cniConfDir} go together (the host's /opt/cni/bin and /etc/cni/net.d as mounted); set both to install the plugin, or neither`);
  }
  const uninstallText = get(ENV.uninstallOnExit) ?? DEFAULTS.uninstallOnExit;
  if (!(UNINSTALL_MODES as readonly string[]).includes(uninstallText)) problems.push(`${ENV.uninstallOnExit}=${JSON.stringify(uninstallText)} is not one of ${UNINSTALL_MODES.join(', ')}`);
  const cniCheckText = get(ENV.cniCheckSeconds);
  let cniCheckSeconds: number = DEFAULTS.cniCheckSeconds;
  if (cniCheckText !== undefined) {
    const n = Number(cniCheckText);
    if (!Number.isFinite(n) || n <= 0) problems.push(`${ENV.cniCheckSeconds}=${JSON.stringify(cniCheckText)} is not a positive number`);
    else cniCheckSeconds = n;
  }
  const socket = absPath(ENV.socket, get(ENV.socket)) ?? DEFAULTS.socket;
  const stateFile = absPath(ENV.stateFile, get(ENV.stateFile)) ?? DEFAULTS.stateFile;
  const pinDir = absPath(ENV.pinDir, get(ENV.pinDir)) ?? (nodeName ? defaultPinDir(nodeName) : '');
  const cgroupRoot = absPath(ENV.cgroupRoot, get(ENV.cgroupRoot));

  const nodeIps = list(ENV.nodeIps);
  nodeIps?.forEach((ip) => {
    if (isIP(ip) === 0) problems.push(`${ENV.nodeIps}: ${JSON.stringify(ip)} is not an IP address`);
  });
  const excludeCidrs = list(ENV.excludeCidrs) ?? [];
  for (const c of excludeCidrs) if (!parseCidr(c)) problems.push(`${ENV.excludeCidrs}: ${JSON.stringify(c)} is not a CIDR (addr/len) or an address`);
  const excludePorts: number[] = [];
  for (const p of list(ENV.excludePorts) ?? []) {
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535) problems.push(`${ENV.excludePorts}: ${JSON.stringify(p)} is not a port (1-65535)`);
    else excludePorts.push(n);
  }

  const driverText = get(ENV.cgroupDriver) ?? DEFAULTS.cgroupDriver;
  if (!(DRIVERS as readonly string[]).includes(driverText)) problems.push(`${ENV.cgroupDriver}=${JSON.stringify(driverText)} is not one of ${DRIVERS.join(', ')}`);
  const cgroupDriver = driverText as CgroupDriver;
  const cgroupTemplate = get(ENV.cgroupTemplate);
  const kubeletCgroupRoot = get(ENV.kubeletCgroupRoot) ?? DEFAULTS.kubeletCgroupRoot;
  if (kubeletCgroupRoot !== KUBELET_CGROUP_ROOT_AUTO && !isAbsolute(kubeletCgroupRoot)) {
    problems.push(`${ENV.kubeletCgroupRoot}=${JSON.stringify(kubeletCgroupRoot)} is neither an absolute cgroup path (kubelet's cgroupRoot, e.g. /amc-node-1) nor ${KUBELET_CGROUP_ROOT_AUTO}`);
  }
  const addWaitText = get(ENV.addWaitSeconds);
  let addWaitSeconds: number = DEFAULTS.addWaitSeconds;
  if (addWaitText !== undefined) {
    const n = Number(addWaitText);
    if (!Number.isFinite(n) || n < 0) problems.push(`${ENV.addWaitSeconds}=${JSON.stringify(addWaitText)} is not a number of seconds (0 to decide at once)`);
    else addWaitSeconds = n;
  }

  const resyncText = get(ENV.resyncSeconds);
  let resyncSeconds: number = DEFAULTS.resyncSeconds;
  if (resyncText !== undefined) {
    const n = Number(resyncText);
    if (!Number.isFinite(n) || n <= 0) problems.push(`${ENV.resyncSeconds}=${JSON.stringify(resyncText)} is not a positive number`);
    else resyncSeconds = n;
  }
  const stateAddress = get(ENV.stateAddress) ?? DEFAULTS.stateAddress;
  if (isIP(stateAddress) === 0) problems.push(`${ENV.stateAddress}=${JSON.stringify(stateAddress)} is not an IP address`);
  const logLevel = get(ENV.logLevel) ?? DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) problems.push(`${ENV.logLevel}=${JSON.stringify(logLevel)} is not one of ${LOG_LEVELS.join(', ')}`);

  const cfg: AgentConfig = {
    nodeName,
    socket,
    stateFile,
    desiredStateFile,
    ...(controlPlane ? { controlPlane } : {}),
    trustDomain,
    cniBinDir,
    cniConfDir,
    cniCheckIntervalMs: cniCheckSeconds * 1000,
    uninstallOnExit: uninstallText as UninstallOnExit,
    pinDir,
    ztunnelIp,
    outboundPort: port(ENV.outboundPort, DEFAULTS.outboundPort, false),
    ztunnelCgroup,
    ztunnelInboundPort: port(ENV.ztunnelInboundPort, DEFAULTS.ztunnelInboundPort, true),
    ztunnelCheckIntervalMs: ztunnelCheckSeconds * 1000,
    procRoot,
    nodeIps: nodeIps ? Object.freeze(nodeIps) : undefined,
    excludeCidrs: Object.freeze(excludeCidrs),
    excludePorts: Object.freeze(excludePorts),
    cgroupRoot,
    cgroupDriver,
    cgroupTemplate,
    kubeletCgroupRoot,
    addWaitMs: addWaitSeconds * 1000,
    exemptNamespaces: Object.freeze(list(ENV.exemptNamespaces) ?? [...DEFAULTS.exemptNamespaces]),
    rootNamespace: get(ENV.rootNamespace) ?? DEFAULTS.rootNamespace,
    resyncIntervalMs: resyncSeconds * 1000,
    stateAddress,
    statePort: port(ENV.statePort, 0, true),
    bpftool: get(ENV.bpftool) ?? 'bpftool',
    logLevel: logLevel as AgentConfig['logLevel'],
  };

  // Across variables.
  if (cgroupDriver === 'template' && cgroupTemplate === undefined) {
    problems.push(`${ENV.cgroupTemplate} is required with ${ENV.cgroupDriver}=template (e.g. "lab/{podUid}")`);
  }
  if (cgroupDriver !== 'template' && cgroupTemplate !== undefined) {
    problems.push(`${ENV.cgroupTemplate} is set but ${ENV.cgroupDriver}=${cgroupDriver} ignores it; set ${ENV.cgroupDriver}=template or unset it`);
  }
  if (cgroupDriver === 'template' && kubeletCgroupRoot !== KUBELET_CGROUP_ROOT_AUTO) {
    problems.push(`${ENV.kubeletCgroupRoot} is set but ${ENV.cgroupDriver}=template ignores it; set ${ENV.cgroupDriver} to kubelet's driver or unset it`);
  }
  if (Buffer.byteLength(cfg.socket) > MAX_SOCKET_PATH) problems.push(`${ENV.socket}=${JSON.stringify(cfg.socket)} is longer than ${MAX_SOCKET_PATH} bytes, the limit of a Unix socket path; choose a shorter one`);
  if (ztunnelCgroup !== ZTUNNEL_CGROUP_AUTO) {
    for (const name of [ENV.ztunnelInboundPort, ENV.ztunnelCheckSeconds]) {
      if (get(name) !== undefined) problems.push(`${name} is set but ${ENV.ztunnelCgroup} is a path, which ignores it; set ${ENV.ztunnelCgroup}=${ZTUNNEL_CGROUP_AUTO} or unset it`);
    }
  }
  if (cfg.socket === cfg.stateFile) problems.push(`${ENV.socket} and ${ENV.stateFile} must differ`);
  problems.push(...envReader.problems);
  if (problems.length > 0) throw new ConfigError('the environment', problems);
  return Object.freeze(cfg);
}
