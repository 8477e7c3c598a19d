/**
 * Istio's documented AuthorizationPolicy semantics as one table that both enforcement points pass:
 * each row's specs go through the real config parser of each layer (PolicySpecParser for ztunnel's
 * selector policies, WaypointPolicyConverter for targetRefs policies) and its request through the
 * entry each proxy calls (`authorizeConnection` in ztunnel/proxy/inbound.ts, `authorizeRequest`
 * in waypoint/filters/authz.ts, waypoint/inbound.ts and waypoint/upgrade.ts), with the expected
 * result per layer. ztunnel never sees the HTTP part of a row; the waypoint sees it, or a TCP
 * connection when the row says `http: 'tcp'`. Waypoint peers are always authenticated, so
 * plaintext rows are L4 only.
 */
import t from 'tap';
import { Problems } from '../../../core/validation/check.js';
import { PolicySpecParser } from '../../../core/kube/authorization-policy.js';
import { WaypointPolicyConverter } from '../../../core/kube/waypoint-policy.js';
import { specProblems } from '../../../core/kube/schema.js';
import {
  authorizeConnection,
  authorizeRequest,
  type AuthzDecision,
  type ConnectionAttrs,
  type EvaluatedPolicy,
  type HttpAttrs,
} from '../../../core/authz/evaluate.js';
import type { AuthorizationPolicy, PolicyRule, WaypointPolicy } from '../../../core/model/types.js';

type Want = 'allow' | 'deny' | 'refused';
interface Spec {
  readonly action?: string;
  readonly rules?: readonly unknown[];
}
interface Row {
  readonly name: string;
  /** Policy specs, named p0, p1 ... in namespace default. */
  readonly policies: readonly Spec[];
  readonly conn?: Partial<ConnectionAttrs>;
  /** The request's HTTP part at the waypoint, or a TCP connection. */
  readonly http?: Partial<HttpAttrs> | 'tcp';
  readonly l4: Want;
  /** `n/a`: the row cannot reach a waypoint (plaintext). */
  readonly l7: Want | 'n/a';
  /** AUDIT policies the waypoint reports. */
  readonly audit?: readonly string[];
}

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const PLAIN = { sourcePrincipal: undefined };
const BASE = { sourcePrincipal: SLEEP, sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 8080 };
const GET: HttpAttrs = { host: 'echo.default.svc.cluster.local', method: 'GET', path: '/', headers: {} };

const from = (source: object) => ({ from: [{ source }] });
const to = (...operations: object[]) => ({ to: operations.map((operation) => ({ operation })) });
const when = (...conditions: object[]) => ({ when: conditions });
const allow = (...rules: object[]): Spec => ({ action: 'ALLOW', rules });
const deny = (...rules: object[]): Spec => ({ action: 'DENY', rules });
const audit = (...rules: object[]): Spec => ({ action: 'AUDIT', rules });

