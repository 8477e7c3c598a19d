/**
 * The HTTPRoute `CORS` filter (Gateway API GEP-1767) through the real waypoint, real HBONE and
 * real ztunnels, the cases of upstream conformance HTTPRouteCORS (conformance/tests/
 * httproute-cors.go) re-expressed for a Service parent: a preflight from an allowed origin
 * (exact, or matching a `*` pattern across dots) is answered by the waypoint with the policy's
 * headers and never reaches the backend; from another origin it passes on without CORS headers;
 * an actual request from an allowed origin gets `access-control-allow-origin` on its response;
 * `*` methods echo the requested one; no `allow-credentials` unless the policy sets it. And what
 * cannot be a CORS policy is refused when the route is converted, naming the field. A
 * VirtualService `corsPolicy` (Istio) works the same way, with StringMatch origins and
 * `unmatchedPreflights: IGNORE`.
 */
import t from 'tap';
import { closeServer } from '../helpers/net.js';
import { Problems } from '../../core/validation/check.js';
import { HttpRouteConverter } from '../../core/kube/routes/http-route.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.163.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the backend, .30 = the waypoint, .100/.101 = the service VIPs.
const base = '127.0.163';
const CLIENT = `${base}.10`;
const VIP = `${base}.100`;
const VS_VIP = `${base}.101`;
const WAYPOINT = { address: `${base}.30` };

const workloads = [{ name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo' } }];
const prefix = (value: string) => [{ path: { type: 'PathPrefix', value } }];
const cors = (c: Record<string, unknown>) => [{ type: 'CORS', cors: c }];
const to = [{ name: 'echo', port: 80 }];
const rules = [
  {
    matches: prefix('/cors-1'),
    filters: cors({
      allowOrigins: ['https://www.foo.com', 'https://*.bar.com'],
      allowMethods: ['GET', 'OPTIONS'],
      allowHeaders: ['x-header-1', 'x-header-2'],
      exposeHeaders: ['x-header-3', 'x-header-4'],
      allowCredentials: true,
      maxAge: 3600,
    }),
    backendRefs: to,
  },
  { matches: prefix('/cors-2'), filters: cors({ allowOrigins: ['https://www.foo.com'], allowMethods: ['*'], allowHeaders: ['*'] }), backendRefs: to },
  { matches: prefix('/cors-wildcard-origin'), filters: cors({ allowOrigins: ['*'], allowMethods: ['PUT'] }), backendRefs: to },
];
const config = {
  services: [
    { name: 'echo', namespace: 'default', vips: [VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'echo' }, waypoint: WAYPOINT },
    { name: 'vs', namespace: 'default', vips: [VS_VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'echo' }, waypoint: WAYPOINT },
  ],
  virtualServices: [
    {
      name: 'vs',
      namespace: 'default',
      spec: {
        hosts: ['vs'],
        http: [
          {
            corsPolicy: {
              allowOrigins: [{ prefix: 'https://app.' }, { regex: 'https://[a-z]+\\.example\\.org' }],
              allowMethods: ['GET', 'POST'],
              allowHeaders: ['x-a'],
              maxAge: '1m',
              allowCredentials: true,
              unmatchedPreflights: 'IGNORE',
            },
            route: [{ destination: { host: 'vs' } }],
          },
        ],
      },
    },
  ],
  httpRoutes: [{ name: 'cors', namespace: 'default', spec: { parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }], rules } }],
};

const echo = await backend(`${base}.21`, 8080, 'echo');
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await closeServer(echo.server as unknown as import('node:net').Server);
});

const preflight = (path: string, origin: string, method: string, headers?: string) =>
  request(agent, `http://${VIP}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, ...(headers ? { 'access-control-request-headers': headers } : {}) },
  });

t.test('a preflight from an allowed origin is answered by the waypoint with the policy', async (t) => {
  for (const origin of ['https://www.foo.com', 'https://www.bar.com', 'https://xpto.www.bar.com']) {
    const hits = echo.hits();
    const r = await preflight('/cors-1', origin, 'GET', 'x-header-1, x-header-2');
    t.equal(r.status, 200, origin);
    t.equal(r.headers['access-control-allow-origin'], origin, `${origin}: its origin allowed`);
    t.equal(r.headers['access-control-allow-methods'], 'GET, OPTIONS');
    t.equal(r.headers['access-control-allow-headers'], 'x-header-1, x-header-2');
    t.equal(r.headers['access-control-expose-headers'], 'x-header-3, x-header-4');
    t.equal(r.headers['access-control-max-age'], '3600');
    t.equal(r.headers['access-control-allow-credentials'], 'true');
    t.equal(echo.hits(), hits, 'the preflight did not reach the backend');
  }
});

t.test('a preflight from another origin passes on, without CORS headers', async (t) => {
  const hits = echo.hits();
  const r = await preflight('/cors-1', 'https://foobar.com', 'GET');
  t.equal(r.headers['access-control-allow-origin'], undefined);
  t.equal(r.headers['x-backend'], 'echo', 'the backend answered it');
  t.equal(echo.hits(), hits + 1);
});

t.test('an actual request from an allowed origin gets allow-origin on its response; another origin none', async (t) => {
  const ok = await request(agent, `http://${VIP}/cors-1`, { headers: { origin: 'https://www.bar.com' } });
  t.equal(ok.status, 200);
  t.equal(ok.headers['x-backend'], 'echo', 'forwarded');
  t.equal(ok.headers['access-control-allow-origin'], 'https://www.bar.com');
  t.equal(ok.headers['access-control-expose-headers'], 'x-header-3, x-header-4');
  t.equal(ok.headers['access-control-allow-credentials'], 'true');
  const other = await request(agent, `http://${VIP}/cors-1`, { headers: { origin: 'https://foobar.com' } });
  t.equal(other.status, 200);
  t.equal(other.headers['access-control-allow-origin'], undefined);
  const none = await request(agent, `http://${VIP}/cors-1`);
  t.equal(none.headers['access-control-allow-origin'], undefined, 'no Origin: no CORS headers');
});

