import t from 'tap';
import * as yaml from 'js-yaml';
import {
  RESOURCE_KINDS,
  WireFormatError,
  decodeMessage,
  decodeResource,
  encodeResource,
  parseHostPort,
  resourceKey,
} from '../../../core/discovery/wire.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import { convertManifests } from '../../../core/kube/convert.js';

const docs = (...o: object[]) => o.map((x) => yaml.dump(x)).join('---\n');
const parsed = parseManifests(
  docs(
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'apps', labels: { app: 'web' } }, spec: { nodeName: 'n', containers: [{ name: 'c' }] }, status: { podIP: '10.0.0.1' } },
    // No IP yet: a pending pod (node agents' kind), with its Kubernetes uid.
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-new', namespace: 'apps', uid: '5f0c1d2e-0000-4000-8000-000000000001', labels: { app: 'web' } }, spec: { nodeName: 'n', containers: [{ name: 'c' }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'apps' }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.1', ports: [{ port: 80, targetPort: 8080, name: 'http' }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/apps/sa/x'], ipBlocks: ['10.0.0.0/8'] } }], to: [{ operation: { ports: ['80'], methods: ['GET'] } }], when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }] }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'p', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'l7', namespace: 'apps' }, spec: { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'apps' }, spec: { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], jwtRules: [{ issuer: 'https://issuer.example', audiences: ['web'], jwksUri: 'https://issuer.example/jwks.json', fromHeaders: [{ name: 'x-jwt' }], outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'apps' }, spec: { parentRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'g', namespace: 'apps' }, spec: { parentRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [{ matches: [{ method: { service: 'web.Web', method: 'Get' } }], backendRefs: [{ name: 'web', port: 80 }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name: 't', namespace: 'apps' }, spec: { parentRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 3 }] }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'vs', namespace: 'apps' }, spec: { hosts: ['web'], http: [{ fault: { abort: { httpStatus: 503, percentage: { value: 50 } } }, route: [{ destination: { host: 'web', subset: 'v1' } }] }] } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: { name: 'rg', namespace: 'apps' },
      spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }], to: [{ group: '', kind: 'Service', name: 'web' }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'dr', namespace: 'apps' },
      spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } }, subsets: [{ name: 'v1', labels: { app: 'web' } }, { name: 'all' }] },
    },
  ),
  'wire.yaml',
);
const objects = new Map(parsed.objects.map((o) => [`${o.kind}/${o.meta.name}`, o]));
const config = convertManifests({ objects: parsed.objects, nodes: [{ name: 'n', ztunnelAddress: '10.0.9.1', hbonePort: 15008 }], trustDomain: 'cluster.local' }).config;
const specOf = (kind: string, name: string) => (objects.get(`${kind}/${name}`)!.raw as { spec: unknown }).spec;

t.test('every kind survives encode → JSON → decode unchanged', async (t) => {
  const specs: Record<string, (name: string) => unknown> = {
    waypointPolicies: (n) => specOf('AuthorizationPolicy', n),
    requestAuthentications: (n) => specOf('RequestAuthentication', n),
    httpRoutes: (n) => specOf('HTTPRoute', n),
    grpcRoutes: (n) => specOf('GRPCRoute', n),
    tcpRoutes: (n) => specOf('TCPRoute', n),
    referenceGrants: (n) => specOf('ReferenceGrant', n),
    virtualServices: (n) => specOf('VirtualService', n),
    destinationRules: (n) => specOf('DestinationRule', n),
  };
  for (const kind of RESOURCE_KINDS) {
    const list = (config[kind] ?? []) as readonly { name: string }[];
    t.ok(list.length > 0, `${kind} present`);
    for (const r of list) {
      const json = JSON.parse(JSON.stringify(encodeResource(kind, r as never, specs[kind]?.(r.name))));
      const back = decodeResource(kind, json);
      t.same(back, r, `${kind} ${resourceKey(kind, r as never)}`);
      t.ok(Object.isFrozen(back));
    }
  }
  const pa = decodeResource('peerAuthentications', JSON.parse(JSON.stringify(encodeResource('peerAuthentications', config.peerAuthentications[0]!))));
  t.equal(pa.portLevel.get(8080), 'PERMISSIVE', 'portLevel travels as an object and comes back as a Map');
});

