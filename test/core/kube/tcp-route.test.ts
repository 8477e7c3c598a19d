/**
 * TCPRoute (`gateway.networking.k8s.io/v1alpha2`) on Service parents → the model's TcpRoute
 * (core/kube/routes/tcp-route.ts): weighted backends in one rule, as Istio requires; the discovery
 * wire and the standalone file carry it as written; bad input is a problem naming object and field.
 */
import t from 'tap';
import { formatProblem } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { decodeResource, WireFormatError } from '../../../core/discovery/wire.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import { docs, ns } from './documents.js';

const parent = { parentRefs: [{ kind: 'Service', group: '', name: 'db', port: 5432 }] };
const spec = { ...parent, rules: [{ backendRefs: [{ name: 'db-v1', port: 5432, weight: 80 }, { name: 'db-v2', port: 5432, weight: 20 }] }] };
const tcpRoute = (name: string, s: object) => ({ apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name, namespace: 'apps' }, spec: s });

t.test('a TCPRoute becomes weighted backends on its Service parents', async (t) => {
  const { objects, problems } = parseManifests(docs(ns('apps'), tcpRoute('db', spec)), 'tcp.yaml');
  t.same(problems.filter((p) => p.severity === 'error'), []);
  const o = objects.find((x) => x.kind === 'TCPRoute') as { route: unknown } | undefined;
  t.match(o?.route, {
    kind: 'TCPRoute',
    name: 'db',
    namespace: 'apps',
    parents: [{ kind: 'Service', name: 'db', namespace: 'apps', port: 5432 }],
    backends: [
      { name: 'db-v1', namespace: 'apps', port: 5432, weight: 80 },
      { name: 'db-v2', namespace: 'apps', port: 5432, weight: 20 },
    ],
  });
});

t.test('bad input: a problem naming the object and the field, the route refused', async (t) => {
  const { objects, problems } = parseManifests(
    docs(
      ns('apps'),
      tcpRoute('two-rules', { ...parent, rules: [{ backendRefs: [{ name: 'a', port: 1 }] }, { backendRefs: [{ name: 'b', port: 1 }] }] }),
      tcpRoute('hostnames', { ...spec, hostnames: ['db.example'] }),
      tcpRoute('bad-backend', { ...parent, rules: [{ backendRefs: [{ name: 'Bad_Name', port: 5432 }] }] }),
      tcpRoute('no-port', { ...parent, rules: [{ backendRefs: [{ name: 'db-v1' }] }] }),
      tcpRoute('gateway-parent', { parentRefs: [{ name: 'gw' }], rules: spec.rules }),
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'TCPRoute', metadata: { name: 'v1', namespace: 'apps' }, spec },
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'TCPRoute', metadata: { name: 'v1-bad', namespace: 'apps' }, spec: { ...parent, rules: [{ backendRefs: [{ name: 'x', port: 'five' }] }] } },
      tcpRoute('unknown-kind', { ...parent, rules: [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'b' }] }] }),
    ),
    'tcp.yaml',
  );
  t.same(
    objects.map((o) => `${o.kind}/${o.meta.name}`),
    ['Namespace/apps', 'TCPRoute/v1', 'TCPRoute/unknown-kind'],
    'an unknown backend kind is kept (InvalidKind), v1 (the same schema) is read as v1alpha2, the rest refused',
  );
  const errors = problems.filter((p) => p.severity === 'error').map(formatProblem);
  const expect: [string, RegExp][] = [
    ['two-rules', /TCPRoute apps\/two-rules: spec\.rules: a TCPRoute on a waypoint has exactly one rule/],
    ['hostnames', /TCPRoute apps\/hostnames: spec\.hostnames: unknown key/],
    ['bad-backend', /TCPRoute apps\/bad-backend: spec\.rules\[0\]\.backendRefs\[0\]\.name: "Bad_Name" is not a DNS-1123 name/],
    ['no-port', /TCPRoute apps\/no-port: spec\.rules\[0\]\.backendRefs\[0\]\.port: required field is missing/],
    ['gateway-parent', /TCPRoute apps\/gateway-parent: spec\.parentRefs\[0\]\.kind: parent Gateway is not supported/],
    ['v1-bad', /TCPRoute apps\/v1-bad: spec\.rules\[0\]\.backendRefs\[0\]\.port: /],
  ];
  for (const [name, re] of expect) t.ok(errors.some((e) => re.test(e)), `${name}: ${errors.find((e) => e.includes(`/${name}:`)) ?? 'no problem'}`);
  t.equal(errors.length, expect.length, `one problem each: ${errors.join(' | ')}`);
});

t.test('the discovery wire and the standalone file carry TCPRoutes as written', async (t) => {
  const r = decodeResource('tcpRoutes', { name: 'db', namespace: 'apps', spec });
  t.equal(r.kind, 'TCPRoute');
  t.same(r.backends.map((b) => b.weight), [80, 20]);
  let err: unknown;
  try {
    decodeResource('tcpRoutes', { name: 'db', namespace: 'apps', spec: { ...parent, rules: [] } });
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof WireFormatError, 'a malformed resource is a WireFormatError');
  t.match((err as Error).message, /tcpRoutes\.spec\.rules/);
  const file = [
    'services: [{name: db, namespace: apps, vips: [10.96.0.9], ports: [{port: 5432}], selector: {app: db}}]',
    'tcpRoutes:',
    '- name: db',
    '  namespace: apps',
    `  spec: ${JSON.stringify(spec)}`,
  ].join('\n');
  t.equal(parseMeshConfig(file, 'mesh.yaml').tcpRoutes?.[0]?.kind, 'TCPRoute', 'tcpRoutes: in the standalone file');
});
