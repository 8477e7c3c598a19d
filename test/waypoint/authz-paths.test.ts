/**
 * AuthorizationPolicy path templates (`{*}`, `{**}`) through the waypoint's matcher
 * (core/authz/match.ts `pathMatches`, RE2 underneath): Istio's semantics, and no template can stall
 * the shared waypoint. `/{**}{**}{**}{**}{**}{**}x` took 3.7 s on a 100-character path with V8's
 * backtracking RegExp, growing as n^6; on 1000 characters that is beyond tap's timeout, so these
 * tests fail by timing out if matching ever backtracks again. They assert results only.
 */
import t from 'tap';
import { Problems } from '../../core/validation/check.js';
import { WaypointPolicyConverter } from '../../core/kube/waypoint-policy.js';
import { PolicySpecParser } from '../../core/kube/authorization-policy.js';
import { authorizeRequest, type RequestAttrs } from '../../core/authz/evaluate.js';
import { pathMatches, policyPathProblem } from '../../core/authz/match.js';
import type { WaypointPolicy } from '../../core/model/types.js';

const long = '/' + 'a'.repeat(1000);

t.test('templates: one segment, the rest, literal parts', async (t) => {
  const table: [string, string, boolean][] = [
    ['/api/{*}/items', '/api/v1/items', true],
    ['/api/{*}/items', '/api/v1/x/items', false],
    ['/api/{*}/items', '/api//items', false],
    ['/api/{**}', '/api/v1/x/items', true],
    ['/api/{**}', '/api/', false],
    ['/api/{**}/items', '/api/v1/x/items', true],
    ['/a+b/{*}', '/a+b/c', true],
    ['/a+b/{*}', '/aab/c', false],
    ['/{**}{**}{**}{**}{**}{**}x', long, false],
    ['/{**}{**}{**}{**}{**}{**}x', long + 'x', true],
    ['/{*}{*}{*}{*}{*}{*}{*}{*}/x', long, false],
  ];
  for (const [pattern, path, want] of table) {
    t.equal(pathMatches(pattern, path), want, `${pattern} on ${path.length > 24 ? path.slice(0, 24) + '...' : path}`);
  }
});

t.test('issue 19: a pathological template is refused with the rule; one that reaches the evaluator anyway still decides a long path', async (t) => {
  const p = new Problems();
  const spec = { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/{**}{**}{**}{**}{**}{**}x'] } }] }] };
  const refused = new WaypointPolicyConverter(p, 'istio-system').policy('deny-x', 'default', spec, 'spec');
  t.equal(refused, undefined, 'the policy is refused');
  t.same(p.list, [
    'spec.rules[0].to[0].operation.paths[0]: "/{**}{**}{**}{**}{**}{**}x" is not a valid path template: segment "{**}{**}{**}{**}{**}{**}x"; in a path template {*} and {**} are each a whole path segment, *, { and } appear nowhere else, and {**} is the last operator (Istio)',
  ]);
  // The model as the converter would have made it (a policy from another source): the matcher stays linear.
  const deny = { name: 'deny-x', namespace: 'default', targetRefs: [{ kind: 'Service', name: 'echo' }], action: 'DENY', rules: [{ from: [], to: [{ paths: ['/{**}{**}{**}{**}{**}{**}x'], hasL7Fields: true }], when: [] }] } as WaypointPolicy;
  const req = (path: string): RequestAttrs => ({
    sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep',
    sourceIp: '10.0.0.5',
    destinationIp: '10.96.0.10',
    destinationPort: 80,
    http: { host: 'echo', method: 'GET', path, headers: {} },
  });
  t.equal(authorizeRequest([deny], req(long)).allowed, true, 'not matched: allowed');
  t.equal(authorizeRequest([deny], req(long + 'x')).allowed, false, 'matched: denied');
});

t.test("issue 19: path templates follow Istio's rules (istio/api Operation.paths), at both layers", async (t) => {
  const ok = ['/foo/{*}', '/foo/{**}/', '/foo/{*}/bar/{**}', '/{*}/{*}/x', '/api/*', '*.txt', '/exact'];
  for (const s of ok) t.equal(policyPathProblem(s), undefined, `${s} is accepted`);
  const refused: [string, RegExp][] = [
    ['/*/baz/{*}', /segment "\*"/],
    ['/**/baz/{*}', /segment "\*\*"/],
    ['/{**}/foo/{*}', /\{\*\*\} is not the last operator/],
    ['/{**}/{**}', /\{\*\*\} is not the last operator/],
    ['/foo/{*}.txt', /segment "\{\*\}\.txt"/],
    ['/{name}/{*}', /segment "\{name\}"/],
    ['{*}/x', /it must start with \//],
    ['/' + 'a'.repeat(1024), /is too long for a path; at most 1024 characters/],
    ['/a\u0000b', /control characters are not allowed/],
    ['admin', /is not a path; expected \/\.\.\., optionally with \* at the start or end/],
  ];
  for (const [s, why] of refused) t.match(policyPathProblem(s), why, `${JSON.stringify(s.slice(0, 24))} is refused`);
  // ztunnel's parser checks the HTTP paths it cannot enforce the same way.
  const l4 = new Problems();
  new PolicySpecParser(l4, 'istio-system').authorizationPolicy({ name: 'x', namespace: 'default' }, { rules: [{ to: [{ operation: { paths: ['/foo/{*}.txt'] } }] }] }, 'spec');
  t.same(l4.list, [`spec.rules[0].to[0].operation.paths[0]: ${policyPathProblem('/foo/{*}.txt')}`], 'the same problem for an L4 policy');
});
