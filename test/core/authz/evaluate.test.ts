/**
 * ztunnel's entry to the AuthorizationPolicy evaluator (`authorizeConnection`, L4): unit cases.
 * The semantics both entries share are the table in semantics.test.ts.
 */
import t from 'tap';
import { authorizeConnection as authorize, type ConnectionAttrs } from '../../../core/authz/evaluate.js';
import { matchesPattern } from '../../../core/authz/match.js';
import type {
  AuthorizationPolicy,
  PolicyCondition,
  PolicyOperation,
  PolicyRule,
  PolicySource,
} from '../../../core/model/types.js';

const pol = (action: 'ALLOW' | 'DENY', rules: PolicyRule[], name = action.toLowerCase()): AuthorizationPolicy => ({
  name,
  namespace: 'default',
  scope: 'namespace',
  selector: {},
  action,
  rules,
});
const rule = (r: { from?: PolicySource[]; to?: PolicyOperation[]; when?: PolicyCondition[] } = {}): PolicyRule => ({
  from: r.from ?? [],
  to: r.to ?? [],
  when: r.when ?? [],
});
const src = (s: Omit<PolicySource, 'hasL7Fields'> & { hasL7Fields?: boolean }): PolicySource => ({ hasL7Fields: false, ...s });
const op = (o: Omit<PolicyOperation, 'hasL7Fields'> & { hasL7Fields?: boolean }): PolicyOperation => ({ hasL7Fields: false, ...o });

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const mtls: ConnectionAttrs = { sourcePrincipal: SLEEP, sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 8080 };
const plain: ConnectionAttrs = { sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 8080 };
const from = (s: PolicySource) => rule({ from: [s] });

/** Whether an ALLOW policy with this one rule admits `conn` (its only applicable policy). */
const allows = (r: PolicyRule, conn: ConnectionAttrs) => authorize([pol('ALLOW', [r])], conn).allowed;

t.test('decision order: DENY, then no ALLOW, then any ALLOW', async (t) => {
  t.same(authorize([], mtls), { allowed: true, audit: [], reason: 'allowed: no ALLOW policy applies' });

  const denyAll = pol('DENY', [rule()], 'deny-all');
  const allowAll = pol('ALLOW', [rule()], 'allow-all');
  t.same(authorize([allowAll, denyAll], mtls), {
    allowed: false,
    policy: 'default/deny-all',
    audit: [],
    reason: 'denied by DENY policy default/deny-all',
  }, 'a matching DENY beats a matching ALLOW whatever the order');

  const denyOther = pol('DENY', [from(src({ namespaces: ['other'] }))]);
  t.same(authorize([denyOther], mtls), { allowed: true, audit: [], reason: 'allowed: no ALLOW policy applies' }, 'only non-matching DENY');

  const allowOther = pol('ALLOW', [from(src({ namespaces: ['other'] }))], 'allow-other');
  t.same(authorize([allowOther], mtls), {
    allowed: false,
    audit: [],
    reason: 'denied: no ALLOW policy matched (1 applies to the destination)',
  }, 'ALLOW policies exist but none matches');

  t.same(authorize([allowOther, allowAll], mtls), {
    allowed: true,
    policy: 'default/allow-all',
    audit: [],
    reason: 'allowed by ALLOW policy default/allow-all',
  }, 'any matching ALLOW allows');

  t.equal(authorize([pol('ALLOW', [])], mtls).allowed, false, 'ALLOW without rules is allow-nothing');
  t.equal(authorize([pol('DENY', [])], mtls).allowed, true, 'DENY without rules matches nothing');
  t.equal(authorize([pol('ALLOW', [rule()])], plain).allowed, true, 'empty rule matches everything, plaintext too');
});

t.test('rule structure: rules OR, from/to elements OR, fields AND, when AND', async (t) => {
  const twoRules = [from(src({ namespaces: ['a'] })), from(src({ namespaces: ['default'] }))];
  t.ok(authorize([pol('ALLOW', twoRules)], mtls).allowed, 'second rule matches');

  t.ok(allows(rule({ from: [src({ namespaces: ['a'] }), src({ namespaces: ['default'] })] }), mtls), 'from elements OR');
  t.notOk(allows(rule({ from: [src({ namespaces: ['default'], ipBlocks: ['192.168.0.0/16'] })] }), mtls), 'fields in one source AND');
  t.ok(allows(rule({ to: [op({ ports: [80] }), op({ ports: [8080] })] }), mtls), 'to elements OR');
  t.notOk(allows(rule({ from: [src({ namespaces: ['default'] })], to: [op({ ports: [80] })] }), mtls), 'from AND to');
  t.notOk(
    allows(rule({ when: [{ key: 'destination.port', values: ['8080'] }, { key: 'source.ip', values: ['10.9.0.0/16'] }] }), mtls),
    'when conditions AND',
  );
});

