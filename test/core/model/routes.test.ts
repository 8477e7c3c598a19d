import t from 'tap';
import { Problems, quote } from '../../../core/validation/check.js';
import { HttpRouteConverter } from '../../../core/kube/routes/http-route.js';
import { parseDurationMs } from '../../../core/kube/routes/shared.js';
import { VirtualServiceConverter } from '../../../core/kube/routes/virtual-service.js';
import { specProblems } from '../../../core/kube/schema.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import type { ConfigError } from '../../../core/errors.js';
import {
  firstMatch,
  orderHttpRouteMatches,
  pathPrefixMatches,
  pickWeighted,
  requestMatches,
  resolveHost,
  routeStatus,
  type HttpRoute,
  type MatchInput,
} from '../../../core/model/routes.js';

const input = (path: string, extra: Partial<MatchInput> = {}): MatchInput => {
  const q = path.indexOf('?');
  return {
    method: 'GET',
    path: q === -1 ? path : path.slice(0, q),
    headers: {},
    query: new URLSearchParams(q === -1 ? '' : path.slice(q + 1)),
    ...extra,
  };
};

/** As every caller of the converter does: the upstream schema judges the structure first. */
function httpRoute(spec: Record<string, unknown>, name = 'r'): { route?: HttpRoute; problems: string[] } {
  const structural = specProblems('HTTPRoute', spec, 'spec');
  if (structural.length > 0) return { problems: structural.map((s) => `${s.field}: ${s.message}`) };
  const p = new Problems();
  const route = new HttpRouteConverter(p).httpRoute(name, 'default', spec, 'spec');
  return { ...(route ? { route } : {}), problems: p.list };
}

t.test('durations', async (t) => {
  t.equal(parseDurationMs('10s'), 10_000);
  t.equal(parseDurationMs('1.5s'), 1500);
  t.equal(parseDurationMs('250ms'), 250);
  t.equal(parseDurationMs('1h30m'), 5_400_000);
  t.equal(parseDurationMs('10'), undefined, 'a unit is required');
  t.equal(parseDurationMs('-1s'), undefined);
});

t.test('HTTPRoute conversion: defaults, matches, filters, backends', async (t) => {
  const { route, problems } = httpRoute({
    parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
    rules: [
      {
        matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'X-User', value: 'jason' }], method: 'GET' }],
        filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'X-Canary', value: '1' }], remove: ['X-Drop'] } }],
        backendRefs: [
          { name: 'reviews-v1', port: 9080, weight: 90 },
          { name: 'reviews-v2', namespace: 'canary', port: 9080, weight: 10 },
        ],
        timeouts: { request: '10s', backendRequest: '2s' },
        retry: { attempts: 3, codes: [503] },
      },
      { backendRefs: [{ name: 'reviews-v1', port: 9080 }] },
    ],
  });
  t.same(problems, []);
  t.same(route?.parents, [{ kind: 'Service', name: 'reviews', namespace: 'default', port: 9080 }]);
  const r0 = route!.rules[0]!;
  t.same(r0.matches[0], { path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-user', type: 'Exact', value: 'jason' }], queryParams: [], method: 'GET' });
  t.same(r0.backends.map((b) => [b.namespace, b.name, b.weight]), [['default', 'reviews-v1', 90], ['canary', 'reviews-v2', 10]]);
  t.equal(r0.requestTimeoutMs, 10_000);
  t.equal(r0.backendRequestTimeoutMs, 2000);
  t.same(r0.retry?.codes, [503]);
  t.equal(r0.retry?.attempts, 3);
  t.same(route!.rules[1]!.matches, [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], 'no matches means every request');
  t.equal(route!.rules[1]!.backends[0]!.weight, 1, 'weight defaults to 1');
});

