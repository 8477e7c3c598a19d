/**
 * `requestPrincipals` and `request.auth.*` in core/authz/evaluate.ts: what a verified JWT
 * (`RequestAttrs.http.auth`) matches at the waypoint, what a request without one matches, and that
 * the layers that cannot see a JWT (L4, TCP passthrough) stay stricter than written.
 */
import t from 'tap';
import { authorizeConnection, authorizeRequest, type RequestAttrs, type RequestAuth } from '../../../core/authz/evaluate.js';
import type { PolicyCondition, PolicySource, WaypointPolicy } from '../../../core/model/types.js';

const auth: RequestAuth = {
  principal: 'https://issuer.example/alice',
  audiences: ['api', 'web'],
  presenter: 'cli',
  claims: { sub: 'alice', groups: ['dev', 'ops'], org: { role: 'admin', level: 3 }, scope: ['read', 'write'], email: 'alice@example.com' },
};
const req = (a?: RequestAuth, http = true): RequestAttrs => ({
  sourcePrincipal: 'spiffe://cluster.local/ns/apps/sa/client',
  sourceIp: '10.0.0.5',
  destinationIp: '10.96.0.10',
  destinationPort: 80,
  ...(http ? { http: { host: 'echo', method: 'GET', path: '/', headers: {}, ...(a ? { auth: a } : {}) } } : {}),
});
const policy = (action: WaypointPolicy['action'], from: PolicySource[], when: PolicyCondition[] = []): WaypointPolicy => ({
  name: 'p',
  namespace: 'apps',
  targetRefs: [{ kind: 'Service', name: 'echo' }],
  action,
  rules: [{ from, to: [], when }],
});
const src = (s: Omit<PolicySource, 'hasL7Fields'>): PolicySource => ({ ...s, hasL7Fields: true });

t.test('requestPrincipals: exact, *, prefix, suffix; absent without a token', async (t) => {
  const table: [string[], RequestAuth | undefined, boolean][] = [
    [['https://issuer.example/alice'], auth, true],
    [['*'], auth, true],
    [['https://issuer.example/*'], auth, true],
    [['*/alice'], auth, true],
    [['https://other.example/*'], auth, false],
    [['*'], undefined, false],
  ];
  for (const [patterns, a, want] of table) {
    t.equal(authorizeRequest([policy('ALLOW', [src({ requestPrincipals: patterns })])], req(a)).allowed, want, `${patterns} ${a ? 'with' : 'without'} a token`);
  }
  const denyAnonymous = policy('DENY', [src({ notRequestPrincipals: ['*'] })]);
  t.equal(authorizeRequest([denyAnonymous], req()).allowed, false, "Istio's require-a-JWT DENY denies a request without a token");
  t.equal(authorizeRequest([denyAnonymous], req(auth)).allowed, true, 'and lets a verified one through');
});

t.test('request.auth.* conditions', async (t) => {
  const table: [string, string[], boolean][] = [
    ['request.auth.principal', ['https://issuer.example/*'], true],
    ['request.auth.audiences', ['web'], true],
    ['request.auth.audiences', ['other'], false],
    ['request.auth.presenter', ['cli'], true],
    ['request.auth.presenter', ['web*'], false],
    ['request.auth.claims[groups]', ['ops'], true],
    ['request.auth.claims[groups]', ['qa'], false],
    ['request.auth.claims[org][role]', ['adm*'], true],
    ['request.auth.claims[org][level]', ['3'], false],
    ['request.auth.claims[org][missing]', ['*'], false],
    ['request.auth.claims[org]', ['*'], false],
    ['request.auth.claims[email]', ['*@example.com'], true],
    ['request.auth.claims[scope]', ['write'], true],
    ['request.auth.unknown', ['*'], false],
  ];
  for (const [key, values, want] of table) {
    const allow = policy('ALLOW', [], [{ key, values }]);
    t.equal(authorizeRequest([allow], req(auth)).allowed, want, `${key} ${values}`);
    t.equal(authorizeRequest([allow], req()).allowed, false, `${key}: no token matches no value`);
    const notValues = policy('ALLOW', [], [{ key, notValues: values }]);
    t.equal(authorizeRequest([notValues], req()).allowed, true, `${key}: no token matches notValues`);
  }
});

t.test('layers that cannot see a JWT: ALLOW matches nothing, DENY denies more', async (t) => {
  const allow = policy('ALLOW', [src({ requestPrincipals: ['*'] })]);
  t.equal(authorizeRequest([allow], req(auth, false)).allowed, false, 'TCP passthrough: the ALLOW rule matches nothing');
  t.equal(authorizeConnection([allow], req(auth, false)).allowed, false, 'L4: likewise');
  const deny = policy('DENY', [src({ requestPrincipals: ['https://evil.example/*'] })]);
  t.equal(authorizeRequest([deny], req(auth, false)).allowed, false, 'TCP passthrough: the DENY is enforced without the JWT field');
  t.equal(authorizeRequest([deny], req(auth)).allowed, true, 'HTTP: the principal is known and does not match');
});
