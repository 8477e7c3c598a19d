/**
 * Control-plane scale: `node dist/bench/control-plane.js [--workloads N] [--services N]
 * [--clients N] [--changes N] [--sign-seconds N] [--json]`.
 *
 * Builds a mesh of `--workloads` pods (default 10,000) behind `--services` services (1,000) on
 * `--clients` nodes (50), plus 100 authorization policies, as manifests on disk, and measures:
 *
 * 1. In-process control plane, `--clients` in-process discovery clients over real TLS/HTTP/2:
 *    - one change (a pod's labels, applied to the store) until every client holds it: p50/p99;
 *    - a full snapshot to a new client (connect, TLS, transfer, decode, build the config);
 *    - baselines from the same run: the conversion + encoding alone, and JSON.parse of the
 *      snapshot bytes alone.
 * 2. The control plane as its own process (`dist/control-plane/main.js`), as operators run it:
 *    - RSS after loading the mesh, serving `--clients` snapshots and a stream of changes;
 *    - one change written as a manifest file until every client holds it (includes the file
 *      watcher's debounce);
 *    - certificates signed per second over HTTP/2 (64 requests in flight), and per second of
 *      the control plane's CPU time ("on one core"); the baseline is `SigningCa.sign` in a loop
 *      in this process.
 *
 * Targets (issue 5): change p99 <= 100 ms, snapshot <= 1 s, RSS < 300 MB, >= 2,000 certs/s.
 */
import http2 from 'node:http2';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, mkdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import * as yaml from 'js-yaml';
import { CertificateAuthority } from '../core/identity/ca.js';
import { SigningCa } from '../core/identity/plugin-ca.js';
import { generateKeyAndCsr } from '../core/identity/csr.js';
import { TrustAnchors } from '../core/identity/trust-anchors.js';
import { controlPlaneTlsOptions } from '../core/identity/control-plane-tls.js';
import type { WorkloadCertificate } from '../core/identity/certificate.js';
import { silentLogger } from '../core/telemetry/log.js';
import { DiscoverySource } from '../core/discovery/source.js';
import { CA_PATH, controlPlaneIdentity, ztunnelIdentity } from '../core/discovery/wire.js';
import type { PodObject } from '../core/kube/objects.js';
import { parseManifests } from '../core/kube/parse.js';
import { ManifestConverter } from '../core/kube/convert.js';
import { ControlPlane } from '../control-plane/control-plane.js';
import { loadConfig } from '../control-plane/config.js';
import { EncodedState } from '../control-plane/discovery/state.js';
import { formatTable } from './lib/table.js';
import { NotReadyError, TimedOutError } from './lib/errors.js';