t.test('principals: exact, prefix, suffix, presence; plaintext never matches', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['cluster.local/ns/default/sa/sleep', true],
    ['cluster.local/ns/default/sa/other', false],
    ['spiffe://cluster.local/ns/default/sa/sleep', false], // Istio principals carry no scheme
    ['*/ns/default/sa/sleep', true],
    ['*/sa/sleep', true],
    ['cluster.local/ns/default/*', true],
    ['cluster.local/ns/other/*', false],
    ['*', true],
  ];
  for (const [p, want] of cases) {
    t.equal(allows(from(src({ principals: [p] })), mtls), want, `principals [${p}] (mtls)`);
    t.equal(allows(from(src({ principals: [p] })), plain), false, `principals [${p}] (plaintext)`);
    t.equal(allows(from(src({ notPrincipals: [p] })), mtls), !want, `notPrincipals [${p}] (mtls)`);
    t.equal(allows(from(src({ notPrincipals: [p] })), plain), true, `notPrincipals [${p}] (plaintext)`);
  }
  t.ok(allows(from(src({ principals: ['x/ns/a/sa/b', '*/sa/sleep'] })), mtls), 'any principal may match');
  t.notOk(
    allows(from(src({ principals: ['*'] })), { ...mtls, sourcePrincipal: 'cluster.local/ns/default/sa/sleep' }),
    'a peer id without spiffe:// is no principal',
  );
  t.ok(matchesPattern('*x*', 'ax*'), 'Istio order: leading * wins');
  t.notOk(matchesPattern('*', ''), 'presence needs a value');
});

t.test('namespaces come from the authenticated identity', async (t) => {
  t.ok(allows(from(src({ namespaces: ['default'] })), mtls));
  t.notOk(allows(from(src({ namespaces: ['other'] })), mtls));
  t.ok(allows(from(src({ namespaces: ['def*'] })), mtls), 'prefix wildcard');
  t.ok(allows(from(src({ namespaces: ['*ult'] })), mtls), 'suffix wildcard');
  t.ok(allows(from(src({ namespaces: ['*'] })), mtls), 'any namespace');
  t.notOk(allows(from(src({ namespaces: ['*'] })), plain), 'plaintext has no namespace');
  t.notOk(allows(from(src({ namespaces: ['default'] })), { ...plain, sourceNamespace: 'default' }), 'sourceNamespace without principal is ignored');
  t.ok(allows(from(src({ notNamespaces: ['default'] })), plain), 'plaintext matches notNamespaces');
  t.notOk(allows(from(src({ notNamespaces: ['default'] })), mtls));
  t.ok(allows(from(src({ notNamespaces: ['other'] })), mtls));
  t.ok(
    allows(from(src({ namespaces: ['given'] })), { ...mtls, sourceNamespace: 'given' }),
    'a caller-supplied namespace of the principal is used as is',
  );
});

t.test('ipBlocks: CIDRs and single addresses, IPv4 and IPv6, and not forms', async (t) => {
  const at = (sourceIp: string): ConnectionAttrs => ({ ...plain, sourceIp });
  const cases: Array<[string[], string, boolean]> = [
    [['10.0.0.0/8'], '10.0.0.1', true],
    [['10.0.0.0/8'], '11.0.0.1', false],
    [['10.0.0.1'], '10.0.0.1', true],
    [['10.0.0.1'], '10.0.0.2', false],
    [['10.0.0.0/8'], '::ffff:10.0.0.1', true],
    [['fd00::/16'], 'fd00::1', true],
    [['fd00::/16'], 'fd01::1', false],
    [['fd00::1'], 'FD00:0::1', true],
    [['fd00::/16'], '10.0.0.1', false],
    [['192.168.0.0/16', 'fd00::/16'], 'fd00::5', true],
  ];
  for (const [blocks, ip, want] of cases) {
    t.equal(allows(from(src({ ipBlocks: blocks })), at(ip)), want, `ipBlocks ${blocks} ~ ${ip}`);
    t.equal(allows(from(src({ notIpBlocks: blocks })), at(ip)), !want, `notIpBlocks ${blocks} ~ ${ip}`);
  }
  t.ok(allows(from(src({ ipBlocks: ['10.0.0.0/8'], notIpBlocks: ['10.9.0.0/16'] })), at('10.1.0.1')));
  t.notOk(allows(from(src({ ipBlocks: ['10.0.0.0/8'], notIpBlocks: ['10.9.0.0/16'] })), at('10.9.0.1')));
  t.notOk(allows(from(src({ ipBlocks: ['garbage'] })), at('10.0.0.1')), 'an unreadable block never widens an ALLOW');
});

t.test('ports and notPorts match the destination port', async (t) => {
  t.ok(allows(rule({ to: [op({ ports: [8080] })] }), mtls));
  t.notOk(allows(rule({ to: [op({ ports: [80] })] }), mtls));
  t.ok(allows(rule({ to: [op({ ports: [80, 8080] })] }), mtls));
  t.notOk(allows(rule({ to: [op({ notPorts: [8080] })] }), mtls));
  t.ok(allows(rule({ to: [op({ notPorts: [80] })] }), mtls));
});

