import t from 'tap';
import * as yaml from 'js-yaml';
import { formatProblem } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { docs, ns, pod, svc } from './documents.js';
import { once } from 'node:events';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeConfigApi } from '../../../core/kube/api.js';
import { ManifestStore } from '../../../core/kube/store.js';
import { silentLogger } from '../../../core/telemetry/log.js';
import { resourceOf } from '../../../control-plane/kubernetes/kinds.js';
import { KubernetesSource } from '../../../control-plane/kubernetes/source.js';

t.test('a bad object is rejected with its kind, name and field; the others apply', async (t) => {
  const { objects, problems } = parseManifests(
    docs(
      ns('apps'),
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'apps' }, data: {} },
      svc('web', { selector: { app: 1 }, clusterIP: '10.96.0.1', ports: [{ port: 80 }] }),
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'other' } }, spec: { containers: [{ name: 'c' }] } } } },
      { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'ext', namespace: 'apps' }, spec: { action: 'CUSTOM', provider: { name: 'x' } } },
      { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'bad-when', namespace: 'apps' }, spec: { rules: [{ when: [{ key: 'request.auth.claims', values: ['x'] }, { key: 'source.nope', values: ['x'] }] }] } },
      { apiVersion: 'v2', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [] } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'apps' }, spec: { containers: [] } },
      pod('ok', { ip: '10.1.0.5' }),
    ),
    'apps.yaml',
  );
  t.same(objects.map((o) => `${o.kind}/${o.meta.name}`), ['Namespace/apps', 'Pod/ok'], 'only the good objects are accepted');
  const errors = problems.filter((p) => p.severity === 'error').map(formatProblem);
  t.match(errors, [
    /^apps.yaml#2: ConfigMap apps\/cfg: kind: unknown kind "ConfigMap" \(apiVersion v1\); supported kinds: Namespace, ServiceAccount, Pod/,
    /^apps.yaml#3: Service apps\/web: spec.selector.app: expected a string, got 1 \(quote it: "1"\)$/,
    /^apps.yaml#4: Deployment apps\/web: spec.selector.matchLabels: does not match spec.template.metadata.labels/,
    /^apps.yaml#5: AuthorizationPolicy apps\/ext: spec.provider: belongs to the CUSTOM action/,
    /^apps.yaml#5: AuthorizationPolicy apps\/ext: spec.action: "CUSTOM" is not supported by the L4 proxy/,
    /^apps.yaml#6: AuthorizationPolicy apps\/bad-when: spec.rules\[0\].when\[1\].key: "source.nope" is not a supported condition key/,
    /^apps.yaml#7: Pod default\/p: apiVersion: "v2" is not an apiVersion of Pod; expected v1/,
    /^apps.yaml#8: document 8: metadata.name: required field is missing/,
  ]);
});

t.test('a YAML syntax error rejects the whole file, naming the line', async (t) => {
  const { objects, problems } = parseManifests('kind: Pod\nmetadata: {name: [\n', 'broken.yaml');
  t.equal(objects.length, 0);
  t.match(formatProblem(problems[0]!), /^broken.yaml: broken.yaml: yaml syntax error at line \d+.*nothing in this file was applied/);
});

