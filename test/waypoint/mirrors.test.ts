/**
 * RequestMirror through the real waypoint, real HBONE and real ztunnels: every mirror of a rule
 * gets its copy (upstream Gateway API conformance: HTTPRouteRequestMultipleMirrors,
 * conformance/tests/httproute-request-multiple-mirrors.go; a mirror in another namespace as
 * there), the copies carry the rule's header changes (its `/mirror-and-modify-headers` case), and
 * `fraction` / `percent` choose which requests are copied (HTTPRouteRequestPercentageMirror).
 * A streaming body (chunked, no Content-Length) is teed to the mirrors whole; a mirror that
 * reads nothing neither blocks nor slows the primary and loses its copy once it falls
 * MIRROR_BUFFER_BYTES behind (its request is aborted, never held open).
 */
import t from 'tap';
import http from 'node:http';
import { MIRROR_BUFFER_BYTES } from '../../waypoint/filters/mirror.js';
import { closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.151.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21-.24 = backends, .30 = the waypoint, .100-.103 = service VIPs.
const base = '127.0.151';
const CLIENT = `${base}.10`;
const VIP = { mirrored: `${base}.100`, a: `${base}.101`, b: `${base}.102`, stalled: `${base}.103` };
const WAYPOINT = { address: `${base}.30` };
const port80 = [{ port: 80, targetPort: 8080, name: 'http' }];

const workloads = [
  { name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo' } },
  { name: 'mirror-a', namespace: 'default', serviceAccount: 'mirror-a', node: 'node-b', ips: [`${base}.22`], labels: { app: 'mirror-a' } },
  { name: 'mirror-b', namespace: 'another', serviceAccount: 'mirror-b', node: 'node-a', ips: [`${base}.23`], labels: { app: 'mirror-b' } },
  { name: 'stalled', namespace: 'default', serviceAccount: 'stalled', node: 'node-b', ips: [`${base}.24`], labels: { app: 'stalled' } },
];
const mirrorTo = (name: string, namespace: string, extra: Record<string, unknown> = {}) => ({
  type: 'RequestMirror',
  requestMirror: { backendRef: { name, namespace, port: 80 }, ...extra },
});
const prefix = (value: string) => [{ path: { type: 'PathPrefix', value } }];
const config = {
  services: [
    { name: 'mirrored', namespace: 'default', vips: [VIP.mirrored], ports: port80, selector: { app: 'echo' }, waypoint: WAYPOINT },
    { name: 'mirror-a', namespace: 'default', vips: [VIP.a], ports: port80, selector: { app: 'mirror-a' } },
    { name: 'mirror-b', namespace: 'another', vips: [VIP.b], ports: port80, selector: { app: 'mirror-b' } },
    { name: 'stalled', namespace: 'default', vips: [VIP.stalled], ports: port80, selector: { app: 'stalled' } },
  ],
  // A mirror into another namespace needs a ReferenceGrant there, as a backend does.
  referenceGrants: [
    { name: 'default-routes', namespace: 'another', spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'default' }], to: [{ group: '', kind: 'Service', name: 'mirror-b' }] } },
  ],
  httpRoutes: [
    {
      name: 'request-multiple-mirrors',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'mirrored', port: 80 }],
        rules: [
          { matches: prefix('/stalled'), filters: [mirrorTo('stalled', 'default')], backendRefs: [{ name: 'mirrored', port: 80 }] },
          { matches: prefix('/mirror'), filters: [mirrorTo('mirror-a', 'default'), mirrorTo('mirror-b', 'another')], backendRefs: [{ name: 'mirrored', port: 80 }] },
          {
            matches: prefix('/mirror-and-modify-headers'),
            filters: [
              {
                type: 'RequestHeaderModifier',
                requestHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }], add: [{ name: 'X-Header-Add', value: 'header-val-1' }], remove: ['X-Header-Remove'] },
              },
              mirrorTo('mirror-a', 'default'),
              mirrorTo('mirror-b', 'another'),
            ],
            backendRefs: [{ name: 'mirrored', port: 80 }],
          },
          { matches: prefix('/fraction'), filters: [mirrorTo('mirror-a', 'default', { fraction: { numerator: 1, denominator: 4 } })], backendRefs: [{ name: 'mirrored', port: 80 }] },
          { matches: prefix('/percent'), filters: [mirrorTo('mirror-b', 'another', { percent: 40 })], backendRefs: [{ name: 'mirrored', port: 80 }] },
        ],
      },
    },
  ],
};

