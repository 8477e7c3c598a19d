/**
 * dashboard/scrape.ts and dashboard/prom-text.ts against real HTTP servers on loopback: a good
 * exporter, garbage, 10 MB (with and without content-length), a server that never finishes, a
 * refused port, an error status; and the netns relay (dashboard/netns-relay.ts) as a real process
 * (here without a namespace: what it does inside one is the same socket code).
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { fetchBounded } from '../../dashboard/scrape.js';
import { parsePromText } from '../../dashboard/prom-text.js';

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));
const LIMITS = { maxBytes: 1024 * 1024, timeoutMs: 800 };
const GOOD = [
  '# HELP istio_requests_total requests',
  '# TYPE istio_requests_total counter',
  'istio_requests_total{reporter="waypoint",source_workload="a",msg="x\\"y\\\\z\\n"} 42',
  'istio_request_duration_milliseconds_bucket{le="+Inf",reporter="waypoint"} 7 1700000000000',
  'nodejs_heap_size_total_bytes 123',
  '',
].join('\n');

/** One server per behaviour, on 127.0.0.1 port 0, closed in teardown. */
async function serve(t: Test, handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    s.closeAllConnections();
    return new Promise<void>((r) => s.close(() => r()));
  });
  return `http://127.0.0.1:${(s.address() as net.AddressInfo).port}/metrics`;
}

t.test('prometheus text: only the asked families, escapes, timestamps', async (t) => {
  const p = parsePromText(GOOD, ['istio_']);
  t.equal(p.samples.length, 2);
  t.same(p.samples[0]!.labels, { reporter: 'waypoint', source_workload: 'a', msg: 'x"y\\z\n' });
  t.equal(p.samples[0]!.value, 42);
  t.equal(p.samples[1]!.value, 7, 'a timestamp after the value is allowed');
  t.equal(p.invalidLines, 0);
});

t.test('prometheus text: garbage is refused, a bad line among good ones is counted', async (t) => {
  t.throws(() => parsePromText('<html>oops</html>\nnot metrics at all\n', ['istio_']), { code: 'ERR_DASHBOARD_BAD_METRICS' });
  t.throws(() => parsePromText('\u0000\u0001\u0002'.repeat(1000), ['istio_']), { code: 'ERR_DASHBOARD_BAD_METRICS' });
  const p = parsePromText(`${GOOD}istio_requests_total{reporter="waypoint" 3\nistio_x{a="b"} notanumber\n`, ['istio_']);
  t.equal(p.samples.length, 2);
  t.equal(p.invalidLines, 2);
  t.throws(() => parsePromText(`istio_a{${Array.from({ length: 100 }, (_, i) => `l${i}="v"`).join(',')}} 1\n`, ['istio_']), { code: 'ERR_DASHBOARD_BAD_METRICS' }, 'over 64 labels');
  t.throws(() => parsePromText(Array.from({ length: 20 }, (_, i) => `istio_a{i="${i}"} 1`).join('\n'), ['istio_'], { maxLineLength: 1000, maxLabels: 64, maxSamples: 10 }), { code: 'ERR_DASHBOARD_BAD_METRICS' }, 'over maxSamples');
  const long = parsePromText(`istio_a{x="${'y'.repeat(20_000)}"} 1\nistio_b 2\n`, ['istio_']);
  t.same(long.samples.map((s) => s.name), ['istio_b'], 'a line over 16 KiB is skipped');
});

t.test('prometheus text: a label cache parses each series once and shares its key', async (t) => {
  const cache = new Map();
  const a = parsePromText(GOOD, ['istio_'], undefined, cache);
  const b = parsePromText(GOOD.replace(' 42', ' 43'), ['istio_'], undefined, cache);
  t.equal(cache.size, 2, 'one entry per istio_ series');
  t.equal(b.samples[0]!.value, 43, 'the value is read each time');
  t.equal(b.samples[0]!.labels, a.samples[0]!.labels, 'the same labels object');
  t.equal(b.samples[0]!.id, a.samples[0]!.id);
  t.same(b.samples[0]!.labels, { reporter: 'waypoint', source_workload: 'a', msg: 'x"y\\z\n' });
  const tricky = parsePromText('istio_a{x="}"} 1\nistio_a{x="}"} 2 }\n', ['istio_'], undefined, cache);
  t.same(tricky.samples.map((s) => [s.labels['x'], s.value]), [['}', 1]], 'a brace in a value is read; a line with junk after its value is not a sample');
});

