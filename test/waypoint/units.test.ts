/** Pure parts of the waypoint: L7 authorization semantics, path rewrites, sniffing, retry conditions. */
import t from 'tap';
import { Problems } from '../../core/validation/check.js';
import { WaypointPolicyConverter } from '../../core/kube/waypoint-policy.js';
import type { WaypointPolicy } from '../../core/model/types.js';
import { authorizeRequest, type RequestAttrs } from '../../core/authz/evaluate.js';
import { hostMatches, pathMatches } from '../../core/authz/match.js';
import { rewritePath } from '../../waypoint/filters/rewrite.js';
import { sniff } from '../../waypoint/inbound.js';
import { retriable } from '../../waypoint/filters/retry.js';
import { ISTIO_DEFAULT_RETRY } from '../../core/kube/routes/shared.js';
import { upstreamConnectFailed, upstreamRefused, upstreamReset, upstreamTimeout } from '../../waypoint/status.js';
import { keepAliveHintMs } from '../../waypoint/upstream.js';
import { idempotent } from '../../waypoint/forward.js';
import { forwardable } from '../../waypoint/hop.js';
import { applyModifier } from '../../waypoint/filters/headers.js';

function policy(name: string, spec: Record<string, unknown>): WaypointPolicy {
  const p = new Problems();
  const out = new WaypointPolicyConverter(p, 'istio-system').policy(name, 'default', { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], ...spec }, 'spec');
  if (!out) throw new Error(p.list.join('\n'));
  return out;
}

const req = (method: string, path: string, extra: Partial<NonNullable<RequestAttrs['http']>> = {}, principal = 'spiffe://cluster.local/ns/default/sa/sleep'): RequestAttrs => ({
  sourcePrincipal: principal,
  sourceIp: '10.0.0.5',
  destinationIp: '10.96.0.10',
  destinationPort: 80,
  http: { host: 'echo.default.svc.cluster.local:80', method, path, headers: {}, ...extra },
});

t.test('DENY by method and path prefix; GET passes', async (t) => {
  const deny = policy('deny-admin', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], paths: ['/admin*'] } }] }] });
  t.equal(authorizeRequest([deny], req('POST', '/admin/users')).allowed, false);
  t.equal(authorizeRequest([deny], req('GET', '/admin/users')).allowed, true);
  t.equal(authorizeRequest([deny], req('POST', '/public')).allowed, true);
});

t.test('ALLOW: principals, namespaces, hosts, headers; anything else is denied', async (t) => {
  const allow = policy('allow', {
    action: 'ALLOW',
    rules: [
      {
        from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }],
        to: [{ operation: { hosts: ['echo.default.svc.cluster.local'], paths: ['/api/{*}/items', '*.json'] } }],
        when: [{ key: 'request.headers[x-tenant]', values: ['acme*'] }],
      },
    ],
  });
  const h = { headers: { 'x-tenant': 'acme-1' } };
  t.equal(authorizeRequest([allow], req('GET', '/api/v1/items', h)).allowed, true, 'path template {*}, host with port, header prefix');
  t.equal(authorizeRequest([allow], req('GET', '/data.json', h)).allowed, true, 'suffix path');
  t.equal(authorizeRequest([allow], req('GET', '/api/v1/x/items', h)).allowed, false, '{*} is one segment');
  t.equal(authorizeRequest([allow], req('GET', '/api/v1/items')).allowed, false, 'header missing');
  t.equal(authorizeRequest([allow], req('GET', '/api/v1/items', h, 'spiffe://cluster.local/ns/default/sa/other')).allowed, false, 'other principal');
  t.match(authorizeRequest([allow], req('GET', '/nope', h)).reason, /no ALLOW policy matched/);
});

