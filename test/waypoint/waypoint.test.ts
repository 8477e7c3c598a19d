import t from 'tap';
import type http from 'node:http';
import { request as httpRequest } from 'node:http';
import { once } from 'node:events';
import { closeServer, readAll, socks5Connect } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request, startWaypointMesh, WAYPOINT_ID } from './fixture.js';

// Loopback addresses of this file: 127.0.7.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21/.22/.23 = backends, .30 = the waypoint, .100-.106 = service VIPs.
const base = '127.0.7';
const CLIENT = `${base}.10`;
const VIP = {
  echo: `${base}.100`,
  v1: `${base}.101`,
  v2: `${base}.102`,
  flaky: `${base}.103`,
  faults: `${base}.104`,
  plain: `${base}.105`,
  nr: `${base}.106`,
  broken: `${base}.107`,
  empty: `${base}.108`,
  down: `${base}.109`,
};
const WAYPOINT = { address: `${base}.30` };
const port80 = [{ port: 80, targetPort: 8080, name: 'http' }];

const workloads = [
  { name: 'echo-v1', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'default', serviceAccount: 'echo', node: 'node-a', ips: [`${base}.22`], labels: { app: 'echo', version: 'v2' } },
  { name: 'flaky', namespace: 'default', serviceAccount: 'flaky', node: 'node-b', ips: [`${base}.23`], labels: { app: 'flaky' } },
];
const services = [
  { name: 'echo', namespace: 'default', vips: [VIP.echo], ports: port80, selector: { app: 'echo' }, waypoint: WAYPOINT },
  { name: 'echo-v1', namespace: 'default', vips: [VIP.v1], ports: port80, selector: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'default', vips: [VIP.v2], ports: port80, selector: { app: 'echo', version: 'v2' } },
  { name: 'flaky', namespace: 'default', vips: [VIP.flaky], ports: port80, selector: { app: 'flaky' }, waypoint: WAYPOINT },
  { name: 'faults', namespace: 'default', vips: [VIP.faults], ports: port80, selector: { app: 'echo', version: 'v1' }, waypoint: WAYPOINT },
  { name: 'plain', namespace: 'default', vips: [VIP.plain], ports: port80, selector: { app: 'echo', version: 'v1' } },
  { name: 'nr', namespace: 'default', vips: [VIP.nr], ports: port80, selector: { app: 'echo', version: 'v1' }, waypoint: WAYPOINT },
  // Bad input: routes to nowhere, no endpoints, an endpoint that refuses connections.
  { name: 'broken', namespace: 'default', vips: [VIP.broken], ports: port80, selector: { app: 'echo', version: 'v1' }, waypoint: WAYPOINT },
  { name: 'empty', namespace: 'default', vips: [VIP.empty], ports: port80, selector: { app: 'nobody' }, waypoint: WAYPOINT },
  { name: 'down', namespace: 'default', vips: [VIP.down], ports: [{ port: 80, targetPort: 8099 }], selector: { app: 'echo', version: 'v1' }, waypoint: WAYPOINT },
];
const to = (host: string) => [{ destination: { host } }];
const config = {
  services,
  httpRoutes: [
    {
      name: 'echo-split',
      namespace: 'default',
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
        rules: [
          { matches: [{ headers: [{ name: 'x-version', value: 'v2' }] }], backendRefs: [{ name: 'echo-v2', port: 80 }] },
          {
            filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-routed', value: 'split' }] } }],
            backendRefs: [
              { name: 'echo-v1', port: 80, weight: 90 },
              { name: 'echo-v2', port: 80, weight: 10 },
            ],
          },
        ],
      },
    },
    {
      name: 'broken',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', name: 'broken' }],
        rules: [
          { matches: [{ path: { type: 'PathPrefix', value: '/missing' } }], backendRefs: [{ name: 'does-not-exist', port: 80 }] },
          { matches: [{ path: { type: 'PathPrefix', value: '/zero' } }], backendRefs: [{ name: 'echo-v1', port: 80, weight: 0 }] },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
            filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
            filters: [
              { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } },
              { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-rewritten', value: 'yes' }], remove: ['x-secret'] } },
            ],
            backendRefs: [{ name: 'echo-v1', port: 80 }],
          },
        ],
      },
    },
    {
      name: 'only-path',
      namespace: 'default',
      spec: { parentRefs: [{ kind: 'Service', name: 'nr' }], rules: [{ matches: [{ path: { type: 'Exact', value: '/only' } }], backendRefs: [{ name: 'nr', port: 80 }] }] },
    },
  ],
  virtualServices: [
    { name: 'flaky', namespace: 'default', spec: { hosts: ['flaky'], http: [{ route: to('flaky'), retries: { attempts: 2, retryOn: '5xx' } }] } },
    {
      name: 'faults',
      namespace: 'default',
      spec: {
        hosts: ['faults.default.svc.cluster.local'],
        http: [
          { match: [{ uri: { prefix: '/abort' } }], fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: to('faults') },
          { match: [{ uri: { prefix: '/half' } }], fault: { abort: { httpStatus: 503, percentage: { value: 50 } } }, route: to('faults') },
          { match: [{ uri: { prefix: '/delay' } }], fault: { delay: { fixedDelay: '300ms', percentage: { value: 100 } } }, route: to('faults') },
          { match: [{ uri: { prefix: '/slow' } }], timeout: '300ms', route: to('faults') },
          { route: to('faults') },
        ],
      },
    },
  ],
  authorizationPolicies: [
    {
      name: 'deny-admin-post',
      namespace: 'default',
      spec: {
        targetRefs: [{ kind: 'Service', group: '', name: 'echo' }],
        action: 'DENY',
        rules: [{ to: [{ operation: { methods: ['POST'], paths: ['/admin*'] } }] }],
      },
    },
  ],
};