t.test('malformed resources are refused with the path of the first bad field', async (t) => {
  const w = JSON.parse(JSON.stringify(config.workloads[0]));
  t.throws(() => decodeResource('workloads', { ...w, ips: ['10.0.0.300'] }), new WireFormatError('workloads.ips[0]', 'expected an IP address'));
  t.throws(() => decodeResource('workloads', { ...w, protocol: 'UDP' }), /workloads.protocol: expected one of HBONE, TCP/);
  t.throws(() => decodeResource('workloads', { ...w, serviceAccount: 'Bad_SA' }), /not a DNS-1123 subdomain/);
  t.throws(() => decodeResource('services', { name: 'x' }), /services.namespace: expected a non-empty string/);
  t.throws(() => decodeResource('httpRoutes', { name: 'r', namespace: 'apps', spec: { parentRefs: 'x' } }), /httpRoutes: .*parentRefs/);
  // Specs meet the upstream schema before a converter sees them: the schema's message, as a WireFormatError.
  t.throws(
    () => decodeResource('virtualServices', { name: 'vs', namespace: 'apps', spec: { hosts: ['web'], http: [{ route: [{ destination: { port: { number: 'x' } } }] }] } }),
    new WireFormatError('virtualServices', 'virtualServices.spec.http[0].route[0].destination.host: required field is missing; virtualServices.spec.http[0].route[0].destination.port.number: expected an integer, got "x"'),
  );
  t.throws(
    () => decodeResource('waypointPolicies', { name: 'l7', namespace: 'apps', spec: { targetRefs: [{ name: 'web' }], action: 'NOPE' } }),
    { code: 'ERR_DISCOVERY_WIRE', message: /waypointPolicies\.spec\.action: "NOPE" is not allowed.*waypointPolicies\.spec\.targetRefs\[0\]\.kind: required field is missing/ },
  );
  t.throws(() => decodeMessage('{"type":"delta"'), /not JSON/);
  t.throws(() => decodeMessage('{"type":"snapshot","version":"v","seq":1,"rootNamespace":"istio-system","resources":{"workloads":[{"uid":1}]}}'), /resources.workloads\[0\].uid/);
});

t.test('unknown message types and kinds are ignored (forward compatibility)', async (t) => {
  t.equal(decodeMessage('{"type":"futureThing","x":1}'), undefined);
  const m = decodeMessage('{"type":"delta","from":"a","version":"b","seq":2,"upserts":{"gizmos":[{"x":1}]},"removes":{"gizmos":["k"],"workloads":["apps/web"]},"replace":["gizmos","authorizationPolicies"]}');
  t.same(m, { type: 'delta', from: 'a', version: 'b', seq: 2, upserts: {}, removes: { workloads: ['apps/web'] }, replace: ['authorizationPolicies'] });
});

t.test('control-plane addresses', async (t) => {
  t.same(parseHostPort('10.0.0.1:15012'), { host: '10.0.0.1', port: 15012 });
  t.same(parseHostPort('istiod.istio-system.svc'), { host: 'istiod.istio-system.svc', port: 15012 });
  t.same(parseHostPort('[fd00::1]:9'), { host: 'fd00::1', port: 9 });
  t.equal(parseHostPort('10.0.0.1:99999'), undefined);
  t.equal(parseHostPort('a:b:c'), undefined);
});

t.test('node-agent kinds: a pending pod keeps its uid and verdict; a namespace its dataplane mode; both keyed and checked', async (t) => {
  const pending = config.pendingPods ?? [];
  t.same(pending.map((p) => ({ ...p })), [{ namespace: 'apps', name: 'web-new', uid: '5f0c1d2e-0000-4000-8000-000000000001', node: 'n', labels: { app: 'web' }, protocol: 'HBONE' }]);
  t.equal(resourceKey('pendingPods', pending[0]!), 'apps/web-new', 'keyed like the workload it becomes');
  t.same(config.namespaces, [{ name: 'apps', dataplaneMode: 'ambient' }]);
  t.equal(resourceKey('namespaces', config.namespaces![0]!), 'apps');
  t.same(decodeResource('namespaces', { name: 'plain' }), { name: 'plain' }, 'no label: no dataplaneMode');
  t.same(decodeResource('namespaces', { name: 'e', dataplaneMode: '' }), { name: 'e', dataplaneMode: '' }, 'an empty label value is a value');
  t.same(decodeResource('pendingPods', { namespace: 'a', name: 'b', node: 'n', labels: {}, protocol: 'TCP' }), { namespace: 'a', name: 'b', node: 'n', labels: {}, protocol: 'TCP' }, 'uid is optional (the lab has none)');
  t.throws(() => decodeResource('pendingPods', { namespace: 'a', name: 'b', node: 'n', labels: {}, protocol: 'UDP' }), /pendingPods.protocol: expected one of HBONE, TCP/);
  t.throws(() => decodeResource('pendingPods', { namespace: 'a', name: 'b', labels: {}, protocol: 'TCP' }), /pendingPods.node: expected a non-empty string/);
  t.throws(() => decodeResource('pendingPods', { namespace: 'a', name: 'b', node: 'n', uid: 7, labels: {}, protocol: 'TCP' }), /pendingPods.uid/);
  t.throws(() => decodeResource('namespaces', { name: 'x', dataplaneMode: 1 }), /namespaces.dataplaneMode: expected a string/);
});