const rows: Row[] = [
  // Decision order.
  { name: 'no policy: allow', policies: [], l4: 'allow', l7: 'allow' },
  { name: 'ALLOW policies, none matching: deny', policies: [allow(from({ namespaces: ['other'] }))], l4: 'deny', l7: 'deny' },
  { name: 'any matching ALLOW allows', policies: [allow(from({ namespaces: ['other'] })), allow({})], l4: 'allow', l7: 'allow' },
  { name: 'DENY before ALLOW', policies: [allow({}), deny({})], l4: 'deny', l7: 'deny' },
  { name: 'a DENY that does not match decides nothing', policies: [deny(from({ namespaces: ['other'] }))], l4: 'allow', l7: 'allow' },
  { name: 'ALLOW without rules is allow-nothing', policies: [{ action: 'ALLOW' }], l4: 'deny', l7: 'deny' },
  { name: 'an empty rule matches everything', policies: [allow({})], conn: PLAIN, l4: 'allow', l7: 'n/a' },
  { name: 'AUDIT never decides', policies: [audit({})], l4: 'refused', l7: 'allow', audit: ['default/p0'] },
  {
    name: 'AUDIT with a non-matching ALLOW: the ALLOW decides',
    policies: [audit({}), allow(from({ namespaces: ['other'] }))],
    l4: 'refused',
    l7: 'deny',
    audit: ['default/p0'],
  },
  { name: 'AUDIT is reported on a denied request too', policies: [deny({}), audit({})], l4: 'refused', l7: 'deny', audit: ['default/p1'] },
  { name: 'an AUDIT that does not match is not reported', policies: [audit(to({ ports: ['80'] }))], l4: 'refused', l7: 'allow', audit: [] },
  { name: 'CUSTOM is refused (external authorization is not supported)', policies: [{ action: 'CUSTOM', rules: [{}] }], l4: 'refused', l7: 'refused' },

  // not* fields.
  { name: 'notPrincipals excludes the peer', policies: [allow(from({ notPrincipals: ['*/sa/sleep'] }))], l4: 'deny', l7: 'deny' },
  { name: 'notNamespaces of another namespace', policies: [allow(from({ notNamespaces: ['other'] }))], l4: 'allow', l7: 'allow' },
  { name: 'notIpBlocks holding the source', policies: [allow(from({ notIpBlocks: ['10.0.0.0/24'] }))], l4: 'deny', l7: 'deny' },
  { name: 'notPorts holding the port', policies: [allow(to({ notPorts: ['8080'] }))], l4: 'deny', l7: 'deny' },
  { name: 'notPorts of another port', policies: [allow(to({ notPorts: ['80'] }))], l4: 'allow', l7: 'allow' },
  { name: 'DENY notPrincipals * denies plaintext', policies: [deny(from({ notPrincipals: ['*'] }))], conn: PLAIN, l4: 'deny', l7: 'n/a' },
  { name: 'DENY notPrincipals * lets mTLS through', policies: [deny(from({ notPrincipals: ['*'] }))], l4: 'allow', l7: 'allow' },
  { name: 'plaintext matches notNamespaces', policies: [allow(from({ notNamespaces: ['default'] }))], conn: PLAIN, l4: 'allow', l7: 'n/a' },

  // ipBlocks and remoteIpBlocks.
  { name: 'ipBlocks holding the source', policies: [allow(from({ ipBlocks: ['10.0.0.0/24'] }))], l4: 'allow', l7: 'allow' },
  { name: 'ipBlocks not holding the source', policies: [allow(from({ ipBlocks: ['10.0.0.0/24'] }))], conn: { sourceIp: '10.1.0.1' }, l4: 'deny', l7: 'deny' },
  { name: 'an IPv6 block', policies: [allow(from({ ipBlocks: ['fd00::/16'] }))], conn: { sourceIp: 'fd00::1' }, l4: 'allow', l7: 'allow' },
  { name: 'a single address', policies: [allow(from({ ipBlocks: ['10.0.0.1'] }))], l4: 'allow', l7: 'allow' },
  {
    name: 'ALLOW remoteIpBlocks: an HTTP attribute for ztunnel, the client address at the waypoint',
    policies: [allow(from({ remoteIpBlocks: ['10.0.0.0/24'] }))],
    l4: 'deny',
    l7: 'allow',
  },
  { name: 'ALLOW remoteIpBlocks on TCP at the waypoint', policies: [allow(from({ remoteIpBlocks: ['10.0.0.0/24'] }))], http: 'tcp', l4: 'deny', l7: 'allow' },
  {
    name: 'DENY remoteIpBlocks elsewhere: ztunnel denies (fail closed), the waypoint does not match',
    policies: [deny(from({ remoteIpBlocks: ['10.9.0.0/16'] }))],
    l4: 'deny',
    l7: 'allow',
  },
  { name: 'DENY notRemoteIpBlocks holding the client', policies: [deny(from({ notRemoteIpBlocks: ['10.0.0.0/24'] }))], l4: 'deny', l7: 'allow' },

  // Ports.
  { name: 'ports holding the port', policies: [allow(to({ ports: ['8080'] }))], l4: 'allow', l7: 'allow' },
  { name: 'ports not holding the port', policies: [allow(to({ ports: ['80'] }))], l4: 'deny', l7: 'deny' },
  { name: 'ports: to elements OR', policies: [allow(to({ ports: ['80'] }, { ports: ['8080'] }))], l4: 'allow', l7: 'allow' },
  {
    name: 'a destination.port that is not decimal is no port (Istio ParseUint; Number("0x1F90") would be 8080)',
    policies: [allow(when({ key: 'destination.port', values: ['0x1F90'] }))],
    l4: 'refused',
    l7: 'deny',
  },

  // Principals: exact, prefix, suffix, presence; serviceAccounts.
  { name: 'principal exact', policies: [allow(from({ principals: ['cluster.local/ns/default/sa/sleep'] }))], l4: 'allow', l7: 'allow' },
  { name: 'principal of another account', policies: [allow(from({ principals: ['cluster.local/ns/default/sa/other'] }))], l4: 'deny', l7: 'deny' },
  { name: 'principal prefix', policies: [allow(from({ principals: ['cluster.local/ns/default/*'] }))], l4: 'allow', l7: 'allow' },
  { name: 'principal suffix', policies: [allow(from({ principals: ['*/sa/sleep'] }))], l4: 'allow', l7: 'allow' },
  { name: 'principal presence', policies: [allow(from({ principals: ['*'] }))], l4: 'allow', l7: 'allow' },
  { name: 'principal presence needs an identity', policies: [allow(from({ principals: ['*'] }))], conn: PLAIN, l4: 'deny', l7: 'n/a' },
  { name: 'serviceAccounts ns/sa', policies: [allow(from({ serviceAccounts: ['default/sleep'] }))], l4: 'allow', l7: 'allow' },
  { name: 'serviceAccounts in the policy namespace', policies: [allow(from({ serviceAccounts: ['other'] }))], l4: 'deny', l7: 'deny' },

  // Namespaces.
  { name: 'namespace exact', policies: [allow(from({ namespaces: ['default'] }))], l4: 'allow', l7: 'allow' },
  { name: 'namespace prefix', policies: [allow(from({ namespaces: ['def*'] }))], l4: 'allow', l7: 'allow' },
  { name: 'namespace suffix', policies: [allow(from({ namespaces: ['*ult'] }))], l4: 'allow', l7: 'allow' },
  { name: 'namespace of a plaintext peer', policies: [allow(from({ namespaces: ['*'] }))], conn: PLAIN, l4: 'deny', l7: 'n/a' },
  { name: 'fields of one source AND', policies: [allow(from({ namespaces: ['default'], ipBlocks: ['10.9.0.0/16'] }))], l4: 'deny', l7: 'deny' },

  // when: L4-capable keys at both layers.
  { name: 'when source.ip', policies: [allow(when({ key: 'source.ip', values: ['10.0.0.0/24'] }))], l4: 'allow', l7: 'allow' },
  { name: 'when source.ip notValues', policies: [allow(when({ key: 'source.ip', notValues: ['10.0.0.1'] }))], l4: 'deny', l7: 'deny' },
  { name: 'when destination.ip', policies: [allow(when({ key: 'destination.ip', values: ['10.0.0.2'] }))], l4: 'allow', l7: 'allow' },
  { name: 'when destination.port', policies: [allow(when({ key: 'destination.port', values: ['8080'] }))], l4: 'allow', l7: 'allow' },
  { name: 'when destination.port notValues', policies: [allow(when({ key: 'destination.port', notValues: ['8080'] }))], l4: 'deny', l7: 'deny' },
  { name: 'when source.principal', policies: [allow(when({ key: 'source.principal', values: ['*/sa/sleep'] }))], l4: 'allow', l7: 'allow' },
  { name: 'when source.principal, plaintext', policies: [allow(when({ key: 'source.principal', values: ['*'] }))], conn: PLAIN, l4: 'deny', l7: 'n/a' },
  { name: 'when source.namespace', policies: [allow(when({ key: 'source.namespace', values: ['default'] }))], l4: 'allow', l7: 'allow' },
  {
    name: 'when conditions AND',
    policies: [allow(when({ key: 'destination.port', values: ['8080'] }, { key: 'source.ip', values: ['10.9.0.0/16'] }))],
    l4: 'deny',
    l7: 'deny',
  },
  { name: 'from AND to', policies: [allow({ ...from({ namespaces: ['default'] }), ...to({ ports: ['80'] }) })], l4: 'deny', l7: 'deny' },

  // when: keys only the waypoint can see.
  { name: 'when remote.ip', policies: [allow(when({ key: 'remote.ip', values: ['10.0.0.0/24'] }))], l4: 'deny', l7: 'allow' },
  {
    name: 'when request.headers',
    policies: [allow(when({ key: 'request.headers[x-user]', values: ['adm*'] }))],
    http: { headers: { 'x-user': 'admin' } },
    l4: 'deny',
    l7: 'allow',
  },
  { name: 'when request.headers on TCP', policies: [allow(when({ key: 'request.headers[x-user]', values: ['adm*'] }))], http: 'tcp', l4: 'deny', l7: 'deny' },
  {
    name: 'DENY on a header: ztunnel ignores the condition, the waypoint checks it',
    policies: [deny(when({ key: 'request.headers[x-user]', values: ['admin'] }))],
    http: { headers: { 'x-user': 'guest' } },
    l4: 'deny',
    l7: 'allow',
  },
  { name: 'DENY on a header, TCP at the waypoint', policies: [deny(when({ key: 'request.headers[x-user]', values: ['admin'] }))], http: 'tcp', l4: 'deny', l7: 'deny' },
  {
    name: 'DENY keeps its L4 conditions',
    policies: [deny(when({ key: 'request.headers[x-user]', values: ['admin'] }, { key: 'destination.port', values: ['80'] }))],
    http: 'tcp',
    l4: 'allow',
    l7: 'allow',
  },
  { name: 'request.auth.principal never holds (no JWT)', policies: [allow(when({ key: 'request.auth.principal', values: ['*'] }))], l4: 'deny', l7: 'deny' },
  { name: 'request.auth.principal notValues always holds', policies: [deny(when({ key: 'request.auth.principal', notValues: ['*'] }))], l4: 'deny', l7: 'deny' },
  { name: 'connection.sni: none reaches the waypoint', policies: [allow(when({ key: 'connection.sni', notValues: ['echo'] }))], l4: 'deny', l7: 'allow' },

  // HTTP fields in operations and sources.
  { name: 'ALLOW methods', policies: [allow(to({ methods: ['GET'] }))], l4: 'deny', l7: 'allow' },
  { name: 'ALLOW methods on TCP', policies: [allow(to({ methods: ['GET'] }))], http: 'tcp', l4: 'deny', l7: 'deny' },
  {
    name: 'one HTTP element drops the whole ALLOW rule where HTTP is unknown',
    policies: [allow(to({ ports: ['8080'] }, { methods: ['GET'] }))],
    http: 'tcp',
    l4: 'deny',
    l7: 'deny',
  },
  { name: '... and the rule holds with HTTP', policies: [allow(to({ ports: ['8080'] }, { methods: ['GET'] }))], l4: 'deny', l7: 'allow' },
  { name: 'other rules of the ALLOW still match', policies: [allow(to({ methods: ['GET'] }), from({ namespaces: ['default'] }))], http: 'tcp', l4: 'allow', l7: 'allow' },
  { name: 'DENY methods+port: enforced on the port where HTTP is unknown', policies: [deny(to({ methods: ['POST'], ports: ['8080'] }))], l4: 'deny', l7: 'allow' },
  { name: 'DENY methods+port on TCP', policies: [deny(to({ methods: ['POST'], ports: ['8080'] }))], http: 'tcp', l4: 'deny', l7: 'deny' },
  { name: 'DENY methods+port, another port', policies: [deny(to({ methods: ['POST'], ports: ['80'] }))], http: 'tcp', l4: 'allow', l7: 'allow' },
  { name: 'DENY methods+paths', policies: [deny(to({ methods: ['POST'], paths: ['/admin*'] }))], http: { method: 'POST', path: '/admin/x' }, l4: 'deny', l7: 'deny' },
  { name: 'DENY paths, other path', policies: [deny(to({ paths: ['/admin*'] }))], http: { path: '/public' }, l4: 'deny', l7: 'allow' },
  { name: 'ALLOW hosts, any port', policies: [allow(to({ hosts: ['*.svc.cluster.local'] }))], http: { host: 'echo.default.svc.cluster.local:80' }, l4: 'deny', l7: 'allow' },
  {
    name: 'DENY requestPrincipals only: ztunnel denies (fail closed); no JWT at the waypoint',
    policies: [deny(from({ requestPrincipals: ['*'] }))],
    l4: 'deny',
    l7: 'allow',
  },
  { name: 'DENY requestPrincipals only, TCP at the waypoint', policies: [deny(from({ requestPrincipals: ['*'] }))], http: 'tcp', l4: 'deny', l7: 'deny' },
  { name: 'DENY notRequestPrincipals * (no JWT)', policies: [deny(from({ notRequestPrincipals: ['*'] }))], l4: 'deny', l7: 'deny' },
  {
    name: 'DENY requestPrincipals + namespaces keeps the namespace',
    policies: [deny(from({ namespaces: ['other'], requestPrincipals: ['*'] }))],
    http: 'tcp',
    l4: 'allow',
    l7: 'allow',
  },
  { name: 'ALLOW requestPrincipals (no JWT)', policies: [allow(from({ requestPrincipals: ['*'] }))], l4: 'deny', l7: 'deny' },
];