const slow = (req: http.IncomingMessage, res: http.ServerResponse) => {
  if (!req.url?.startsWith('/slow')) return false;
  // The slow backend itself (what route timeouts are tested against), not a synchronisation.
  const timer = setTimeout(() => res.end('late'), 2000);
  res.on('close', () => clearTimeout(timer));
  return true;
};
const v1 = await backend(`${base}.21`, 8080, 'echo-v1', slow);
const v2 = await backend(`${base}.22`, 8080, 'echo-v2');
// Fails every other request: the retry policy must hide it.
const flaky = await backend(`${base}.23`, 8080, 'flaky', (_req, res, n) => {
  if (n % 2 === 1) {
    res.writeHead(503).end('flaky says no');
    return true;
  }
  return false;
});
// Upgrade: answers 101 and echoes the bytes that follow.
for (const b of [v1, v2]) {
  b.server.on('upgrade', (req: http.IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${req.headers.upgrade}\r\nconnection: Upgrade\r\nx-backend: ${req === undefined ? '' : b === v1 ? 'echo-v1' : 'echo-v2'}\r\n\r\n`);
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
}
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await Promise.all([v1, v2, flaky].map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

async function waypointCount(labels: Record<string, string>): Promise<number> {
  const m = await wm.waypoint.metrics.registry.getSingleMetric('istio_requests_total')?.get();
  let sum = 0;
  for (const v of m?.values ?? []) if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) sum += v.value;
  return sum;
}

t.test('a 90/10 split over 2,000 requests lands within statistical bounds', async (t) => {
  const N = 2000;
  const counts: Record<string, number> = {};
  let routed = 0;
  for (let i = 0; i < N; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => request(agent, `http://${VIP.echo}/split`)));
    for (const r of batch) {
      const name = String(r.headers['x-backend']);
      counts[name] = (counts[name] ?? 0) + 1;
      if (r.headers['x-routed'] === 'split') routed++;
    }
  }
  const v2n = counts['echo-v2'] ?? 0;
  // Binomial(2000, 0.1): mean 200, sd 13.4; 5 sd either side fails about once in 3.5 million runs.
  t.ok(v2n >= 133 && v2n <= 267, `echo-v2 got ${v2n} of ${N} (expected 200 ± 67)`);
  t.equal((counts['echo-v1'] ?? 0) + v2n, N, 'every request reached one of the two backends');
  t.equal(routed, N, 'the ResponseHeaderModifier of the rule set x-routed on every response');
});

t.test('a header match routes to its backend', async (t) => {
  for (let i = 0; i < 20; i++) {
    const r = await request(agent, `http://${VIP.echo}/`, { headers: { 'x-version': 'v2' } });
    if (r.headers['x-backend'] !== 'echo-v2') t.fail(`request ${i} went to ${String(r.headers['x-backend'])}`);
  }
  const r = await request(agent, `http://${VIP.echo}/headers`, { headers: { 'x-version': 'v2' } });
  const seen = JSON.parse(r.body) as { headers: Record<string, string> };
  t.equal(seen.headers['x-forwarded-for'], CLIENT, 'the backend sees the client address in X-Forwarded-For');
  t.equal(seen.headers['host'], VIP.echo, 'the Host header is the one the client sent');
});

t.test('L7 DENY on POST /admin* returns 403 while GET passes', async (t) => {
  const post = await request(agent, `http://${VIP.echo}/admin/users`, { method: 'POST', body: 'x' });
  t.equal(post.status, 403);
  t.equal(post.body, 'RBAC: access denied');
  const get = await request(agent, `http://${VIP.echo}/admin/users`);
  t.equal(get.status, 200, 'GET /admin/users passes');
  const other = await request(agent, `http://${VIP.echo}/other`, { method: 'POST', body: 'hello' });
  t.equal(other.status, 200, 'POST elsewhere passes');
  t.equal((JSON.parse(other.body) as { body: string }).body, 'hello', 'the request body arrives');
  t.ok((await waypointCount({ response_code: '403', response_flags: 'RBAC' })) >= 1, 'the denial is counted with RBAC');
});