t.test('kind: List is expanded; Deployment selectors with matchExpressions are refused', async (t) => {
  const { objects, problems } = parseManifests(
    yaml.dump({ apiVersion: 'v1', kind: 'List', items: [ns('a'), ns('b')] }) +
      '---\n' +
      yaml.dump({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { selector: { matchExpressions: [] }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c' }] } } } }),
    'list.yaml',
  );
  t.same(objects.map((o) => o.meta.name), ['a', 'b']);
  t.match(problems.map(formatProblem), [/spec.selector.matchExpressions: is not supported by the mesh; use matchLabels/]);
});

t.test('the upstream schema judges structure first: a rejected object gets its messages and no hand check runs', async (t) => {
  const meta = { name: 'p', namespace: 'apps' };
  const cases: { name: string; obj: object; expect: string[] }[] = [
    {
      // The hand parser took numeric ports (it reads "8080" and 8080 alike); Istio's CRD has
      // strings, so an API server with upstream's CRDs refuses this object, and so do we.
      name: 'accepted by the hand code, refused by the schema: AuthorizationPolicy ports as numbers',
      obj: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: meta, spec: { rules: [{ to: [{ operation: { ports: [8080] } }] }] } },
      expect: ['spec.rules[0].to[0].operation.ports[0]: expected a string, got 8080 (quote it: "8080")'],
    },
    {
      name: 'refused by the hand code for its structure, now with the schema message: replicas as a string',
      obj: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta, spec: { replicas: 'two', selector: { matchLabels: { app: 'p' } }, template: { metadata: { labels: { app: 'p' } }, spec: { containers: [{ name: 'c' }] } } } },
      expect: ['spec.replicas: expected an integer, got "two"'],
    },
    {
      // The semantic error (a principal with the spiffe:// prefix) is not reported: structure first.
      name: 'a structural and a semantic error: only the structural one is reported',
      obj: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: meta, spec: { action: 'MAYBE', rules: [{ from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b'] } }] }] } },
      expect: ['spec.action: "MAYBE" is not allowed; expected one of ALLOW, DENY, AUDIT, CUSTOM'],
    },
    {
      name: 'enums and required fields of built-in kinds are the schema\'s: a Service type, a container port',
      obj: { apiVersion: 'v1', kind: 'Service', metadata: meta, spec: { type: 'Internal', ports: [{ name: 'http' }] } },
      expect: ['spec.ports[0].port: required field is missing', 'spec.type: "Internal" is not allowed; expected one of ClusterIP, ExternalName, LoadBalancer, NodePort'],
    },
    {
      name: 'ownerReferences without a uid (an API server refuses them)',
      obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { ...meta, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'd' }] } },
      expect: ['metadata.ownerReferences[0].uid: required field is missing'],
    },
  ];
  for (const c of cases) {
    const { objects, problems } = parseManifests(docs(c.obj), 'x.yaml');
    t.equal(objects.length, 0, `${c.name}: rejected`);
    t.strictSame(
      problems.map((p) => `${p.field}: ${p.message}`),
      c.expect,
      c.name,
    );
    t.ok(problems.every((p) => p.severity === 'error'), `${c.name}: errors`);
  }
});

t.test('ranges the schema lacks stay hand checks: containerPort 0, replicas -1', async (t) => {
  const { objects, problems } = parseManifests(
    docs(
      pod('p', { ports: [{ name: 'http', containerPort: 0 }] }),
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'apps' }, spec: { replicas: -1, selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c' }] } } } },
    ),
    'ranges.yaml',
  );
  t.equal(objects.length, 0);
  t.strictSame(problems.filter((p) => p.severity === 'error').map((p) => `${p.object} ${p.field}: ${p.message}`), [
    'Pod apps/p spec.containers[0].ports[0].containerPort: 0 is not a port; expected an integer from 1 to 65535',
    'Deployment apps/d spec.replicas: -1 is not a replica count; expected an integer from 0',
  ]);
});

t.test('issue 19: the deprecated spec.serviceAccount is a DNS-1123 name like serviceAccountName, and serviceAccountName wins', async (t) => {
  const podWith = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'apps' }, spec: { nodeName: 'node-a', containers: [{ name: 'c' }], ...spec } });
  const { objects, problems } = parseManifests(
    docs(
      podWith('bad-alias', { serviceAccount: 'Bad_SA' }),
      podWith('alias', { serviceAccount: 'legacy' }),
      podWith('both', { serviceAccountName: 'web', serviceAccount: 'Bad_SA' }),
      podWith('bad-name', { serviceAccountName: 'Bad_SA', serviceAccount: 'web' }),
    ),
    'sa.yaml',
  );
  t.strictSame(
    objects.map((o) => `${o.meta.name}:${o.kind === 'Pod' ? o.serviceAccount : ''}`),
    ['alias:legacy', 'both:web'],
    'the alias is used when it is the only one; serviceAccountName wins when both are set',
  );
  t.strictSame(problems.filter((p) => p.severity !== 'info').map((p) => `${p.severity} ${p.object} ${p.field}: ${p.message}`), [
    'error Pod apps/bad-alias spec.serviceAccount: "Bad_SA" is not a service account name; expected a DNS-1123 name (lowercase letters, digits, "-" and "."), at most 253 characters',
    'warning Pod apps/both spec.serviceAccount: "Bad_SA" is ignored: spec.serviceAccountName is set and wins, as in Kubernetes (serviceAccount is its deprecated alias)',
    'error Pod apps/bad-name spec.serviceAccountName: "Bad_SA" is not a service account name; expected a DNS-1123 name (lowercase letters, digits, "-" and "."), at most 253 characters',
    'warning Pod apps/bad-name spec.serviceAccount: "web" is ignored: spec.serviceAccountName is set and wins, as in Kubernetes (serviceAccount is its deprecated alias)',
  ]);
});

