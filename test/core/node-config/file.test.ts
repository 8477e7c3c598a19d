import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../../core/errors.js';
import {
  configWarnings,
  parseMeshConfig,
  readMeshConfigFile,
  DEFAULT_HBONE_PORT,
  DEFAULT_TRUST_DOMAIN,
} from '../../../core/node-config/file.js';
import { NAME_EXPECTED, UID_EXPECTED } from '../../../core/kube/names.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const docs = readFileSync(join(here, '../../../docs/config-file.md'), 'utf8');
const FULL_EXAMPLE = /## Full example[\s\S]*?```yaml\n([\s\S]*?)```/.exec(docs)?.[1] ?? '';

/** The problems `parseMeshConfig` reports for `yaml` (fails the test if it does not throw). */
function problemsOf(t: Test, yaml: string, opts = {}): readonly string[] {
  try {
    parseMeshConfig(yaml, 'test.yaml', opts);
  } catch (e) {
    t.type(e, ConfigError);
    t.equal((e as ConfigError).code, 'ERR_CONFIG_INVALID');
    return (e as ConfigError).problems;
  }
  t.fail('expected a ConfigError');
  return [];
}

const NODE = `nodes: [{name: node-a, ztunnelAddress: 127.0.0.2}]\n`;
/** A minimal valid file plus `extra` (YAML appended at the top level). */
const withNode = (extra: string) => NODE + extra;

t.test('the full example of docs/config-file.md', async (t) => {
  t.ok(FULL_EXAMPLE.length > 100, 'example found in the docs');
  const cfg = parseMeshConfig(FULL_EXAMPLE, 'docs/config-file.md');
  t.equal(cfg.rootNamespace, 'istio-system');
  t.same(cfg.nodes, [
    { name: 'node-a', ztunnelAddress: '127.0.0.2', hbonePort: DEFAULT_HBONE_PORT },
    { name: 'node-b', ztunnelAddress: '127.0.0.3', hbonePort: 15009 },
  ]);

  const [sleep, echo1, echo2, legacy] = cfg.workloads;
  t.same(sleep, {
    uid: 'default/sleep', name: 'sleep', namespace: 'default', serviceAccount: 'sleep', trustDomain: DEFAULT_TRUST_DOMAIN,
    node: 'node-a', ips: ['127.0.0.10'], protocol: 'HBONE', labels: { app: 'sleep' }, healthy: true,
  }, 'defaults filled in');
  t.equal(echo1?.uid, 'echo-v1-7f9c', 'explicit uid');
  t.same(echo1?.ips, ['127.0.0.20', 'fd00::20']);
  t.equal(echo2?.healthy, false);
  t.same(echo2?.waypoint, { address: '10.96.0.99', hbonePort: 15008 });
  t.equal(legacy?.protocol, 'TCP');
  t.equal(legacy?.serviceAccount, 'default');

  const [echoSvc, waypointSvc] = cfg.services;
  t.same(echoSvc, {
    name: 'echo',
    namespace: 'default',
    hostname: 'echo.default.svc.cluster.local',
    vips: ['10.96.0.10'],
    ports: [{ port: 80, targetPort: 8080, name: 'http' }, { port: 9090, targetPort: 9090 }],
    endpoints: ['echo-v1-7f9c', 'default/echo-v2'],
    subjectAltNames: ['spiffe://cluster.local/ns/default/sa/echo-canary'],
    waypoint: { address: '10.96.0.99', hbonePort: 15008 },
  });
  t.same(waypointSvc?.endpoints, ['default/waypoint']);

  const [denyLegacy, echoAllow, denyPost] = cfg.authorizationPolicies;
  t.same(denyLegacy, {
    name: 'deny-legacy-ns', namespace: 'istio-system', scope: 'mesh', selector: {}, action: 'DENY',
    rules: [{ from: [{ namespaces: ['legacy'], hasL7Fields: false }], to: [], when: [] }],
  });
  t.same(echoAllow, {
    name: 'echo-allow', namespace: 'default', scope: 'workload', selector: { app: 'echo' }, action: 'ALLOW',
    rules: [
      {
        from: [{ principals: ['cluster.local/ns/default/sa/sleep', '*/ns/default/sa/waypoint'], hasL7Fields: false }],
        to: [{ ports: [8080], hasL7Fields: false }],
        when: [],
      },
      {
        from: [{ ipBlocks: ['10.0.0.0/8', 'fd00::/8'], notIpBlocks: ['10.9.0.0/16'], hasL7Fields: false }],
        to: [],
        when: [{ key: 'destination.port', values: ['9090'] }],
      },
    ],
  });
  t.same(denyPost?.rules[0]?.to, [{ ports: [8080], hasL7Fields: true }], 'HTTP fields flagged, L4 part kept');

  const [meshPa, nsPa, wlPa] = cfg.peerAuthentications;
  t.equal(meshPa?.scope, 'mesh');
  t.equal(meshPa?.mode, 'PERMISSIVE');
  t.equal(nsPa?.scope, 'namespace');
  t.equal(wlPa?.scope, 'workload');
  t.equal(wlPa?.mode, 'UNSET');
  t.same([...(wlPa?.portLevel ?? [])], [[9090, 'PERMISSIVE']]);

  t.same(configWarnings(cfg), [
    'authorization policy default/deny-post uses HTTP attributes: ztunnel enforces its rules without them, denying more than written; use a waypoint to enforce HTTP rules',
  ]);
});

