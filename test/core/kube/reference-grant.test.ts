/**
 * ReferenceGrant (GEP-709): the converter (core/kube/routes/reference-grant.ts) with what bad
 * input gets, the one rule (core/model/reference-grant.ts `backendPermitted`) for HTTPRoute and
 * GRPCRoute, the route status (`RefNotPermitted`), and the three ways a grant arrives: a
 * manifest (v1beta1 and v1), the standalone file and the discovery wire.
 */
import t from 'tap';
import { Problems } from '../../../core/validation/check.js';
import { ReferenceGrantConverter } from '../../../core/kube/routes/reference-grant.js';
import { GrpcRouteConverter } from '../../../core/kube/routes/grpc-route.js';
import { TcpRouteConverter } from '../../../core/kube/routes/tcp-route.js';
import { MeshState } from '../../../core/model/state.js';
import { routeStatuses } from '../../../core/model/route-status.js';
import type { MeshConfig } from '../../../core/model/types.js';
import { tcpRouteTarget } from '../../../waypoint/tcp-route.js';
import { backendPermitted, referencePermitted, type ReferenceGrant } from '../../../core/model/reference-grant.js';
import { parseObject } from '../../../core/kube/parse.js';
import { decodeResource, WireFormatError } from '../../../core/discovery/wire.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import { routeStatus, type HttpRoute } from '../../../core/model/routes.js';

const GW = 'gateway.networking.k8s.io';
const fromApps = { group: GW, kind: 'HTTPRoute', namespace: 'apps' };
const spec = (over: Record<string, unknown> = {}) => ({ from: [fromApps], to: [{ group: '', kind: 'Service', name: 'web' }], ...over });

function convert(s: Record<string, unknown>): { grant?: ReferenceGrant; problems: string[] } {
  const p = new Problems();
  const grant = new ReferenceGrantConverter(p).referenceGrant('g', 'backends', s, 'spec');
  return { ...(grant ? { grant } : {}), problems: p.list };
}

t.test('a grant converts whole', async (t) => {
  t.same(convert(spec()), {
    grant: { kind: 'ReferenceGrant', name: 'g', namespace: 'backends', from: [fromApps], to: [{ group: '', kind: 'Service', name: 'web' }] },
    problems: [],
  });
  t.same(convert(spec({ to: [{ group: '', kind: 'Service' }] })).grant?.to, [{ group: '', kind: 'Service' }], 'no name: every Service');
});

t.test('what a grant refuses, naming the field (the grant is then not used at all)', async (t) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['no from', { to: spec().to }, /spec\.from: required field is missing/],
    ['empty to', spec({ to: [] }), /spec\.to: must not be empty/],
    ['missing group', spec({ from: [{ kind: 'HTTPRoute', namespace: 'apps' }] }), /spec\.from\[0\]\.group: required field is missing/],
    ['group with a control character', spec({ from: [{ ...fromApps, group: 'gateway\u001b[31m' }] }), /spec\.from\[0\]\.group: .* is not an API group/],
    ['kind with a space', spec({ to: [{ group: '', kind: 'Ser vice' }] }), /spec\.to\[0\]\.kind: .* is not a kind/],
    ['namespace not a label', spec({ from: [{ ...fromApps, namespace: 'Apps_1' }] }), /spec\.from\[0\]\.namespace: "Apps_1" is not a namespace/],
    ['name with a zero-width space', spec({ to: [{ group: '', kind: 'Service', name: 'we\u200bb' }] }), /spec\.to\[0\]\.name: .* is not an object name/],
    ['name of 254 characters', spec({ to: [{ group: '', kind: 'Service', name: 'a'.repeat(254) }] }), /spec\.to\[0\]\.name: .* is not an object name/],
    ['unknown key', spec({ from: [{ ...fromApps, name: 'r' }] }), /spec\.from\[0\]\.name: unknown key/],
    ['17 entries', spec({ from: Array.from({ length: 17 }, () => fromApps) }), /spec\.from: has 17 entries; at most 16/],
    ['not a list', spec({ to: 'Service' }), /spec\.to: expected a list/],
    ['a number for a kind', spec({ to: [{ group: '', kind: 7 }] }), /spec\.to\[0\]\.kind: 7 is not a kind/],
  ];
  for (const [what, s, re] of cases) {
    const r = convert(s);
    t.equal(r.grant, undefined, `${what}: refused`);
    t.match(r.problems.join('\n'), re, what);
  }
});