t.test('fault abort: 100% answers 503 FI; 50% lands within bounds', async (t) => {
  const r = await request(agent, `http://${VIP.faults}/abort`);
  t.equal(r.status, 503);
  t.equal(r.body, 'fault filter abort');
  const hitsBefore = v1.hits();
  let aborted = 0;
  const N = 400;
  for (let i = 0; i < N; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => request(agent, `http://${VIP.faults}/half`)));
    aborted += batch.filter((x) => x.status === 503).length;
  }
  // Binomial(400, 0.5): mean 200, sd 10.
  t.ok(aborted >= 150 && aborted <= 250, `${aborted} of ${N} aborted (expected 200 ± 50)`);
  t.equal(v1.hits() - hitsBefore, N - aborted, 'aborted requests never reached the backend');
  t.equal(await waypointCount({ response_code: '503', response_flags: 'FI', destination_service: 'faults.default.svc.cluster.local' }), aborted + 1);
});

t.test('fault delay adds the delay', async (t) => {
  const fast = await request(agent, `http://${VIP.faults}/`);
  const r = await request(agent, `http://${VIP.faults}/delay`);
  t.equal(r.status, 200);
  t.ok(r.ms >= 290, `a delayed request took ${r.ms.toFixed(1)} ms (fixedDelay 300ms; an undelayed one took ${fast.ms.toFixed(1)} ms)`);
});

t.test('a route timeout answers 504 UT', async (t) => {
  const r = await request(agent, `http://${VIP.faults}/slow`);
  t.equal(r.status, 504);
  t.equal(r.body, 'upstream request timeout');
  t.ok(r.ms >= 290 && r.ms < 1900, `answered after ${r.ms.toFixed(0)} ms, not after the backend's 2 s`);
  t.ok((await waypointCount({ response_code: '504', response_flags: 'UT' })) >= 1);
});

t.test('a retry policy hides a backend that fails every other request', async (t) => {
  const before = flaky.hits();
  for (let i = 0; i < 10; i++) {
    const r = await request(agent, `http://${VIP.flaky}/`);
    t.equal(r.status, 200, `request ${i}`);
  }
  t.equal(flaky.hits() - before, 20, 'each request took two tries');
});

t.test('a request no rule matches gets 404 NR', async (t) => {
  const r = await request(agent, `http://${VIP.nr}/elsewhere`);
  t.equal(r.status, 404);
  t.ok((await waypointCount({ response_code: '404', response_flags: 'NR' })) >= 1);
});

t.test('metrics: reporter="waypoint" with response codes, principals and services', async (t) => {
  const ok = await waypointCount({
    reporter: 'waypoint',
    response_code: '200',
    source_principal: 'spiffe://cluster.local/ns/default/sa/client',
    source_workload: 'client',
    destination_principal: 'spiffe://cluster.local/ns/default/sa/echo',
    destination_service: 'echo-v1.default.svc.cluster.local',
    connection_security_policy: 'mutual_tls',
  });
  t.ok(ok > 500, `${ok} requests to echo-v1 counted`);
  const text = await wm.waypoint.metrics.registry.metrics();
  t.match(text, /istio_request_duration_milliseconds_bucket\{[^}]*reporter="waypoint"/);
  t.match(text, /istio_response_bytes_sum\{[^}]*response_code="200"/);
  t.match(text, /istio_request_bytes_count/);
  // The destination ztunnel saw the waypoint, not the client, as its peer.
  const fromWaypoint = await wm.mesh.b.metrics.registry.getSingleMetric('istio_tcp_connections_opened_total')?.get();
  t.ok(fromWaypoint?.values.some((v) => v.labels['source_principal'] === WAYPOINT_ID), 'node-b counted HBONE connections from the waypoint identity');
});

