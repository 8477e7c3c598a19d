import t from 'tap';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { loadConfig } from '../../control-plane/config.js';
import { loadConfig as loadZtunnelConfig } from '../../ztunnel/config.js';
import { parseNodeList } from '../../control-plane/nodes.js';
import { ConfigError } from '../../core/errors.js';
import { startControlPlaneProcess, cpEnv, makeFiles } from './helpers.js';

t.test('the control plane\'s environment: every problem at once', async (t) => {
  const err = (() => {
    try {
      loadConfig({ CONTROL_PLANE_PORT: 'x', LISTEN_ADDRESS: '300.0.0.1', TRUST_DOMAIN: 'Bad', DISCOVERY_HISTORY: '1.5', LOG_LEVEL: 'loud' });
    } catch (e) {
      return e as ConfigError;
    }
    return undefined;
  })();
  t.ok(err instanceof ConfigError);
  const expected = [
    /LOG_LEVEL="loud" is not one of/,
    /TRUST_DOMAIN="Bad"/,
    /LISTEN_ADDRESS="300.0.0.1" is not an IPv4 or IPv6 address/,
    /MANIFESTS_PATH is required/,
    /NODES_FILE is required/,
    /CA_CERT_FILE is required/,
    /CA_KEY_FILE is required/,
    /CONTROL_PLANE_PORT="x" is not a port/,
    /DISCOVERY_HISTORY="1.5" is not a positive integer/,
  ];
  for (const re of expected) t.ok(err!.problems.some((p) => re.test(p)), `reports ${re}`);
  t.equal(err!.problems.length, expected.length, 'and nothing else');
  const ok = loadConfig({ MANIFESTS_PATH: 'm', NODES_FILE: 'n', CA_CERT_FILE: 'c', CA_KEY_FILE: 'k' });
  t.equal(ok.port, 15012);
  t.equal(ok.adminAddress, '127.0.0.1', 'debug endpoints are local by default');
  t.equal(ok.certTtlSeconds, 86400);
  t.ok(Object.isFrozen(ok));
});

t.test('CONFIG_SOURCE=kubernetes: no files, a pod name, the cluster settings with their defaults', async (t) => {
  const base = { CONFIG_SOURCE: 'kubernetes', CA_CERT_FILE: '/ca/cert.pem', CA_KEY_FILE: '/ca/key.pem' };
  const cfg = loadConfig({ ...base, POD_NAME: 'istiod-0', POD_NAMESPACE: 'istio-system', WAYPOINT_IMAGE: 'reg/mesh:1' });
  t.equal(cfg.configSource, 'kubernetes');
  t.equal(cfg.manifestsPath, '');
  t.same(cfg.kubernetes, {
    waypointImage: 'reg/mesh:1',
    waypointResources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
    serviceAddress: 'istiod.istio-system.svc:15012',
    podName: 'istiod-0',
    podNamespace: 'istio-system',
    leaderElectionNamespace: 'istio-system',
    leaderElectionLease: 'ambient-control-plane',
    ztunnelNamespace: 'istio-system',
    ztunnelServiceAccount: 'ztunnel',
    tokenAudience: 'istio-ca',
  });
  let problems: readonly string[] = [];
  try {
    loadConfig({ ...base, MANIFESTS_PATH: '/m', NODES_FILE: '/n', CONTROL_PLANE_SERVICE_ADDRESS: 'istiod:99999', WAYPOINT_IMAGE_PULL_POLICY: 'Sometimes', WAYPOINT_RESOURCES: '{"limits":{"memory":"lots"}}' });
  } catch (e) {
    problems = (e as ConfigError).problems;
  }
  t.match(problems, [
    /MANIFESTS_PATH is for CONFIG_SOURCE=files/,
    /NODES_FILE is for CONFIG_SOURCE=files/,
    /WAYPOINT_IMAGE_PULL_POLICY="Sometimes" is not one of Always, IfNotPresent, Never/,
    /WAYPOINT_RESOURCES: limits\.memory="lots" is not a Kubernetes quantity/,
    /CONTROL_PLANE_SERVICE_ADDRESS="istiod:99999" is not host:port with a port 1-65535/,
    /POD_NAME is required/,
  ], 'every problem at once');
  t.throws(() => loadConfig({ ...base, CONFIG_SOURCE: 'etcd' }), { message: /CONFIG_SOURCE="etcd" is not one of files, kubernetes/ });
  const none = loadConfig({ ...base, POD_NAME: 'istiod-0', WAYPOINT_RESOURCES: '{}' });
  t.same(none.kubernetes?.waypointResources, {}, 'WAYPOINT_RESOURCES={}: no requests or limits');
});

