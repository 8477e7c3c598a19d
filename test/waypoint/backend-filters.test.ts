/**
 * Filters on a backendRef through the real waypoint, real HBONE and real ztunnels: they apply
 * only to the requests the weighted choice sends to that backend (upstream Gateway API
 * conformance: MeshHTTPRouteBackendRequestHeaderModifier, conformance/tests/mesh/
 * httproute-request-header-modifier.go; HTTPRouteBackendURLRewrite,
 * conformance/tests/httproute-backend-url-rewrite.go; HTTPRouteBackendPathRedirect,
 * conformance/tests/httproute-backend-request-redirect.go). What cannot be supported on a
 * backend is refused when the route is converted, naming the field.
 */
import t from 'tap';
import { closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { Problems } from '../../core/validation/check.js';
import { specProblems } from '../../core/kube/schema.js';
import { HttpRouteConverter } from '../../core/kube/routes/http-route.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.152.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21-.23 = backends, .30 = the waypoint, .100-.103 = service VIPs.
const base = '127.0.152';
const CLIENT = `${base}.10`;
const VIP = { split: `${base}.100`, v1: `${base}.101`, v2: `${base}.102`, mirror: `${base}.103` };
const WAYPOINT = { address: `${base}.30` };
const port80 = [{ port: 80, targetPort: 8080, name: 'http' }];

const workloads = [
  { name: 'echo-v1', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'default', serviceAccount: 'echo', node: 'node-a', ips: [`${base}.22`], labels: { app: 'echo', version: 'v2' } },
  { name: 'mirror', namespace: 'default', serviceAccount: 'mirror', node: 'node-b', ips: [`${base}.23`], labels: { app: 'mirror' } },
];
const reqHeaders = (value: string) => ({
  type: 'RequestHeaderModifier',
  requestHeaderModifier: { set: [{ name: 'X-Header-Set', value }], add: [{ name: 'X-Header-Add', value: `add-${value}` }], remove: ['X-Header-Remove'] },
});
const prefix = (value: string) => [{ path: { type: 'PathPrefix', value } }];
const config = {
  services: [
    { name: 'split', namespace: 'default', vips: [VIP.split], ports: port80, selector: { app: 'echo' }, waypoint: WAYPOINT },
    { name: 'echo-v1', namespace: 'default', vips: [VIP.v1], ports: port80, selector: { app: 'echo', version: 'v1' } },
    { name: 'echo-v2', namespace: 'default', vips: [VIP.v2], ports: port80, selector: { app: 'echo', version: 'v2' } },
    { name: 'mirror', namespace: 'default', vips: [VIP.mirror], ports: port80, selector: { app: 'mirror' } },
  ],
  httpRoutes: [
    {
      name: 'backend-filters',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'split', port: 80 }],
        rules: [
          {
            // As upstream's: each backend of a 50/50 split sets its own headers.
            matches: prefix('/headers'),
            filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-rule', value: 'yes' }] } }],
            backendRefs: [
              { name: 'echo-v1', port: 80, filters: [reqHeaders('v1'), { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-from-backend', value: 'v1' }] } }] },
              { name: 'echo-v2', port: 80, filters: [reqHeaders('v2')] },
            ],
          },
          {
            matches: prefix('/full'),
            backendRefs: [{ name: 'echo-v1', port: 80, filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/rewritten-full' } } }] }],
          },
          {
            matches: prefix('/prefix'),
            backendRefs: [
              {
                name: 'echo-v1',
                port: 80,
                filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/rewritten-prefix' } } }],
              },
              { name: 'echo-v2', port: 80 },
            ],
          },
          {
            matches: prefix('/redirect'),
            backendRefs: [
              { name: 'echo-v1', port: 80, filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', hostname: 'redirect-example.com', port: 443, statusCode: 302 } }] },
              { name: 'echo-v2', port: 80, filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'http', hostname: 'redirect-example.com', port: 80, statusCode: 301 } }] },
            ],
          },
          {
            matches: prefix('/mirror'),
            backendRefs: [{ name: 'echo-v1', port: 80, filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror', port: 80 } } }] }],
          },
        ],
      },
    },
  ],
};

const v1 = await backend(`${base}.21`, 8080, 'echo-v1');
const v2 = await backend(`${base}.22`, 8080, 'echo-v2');
const mirrored: string[] = [];
const mirror = await backend(`${base}.23`, 8080, 'mirror', (req) => {
  mirrored.push(req.url ?? '');
  return false;
});
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  await Promise.all([v1, v2, mirror].map((b) => closeServer(b.server as unknown as import('node:net').Server)));
});

interface Seen {
  name: string;
  url: string;
  headers: Record<string, string>;
}

t.test('MeshHTTPRouteBackendRequestHeaderModifier: a backend header filter applies only to requests sent to it', async (t) => {
  const got: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const r = await request(agent, `http://${VIP.split}/headers`, { headers: { 'x-header-set': 'original', 'x-header-add': 'client', 'x-header-remove': 'gone' } });
    const seen = JSON.parse(r.body) as Seen;
    const v = seen.name === 'echo-v1' ? 'v1' : 'v2';
    got[v] = (got[v] ?? 0) + 1;
    if (seen.headers['x-header-set'] !== v || seen.headers['x-header-add'] !== `client,add-${v}` || seen.headers['x-header-remove'] !== undefined) {
      t.fail(`request ${i} to ${seen.name} carried ${JSON.stringify(seen.headers)}`);
    }
    if (r.headers['x-rule'] !== 'yes') t.fail(`request ${i}: the rule's response filter did not apply`);
    if ((r.headers['x-from-backend'] === 'v1') !== (v === 'v1')) t.fail(`request ${i} to ${seen.name}: x-from-backend ${String(r.headers['x-from-backend'])}`);
  }
  // Binomial(40, 1/2): either side empty happens once in 2^39 runs.
  t.ok((got.v1 ?? 0) > 0 && (got.v2 ?? 0) > 0, `both backends were chosen (${JSON.stringify(got)})`);
  t.pass('every request carried exactly the header changes of the backend it reached, and the rule filter');
});