t.test('issue 19: the decoder refuses what the manifest parser refuses, naming the path (a bug or a version skew puts no bad value in a proxy)', async (t) => {
  const w = JSON.parse(JSON.stringify(config.workloads[0]));
  const svc = JSON.parse(JSON.stringify(config.services[0]));
  const ap = JSON.parse(JSON.stringify(config.authorizationPolicies.find((p) => p.name === 'a')));
  const pa = JSON.parse(JSON.stringify(encodeResource('peerAuthentications', config.peerAuthentications[0]!)));
  const source = (extra: object) => ({ ...ap, rules: [{ from: [{ hasL7Fields: false, ...extra }], to: [], when: [] }] });
  const refused = (kind: Parameters<typeof decodeResource>[0], v: unknown, path: string, why: RegExp, name: string) =>
    t.throws(() => decodeResource(kind, v), { name: 'WireFormatError', code: 'ERR_DISCOVERY_WIRE', path, message: why }, name);

  // The three the fuzz run found.
  refused('authorizationPolicies', source({ ipBlocks: ['999.1.1.1/40'] }), 'authorizationPolicies.rules[0].from[0].ipBlocks[0]', /"999\.1\.1\.1\/40" is not an IP address or CIDR block/, 'ipBlocks 999.1.1.1/40');
  refused('authorizationPolicies', source({ principals: ['\0'] }), 'authorizationPolicies.rules[0].from[0].principals[0]', /"\\u0000" holds a control character/, 'principal "\\0"');
  refused('services', { ...svc, subjectAltNames: ['not-a-spiffe-id'] }, 'services.subjectAltNames[0]', /expected the scheme spiffe:\/\//, 'a SAN that is not a SPIFFE ID');
  // The rest of the policy values go through the manifest parser's own checks (PolicySpecParser).
  refused('authorizationPolicies', source({ principals: ['a*b'] }), 'authorizationPolicies.rules[0].from[0].principals[0]', /"a\*b" is not a principal/, 'principal with a * in the middle');
  refused('authorizationPolicies', source({ principals: ['spiffe://cluster.local/ns/a/sa/b'] }), 'authorizationPolicies.rules[0].from[0].principals[0]', /without the spiffe:\/\/ prefix/, 'principal with the scheme');
  refused('authorizationPolicies', source({ notNamespaces: ['Not_A_Label'] }), 'authorizationPolicies.rules[0].from[0].notNamespaces[0]', /is not a namespace/, 'namespace pattern');
  refused('authorizationPolicies', source({}), 'authorizationPolicies.rules[0].from[0]', /must not be empty/, 'an empty source matches nothing in Istio');
  refused('authorizationPolicies', { ...ap, rules: [{ from: [], to: [], when: [{ key: 'source.ip', values: ['10.0.0.0/99'] }] }] }, 'authorizationPolicies.rules[0].when[0].values[0]', /not an IP address or CIDR block/, 'condition value by its key');
  refused('authorizationPolicies', { ...ap, rules: [{ from: [], to: [], when: [{ key: 'source.nope', values: ['x'] }] }] }, 'authorizationPolicies.rules[0].when[0].key', /source\.nope/, 'condition key');
  refused('authorizationPolicies', { ...ap, selector: { 'bad key!': 'x' } }, 'authorizationPolicies.selector["bad key!"]', /not a valid label key/, 'policy selector label');
  refused('authorizationPolicies', { ...ap, namespace: 'Apps' }, 'authorizationPolicies.namespace', /"Apps" is not a DNS-1123 label/, 'policy namespace');
  refused('peerAuthentications', { ...pa, name: 'a b' }, 'peerAuthentications.name', /"a b" is not a DNS-1123 name/, 'peer authentication name');
  refused('peerAuthentications', { ...pa, selector: { app: 'x y' } }, 'peerAuthentications.selector.app', /"x y" is not a valid label value/, 'peer authentication selector');
  // Workloads: names, namespaces, nodes, labels, IPs, uids.
  refused('workloads', { ...w, name: 'Web' }, 'workloads.name', /"Web" is not a DNS-1123 name/, 'workload name');
  refused('workloads', { ...w, namespace: 'a.b' }, 'workloads.namespace', /is not a DNS-1123 label/, 'workload namespace');
  refused('workloads', { ...w, node: 'n\u001b[31mode-a' }, 'workloads.node', /"n\\u001b\[31mode-a" holds a control character/, 'an ANSI escape in a node name');
  refused('workloads', { ...w, node: 'Node_A' }, 'workloads.node', /is not a node name/, 'node name syntax');
  refused('workloads', { ...w, labels: { app: 'a'.repeat(64) } }, 'workloads.labels.app', /not a valid label value/, 'a 64-character label value');
  refused('workloads', { ...w, ips: ['fe80::1%eth0'] }, 'workloads.ips[0]', /expected an IP address/, 'an address with a zone');
  refused('workloads', { ...w, uid: 'a b' }, 'workloads.uid', /"a b" is not a uid/, 'uid with a space');
  refused('workloads', { ...w, uid: 'x'.repeat(318) }, 'workloads.uid', /"x{100}"… \(318 characters\) is not a uid/, 'a long uid is quoted cut');
  refused('workloads', { ...w, waypoint: { address: '10.0.0.999', hbonePort: 15008 } }, 'workloads.waypoint.address', /expected an IP address/, 'waypoint address');
  // Services, nodes, node-agent kinds, message fields.
  refused('services', { ...svc, hostname: 'web..apps' }, 'services.hostname', /"web\.\.apps" is not a DNS name/, 'service hostname');
  refused('services', { ...svc, endpoints: ['apps/web\n'] }, 'services.endpoints[0]', /holds a control character/, 'service endpoint');
  refused('services', { ...svc, ports: [{ port: 80, targetPort: 8080, name: 'h\u0007' }] }, 'services.ports[0].name', /holds a control character/, 'service port name');
  refused('nodes', { name: 'n\u0000', ztunnelAddress: '10.0.9.1', hbonePort: 15008 }, 'nodes.name', /holds a control character/, 'node name');
  refused('pendingPods', { namespace: 'a', name: 'B', node: 'n', labels: {}, protocol: 'TCP' }, 'pendingPods.name', /"B" is not a DNS-1123 name/, 'pending pod name');
  refused('namespaces', { name: 'apps', dataplaneMode: 'ambient\u202e' }, 'namespaces.dataplaneMode', /not a valid label value/, 'a bidi character in a label value');
  refused('httpRoutes', { name: 'R', namespace: 'apps', spec: {} }, 'httpRoutes.name', /"R" is not a DNS-1123 name/, 'spec kinds: name');
  t.throws(
    () => decodeMessage('{"type":"snapshot","version":"v","seq":1,"rootNamespace":"Istio System","resources":{}}'),
    { path: 'rootNamespace', message: /"Istio System" is not a DNS-1123 label/ },
    'the root namespace',
  );
  t.throws(() => decodeMessage('{"type":"delta","from":"a","version":"b","seq":2,"upserts":{},"removes":{"workloads":["apps/web\\u001b"]}}'), { path: 'removes.workloads[0]', message: /holds a control character/ }, 'removed keys');
  // What the manifest parser accepts still decodes: every kind of the fixture did above; these are its edges.
  t.ok(decodeResource('authorizationPolicies', source({ principals: ['*', '*/ns/apps/sa/x', 'cluster.local/ns/apps/*'], notNamespaces: ['kube-*'], notIpBlocks: ['fd00::/64'] })), 'principal and namespace patterns');
  t.ok(decodeResource('authorizationPolicies', source({ hasL7Fields: true })), 'a source with only HTTP fields (requestPrincipals) travels as hasL7Fields');
  t.ok(decodeResource('authorizationPolicies', { ...ap, rules: [{ from: [], to: [{ hasL7Fields: true }], when: [{ key: 'request.headers[x-user]', values: ['a b'] }] }] }), 'an operation with only HTTP fields; an HTTP condition value');
  t.ok(decodeResource('pendingPods', { namespace: 'a', name: 'b', uid: '5f0c1d2e-0000-4000-8000-000000000001', node: 'node-a.example', labels: {}, protocol: 'TCP' }), 'a Kubernetes uid and a subdomain node name');
});

t.test('a trust bundle carries real PEM roots, line breaks and all; anything else in roots is refused', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
  const roots = ca.trustBundlePem;
  const m = decodeMessage(JSON.stringify({ type: 'trustBundle', roots, signer: 'plugged-in' }));
  t.same(m, { type: 'trustBundle', roots, signer: 'plugged-in' }, 'the PEM roots of a real CA decode as sent');
  t.throws(() => decodeMessage(JSON.stringify({ type: 'trustBundle', roots: [`${roots[0]}\u0007`], signer: 's' })), { path: '.roots[0]', message: /expected a PEM certificate/ }, 'a control character other than a line break');
  t.throws(() => decodeMessage(JSON.stringify({ type: 'trustBundle', roots: ['not a certificate'], signer: 's' })), { path: '.roots[0]', message: /PEM/ }, 'text that is not PEM');
  t.throws(() => decodeMessage(JSON.stringify({ type: 'trustBundle', roots: 'x', signer: 's' })), { path: '.roots', message: /PEM/ }, 'not a list');
});
