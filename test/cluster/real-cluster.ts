/**
 * What the end-to-end suite (e2e.test.ts) needs to drive the real cluster of cluster/: shell
 * commands with the cluster's environment, the README's install blocks, the node agents' /state,
 * packet captures on the nodes' bridge, and requests from inside a pod.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CLUSTER = join(ROOT, 'cluster', 'cluster.sh');

export class CommandError extends Error {
  readonly code = 'ERR_E2E_COMMAND';
  constructor(
    readonly script: string,
    readonly exitCode: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    const tail = (s: string) => s.trim().split('\n').slice(-15).join('\n');
    super(`command failed (exit ${exitCode}): ${script.trim().split('\n')[0]}${script.includes('\n') ? ' ...' : ''}\n--- stderr\n${tail(stderr)}\n--- stdout\n${tail(stdout)}`);
  }
}

export interface RunOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  readonly input?: string;
  /** Resolve with the result instead of rejecting on a non-zero exit. */
  readonly allowFail?: boolean;
}
export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `bash -euo pipefail -c SCRIPT` in the repository root. */
export function sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${opts.timeoutMs} ms)`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    // A command that never reads its stdin may exit before the (empty) input is written.
    child.stdin.on('error', () => {});
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0 || opts.allowFail) resolve({ code, stdout, stderr });
      else reject(new CommandError(script, code, stdout, stderr));
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** The environment `cluster/cluster.sh env` prints (KUBECONFIG, kubectl and helm on PATH, caches). */
export async function clusterEnv(): Promise<Record<string, string>> {
  const { stdout } = await sh(`${CLUSTER} env`);
  const env: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^export (.*)$/.exec(line.trim());
    if (!m) continue;
    // `A=1 B=2` on one line; values hold no spaces. $PATH is expanded here.
    for (const kv of m[1]!.split(' ')) {
      const at = kv.indexOf('=');
      if (at > 0) env[kv.slice(0, at)] = kv.slice(at + 1).replace('$PATH', process.env['PATH'] ?? '');
    }
  }
  if (!env['KUBECONFIG']) throw new Error(`cluster/cluster.sh env printed no KUBECONFIG:\n${stdout}`);
  return env;
}

/** The ```sh blocks of README.md's section `heading`, in order. */
export function readmeBlocks(heading: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README.md has no section "${heading}"`);
  const next = readme.indexOf('\n## ', start + heading.length + 2);
  const section = readme.slice(start, next < 0 ? undefined : next);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** A block's commands, one per entry (continuation lines joined, comments and blanks dropped). */
export function commandsOf(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** Polls `check` until it returns a value other than undefined, or throws with `what` at the deadline. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `; last error: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface AgentPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  readonly mode: string;
  readonly origin?: string;
  readonly reason: string;
  readonly attached?: { readonly redirect: boolean };
  readonly addWait?: { readonly outcome: string; readonly waitedMs: number };
  readonly error?: string;
  readonly cgroup?: string;
}
export interface AgentState {
  readonly node: string;
  readonly ready: boolean;
  readonly pods: readonly AgentPod[];
}

/** The node agent's read-only /state (127.0.0.1:15025 in the node's network namespace). */
export async function agentState(node: number): Promise<AgentState> {
  const { stdout } = await sh(`nsenter --net=/run/netns/amc-node-${node} curl -sf -m 5 http://127.0.0.1:15025/state`);
  return JSON.parse(stdout) as AgentState;
}

/** A packet capture on the bridge every node and the host share (all traffic between nodes crosses it). */
export class BridgeCapture {
  readonly #dir = mkdtempSync(join(tmpdir(), 'amc-e2e-pcap-'));
  readonly #file = join(this.#dir, 'bridge.pcap');
  #proc: ChildProcess | undefined;

