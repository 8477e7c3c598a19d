/**
 * The rest of upstream Gateway API's mesh (GAMMA) conformance suite that this waypoint serves,
 * re-expressed for Service-attached HTTPRoutes through the real waypoint, real HBONE and real
 * ztunnels; each case names its upstream test (kubernetes-sigs/gateway-api
 * `conformance/tests/mesh/*.go`, and the core `conformance/tests/httproute-*.go` whose behaviour
 * a mesh route shares). docs/waypoint.md ("Gateway API conformance") lists which hold.
 */
import t from 'tap';
import { closeServer } from '../helpers/net.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.155.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21/.22 = backends, .30 = the waypoint, .100-.103 = service VIPs.
const base = '127.0.155';
const CLIENT = `${base}.10`;
const VIP = { v1: `${base}.100`, v2: `${base}.101`, echo: `${base}.102`, match: `${base}.103` };
const WAYPOINT = { address: `${base}.30` };
const twoPorts = [
  { port: 80, targetPort: 8080, name: 'http' },
  { port: 8080, targetPort: 8080, name: 'http-alt' },
];

const workloads = [
  { name: 'echo-v1', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'default', serviceAccount: 'echo', node: 'node-a', ips: [`${base}.22`], labels: { app: 'echo', version: 'v2' } },
];
const svc = (name: string, vip: string, selector: Record<string, string>) => ({ name, namespace: 'default', vips: [vip], ports: twoPorts, selector, waypoint: WAYPOINT });
const setHeader = (value: string) => ({ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'X-Header-Set', value }] } });
const redirect = (path: string, requestRedirect: Record<string, unknown>) => ({
  matches: [{ path: { type: 'PathPrefix', value: path } }],
  filters: [{ type: 'RequestRedirect', requestRedirect }],
});
const to = (name: string) => [{ name, port: 80 }];
const config = {
  services: [svc('echo-v1', VIP.v1, { app: 'echo', version: 'v1' }), svc('echo-v2', VIP.v2, { app: 'echo', version: 'v2' }), svc('echo', VIP.echo, { app: 'echo' }), svc('match', VIP.match, { app: 'echo' })],
  httpRoutes: [
    // MeshPorts: parentRef port 80 applies on 80 only; no port applies on every port.
    { name: 'v1-port-80', namespace: 'default', spec: { parentRefs: [{ kind: 'Service', group: '', name: 'echo-v1', port: 80 }], rules: [{ filters: [setHeader('v1')], backendRefs: to('echo-v1') }] } },
    { name: 'v2-any-port', namespace: 'default', spec: { parentRefs: [{ kind: 'Service', group: '', name: 'echo-v2' }], rules: [{ filters: [setHeader('v2')], backendRefs: to('echo-v2') }] } },
    {
      name: 'redirects',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }],
        rules: [
          redirect('/port', { port: 8083 }),
          redirect('/port-and-host', { hostname: 'example.org', port: 8083 }),
          redirect('/port-and-status', { port: 8083, statusCode: 301 }),
          redirect('/scheme', { scheme: 'https' }),
          redirect('/scheme-and-host', { scheme: 'https', hostname: 'example.org' }),
          redirect('/scheme-and-status', { scheme: 'https', statusCode: 301 }),
          redirect('/hostname-redirect', { hostname: 'example.org' }),
          redirect('/host-and-status', { hostname: 'example.org', statusCode: 301 }),
          redirect('/full-path', { path: { type: 'ReplaceFullPath', replaceFullPath: '/one' } }),
          redirect('/prefix-path', { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }),
          redirect('/s303', { statusCode: 303, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }),
          redirect('/s307', { statusCode: 307, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }),
          redirect('/s308', { statusCode: 308, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }),
          { matches: [{ path: { type: 'PathPrefix', value: '/slow/request' } }], timeouts: { request: '300ms' }, backendRefs: to('echo-v1') },
          { matches: [{ path: { type: 'PathPrefix', value: '/slow/backend' } }], timeouts: { backendRequest: '300ms' }, backendRefs: to('echo-v1') },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/rewrite-host' } }],
            filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'one.example.org' } }],
            backendRefs: to('echo-v1'),
          },
        ],
      },
    },
    {
      name: 'matching',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'match', port: 80 }],
        rules: [
          { name: 'exact', matches: [{ path: { type: 'Exact', value: '/exact' } }], filters: [setHeader('exact')], backendRefs: to('echo-v1') },
          { name: 'prefix', matches: [{ path: { type: 'PathPrefix', value: '/exact' } }], filters: [setHeader('prefix')], backendRefs: to('echo-v1') },
          { name: 'longer', matches: [{ path: { type: 'PathPrefix', value: '/exact/longer' } }], filters: [setHeader('longer')], backendRefs: to('echo-v1') },
          { name: 'method', matches: [{ path: { type: 'PathPrefix', value: '/m' }, method: 'POST' }], filters: [setHeader('post')], backendRefs: to('echo-v2') },
          { name: 'no-method', matches: [{ path: { type: 'PathPrefix', value: '/m' } }], filters: [setHeader('any')], backendRefs: to('echo-v1') },
          { name: 'one-header', matches: [{ path: { type: 'PathPrefix', value: '/h' }, headers: [{ name: 'version', value: 'one' }] }], filters: [setHeader('one-header')], backendRefs: to('echo-v1') },
          {
            name: 'two-headers',
            matches: [{ path: { type: 'PathPrefix', value: '/h' }, headers: [{ name: 'version', value: 'one' }, { name: 'color', value: 'red' }] }],
            filters: [setHeader('two-headers')],
            backendRefs: to('echo-v2'),
          },
          { name: 'query', matches: [{ queryParams: [{ name: 'animal', value: 'whale' }] }], filters: [setHeader('whale')], backendRefs: to('echo-v1') },
          { name: 'query-regex', matches: [{ queryParams: [{ type: 'RegularExpression', name: 'color', value: 'bl.e' }] }], filters: [setHeader('blue')], backendRefs: to('echo-v2') },
        ],
      },
    },
  ],
};

