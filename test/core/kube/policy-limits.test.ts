/**
 * Issue 19's limits on the HTTP fields of AuthorizationPolicy (hosts, methods, when keys and
 * values, request principals), and the JWT fields (requestPrincipals, request.auth.*): the same
 * refusal at both layers' parsers (waypoint-policy.ts for targetRefs policies,
 * authorization-policy.ts for ztunnel's), each naming the field and the limit.
 */
import t from 'tap';
import { Problems } from '../../../core/validation/check.js';
import { WaypointPolicyConverter } from '../../../core/kube/waypoint-policy.js';
import {
  CONDITION_KEY_MAX,
  CONDITION_VALUE_MAX,
  POLICY_HOST_MAX,
  POLICY_METHOD_MAX,
  PolicySpecParser,
  REQUEST_PRINCIPAL_MAX,
} from '../../../core/kube/authorization-policy.js';

const waypoint = (rule: Record<string, unknown>) => {
  const p = new Problems();
  const policy = new WaypointPolicyConverter(p, 'istio-system').policy('x', 'apps', { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], rules: [rule] }, 'spec');
  return { policy, problems: p.list };
};
const l4 = (rule: Record<string, unknown>) => {
  const p = new Problems();
  const policy = new PolicySpecParser(p, 'istio-system').authorizationPolicy({ name: 'x', namespace: 'apps' }, { rules: [rule] }, 'spec');
  return { policy, problems: p.list };
};
const op = (o: Record<string, unknown>) => ({ to: [{ operation: o }] });
const when = (key: string, values: string[]) => ({ when: [{ key, values }] });

t.test('accepted: the JWT fields and values at their limits', async (t) => {
  const ok = [
    { from: [{ source: { requestPrincipals: ['https://issuer.example/alice', '*', 'https://issuer.example/*'], notRequestPrincipals: ['*@evil'] } }] },
    when('request.auth.claims[groups]', ['admins']),
    when('request.auth.claims[org][role]', ['admin']),
    when('request.auth.audiences', ['api']),
    when('request.auth.presenter', ['cli']),
    when('request.auth.principal', ['https://issuer.example/*']),
    when('request.headers[x-tab]', ['a\tb']),
    when('request.headers[x-long]', ['v'.repeat(CONDITION_VALUE_MAX)]),
    op({ hosts: ['a'.repeat(253) + ':65535'], methods: ['M'.repeat(POLICY_METHOD_MAX), 'GET'] }),
  ];
  for (const rule of ok) {
    const { policy, problems } = waypoint(rule);
    t.same(problems, [], JSON.stringify(rule).slice(0, 80));
    t.ok(policy);
  }
});

t.test('refused at the waypoint: the field, the value and the limit', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [op({ hosts: ['h'.repeat(POLICY_HOST_MAX + 1)] }), new RegExp(`^spec.rules\\[0\\].to\\[0\\].operation.hosts\\[0\\]: .* is too long for a host; at most ${POLICY_HOST_MAX} characters`)],
    [op({ notHosts: ['a b'] }), /^spec.rules\[0\].to\[0\].operation.notHosts\[0\]: "a b" is not a host: control, space, bidi and zero-width characters are not allowed/],
    [op({ hosts: ['evil\u202ecom'] }), /hosts\[0\]: "evil\\u202ecom" is not a host/],
    [op({ methods: ['G'.repeat(POLICY_METHOD_MAX + 1)] }), new RegExp(`methods\\[0\\]: .* is too long for a method; at most ${POLICY_METHOD_MAX} characters`)],
    [op({ methods: ['GET\r\nX: 1'] }), /methods\[0\]: "GET\\r\\nX: 1" is not an HTTP method; expected a token such as GET/],
    [when('request.headers[x]', ['v'.repeat(CONDITION_VALUE_MAX + 1)]), new RegExp(`^spec.rules\\[0\\].when\\[0\\].values\\[0\\]: .* is too long for a condition value; at most ${CONDITION_VALUE_MAX} characters`)],
    [when('request.auth.claims[groups]', ['a\u0000']), /values\[0\]: "a\\u0000" is not a condition value: control characters are not allowed/],
    [when(`request.headers[${'h'.repeat(CONDITION_KEY_MAX)}]`, ['v']), new RegExp(`^spec.rules\\[0\\].when\\[0\\].key: .* is too long for a condition key; at most ${CONDITION_KEY_MAX} characters`)],
    [when('request.auth.claims[]', ['v']), /key: "request.auth.claims\[\]" is not a supported condition key; expected request.headers\[<name>\], request.auth.claims\[<name>\] \(nested: \[<a>\]\[<b>\]\)/],
    [when('request.auth.claims[a]x', ['v']), /is not a supported condition key/],
    [when('request.auth.claims[a\u0007]', ['v']), /key: "request.auth.claims\[a\\u0007\]" is not a condition key: control characters are not allowed/],
    [when('request.auth.principal', ['*a*']), /is not a request principal; expected <issuer>\/<subject>, optionally with one \* at the start or the end/],
    [{ from: [{ source: { requestPrincipals: ['i'.repeat(REQUEST_PRINCIPAL_MAX + 1)] } }] }, new RegExp(`requestPrincipals\\[0\\]: .* is too long for a request principal; at most ${REQUEST_PRINCIPAL_MAX} characters`)],
    [{ from: [{ source: { notRequestPrincipals: ['iss/\u200bsub'] } }] }, /notRequestPrincipals\[0\]: "iss\/\\u200bsub" is not a request principal: control, bidi and zero-width characters are not allowed/],
  ];
  for (const [rule, want] of cases) {
    const { policy, problems } = waypoint(rule);
    t.equal(policy, undefined, 'refused');
    t.match(problems, [want], problems[0]);
  }
});

t.test("ztunnel's parser checks the HTTP fields it cannot enforce the same way", async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [op({ hosts: ['h'.repeat(POLICY_HOST_MAX + 1)] }), /hosts\[0\]: .* is too long for a host/],
    [op({ methods: ['GET\r\nX: 1'] }), /methods\[0\]: .* is not an HTTP method/],
    [when('request.headers[x]', ['a\r\nb']), /values\[0\]: "a\\r\\nb" is not a condition value: control characters are not allowed/],
    [when(`request.headers[${'h'.repeat(CONDITION_KEY_MAX)}]`, ['v']), /key: .* is too long for a condition key/],
    [{ from: [{ source: { requestPrincipals: ['i'.repeat(REQUEST_PRINCIPAL_MAX + 1)] } }] }, /is too long for a request principal/],
  ];
  for (const [rule, want] of cases) {
    const { policy, problems } = l4(rule);
    t.equal(policy, undefined, 'refused');
    t.match(problems, [want], problems[0]);
  }
  const { problems } = l4({ from: [{ source: { requestPrincipals: ['https://issuer.example/*'] } }], to: [{ operation: { methods: ['GET'], hosts: ['echo:80'] } }] });
  t.same(problems, [], 'within the limits');
});