t.test('fetchBounded: a good exporter', async (t) => {
  const url = await serve(t, (_req, res) => res.end(GOOD));
  t.equal(await fetchBounded(url, {}, LIMITS), GOOD);
});

t.test('fetchBounded: 10 MB is cut at the limit, with or without content-length', async (t) => {
  const big = Buffer.alloc(10 * 1024 * 1024, 'a');
  const declared = await serve(t, (_req, res) => res.end(big));
  await t.rejects(fetchBounded(declared, {}, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_TOO_LARGE' });
  const streamed = await serve(t, (_req, res) => {
    res.writeHead(200, { 'transfer-encoding': 'chunked' });
    for (let i = 0; i < 10; i++) res.write(big.subarray(0, 1024 * 1024));
    res.end();
  });
  await t.rejects(fetchBounded(streamed, {}, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_TOO_LARGE' });
});

t.test('fetchBounded: a server that never finishes times out; refused and 500 are unreachable', async (t) => {
  const slow = await serve(t, (_req, res) => res.write('istio_a 1\n'));
  await t.rejects(fetchBounded(slow, {}, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_TIMEOUT' });
  const accepted = new Set<net.Socket>();
  const silent = net.createServer((c) => void accepted.add(c));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of accepted) c.destroy();
    return new Promise<void>((r) => silent.close(() => r()));
  });
  // A listener that accepts and never answers: the socket of each attempt is destroyed by the scraper.
  await t.rejects(fetchBounded(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/metrics`, {}, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_TIMEOUT' });
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await t.rejects(fetchBounded(`http://127.0.0.1:${port}/metrics`, {}, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_UNREACHABLE' });
  const failing = await serve(t, (_req, res) => {
    res.statusCode = 500;
    res.end('boom');
  });
  await t.rejects(fetchBounded(failing, {}, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_UNREACHABLE', message: /answered 500/ });
});

t.test('the netns relay forwards to the metrics and admin ports only', async (t) => {
  // A short path: a Unix socket's name is cut at 108 bytes, and t.testdir()'s paths are longer.
  const dir = await mkdtemp(join(tmpdir(), 'dash-relay-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, 'relay.sock');
  const relay = spawn(process.execPath, [join(DIST, 'dashboard/netns-relay.js'), socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => void relay.kill('SIGTERM'));
  await new Promise<void>((resolve, reject) => {
    relay.stdout!.once('data', () => resolve());
    relay.once('exit', (c) => reject(new Error(`relay exited ${c}`)));
  });
  // A real exporter on 127.0.0.1:15020 may be taken by another test or component; the relay's
  // allowlist is what is checked on another port, the forwarding on a port it allows when free.
  const url = await serve(t, (_req, res) => res.end(GOOD));
  await t.rejects(fetchBounded(url, { relaySocket: socket }, LIMITS), { code: 'ERR_DASHBOARD_SCRAPE_UNREACHABLE' }, 'a port other than 15000/15020 is refused');
  const s = http.createServer((_req, res) => res.end(GOOD));
  const listened = await new Promise<boolean>((r) => {
    s.once('error', () => r(false));
    s.listen(15020, '127.0.0.127', () => r(true));
  });
  if (!listened) return t.comment('127.0.0.127:15020 is taken; forwarding not checked here (the e2e test uses it)');
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  t.equal(await fetchBounded('http://127.0.0.127:15020/metrics', { relaySocket: socket }, LIMITS), GOOD, 'forwarded to 15020');
});