t.test('the result is deeply frozen', async (t) => {
  const cfg = parseMeshConfig(FULL_EXAMPLE, 'docs');
  t.ok(Object.isFrozen(cfg));
  t.ok(Object.isFrozen(cfg.workloads));
  t.ok(Object.isFrozen(cfg.workloads[0]?.labels));
  t.ok(Object.isFrozen(cfg.workloads[0]?.ips));
  t.ok(Object.isFrozen(cfg.authorizationPolicies[1]?.rules[0]?.from[0]?.principals));
  t.throws(() => (cfg.peerAuthentications[2]?.portLevel as Map<number, string>).set(1, 'STRICT'), TypeError);
  t.throws(() => {
    (cfg.workloads as unknown as unknown[]).push({});
  }, TypeError);
});

t.test('minimal files and defaults', async (t) => {
  t.same(parseMeshConfig('{}', 'x'), {
    rootNamespace: 'istio-system', nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [],
  }, 'an empty mapping is an empty mesh');
  const cfg = parseMeshConfig(
    withNode(`trustDomain: example.org
workloads: [{name: a, namespace: ns1, node: node-a, ips: ["FD00:0::1"], labels: ~}]
services: [{name: s, namespace: ns1, vips: [10.96.0.1], ports: [{port: 80}], selector: {app: nothing}}]
authorizationPolicies: [{name: allow-nothing, namespace: ns1}]
`),
    'x',
  );
  t.equal(cfg.workloads[0]?.trustDomain, 'example.org');
  t.same(cfg.workloads[0]?.ips, ['fd00::1'], 'addresses are canonical');
  t.same(cfg.workloads[0]?.labels, {}, 'null counts as absent');
  t.same(cfg.services[0]?.endpoints, []);
  t.same(cfg.services[0]?.hostname, 's.ns1.svc.cluster.local', 'hostname uses the DNS domain, not the trust domain');
  t.same(cfg.authorizationPolicies[0], {
    name: 'allow-nothing', namespace: 'ns1', scope: 'namespace', selector: {}, action: 'ALLOW', rules: [],
  }, 'a policy without spec is ALLOW with no rules');
});

t.test('scopes and the rootNamespace parameter', async (t) => {
  const yaml = `
authorizationPolicies:
  - {name: a, namespace: istio-system, spec: {rules: [{}]}}
  - {name: b, namespace: mesh-root, spec: {rules: [{}]}}
  - {name: c, namespace: mesh-root, spec: {selector: {matchLabels: {app: x}}, rules: [{}]}}
  - {name: d, namespace: default, spec: {selector: {}, rules: [{}]}}
  - {name: e, namespace: default, spec: {selector: {matchLabels: {}}, rules: [{}]}}
peerAuthentications:
  - {name: a, namespace: mesh-root}
  - {name: b, namespace: istio-system}
`;
  const def = parseMeshConfig(yaml, 'x');
  t.same(def.authorizationPolicies.map((p) => p.scope), ['mesh', 'namespace', 'workload', 'namespace', 'namespace']);
  t.same(def.peerAuthentications.map((p) => [p.scope, p.mode]), [['namespace', 'UNSET'], ['mesh', 'UNSET']]);
  const custom = parseMeshConfig(yaml, 'x', { rootNamespace: 'mesh-root' });
  t.equal(custom.rootNamespace, 'mesh-root');
  t.same(custom.authorizationPolicies.map((p) => p.scope), ['namespace', 'mesh', 'workload', 'namespace', 'namespace']);
  t.same(custom.peerAuthentications.map((p) => p.scope), ['mesh', 'namespace']);
});