t.test('HTTPRoute validation names each field', async (t) => {
  const { route, problems } = httpRoute({
    parentRefs: [{ kind: 'Gateway', name: 'ingress' }],
    rules: [
      {
        matches: [{ path: { type: 'RegularExpression', value: '/(unclosed' } }],
        backendRefs: [{ name: 'svc' }],
        filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/x' } } }],
        timeouts: { request: '1s', backendRequest: '2s' },
      },
      { backendRefs: [{ name: 'svc', port: 80 }], filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 302 } }] },
    ],
  });
  t.equal(route, undefined);
  t.same(problems, [
    'spec.parentRefs[0].kind: parent Gateway is not supported: a waypoint serves routes attached to a Service (GAMMA); set kind: Service and group: ""',
    'spec.rules[0].matches[0].path.value: "/(unclosed" is not a valid regular expression: missing closing ) (matches use RE2 syntax)',
    'spec.rules[0].backendRefs[0].port: required field is missing; expected the Service port (required for Service backends)',
    'spec.rules[0].timeouts.backendRequest: must not be longer than request (Gateway API)',
    'spec.rules[1].backendRefs: a rule with RequestRedirect answers the redirect itself; remove backendRefs',
  ]);
  // Structure (patterns, ranges, enums) is the upstream schema's (core/kube/schema.ts): its messages.
  const structural = httpRoute({
    parentRefs: [{ kind: 'Service', name: 'svc' }],
    rules: [{ matches: [{ headers: [{ name: 'bad header', value: 'x' }] }], backendRefs: [{ name: 'svc', port: 80, weight: -1 }], timeouts: { request: '1s', backendRequest: 'soon' } }],
  });
  t.equal(structural.route, undefined);
  t.same(new Set(structural.problems), new Set([
    'spec.rules[0].matches[0].headers[0].name: "bad header" is not valid here; expected a string matching ^[A-Za-z0-9!#$%&\'*+\\-.^_\\x60|~]+$',
    'spec.rules[0].backendRefs[0].weight: -1 is out of range; expected at least 0',
    'spec.rules[0].timeouts.backendRequest: "soon" is not valid here; expected a string matching ^([0-9]{1,5}(h|m|s|ms)){1,4}$',
  ]));
  // A filter type upstream defines and waypoints do not implement.
  t.same(httpRoute({ parentRefs: [{ kind: 'Service', name: 'svc' }], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } }] }] }).problems, [
    'spec.rules[0].filters[0].type: "ExtensionRef" is not supported by the mesh; expected one of RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS',
  ]);
});

t.test('VirtualService conversion: faults, retries, timeout, weights', async (t) => {
  const p = new Problems();
  const vs = new VirtualServiceConverter(p).virtualService('ratings', 'default', {
    hosts: ['ratings'],
    http: [
      {
        match: [{ uri: { prefix: '/v1' }, headers: { 'end-user': { exact: 'jason' } } }],
        fault: { delay: { fixedDelay: '7s', percentage: { value: 10 } }, abort: { httpStatus: 500, percentage: { value: 5 } } },
        route: [
          { destination: { host: 'ratings', port: { number: 9080 } }, weight: 80 },
          { destination: { host: 'ratings-v2.canary.svc.cluster.local' }, weight: 20 },
        ],
        retries: { attempts: 3, perTryTimeout: '2s', retryOn: 'gateway-error,connect-failure,503' },
        timeout: '10s',
      },
    ],
  }, 'spec');
  t.same(p.list, []);
  const rule = vs!.rules[0]!;
  t.same(rule.matches[0]?.path, { type: 'Prefix', value: '/v1' }, 'an Istio uri prefix is a plain string prefix');
  t.same(rule.fault, { delay: { fixedDelayMs: 7000, percent: 10 }, abort: { percent: 5, httpStatus: 500 } });
  t.same(rule.retry, { attempts: 3, retryOn: ['gateway-error', 'connect-failure'], codes: [503], backoffMs: 25, perTryTimeoutMs: 2000 });
  t.equal(rule.requestTimeoutMs, 10_000);
  t.same(rule.backends.map((b) => [b.name, b.namespace, b.port, b.weight]), [['ratings', 'default', 9080, 80], ['ratings-v2', 'canary', undefined, 20]]);

  const bad = new Problems();
  new VirtualServiceConverter(bad).virtualService('x', 'default', {
    hosts: ['x'],
    gateways: ['istio-ingress'],
    http: [
      { route: [{ destination: { host: 'a', subset: 'v 1' } }], retries: { attempts: 2, retryOn: 'sometimes' } },
      { route: [{ destination: { host: 'a' } }, { destination: { host: 'b' } }] },
      { fault: { abort: { percentage: { value: 150 } } }, route: [{ destination: { host: 'a' } }] },
    ],
  }, 'spec');
  t.same(bad.list, [
    'spec.gateways[0]: "istio-ingress" is not served by a waypoint; only "mesh" is (or omit gateways)',
    'spec.http[0].route[0].destination.subset: "v 1" is not a subset name; expected the name of a DestinationRule subset',
    'spec.http[0].retries.retryOn: "sometimes" is not a supported retry condition; expected 5xx, gateway-error, connect-failure, reset, reset-before-request, retriable-status-codes, refused-stream or a status code',
    'spec.http[1].route[0].weight: set a weight on every destination when a route has several',
    'spec.http[1].route[1].weight: set a weight on every destination when a route has several',
    'spec.http[2].fault.abort: set exactly one of httpStatus, grpcStatus',
    'spec.http[2].fault.abort.percentage.value: 150 is not a percentage; expected a number from 0 to 100',
  ]);
});

