/**
 * Backend protocol selection by the Service port's `appProtocol` (Gateway API GEP-1911; upstream
 * conformance HTTPRouteBackendProtocolH2C, conformance/tests/httproute-backend-protocol-h2c.go),
 * through the real waypoint, real HBONE and real ztunnels: an HTTP/1.1 client's requests to a
 * port with `appProtocol: kubernetes.io/h2c` reach an h2c-only backend (node:http2 without TLS,
 * which cannot read HTTP/1) as HTTP/2 with prior knowledge, through an HTTPRoute split too; the
 * same backend behind a port without it gets HTTP/1.1, which it refuses (the test's control).
 */
import http2 from 'node:http2';
import t from 'tap';
import { until } from '../helpers/until.js';
import { meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.159.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the h2c backend, .30 = the waypoint, .100-.102 = service VIPs.
const base = '127.0.159';
const CLIENT = `${base}.10`;
const VIP = { h2c: `${base}.100`, plain: `${base}.101`, routed: `${base}.102` };
const WAYPOINT = { address: `${base}.30` };

const workloads = [{ name: 'grpc-ish', namespace: 'default', serviceAccount: 'h2c', node: 'node-b', ips: [`${base}.21`], labels: { app: 'h2c' } }];
const config = {
  services: [
    { name: 'h2c', namespace: 'default', vips: [VIP.h2c], ports: [{ port: 80, targetPort: 8080, name: 'http', appProtocol: 'kubernetes.io/h2c' }], selector: { app: 'h2c' }, waypoint: WAYPOINT },
    { name: 'plain', namespace: 'default', vips: [VIP.plain], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'h2c' }, waypoint: WAYPOINT },
    // A port without appProtocol whose route sends to the h2c Service: the backend's port decides.
    { name: 'routed', namespace: 'default', vips: [VIP.routed], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'h2c' }, waypoint: WAYPOINT },
  ],
  httpRoutes: [{ name: 'to-h2c', namespace: 'default', spec: { parentRefs: [{ kind: 'Service', group: '', name: 'routed', port: 80 }], rules: [{ backendRefs: [{ name: 'h2c', port: 80 }] }] } }],
};

// The h2c-only backend: HTTP/2 without TLS, no HTTP/1 fallback (allowHTTP1 is for TLS servers);
// it answers with what it saw. Anything else on the socket is a bad preface and closes it.
let h1Refused = 0;
const server = http2.createServer();
server.on('stream', (stream, headers) => {
  let body = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => (body += d));
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-backend': 'h2c' });
    stream.end(JSON.stringify({ method: headers[':method'], path: headers[':path'], authority: headers[':authority'], scheme: headers[':scheme'], xff: headers['x-forwarded-for'], body }));
  });
});
server.on('sessionError', () => (h1Refused += 1));
await new Promise<void>((r) => server.listen(8080, `${base}.21`, r));
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await new Promise<void>((r) => server.close(() => r()));
});

t.test('HTTPRouteBackendProtocolH2C: an HTTP/1.1 request to an appProtocol kubernetes.io/h2c port reaches the backend over HTTP/2', async (t) => {
  const r = await request(agent, `http://${VIP.h2c}/h2c?x=1`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
  t.equal(r.status, 200);
  t.equal(r.headers['x-backend'], 'h2c');
  const seen = JSON.parse(r.body) as Record<string, string>;
  t.equal(seen.method, 'POST');
  t.equal(seen.path, '/h2c?x=1');
  t.equal(seen.authority, VIP.h2c, 'Host became :authority');
  t.equal(seen.scheme, 'http');
  t.equal(seen.body, 'hello', 'the body went over HTTP/2');
  t.equal(seen.xff, CLIENT, 'x-forwarded-for as for any request');
  // Keep-alive on the client side, one HTTP/2 session upstream: a second request works as well.
  t.equal((await request(agent, `http://${VIP.h2c}/again`)).status, 200);
});

t.test('through an HTTPRoute: the chosen backend port decides the protocol', async (t) => {
  const r = await request(agent, `http://${VIP.routed}/via-route`);
  t.equal(r.status, 200);
  t.equal((JSON.parse(r.body) as Record<string, string>).path, '/via-route');
});

t.test('control: the same backend behind a port without appProtocol gets HTTP/1.1, which it cannot read', async (t) => {
  const before = h1Refused;
  const r = await request(agent, `http://${VIP.plain}/plain`);
  t.ok(r.status >= 500, `the waypoint answers ${r.status}: the upstream closed the connection`);
  await until('the backend to refuse the HTTP/1.1 bytes', () => h1Refused > before);
  t.pass('the backend saw no HTTP/2 preface and refused the connection');
});