t.test("'*' methods and headers echo the requested ones; no allow-credentials unless set", async (t) => {
  const r = await preflight('/cors-2', 'https://www.foo.com', 'POST', 'x-custom');
  t.equal(r.status, 200);
  t.equal(r.headers['access-control-allow-origin'], 'https://www.foo.com');
  t.equal(r.headers['access-control-allow-methods'], 'POST');
  t.equal(r.headers['access-control-allow-headers'], 'x-custom');
  t.equal(r.headers['access-control-allow-credentials'], undefined);
  t.equal(r.headers['access-control-max-age'], '5', "Gateway API's default maxAge");
});

t.test("a '*' origin allows any origin, a port included", async (t) => {
  for (const origin of ['https://foobar.com', 'https://foobar.com:12345']) {
    const p = await preflight('/cors-wildcard-origin', origin, 'PUT');
    t.equal(p.headers['access-control-allow-origin'], origin);
    t.equal(p.headers['access-control-allow-methods'], 'PUT');
    t.equal(p.headers['access-control-allow-credentials'], undefined);
    const r = await request(agent, `http://${VIP}/cors-wildcard-origin`, { method: 'PUT', headers: { origin } });
    t.equal(r.status, 200);
    t.equal(r.headers['access-control-allow-origin'], origin);
  }
});

t.test('what is not a CORS policy is refused, naming the field', async (t) => {
  const p = new Problems();
  new HttpRouteConverter(p).httpRoute(
    'bad',
    'default',
    {
      parentRefs: [{ kind: 'Service', name: 'echo' }],
      rules: [
        { filters: cors({ allowOrigins: ['www.foo.com'], allowMethods: ['GET POST'], maxAge: 0 }), backendRefs: to },
        { backendRefs: [{ name: 'echo', port: 80, filters: cors({ allowOrigins: ['*'] }) }] },
      ],
    },
    'httpRoutes[0].spec',
  );
  const text = p.list.join('\n');
  t.match(text, /allowOrigins\[0\].*"www\.foo\.com" is not an origin/);
  t.match(text, /allowMethods\[0\].*"GET POST" is not a method/);
  t.match(text, /maxAge/);
  t.match(text, /backendRefs\[0\]\.filters\[0\]\.type: "CORS" is not supported by the mesh on a backend/);
});

t.test('VirtualService corsPolicy: StringMatch origins, maxAge as a duration, unmatchedPreflights IGNORE', async (t) => {
  for (const origin of ['https://app.example.com', 'https://shop.example.org']) {
    const hits = echo.hits();
    const r = await request(agent, `http://${VS_VIP}/x`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
    t.equal(r.status, 200);
    t.equal(r.headers['access-control-allow-origin'], origin, `${origin} allowed`);
    t.equal(r.headers['access-control-allow-methods'], 'GET, POST');
    t.equal(r.headers['access-control-allow-headers'], 'x-a');
    t.equal(r.headers['access-control-max-age'], '60');
    t.equal(r.headers['access-control-allow-credentials'], 'true');
    t.equal(echo.hits(), hits, 'answered by the waypoint');
  }
  const hits = echo.hits();
  const ignored = await request(agent, `http://${VS_VIP}/x`, { method: 'OPTIONS', headers: { origin: 'https://evil.example.net', 'access-control-request-method': 'POST' } });
  t.equal(ignored.status, 200, 'IGNORE: an unmatched preflight is answered');
  t.equal(ignored.headers['access-control-allow-origin'], undefined, 'without CORS headers');
  t.equal(echo.hits(), hits, 'and not forwarded');
  const actual = await request(agent, `http://${VS_VIP}/x`, { headers: { origin: 'https://app.example.com' } });
  t.equal(actual.headers['x-backend'], 'echo');
  t.equal(actual.headers['access-control-allow-origin'], 'https://app.example.com');
});