interface Parsed<P> {
  readonly policies?: readonly P[];
  readonly problems: readonly string[];
}

/** As every caller of the converters does: the upstream schema judges the structure first. */
function structureOk(p: Problems, spec: Record<string, unknown>, path: string): boolean {
  const structural = specProblems('AuthorizationPolicy', spec, path);
  for (const s of structural) p.add(s.field, s.message);
  return structural.length === 0;
}

function parseL4(specs: readonly Spec[]): Parsed<AuthorizationPolicy> {
  const p = new Problems();
  const parser = new PolicySpecParser(p, 'istio-system');
  const out = specs.map((s, i) =>
    structureOk(p, { ...s }, `p${i}.spec`) ? parser.authorizationPolicy({ name: `p${i}`, namespace: 'default' }, { ...s }, `p${i}.spec`) : undefined,
  );
  return out.every((x) => x !== undefined) ? { policies: out, problems: p.list } : { problems: p.list };
}

function parseL7(specs: readonly Spec[]): Parsed<WaypointPolicy> {
  const p = new Problems();
  const parser = new WaypointPolicyConverter(p, 'istio-system');
  const out = specs.map((s, i) => {
    const spec = { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], ...s };
    return structureOk(p, spec, `p${i}.spec`) ? parser.policy(`p${i}`, 'default', spec, `p${i}.spec`) : undefined;
  });
  return out.every((x) => x !== undefined) ? { policies: out, problems: p.list } : { problems: p.list };
}