t.test('Istio policy conversion details', async (t) => {
  const cfg = parseMeshConfig(
    `
authorizationPolicies:
  - name: p
    namespace: default
    spec:
      rules:
        - from: [{source: {serviceAccounts: [sleep, other/curl]}}, {source: {notServiceAccounts: [x]}}]
          to: [{operation: {ports: ["8080", "9090"], notPorts: ["22"]}}]
          when:
            - {key: source.ip, values: [10.0.0.0/8], notValues: ["10.9.9.9"]}
            - {key: destination.port, values: ["8080", "9090"]}
            - {key: source.principal, values: ["*"]}
            - {key: "request.headers[x-user]", values: [admin]}
            - {key: remote.ip, values: [1.2.3.4]}
        - from: [{source: {requestPrincipals: ["*"]}}]
        - to: [{operation: {methods: [GET]}}]
`,
    'x',
  );
  const [r0, r1, r2] = cfg.authorizationPolicies[0]!.rules;
  t.same(r0?.from, [
    { principals: ['*/ns/default/sa/sleep', '*/ns/other/sa/curl'], hasL7Fields: false },
    { notPrincipals: ['*/ns/default/sa/x'], hasL7Fields: false },
  ], 'serviceAccounts become principal suffix patterns');
  t.same(r0?.to, [{ ports: [8080, 9090], notPorts: [22], hasL7Fields: false }], 'ports are numbers');
  t.same(r0?.when, [
    { key: 'source.ip', values: ['10.0.0.0/8'], notValues: ['10.9.9.9'] },
    { key: 'destination.port', values: ['8080', '9090'] },
    { key: 'source.principal', values: ['*'] },
    { key: 'request.headers[x-user]', values: ['admin'] },
    { key: 'remote.ip', values: ['1.2.3.4'] },
  ]);
  t.same(r1?.from, [{ hasL7Fields: true }]);
  t.same(r2?.to, [{ hasL7Fields: true }]);
  t.equal(configWarnings(cfg).length, 1);
  t.match(configWarnings(cfg)[0], /default\/p uses HTTP attributes: its rules that use them match nothing at L4/);
});