t.test('the rule: same namespace always; another only with a grant there naming the route and the Service', async (t) => {
  const grants: ReferenceGrant[] = [{ kind: 'ReferenceGrant', name: 'g', namespace: 'backends', from: [fromApps], to: [{ group: '', kind: 'Service', name: 'web' }] }];
  const route = { kind: 'HTTPRoute', namespace: 'apps' };
  t.ok(backendPermitted([], route, { name: 'web', namespace: 'apps' }), 'same namespace: no grant needed');
  t.ok(backendPermitted(grants, route, { name: 'web', namespace: 'backends' }), 'granted');
  t.notOk(backendPermitted(grants, route, { name: 'api', namespace: 'backends' }), 'another Service of that namespace: not named');
  t.notOk(backendPermitted(undefined, route, { name: 'web', namespace: 'backends' }), 'no grants at all');
  t.notOk(backendPermitted(grants, { kind: 'GRPCRoute', namespace: 'apps' }, { name: 'web', namespace: 'backends' }), 'a GRPCRoute needs its own kind in from');
  t.notOk(backendPermitted(grants, { kind: 'HTTPRoute', namespace: 'other' }, { name: 'web', namespace: 'backends' }), 'a route of another namespace');
  const elsewhere = [{ ...grants[0]!, namespace: 'apps' }];
  t.notOk(backendPermitted(elsewhere, route, { name: 'web', namespace: 'backends' }), 'a grant must be in the referent namespace, not the route one');
  t.ok(backendPermitted([], { kind: 'VirtualService', namespace: 'apps' }, { name: 'web', namespace: 'backends' }), 'VirtualService destinations are Istio\'s: no grants');
  t.ok(backendPermitted([], route, { name: 'b', namespace: 'x', invalidKind: 'example.com/Bucket' }), 'an unknown kind is InvalidKind, not this rule');
  const wide: ReferenceGrant[] = [{ kind: 'ReferenceGrant', name: 'w', namespace: 'backends', from: [{ group: GW, kind: 'GRPCRoute', namespace: 'apps' }, fromApps], to: [{ group: 'core', kind: 'Service' }] }];
  t.ok(backendPermitted(wide, route, { name: 'any', namespace: 'backends' }), 'to without a name: every Service; from entries ORed; "core" is the core group');
  t.notOk(
    referencePermitted(grants, { group: 'example.com', kind: 'HTTPRoute', namespace: 'apps' }, { group: '', kind: 'Service', namespace: 'backends', name: 'web' }),
    'from.group must match too',
  );
  t.notOk(referencePermitted(grants, { group: GW, kind: 'HTTPRoute', namespace: 'apps' }, { group: '', kind: 'Secret', namespace: 'backends', name: 'web' }), 'to.kind must match');
});

t.test('route status: RefNotPermitted after InvalidKind, before BackendNotFound, without saying whether the Service exists', async (t) => {
  const lookup = (grants: ReferenceGrant[]) => ({
    byName: (ns: string, name: string) => (ns === 'backends' && name === 'web' ? { ports: [{ port: 80 }] } : undefined),
    byHostname: () => undefined,
    permitted: (r: { kind: string; namespace: string }, b: { name?: string; namespace?: string }) => backendPermitted(grants, r, b),
  });
  const route = (backends: object[]): HttpRoute => ({
    kind: 'HTTPRoute', name: 'r', namespace: 'apps', parents: [], hostnames: [],
    rules: [{ matches: [], filters: [], backends: backends.map((b) => ({ weight: 1, filters: [], port: 80, ...b })) }],
  });
  const resolved = (r: HttpRoute, grants: ReferenceGrant[]) => routeStatus(r, lookup(grants))[1];
  t.match(resolved(route([{ name: 'web', namespace: 'backends' }]), []), { status: 'False', reason: 'RefNotPermitted', message: /backend backends\/web is in another namespace and no ReferenceGrant in backends lets HTTPRoutes of apps refer to it/ });
  const g: ReferenceGrant = { kind: 'ReferenceGrant', name: 'g', namespace: 'backends', from: [fromApps], to: [{ group: '', kind: 'Service' }] };
  t.match(resolved(route([{ name: 'web', namespace: 'backends' }]), [g]), { status: 'True', reason: 'ResolvedRefs' });
  t.match(resolved(route([{ name: 'gone', namespace: 'backends' }]), [g]), { status: 'False', reason: 'BackendNotFound' }, 'granted but missing: BackendNotFound');
  const m = resolved(route([{ name: 'gone', namespace: 'secret' }]), []);
  t.match(m, { reason: 'RefNotPermitted' });
  t.notMatch(m?.message ?? '', /not found/, 'a Service of a namespace that did not grant is not looked up');
  t.match(resolved(route([{ name: 'b', namespace: 'x', invalidKind: 'example.com/Bucket' }, { name: 'web', namespace: 'backends' }]), []), { reason: 'InvalidKind' }, 'InvalidKind named first');
});