const outcome = (d: AuthzDecision): Want => (d.allowed ? 'allow' : 'deny');

for (const row of rows) {
  t.test(row.name, async (t) => {
    const conn = { ...BASE, ...row.conn };

    const l4 = parseL4(row.policies);
    if (row.l4 === 'refused') {
      t.equal(l4.policies, undefined, 'ztunnel: refused by the config parser');
      t.not(l4.problems.length, 0, 'ztunnel: with a problem that says why');
    } else {
      t.same(l4.problems, [], 'ztunnel: accepted');
      if (l4.policies) t.equal(outcome(authorizeConnection(l4.policies, conn)), row.l4, 'ztunnel (L4)');
    }

    if (row.l7 === 'n/a') return;
    const l7 = parseL7(row.policies);
    if (row.l7 === 'refused') {
      t.equal(l7.policies, undefined, 'waypoint: refused by the config parser');
      t.not(l7.problems.length, 0, 'waypoint: with a problem that says why');
      return;
    }
    t.same(l7.problems, [], 'waypoint: accepted');
    if (!l7.policies) return;
    const http = row.http === 'tcp' ? undefined : { ...GET, ...row.http };
    const d = authorizeRequest(l7.policies, { ...conn, sourcePrincipal: SLEEP, ...(http ? { http } : {}) });
    t.equal(outcome(d), row.l7, `waypoint (L7, ${http ? 'HTTP' : 'TCP'})`);
    if (row.audit) t.same(d.audit, row.audit, 'waypoint: AUDIT policies reported');
  });
}