t.test('VirtualService fields upstream has and waypoints do not implement are refused as not supported, not as unknown', async (t) => {
  const p = new Problems();
  const vs = new VirtualServiceConverter(p).virtualService('x', 'default', {
    hosts: ['x'],
    tcp: [{ route: [{ destination: { host: 'x' } }] }],
    http: [{ match: [{ port: 80, uri: { prefix: '/' } }], directResponse: { status: 200 }, route: [{ destination: { host: 'x' } }], retrys: {} }],
  }, 'spec');
  t.equal(vs, undefined);
  t.same(p.list, [
    'spec.tcp: is not supported by the mesh',
    'spec.http[0].directResponse: is not supported by the mesh',
    'spec.http[0].retrys: unknown key; did you mean "retries"? allowed keys here: name, match, route, redirect, rewrite, timeout, retries, fault, mirror, mirrorPercentage, headers, corsPolicy',
    'spec.http[0].match[0].port: is not supported by the mesh',
  ]);
});

t.test('issue 19: header values with CR, LF or NUL are refused wherever a user writes one (header injection)', async (t) => {
  const injected = 'a\r\nx-injected: 1';
  const why = (s: string) =>
    `${quote(s)} is not an HTTP header value: control characters (CR, LF, NUL ...) are not allowed (RFC 9110 §5.5), nor characters past U+00FF`;
  const parent = { parentRefs: [{ kind: 'Service', name: 'svc', port: 80 }] };
  const gw = httpRoute({
    ...parent,
    rules: [
      {
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: injected }], add: [{ name: 'x-b', value: 'nul\u0000' }] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-c', value: injected }] } },
          { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/a\r\nHost: evil' } } },
        ],
        backendRefs: [{ name: 'svc', port: 80, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-d', value: '\u20ac' }] } }] }],
      },
    ],
  });
  t.equal(gw.route, undefined, 'the HTTPRoute is refused');
  t.same(gw.problems, [
    `spec.rules[0].filters[0].requestHeaderModifier.set[0].value: ${why(injected)}`,
    `spec.rules[0].filters[0].requestHeaderModifier.add[0].value: ${why('nul\u0000')}`,
    `spec.rules[0].filters[1].responseHeaderModifier.add[0].value: ${why(injected)}`,
    'spec.rules[0].filters[2].urlRewrite.path.replaceFullPath: "/a\\r\\nHost: evil" is not a URL path: spaces, control and non-ASCII characters must be percent-encoded',
    `spec.rules[0].backendRefs[0].filters[0].requestHeaderModifier.set[0].value: ${why('\u20ac')}`,
  ]);
  t.same(httpRoute({ ...parent, rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'a\r\nb' } }] }] }).problems.length, 1, 'a redirect hostname a\\r\\nb is refused (by the schema\'s hostname pattern)');
  const tabs = httpRoute({ ...parent, rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: 'a\tb c é' }] } }], backendRefs: [{ name: 'svc', port: 80 }] }] });
  t.same(tabs.problems, [], 'HTAB, SP and Latin-1 are field content');

  const p = new Problems();
  const vs = new VirtualServiceConverter(p).virtualService('x', 'default', {
    hosts: ['x'],
    http: [
      {
        headers: { request: { set: { 'x-a': injected }, add: { 'bad name': 'v' } }, response: { add: { 'x-b': 'ok', 'x-c': 'del\u007f' } } },
        route: [{ destination: { host: 'x' }, headers: { request: { set: { 'x-d': injected } } } }],
        rewrite: { uri: '/a b', authority: 'a\r\nb' },
      },
      { redirect: { uri: '/x', authority: 'evil.example:99999' } },
      { redirect: { uri: '/x\r\n', authority: 'ok.example:8080' } },
    ],
  }, 'spec');
  t.equal(vs, undefined, 'the VirtualService is refused');
  t.same(p.list, [
    `spec.http[0].route[0].headers.request.set["x-d"]: ${why(injected)}`,
    `spec.http[0].headers.request.set["x-a"]: ${why(injected)}`,
    'spec.http[0].headers.request.add["bad name"]: "bad name" is not a valid header name; expected letters, digits and !#$%&\'*+-.^_`|~ (an RFC 9110 token)',
    `spec.http[0].headers.response.add["x-c"]: ${why('del\u007f')}`,
    'spec.http[0].rewrite.uri: "/a b" is not a URL path: spaces, control and non-ASCII characters must be percent-encoded',
    'spec.http[0].rewrite.authority: "a\\r\\nb" is not a host name (service short name or FQDN)',
    'spec.http[1].redirect.authority: "evil.example:99999" is not a host; expected a host name with an optional :port',
    'spec.http[2].redirect.uri: "/x\\r\\n" is not a URL path: spaces, control and non-ASCII characters must be percent-encoded',
  ]);
});