t.test('HTTPRouteBackendURLRewrite: a backend URLRewrite rewrites the requests sent to it', async (t) => {
  const full = JSON.parse((await request(agent, `http://${VIP.split}/full/original`)).body) as Seen;
  t.equal(full.url, '/rewritten-full', 'ReplaceFullPath');
  const seen = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const s = JSON.parse((await request(agent, `http://${VIP.split}/prefix/original?q=1`)).body) as Seen;
    seen.add(s.name);
    const want = s.name === 'echo-v1' ? ['/rewritten-prefix/original?q=1', 'rewritten.example'] : ['/prefix/original?q=1', VIP.split];
    if (s.url !== want[0] || s.headers['host'] !== want[1]) t.fail(`request ${i} to ${s.name}: ${s.url} host ${s.headers['host']}`);
  }
  t.same([...seen].sort(), ['echo-v1', 'echo-v2'], 'the other backend of the split gets the request unchanged');
});

t.test('HTTPRouteBackendPathRedirect: a backend RequestRedirect answers the requests sent to it', async (t) => {
  const before = v1.hits() + v2.hits();
  const locations = new Map<number, string>();
  for (let i = 0; i < 30; i++) {
    const r = await request(agent, `http://${VIP.split}/redirect`);
    locations.set(r.status, String(r.headers.location));
  }
  t.same(Object.fromEntries(locations), { 302: 'https://redirect-example.com/redirect', 301: 'http://redirect-example.com/redirect' }, "each backend's own redirect");
  t.equal(v1.hits() + v2.hits(), before, 'nothing was forwarded');
});

t.test('a backend RequestMirror copies only the requests sent to that backend', async (t) => {
  for (let i = 0; i < 5; i++) t.equal((await request(agent, `http://${VIP.split}/mirror/${i}`)).status, 200);
  await until('five mirrored requests', () => mirrored.length >= 5);
  t.same(mirrored.sort(), ['/mirror/0', '/mirror/1', '/mirror/2', '/mirror/3', '/mirror/4']);
});

t.test('what a backend cannot take is refused naming the field', async (t) => {
  const convert = (backendFilters: unknown[]) => {
    const spec = { parentRefs: [{ kind: 'Service', name: 'split' }], rules: [{ backendRefs: [{ name: 'echo-v1', port: 80, filters: backendFilters }] }] };
    // As every caller: the upstream schema first, then the converter.
    const structural = specProblems('HTTPRoute', spec, 'spec');
    if (structural.length > 0) return structural.map((x) => `${x.field}: ${x.message}`);
    const p = new Problems();
    new HttpRouteConverter(p).httpRoute('r', 'default', spec, 'spec');
    return p.list;
  };
  const rewrite = { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/x' } } };
  t.same(convert([rewrite, rewrite]), ['spec.rules[0].backendRefs[0].filters: URLRewrite may appear once per backend']);
  t.same(convert([rewrite, { type: 'RequestRedirect', requestRedirect: { statusCode: 302 } }]), [
    'spec.rules[0].backendRefs[0].filters: RequestRedirect and URLRewrite cannot be combined (Gateway API)',
  ]);
  t.match(convert([{ type: 'CORS', cors: { allowOrigins: ['https://a.example'] } }]), [/filters\[0\]\.type: "CORS" is not supported by the mesh/]);
  t.same(convert([rewrite]), [], 'a backend URLRewrite alone is accepted');
});
