import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PrerequisiteMissingError } from '../errors.js';
import { fetchText, sumMetric } from '../metrics.js';
import type { ManagedProcess } from '../procs.js';
import { waitForHttpOk } from '../wait.js';
import { which } from '../which.js';
import type { BenchContext, PathDriver, RunningPath } from './types.js';

/** The two ztunnels: A serves the client's node, B the server's. */
const NODES = [
  { name: 'node-a', address: '127.0.0.2' },
  { name: 'node-b', address: '127.0.0.3' },
] as const;
/** Explicit-proxy port (SOCKS5) of the ztunnel; see the port table in the architecture doc. */
export const SOCKS5_PORT = 15080;
const METRICS_PORT = 15020;
const READY_PORT = 15021;
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
  await requireFile(ctx.ztunnelEntry, 'the ztunnel build', 'run `npm run build` once ztunnel/main.ts exists');
  if (!(await which('proxychains4'))) {
    throw new PrerequisiteMissingError('proxychains4', 'apt-get install proxychains4');
  }
  const configFile = join(ctx.dir, 'ztunnel-config.yaml');
  await writeFile(configFile, localConfigYaml(ctx.origin.iperf.host));
  const chainConf = join(ctx.dir, 'proxychains.conf');
  await writeFile(chainConf, proxychainsConf(NODES[0].address, SOCKS5_PORT));
  const started: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(started.map((p) => ctx.procs.stop(p)));
  };
  try {
    for (const node of [NODES[1], NODES[0]]) {
      const proc = await ctx.procs.start(`ztunnel ${node.name}`, process.execPath, [ctx.ztunnelEntry], {
        env: ztunnelEnv(ctx, node, configFile),
      });
      started.push(proc);
      await waitForHttpOk(`http://${node.address}:${READY_PORT}/healthz/ready`, { timeoutMs: 30_000, process: proc });
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

/** The environment contract of `dist/ztunnel/main.js` for one node. */
function ztunnelEnv(
  ctx: BenchContext,
  node: (typeof NODES)[number],
  configFile: string,
): Record<string, string> {
  return {
    NODE_NAME: node.name,
    LOCAL_CONFIG_FILE: configFile,
    CA_ROOT_CERT_FILE: ctx.certs.caCert,
    CA_ROOT_KEY_FILE: ctx.certs.caKey,
    TRUST_DOMAIN: 'cluster.local',
    ZTUNNEL_ADDRESS: node.address,
    // Admin and stats on the node's own address, so two ztunnels fit on one host.
    ADMIN_ADDRESS: node.address,
    STATS_ADDRESS: node.address,
    SOCKS5_PORT: String(SOCKS5_PORT),
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
  const pages = await Promise.all(NODES.map((n) => fetchText(`http://${n.address}:${METRICS_PORT}/metrics`)));
  const sums = pages.map((p) => (p === undefined ? undefined : sumMetric(p, BYTES_METRIC)));
  return sums.every((s) => s === undefined) ? undefined : sums.reduce<number>((a, s) => a + (s ?? 0), 0);
}

async function requireFile(file: string, what: string, fix: string): Promise<void> {
  try {
    await access(file);
  } catch {
    throw new PrerequisiteMissingError(`${what} (${file})`, fix);
  }
}