/** What a mirror backend saw: path → request headers and body, in arrival order. */
function recorder(): {
  seen: Array<{ url: string; headers: http.IncomingHttpHeaders; body: string }>;
  behave: (req: http.IncomingMessage, res: http.ServerResponse, n: number, body: string) => boolean;
} {
  const seen: Array<{ url: string; headers: http.IncomingHttpHeaders; body: string }> = [];
  return {
    seen,
    behave: (req, _res, _n, body) => {
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      return false;
    },
  };
}
const recA = recorder();
const recB = recorder();
const echo = await backend(`${base}.21`, 8080, 'echo');
const mirrorA = await backend(`${base}.22`, 8080, 'mirror-a', recA.behave);
const mirrorB = await backend(`${base}.23`, 8080, 'mirror-b', recB.behave);
// A mirror that takes the request and reads none of its body until the test says so (`resume`):
// then what became of it (bytes read, whether the body ended whole or the request was aborted).
const stalledSeen: Array<{ url: string; bytes: number; complete: boolean; closed: boolean; resume: () => void }> = [];
const stalled = http.createServer((req) => {
  const seen = { url: req.url ?? '', bytes: 0, complete: false, closed: false, resume: () => req.on('data', (c: Buffer) => (seen.bytes += c.length)).resume() };
  stalledSeen.push(seen);
  req.pause();
  req.once('end', () => (seen.complete = true));
  req.once('close', () => (seen.closed = true));
});
await new Promise<void>((r) => stalled.listen(8080, `${base}.24`, r));
// The waypoint's randomness, set per case: it decides which requests a fraction mirrors (the
// weighted pick of a one-backend rule takes any value). Fixed values make the outcome exact.
let r = 0.5;
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config, random: () => r });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  stalled.closeAllConnections();
  await Promise.all([echo, mirrorA, mirrorB, { server: stalled }].map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

const urls = (rec: ReturnType<typeof recorder>, start: string) => rec.seen.filter((s) => s.url.startsWith(start)).map((s) => s.url);

t.test('HTTPRouteRequestMultipleMirrors: each of two mirrors gets every request', async (t) => {
  const N = 10;
  for (let i = 0; i < N; i++) {
    const res = await request(agent, `http://${VIP.mirrored}/mirror/${i}`);
    t.equal(res.headers['x-backend'], 'echo', `request ${i} is answered by the rule's backend`);
  }
  const want = Array.from({ length: N }, (_, i) => `/mirror/${i}`).sort();
  await until('both mirrors to see every request', () => urls(recA, '/mirror/').length >= N && urls(recB, '/mirror/').length >= N);
  t.same(urls(recA, '/mirror/').sort(), want, 'mirror-a (same namespace) got a copy of each');
  t.same(urls(recB, '/mirror/').sort(), want, 'mirror-b (another namespace) got a copy of each');
  t.equal(recA.seen.find((s) => s.url === '/mirror/0')?.headers.host, `${VIP.mirrored}-shadow`, "the copy's Host has Envoy's -shadow suffix");
});

t.test('HTTPRouteRequestMultipleMirrors: the copies carry the rule header changes', async (t) => {
  const res = await request(agent, `http://${VIP.mirrored}/mirror-and-modify-headers`, {
    headers: { 'x-header-set': 'original', 'x-header-add': 'first', 'x-header-remove': 'gone' },
  });
  t.equal(res.status, 200);
  const seen = JSON.parse(res.body) as { headers: Record<string, string> };
  t.equal(seen.headers['x-header-set'], 'set-overwrites-values', 'the backend gets the set header');
  for (const [name, rec] of [['mirror-a', recA], ['mirror-b', recB]] as const) {
    const copy = await until(`${name} to see the request`, () => rec.seen.find((s) => s.url === '/mirror-and-modify-headers'));
    t.equal(copy.headers['x-header-set'], 'set-overwrites-values', `${name}: set`);
    t.equal(copy.headers['x-header-add'], 'first,header-val-1', `${name}: added`);
    t.equal(copy.headers['x-header-remove'], undefined, `${name}: removed`);
  }
});

t.test('HTTPRouteRequestPercentageMirror: fraction and percent choose the copied requests', async (t) => {
  // fraction 1/4 is 25 %: a draw of 0.26 is not mirrored, 0.24 is (Envoy: mirrored when the
  // draw is below the fraction); the "skip" requests go first, so a copy of one would be there
  // by the time the "take" copies have all arrived.
  r = 0.26;
  for (let i = 0; i < 5; i++) t.equal((await request(agent, `http://${VIP.mirrored}/fraction/skip-${i}`)).status, 200);
  r = 0.24;
  for (let i = 0; i < 5; i++) t.equal((await request(agent, `http://${VIP.mirrored}/fraction/take-${i}`)).status, 200);
  await until('the five mirrored requests', () => urls(recA, '/fraction/').length >= 5);
  t.same(urls(recA, '/fraction/').sort(), ['/fraction/take-0', '/fraction/take-1', '/fraction/take-2', '/fraction/take-3', '/fraction/take-4']);
  r = 0.41;
  for (let i = 0; i < 3; i++) t.equal((await request(agent, `http://${VIP.mirrored}/percent/skip-${i}`)).status, 200);
  r = 0.39;
  for (let i = 0; i < 3; i++) t.equal((await request(agent, `http://${VIP.mirrored}/percent/take-${i}`)).status, 200);
  await until('the three mirrored requests', () => urls(recB, '/percent/').length >= 3);
  t.same(urls(recB, '/percent/').sort(), ['/percent/take-0', '/percent/take-1', '/percent/take-2'], 'percent: 40');
  r = 0.5;
});

/** A request whose body goes out in `chunks` pieces, chunked (no Content-Length): a streaming body. */
function streamingPost(url: string, chunks: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    let i = 0;
    const next = (): void => {
      while (i < chunks.length) if (!req.write(chunks[i++]!)) return void req.once('drain', next);
      req.end();
    };
    next();
  });
}

