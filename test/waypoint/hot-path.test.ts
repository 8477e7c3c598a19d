/**
 * What the per-request fast path (docs/waypoint.md, "Performance") must keep, end to end through
 * ztunnel A → waypoint → ztunnel B → backend on real sockets:
 * - request headers go upstream as a flat list (forward.ts): proxy headers appended to the
 *   client's, `Connection`-named and hop-by-hop headers dropped, repeated headers kept;
 * - response bodies are written without `pipe` (downstream.ts): backpressure and byte counts hold;
 * - HTTP/1.1 requests share one abort signal per tunnelled connection (downstream.ts): a client
 *   that goes away still cancels the upstream request, and many requests on one connection
 *   leave no listeners or warnings behind.
 */
import t from 'tap';
import http from 'node:http';
import { createHash } from 'node:crypto';
import type net from 'node:net';
import { closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.21.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the backend, .30 = the waypoint, .100 = the service VIP.
const base = '127.0.21';
const CLIENT = `${base}.10`;
const VIP = `${base}.100`;
const BIG = 8 * 1024 * 1024;
const bigBody = Buffer.alloc(BIG, 'abcdefghijklmnopqrstuvwxyz');
const bigHash = createHash('sha256').update(bigBody).digest('hex');

/** Requests to `/hold` stay unanswered; `held` resolves with the backend's view of each one. */
const holds: Array<(closedEarly: boolean) => void> = [];
const held: Array<Promise<boolean>> = [];
const echo = await backend(`${base}.21`, 8080, 'echo', (req, res) => {
  if (req.url === '/big') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG) });
    // Several writes, so the waypoint sees a stream of chunks faster than the client reads.
    for (let off = 0; off < BIG; off += 256 * 1024) res.write(bigBody.subarray(off, off + 256 * 1024));
    res.end();
    return true;
  }
  if (req.url === '/hold') {
    held.push(
      new Promise<boolean>((resolve) => {
        holds.push(resolve);
        res.once('close', () => resolve(!res.writableEnded));
      }),
    );
    return true;
  }
  return false;
});

const wm = await startWaypointMesh({
  dir: t.testdir(),
  base,
  workloads: [{ name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo' } }],
  config: {
    services: [
      { name: 'echo', namespace: 'default', vips: [VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'echo' }, waypoint: { address: `${base}.30` } },
    ],
  },
});
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
const warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);
process.on('warning', onWarning);
t.teardown(async () => {
  process.off('warning', onWarning);
  agent.destroy();
  await wm.close();
  await closeServer(echo.server as unknown as net.Server);
});

t.test('request headers upstream: proxy headers appended, hop-by-hop and Connection-named ones dropped, repeats kept', async (t) => {
  const got = await new Promise<{ headers: http.IncomingHttpHeaders; raw: string[] }>((resolve, reject) => {
    const req = http.request(
      `http://${VIP}/headers`,
      {
        agent,
        // An array of pairs keeps repeated names as separate lines on the wire.
        headers: [
          ['host', VIP],
          ['x-forwarded-for', '10.0.0.1'],
          ['x-forwarded-proto', 'https'],
          ['connection', 'keep-alive, x-drop-me'],
          ['x-drop-me', '1'],
          ['keep-alive', 'timeout=5'],
          ['x-multi', 'a'],
          ['x-multi', 'b'],
          ['set-cookie', 'c=1'],
          ['set-cookie', 'd=2'],
          ['te', 'trailers, deflate'],
        ] as unknown as http.OutgoingHttpHeaders,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}: ${body} ${JSON.stringify(res.headers)}`));
          const seen = JSON.parse(body) as { headers: http.IncomingHttpHeaders };
          resolve({ headers: seen.headers, raw: [] });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
  const h = got.headers;
  t.equal(h['x-forwarded-for'], `10.0.0.1, ${CLIENT}`, "the client's address is appended to its X-Forwarded-For");
  t.equal(h['x-forwarded-proto'], 'https', "the client's X-Forwarded-Proto is kept");
  t.equal(h['host'], VIP, 'Host is the authority the client sent');
  t.equal(h['x-drop-me'], undefined, 'a header the Connection header names is dropped');
  t.equal(h['keep-alive'], undefined, 'hop-by-hop Keep-Alive is dropped');
  t.equal(h['x-multi'], 'a, b', 'a repeated header arrives with both values');
  t.same(h['set-cookie'], ['c=1', 'd=2'], 'repeated Set-Cookie lines stay separate');
  t.equal(h['te'], 'trailers', 'TE survives only as trailers');
  t.equal(h['connection'], 'keep-alive', 'the upstream connection is keep-alive');

  const plain = JSON.parse((await request(agent, `http://${VIP}/headers`)).body) as { headers: http.IncomingHttpHeaders };
  t.equal(plain.headers['x-forwarded-for'], CLIENT, 'without one from the client, X-Forwarded-For is the client address');
  t.equal(plain.headers['x-forwarded-proto'], 'http', 'without one from the client, X-Forwarded-Proto is http');
});

t.test('an 8 MiB response to a slow reader arrives whole (backpressure without pipe)', async (t) => {
  const { hash, bytes } = await new Promise<{ hash: string; bytes: number }>((resolve, reject) => {
    const req = http.request(`http://${VIP}/big`, { agent }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      // Read nothing at first, until this end is full (its buffer at the high-water mark, so it
      // stops reading its socket): the waypoint's writes to the tunnel then return false and it
      // must pause. Then read everything.
      res.pause();
      until('the client to stop reading (its buffer full)', () => res.readableLength >= res.readableHighWaterMark).then(() => {
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          h.update(c);
        });
        res.resume();
      }, reject);
      res.on('end', () => resolve({ hash: h.digest('hex'), bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  t.equal(bytes, BIG, 'every byte arrived');
  t.equal(hash, bigHash, 'in order and intact');
  const m = await wm.waypoint.metrics.registry.getSingleMetric('istio_response_bytes')?.get();
  const sum = m?.values.find((v) => (v as { metricName?: string }).metricName === 'istio_response_bytes_sum' && String(v.labels['response_code']) === '200');
  t.ok(sum && sum.value >= BIG, `the response bytes were counted (${sum?.value})`);
});

t.test('many requests on one kept-alive connection, then the client leaves mid-request: the upstream request is cancelled', async (t) => {
  const one = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
  (one as unknown as { maxSockets: number }).maxSockets = 1;
  t.teardown(() => one.destroy());
  const sockets = new Set<unknown>();
  for (let i = 0; i < 40; i++) {
    const r = await new Promise<number>((resolve, reject) => {
      const req = http.request(`http://${VIP}/n${i}`, { agent: one }, (res) => {
        sockets.add(req.socket);
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    if (r !== 200) t.fail(`request ${i} got ${r}`);
  }
  t.equal(sockets.size, 1, 'all 40 requests used one client connection (one tunnel)');
  const before = held.length;
  const req = http.request(`http://${VIP}/hold`, { agent: one });
  req.on('error', () => {});
  req.end();
  await until('the held request to reach the backend', () => held.length > before, { timeoutMs: 5000 }).catch(() => undefined);
  t.equal(held.length, before + 1, 'the held request reached the backend');
  req.destroy();
  const closedEarly = await Promise.race([held[before]!, new Promise<string>((r) => setTimeout(() => r('timeout'), 5000))]);
  t.equal(closedEarly, true, 'the backend saw its request cancelled before it answered');
  t.same(
    warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
    [],
    'no listener leaked (no MaxListenersExceededWarning)',
  );
});