// Model-level cases the parsers would refuse: the evaluator must stay strict on its own.
const model = (action: string, rule: Partial<PolicyRule>): EvaluatedPolicy =>
  ({ name: 'm', namespace: 'default', action, rules: [{ from: [], to: [], when: [], ...rule }] }) as EvaluatedPolicy;
const l4 = (p: EvaluatedPolicy) => outcome(authorizeConnection([p], BASE));
const l7 = (p: EvaluatedPolicy) => outcome(authorizeRequest([p], { ...BASE, http: GET }));

t.test('ports are parsed once: only decimal 1..65535 is a port, at both entries', async (t) => {
  for (const v of ['', ' 8080', '8080.0', '0x1F90', '08080x', '0', '65536', '-8080']) {
    const p = model('ALLOW', { when: [{ key: 'destination.port', values: [v] }] });
    t.equal(l4(p), 'deny', `ztunnel: ${JSON.stringify(v)} is no port`);
    t.equal(l7(p), 'deny', `waypoint: ${JSON.stringify(v)} is no port`);
  }
  const ok = model('ALLOW', { when: [{ key: 'destination.port', values: ['08080'] }] });
  t.equal(l4(ok), 'allow', 'ztunnel: leading zeros are decimal');
  t.equal(l7(ok), 'allow', 'waypoint: leading zeros are decimal');
  const bad = model('ALLOW', { to: [{ ports: [0, 8080.5], hasL7Fields: false }] });
  t.equal(l4(bad), 'deny', 'ztunnel: numbers out of range or fractional match nothing');
  t.equal(l7(bad), 'deny', 'waypoint: numbers out of range or fractional match nothing');
});