const TD = 'cluster.local';
const NAMESPACES = 20;
const POLICIES = 100;
const PODS_PER_FILE = 100;
const MAIN = fileURLToPath(new URL('../control-plane/main.js', import.meta.url));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} needs a positive integer`);
  return v;
}

const opts = {
  workloads: arg('--workloads', 10_000),
  services: arg('--services', 1_000),
  clients: arg('--clients', 50),
  changes: arg('--changes', 50),
  signSeconds: arg('--sign-seconds', 3),
  json: process.argv.includes('--json'),
};

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
}

const ip = (prefix: number, i: number) => `10.${prefix}.${(i >> 8) & 255}.${i & 255}`;

function podDoc(i: number, extraLabels: Record<string, string> = {}): object {
  const svc = i % opts.services;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `p-${i}`, namespace: `ns-${svc % NAMESPACES}`, labels: { app: `svc-${svc}`, ...extraLabels } },
    spec: { nodeName: `node-${i % opts.clients}`, serviceAccountName: `svc-${svc}`, containers: [{ name: 'main', image: 'echo', ports: [{ name: 'http', containerPort: 8080 }] }] },
    status: { phase: 'Running', podIP: ip(i >> 16, i), podIPs: [{ ip: ip(i >> 16, i) }] },
  };
}

interface Mesh {
  readonly dir: string;
  readonly manifests: string;
  readonly env: Record<string, string>;
  readonly tokens: string[];
  readonly ca: CertificateAuthority;
}

async function buildMesh(): Promise<Mesh> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-bench-'));
  const ca = await CertificateAuthority.create({ trustDomain: TD });
  await ca.save(dir);
  const manifests = join(dir, 'manifests');
  await mkdir(manifests);
  const dump = (docs: object[]) => docs.map((d) => yaml.dump(d, { noRefs: true })).join('---\n');
  const nsDocs = Array.from({ length: NAMESPACES }, (_, n) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${n}`, labels: { 'istio.io/dataplane-mode': 'ambient' } } }));
  await writeFile(join(manifests, 'namespaces.yaml'), dump(nsDocs));
  const svcDocs: object[] = [];
  for (let j = 0; j < opts.services; j++) {
    const ns = `ns-${j % NAMESPACES}`;
    svcDocs.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `svc-${j}`, namespace: ns } });
    svcDocs.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${j}`, namespace: ns },
      spec: { selector: { app: `svc-${j}` }, clusterIP: `10.96.${j >> 8}.${j & 255}`, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    });
  }
  await writeFile(join(manifests, 'services.yaml'), dump(svcDocs));
  const polDocs = Array.from({ length: POLICIES }, (_, k) => ({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: `allow-${k}`, namespace: `ns-${k % NAMESPACES}` },
    spec: { selector: { matchLabels: { app: `svc-${k}` } }, action: 'ALLOW', rules: [{ from: [{ source: { namespaces: [`ns-${k % NAMESPACES}`] } }], to: [{ operation: { ports: ['8080'] } }] }] },
  }));
  await writeFile(join(manifests, 'policies.yaml'), dump(polDocs));
  for (let f = 0; f * PODS_PER_FILE < opts.workloads; f++) {
    const docs = [];
    for (let i = f * PODS_PER_FILE; i < Math.min(opts.workloads, (f + 1) * PODS_PER_FILE); i++) docs.push(podDoc(i));
    await writeFile(join(manifests, `pods-${String(f).padStart(4, '0')}.yaml`), dump(docs));
  }
  const tokens = Array.from({ length: opts.clients }, () => randomBytes(24).toString('hex'));
  await writeFile(
    join(dir, 'nodes.yaml'),
    yaml.dump({ nodes: tokens.map((token, n) => ({ name: `node-${n}`, ztunnelAddress: ip(200, n + 1), token })) }),
  );
  const env = {
    MANIFESTS_PATH: manifests,
    MANIFESTS_DEBOUNCE_MS: '20',
    NODES_FILE: join(dir, 'nodes.yaml'),
    CA_CERT_FILE: join(dir, 'root-cert.pem'),
    CA_KEY_FILE: join(dir, 'root-key.pem'),
    LISTEN_ADDRESS: '127.0.0.1',
    CONTROL_PLANE_PORT: '0',
    ADMIN_PORT: '0',
    METRICS_PORT: '0',
    READINESS_PORT: '0',
    LOG_LEVEL: 'silent',
  };
  return { dir, manifests, env, tokens, ca };
}

/** A discovery client that records when it got each version. */
class Client {
  readonly source: DiscoverySource;
  version: string | undefined;
  at = 0;
  constructor(address: { host: string; port: number }, node: number, token: string, cert: WorkloadCertificate, trust: TrustAnchors) {
    this.source = new DiscoverySource({
      address,
      node: `node-${node}`,
      token: async () => token,
      certificate: async () => cert,
      trust,
      serverIdentity: controlPlaneIdentity(TD),
      initialBackoffMs: 50,
      maxBackoffMs: 500,
    });
  }
  start(): Promise<void> {
    return this.source.start(() => {
      this.version = this.source.version;
      this.at = performance.now();
    });
  }
}

async function ztunnelCert(ca: CertificateAuthority): Promise<WorkloadCertificate> {
  const id = ztunnelIdentity(TD);
  const { keyPem, csrPem } = await generateKeyAndCsr(id);
  const s = ca.sign(csrPem);
  return { identity: id, keyPem, certChainPem: s.certChainPem, rootsPem: ca.trustBundlePem, notBefore: s.notBefore, notAfter: s.notAfter };
}

async function waitAll(clients: Client[], version: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!clients.every((c) => c.version === version())) {
    if (Date.now() > deadline) throw new TimedOutError(`clients did not converge: ${clients.filter((c) => c.version !== version()).length} behind after ${timeoutMs} ms`, 'the control plane\'s log (CP_BENCH_LOG=info) and the machine\'s load');
    await new Promise((r) => setImmediate(r));
  }
}

interface Row {
  readonly measure: string;
  readonly value: string;
  readonly target: string;
  readonly baseline: string;
}

async function phaseInProcess(mesh: Mesh, rows: Row[]): Promise<void> {
  let t0 = performance.now();
  const cp = await ControlPlane.start({ config: loadConfig(mesh.env), logger: silentLogger });
  const startMs = performance.now() - t0;
  const address = { host: '127.0.0.1', port: cp.addresses.server.port };
  const trust = new TrustAnchors([mesh.ca.rootCertPem]);
  const cert = await ztunnelCert(mesh.ca);
  rows.push({ measure: `control plane start (${cp.store.size} objects: read, parse, convert)`, value: `${startMs.toFixed(0)} ms`, target: '', baseline: '' });

  // Baseline: conversion and encoding of the whole store alone, with nothing sent.
  // Baseline: one change converted and encoded, with nothing sent (same cache reuse as the control plane).
  const convMs: number[] = [];
  const fullMs: number[] = [];
  const converter = new ManifestConverter();
  const state = new EncodedState();
  const inputs = { objects: [...cp.store.objects()], nodes: cp.nodes, trustDomain: TD };
  for (let i = 0; i < 3; i++) {
    t0 = performance.now();
    state.update(converter.convert(inputs).config);
    fullMs.push(performance.now() - t0);
  }
  let prevPod = cp.store.get({ kind: 'Pod', namespace: 'ns-0', name: 'p-0' }) as PodObject;
  for (let i = 0; i < 10; i++) {
    const next = parseManifests(yaml.dump(podDoc(0, { base: String(i) })), 'bench').objects[0] as PodObject;
    t0 = performance.now();
    state.update(converter.updatePods([{ prev: prevPod, next }])!.config);
    convMs.push(performance.now() - t0);
    prevPod = next;
  }

  const clients = Array.from({ length: opts.clients }, (_, n) => new Client(address, n, mesh.tokens[n]!, cert, trust));
  t0 = performance.now();
  await Promise.all(clients.map((c) => c.start()));
  rows.push({ measure: `${opts.clients} clients connect and load their snapshots (concurrently)`, value: `${(performance.now() - t0).toFixed(0)} ms`, target: '', baseline: '' });

  // One change at a time: relabel a pod (its workload and its service's endpoints are unchanged,
  // so the delta is one workload), measured from the store write until every client holds it.
  const lat: number[] = [];
  const target = parseManifests(yaml.dump(podDoc(0)), 'bench').objects[0]!;
  for (let i = 0; i < opts.changes; i++) {
    const changed = parseManifests(yaml.dump(podDoc(0, { rev: String(i) })), 'bench').objects[0]!;
    const before = cp.state.version;
    t0 = performance.now();
    cp.store.apply([changed]);
    await waitAll(clients, () => (cp.state.version === before ? '' : cp.state.version));
    lat.push(Math.max(...clients.map((c) => c.at)) - t0);
    await new Promise((r) => setTimeout(r, 10));
  }
  cp.store.apply([target]);
  rows.push({
    measure: `one change reaches all ${opts.clients} clients (store write -> every client holds it), p50 / p99 of ${opts.changes}`,
    value: `${pct(lat, 0.5).toFixed(1)} / ${pct(lat, 0.99).toFixed(1)} ms`,
    target: 'p99 <= 100 ms',
    baseline: `convert+encode alone ${pct(convMs, 0.5).toFixed(1)} ms (full: ${pct(fullMs, 0.5).toFixed(0)} ms)`,
  });

  // A full snapshot to a new client, five times; baseline: JSON.parse of the same bytes.
  const snapMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const c = new Client(address, 0, mesh.tokens[0]!, cert, trust);
    t0 = performance.now();
    await c.start();
    snapMs.push(performance.now() - t0);
    await c.source.close();
  }
  const bytes = cp.hub.list()[0]?.bytesSent ?? 0;
  const snapshotText = `{"resources":{"workloads":[${cp.state.joined('workloads')}],"services":[${cp.state.joined('services')}]}}`;
  t0 = performance.now();
  JSON.parse(snapshotText);
  const parseMs = performance.now() - t0;
  rows.push({
    measure: `full snapshot to a new client (${(bytes / 1024 / 1024).toFixed(1)} MiB: TLS, transfer, decode, config), median / max of 5`,
    value: `${pct(snapMs, 0.5).toFixed(0)} / ${Math.max(...snapMs).toFixed(0)} ms`,
    target: '<= 1000 ms',
    baseline: `JSON.parse alone ${parseMs.toFixed(0)} ms`,
  });
  await Promise.all(clients.map((c) => c.source.close()));
  await cp.close();
}

function procStat(pid: number): Promise<{ rssMb: number; hwmMb: number; cpuSeconds: number }> {
  return Promise.all([readFile(`/proc/${pid}/status`, 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]).then(([status, stat]) => {
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (100/s on Linux)
    return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, cpuSeconds: ticks / 100 };
  });
}

async function phaseProcess(mesh: Mesh, rows: Row[]): Promise<void> {
  const port = 15000 + Math.floor(Math.random() * 1000) + 1000;
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env['PATH'] ?? '', ...mesh.env, CONTROL_PLANE_PORT: String(port), READINESS_PORT: String(port + 1), LOG_LEVEL: process.env['CP_BENCH_LOG'] ?? 'warn' },
    stdio: ['ignore', process.env['CP_BENCH_LOG'] ? 'inherit' : 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const killed = once(child, 'exit');
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port + 1}/healthz/ready`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new NotReadyError('control plane process', child.exitCode !== null ? `it exited with ${child.exitCode}` : 'no ready answer on /healthz/ready within 60 s', err);
      await new Promise((r) => setTimeout(r, 100));
    }
    const address = { host: '127.0.0.1', port };
    const trust = new TrustAnchors([mesh.ca.rootCertPem]);
    const cert = await ztunnelCert(mesh.ca);
    const loaded = await procStat(child.pid!);
    const clients = Array.from({ length: opts.clients }, (_, n) => new Client(address, n, mesh.tokens[n]!, cert, trust));
    await Promise.all(clients.map((c) => c.start()));
    const connected = await procStat(child.pid!);

    // Changes as the lab makes them: a manifest file written (temp + rename), picked up by the watcher.
    const churn = join(mesh.manifests, 'zz-churn.yaml');
    const lat: number[] = [];
    for (let i = 0; i < Math.min(opts.changes, 20); i++) {
      const versions = new Set(clients.map((c) => c.version));
      const tmp = `${churn}.tmp`;
      await writeFile(tmp, yaml.dump(podDoc(opts.workloads + 1, { rev: String(i) })));
      const t0 = performance.now();
      await rename(tmp, churn);
      const deadline = Date.now() + 10_000;
      while (!clients.every((c) => c.version !== undefined && !versions.has(c.version))) {
        if (Date.now() > deadline) {
          const behind = clients.filter((c) => c.version === undefined || versions.has(c.version));
          throw new TimedOutError(
            `change ${i}: ${behind.length} clients did not get it within 10 s: ${JSON.stringify(behind.slice(0, 3).map((c) => ({ v: c.version, connected: c.source.connected, stats: c.source.stats })))}`,
            'the control plane\'s log (CP_BENCH_LOG=info) and that it watches the manifests directory',
          );
        }
        await new Promise((r) => setImmediate(r));
      }
      await waitAll(clients, () => clients[0]!.version!);
      lat.push(Math.max(...clients.map((c) => c.at)) - t0);
    }
    const mem = await procStat(child.pid!);
    rows.push({
      measure: `one change written as a manifest file reaches all ${opts.clients} clients (20 ms debounce included), p50 / p99`,
      value: `${pct(lat, 0.5).toFixed(1)} / ${pct(lat, 0.99).toFixed(1)} ms`,
      target: '',
      baseline: '',
    });
    rows.push({
      measure: `control-plane process RSS: loaded / ${opts.clients} clients synced / after changes / peak`,
      value: `${loaded.rssMb.toFixed(0)} / ${connected.rssMb.toFixed(0)} / ${mem.rssMb.toFixed(0)} / ${mem.hwmMb.toFixed(0)} MB`,
      target: '< 300 MB',
      baseline: '',
    });
    await Promise.all(clients.map((c) => c.source.close()));

    // Signing over HTTP/2: CSRs for the ztunnel identity (every node may hold it), 64 in flight.
    const csrs = await Promise.all(Array.from({ length: 256 }, () => generateKeyAndCsr(ztunnelIdentity(TD)).then((k) => k.csrPem)));
    const sessions = Array.from({ length: 4 }, () => {
      const s = http2.connect(`https://127.0.0.1:${port}`, controlPlaneTlsOptions({ trust, serverIdentity: controlPlaneIdentity(TD) }));
      s.on('error', () => undefined);
      return s;
    });
    let signed = 0;
    let failed = 0;
    let n = 0;
    const one = (s: http2.ClientHttp2Session, token: string) =>
      new Promise<void>((resolve) => {
        const req = s.request({ ':method': 'POST', ':path': CA_PATH, authorization: `Bearer ${token}`, 'content-type': 'application/json' });
        let status = 0;
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', () => undefined);
        req.on('end', () => {
          if (status === 200) signed++;
          else failed++;
          resolve();
        });
        req.on('error', () => {
          failed++;
          resolve();
        });
        req.end(JSON.stringify({ csr: csrs[n++ % csrs.length], identity: ztunnelIdentity(TD) }));
      });
    const before = await procStat(child.pid!);
    const t0 = performance.now();
    const end = t0 + opts.signSeconds * 1000;
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        while (performance.now() < end) await one(sessions[w % sessions.length]!, mesh.tokens[w % mesh.tokens.length]!);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const after = await procStat(child.pid!);
    for (const s of sessions) s.close();
    const cpu = after.cpuSeconds - before.cpuSeconds;

    // Baseline: the signer alone, in this process, on one core.
    const signer = await SigningCa.create({ trustDomain: TD, certPem: mesh.ca.rootCertPem, keyPem: await readFile(join(mesh.dir, 'root-key.pem'), 'utf8') });
    let k = 0;
    const b0 = performance.now();
    while (performance.now() - b0 < 1000) signer.sign(csrs[k++ % csrs.length]!, { expectedIdentity: ztunnelIdentity(TD) });
    const rawRate = k / ((performance.now() - b0) / 1000);
    rows.push({
      measure: `certificates signed over HTTP/2 (64 in flight${failed ? `, ${failed} failed` : ''}): per second / per CPU-second of the control plane`,
      value: `${(signed / seconds).toFixed(0)} / ${(signed / Math.max(cpu, 0.01)).toFixed(0)}`,
      target: '>= 2000 /s',
      baseline: `SigningCa.sign alone ${rawRate.toFixed(0)}/s`,
    });
  } finally {
    child.kill('SIGKILL');
    await killed;
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  process.stderr.write(`building ${opts.workloads} pods, ${opts.services} services, ${POLICIES} policies on ${opts.clients} nodes...\n`);
  const mesh = await buildMesh();
  try {
    process.stderr.write('phase 1: control plane in-process\n');
    await phaseInProcess(mesh, rows);
    process.stderr.write('phase 2: control plane as a process\n');
    await phaseProcess(mesh, rows);
  } finally {
    await rm(mesh.dir, { recursive: true, force: true });
  }
  if (opts.json) {
    process.stdout.write(JSON.stringify({ opts, rows }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    formatTable(
      [
        { header: 'measure', align: 'left' },
        { header: 'value', align: 'right' },
        { header: 'target', align: 'left' },
        { header: 'baseline (same run)', align: 'left' },
      ],
      rows.map((r) => [r.measure, r.value, r.target, r.baseline]),
    ) + '\n',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