t.test('every problem is reported at once, each with its path', async (t) => {
  const yaml = `
trustDomain: Bad_Domain
nodes:
  - name: node-a
    ztunnelAddress: 127.0.0.300
    hbonePort: 70000
  - {name: node-a, ztunnelAddress: 10.0.0.1, zone: x}
  - {name: node-b, ztunnelAddress: 10.0.0.2}
  - {name: node-c, ztunnelAddress: 10.0.0.2}
workloads:
  - {name: a, namespace: default, node: node-x, ips: [10.0.0.5, "10.0.0.300"], lables: {}}
  - {name: a, namespace: default, node: node-a, ips: [10.0.0.5], protocol: UDP, labels: {version: 1}}
  - {name: B, namespace: Default, node: node-b, ips: [], healthy: "yes", serviceAccount: -x}
  - {namespace: default, node: node-b, ips: "10.0.0.7", waypoint: {address: nope, port: 1}}
services:
  - {name: s, namespace: default, vips: [10.0.0.5], ports: [{port: 0}, {port: 80, targetPort: 80.5}], selector: [app]}
  - {name: s, namespace: default, vips: [10.96.0.1], ports: [{port: 80, name: http}, {port: 80, name: http}], selector: {app: 1}, subjectAltNames: [cluster.local/ns/a/sa/b]}
  - {name: t, namespace: default, vips: [10.96.0.2], ports: [], selector: {}}
authorizationPolicies:
  - name: p
    namespace: default
    spec:
      action: CUSTOM
      provider: {name: ext}
      rules:
        - from:
            - source:
                principals: ["spiffe://cluster.local/ns/a/sa/b", "cluster.local/ns/default/sleep", "a*b", ""]
                ipBlocks: ["10.0.0.0/33", "fd00::/64"]
                namespaces: [Bad, "*-prod"]
          to: [{operation: {ports: ["http", "0", "8080"]}}]
          when: [{key: foo.bar, values: [x]}, {key: destination.ip}, {key: source.ip, values: [nope]}]
        - from: []
        - to: [{operation: {}}]
        - from: [{source: {}}]
  - {name: p, namespace: default, spec: {action: AUDIT, rules: [{}]}}
  - {name: d, namespace: default, spec: {action: DENY, selector: {matchLabels: {app: x}}, targetRefs: []}}
  - {name: e, namespace: default, spec: {action: DENY, rules: [{frm: []}]}}
  # Each below fails the upstream schema (structure), so its hand checks do not run.
  - {name: f, namespace: default, spec: {action: deny}}
  - {name: g, namespace: default, spec: {rules: [{to: [{operation: {ports: [0]}}]}]}}
  - {name: h, namespace: default, spec: {selector: {matchLabels: {app: [x]}}}}
peerAuthentications:
  - {name: x, namespace: default, spec: {mtls: {mode: STRICT}, portLevelMtls: {"0": {mode: STRICT}}}}
  - {name: y, namespace: default, spec: {selector: {matchLabels: {app: a}}, portLevelMtls: {}, mtls: STRICT}}
  - {name: z, namespace: default, spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICTER}, portLevelMtls: {"8080": {mode: permissive}}}}
extra: true
`;
  const got = problemsOf(t, yaml);
  const want = [
    'extra: unknown key; allowed keys here: trustDomain, nodes, workloads, services, authorizationPolicies, peerAuthentications, requestAuthentications, httpRoutes, grpcRoutes, tcpRoutes, referenceGrants, virtualServices, destinationRules',
    'trustDomain: "Bad_Domain" is not a trust domain; expected lowercase letters, digits, ".", "-" and "_"',
    'nodes[0].ztunnelAddress: "127.0.0.300" is not an IPv4 or IPv6 address',
    'nodes[0].hbonePort: 70000 is not a port; expected an integer from 1 to 65535',
    'nodes[1].zone: unknown key; allowed keys here: name, ztunnelAddress, hbonePort',
    'nodes[1].name: duplicate node name "node-a"',
    'nodes[3].ztunnelAddress: duplicate ztunnel address and hbonePort "10.0.0.2:15008"; first used at nodes[2].ztunnelAddress',
    'workloads[0].lables: unknown key; did you mean "labels"? allowed keys here: name, uid, namespace, serviceAccount, node, ips, protocol, labels, healthy, waypoint',
    'workloads[0].node: node "node-x" is not declared under nodes; declared: node-a, node-b, node-c',
    'workloads[0].ips[1]: "10.0.0.300" is not an IPv4 or IPv6 address',
    'workloads[1].name: duplicate workload uid "default/a"; first used at workloads[0].name',
    'workloads[1].ips[0]: duplicate address "10.0.0.5"; first used at workloads[0].ips[0]',
    'workloads[1].protocol: "UDP" is not allowed; expected one of HBONE, TCP',
    'workloads[1].labels.version: expected a string value, got 1 (quote it: "1")',
    'workloads[2].name: "B" is not a DNS-1123 name (lowercase letters, digits, "-" and ".")',
    'workloads[2].namespace: "Default" is not a DNS-1123 label (lowercase letters, digits and "-", at most 63)',
    'workloads[2].serviceAccount: "-x" is not a service account name; expected a DNS-1123 name (lowercase letters, digits, "-" and ".")',
    'workloads[2].ips: must not be empty; a workload needs at least one IP address',
    'workloads[2].healthy: expected true or false, got "yes"',
    'workloads[3].name: required field is missing; expected a DNS-1123 name (lowercase letters, digits, "-" and ".")',
    'workloads[3].ips: expected a list of IP addresses, got "10.0.0.7"',
    'workloads[3].waypoint.port: unknown key; did you mean "hbonePort"? allowed keys here: address, hbonePort',
    'workloads[3].waypoint.address: "nope" is not an IPv4 or IPv6 address',
    'services[0].vips[0]: duplicate address "10.0.0.5"; first used at workloads[0].ips[0]',
    'services[0].ports[0].port: 0 is not a port; expected an integer from 1 to 65535',
    'services[0].ports[1].targetPort: 80.5 is not a port; expected an integer from 1 to 65535',
    'services[0].selector: expected a map of string keys to string values, got a list',
    'services[1].name: duplicate service "default/s"; first used at services[0].name',
    'services[1].ports[1].port: duplicate service port "80"; first used at services[1].ports[0].port',
    'services[1].ports[1].name: duplicate port name "http"; first used at services[1].ports[0].name',
    'services[1].selector.app: expected a string value, got 1 (quote it: "1")',
    'services[1].subjectAltNames[0]: "cluster.local/ns/a/sa/b" is not a SPIFFE id: expected the scheme spiffe://',
    'services[2].ports: must not be empty; a service needs at least one port',
    'services[2].selector: must not be empty; an empty selector would select no endpoints in Kubernetes',
    'authorizationPolicies[0].spec.provider: belongs to the CUSTOM action, which the L4 proxy does not support',
    'authorizationPolicies[0].spec.action: "CUSTOM" is not supported by the L4 proxy (ztunnel); expected ALLOW or DENY',
    'authorizationPolicies[0].spec.rules[0].from[0].source.principals[0]: "spiffe://cluster.local/ns/a/sa/b": write principals without the spiffe:// prefix, e.g. "cluster.local/ns/a/sa/b"',
    'authorizationPolicies[0].spec.rules[0].from[0].source.principals[1]: "cluster.local/ns/default/sleep" is not a principal; expected <trust-domain>/ns/<namespace>/sa/<service-account>, without spiffe://, optionally with one * at the start or the end',
    'authorizationPolicies[0].spec.rules[0].from[0].source.principals[2]: "a*b" is not a principal; expected <trust-domain>/ns/<namespace>/sa/<service-account>, without spiffe://, optionally with one * at the start or the end',
    'authorizationPolicies[0].spec.rules[0].from[0].source.principals[3]: expected a principal (<trust-domain>/ns/<namespace>/sa/<service-account>, without spiffe://, optionally with one * at the start or the end), got ""',
    'authorizationPolicies[0].spec.rules[0].from[0].source.namespaces[0]: "Bad" is not a namespace; expected a DNS-1123 label (lowercase letters, digits and "-", at most 63), optionally with one * at the start or the end',
    'authorizationPolicies[0].spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.0/33" is not an IP address or CIDR block; expected e.g. 10.0.0.0/8, 10.1.2.3 or fd00::/64',
    'authorizationPolicies[0].spec.rules[0].to[0].operation.ports[0]: "http" is not a port; expected an integer from 1 to 65535',
    'authorizationPolicies[0].spec.rules[0].to[0].operation.ports[1]: "0" is not a port; expected an integer from 1 to 65535',
    'authorizationPolicies[0].spec.rules[0].when[0].key: "foo.bar" is not a supported condition key; expected one of source.ip, source.namespace, source.principal, destination.ip, destination.port (enforced at L4), or remote.ip, connection.sni, request.* (HTTP)',
    'authorizationPolicies[0].spec.rules[0].when[1]: set values or notValues for key destination.ip',
    'authorizationPolicies[0].spec.rules[0].when[2].values[0]: "nope" is not an IP address or CIDR block; expected e.g. 10.0.0.0/8, 10.1.2.3 or fd00::/64',
    'authorizationPolicies[0].spec.rules[1].from: must not be empty; omit `from` to match any source',
    'authorizationPolicies[0].spec.rules[2].to[0].operation: must not be empty; set at least one of ports, notPorts, hosts, notHosts, methods, notMethods, paths, notPaths',
    'authorizationPolicies[0].spec.rules[3].from[0].source: must not be empty; set at least one of principals, notPrincipals, namespaces, notNamespaces, ipBlocks, notIpBlocks, serviceAccounts, notServiceAccounts, requestPrincipals, notRequestPrincipals, remoteIpBlocks, notRemoteIpBlocks',
    'authorizationPolicies[1].spec.action: "AUDIT" is not supported by the L4 proxy (ztunnel); expected ALLOW or DENY',
    // targetRefs make it a waypoint policy (core/kube/waypoint-policy.ts).
    'authorizationPolicies[2].spec.selector: cannot be combined with targetRefs (as in Istio): a policy applies to workloads or to waypoints',
    'authorizationPolicies[2].spec.targetRefs: must not be empty; name the waypoint Gateway or the Service',
    'authorizationPolicies[2].spec.rules: a DENY policy without rules never matches; add rules, or rules: [{}] to deny every request',
    'authorizationPolicies[3].spec.rules[0].frm: unknown key; did you mean "from"? allowed keys here: from, to, when',
    // The upstream schema's messages (core/kube/schema.ts).
    'authorizationPolicies[4].spec.action: "deny" is not allowed; expected one of ALLOW, DENY, AUDIT, CUSTOM',
    // Istio's ports are strings: a YAML number is refused (the hand parser used to take it).
    'authorizationPolicies[5].spec.rules[0].to[0].operation.ports[0]: expected a string, got 0 (quote it: "0")',
    'authorizationPolicies[6].spec.selector.matchLabels.app: expected a string, got a list',
    'peerAuthentications[0].spec.portLevelMtls: only a policy with a selector may set portLevelMtls (as in Istio); add spec.selector.matchLabels',
    'peerAuthentications[0].spec.portLevelMtls["0"]: "0" is not a port; expected an integer from 1 to 65535',
    'peerAuthentications[1].spec.mtls: expected a mapping, got "STRICT"',
    'peerAuthentications[1].spec.portLevelMtls: must not be empty',
    'peerAuthentications[2].spec.mtls.mode: "STRICTER" is not allowed; expected one of UNSET, DISABLE, PERMISSIVE, STRICT',
    'peerAuthentications[2].spec.portLevelMtls["8080"].mode: "permissive" is not allowed; expected one of UNSET, DISABLE, PERMISSIVE, STRICT',
  ];
  t.same(got, want);
  // Show the first differing line clearly when the lists drift apart.
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (got[i] !== want[i]) {
      t.equal(got[i], want[i], `first difference at problem ${i}`);
      break;
    }
  }
});