t.test('issue 19: destination hosts, redirect paths, backend names and the documented limits', async (t) => {
  const p = new Problems();
  const vs = new VirtualServiceConverter(p).virtualService('x', 'default', {
    hosts: ['x', 'h'.repeat(254)],
    http: [
      { route: [{ destination: { host: '!!! bad host' } }], mirror: { host: 'revi\u200bews' } },
      { redirect: { uri: 'evil.example/x' } },
      { match: [{ uri: { prefix: '/' + 'a'.repeat(1024) }, headers: { 'x-a': { exact: 'v'.repeat(4097) } } }], route: [{ destination: { host: 'x' } }] },
      { match: [{ headers: { ['h'.repeat(257)]: { exact: 'v' } } }], route: [{ destination: { host: 'x' } }] },
    ],
  }, 'spec');
  t.equal(vs, undefined, 'the VirtualService is refused');
  t.same(p.list, [
    `spec.hosts[1]: "${'h'.repeat(100)}"… (254 characters) is too long for a host name; at most 253 characters, 63 per label`,
    'spec.http[0].route[0].destination.host: "!!! bad host" is not a host name (service short name or FQDN)',
    'spec.http[0].mirror.host: "revi\\u200bews" is not a host name (service short name or FQDN)',
    'spec.http[1].redirect.uri: "evil.example/x" does not start with /',
    `spec.http[2].match[0].uri.prefix: "/${'a'.repeat(99)}"… (1025 characters) is too long; at most 1024 characters`,
    `spec.http[2].match[0].headers["x-a"].exact: "${'v'.repeat(100)}"… (4097 characters) is too long; at most 4096 characters`,
    `spec.http[3].match[0].headers["${'h'.repeat(100)}"… (257 characters)]: "${'h'.repeat(100)}"… (257 characters) is too long for a header name; at most 256 characters`,
  ]);
  const gw = httpRoute({ parentRefs: [{ kind: 'Service', name: 'svc', port: 80 }], rules: [{ backendRefs: [{ name: 'svc\u202e', port: 80 }, { name: 'sv\u200bc', port: 80 }] }] });
  t.equal(gw.route, undefined, 'backend names with bidi or zero-width characters are refused');
  t.equal(gw.problems.length, 2);
});