t.test('issue 19: strings that become identities, keys or log fields are refused with control characters, each on its own object', async (t) => {
  const gw = (spec: Record<string, unknown>) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'apps' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }], ...spec } });
  const p = pod('web');
  const { objects, problems } = parseManifests(
    docs(
      { ...p, metadata: { ...p.metadata, name: 'node' }, spec: { ...p.spec, nodeName: 'n\u001b[31mode-a' } },
      { ...p, metadata: { ...p.metadata, name: 'uid', uid: 'u\nid' } },
      { ...p, metadata: { ...p.metadata, name: 'ann', annotations: { 'x\u0000y': 'v', ok: 'free text\nis allowed in a value' } } },
      { ...p, metadata: { ...p.metadata, name: 'port' }, spec: { ...p.spec, containers: [{ name: 'c', ports: [{ name: 'h\u202ettp', containerPort: 80 }] }] } },
      { ...p, metadata: { ...p.metadata, name: 'w\u001beb' } },
      svc('s', { selector: { app: 'web' }, ports: [{ name: 'ht\rtp', port: 80 }] }),
      gw({ gatewayClassName: 'istio-waypoint\u0000' }),
      gw({ listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', hostname: 'a\r\nb.example' }] }),
      pod('ok'),
    ),
    'hostile.yaml',
  );
  t.strictSame(objects.map((o) => `${o.kind}/${o.meta.name}`), ['Pod/ok'], 'only the clean object applies');
  t.strictSame(problems.filter((x) => x.severity === 'error').map((x) => `${x.object} ${x.field}: ${x.message}`), [
    'Pod apps/node spec.nodeName: "n\\u001b[31mode-a" is not a node name; expected a DNS-1123 name (lowercase letters, digits, "-" and "."), at most 253 characters',
    'Pod apps/uid metadata.uid: "u\\nid" is not a uid (letters, digits, "-", "_" and ".", at most 128, e.g. a UUID)',
    'Pod apps/ann metadata.annotations["x\\u0000y"]: is not a valid annotation key; expected [prefix/]name with a name of up to 63 letters, digits, "-", "_" or "."',
    'Pod apps/port spec.containers[0].ports[0].name: "h\\u202ettp" is not a port name (1-15 lowercase letters, digits and "-", at least one letter)',
    'Pod apps/"w\\u001beb" metadata.name: "w\\u001beb" is not a DNS-1123 name (lowercase letters, digits, "-" and ".")',
    'Service apps/s spec.ports[0].name: "ht\\rtp" is not a port name; expected a DNS-1123 label (lowercase letters, digits and "-", at most 63)',
    'Gateway apps/wp spec.gatewayClassName: "istio-waypoint\\u0000" is not a GatewayClass name; expected a DNS-1123 name (lowercase letters, digits, "-" and ".")',
    'Gateway apps/wp spec.listeners[0].hostname: "a\\r\\nb.example" is not valid here; expected a string matching ^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
  ]);
  t.notOk(problems.some((x) => /[\u0000-\u001f\u202a-\u202e]/.test(`${x.object}${x.field}${x.message}`)), 'no message carries a raw control or bidi character');
});