t.test('the ConfigError message lists every problem under the source name', async (t) => {
  try {
    parseMeshConfig('workloads: [{name: a}]\nfoo: 1\n', '/etc/ztunnel/config.yaml');
    t.fail('should throw');
  } catch (e) {
    t.match((e as Error).message, /^invalid configuration in \/etc\/ztunnel\/config\.yaml:\n {2}- foo: unknown key/);
    t.match((e as Error).message, /\n {2}- workloads\[0\]\.namespace: required field is missing/);
  }
});

t.test('YAML-level problems', async (t) => {
  t.same(problemsOf(t, 'nodes:\n  - name: a\n   ztunnelAddress: 1.2.3.4\n'), [
    'yaml syntax error at line 3, column 4: bad indentation of a sequence entry',
  ]);
  t.same(problemsOf(t, 'a: [1,\n b: 2'), ['yaml syntax error at line 2, column 6: unexpected end of the stream within a flow collection']);
  t.same(problemsOf(t, 'nodes: []\nnodes: []\n'), ['yaml syntax error at line 2, column 1: duplicated mapping key']);
  t.same(problemsOf(t, ''), [
    'the file is empty; expected a mapping with the keys trustDomain, nodes, workloads, services, authorizationPolicies, peerAuthentications, requestAuthentications, httpRoutes, grpcRoutes, tcpRoutes, referenceGrants, virtualServices, destinationRules',
  ]);
  t.same(problemsOf(t, '# only a comment\n'), problemsOf(t, ''));
  t.same(problemsOf(t, 'nodes: []\n---\nnodes: []\n'), ['expected one YAML document, found 2 (separated by ---)']);
  t.same(problemsOf(t, '- 1\n'), [
    'expected a mapping at the top of the file with the keys trustDomain, nodes, workloads, services, authorizationPolicies, peerAuthentications, requestAuthentications, httpRoutes, grpcRoutes, tcpRoutes, referenceGrants, virtualServices, destinationRules, got a list',
  ]);
  t.same(problemsOf(t, 'nodes: {name: a}\n'), ['nodes: expected a list, got a mapping']);
  t.same(problemsOf(t, '__proto__: {}\n'), [
    '__proto__: unknown key; allowed keys here: trustDomain, nodes, workloads, services, authorizationPolicies, peerAuthentications, requestAuthentications, httpRoutes, grpcRoutes, tcpRoutes, referenceGrants, virtualServices, destinationRules',
  ]);
});

