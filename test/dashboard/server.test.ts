/**
 * dashboard/server.ts with real exporters on loopback (a good one, garbage, 10 MB, one that never
 * finishes, a refused port) behind a MeshSource written here (the lab's own source needs root and
 * a lab: test/dashboard/e2e.test.ts): the bad sources are stale with their codes, the good one stays
 * live, events keep coming, the page and an edge's access-log lines are served, and nothing crashes.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DashboardServer } from '../../dashboard/server.js';
import type { MeshSource, ScrapeSource } from '../../dashboard/lab-source.js';
import { fetchBounded } from '../../dashboard/scrape.js';
import type { Snapshot } from '../../dashboard/aggregate.js';
import { NO_TOPOLOGY } from '../../dashboard/topology.js';
import { silentLogger } from '../../core/telemetry/log.js';

const WEB = fileURLToPath(new URL('../../dist/dashboard/web/', import.meta.url));

t.test('bad sources are stale, the good one stays live, the server keeps serving', async (t) => {
  let requests = 0;
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    if (req.url === '/good') {
      requests += 10;
      return res.end(`istio_requests_total{reporter="waypoint",source_workload="client",source_workload_namespace="demo",destination_service_name="web",destination_service_namespace="demo",destination_workload="web",destination_workload_namespace="demo",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} ${requests}\n`);
    }
    if (req.url === '/garbage') return res.end('<html><body>login required</body></html>\n');
    if (req.url === '/big') return res.end(Buffer.alloc(10 * 1024 * 1024, 'x'));
    if (req.url === '/slow') return void res.write('istio_requests_total 1\n');
    res.statusCode = 404;
    res.end();
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const gone = net.createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const gonePort = (gone.address() as net.AddressInfo).port;
  await new Promise<void>((r) => gone.close(() => r()));

  const dir = t.testdir();
  const log = join(dir, 'waypoint.log');
  await writeFile(log, [
    JSON.stringify({ time: '2026-01-01T00:00:01Z', scope: 'access', msg: 'request complete', status: 200, src: { workload: 'client', namespace: 'demo' }, dst: { service: 'web.demo.svc.cluster.local' } }),
    JSON.stringify({ time: '2026-01-01T00:00:02Z', scope: 'access', msg: 'request complete', status: 200, src: { workload: 'other', namespace: 'demo' }, dst: { service: 'db.demo.svc.cluster.local' } }),
    'not json',
  ].join('\n'));
  const src = (id: string, path: string, url = `${base}${path}`): ScrapeSource => ({ id, kind: id === 'good' ? 'waypoint' : 'ztunnel', url, ...(id === 'good' ? { waypoint: { namespace: 'demo', name: 'wp' } } : {}), fetch: (limits) => fetchBounded(url, {}, limits) });
  const source: MeshSource = {
    where: 'loopback exporters',
    refresh: async () => ({
      sources: [src('good', '/good'), src('garbage', '/garbage'), src('big', '/big'), src('slow', '/slow'), src('refused', '', `http://127.0.0.1:${gonePort}/metrics`)],
      topology: { ...NO_TOPOLOGY, accessLogs: [{ file: log, waypoint: 'wp:demo/wp' }] },
    }),
    close: async () => undefined,
  };
  const d = new DashboardServer({ source, host: '127.0.0.1', port: 0, tickMs: 300, windowMs: 2000, limits: { maxBytes: 1024 * 1024, timeoutMs: 250 }, webDir: WEB, logger: silentLogger });
  t.teardown(async () => {
    await d.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const url = await d.start();

  // The page's events: wait for a snapshot whose good edge has a rate (two scrapes of /good).
  const snap = await new Promise<Snapshot>((resolve, reject) => {
    const req = http.get(`${url}events`, (res) => {
      t.equal(res.headers['content-type'], 'text/event-stream');
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(ev)?.[1];
          if (!ev.includes('event: snapshot') || !data) continue;
          const s = JSON.parse(data) as Snapshot;
          if (s.edges.some((e) => e.rps > 0)) {
            req.destroy();
            resolve(s);
          }
        }
      });
    });
    req.on('error', reject);
  });
  const by = new Map(snap.sources.map((s) => [s.id, s]));
  t.equal(by.get('good')?.stale, false, 'the good exporter is live');
  t.match(by.get('garbage'), { stale: true, error: /not prometheus text/ });
  t.match(by.get('big'), { stale: true, error: /more than 1048576 bytes/ });
  t.match(by.get('slow'), { stale: true, error: /no complete answer in 250 ms/ });
  t.match(by.get('refused'), { stale: true, error: /ECONNREFUSED/ });
  const e = snap.edges.find((x) => x.id === 'wl:demo/client->wp:demo/wp');
  t.ok(e && e.rps > 0 && e.mtls === true, 'the good source\'s edge has a rate and mTLS');

  const page = await fetch(url);
  t.equal(page.status, 200);
  t.match(await page.text(), /<script src="app.js">/, 'the built page');
  t.equal((await fetch(`${url}app.js`)).status, 200, 'the bundle is served from dist/');
  t.equal((await fetch(`${url}../../package.json`)).status, 404, 'nothing outside the page');
  const logs = (await (await fetch(`${url}api/edge-logs?source=${encodeURIComponent('wl:demo/client')}&target=${encodeURIComponent('wp:demo/wp')}`)).json()) as { lines: string[] };
  t.equal(logs.lines.length, 1, 'the edge\'s access-log line, not the other one');
  t.match(logs.lines[0], /web\.demo\.svc/);
  const again = (await (await fetch(`${url}api/snapshot`)).json()) as Snapshot;
  t.ok(again.at >= snap.at, 'still ticking with four bad sources');
});