t.test('AUDIT never decides; requestPrincipals never match without JWT; TCP is stricter', async (t) => {
  const audit = policy('audit', { action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/secret'] } }] }] });
  const d = authorizeRequest([audit], req('GET', '/secret'));
  t.equal(d.allowed, true);
  t.same(d.audit, ['default/audit']);
  const jwt = policy('jwt', { action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] });
  t.equal(authorizeRequest([jwt], req('GET', '/')).allowed, false);
  const httpAllow = policy('http-allow', { action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] });
  const httpDeny = policy('http-deny', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], ports: ['80'] } }] }] });
  const tcp: RequestAttrs = { sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep', sourceIp: '10.0.0.5', destinationIp: '10.96.0.10', destinationPort: 80 };
  t.equal(authorizeRequest([httpAllow], tcp).allowed, false, 'an ALLOW on HTTP fields admits no TCP connection');
  t.equal(authorizeRequest([httpDeny], tcp).allowed, false, 'a DENY on HTTP fields is enforced without them');
  t.equal(authorizeRequest([httpDeny], { ...tcp, destinationPort: 81 }).allowed, true, 'its port part still applies');
});

t.test('waypoint policy validation', async (t) => {
  const p = new Problems();
  new WaypointPolicyConverter(p, 'istio-system').policy(
    'x',
    'default',
    { targetRefs: [{ kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' }, { kind: 'Pod', name: 'x' }], action: 'CUSTOM', rules: [{ to: [{ operation: { paths: ['admin'] } }], when: [{ key: 'request.size', values: ['1'] }] }] },
    'spec',
  );
  t.same(p.list, [
    'spec.targetRefs[0]: a GatewayClass target is only honoured in the root namespace istio-system (as in Istio)',
    'spec.targetRefs[1].kind: "Pod" is not supported by the mesh; expected one of Gateway, Service, GatewayClass',
    'spec.action: CUSTOM (external authorization) is not supported by waypoints yet; use ALLOW, DENY or AUDIT',
    'spec.rules[0].to[0].operation.paths[0]: "admin" is not a path; expected /..., optionally with * at the start or end',
    'spec.rules[0].when[0].key: "request.size" is not a supported condition key; expected request.headers[<name>], request.auth.claims[<name>] (nested: [<a>][<b>]), source.ip, source.namespace, source.principal, remote.ip, destination.ip, destination.port, request.auth.principal, request.auth.audiences, request.auth.presenter, connection.sni',
  ]);
});

t.test('host and path patterns', async (t) => {
  t.ok(hostMatches('*.example.com', 'api.example.com:8080'));
  t.ok(hostMatches('API.example.com', 'api.example.com'));
  t.notOk(hostMatches('api.example.com:9090', 'api.example.com:8080'));
  t.ok(pathMatches('/a/{**}', '/a/b/c'));
  t.notOk(pathMatches('/a/{*}', '/a/b/c'));
  t.ok(pathMatches('*', '/x'));
});

t.test('path rewrites', async (t) => {
  const prefix = (value: string) => ({ path: { type: 'PathPrefix' as const, value }, headers: [], queryParams: [] });
  t.equal(rewritePath('/foo/bar?x=1', { type: 'ReplacePrefixMatch', value: '/v2' }, prefix('/foo')), '/v2/bar?x=1');
  t.equal(rewritePath('/foo', { type: 'ReplacePrefixMatch', value: '/v2' }, prefix('/foo')), '/v2');
  t.equal(rewritePath('/foo/bar', { type: 'ReplacePrefixMatch', value: '/' }, prefix('/foo')), '/bar');
  t.equal(rewritePath('/x', { type: 'ReplacePrefixMatch', value: '/v2' }, prefix('/')), '/v2/x');
  t.equal(rewritePath('/foobar', { type: 'ReplacePrefixMatch', value: '/baz' }, { path: { type: 'Prefix', value: '/foo' }, headers: [], queryParams: [] }), '/bazbar', 'Istio prefix: plain replace');
  t.equal(rewritePath('/a/b?q', { type: 'ReplaceFullPath', value: '/new' }, undefined), '/new?q');
});

t.test('sniffing and hop-by-hop headers', async (t) => {
  t.equal(sniff(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'h2');
  t.equal(sniff(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
  t.equal(sniff(Buffer.from('\x16\x03\x01\x02\x00')), 'tcp', 'a TLS ClientHello is not HTTP');
  t.same(forwardable({ connection: 'keep-alive, x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers, deflate', 'x-ok': '2', ':path': '/' }), { te: 'trailers', 'x-ok': '2' });
});

t.test('retry conditions', async (t) => {
  const on5xx = { ...ISTIO_DEFAULT_RETRY, retryOn: ['5xx'], codes: [] };
  t.ok(retriable(on5xx, { status: 500 }));
  t.notOk(retriable(on5xx, { status: 404 }));
  t.ok(retriable(on5xx, upstreamConnectFailed('x', new Error('refused'))));
  t.ok(retriable(on5xx, upstreamTimeout(10, 'per-try')));
  t.ok(retriable(ISTIO_DEFAULT_RETRY, { status: 503 }), 'the default retries 503');
  t.notOk(retriable(ISTIO_DEFAULT_RETRY, { status: 500 }), 'but not 500');
  t.ok(retriable(ISTIO_DEFAULT_RETRY, upstreamConnectFailed('x', new Error('refused'))), 'and connect failures');
  // Resets: the default retries only what is safe to send again (reset-before-request).
  t.ok(retriable(ISTIO_DEFAULT_RETRY, upstreamReset('x', new Error('socket hang up'), true)), 'the default retries a safe reset');
  t.notOk(retriable(ISTIO_DEFAULT_RETRY, upstreamReset('x', new Error('socket hang up'), false)), 'but not a request the backend may have got');
  t.ok(retriable(ISTIO_DEFAULT_RETRY, upstreamRefused('x', new Error('refused stream'))), 'and a refused stream');
  const onReset = { ...ISTIO_DEFAULT_RETRY, retryOn: ['reset'], codes: [] };
  t.ok(retriable(onReset, upstreamReset('x', new Error('reset'), false)), '`reset` retries any reset (Envoy)');
  const none = { ...ISTIO_DEFAULT_RETRY, retryOn: ['retriable-status-codes'], codes: [503] };
  t.notOk(retriable(none, upstreamReset('x', new Error('reset'), true)), 'no reset condition: no retry, even when safe');
});

t.test("keep-alive hints: Node's rule, N-1 s; 0 means do not reuse", async (t) => {
  t.equal(keepAliveHintMs('timeout=5'), 4000);
  t.equal(keepAliveHintMs('timeout=5, max=100'), 4000);
  t.equal(keepAliveHintMs('max=100, timeout=60'), 59_000);
  t.equal(keepAliveHintMs('timeout=1'), 0);
  t.equal(keepAliveHintMs(undefined), undefined);
  t.equal(keepAliveHintMs('max=5'), undefined);
});

t.test('idempotent requests (RFC 9110 §9.2.2, or an Idempotency-Key)', async (t) => {
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) t.ok(idempotent({ method: m, headers: {} }), m);
  for (const m of ['POST', 'PATCH', 'CONNECT']) t.notOk(idempotent({ method: m, headers: {} }), m);
  t.ok(idempotent({ method: 'POST', headers: { 'idempotency-key': 'k1' } }), 'POST with Idempotency-Key');
});

t.test('issue 19: a header value with CR, LF or NUL is never set, even one that reached the model without the converters', async (t) => {
  const h: Record<string, string | string[] | number | undefined> = { 'x-b': 'kept' };
  applyModifier(h, {
    set: [{ name: 'x-a', value: 'a\r\nx-injected: 1' }, { name: 'x-ok', value: 'fine\tvalue' }],
    add: [{ name: 'x-b', value: 'nul\u0000' }, { name: 'x-b', value: 'more' }],
    remove: [],
  });
  t.same(h, { 'x-b': 'kept,more', 'x-ok': 'fine\tvalue' }, 'the bad values are dropped, the others applied');
});