t.test('a workload on an undeclared node is the only complaint when its node entry is otherwise broken', async (t) => {
  t.same(
    problemsOf(t, 'nodes: [{name: n, ztunnelAddress: bad}]\nworkloads: [{name: a, namespace: d, node: n, ips: [10.0.0.1]}]\n'),
    ['nodes[0].ztunnelAddress: "bad" is not an IPv4 or IPv6 address'],
    'no spurious undeclared-node error',
  );
});

t.test('explicit uids: duplicates of uid and of namespace/name are separate problems', async (t) => {
  t.same(
    problemsOf(t, withNode(`workloads:
  - {name: a, uid: u1, namespace: d, node: node-a, ips: [10.0.0.1]}
  - {name: a, uid: u1, namespace: d, node: node-a, ips: [10.0.0.2]}
`)),
    [
      'workloads[1].uid: duplicate workload uid "u1"; first used at workloads[0].uid',
      'workloads[1].name: duplicate workload "d/a"; first used at workloads[0].name',
    ],
  );
});

t.test('label syntax', async (t) => {
  t.same(
    problemsOf(t, withNode(`workloads: [{name: a, namespace: d, node: node-a, ips: [10.0.0.1], labels: {"bad key!": x, ok: "-bad"}}]\n`)),
    [
      'workloads[0].labels["bad key!"]: is not a valid label key; expected [prefix/]name with a name of up to 63 letters, digits, "-", "_" or "."',
      'workloads[0].labels.ok: "-bad" is not a valid label value; expected up to 63 letters, digits, "-", "_" or ".", starting and ending alphanumeric',
    ],
  );
  const cfg = parseMeshConfig(
    withNode(`workloads: [{name: a, namespace: d, node: node-a, ips: [10.0.0.1], labels: {app.kubernetes.io/name: x, empty: ""}}]\n`),
    'x',
  );
  t.same(cfg.workloads[0]?.labels, { 'app.kubernetes.io/name': 'x', empty: '' });
});