t.test('ztunnel: CONTROL_PLANE_ADDRESS selects the control-plane mode', async (t) => {
  const cfg = loadZtunnelConfig({ NODE_NAME: 'n', CONTROL_PLANE_ADDRESS: '10.0.0.1:15012', NODE_TOKEN_FILE: '/t', CONTROL_PLANE_ROOT_CERT_FILE: '/r' });
  t.same(cfg.controlPlane, { address: { host: '10.0.0.1', port: 15012 }, tokenFile: '/t', rootCertFile: '/r', identity: 'spiffe://cluster.local/ns/istio-system/sa/istiod' });
  t.equal(cfg.localConfigFile, '');
  t.throws(() => loadZtunnelConfig({ NODE_NAME: 'n', CONTROL_PLANE_ADDRESS: 'a:b:c' }), /CONTROL_PLANE_ADDRESS="a:b:c" is not host:port[\s\S]*NODE_TOKEN_FILE is required[\s\S]*CONTROL_PLANE_ROOT_CERT_FILE is required/);
  t.throws(
    () => loadZtunnelConfig({ NODE_NAME: 'n', CONTROL_PLANE_ADDRESS: 'cp:15012', NODE_TOKEN_FILE: '/t', CONTROL_PLANE_ROOT_CERT_FILE: '/r', LOCAL_CONFIG_FILE: '/x' }),
    /LOCAL_CONFIG_FILE is for standalone mode; with CONTROL_PLANE_ADDRESS certificates and configuration come from the control plane/,
  );
  t.throws(() => loadZtunnelConfig({ NODE_NAME: 'n' }), /LOCAL_CONFIG_FILE is required \(or set CONTROL_PLANE_ADDRESS to use the control plane\)/);
});

t.test('the node list: names, addresses and tokens checked, each token unique', async (t) => {
  const list = parseNodeList('nodes:\n  - {name: a, ztunnelAddress: 10.0.0.1, token: aaaaaaaaaaaaaaaaaaaa}\n  - {name: b, ztunnelAddress: 10.0.0.2, tokenSha256: ' + 'a'.repeat(64) + '}\n', 'nodes.yaml');
  t.same(list.nodes.map((n) => n.name), ['a', 'b']);
  t.equal(list.tokens.size, 2);
  let problems: readonly string[] = [];
  try {
    parseNodeList('nodes:\n  - {name: a, ztunnelAddress: 10.0.0.x, token: short}\n  - {name: a, ztunnelAddress: 10.0.0.2, token: bbbbbbbbbbbbbbbbbbbb, extra: 1}\n  - {name: c, ztunnelAddress: 10.0.0.3, token: bbbbbbbbbbbbbbbbbbbb}\n', 'nodes.yaml');
  } catch (e) {
    problems = (e as ConfigError).problems;
  }
  for (const re of [/nodes\[0\].ztunnelAddress: "10.0.0.x" is not an IP address/, /nodes\[0\].token: too short/, /nodes\[1\].extra: unknown key/, /nodes\[1\].name: duplicate node name "a"/, /nodes\[2\].token: the same token as node a/]) {
    t.ok(problems.some((p) => re.test(p)), `reports ${re}`);
  }
});

t.test('the process: a bad environment exits 2 before binding; unusable CA files exit 1 saying why', async (t) => {
  const bad = startControlPlaneProcess({ CONTROL_PLANE_PORT: 'x' });
  t.equal(await bad.exited, 2);
  t.match(bad.output(), /MANIFESTS_PATH is required/);
  t.match(bad.output(), /CONTROL_PLANE_PORT="x" is not a port/);
  const files = await makeFiles(t.testdir(), [{ name: 'node-a', address: '127.0.6.240' }]);
  await writeFile(join(files.dir, 'broken.pem'), 'not a certificate');
  const p = startControlPlaneProcess(cpEnv(files, '127.0.6.241', { CA_CERT_FILE: join(files.dir, 'broken.pem'), LOG_LEVEL: 'info' }));
  t.equal(await p.exited, 1);
  t.match(p.output(), /control plane failed to start: ca root certificate unusable: the ca certificate is not a pem x.509 certificate/);
});
