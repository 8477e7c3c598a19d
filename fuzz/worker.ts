/**
 * The fuzz worker: a child process that runs inputs one at a time for its parent (`pool.ts`) over
 * IPC and answers each with its outcome or the exception that escaped. It holds no state between
 * inputs but the SOCKS5 listener, so the parent can kill it on an overrun and start another.
 */
import { Worker } from 'node:worker_threads';
import { runEntry, type EntryName } from './entries.js';

interface Job {
  readonly id: number;
  readonly entry: EntryName;
  readonly input: unknown;
}

/** An escaped exception, as the runner classifies it. */
export interface Escaped {
  readonly name: string;
  readonly code?: string;
  readonly message: string;
  readonly stack: string;
}

function describeThrown(e: unknown): Escaped {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, ...(typeof code === 'string' ? { code } : {}), message: e.message.slice(0, 500), stack: e.stack ?? '' };
  }
  return { name: typeof e, message: String(e).slice(0, 500), stack: '' };
}

const socksHost = process.env.FUZZ_SOCKS_HOST ?? '127.0.0.1';
const shared = new Int32Array(new SharedArrayBuffer(4));
if (process.env.FUZZ_STACK_FILE) {
  const watchdog = new Worker(new URL('./watchdog.js', import.meta.url), {
    workerData: { shared, limitMs: Number(process.env.FUZZ_LIMIT_MS ?? 2000), out: process.env.FUZZ_STACK_FILE },
  });
  watchdog.unref();
}

process.on('message', (job: Job) => {
  void (async () => {
    Atomics.store(shared, 0, job.id);
    try {
      const r = await runEntry(job.entry, job.input, { socksHost });
      process.send?.({ id: job.id, ...r });
    } catch (e) {
      process.send?.({ id: job.id, outcome: 'exception', error: describeThrown(e) });
    } finally {
      Atomics.store(shared, 0, 0);
    }
  })();
});
// An exception thrown later (a timer, setImmediate) is as uncaught as one thrown inline.
process.on('uncaughtException', (e) => process.send?.({ id: -1, outcome: 'exception', error: describeThrown(e) }));
/**
 * Each entry once on a small valid input before the first job: what loads or compiles on first use
 * (the schema validators, the YAML and RE2 engines) must not count against a fuzz input's limit.
 */
async function warmUp(): Promise<void> {
  const pod = 'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: a}]}\n';
  const route =
    'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{group: "", kind: Service, name: s}]\n  rules: [{matches: [{path: {type: RegularExpression, value: "/a.*"}}]}]\n';
  const warm: [EntryName, unknown][] = [
    ['manifests', `${pod}---\n${route}`],
    ['meshConfig', 'nodes: []\n'],
    ['discovery', '{"type":"resume","version":"v","seq":1}'],
    ['socks5', Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80]).toString('base64')],
    ['cni', '{"cniVersion":"1.0.0","name":"n","type":"ambient-cni"}'],
    ['matchers', { manifest: route, requests: [{ method: 'GET', path: '/a', headers: {}, query: '' }] }],
  ];
  for (const [entry, input] of warm) await runEntry(entry, input, { socksHost }).catch(() => undefined);
}
void warmUp().then(() => process.send?.({ id: 0, outcome: 'ready' }));
