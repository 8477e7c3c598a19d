/**
 * GRPCRoute (`gateway.networking.k8s.io/v1`) → the HTTP route model (core/kube/routes/grpc-route.ts):
 * the method match as a path match (Istio's convertGRPCRoute), filters and weighted backends as
 * HTTPRoute's, GRPCRoute precedence, the statuses, the discovery wire and the standalone file,
 * and what bad input gets: a problem naming the object and the field.
 */
import t from 'tap';
import { Problems } from '../../../core/validation/check.js';
import { GrpcRouteConverter } from '../../../core/kube/routes/grpc-route.js';
import { formatProblem } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { decodeResource, WireFormatError } from '../../../core/discovery/wire.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import { firstMatch, orderHttpRouteMatches, routeStatus, type HttpRoute, type MatchInput } from '../../../core/model/routes.js';
import { docs, ns } from './documents.js';

const parent = { parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 50051 }] };

function convert(spec: Record<string, unknown>): { route?: HttpRoute; problems: string[] } {
  const p = new Problems();
  const route = new GrpcRouteConverter(p).grpcRoute('r', 'apps', spec, 'spec');
  return { ...(route ? { route } : {}), problems: p.list };
}

const call = (path: string, headers: Record<string, string> = {}): MatchInput => ({
  method: 'POST',
  path,
  headers: { 'content-type': 'application/grpc', ...headers },
  query: new URLSearchParams(),
});

t.test('a method match becomes the path match Istio makes of it; the method match is kept', async (t) => {
  const cases: { method: Record<string, string>; path: { type: string; value: string }; matches: string[]; misses: string[] }[] = [
    { method: { service: 'echo.Echo', method: 'Say' }, path: { type: 'Exact', value: '/echo.Echo/Say' }, matches: ['/echo.Echo/Say'], misses: ['/echo.Echo/Shout', '/other.Echo/Say'] },
    { method: { service: 'echo.Echo' }, path: { type: 'PathPrefix', value: '/echo.Echo/' }, matches: ['/echo.Echo/Say', '/echo.Echo/Shout'], misses: ['/echo.EchoV2/Say'] },
    { method: { method: 'Say' }, path: { type: 'RegularExpression', value: '/[^/]+/Say' }, matches: ['/echo.Echo/Say', '/a.B/Say'], misses: ['/echo.Echo/SayMore', '/Say'] },
    { method: { type: 'RegularExpression', service: 'echo\\.(Echo|Talk)', method: 'S.*' }, path: { type: 'RegularExpression', value: '/(?:echo\\.(Echo|Talk))/(?:S.*)' }, matches: ['/echo.Talk/Shout'], misses: ['/echo.Echo/Get'] },
    { method: { type: 'RegularExpression', service: 'echo\\..*' }, path: { type: 'RegularExpression', value: '/(?:echo\\..*)/.+' }, matches: ['/echo.X/Y'], misses: ['/echo.X/'] },
    { method: { type: 'RegularExpression', method: 'Get|List' }, path: { type: 'RegularExpression', value: '/[^/]+/(?:Get|List)' }, matches: ['/a.B/List'], misses: ['/a.B/Getx'] },
    // Wrapped in a group, an alternation stays in its place: `/a|b/.+` (plain concatenation)
    // would match "/a" alone, and anything ending in "b/x".
    { method: { type: 'RegularExpression', service: 'a|b' }, path: { type: 'RegularExpression', value: '/(?:a|b)/.+' }, matches: ['/b/M'], misses: ['/a', '/zzb/M'] },
  ];
  for (const c of cases) {
    const { route, problems } = convert({ ...parent, rules: [{ matches: [{ method: c.method }], backendRefs: [{ name: 'echo', port: 50051 }] }] });
    t.same(problems, [], `${JSON.stringify(c.method)}: accepted`);
    const m = route!.rules[0]!.matches[0]!;
    t.same(m.path, c.path, `${JSON.stringify(c.method)} → ${c.path.type} ${c.path.value}`);
    t.same(m.grpcMethod, { type: 'Exact', ...c.method }, 'the method match is kept for precedence');
    const ordered = orderHttpRouteMatches([route!]);
    for (const p of c.matches) t.ok(firstMatch(ordered, call(p)), `${p} matches`);
    for (const p of c.misses) t.notOk(firstMatch(ordered, call(p)), `${p} does not match`);
  }
});