t.test('issue 19: a Deployment asking for more replicas than the lab runs is refused on spec.replicas', async (t) => {
  const d = (name: string, replicas: unknown) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: 'apps' }, spec: { replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c' }] } } } });
  const { objects, problems } = parseManifests(docs(d('int-max', 2147483647), d('huge', 1e300), d('hundred', 100)), 'replicas.yaml');
  t.strictSame(objects.map((o) => (o.kind === 'Deployment' ? `${o.meta.name}:${o.replicas}` : '')), ['hundred:100'], 'the bound itself is allowed');
  t.strictSame(problems.map((p) => `${p.severity} ${p.object} ${p.field}: ${p.message}`), [
    'error Deployment apps/int-max spec.replicas: 2147483647 replicas are more than the lab runs for one Deployment; expected at most 100',
    'error Deployment apps/huge spec.replicas: 1e+300 replicas are more than the lab runs for one Deployment; expected at most 100',
  ]);
});

t.test('issue 19: one object with 150,000 problems is reported without a call per problem (no stack overflow)', async (t) => {
  const principals = new Array(150_000).fill('""').join(', ');
  const text = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: apps}\nspec:\n  rules:\n  - from:\n    - source:\n        principals: [${principals}]\n---\n${yaml.dump(pod('ok'))}`;
  const { objects, problems } = parseManifests(text, 'big.yaml');
  t.strictSame(objects.map((o) => o.meta.name), ['ok'], 'the policy is refused, the pod of the same file applies');
  t.ok(problems.length > 0 && problems.every((p) => p.object === 'AuthorizationPolicy apps/p' && p.severity === 'error'), 'every problem is on the policy');
  t.match(problems[0]!.field, /^spec\.rules\[0\]\.from\[0\]\.source\.principals/);
});

t.test('issue 19: an object nested 10,000 levels deep from the API server is refused on its field, through the Kubernetes source; the others apply', async (t) => {
  // The kube-api-fixture runs in a worker with a large stack (fixtures/deep-api-worker.ts): it
  // copies objects with JSON.stringify. This process is the control plane: default stack, the
  // real client, informer, toManifestDocument, parseObject and store. Address 127.0.19.30.
  const kubeconfig = join(t.testdir(), 'kubeconfig');
  const worker = new Worker(new URL('./fixtures/deep-api-worker.ts', import.meta.url), {
    workerData: { host: '127.0.19.30', depth: 10_000, kubeconfig },
    resourceLimits: { stackSizeMb: 256 },
  });
  t.teardown(async () => {
    worker.postMessage('close');
    await once(worker, 'exit');
  });
  await once(worker, 'message');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const source = new KubernetesSource({
    api: new KubeConfigApi(kc),
    rootNamespace: 'istio-system',
    logger: silentLogger,
    ztunnel: { namespace: 'istio-system', serviceAccount: 'ztunnel' },
    resources: [resourceOf('AuthorizationPolicy')!],
  });
  t.teardown(() => source.close());
  const store = new ManifestStore();
  await source.start(store);
  t.same(
    source.problems().map((p) => formatProblem(p)),
    ['kubernetes: AuthorizationPolicy apps/deep: spec.deep.a.a…: nests deeper than 100 levels, the most the mesh reads (a Kubernetes object nests about 15)'],
    'one problem, on the deep object, naming the field (before: "cannot be read as JSON", or a RangeError out of deepFreeze)',
  );
  t.same(store.sortedObjects().map((o) => `${o.kind} ${o.meta.namespace}/${o.meta.name}`), ['AuthorizationPolicy apps/fine'], 'the other object of the same kind is in the store');
});


t.test('issue 19: a Deployment whose 10,000 template labels miss its selector gets a short message', async (t) => {
  const labels = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`l${i}`, 'v']));
  const { problems } = parseManifests(
    yaml.dump({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: 'x' }] } } } }),
    'd.yaml',
  );
  t.equal(problems.length, 1);
  t.match(problems[0]!.message, /^does not match spec\.template\.metadata\.labels \(\{"l0":"v","l1":"v",.*… \(10000 labels\)\); the deployment would own none of its pods$/);
  t.ok(problems[0]!.message.length < 400, `${problems[0]!.message.length} characters, not the 100 KB of every label`);
});
