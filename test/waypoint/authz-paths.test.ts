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
import { authorizeRequest, type RequestAttrs } from '../../core/authz/evaluate.js';
import { pathMatches } from '../../core/authz/match.js';

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

t.test('a DENY with a pathological template decides a long path', async (t) => {
  const p = new Problems();
  const deny = new WaypointPolicyConverter(p, 'istio-system').policy(
    'deny-x',
    'default',
    { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/{**}{**}{**}{**}{**}{**}x'] } }] }] },
    'spec',
  );
  t.same(p.list, []);
  const req = (path: string): RequestAttrs => ({
    sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep',
    sourceIp: '10.0.0.5',
    destinationIp: '10.96.0.10',
    destinationPort: 80,
    http: { host: 'echo', method: 'GET', path, headers: {} },
  });
  t.equal(authorizeRequest([deny!], req(long)).allowed, true, 'not matched: allowed');
  t.equal(authorizeRequest([deny!], req(long + 'x')).allowed, false, 'matched: denied');
});