  /** Starts tcpdump and resolves once it says it is listening. */
  async start(bridge = 'amc-br'): Promise<void> {
    // -Z root: Debian's tcpdump otherwise opens the file as user tcpdump, in a directory only root
    // may write. --immediate-mode: without it packets reach tcpdump in batches (a 1 s buffer
    // timeout), and those still buffered at SIGINT are never written: a short capture saw nothing.
    const proc = spawn('tcpdump', ['-Z', 'root', '--immediate-mode', '-i', bridge, '-s0', '-U', '-n', '-w', this.#file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#proc = proc;
    await new Promise<void>((resolve, reject) => {
      let err = '';
      proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        if (err.includes('listening on')) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`tcpdump exited (${code}) before listening: ${err}`)));
    });
  }

  /** Stops tcpdump (its buffered packets written) and reads what it saw. */
  async stop(): Promise<{ text: string; ports: Map<number, number>; packets: number; tlsTo15008: number; plainTo15008: number }> {
    const proc = this.#proc;
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGINT');
      await exited;
    }
    this.#proc = undefined;
    const { stdout: text } = await sh(`tcpdump -nr ${this.#file} -A 2>/dev/null`, { timeoutMs: 60_000 });
    const { stdout: lines } = await sh(`tcpdump -nr ${this.#file} 2>/dev/null`, { timeoutMs: 60_000 });
    // "IP 10.88.0.11.55046 > 10.88.0.12.15008: ..." -> packets per destination port.
    const ports = new Map<number, number>();
    for (const m of lines.matchAll(/ > [\d.]+\.(\d+): /g)) ports.set(Number(m[1]), (ports.get(Number(m[1])) ?? 0) + 1);
    // Segments to 15008 that carry data and start a TLS record (content type 0x14-0x17, version
    // 0x03 0x0X): HBONE is TLS from its first byte. A segment may continue a record, so only some do.
    const { stdout: hex } = await sh(`tcpdump -nr ${this.#file} -x 'tcp dst port 15008' 2>/dev/null`, { timeoutMs: 60_000 });
    let tlsTo15008 = 0;
    let plainTo15008 = 0;
    for (const pkt of hex.split(/\n(?=\S)/)) {
      const bytes = [...pkt.matchAll(/^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4} ?)+)/gm)].flatMap((m) => m[1]!.trim().split(/\s+/)).flatMap((w) => (w.length === 4 ? [w.slice(0, 2), w.slice(2)] : [w])).map((b) => parseInt(b, 16));
      if (bytes.length < 40) continue;
      const ihl = (bytes[0]! & 0x0f) * 4;
      const payload = bytes.slice(ihl + (bytes[ihl + 12]! >> 4) * 4);
      if (payload.length === 0) continue;
      if (payload[0]! >= 0x14 && payload[0]! <= 0x17 && payload[1] === 0x03) tlsTo15008++;
      else if (/^(CONNECT|GET|POST|PRI) /.test(String.fromCharCode(...payload.slice(0, 8)))) plainTo15008++;
    }
    return { text, ports, packets: lines.split('\n').filter(Boolean).length, tlsTo15008, plainTo15008 };
  }

  dispose(): void {
    if (this.#proc && this.#proc.exitCode === null) this.#proc.kill('SIGKILL');
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/**
 * A script for `node -e` in a pod (the mesh image has Node): reads a JSON list of requests from
 * argv[1], sends each on a new connection, prints a JSON list of {status, body|error}.
 */
export const REQUESTS_SCRIPT = `
const http = require('http');
const reqs = JSON.parse(process.argv[1]);
const one = (r) => new Promise((resolve) => {
  const q = http.get(r.url, { agent: false, headers: r.headers || {}, timeout: 10000 }, (res) => {
    let body = ''; res.setEncoding('utf8');
    res.on('data', (d) => (body += d));
    res.on('end', () => resolve({ status: res.statusCode, body }));
  });
  q.on('timeout', () => q.destroy(new Error('timeout')));
  q.on('error', (e) => resolve({ error: e.code || e.message }));
});
(async () => { const out = []; for (const r of reqs) out.push(await one(r)); console.log(JSON.stringify(out)); })();
`;

/**
 * A script for `node -e` in a pod: requests URLS (argv[1], JSON) round-robin, one every 100 ms, each
 * on a new connection and retried (every 200 ms, up to 60 s) while it fails, as an application
 * that retries would; stops when /tmp/stop-load exists and prints a summary as JSON.
 */
export const LOAD_SCRIPT = `
const http = require('http'); const fs = require('fs');
const urls = JSON.parse(process.argv[1]);
try { fs.unlinkSync('/tmp/stop-load'); } catch {}
const once = (url) => new Promise((resolve) => {
  const q = http.get(url, { agent: false, timeout: 5000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode === 200 ? null : 'status ' + res.statusCode)); });
  q.on('timeout', () => q.destroy(new Error('timeout')));
  q.on('error', (e) => resolve(e.code || e.message));
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const s = { requests: 0, firstAttemptFailures: 0, failed: 0, retries: 0, longestRecoveryMs: 0, errors: {} };
  let i = 0;
  while (!fs.existsSync('/tmp/stop-load')) {
    const url = urls[i++ % urls.length]; s.requests++;
    const t0 = Date.now(); let err = await once(url); const first = err;
    if (err) { s.firstAttemptFailures++; s.errors[err] = (s.errors[err] || 0) + 1; }
    while (err && Date.now() - t0 < 60000) { await sleep(200); s.retries++; err = await once(url); }
    if (err) s.failed++;
    else if (first) s.longestRecoveryMs = Math.max(s.longestRecoveryMs, Date.now() - t0);
    await sleep(100);
  }
  console.log(JSON.stringify(s));
})();
`;