const v1 = await backend(`${base}.21`, 8080, 'echo-v1', (req, res) => {
  if (!req.url?.startsWith('/slow')) return false;
  // The slow backend itself (what route timeouts are tested against), not a synchronisation.
  const timer = setTimeout(() => res.end('late'), 2000);
  res.on('close', () => clearTimeout(timer));
  return true;
});
const v2 = await backend(`${base}.22`, 8080, 'echo-v2');
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await Promise.all([v1, v2].map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

t.test('MeshPorts: a parentRef port limits the route to that port; without one it applies to all', async (t) => {
  const cases: Array<[string, string | undefined, string]> = [
    [`http://${VIP.v1}/`, 'v1', 'explicit port, sent to that port'],
    [`http://${VIP.v1}:8080/`, undefined, 'explicit port, sent to another port of the service: the route does not apply'],
    [`http://${VIP.v2}/`, 'v2', 'no port, port 80'],
    [`http://${VIP.v2}:8080/`, 'v2', 'no port, port 8080'],
  ];
  for (const [url, header, what] of cases) {
    const r = await request(agent, url);
    t.equal(r.status, 200, what);
    t.equal(r.headers['x-header-set'], header, what);
  }
});

t.test('MeshFrontendHostname: the Service address picks the route, never the Host header', async (t) => {
  const a = await request(agent, `http://${VIP.v2}/`, { headers: { host: 'echo-v1' } });
  t.equal(a.headers['x-header-set'], 'v2', "to echo-v2's address with Host echo-v1: echo-v2's route");
  t.equal(a.headers['x-backend'], 'echo-v2');
  const b = await request(agent, `http://${VIP.v1}:8080/`, { headers: { host: 'echo-v2' } });
  t.equal(b.headers['x-header-set'], undefined, "to echo-v1:8080 with Host echo-v2: not echo-v2's route");
  t.equal(b.headers['x-backend'], 'echo-v1');
});

t.test('MeshHTTPRouteRedirectPort, SchemeRedirect, RedirectHostAndStatus, RedirectPath, 303/307/308', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['/port', 302, 'http://echo:8083/port'],
    ['/port-and-host', 302, 'http://example.org:8083/port-and-host'],
    ['/port-and-status', 301, 'http://echo:8083/port-and-status'],
    ['/scheme', 302, 'https://echo/scheme'],
    ['/scheme-and-host', 302, 'https://example.org/scheme-and-host'],
    ['/scheme-and-status', 301, 'https://echo/scheme-and-status'],
    ['/hostname-redirect', 302, 'http://example.org/hostname-redirect'],
    ['/host-and-status', 301, 'http://example.org/host-and-status'],
    ['/full-path/x', 302, 'http://echo/one'],
    ['/prefix-path/x?q=1', 302, 'http://echo/new/x?q=1'],
    ['/s303/x', 303, 'http://echo/new/x'],
    ['/s307/x', 307, 'http://echo/new/x'],
    ['/s308/x', 308, 'http://echo/new/x'],
  ];
  for (const [path, status, location] of cases) {
    const r = await request(agent, `http://${VIP.echo}${path}`, { headers: { host: 'echo' } });
    t.same([r.status, r.headers.location], [status, location], path);
  }
});

t.test('HTTPRouteRewriteHost: URLRewrite hostname replaces Host', async (t) => {
  const seen = JSON.parse((await request(agent, `http://${VIP.echo}/rewrite-host/x`, { headers: { host: 'echo' } })).body) as { url: string; headers: Record<string, string> };
  t.equal(seen.headers['host'], 'one.example.org');
  t.equal(seen.url, '/rewrite-host/x');
});

t.test('MeshHTTPRouteMatching, HTTPRoutePathMatchOrder, HTTPRouteMethodMatching, MeshHTTPRouteQueryParamMatching', async (t) => {
  const cases: Array<[string, { method?: string; headers?: Record<string, string> }, string]> = [
    ['/exact', {}, 'exact'],
    ['/exact/x', {}, 'prefix'],
    ['/exact/longer/x', {}, 'longer'],
    ['/m', { method: 'POST' }, 'post'],
    ['/m', {}, 'any'],
    ['/h', { headers: { version: 'one' } }, 'one-header'],
    ['/h', { headers: { version: 'one', color: 'red' } }, 'two-headers'],
    ['/?animal=whale', {}, 'whale'],
    ['/?color=blue', {}, 'blue'],
  ];
  for (const [path, opts, want] of cases) {
    const r = await request(agent, `http://${VIP.match}${path}`, opts);
    t.equal(r.headers['x-header-set'], want, `${opts.method ?? 'GET'} ${path} ${JSON.stringify(opts.headers ?? {})}`);
  }
  t.equal((await request(agent, `http://${VIP.match}/nothing`)).status, 404, 'no rule matches: 404');
});

t.test('HTTPRouteTimeoutRequest, HTTPRouteTimeoutBackendRequest: 504 before the slow backend answers', async (t) => {
  for (const path of ['/slow/request', '/slow/backend']) {
    const r = await request(agent, `http://${VIP.echo}${path}`, { headers: { host: 'echo' } });
    t.equal(r.status, 504, path);
    // Only the timeout answers 504: the backend itself answers 200 (after 2 s).
    t.equal(r.body, 'upstream request timeout', path);
  }
});