t.test('the config file carries routes and waypoint policies, and rejects bad ones with paths', async (t) => {
  const cfg = parseMeshConfig(
    `
services:
  - {name: echo, namespace: default, vips: [10.96.0.1], ports: [{port: 80}], selector: {app: echo}}
httpRoutes:
  - name: echo
    namespace: default
    spec: {parentRefs: [{kind: Service, name: echo}], rules: [{backendRefs: [{name: echo, port: 80}]}]}
virtualServices:
  - {name: echo, namespace: default, spec: {hosts: [echo], http: [{route: [{destination: {host: echo}}]}]}}
authorizationPolicies:
  - name: deny-admin
    namespace: default
    spec:
      targetRefs: [{kind: Service, group: "", name: echo}]
      action: DENY
      rules: [{to: [{operation: {methods: [POST], paths: ["/admin*"]}}]}]
  - {name: l4, namespace: default, spec: {action: ALLOW, rules: [{}]}}
`,
    'mesh.yaml',
  );
  t.equal(cfg.httpRoutes?.length, 1);
  t.equal(cfg.virtualServices?.length, 1);
  t.same(cfg.waypointPolicies?.map((p) => p.name), ['deny-admin']);
  t.same(cfg.waypointPolicies?.[0]?.rules[0]?.to, [{ methods: ['POST'], paths: ['/admin*'], hasL7Fields: true }]);
  t.same(cfg.authorizationPolicies.map((p) => p.name), ['l4'], 'only selector/namespace policies reach ztunnel');
  t.ok(Object.isFrozen(cfg.httpRoutes?.[0]?.rules[0]), 'routes are frozen');

  let problems: readonly string[] = [];
  try {
    parseMeshConfig(
      `
httpRoutes:
  - {name: a, namespace: default, spec: {parentRefs: [{kind: Service, name: s}], rules: [{matches: [{path: {type: Exact, value: nope}}]}]}}
  - {name: a, namespace: default, spec: {parentRefs: [{kind: Service, name: s}]}}
virtualServices:
  - {name: v, namespace: default, spec: {http: []}}
`,
      'mesh.yaml',
    );
  } catch (err) {
    problems = (err as ConfigError).problems;
  }
  t.same(problems, [
    'httpRoutes[0].spec.rules[0].matches[0].path.value: "nope" does not start with /',
    'httpRoutes[1].name: duplicate HTTPRoute "default/a"; first used at httpRoutes[0].name',
    'virtualServices[0].spec.hosts: required field is missing; expected a list of hosts, e.g. [reviews]',
  ]);

});

t.test('matching: Gateway API PathPrefix is element-wise; headers, query, method', async (t) => {
  t.ok(pathPrefixMatches('/foo', '/foo'));
  t.ok(pathPrefixMatches('/foo', '/foo/bar'));
  t.ok(pathPrefixMatches('/foo/', '/foo/bar'));
  t.notOk(pathPrefixMatches('/foo', '/foobar'));
  t.ok(pathPrefixMatches('/', '/anything'));
  const m = { path: { type: 'RegularExpression' as const, value: '/v[0-9]+/.*' }, headers: [{ name: 'x-a', type: 'Exact' as const, value: '1' }], queryParams: [{ name: 'debug', type: 'Exact' as const, value: 'yes' }], method: 'POST' };
  t.ok(requestMatches(m, input('/v2/x?debug=yes', { method: 'POST', headers: { 'x-a': '1' } })));
  t.notOk(requestMatches(m, input('/v2/x?debug=yes', { method: 'GET', headers: { 'x-a': '1' } })), 'method');
  t.notOk(requestMatches(m, input('/v2/x?debug=no', { method: 'POST', headers: { 'x-a': '1' } })), 'query');
  t.notOk(requestMatches(m, input('/v2/x?debug=yes', { method: 'POST', headers: {} })), 'header');
  t.notOk(requestMatches(m, input('/x/v2/x?debug=yes', { method: 'POST', headers: { 'x-a': '1' } })), 'the regex is anchored');
  t.ok(requestMatches({ headers: [{ name: 'x-b', type: 'Exact', value: '1', invert: true }], queryParams: [] }, input('/')), 'withoutHeaders');
});

