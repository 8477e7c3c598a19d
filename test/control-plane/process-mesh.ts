/**
 * The control plane and two ztunnels, all as real processes (`dist/control-plane/main.js`,
 * `dist/ztunnel/main.js`), for tests that kill and restart them: node-a's ztunnel at `${base}.2`,
 * node-b's at `${base}.3`, the control plane at `${base}.1:15012` (a fixed port, so a restarted
 * one is found where the ztunnels look). Pods are manifests; each pod on node-b runs an echo
 * server on `podIP:9090`. Every process and server is gone after teardown.
 */
import { join } from 'node:path';
import type { Test } from 'tap';
import { closeServer, echoServer, readAll, socks5Connect } from '../helpers/net.js';
import { startZtunnelProcess, waitForStatus, type Proc } from '../helpers/proc.js';
import { cpEnv, makeFiles, manifestYaml, namespace, pod, startControlPlaneProcess, writeAtomic } from './helpers.js';
import { until } from '../helpers/until.js';

export interface PodSpec {
  readonly name: string;
  readonly node: 'node-a' | 'node-b';
  readonly ip: string;
}

/** One identity's entry in a ztunnel's `/config_dump` (dates as JSON strings). */
export interface DumpedCertificate {
  readonly notBefore?: string;
  readonly notAfter?: string;
  readonly rotations: number;
  readonly needed: boolean;
}

export interface ProcessMesh {
  readonly address: { cp: string; 'node-a': string; 'node-b': string };
  /** Starts the control plane (SIGKILLing one still running) and waits until it is ready. */
  startControlPlane(): Promise<Proc>;
  /** Starts node's ztunnel (SIGKILLing one still running) and waits until it is ready (it had its configuration). */
  startZtunnel(node: 'node-a' | 'node-b'): Promise<Proc>;
  /** The certificates in node's `/config_dump`. */
  certificates(node: 'node-a' | 'node-b'): Promise<Record<string, DumpedCertificate>>;
  /**
   * Waits until node's `/config_dump` shows a certificate for every identity in `ids` for which
   * `check` holds (by default: it has one); returns the dump.
   */
  waitForCertificates(node: 'node-a' | 'node-b', ids: readonly string[], check?: (c: DumpedCertificate, id: string) => boolean, timeoutMs?: number): Promise<Record<string, DumpedCertificate>>;
  /**
   * A new connection from pod `from` (on node-a) to pod `to` through node-a's SOCKS5 port, one
   * echoed message; resolves with what went wrong, or undefined when it was answered.
   */
  request(from: PodSpec, to: PodSpec, text: string): Promise<string | undefined>;
}

/** `spiffe://cluster.local/ns/default/sa/<pod name>`: each pod runs as a service account of its own name. */
export const identityOf = (p: PodSpec): string => `spiffe://cluster.local/ns/default/sa/${p.name}`;

/** The JSON log lines of a process with message `msg`. */
export function logLines(p: Proc, msg: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of p.output().split('\n')) {
    if (!line.includes(msg)) continue;
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.msg === msg) out.push(o);
    } catch {
      // not a log line
    }
  }
  return out;
}

export async function processMesh(t: Test, opts: { base: string; pods: readonly PodSpec[]; env?: Record<string, string> }): Promise<ProcessMesh> {
  const { base } = opts;
  const address = { cp: `${base}.1`, 'node-a': `${base}.2`, 'node-b': `${base}.3` } as const;
  const nodes = [
    { name: 'node-a', address: address['node-a'] },
    { name: 'node-b', address: address['node-b'] },
  ];
  const files = await makeFiles(t.testdir(), nodes);
  await writeAtomic(
    join(files.manifests, 'apps.yaml'),
    manifestYaml([namespace('default', { 'istio.io/dataplane-mode': 'ambient' }), ...opts.pods.map((p) => pod(p.name, { node: p.node, ip: p.ip }))]),
  );
  const echoes = await Promise.all(opts.pods.filter((p) => p.node === 'node-b').map((p) => echoServer(p.ip, 9090)));
  const procs: Proc[] = [];
  let cp: Proc | undefined;
  const zt: Partial<Record<'node-a' | 'node-b', Proc>> = {};
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    await Promise.all(echoes.map((e) => closeServer(e.server)));
  });
  const started = (p: Proc) => (procs.push(p), p);
  const ready = async (p: Proc, host: string, what: string) => {
    await waitForStatus(`http://${host}:15021/healthz/ready`, 200, 20_000).catch((err: Error) => {
      throw new Error(`${what} did not become ready: ${err.message}\n${p.output()}`);
    });
  };
  const certificates = async (node: 'node-a' | 'node-b') => {
    const res = await fetch(`http://${address[node]}:15000/config_dump`);
    return ((await res.json()) as { certificates: Record<string, DumpedCertificate> }).certificates;
  };
  return {
    address,
    async startControlPlane() {
      await cp?.kill('SIGKILL');
      cp = started(startControlPlaneProcess(cpEnv(files, address.cp, { CONTROL_PLANE_PORT: '15012', LOG_LEVEL: 'info', ...opts.env })));
      await ready(cp, address.cp, 'the control plane');
      return cp;
    },
    async startZtunnel(node) {
      await zt[node]?.kill('SIGKILL');
      const p = started(
        startZtunnelProcess({
          NODE_NAME: node,
          CONTROL_PLANE_ADDRESS: `${address.cp}:15012`,
          NODE_TOKEN_FILE: files.tokenFiles[node]!,
          CONTROL_PLANE_ROOT_CERT_FILE: files.certFile,
          ZTUNNEL_ADDRESS: address[node],
          ADMIN_ADDRESS: address[node],
          SOCKS5_PORT: '15080',
          OUTBOUND_PORT: '0',
          LOG_LEVEL: 'info',
          ...opts.env,
        }),
      );
      zt[node] = p;
      await ready(p, address[node], `the ztunnel of ${node}`);
      return p;
    },
    certificates,
    async waitForCertificates(node, ids, check = (c) => c.notAfter !== undefined, timeoutMs = 20_000) {
      let last: Record<string, DumpedCertificate> = {};
      await until(
        `${node}'s /config_dump shows the certificates of ${ids.join(', ')}`,
        async () => {
          last = await certificates(node);
          return ids.every((id) => last[id] !== undefined && check(last[id]!, id));
        },
        { timeoutMs, everyMs: 50 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last: ${JSON.stringify(last)}\n${zt[node]?.output() ?? ''}`);
      });
      return last;
    },
    async request(from, to, text) {
      const { reply, socket } = await socks5Connect({ proxy: { host: address['node-a'], port: 15080 }, localAddress: from.ip, host: to.ip, port: 9090 });
      // Bounded: a request that hangs counts as failed, it does not hang the test.
      socket.setTimeout(10_000, () => socket.destroy());
      if (reply !== 0) {
        socket.destroy();
        return `${from.name} → ${to.name}: socks5 reply ${reply}`;
      }
      socket.end(text);
      const got = (await readAll(socket)).toString();
      socket.destroy();
      return got === text ? undefined : `${from.name} → ${to.name}: got ${JSON.stringify(got)}`;
    },
  };
}
