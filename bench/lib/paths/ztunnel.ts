import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertFiles } from '../certs.js';
import { PrerequisiteMissingError } from '../errors.js';
import { fetchText, sumMetric } from '../metrics.js';
import type { ManagedProcess, ProcessTracker } from '../procs.js';
import { waitForHttpOk } from '../wait.js';
import { which } from '../which.js';
import type { BenchContext, PathDriver, RunningPath } from './types.js';
import { PORTS } from '../../../core/hbone/constants.js';

/** A ztunnel of a benchmark: its node name in the mesh config and the loopback address it binds. */
export interface ZtunnelNode {
  readonly name: string;
  readonly address: string;
}

/** The two ztunnels: A serves the client's node, B the server's. */
const NODES = [
  { name: 'node-a', address: '127.0.0.2' },
  { name: 'node-b', address: '127.0.0.3' },
] as const;
/** Counter whose growth proves the bytes went through the ztunnels. */
export const BYTES_METRIC = 'istio_tcp_received_bytes_total';

/**
 * client → ztunnel A (SOCKS5 on 127.0.0.2:15080) → HBONE → ztunnel B (127.0.0.3:15008) → server.
 * The clients stay native and reach SOCKS5 through `proxychains4` (LD_PRELOAD on connect()).
 */
export const ztunnel: PathDriver = {
  name: 'ztunnel',
  description: 'client -> proxychains4 -> ztunnel A (SOCKS5) -> HBONE -> ztunnel B (15008) -> server',
  start: startZtunnelPair,
};

async function startZtunnelPair(ctx: BenchContext): Promise<RunningPath> {
  await requireZtunnelBuild(ctx.ztunnelEntry);
  if (!(await which('proxychains4'))) {
    throw new PrerequisiteMissingError('proxychains4', 'apt-get install proxychains4');
  }
  const configFile = join(ctx.dir, 'ztunnel-config.yaml');
  await writeFile(configFile, localConfigYaml(ctx.origin.iperf.host));
  const chainConf = join(ctx.dir, 'proxychains.conf');
  await writeFile(chainConf, proxychainsConf(NODES[0].address, PORTS.socks5));
  const started: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(started.map((p) => ctx.procs.stop(p)));
  };
  try {
    for (const node of [NODES[1], NODES[0]]) {
      await startZtunnel(ctx.procs, { node, entry: ctx.ztunnelEntry, configFile, certs: ctx.certs, started });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    launcher: { prefix: ['proxychains4', '-q', '-f', chainConf] },
    // The clients dial the server itself; proxychains hands the connect() to ztunnel A.
    iperf: ctx.origin.iperf,
    http: ctx.origin.http,
    proxies: started,
    countedBytes,
    stop,
  };
}

/** Options of {@link startZtunnel}. */
export interface StartZtunnelOpts {
  readonly node: ZtunnelNode;
  /** `dist/ztunnel/main.js`, started with `node`. */
  readonly entry: string;
  /** The file-based mesh config both ztunnels of a run share. */
  readonly configFile: string;
  /** The mesh root the ztunnel signs its workloads' certificates with. */
  readonly certs: Pick<CertFiles, 'caCert' | 'caKey'>;
  /** The process is pushed here as soon as it runs, so the caller stops it even when readiness fails. */
  readonly started: ManagedProcess[];
}

/**
 * Starts one standalone ztunnel process (SOCKS5 on, eBPF capture off, admin and stats on its own
 * address) and waits until `/healthz/ready` answers 200.
 *
 * @example
 * await startZtunnel(procs, { node: { name: 'node-b', address: '127.0.0.3' }, entry, configFile, certs, started });
 */
export async function startZtunnel(procs: ProcessTracker, opts: StartZtunnelOpts): Promise<ManagedProcess> {
  const { node } = opts;
  const proc = await procs.start(`ztunnel ${node.name}`, process.execPath, [opts.entry], {
    env: ztunnelEnv(opts),
  });
  opts.started.push(proc);
  await waitForHttpOk(`http://${node.address}:${PORTS.readiness}/healthz/ready`, { timeoutMs: 30_000, process: proc });
  return proc;
}

/** The environment contract of `dist/ztunnel/main.js` for one node. */
function ztunnelEnv({ node, configFile, certs }: StartZtunnelOpts): Record<string, string> {
  return {
    NODE_NAME: node.name,
    LOCAL_CONFIG_FILE: configFile,
    CA_ROOT_CERT_FILE: certs.caCert,
    CA_ROOT_KEY_FILE: certs.caKey,
    TRUST_DOMAIN: 'cluster.local',
    ZTUNNEL_ADDRESS: node.address,
    // Admin and stats on the node's own address, so two ztunnels fit on one host.
    ADMIN_ADDRESS: node.address,
    STATS_ADDRESS: node.address,
    SOCKS5_PORT: String(PORTS.socks5),
    // 0 disables the eBPF capture listener; there is no redirection on this host.
    OUTBOUND_PORT: '0',
    LOG_LEVEL: 'warn',
  };
}

/**
 * The file-based mesh config. On loopback, connections to 127.0.0.x leave from 127.0.0.1, so
 * that is the client workload's IP.
 */
export function localConfigYaml(serverIp: string): string {
  return [
    'nodes:',
    ...NODES.map((n) => `  - {name: ${n.name}, ztunnelAddress: ${n.address}}`),
    'workloads:',
    '  - {name: client, namespace: bench, serviceAccount: client, node: node-a, ips: [127.0.0.1], protocol: HBONE}',
    `  - {name: server, namespace: bench, serviceAccount: server, node: node-b, ips: [${serverIp}], protocol: HBONE}`,
    '',
  ].join('\n');
}

/**
 * proxychains-ng config: every TCP connect() goes to the SOCKS5 proxy. No `localnet` exclusions,
 * and strict_chain, so a connection either goes through the ztunnel or fails; it cannot bypass it.
 */
export function proxychainsConf(socksHost: string, socksPort: number): string {
  return [
    'strict_chain',
    'quiet_mode',
    'tcp_read_time_out 15000',
    'tcp_connect_time_out 8000',
    '[ProxyList]',
    `socks5 ${socksHost} ${socksPort}`,
    '',
  ].join('\n');
}

/** Sum of the bytes counter over both ztunnels; undefined when neither exposes it. */
async function countedBytes(): Promise<number | undefined> {
  const pages = await Promise.all(NODES.map((n) => fetchText(`http://${n.address}:${PORTS.metrics}/metrics`)));
  const sums = pages.map((p) => (p === undefined ? undefined : sumMetric(p, BYTES_METRIC)));
  return sums.every((s) => s === undefined) ? undefined : sums.reduce<number>((a, s) => a + (s ?? 0), 0);
}

/** Fails with a message saying how to build when the ztunnel entry point is not there. */
export async function requireZtunnelBuild(entry: string): Promise<void> {
  try {
    await access(entry);
  } catch {
    throw new PrerequisiteMissingError(`the ztunnel build (${entry})`, 'run `npm run build` once ztunnel/main.ts exists');
  }
}