t.test('a service without a waypoint is untouched', async (t) => {
  const before = await waypointCount({ destination_service: 'plain.default.svc.cluster.local' });
  const r = await request(agent, `http://${VIP.plain}/x`);
  t.equal(r.status, 200);
  t.equal(r.headers['x-backend'], 'echo-v1');
  t.equal(await waypointCount({ destination_service: 'plain.default.svc.cluster.local' }), before, 'the waypoint never saw it');
  t.equal((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-forwarded-for'], undefined, 'no proxy headers were added');
});

t.test('/config_dump shows route status', async (t) => {
  const dump = wm.waypoint.configDump() as { routeStatus: Array<{ name: string; conditions: Array<{ type: string; status: string }> }> };
  const split = dump.routeStatus.find((r) => r.name === 'echo-split');
  t.same(split?.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'ResolvedRefs=True']);
});

t.test('redirects, rewrites and header modifiers', async (t) => {
  const r = await request(agent, `http://${VIP.broken}/old/page?q=1`);
  t.equal(r.status, 301);
  t.equal(r.headers['location'], `http://${VIP.broken}/new/page?q=1`);
  const rw = await request(agent, `http://${VIP.broken}/api/users?x=1`, { headers: { 'x-secret': 's' } });
  const seen = JSON.parse(rw.body) as { url: string; headers: Record<string, string> };
  t.equal(seen.url, '/v2/users?x=1', 'ReplacePrefixMatch');
  t.equal(seen.headers['x-rewritten'], 'yes');
  t.equal(seen.headers['x-secret'], undefined);
});

t.test('bad routes and backends get clear statuses, never a crash', async (t) => {
  const missing = await request(agent, `http://${VIP.broken}/missing`);
  t.equal(missing.status, 500, 'a backend that does not exist: 500');
  const zero = await request(agent, `http://${VIP.broken}/zero`);
  t.equal(zero.status, 500, 'weights that sum to zero: 500');
  const empty = await request(agent, `http://${VIP.empty}/`);
  t.equal(empty.status, 503, 'no endpoint: 503');
  t.equal(empty.body, 'no healthy upstream');
  const down = await request(agent, `http://${VIP.down}/`);
  t.equal(down.status, 503, 'endpoint refuses: 503');
  t.ok((await waypointCount({ response_flags: 'UH' })) >= 1, 'UH counted');
  t.ok((await waypointCount({ response_flags: 'URX,UF' })) >= 1, 'a refused endpoint is retried (Istio default), then URX,UF');
  const dump = wm.waypoint.configDump() as { routeStatus: Array<{ name: string; conditions: Array<{ type: string; status: string; message?: string }> }> };
  const st = dump.routeStatus.find((x) => x.name === 'broken')?.conditions.find((c) => c.type === 'ResolvedRefs');
  t.equal(st?.status, 'False');
  t.match(st?.message, /does-not-exist not found.*weight 0/);
});

async function raw(bytes: string): Promise<string> {
  const { reply, socket } = await socks5Connect({ proxy: { host: wm.mesh.addr.a, port: 15080 }, localAddress: CLIENT, host: VIP.echo, port: 80 });
  if (reply !== 0) throw new Error(`socks5 reply ${reply}`);
  socket.write(bytes);
  const timer = setTimeout(() => socket.destroy(), 3000);
  const out = (await readAll(socket)).toString();
  clearTimeout(timer);
  socket.destroy();
  return out;
}

t.test('HTTP/1.1 Upgrade (WebSocket-style) passes through, routed and authorized', async (t) => {
  const up = await new Promise<{ res: http.IncomingMessage; socket: import('node:net').Socket }>((resolve, reject) => {
    const req = httpRequest(`http://${VIP.echo}/ws`, { agent, headers: { connection: 'Upgrade', upgrade: 'echo', 'x-version': 'v2' } });
    req.on('upgrade', (res, socket) => resolve({ res, socket }));
    req.on('response', (res) => reject(new Error(`got ${res.statusCode} instead of an upgrade`)));
    req.on('error', reject);
    req.end();
  });
  t.equal(up.res.statusCode, 101);
  t.equal(up.res.headers['x-backend'], 'echo-v2', 'the header match chose the backend');
  up.socket.write('ping over the upgraded tunnel');
  const [d] = (await once(up.socket, 'data')) as [Buffer];
  t.equal(d.toString(), 'ping over the upgraded tunnel');
  up.socket.destroy();
});

t.test('malformed HTTP gets 400/431 and the tunnel is closed', async (t) => {
  agent.destroy();
  // The destroyed agent's tunnels close at the waypoint: then the count below starts from none.
  await until('the closed client tunnels to leave the waypoint', () => wm.waypoint.openStreams === 0);
  const before = wm.waypoint.openStreams;
  t.match(await raw('GET / HXXP/1.1\r\n\r\n'), /^HTTP\/1\.1 400/, 'bad request line');
  t.match(await raw('GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx'), /^HTTP\/1\.1 400/, 'conflicting Content-Length');
  t.match(await raw(`GET / HTTP/1.1\r\nhost: a\r\nx-big: ${'a'.repeat(70 * 1024)}\r\n\r\n`), /^HTTP\/1\.1 431/, 'oversized headers');
  const ok = await raw('GET /fine HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
  t.match(ok, /^HTTP\/1\.1 200/, 'a well-formed request on a new tunnel still works');
  await until('the malformed requests\' tunnels to close', () => wm.waypoint.openStreams <= before, { timeoutMs: 3000 }).catch(() => undefined);
  t.equal(wm.waypoint.openStreams, before, 'no tunnel leaked');
});