t.test('headers, filters and weighted backends are HTTPRoute\'s; the route is kind GRPCRoute', async (t) => {
  const { route, problems } = convert({
    ...parent,
    hostnames: ['echo.apps.svc.cluster.local'],
    rules: [
      {
        name: 'split',
        matches: [{ headers: [{ name: 'X-Canary', value: 'yes' }, { type: 'RegularExpression', name: 'x-user', value: 'u[0-9]+' }] }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-via', value: 'waypoint' }], remove: ['x-drop'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-out', value: '1' }] } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'echo-shadow', port: 50051 } } },
        ],
        backendRefs: [
          { name: 'echo-v1', port: 50051, weight: 80 },
          { name: 'echo-v2', port: 50051, weight: 20, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-v', value: '2' }] } }] },
        ],
      },
    ],
  });
  t.same(problems, []);
  t.equal(route!.kind, 'GRPCRoute');
  t.same(route!.parents, [{ kind: 'Service', name: 'echo', namespace: 'apps', port: 50051 }]);
  const rule = route!.rules[0]!;
  t.equal(rule.name, 'split');
  t.same(rule.matches[0]!.headers, [
    { name: 'x-canary', type: 'Exact', value: 'yes' },
    { name: 'x-user', type: 'RegularExpression', value: 'u[0-9]+' },
  ], 'header names lowercase, as HTTP/2 sends them');
  t.same(rule.matches[0]!.path, { type: 'PathPrefix', value: '/' }, 'no method match: every method');
  t.equal(rule.matches[0]!.grpcMethod, undefined);
  t.same(rule.filters.map((f) => f.type), ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']);
  t.same(rule.backends.map((b) => [b.name, b.weight, b.filters.length]), [['echo-v1', 80, 0], ['echo-v2', 20, 1]]);
  const { route: empty } = convert({ ...parent });
  t.same(empty!.rules[0]!.matches[0]!.path, { type: 'PathPrefix', value: '/' }, 'no rules: one rule for every call');
});

t.test('GRPCRoute precedence: most service characters, then method characters, then headers', async (t) => {
  const backend = (name: string) => [{ name, port: 50051 }];
  const { route, problems } = convert({
    ...parent,
    rules: [
      { backendRefs: backend('catch-all') },
      { matches: [{ headers: [{ name: 'x-a', value: '1' }] }], backendRefs: backend('header') },
      { matches: [{ method: { method: 'Say' } }], backendRefs: backend('method') },
      { matches: [{ method: { service: 'echo.Echo' } }], backendRefs: backend('service') },
      { matches: [{ method: { service: 'echo.Echo', method: 'Say' } }], backendRefs: backend('both') },
      { matches: [{ method: { service: 'echo.Echo', method: 'Say' }, headers: [{ name: 'x-a', value: '1' }] }], backendRefs: backend('both-header') },
    ],
  });
  t.same(problems, []);
  const ordered = orderHttpRouteMatches([route!]);
  t.same(ordered.map((o) => o.rule.backends[0]!.name), ['both-header', 'both', 'service', 'method', 'header', 'catch-all']);
  const to = (path: string, headers: Record<string, string> = {}) => firstMatch(ordered, call(path, headers))?.rule.backends[0]!.name;
  t.equal(to('/echo.Echo/Say', { 'x-a': '1' }), 'both-header');
  t.equal(to('/echo.Echo/Say'), 'both');
  t.equal(to('/echo.Echo/Shout'), 'service');
  t.equal(to('/other.Svc/Say', { 'x-a': '1' }), 'method', 'a method match wins over a header-only match');
  t.equal(to('/other.Svc/Shout', { 'x-a': '1' }), 'header');
  t.equal(to('/other.Svc/Shout'), 'catch-all');
});