t.test('RequestMirror of a streaming body: each mirror gets the whole body, as the backend does', async (t) => {
  const chunks = Array.from({ length: 20 }, (_, i) => Buffer.from(`chunk ${i};`.repeat(100)));
  const whole = Buffer.concat(chunks).toString();
  const res = await streamingPost(`http://${VIP.mirrored}/mirror/stream`, chunks);
  t.equal(res.status, 200);
  const seen = JSON.parse(res.body) as { name: string; headers: Record<string, string>; body: string };
  t.equal(seen.name, 'echo', "the rule's backend answered");
  t.equal(seen.headers['transfer-encoding'], 'chunked', 'the request was streamed (chunked, no Content-Length)');
  t.equal(seen.body, whole, 'the backend got the whole body');
  for (const [name, rec] of [['mirror-a', recA], ['mirror-b', recB]] as const) {
    const copy = await until(`${name} to see the streamed request`, () => rec.seen.find((s) => s.url === '/mirror/stream'));
    t.equal(copy.body, whole, `${name} got the whole body`);
  }
});

t.test('RequestMirror of a streaming body: a mirror that reads nothing neither blocks the primary nor keeps its copy', async (t) => {
  // 32 MiB in 64 KiB chunks: far more than the mirror's bound plus what the path to the stalled
  // mirror absorbs (HBONE stream windows of 4 MiB, socket buffers: about 8 MiB here), so the
  // copy must be dropped for the primary to finish.
  const size = 32 * MIRROR_BUFFER_BYTES;
  const chunks = Array.from({ length: size / 65536 }, (_, i) => Buffer.alloc(65536, 97 + (i % 26)));
  const res = await streamingPost(`http://${VIP.mirrored}/stalled/big`, chunks);
  t.equal(res.status, 200, 'the primary is answered');
  const seen = JSON.parse(res.body) as { name: string; body: string };
  t.equal(seen.name, 'echo');
  t.equal(seen.body.length, size, 'the primary backend got every byte');
  // Only now does the mirror read: what the path to it held, then the end of its request. A copy
  // dropped at the bound ends short and aborted; without the bound it would be whole.
  const copy = await until('the stalled mirror to have its request', () => stalledSeen.find((s) => s.url === '/stalled/big'));
  copy.resume();
  await until('the stalled mirror to see its request end', () => copy.closed);
  t.equal(copy.complete, false, 'the copy did not end as a whole body: its request was aborted');
  t.ok(copy.bytes < size, `the stalled mirror read ${copy.bytes} of ${size} bytes`);
  // The waypoint keeps mirroring afterwards.
  const after = await streamingPost(`http://${VIP.mirrored}/mirror/after`, [Buffer.from('a'), Buffer.from('b')]);
  t.equal(after.status, 200);
  await until('mirror-a to see the next streamed request', () => recA.seen.find((s) => s.url === '/mirror/after' && s.body === 'ab'));
});