t.test('serviceAccounts cannot be combined with principals or namespaces', async (t) => {
  t.same(
    problemsOf(t, `authorizationPolicies: [{name: p, namespace: d, spec: {rules: [{from: [{source: {serviceAccounts: [a], namespaces: [d]}}]}]}}]\n`),
    ['authorizationPolicies[0].spec.rules[0].from[0].source: serviceAccounts/notServiceAccounts cannot be combined with principals or namespaces (as in Istio)'],
  );
  t.same(
    problemsOf(t, `authorizationPolicies: [{name: p, namespace: d, spec: {rules: [{from: [{source: {serviceAccounts: [a/b/c]}}]}]}}]\n`),
    ['authorizationPolicies[0].spec.rules[0].from[0].source.serviceAccounts[0]: "a/b/c" is not a service account; expected "<namespace>/<name>" or "<name>"'],
  );
});

t.test('duplicate policy names per kind', async (t) => {
  t.same(
    problemsOf(t, `
authorizationPolicies: [{name: p, namespace: d}, {name: p, namespace: e}, {name: p, namespace: d}]
peerAuthentications: [{name: p, namespace: d}]
`),
    ['authorizationPolicies[2].name: duplicate policy "d/p"; first used at authorizationPolicies[0].name'],
  );
});

t.test('readMeshConfigFile', async (t) => {
  const dir = t.testdir({ 'good.yaml': 'nodes: []\n', 'bad.yaml': 'nodes: 1\n' });
  t.same((await readMeshConfigFile(join(dir, 'good.yaml'))).nodes, []);
  t.equal((await readMeshConfigFile(join(dir, 'good.yaml'), { rootNamespace: 'r' })).rootNamespace, 'r');
  await t.rejects(readMeshConfigFile(join(dir, 'bad.yaml')), {
    code: 'ERR_CONFIG_INVALID',
    problems: ['nodes: expected a list, got 1'],
  });
  await t.rejects(readMeshConfigFile(join(dir, 'missing.yaml')), {
    code: 'ERR_CONFIG_INVALID',
    message: /missing\.yaml:\n {2}- cannot read the file \(ENOENT: .*\); check the path and its permissions/,
  });
});

t.test('hostnames are unique across services', async (t) => {
  t.same(
    problemsOf(t, `services:
  - {name: a, namespace: d, vips: [10.96.0.1], ports: [{port: 80}], selector: {app: a}}
  - {name: b, namespace: d, hostname: a.d.svc.cluster.local, vips: [10.96.0.2], ports: [{port: 80}], selector: {app: b}}
  - {name: c, namespace: d, hostname: "Not A Host", vips: [10.96.0.3], ports: [{port: 80}], selector: {app: c}}
`),
    [
      'services[1].hostname: duplicate hostname "a.d.svc.cluster.local"; first used at services[0].name',
      'services[2].hostname: "Not A Host" is not a DNS name',
    ],
  );
});

t.test('destinationRules: subsets for VirtualService destinations, refused with paths when bad', async (t) => {
  const route = `virtualServices:
  - name: ratings
    namespace: default
    spec:
      hosts: [ratings]
      http: [{route: [{destination: {host: ratings, subset: v2}}]}]
`;
  const cfg = parseMeshConfig(
    withNode(`${route}destinationRules:
  - name: ratings
    namespace: default
    spec: {host: ratings, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
`),
    'test.yaml',
  );
  t.same(cfg.destinationRules?.map((d) => [d.name, d.host, d.subsets.map((s) => `${s.name}:${s.labels.version}`)]), [['ratings', 'ratings', ['v1:v1', 'v2:v2']]]);
  t.equal(cfg.virtualServices?.[0]?.rules[0]?.backends[0]?.subset, 'v2');
  t.notOk('destinationRules' in parseMeshConfig(withNode(route), 'test.yaml'), 'absent when the file has none');
  t.match(
    problemsOf(t, withNode(`destinationRules:
  - name: ratings
    namespace: default
    spec: {subsets: [{name: v1, labels: {version: 1}}]}
  - name: reviews
    namespace: default
    spec: {host: reviews, subsets: [{name: v1}, {name: v1}]}
`)),
    [/^destinationRules\[0\]\.spec\.host: required field is missing$/, /^destinationRules\[0\]\.spec\.subsets\[0\]\.labels\.version: expected a string/, /^destinationRules\[1\]\.spec\.subsets\[1\]\.name: subset "v1" is already defined/],
  );
});