t.test('when conditions at L4', async (t) => {
  const cases: Array<[PolicyCondition, ConnectionAttrs, boolean]> = [
    [{ key: 'source.ip', values: ['10.0.0.0/24'] }, mtls, true],
    [{ key: 'source.ip', notValues: ['10.0.0.1'] }, mtls, false],
    [{ key: 'destination.ip', values: ['10.0.0.2'] }, mtls, true],
    [{ key: 'destination.ip', values: ['fd00::/8'] }, mtls, false],
    [{ key: 'destination.port', values: ['8080'] }, mtls, true],
    [{ key: 'destination.port', values: ['80'] }, mtls, false],
    [{ key: 'destination.port', notValues: ['80'] }, mtls, true],
    [{ key: 'source.principal', values: ['cluster.local/ns/default/sa/sleep'] }, mtls, true],
    [{ key: 'source.principal', values: ['*'] }, plain, false],
    [{ key: 'source.principal', notValues: ['*'] }, plain, true],
    [{ key: 'source.namespace', values: ['default'] }, mtls, true],
    [{ key: 'source.namespace', values: ['default'] }, plain, false],
    [{ key: 'source.namespace', values: ['default'], notValues: ['default'] }, mtls, false],
  ];
  for (const [cond, conn, want] of cases) {
    t.equal(allows(rule({ when: [cond] }), conn), want, `${JSON.stringify(cond)} ${conn.sourcePrincipal ? 'mtls' : 'plaintext'}`);
  }
});

t.test('HTTP-only fields make rules stricter, for ALLOW and for DENY', async (t) => {
  const l7src = src({ namespaces: ['default'], hasL7Fields: true }); // e.g. + requestPrincipals
  const l7only = op({ hasL7Fields: true }); // e.g. methods: [GET] only
  const l7port = op({ ports: [8080], hasL7Fields: true }); // methods: [POST], ports: ["8080"]
  const l7when: PolicyCondition = { key: 'request.headers[x-user]', values: ['admin'] };

  // ALLOW: a rule using HTTP attributes matches nothing, even when its L4 part would.
  t.notOk(allows(from(l7src), mtls), 'ALLOW rule with an HTTP source field');
  t.notOk(allows(rule({ to: [l7only] }), mtls), 'ALLOW rule with an HTTP-only operation');
  t.notOk(allows(rule({ to: [op({ ports: [8080] }), l7only] }), mtls), 'one HTTP element drops the whole ALLOW rule');
  t.notOk(allows(rule({ when: [l7when] }), mtls), 'ALLOW rule with an HTTP condition');
  t.ok(
    authorize([pol('ALLOW', [from(l7src), from(src({ namespaces: ['default'] }))])], mtls).allowed,
    'the other rules of the ALLOW policy still match',
  );

  // DENY: HTTP parts are ignored, the rest still denies.
  const denies = (r: PolicyRule, conn: ConnectionAttrs) => !authorize([pol('DENY', [r])], conn).allowed;
  t.ok(denies(rule({ to: [l7only] }), mtls), 'DENY with an HTTP-only operation denies every connection');
  t.ok(denies(rule({ to: [l7only] }), plain), '... plaintext too');
  t.ok(denies(rule({ to: [l7port] }), mtls), 'DENY methods+port denies the port');
  t.notOk(denies(rule({ to: [l7port] }), { ...mtls, destinationPort: 9090 }), '... and only the port');
  t.ok(denies(from(l7src), mtls), 'DENY with HTTP source fields keeps its L4 fields');
  t.notOk(denies(from(l7src), { ...mtls, sourcePrincipal: 'spiffe://cluster.local/ns/other/sa/x' }), '... which still must match');
  t.ok(denies(rule({ when: [l7when] }), plain), 'DENY with an HTTP condition ignores it');
  t.ok(
    denies(rule({ when: [l7when, { key: 'destination.port', values: ['8080'] }] }), mtls),
    'DENY keeps its L4 conditions',
  );
  t.notOk(
    denies(rule({ when: [l7when, { key: 'destination.port', values: ['80'] }] }), mtls),
    '... which still must hold',
  );
});

t.test('plaintext connections against identity-based policies', async (t) => {
  const allowSleep = pol('ALLOW', [from(src({ principals: ['cluster.local/ns/default/sa/sleep'] }))]);
  t.ok(authorize([allowSleep], mtls).allowed);
  t.notOk(authorize([allowSleep], plain).allowed, 'plaintext cannot satisfy an identity ALLOW');
  // The STRICT-like pattern: deny whatever has no identity.
  const denyPlain = pol('DENY', [from(src({ notPrincipals: ['*'] }))]);
  t.notOk(authorize([denyPlain], plain).allowed);
  t.ok(authorize([denyPlain], mtls).allowed);
});