t.test('a manifest (v1beta1 and v1), the standalone file and the discovery wire carry the same grant', async (t) => {
  for (const apiVersion of [`${GW}/v1beta1`, `${GW}/v1`]) {
    const { object, problems } = parseObject({ apiVersion, kind: 'ReferenceGrant', metadata: { name: 'g', namespace: 'backends' }, spec: spec() }, 'test.yaml');
    t.same(problems, [], apiVersion);
    t.match(object, { kind: 'ReferenceGrant', grant: { namespace: 'backends', from: [fromApps] } }, apiVersion);
  }
  const bad = parseObject({ apiVersion: `${GW}/v1beta1`, kind: 'ReferenceGrant', metadata: { name: 'g', namespace: 'backends' }, spec: spec({ from: [{ ...fromApps, kind: 'HTTP Route' }] }) }, 'test.yaml');
  t.equal(bad.object, undefined, 'a kind that is not a Kind: refused by the schema');
  t.match(bad.problems.map((p) => p.field).join(), /spec\.from\[0\]\.kind/);
  const cfg = parseMeshConfig(JSON.stringify({ referenceGrants: [{ name: 'g', namespace: 'backends', spec: spec() }] }), 'mesh.yaml');
  t.match(cfg.referenceGrants, [{ kind: 'ReferenceGrant', name: 'g', namespace: 'backends' }]);
  t.throws(() => parseMeshConfig(JSON.stringify({ referenceGrants: [{ name: 'g', namespace: 'backends', spec: spec({ to: [] }) }] }), 'mesh.yaml'), /referenceGrants\[0\]\.spec\.to/);
  t.match(decodeResource('referenceGrants', { name: 'g', namespace: 'backends', spec: spec() }), { kind: 'ReferenceGrant', to: [{ name: 'web' }] });
  t.throws(() => decodeResource('referenceGrants', { name: 'g', namespace: 'backends', spec: spec({ to: [{ group: '', kind: 'Service', name: 'x\u0000' }] }) }), WireFormatError);
});

t.test('a GRPCRoute goes through the same rule with its own kind (a grant for HTTPRoutes does not let it in)', async (t) => {
  const p = new Problems();
  const route = new GrpcRouteConverter(p).grpcRoute('g', 'apps', { parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 50051 }], rules: [{ backendRefs: [{ name: 'echo', namespace: 'backends', port: 50051 }] }] }, 'spec');
  t.same(p.list, []);
  const lookup = (grants: ReferenceGrant[]) => ({
    byName: () => ({ ports: [{ port: 50051 }] }),
    byHostname: () => undefined,
    permitted: (r: { kind: string; namespace: string }, b: { name?: string; namespace?: string }) => backendPermitted(grants, r, b),
  });
  const httpOnly: ReferenceGrant = { kind: 'ReferenceGrant', name: 'h', namespace: 'backends', from: [fromApps], to: [{ group: '', kind: 'Service' }] };
  t.match(routeStatus(route!, lookup([httpOnly]))[1], { status: 'False', reason: 'RefNotPermitted', message: /GRPCRoutes of apps/ });
  const grpc: ReferenceGrant = { ...httpOnly, from: [{ ...fromApps, kind: 'GRPCRoute' }] };
  t.match(routeStatus(route!, lookup([grpc]))[1], { status: 'True', reason: 'ResolvedRefs' });
});

t.test('a TCPRoute too: its backend in another namespace needs a grant for TCPRoutes; the waypoint closes the connection without one', async (t) => {
  const p = new Problems();
  const route = new TcpRouteConverter(p).tcpRoute('db', 'apps', { parentRefs: [{ kind: 'Service', group: '', name: 'db', port: 5432 }], rules: [{ backendRefs: [{ name: 'pg', namespace: 'data', port: 5432 }] }] }, 'spec');
  t.same(p.list, []);
  const svc = (name: string, namespace: string, vip: string) => ({ name, namespace, hostname: `${name}.${namespace}.svc.cluster.local`, vips: [vip], ports: [{ port: 5432, targetPort: 5432 }], endpoints: [], subjectAltNames: [] });
  const config = (referenceGrants: ReferenceGrant[]): MeshConfig => ({
    nodes: [], workloads: [], authorizationPolicies: [], peerAuthentications: [],
    services: [svc('db', 'apps', '10.0.0.1'), svc('pg', 'data', '10.0.0.2')],
    tcpRoutes: [route!],
    referenceGrants,
  });
  const none = new MeshState(config([]));
  const target = tcpRouteTarget(none, none.serviceByName('apps', 'db')!, 5432);
  t.match(target, { error: /backend data\/pg is in another namespace and no ReferenceGrant in data permits it/ }, 'closed (NR)');
  t.match(routeStatuses(none).find((r) => r.kind === 'TCPRoute')?.conditions[1], { status: 'False', reason: 'RefNotPermitted', message: /TCPRoutes of apps/ });
  const grant: ReferenceGrant = { kind: 'ReferenceGrant', name: 'g', namespace: 'data', from: [{ group: GW, kind: 'TCPRoute', namespace: 'apps' }], to: [{ group: '', kind: 'Service' }] };
  const granted = new MeshState(config([grant]));
  t.match(tcpRouteTarget(granted, granted.serviceByName('apps', 'db')!, 5432), { service: { name: 'pg', namespace: 'data' }, port: 5432 }, 'granted: forwarded');
  t.match(routeStatuses(granted).find((r) => r.kind === 'TCPRoute')?.conditions[1], { status: 'True' });
  const httpOnly = new MeshState(config([{ ...grant, from: [fromApps] }]));
  t.match(tcpRouteTarget(httpOnly, httpOnly.serviceByName('apps', 'db')!, 5432), { error: /no ReferenceGrant/ }, 'a grant for HTTPRoutes does not let a TCPRoute in');
});