t.test('bad input: a problem naming the object and the field, the route refused', async (t) => {
  const grpcRoute = (name: string, rules: unknown[]) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name, namespace: 'apps' }, spec: { ...parent, rules } });
  const rule = (match: object) => ({ matches: [match], backendRefs: [{ name: 'echo', port: 50051 }] });
  const { objects, problems } = parseManifests(
    docs(
      ns('apps'),
      grpcRoute('bad-service', [rule({ method: { service: 'echo Echo', method: 'Say' } })]),
      grpcRoute('bad-method', [rule({ method: { service: 'echo.Echo', method: 'Say/x' } })]),
      grpcRoute('digit-service', [rule({ method: { service: '1echo' } })]),
      grpcRoute('no-service-no-method', [rule({ method: { type: 'Exact' } })]),
      grpcRoute('lookahead', [rule({ method: { type: 'RegularExpression', service: 'echo(?=x)' } })]),
      grpcRoute('unbalanced', [rule({ method: { type: 'RegularExpression', method: 'Say)|(x' } })]),
      grpcRoute('bad-header-regex', [rule({ headers: [{ type: 'RegularExpression', name: 'x-a', value: '(a' }] })]),
      grpcRoute('crlf', [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: 'a\r\nx-injected: 1' }] } }], backendRefs: [{ name: 'echo', port: 50051 }] }]),
      grpcRoute('session', [{ sessionPersistence: { sessionName: 's' }, backendRefs: [{ name: 'echo', port: 50051 }] }]),
      grpcRoute('extension', [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } }] }]),
      grpcRoute('rewrite', [{ filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'x' } }] }]),
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'gateway-parent', namespace: 'apps' }, spec: { parentRefs: [{ name: 'gw' }] } },
      grpcRoute('good', [rule({ method: { service: 'echo.Echo', method: 'Say' } })]),
      grpcRoute('unknown-kind', [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'b' }, { name: 'echo', port: 50051 }] }]),
    ),
    'grpc.yaml',
  );
  t.same(objects.map((o) => `${o.kind}/${o.meta.name}`), ['Namespace/apps', 'GRPCRoute/good', 'GRPCRoute/unknown-kind'], 'only the good routes are accepted');
  const errors = problems.filter((p) => p.severity === 'error').map(formatProblem);
  const expect: [string, RegExp][] = [
    ['bad-service', /GRPCRoute apps\/bad-service: spec\.rules\[0\]\.matches\[0\]\.method\.service: "echo Echo" is not a gRPC service name/],
    ['bad-method', /GRPCRoute apps\/bad-method: spec\.rules\[0\]\.matches\[0\]\.method\.method: "Say\/x" is not a gRPC method name/],
    ['digit-service', /GRPCRoute apps\/digit-service: spec\.rules\[0\]\.matches\[0\]\.method\.service: "1echo" is not a gRPC service name/],
    ['no-service-no-method', /GRPCRoute apps\/no-service-no-method: spec\.rules\[0\]\.matches\[0\]\.method: set service, method or both/],
    ['lookahead', /GRPCRoute apps\/lookahead: spec\.rules\[0\]\.matches\[0\]\.method\.service: "echo\(\?=x\)" is not a valid regular expression/],
    ['unbalanced', /GRPCRoute apps\/unbalanced: spec\.rules\[0\]\.matches\[0\]\.method\.method: "Say\)\|\(x" is not a valid regular expression/],
    ['bad-header-regex', /GRPCRoute apps\/bad-header-regex: spec\.rules\[0\]\.matches\[0\]\.headers\[0\]\.value: "\(a" is not a valid regular expression/],
    ['crlf', /GRPCRoute apps\/crlf: spec\.rules\[0\]\.filters\[0\]\.requestHeaderModifier\.set\[0\]\.value: .* is not an HTTP header value/],
    ['session', /GRPCRoute apps\/session: spec\.rules\[0\]\.sessionPersistence: is not supported by the mesh/],
    ['extension', /GRPCRoute apps\/extension: spec\.rules\[0\]\.filters\[0\]\.type: "ExtensionRef" is not supported by the mesh/],
    ['rewrite', /GRPCRoute apps\/rewrite: spec\.rules\[0\]\.filters\[0\]\.type: .*URLRewrite/],
    ['gateway-parent', /GRPCRoute apps\/gateway-parent: spec\.parentRefs\[0\]\.kind: parent Gateway is not supported/],
  ];
  for (const [name, re] of expect) t.ok(errors.some((e) => re.test(e)), `${name}: ${errors.find((e) => e.includes(`/${name}:`)) ?? 'no problem'}`);
  t.equal(errors.length, expect.length, 'one problem each, nothing else');

  // An unknown backend kind keeps the route (Gateway API): ResolvedRefs=False, InvalidKind.
  const unknown = objects.find((o) => o.meta.name === 'unknown-kind');
  const route = (unknown as { route: HttpRoute }).route;
  const services = { byName: (n: string, name: string) => (n === 'apps' && name === 'echo' ? { ports: [{ port: 50051 }] } : undefined), byHostname: () => undefined };
  t.match(routeStatus(route, services), [
    { type: 'Accepted', status: 'True', reason: 'Accepted' },
    { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind', message: /example\.com\/Bucket apps\/b is not a Service/ },
  ]);
});

t.test('the discovery wire and the standalone file carry GRPCRoutes as written', async (t) => {
  const spec = { ...parent, rules: [{ matches: [{ method: { service: 'echo.Echo', method: 'Say' } }], backendRefs: [{ name: 'echo', port: 50051 }] }] };
  const r = decodeResource('grpcRoutes', { name: 'r', namespace: 'apps', spec });
  t.equal(r.kind, 'GRPCRoute');
  t.same(r.rules[0]!.matches[0]!.path, { type: 'Exact', value: '/echo.Echo/Say' });
  let err: unknown;
  try {
    decodeResource('grpcRoutes', { name: 'r', namespace: 'apps', spec: { ...parent, rules: [{ matches: [{ method: { service: 'bad svc' } }] }] } });
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof WireFormatError, 'a malformed resource is a WireFormatError');
  t.match((err as Error).message, /grpcRoutes\.spec\.rules\[0\]\.matches\[0\]\.method\.service: "bad svc" is not a gRPC service name/, 'naming the field');
  const file = [
    'services: [{name: echo, namespace: apps, vips: [10.96.0.9], ports: [{port: 50051}], selector: {app: echo}}]',
    'grpcRoutes:',
    '- name: r',
    '  namespace: apps',
    `  spec: ${JSON.stringify(spec)}`,
  ].join('\n');
  const cfg = parseMeshConfig(file, 'mesh.yaml');
  t.equal(cfg.grpcRoutes?.[0]?.kind, 'GRPCRoute', 'grpcRoutes: in the standalone file');
  t.throws(() => parseMeshConfig(file.replace('echo.Echo', 'echo Echo'), 'mesh.yaml'), /grpcRoutes\[0\]\.spec\.rules\[0\]\.matches\[0\]\.method\.service: "echo Echo" is not a gRPC service name/);
});