t.test('an action the types do not know is enforced as DENY (fail closed)', async (t) => {
  const custom = model('CUSTOM', {});
  t.equal(l4(custom), 'deny', 'ztunnel');
  t.equal(l7(custom), 'deny', 'waypoint');
});

t.test('a condition key nobody can evaluate is unknown, so stricter, at both entries', async (t) => {
  const cond = { key: 'experimental.envoy.filters.x', values: ['y'] };
  t.equal(l4(model('ALLOW', { when: [cond] })), 'deny', 'ztunnel: ALLOW never matches');
  t.equal(l7(model('ALLOW', { when: [cond] })), 'deny', 'waypoint: ALLOW never matches');
  t.equal(l4(model('DENY', { when: [cond] })), 'deny', 'ztunnel: DENY enforced without it');
  t.equal(l7(model('DENY', { when: [cond] })), 'deny', 'waypoint: DENY enforced without it');
});

t.test('issue 19: both layers accept and refuse the same principals, namespaces and request principals, with the same message', async (t) => {
  const cases: [field: string, value: string, ok: boolean][] = [
    ['principals', 'cluster.local/ns/default/sa/sleep', true],
    ['principals', '*', true],
    ['principals', '*/sa/sleep', true],
    ['principals', 'cluster.local/*', true],
    ['principals', '**', false],
    ['principals', '*a*', false],
    ['principals', '*\n\t', false],
    ['principals', '*\u0000', false],
    ['principals', 'cluster.local/ns/default/sa/sl\u202eeep', false],
    ['namespaces', 'default', true],
    ['namespaces', 'prod-*', true],
    ['namespaces', 'Bad NS', false],
    ['namespaces', '**', false],
    ['namespaces', 'a*b', false],
    ['requestPrincipals', 'https://issuer.example/user-1', true],
    ['requestPrincipals', '*', true],
    ['requestPrincipals', '**', false],
    ['requestPrincipals', 'iss/a\nb', false],
    ['requestPrincipals', 'iss/\u200buser', false],
  ];
  for (const [field, value, ok] of cases) {
    const spec = allow(from({ [field]: [value] }));
    const l4 = parseL4([spec]);
    const l7 = parseL7([spec]);
    t.same(l7.problems, l4.problems, `${field} ${JSON.stringify(value)}: the same problems at both layers`);
    t.equal(l4.problems.length === 0, ok, `${field} ${JSON.stringify(value)}: ${ok ? 'accepted' : 'refused'}`);
  }
  // `when` values of the same keys go through the same checks.
  const cond = (key: string, value: string) => allow(when({ key, values: [value] }));
  for (const [key, value] of [['source.principal', '**'], ['source.namespace', 'a*b'], ['request.auth.principal', 'a\u0000']] as const) {
    const l4 = parseL4([cond(key, value)]);
    const l7 = parseL7([cond(key, value)]);
    t.equal(l7.problems.length, 1, `when ${key} ${JSON.stringify(value)}: refused by the waypoint`);
    t.same(l7.problems, l4.problems, `when ${key}: the same problem at both layers`);
  }
});