t.test('issue 19: user strings in messages are quoted and cut, uids are held to the uid syntax, and no message lists every node', async (t) => {
  t.same(
    problemsOf(t, withNode(`workloads: [{name: ${'w'.repeat(300_000)}, namespace: d, node: node-a, ips: [10.0.0.1]}]\n`)),
    [`workloads[0].name: "${'w'.repeat(100)}"… (300000 characters) is not ${NAME_EXPECTED}`],
    'a 300,000-character name is shown cut, with its length',
  );
  t.same(
    problemsOf(t, withNode('workloads: [{name: a, uid: "u\\u001b[31m", namespace: d, node: node-a, ips: [10.0.0.1]}, {name: b, uid: "a b", namespace: d, node: node-a, ips: [10.0.0.2]}]\n')),
    [`workloads[0].uid: "u\\u001b[31m" is not ${UID_EXPECTED}`, `workloads[1].uid: "a b" is not ${UID_EXPECTED}`],
    'a uid with an ANSI escape or a space is refused, as the discovery decoder refuses it',
  );
  t.same(
    problemsOf(t, withNode('workloads: [{name: a, namespace: d, node: node-a, ips: ["10.0.0.1\\u202e"]}]\n')),
    ['workloads[0].ips[0]: "10.0.0.1\\u202e" is not an IPv4 or IPv6 address'],
    'a bidi override is shown escaped',
  );
  const nodes = Array.from({ length: 3000 }, (_, i) => `{name: n${i}, ztunnelAddress: 127.0.${i >> 8}.${i & 255}, hbonePort: ${i + 1}}`).join(', ');
  const workloads = Array.from({ length: 3000 }, (_, i) => `{name: w${i}, namespace: d, node: elsewhere, ips: [10.1.${i >> 8}.${i & 255}]}`).join(', ');
  const problems = problemsOf(t, `nodes: [${nodes}]\nworkloads: [${workloads}]\n`);
  t.equal(problems.length, 3000, 'each workload on an undeclared node is reported');
  t.equal(problems[0], 'workloads[0].node: node "elsewhere" is not declared under nodes; declared: n0, n1, n2, n3, n4, n5, n6, n7, n8, n9 and 2990 more', 'ten declared nodes are named, the rest counted (3,000 messages of 3,000 names each were 50 MB)');
});

t.test('issue 19: service endpoints through an index of workloads by namespace and label: same endpoints, same order', async (t) => {
  const config = parseMeshConfig(
    withNode(`workloads:
  - {name: a1, namespace: a, node: node-a, ips: [10.0.0.1], labels: {app: web, tier: x}}
  - {name: b1, namespace: b, node: node-a, ips: [10.0.0.2], labels: {app: web, tier: x}}
  - {name: a2, namespace: a, node: node-a, ips: [10.0.0.3], labels: {app: web}}
  - {name: a3, namespace: a, node: node-a, ips: [10.0.0.4], labels: {app: web, tier: x, extra: "1"}}
  - {name: a4, namespace: a, node: node-a, ips: [10.0.0.5], labels: {app: db, tier: x}}
services:
  - {name: web, namespace: a, vips: [10.9.0.1], ports: [{port: 80}], selector: {app: web}}
  - {name: webx, namespace: a, vips: [10.9.0.2], ports: [{port: 80}], selector: {tier: x, app: web}}
  - {name: none, namespace: a, vips: [10.9.0.3], ports: [{port: 80}], selector: {app: web, tier: y}}
  - {name: web, namespace: b, vips: [10.9.0.4], ports: [{port: 80}], selector: {app: web}}
`),
    'test.yaml',
  );
  t.same(
    config.services.map((s) => `${s.namespace}/${s.name}: ${s.endpoints.join(' ')}`),
    ['a/web: a/a1 a/a2 a/a3', 'a/webx: a/a1 a/a3', 'a/none: ', 'b/web: b/b1'],
    'every label of the selector must match, within the namespace, in file order',
  );
});