t.test('Gateway API precedence across routes and rules', async (t) => {
  const r = (name: string, matches: unknown[]) => httpRoute({ parentRefs: [{ kind: 'Service', name: 's' }], rules: [{ matches, backendRefs: [{ name, port: 80 }] }] }, name).route!;
  const routes = [
    r('prefix-short', [{ path: { type: 'PathPrefix', value: '/a' } }]),
    r('regex', [{ path: { type: 'RegularExpression', value: '/a/b/.*' } }]),
    r('prefix-long', [{ path: { type: 'PathPrefix', value: '/a/b' } }]),
    r('prefix-long-header', [{ path: { type: 'PathPrefix', value: '/a/b' }, headers: [{ name: 'x', value: '1' }] }]),
    r('prefix-long-method', [{ path: { type: 'PathPrefix', value: '/a/b' }, method: 'GET' }]),
    r('exact', [{ path: { type: 'Exact', value: '/a/b/c' } }]),
  ];
  const ordered = orderHttpRouteMatches(routes);
  t.same(ordered.map((o) => o.route.name), ['exact', 'prefix-long-method', 'prefix-long-header', 'prefix-long', 'prefix-short', 'regex']);
  const pick = (path: string, headers: Record<string, string> = {}, method = 'GET') => firstMatch(ordered, input(path, { headers, method }))?.route.name;
  t.equal(pick('/a/b/c'), 'exact');
  t.equal(pick('/a/b/d'), 'prefix-long-method');
  t.equal(pick('/a/b/d', { x: '1' }, 'POST'), 'prefix-long-header');
  t.equal(pick('/a/b/d', {}, 'POST'), 'prefix-long');
  t.equal(pick('/a/x'), 'prefix-short');
  t.equal(pick('/z'), undefined);
});

t.test('weighted choice', async (t) => {
  t.equal(pickWeighted([90, 10], () => 0.0), 0);
  t.equal(pickWeighted([90, 10], () => 0.899), 0);
  t.equal(pickWeighted([90, 10], () => 0.9), 1);
  t.equal(pickWeighted([0, 5], () => 0), 1, 'a zero weight is never picked');
  t.equal(pickWeighted([0, 0]), -1, 'all zero: nothing');
  t.equal(pickWeighted([]), -1);
});

t.test('hosts and route status', async (t) => {
  t.same(resolveHost('reviews', 'default'), { name: 'reviews', namespace: 'default' });
  t.same(resolveHost('reviews.prod', 'default'), { name: 'reviews', namespace: 'prod' });
  t.same(resolveHost('reviews.prod.svc.cluster.local', 'default'), { name: 'reviews', namespace: 'prod' });
  t.same(resolveHost('api.example.com', 'default'), { hostname: 'api.example.com' });
  const services = {
    byName: (ns: string, n: string) => (ns === 'default' && n === 's' ? { ports: [{ port: 80 }] } : undefined),
    byHostname: () => undefined,
  };
  const ok = httpRoute({ parentRefs: [{ kind: 'Service', name: 's' }], rules: [{ backendRefs: [{ name: 's', port: 80 }] }] }).route!;
  t.same(routeStatus(ok, services).map((c) => `${c.type}=${c.status}:${c.reason}`), ['Accepted=True:Accepted', 'ResolvedRefs=True:ResolvedRefs']);
  const bad = httpRoute({ parentRefs: [{ kind: 'Service', name: 'gone' }], rules: [{ backendRefs: [{ name: 'missing', port: 80 }, { name: 's', port: 81, weight: 0 }] }] }).route!;
  const st = routeStatus(bad, services);
  t.same(st.map((c) => `${c.type}=${c.status}:${c.reason}`), ['Accepted=False:NoMatchingParent', 'ResolvedRefs=False:BackendNotFound']);
  t.match(st[1]?.message, /backend default\/missing not found; rules\[0\]: backend default\/s has no port 81/);
});
