import { writeFile, rename, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { LocalCaClient, SecretManager } from '../../core/identity/secret-manager.js';
import { FileConfigSource } from '../../core/node-config/file-source.js';
import { parseMeshConfig } from '../../core/node-config/file.js';
import { silentLogger } from '../../core/telemetry/log.js';
import { loadConfig } from '../../ztunnel/config.js';
import { Ztunnel } from '../../ztunnel/ztunnel.js';
import type { Test } from 'tap';
import { closeServer, echoServer } from './net.js';
import { startZtunnelProcess, type Proc } from './proc.js';
import { until } from './until.js';

export interface MeshFixture {
  readonly ca: CertificateAuthority;
  readonly dir: string;
  readonly configPath: string;
  /** ztunnel of node-a (at `${base}.2`) and node-b (at `${base}.3`). */
  readonly a: Ztunnel;
  readonly b: Ztunnel;
  readonly addr: { a: string; b: string };
  /** Each node's config file source: `lastError` says a rewrite was read and rejected (a positive signal to wait on). */
  readonly sources: { a: FileConfigSource; b: FileConfigSource };
  /** Rewrites the config file atomically (as editors and ConfigMap mounts do). */
  writeConfig(cfg: object): Promise<void>;
  /** Resolves once `zt` has loaded a config for which `check` is true. */
  waitForState(zt: Ztunnel, check: (zt: Ztunnel) => boolean, timeoutMs?: number): Promise<void>;
  /** Resolves once both ztunnels hold exactly `cfg` (as parsed from the file `writeConfig(cfg)` writes). */
  waitForConfig(cfg: object, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The two-node config every ztunnel test starts from; `extra` is merged in. */
export function baseConfig(base: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nodes: [
      { name: 'node-a', ztunnelAddress: `${base}.2` },
      { name: 'node-b', ztunnelAddress: `${base}.3` },
    ],
    workloads: [
      { name: 'client', namespace: 'default', serviceAccount: 'client', node: 'node-a', ips: [`${base}.10`], labels: { app: 'client' } },
      { name: 'server', namespace: 'default', serviceAccount: 'server', node: 'node-b', ips: [`${base}.20`], labels: { app: 'server' } },
    ],
    ...extra,
  };
}

/**
 * Two real ztunnels in this process on `${base}.2` and `${base}.3` (loopback), sharing one real
 * CA and one config file. `base` must be unique per test file (e.g. `127.0.1`) so files can run
 * in parallel.
 */
export async function startMesh(opts: {
  dir: string;
  base: string;
  config: object;
  certTtlSeconds?: number;
  env?: Record<string, string>;
  /** Each node's certificate source (default: a secret manager over the mesh CA), e.g. to count CSRs. */
  certificates?: (node: string, ca: CertificateAuthority) => SecretManager;
}): Promise<MeshFixture> {
  // The root is minted as of a day ago so tests can sign already-expired leaves under it.
  const root = await CertificateAuthority.create({ trustDomain: 'cluster.local', now: () => Date.now() - 24 * 3600_000 });
  const ca = await CertificateAuthority.create({
    trustDomain: 'cluster.local',
    rootCertPem: root.rootCertPem,
    rootKeyPem: await root.save(opts.dir).then(() => readFile(join(opts.dir, 'root-key.pem'), 'utf8')),
    ttlSeconds: opts.certTtlSeconds ?? 3600,
  });
  // Saved so tests can mint their own certificates from the mesh root (expired, other domain ...).
  await ca.save(opts.dir);
  const configPath = join(opts.dir, 'mesh.yaml');
  const writeConfig = async (cfg: object) => {
    const tmp = `${configPath}.tmp`;
    await writeFile(tmp, yaml.dump(cfg));
    await rename(tmp, configPath);
  };
  await writeConfig(opts.config);
  const addr = { a: `${opts.base}.2`, b: `${opts.base}.3` };
  const sources = {
    a: new FileConfigSource({ path: configPath, logger: silentLogger }),
    b: new FileConfigSource({ path: configPath, logger: silentLogger }),
  };
  const start = async (node: string, address: string, configSource: FileConfigSource) => {
    const config = loadConfig({
      NODE_NAME: node,
      LOCAL_CONFIG_FILE: configPath,
      CA_ROOT_CERT_FILE: 'unused-in-process',
      CA_ROOT_KEY_FILE: 'unused-in-process',
      ZTUNNEL_ADDRESS: address,
      ADMIN_ADDRESS: address,
      SOCKS5_PORT: '15080',
      OUTBOUND_PORT: '0',
      DRAIN_TIMEOUT_SECONDS: '2',
      ...opts.env,
    });
    return Ztunnel.start({
      config,
      logger: silentLogger,
      configSource,
      certificates: opts.certificates?.(node, ca) ?? new SecretManager({ caClient: new LocalCaClient(ca), logger: silentLogger }),
    });
  };
  const a = await start('node-a', addr.a, sources.a);
  let b: Ztunnel;
  try {
    b = await start('node-b', addr.b, sources.b);
  } catch (err) {
    await a.shutdown();
    throw err;
  }
  return {
    ca,
    dir: opts.dir,
    configPath,
    a,
    b,
    addr,
    sources,
    writeConfig,
    async waitForState(zt, check, timeoutMs = 5000) {
      await until('the config to be reloaded into the expected state', () => check(zt), { timeoutMs });
    },
    async waitForConfig(cfg, timeoutMs = 5000) {
      const want = JSON.stringify(parseMeshConfig(yaml.dump(cfg), configPath));
      await until('both ztunnels to load the config written', () => [a, b].every((zt) => JSON.stringify(zt.state.config) === want), { timeoutMs });
    },
    async close() {
      await Promise.all([a.shutdown(), b.shutdown()]);
    },
  };
}

/** Reads one counter value from a registry's text exposition: the sum of series matching all `labels`. */
export async function counterValue(zt: Ztunnel, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await zt.metrics.registry.getSingleMetric(name)?.get();
  if (!metric) return 0;
  let sum = 0;
  for (const v of metric.values) {
    if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) sum += v.value;
  }
  return sum;
}

/** Standalone ztunnel processes (`dist/ztunnel/main.js`) on one mesh: a CA, its config file, an echo server. */
export interface ZtunnelProcesses {
  readonly dir: string;
  readonly configPath: string;
  /** The environment of a standalone ztunnel of `node` on `address` (SOCKS5 on, capture off), plus `extra`. */
  envFor(node: string, address: string, extra?: Record<string, string>): Record<string, string>;
  /** Starts one; it is killed in teardown. */
  start(node: string, address: string, extra?: Record<string, string>): Proc;
}

/**
 * The set-up the ztunnel process tests share: a CA saved in a test dir, `baseConfig(base)` as the
 * config file, an echo server on `${base}.20:9090`, and every started process killed in teardown.
 *
 * @example
 * const zp = await ztunnelProcesses(t, '127.0.3');
 * const a = zp.start('node-a', '127.0.3.2');
 */
export async function ztunnelProcesses(t: Test, base: string): Promise<ZtunnelProcesses> {
  const dir = t.testdir();
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  await ca.save(dir);
  const configPath = join(dir, 'mesh.yaml');
  await writeFile(configPath, yaml.dump(baseConfig(base)));
  const echo = await echoServer(`${base}.20`, 9090);
  const procs: Proc[] = [];
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    await closeServer(echo.server);
  });
  const envFor = (node: string, address: string, extra: Record<string, string> = {}) => ({
    NODE_NAME: node,
    LOCAL_CONFIG_FILE: configPath,
    CA_ROOT_CERT_FILE: join(dir, 'root-cert.pem'),
    CA_ROOT_KEY_FILE: join(dir, 'root-key.pem'),
    ZTUNNEL_ADDRESS: address,
    ADMIN_ADDRESS: address,
    SOCKS5_PORT: '15080',
    OUTBOUND_PORT: '0',
    LOG_LEVEL: 'info',
    ...extra,
  });
  return {
    dir,
    configPath,
    envFor,
    start(node, address, extra) {
      const p = startZtunnelProcess(envFor(node, address, extra));
      procs.push(p);
      return p;
    },
  };
}
