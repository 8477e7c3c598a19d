/**
 * The Helm charts, linted and rendered by real Helm 3 (`helm lint --strict`, `helm template`; the
 * binary comes from `cluster/cluster.sh tools`, test/helpers/helm.ts) for three clusters: Kubernetes
 * 1.20.2 (the real test cluster of cluster/, with the API versions its discovery lists), 1.25.16
 * (the first without policy/v1beta1) and 1.31.0, with their default values and with every value combination docs/install.md documents. Each
 * rendered document is checked against the Kubernetes schemas (kubernetes-models) and for unknown
 * fields (what `kubectl apply`'s strict field validation refuses), then against what the issue asks
 * of each chart and what each component really reads.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import * as k8s from '@kubernetes/client-node';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PodDisruptionBudget as PodDisruptionBudgetV1beta1 } from 'kubernetes-models/policy/v1beta1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { createHelm, HelmCommandError, HelmTemplateFailError, HelmValuesSchemaError, type KubeTarget, type Manifest, type Rendered } from '../helpers/helm.js';
import { ENV as CONTROL_PLANE_ENV, loadConfig as loadControlPlaneConfig } from '../../control-plane/config.js';
import { DEFAULT_WAYPOINT_RESOURCES } from '../../control-plane/kubernetes/resources.js';
import { ENV as ZTUNNEL_ENV } from '../../ztunnel/config.js';
import { ENV as AGENT_ENV } from '../../cni-plugin/agent/config.js';

const ROOT = join(import.meta.dirname, '..', '..');
const NS = 'istio-system';
const CHARTS = ['base', 'control-plane', 'ztunnel', 'cni'] as const;
type ChartName = (typeof CHARTS)[number];

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * The value combinations docs/install.md documents (its "Tested value combinations" table lists
 * the same `--set` arguments; a test below keeps the two in step).
 */
export const COMBINATIONS: ReadonlyArray<{ chart: ChartName; name: string; set: string[] }> = [
  { chart: 'control-plane', name: 'an intermediate CA, 2 replicas', set: ['ca.intermediate=true', 'replicaCount=2'] },
  { chart: 'control-plane', name: '3 replicas, a percentage budget', set: ['replicaCount=3', 'podDisruptionBudget.minAvailable=50%'] },
  { chart: 'control-plane', name: 'one replica, no budget', set: ['replicaCount=1', 'podDisruptionBudget.enabled=false'] },
  { chart: 'ztunnel', name: 'SOCKS5 on, a custom control-plane address', set: ['socks5Port=15080', 'controlPlane.address=cp.mesh.example:15012'] },
  { chart: 'ztunnel', name: 'an image from a registry, a longer drain', set: ['image.hub=registry.example/mesh', 'image.tag=0.1.1', 'drainTimeoutSeconds=55', 'terminationGracePeriodSeconds=60'] },
  { chart: 'cni', name: 'the cgroupfs driver', set: ['cgroup.driver=cgroupfs'] },
  { chart: 'cni', name: 'full removal on exit', set: ['cni.uninstallOnExit=all'] },
  { chart: 'cni', name: 'no plugin install', set: ['cni.install=false'] },
  { chart: 'cni', name: 'API server excluded', set: ['redirect.excludeCidrs[0]=10.96.0.1/32', 'redirect.excludePorts[0]=6443'] },
];

/**
 * The clusters the charts are rendered for. `helm template` fills .Capabilities.APIVersions from
 * its own client library whatever --kube-version says; `helm install` asks the cluster, whose
 * discovery lists each resource: these lists are what each version's discovery adds for the kinds
 * the charts render.
 */
const TARGETS = {
  // cluster/ (docs/real-cluster.md): policy/v1 arrived in 1.21, DaemonSet maxSurge in 1.22.
  '1.20.2': { kubeVersion: '1.20.2', apiVersions: ['apps/v1/DaemonSet', 'apps/v1/Deployment', 'policy/v1beta1/PodDisruptionBudget'] },
  // 1.25 removed policy/v1beta1: a chart still rendering it would fail to install from here on.
  '1.25.16': { kubeVersion: '1.25.16', apiVersions: ['apps/v1/DaemonSet', 'apps/v1/Deployment', 'policy/v1/PodDisruptionBudget'] },
  '1.31.0': { kubeVersion: '1.31.0', apiVersions: ['apps/v1/DaemonSet', 'apps/v1/Deployment', 'policy/v1/PodDisruptionBudget'] },
} as const satisfies Record<string, KubeTarget>;
type TargetName = keyof typeof TARGETS;
const TARGET_NAMES = Object.keys(TARGETS) as TargetName[];

// Fails the file, saying why, when helm cannot be obtained: no imitation to fall back on.
const helm = createHelm((fn) => t.teardown(fn));

function render(chart: ChartName, set: readonly string[] = [], namespace = NS, target: TargetName = '1.31.0'): Rendered {
  return helm.template({ chart, namespace, set, target: TARGETS[target] });
}

const of = (r: Rendered, kind: string): Obj[] => r.manifests.filter((m) => m.object['kind'] === kind).map((m) => m.object as Obj);
const one = (r: Rendered, kind: string): Obj => {
  const all = of(r, kind);
  if (all.length !== 1) throw new Error(`expected one ${kind}, got ${all.length}`);
  return all[0]!;
};
const container = (workload: Obj): Obj => workload['spec']['template']['spec']['containers'][0];
const podSpec = (workload: Obj): Obj => workload['spec']['template']['spec'];
const envOf = (c: Obj): Map<string, Obj> => new Map((c['env'] as Obj[]).map((e) => [e['name'] as string, e]));
const envValue = (c: Obj, name: string): string | undefined => envOf(c).get(name)?.['value'];

// ---- schema validation -------------------------------------------------------------------------

/** kubernetes-models class of each kind the charts may render. */
const MODELS: Record<string, new (data: Obj) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment as never,
  'apps/v1/DaemonSet': DaemonSet as never,
  'v1/Service': Service as never,
  'v1/ServiceAccount': ServiceAccount as never,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as never,
  'policy/v1beta1/PodDisruptionBudget': PodDisruptionBudgetV1beta1 as never,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole as never,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding as never,
  'rbac.authorization.k8s.io/v1/Role': Role as never,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding as never,
};

/**
 * Fields the Kubernetes OpenAPI does not know, as `kubectl apply --validate=strict` (the default)
 * refuses them. kubernetes-models checks types, required fields and formats but lets unknown
 * fields through, so this walks the typed models of @kubernetes/client-node instead.
 */
export function unknownFields(value: unknown, type: string, path: string, out: string[] = []): string[] {
  if (value === null || value === undefined) return out;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, arr[1]!, `${path}[${i}]`, out));
    return out;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return out;
  }
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Array<{ baseName: string; type: string }> }>)[type];
  if (!model?.getAttributeTypeMap || typeof value !== 'object') return out; // a primitive, IntOrString, any
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value as Obj)) {
    const at = attrs.get(k);
    if (at === undefined) out.push(`${path}.${k}: unknown field of ${type}`);
    else unknownFields(v, at, `${path}.${k}`, out);
  }
  return out;
}

/**
 * The client-node model name of a top-level object (`V1DaemonSet`, `V1ClusterRole`, ...). client-node
 * has no policy/v1beta1 models; its PodDisruptionBudget spec has the same fields as v1's plus
 * unhealthyPodEvictionPolicy (1.26), which the chart does not render.
 */
const modelName = (o: Obj): string => `V1${o['kind']}`;

function validateDocument(t: Test, m: Manifest): void {
  const o = m.object as Obj;
  const key = `${o['apiVersion']}/${o['kind']}`;
  const Model = MODELS[key];
  if (!Model) {
    t.fail(`${m.source}: ${key} has no schema in this test; add its model`);
    return;
  }
  try {
    new Model(o).validate();
    t.pass(`${m.source}: ${o['kind']} ${o['metadata']?.['name']} validates`);
  } catch (err) {
    t.fail(`${m.source}: ${o['kind']} ${o['metadata']?.['name']}: ${(err as Error).message}`);
  }
  t.same(unknownFields(o, modelName(o), o['kind']), [], `${m.source}: ${o['kind']} has no unknown fields`);
}

/** Names of a container's env entries that occur more than once. */
const duplicateEnvNames = (c: Obj): string[] => {
  const names = ((c['env'] ?? []) as Obj[]).map((e) => e['name'] as string);
  return [...new Set(names.filter((n, i) => names.indexOf(n) !== i))];
};

/**
 * Every container's env names are unique: the API server keeps duplicates, but Helm's three-way
 * merge on upgrade refuses them ("patch order") or drops one (found on a real 1.20 cluster).
 */
function checkEnvNames(t: Test, m: Manifest): void {
  const spec = (m.object as Obj)['spec']?.['template']?.['spec'] as Obj | undefined;
  for (const c of (spec?.['containers'] ?? []) as Obj[]) t.same(duplicateEnvNames(c), [], `${m.source}: container ${c['name']} has no duplicate env name`);
}

t.test('the strict-field walker finds a misspelt field (so the checks below can fail)', async (t) => {
  const ds = { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { hostNetwrok: true, containers: [{ name: 'c', securityContext: { capabilities: { drop: ['ALL'], ad: [] } } }] } } } };
  t.same(unknownFields(ds, 'V1DaemonSet', 'DaemonSet'), [
    'DaemonSet.spec.template.spec.hostNetwrok: unknown field of V1PodSpec',
    'DaemonSet.spec.template.spec.containers[0].securityContext.capabilities.ad: unknown field of V1Capabilities',
  ]);
  t.throws(() => new Deployment({ metadata: { name: 'x' }, spec: { replicas: '2' as never, selector: {}, template: {} } }).validate(), /replicas must be integer/);
});

t.test(`real helm: ${helm.version} (${helm.binary})`, async (t) => {
  t.match(helm.version, /^v3\./, 'Helm 3');
});

for (const target of TARGET_NAMES) {
  for (const chart of CHARTS) {
    t.test(`${chart} on ${target}: helm lint --strict passes`, async (t) => {
      const out = helm.lint(chart, NS, TARGETS[target]);
      t.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      t.notMatch(out, /\[(WARNING|ERROR)\]/, 'no warnings or errors');
    });

    t.test(`${chart} on ${target}: default values render and every document validates`, async (t) => {
      const r = render(chart, [], NS, target);
      if (chart === 'base') t.same(r.manifests, [], 'the base chart has no templates: only crds/ (test/charts/crds.test.ts)');
      else t.ok(r.manifests.length > 0, 'renders documents');
      for (const m of r.manifests) {
        validateDocument(t, m);
        checkEnvNames(t, m);
        const o = m.object as Obj;
        const clusterScoped = o['kind'] === 'ClusterRole' || o['kind'] === 'ClusterRoleBinding';
        t.equal(o['metadata']['namespace'], clusterScoped ? undefined : NS, `${o['kind']} ${o['metadata']['name']}: ${clusterScoped ? 'cluster-scoped' : 'in the release namespace'}`);
      }
    });
  }

  for (const c of COMBINATIONS) {
    t.test(`${c.chart} on ${target} with ${c.name} (${c.set.join(' ')}) renders and validates`, async (t) => {
      const r = render(c.chart, c.set, NS, target);
      for (const m of r.manifests) {
        validateDocument(t, m);
        checkEnvNames(t, m);
      }
    });
  }
}

t.test('API versions follow the cluster: policy/v1 from 1.21, DaemonSet maxSurge from 1.22', async (t) => {
  const pdbVersion = (target: KubeTarget) => one(helm.template({ chart: 'control-plane', namespace: NS, target }), 'PodDisruptionBudget')['apiVersion'];
  t.equal(pdbVersion(TARGETS['1.20.2']), 'policy/v1beta1', '1.20 serves no policy/v1');
  t.equal(pdbVersion(TARGETS['1.25.16']), 'policy/v1', '1.25 serves no policy/v1beta1 (removed in 1.25)');
  t.equal(pdbVersion(TARGETS['1.31.0']), 'policy/v1', '1.31 neither');
  t.equal(pdbVersion({ kubeVersion: '1.21.0', apiVersions: [] }), 'policy/v1', 'helm template without discovery: 1.21 by its version');
  t.equal(pdbVersion({ kubeVersion: '1.20.2', apiVersions: ['policy/v1/PodDisruptionBudget'] }), 'policy/v1', 'a cluster whose discovery lists policy/v1 gets it');
  const strategy = (target: KubeTarget, set: string[] = []) => one(helm.template({ chart: 'ztunnel', namespace: NS, target, set }), 'DaemonSet')['spec']['updateStrategy'];
  t.same(strategy(TARGETS['1.20.2']), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } }, '1.20: no maxSurge (an unknown field there), and maxUnavailable 0 becomes 1');
  t.same(strategy({ kubeVersion: '1.21.9', apiVersions: [] }), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } }, '1.21: maxSurge only behind a feature gate');
  t.same(strategy(TARGETS['1.20.2'], ['updateStrategy.maxUnavailable=2']), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 2 } }, 'a non-zero maxUnavailable is kept');
  t.same(strategy({ kubeVersion: '1.22.0', apiVersions: [] }), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } }, '1.22: surge');
  t.same(strategy(TARGETS['1.25.16']), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  t.same(strategy(TARGETS['1.31.0']), { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  // Deployment maxSurge (control plane) is as old as apps/v1.
  t.same(one(render('control-plane', [], NS, '1.20.2'), 'Deployment')['spec']['strategy']['rollingUpdate'], one(render('control-plane'), 'Deployment')['spec']['strategy']['rollingUpdate']);
});

t.test('every chart refuses clusters older than 1.20 (kubeVersion)', async (t) => {
  for (const chart of CHARTS) {
    const err = t.throws(() => helm.template({ chart, namespace: NS, target: { kubeVersion: '1.19.16', apiVersions: [] } }), HelmCommandError, chart) as unknown as HelmCommandError;
    t.match(err.message, /chart requires kubeVersion: >=1\.20\.0-0 which is incompatible with Kubernetes v1\.19\.16/, chart);
    // A provider's suffixed version (v1.20.2-eks-...) satisfies it: the constraint admits pre-releases.
    t.ok(helm.template({ chart, namespace: NS, target: { kubeVersion: '1.20.2-eks-1a2b3c', apiVersions: [] } }), `${chart} renders for 1.20.2-eks-1a2b3c`);
  }
});

t.test('docs/install.md lists every tested combination', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'install.md'), 'utf8');
  for (const c of COMBINATIONS) for (const s of c.set) t.ok(doc.includes(`--set ${s}`), `docs/install.md shows --set ${s} (${c.chart}: ${c.name})`);
});

t.test('every chart refuses another namespace: the mesh identities name istio-system', async (t) => {
  for (const chart of ['control-plane', 'ztunnel', 'cni'] as const) {
    t.throws(() => render(chart, [], 'mesh'), HelmTemplateFailError, chart);
    t.throws(() => render(chart, [], 'mesh'), /must be installed into istio-system \(got "mesh"\)/);
  }
});

// ---- environment: the names each component reads ------------------------------------------------

const known = (env: Readonly<Record<string, string>>) => new Set(Object.values(env));

t.test('every environment variable a chart sets is one its component reads', async (t) => {
  const cases: Array<[string, Obj, Set<string>]> = [
    ['control-plane', one(render('control-plane'), 'Deployment'), known(CONTROL_PLANE_ENV)],
    ['ztunnel', one(render('ztunnel', ['socks5Port=15080', 'controlPlane.identity=spiffe://cluster.local/ns/istio-system/sa/istiod']), 'DaemonSet'), known(ZTUNNEL_ENV)],
    ['cni', one(render('cni', ['redirect.excludeCidrs[0]=10.96.0.1/32', 'redirect.excludePorts[0]=6443', 'controlPlane.identity=spiffe://cluster.local/ns/istio-system/sa/istiod']), 'DaemonSet'), known(AGENT_ENV)],
  ];
  for (const [name, w, names] of cases) {
    for (const e of container(w)['env'] as Obj[]) t.ok(names.has(e['name']), `${name}: ${e['name']} is read by the component (its config.ts ENV)`);
  }
});

t.test('the duplicate check finds a duplicate name (so the checks above can fail)', async (t) => {
  t.same(duplicateEnvNames({ env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }, { name: 'A', value: '3' }] }), ['A']);
  t.same(duplicateEnvNames({ env: [{ name: 'A', value: '1' }] }), []);
});

/**
 * `env` overrides (a real 1.20 cluster: `--set env.CONTROL_PLANE_SERVICE_ADDRESS=...` gave two
 * entries of that name). Per chart: a variable the chart sets from a value, one it sets from a
 * fieldRef, and one it does not set.
 */
const OVERRIDES: ReadonlyArray<{ chart: ChartName; kind: string; value: string; fieldRef: string }> = [
  { chart: 'control-plane', kind: 'Deployment', value: 'CONTROL_PLANE_SERVICE_ADDRESS', fieldRef: 'POD_NAMESPACE' },
  { chart: 'ztunnel', kind: 'DaemonSet', value: 'CONTROL_PLANE_ADDRESS', fieldRef: 'ZTUNNEL_ADDRESS' },
  { chart: 'cni', kind: 'DaemonSet', value: 'CONTROL_PLANE_ADDRESS', fieldRef: 'ZTUNNEL_IP' },
];

for (const o of OVERRIDES) {
  t.test(`${o.chart}: env replaces a variable the chart sets (in place, once) and appends a new one`, async (t) => {
    const names = (c: Obj) => (c['env'] as Obj[]).map((e) => e['name'] as string);
    const plain = container(one(render(o.chart), o.kind));
    t.ok(envValue(plain, o.value), `the chart sets ${o.value}`);
    t.ok(envOf(plain).get(o.fieldRef)?.['valueFrom'], `the chart sets ${o.fieldRef} from a fieldRef`);
    const c = container(one(render(o.chart, [`env.${o.value}=cp.override.example:15012`, `env.${o.fieldRef}=10.1.2.3`, 'env.EXTRA_SETTING=40']), o.kind));
    const env = c['env'] as Obj[];
    t.same(env.filter((e) => e['name'] === o.value), [{ name: o.value, value: 'cp.override.example:15012' }], `exactly one ${o.value}, the user's`);
    t.same(env.filter((e) => e['name'] === o.fieldRef), [{ name: o.fieldRef, value: '10.1.2.3' }], `exactly one ${o.fieldRef}, the user's value instead of the fieldRef`);
    t.same(names(c), [...names(plain), 'EXTRA_SETTING'], 'replaced entries keep their position; a new one is appended');
    t.equal(envValue(c, 'EXTRA_SETTING'), '40', 'a number from --set is rendered as a string');
    t.same(duplicateEnvNames(c), []);
    for (const e of env.filter((x) => x['name'] !== o.value && x['name'] !== o.fieldRef && x['name'] !== 'EXTRA_SETTING')) {
      t.same(e, envOf(plain).get(e['name']), `${e['name']} is the chart's`);
    }
    t.throws(() => render(o.chart, ['env.1BAD=1']), HelmValuesSchemaError, 'an env name Kubernetes would refuse is refused');
  });
}

// ---- control plane ------------------------------------------------------------------------------

t.test('control plane: the cluster contract of its environment', async (t) => {
  const r = render('control-plane');
  const c = container(one(r, 'Deployment'));
  const env = envOf(c);
  t.equal(envValue(c, 'CONFIG_SOURCE'), 'kubernetes');
  t.notOk(env.has('MANIFESTS_PATH') || env.has('NODES_FILE'), 'no file source variables');
  t.same(env.get('POD_NAME')?.['valueFrom'], { fieldRef: { fieldPath: 'metadata.name' } });
  t.same(env.get('POD_NAMESPACE')?.['valueFrom'], { fieldRef: { fieldPath: 'metadata.namespace' } });
  t.equal(envValue(c, 'LEADER_ELECTION_NAMESPACE'), NS);
  const role = one(r, 'Role');
  t.same(role['rules'][0]['resourceNames'], [envValue(c, 'LEADER_ELECTION_LEASE')], 'the Role names the Lease the control plane holds');
  t.equal(envValue(c, 'LEADER_ELECTION_LEASE'), 'ambient-control-plane');
  t.equal(envValue(c, 'ZTUNNEL_NAMESPACE'), NS);
  // The ztunnel and cni charts' service account and token audience are what the control plane checks.
  const zt = render('ztunnel');
  const ztDs = one(zt, 'DaemonSet');
  t.equal(envValue(c, 'ZTUNNEL_SERVICE_ACCOUNT'), one(zt, 'ServiceAccount')['metadata']['name']);
  t.equal(envValue(c, 'ZTUNNEL_SERVICE_ACCOUNT'), podSpec(ztDs)['serviceAccountName']);
  t.equal(envValue(c, 'ZTUNNEL_SERVICE_ACCOUNT'), podSpec(one(render('cni'), 'DaemonSet'))['serviceAccountName'], 'the node agent authenticates as ztunnel');
  const audience = (w: Obj) => (podSpec(w)['volumes'] as Obj[]).find((v) => v['name'] === 'istio-token')!['projected']['sources'][0]['serviceAccountToken']['audience'];
  t.equal(envValue(c, 'TOKEN_AUDIENCE'), audience(ztDs));
  t.equal(envValue(c, 'TOKEN_AUDIENCE'), audience(one(render('cni'), 'DaemonSet')));
  t.equal(envValue(c, 'TOKEN_AUDIENCE'), 'istio-ca');
  t.notOk(env.has('CA_CERT_CHAIN_FILE'), 'a root CA has no chain file');
  const inter = container(one(render('control-plane', ['ca.intermediate=true']), 'Deployment'));
  t.equal(envValue(inter, 'CA_CERT_CHAIN_FILE'), '/etc/cacerts/cert-chain.pem', 'an intermediate CA names cert-chain.pem');
  t.equal(one(r, 'Deployment')['spec']['template']['spec']['volumes'][0]['secret']['secretName'], 'cacerts');
});

t.test('control plane: Service on 15012, readiness on 15021, PodDisruptionBudget over its pods', async (t) => {
  const r = render('control-plane');
  const dep = one(r, 'Deployment');
  const svc = one(r, 'Service');
  t.same(svc['spec']['ports'].map((p: Obj) => p['port']), [15012]);
  t.same(svc['spec']['selector'], dep['spec']['selector']['matchLabels'], 'the Service selects the Deployment\'s pods');
  t.equal(svc['metadata']['name'], 'istiod', 'ztunnels reach istiod.<ns>.svc:15012');
  const c = container(dep);
  t.same(c['readinessProbe']['httpGet'], { path: '/healthz/ready', port: 15021 });
  t.ok((c['ports'] as Obj[]).some((p) => p['containerPort'] === 15012 && p['name'] === svc['spec']['ports'][0]['targetPort']), 'targetPort names the 15012 container port');
  t.equal(dep['spec']['replicas'], 2);
  const pdb = one(r, 'PodDisruptionBudget');
  t.equal(pdb['spec']['minAvailable'], 1);
  t.same(pdb['spec']['selector']['matchLabels'], dep['spec']['selector']['matchLabels']);
  t.equal(one(render('control-plane', ['replicaCount=3', 'podDisruptionBudget.minAvailable=50%']), 'PodDisruptionBudget')['spec']['minAvailable'], '50%');
  t.same(of(render('control-plane', ['replicaCount=1', 'podDisruptionBudget.enabled=false']), 'PodDisruptionBudget'), []);
  t.throws(() => render('control-plane', ['replicaCount=1']), /minAvailable 1 with replicaCount 1 would block every node drain/);
  t.equal(c['securityContext']['capabilities']['drop'][0], 'ALL');
  t.notOk(c['securityContext']['capabilities']['add'], 'the control plane needs no capability');
});

t.test('control plane: waypoint.resources reaches the waypoint Deployments through WAYPOINT_RESOURCES', async (t) => {
  // The control plane's own config parser reads the rendered environment, as it does in the pod.
  const settings = (set: string[] = []) => {
    const c = container(one(render('control-plane', set), 'Deployment'));
    const env: Record<string, string> = { POD_NAME: 'istiod-0' };
    for (const e of c['env'] as Obj[]) if (typeof e['value'] === 'string') env[e['name']] = e['value'];
    return loadControlPlaneConfig(env).kubernetes!;
  };
  t.same(settings().waypointResources, { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } }, "the chart's defaults: Istio's waypoint requests and a memory limit");
  t.same(settings().waypointResources, DEFAULT_WAYPOINT_RESOURCES, "the same as the control plane's own defaults");
  t.same(settings(['waypoint.resources.requests.cpu=250m', 'waypoint.resources.limits.cpu=2']).waypointResources, { requests: { cpu: '250m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } }, 'values merge over the defaults; a number is a quantity');
  t.same(settings(['waypoint.resources=null']).waypointResources, {}, 'null: no requests or limits');
  t.throws(() => render('control-plane', ['waypoint.resources.requests.gpu=1']), HelmValuesSchemaError, 'an unknown resource is refused by the schema');
  t.throws(() => settings(['waypoint.resources.requests.memory=2Gi']), /requests\.memory \(2Gi\) is above limits\.memory \(1Gi\)/, 'a request above its limit stops the control plane at start-up');
});

t.test('every chart uses istiod.<namespace>.svc:15012, the control plane Service, when controlPlane.address is ""', async (t) => {
  const svc = one(render('control-plane'), 'Service');
  const address = `${svc['metadata']['name']}.${NS}.svc:${svc['spec']['ports'][0]['port']}`;
  t.equal(address, 'istiod.istio-system.svc:15012');
  t.equal(envValue(container(one(render('control-plane'), 'Deployment')), 'CONTROL_PLANE_SERVICE_ADDRESS'), address, 'the control plane writes it into waypoint Deployments');
  for (const chart of ['ztunnel', 'cni'] as const) {
    t.equal(envValue(container(one(render(chart), 'DaemonSet')), 'CONTROL_PLANE_ADDRESS'), address, `${chart}: the default`);
    t.equal(envValue(container(one(render(chart, ['controlPlane.address=']), 'DaemonSet')), 'CONTROL_PLANE_ADDRESS'), address, `${chart}: "" means the default`);
    t.equal(envValue(container(one(render(chart, ['controlPlane.address=cp.mesh.example:15012']), 'DaemonSet')), 'CONTROL_PLANE_ADDRESS'), 'cp.mesh.example:15012', `${chart}: a set address is used`);
    // On the host network the pod's resolver is the node's unless dnsPolicy says otherwise:
    // istiod.<ns>.svc resolves only through the cluster DNS.
    t.equal(podSpec(one(render(chart), 'DaemonSet'))['dnsPolicy'], 'ClusterFirstWithHostNet', `${chart}: host network, cluster DNS`);
  }
});

/** (apiGroup, resource, verb) triples of the first table after `heading` in docs/kubernetes.md. */
function docsTable(doc: string, heading: RegExp): Set<string> {
  const start = doc.search(heading);
  if (start < 0) throw new Error(`docs/kubernetes.md: no section ${heading}`);
  const lines = doc.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > first && !l.startsWith('|'));
  const out = new Set<string>();
  for (const row of lines.slice(first, end).filter((l) => l.startsWith('| `'))) {
    const [groups, resources, verbs] = row.split('|').slice(1, 4).map((cell) => [...cell.matchAll(/`([^`]*)`/g)].map((m) => m[1]!));
    const group = groups![0] === '""' ? '' : groups![0]!;
    for (const r of resources!) for (const v of verbs!) out.add(`${group} ${r} ${v}`);
  }
  return out;
}

function ruleTriples(rules: Obj[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) for (const g of r['apiGroups']) for (const res of r['resources']) for (const v of r['verbs']) out.add(`${g} ${res} ${v}`);
  return out;
}

t.test('control plane RBAC: exactly the table of docs/kubernetes.md, nothing wider', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'kubernetes.md'), 'utf8');
  const clusterWide = docsTable(doc, /^Cluster-wide/m);
  const namespaced = docsTable(doc, /^In the control plane's own namespace/m);
  t.ok(clusterWide.has('authentication.k8s.io tokenreviews create') && clusterWide.has(' pods watch') && namespaced.has('coordination.k8s.io leases create'), `the docs tables parsed (${clusterWide.size} cluster-wide, ${namespaced.size} namespaced triples)`);
  const r = render('control-plane');
  const cr = one(r, 'ClusterRole');
  t.same([...ruleTriples(cr['rules'])].sort(), [...clusterWide].sort(), 'ClusterRole = the cluster-wide table');
  const role = one(r, 'Role');
  t.same([...ruleTriples(role['rules'])].sort(), [...namespaced].sort(), 'Role = the namespaced table');
  t.equal(role['metadata']['namespace'], NS);
  for (const rule of [...cr['rules'], ...role['rules']] as Obj[]) {
    for (const f of ['apiGroups', 'resources', 'verbs']) t.notOk((rule[f] as string[]).includes('*'), `no wildcard in ${f}`);
    t.notOk((rule['resources'] as string[]).includes('secrets'), 'no Secrets');
    t.notOk((rule['verbs'] as string[]).some((v) => v === 'delete' || v === 'deletecollection' || v === 'update' && rule['resources'].some((x: string) => x !== 'leases')), 'no deletes; update only the Lease');
  }
  const getUpdate = (role['rules'] as Obj[]).filter((x) => x['verbs'].includes('get') || x['verbs'].includes('update'));
  t.ok(getUpdate.every((x) => Array.isArray(x['resourceNames']) && x['resourceNames'].length === 1), 'get and update are limited to the one Lease');
  const crb = one(r, 'ClusterRoleBinding');
  t.equal(crb['roleRef']['name'], cr['metadata']['name']);
  t.same(crb['subjects'], [{ kind: 'ServiceAccount', name: 'istiod', namespace: NS }]);
  t.equal(one(r, 'RoleBinding')['roleRef']['name'], role['metadata']['name']);
  t.equal(podSpec(one(r, 'Deployment'))['serviceAccountName'], 'istiod');
});

// ---- ztunnel ------------------------------------------------------------------------------------

t.test('ztunnel: host network, no capabilities, readiness per pod, surge update, drain inside the grace period', async (t) => {
  const r = render('ztunnel');
  const ds = one(r, 'DaemonSet');
  const spec = podSpec(ds);
  const c = container(ds);
  t.equal(spec['hostNetwork'], true);
  t.equal(spec['dnsPolicy'], 'ClusterFirstWithHostNet');
  t.same(c['securityContext']['capabilities'], { drop: ['ALL'] }, 'drops every capability and adds none');
  t.equal(c['securityContext']['privileged'], false);
  t.equal(c['securityContext']['allowPrivilegeEscalation'], false);
  t.equal(spec['securityContext']['runAsNonRoot'], true);
  t.notOk(c['ports'], 'no ports: on the host network each would be a hostPort and block the surge pod');
  // ztunnel serves /healthz/ready on 15021 (READINESS_PORT left at its default), but on the host
  // network both ztunnels of a surge answer there: the kubelet probes the pod's own ready file.
  t.notOk(envValue(c, 'READINESS_PORT'), 'readiness stays on 15021');
  t.same(c['readinessProbe']['exec'], { command: ['cat', envValue(c, 'READY_FILE')] }, 'the probe reads the file ztunnel keeps while ready');
  const mount = (c['volumeMounts'] as Obj[]).find((m) => String(envValue(c, 'READY_FILE')).startsWith(`${m['mountPath']}/`));
  t.ok(mount && (spec['volumes'] as Obj[]).find((v) => v['name'] === mount['name'])?.['emptyDir'], "the ready file lives in the pod's own emptyDir");
  t.same(ds['spec']['updateStrategy'], { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } }, 'surge (1.22+; the 1.20 strategy is tested above)');
  const drain = Number(envValue(c, 'DRAIN_TIMEOUT_SECONDS'));
  t.ok(spec['terminationGracePeriodSeconds'] > drain, `terminationGracePeriodSeconds ${spec['terminationGracePeriodSeconds']} > drain ${drain}`);
  t.throws(() => render('ztunnel', ['drainTimeoutSeconds=30']), /terminationGracePeriodSeconds \(30\) must be larger than drainTimeoutSeconds \(30\)/);
  t.equal(envValue(c, 'CONTROL_PLANE_ADDRESS'), 'istiod.istio-system.svc:15012');
  t.same(envOf(c).get('ZTUNNEL_ADDRESS')?.['valueFrom'], { fieldRef: { fieldPath: 'status.hostIP' } }, 'binds the node address the agent redirects to');
  t.notOk(envOf(c).has('SOCKS5_PORT'), 'SOCKS5 is off by default');
  t.equal(envValue(c, 'REDIRECTION_CHECK'), 'off', 'no bpftool check without capabilities');
  t.equal(spec['automountServiceAccountToken'], false);
  t.equal(one(r, 'ServiceAccount')['automountServiceAccountToken'], false);
  t.same(of(r, 'ClusterRole').concat(of(r, 'Role')), [], 'ztunnel gets no RBAC');
  const tol = spec['tolerations'] as Obj[];
  t.ok(tol.some((x) => x['operator'] === 'Exists' && x['effect'] === 'NoSchedule' && !x['key']), 'tolerates every NoSchedule taint');
  t.ok(tol.some((x) => x['operator'] === 'Exists' && x['effect'] === 'NoExecute' && !x['key']), 'tolerates every NoExecute taint');
  const custom = container(one(render('ztunnel', ['socks5Port=15080', 'controlPlane.address=cp.mesh.example:15012']), 'DaemonSet'));
  t.equal(envValue(custom, 'SOCKS5_PORT'), '15080');
  t.equal(envValue(custom, 'CONTROL_PLANE_ADDRESS'), 'cp.mesh.example:15012');
  t.equal(container(one(render('ztunnel', ['image.hub=registry.example/mesh', 'image.tag=0.1.1']), 'DaemonSet'))['image'], 'registry.example/mesh/ambient-mesh:0.1.1');
  t.equal(c['image'], 'ambient-mesh:0.1.0', 'the default image is the chart appVersion');
});

// ---- cni node agent -----------------------------------------------------------------------------

t.test('cni: privileged, host paths, every node, the agent environment', async (t) => {
  const ds = one(render('cni'), 'DaemonSet');
  const spec = podSpec(ds);
  const c = container(ds);
  t.equal(c['securityContext']['privileged'], true);
  t.equal(spec['hostNetwork'], true);
  t.equal(spec['hostPID'], true, 'ZTUNNEL_CGROUP=auto and pods started before the agent are found through /proc');
  t.same(spec['tolerations'], [{ operator: 'Exists' }], 'tolerates every taint: a node without the agent starts pods that fail CNI ADD');
  const hostPaths = Object.fromEntries((spec['volumes'] as Obj[]).filter((v) => v['hostPath']).map((v) => [v['name'], v['hostPath']['path']]));
  t.same(hostPaths, { 'cni-bin-dir': '/opt/cni/bin', 'cni-net-dir': '/etc/cni/net.d', cgroup: '/sys/fs/cgroup', bpffs: '/sys/fs/bpf', 'ambient-run': '/var/run/ambient' });
  const mounts = Object.fromEntries((c['volumeMounts'] as Obj[]).map((m) => [m['name'], m]));
  t.equal(mounts['bpffs']['mountPropagation'], 'Bidirectional', 'pins outlive the container');
  t.equal(mounts['ambient-run']['mountPath'], '/var/run/ambient', 'same path as on the host: the plugin dials it');
  t.equal(envValue(c, 'AGENT_SOCKET')!.startsWith('/var/run/ambient/'), true);
  t.equal(envValue(c, 'CNI_BIN_DIR'), mounts['cni-bin-dir']['mountPath']);
  t.equal(envValue(c, 'CNI_CONF_DIR'), mounts['cni-net-dir']['mountPath']);
  t.equal(envValue(c, 'CGROUP_ROOT'), mounts['cgroup']['mountPath']);
  t.equal(envValue(c, 'CGROUP_DRIVER'), 'systemd');
  t.equal(envValue(c, 'KUBELET_CGROUP_ROOT'), 'auto', "kubelet's cgroup root derived from the agent's own cgroup");
  t.equal(envValue(container(one(render('cni', ['cgroup.kubeletRoot=/kubelet.slice']), 'DaemonSet')), 'KUBELET_CGROUP_ROOT'), '/kubelet.slice');
  t.throws(() => render('cni', ['cgroup.kubeletRoot=kubepods']), HelmValuesSchemaError, 'a relative cgroup path is refused');
  // Hybrid hosts: the v1 hierarchies, read-only, where the agent finds a pod's cgroup at CNI ADD.
  const hybrid = one(render('cni', ['cgroup.hostRoot=/sys/fs/cgroup/unified', 'cgroup.v1Root=/sys/fs/cgroup']), 'DaemonSet');
  const v1Volume = (podSpec(hybrid)['volumes'] as Obj[]).find((v) => v['name'] === 'cgroup-v1');
  t.same(v1Volume?.['hostPath'], { path: '/sys/fs/cgroup', type: 'Directory' }, 'cgroup.v1Root: the host directory of the v1 hierarchies');
  const v1Mount = (container(hybrid)['volumeMounts'] as Obj[]).find((m) => m['name'] === 'cgroup-v1');
  t.same(v1Mount, { name: 'cgroup-v1', mountPath: '/host/cgroup-v1', readOnly: true }, 'mounted read-only, apart from the cgroup2 mount');
  t.equal(envValue(container(hybrid), 'CGROUP_ROOT'), '/sys/fs/cgroup/unified');
  t.notOk((spec['volumes'] as Obj[]).some((v) => v['name'] === 'cgroup-v1'), 'no v1 mount by default (cgroup v2 hosts)');
  t.throws(() => render('cni', ['cgroup.v1Root=sys/fs/cgroup']), HelmValuesSchemaError, 'a relative v1 root is refused');
  t.equal(envValue(c, 'UNINSTALL_ON_EXIT'), 'cni');
  t.equal(envValue(c, 'EXEMPT_NAMESPACES'), 'istio-system,kube-system', 'the release namespace is always exempt');
  t.equal(envValue(c, 'CONTROL_PLANE_ADDRESS'), 'istiod.istio-system.svc:15012');
  t.same(c['readinessProbe']['httpGet'], { host: '127.0.0.1', path: '/healthz/ready', port: 15025 });
  t.equal(envValue(c, 'STATE_PORT'), '15025');
  t.equal(spec['priorityClassName'], 'system-node-critical');

  t.equal(envValue(container(one(render('cni', ['cgroup.driver=cgroupfs']), 'DaemonSet')), 'CGROUP_DRIVER'), 'cgroupfs');
  t.equal(envValue(container(one(render('cni', ['cni.uninstallOnExit=all']), 'DaemonSet')), 'UNINSTALL_ON_EXIT'), 'all');
  const noInstall = one(render('cni', ['cni.install=false']), 'DaemonSet');
  t.notOk(envOf(container(noInstall)).has('CNI_BIN_DIR') || envOf(container(noInstall)).has('CNI_CONF_DIR'), 'install=false sets neither CNI dir (the agent wants both or none)');
  t.notOk((podSpec(noInstall)['volumes'] as Obj[]).some((v) => v['name'].startsWith('cni-')), 'and mounts neither');
  // The node's CNI directories are values (k3s and others keep them elsewhere); the container
  // paths stay fixed, so the agent's CNI_BIN_DIR/CNI_CONF_DIR do not change with them.
  const k3s = one(render('cni', ['cni.binDir=/var/lib/rancher/k3s/data/current/bin', 'cni.confDir=/var/lib/rancher/k3s/agent/etc/cni/net.d']), 'DaemonSet');
  const k3sPaths = Object.fromEntries((podSpec(k3s)['volumes'] as Obj[]).filter((v) => v['name'].startsWith('cni-')).map((v) => [v['name'], v['hostPath']['path']]));
  t.same(k3sPaths, { 'cni-bin-dir': '/var/lib/rancher/k3s/data/current/bin', 'cni-net-dir': '/var/lib/rancher/k3s/agent/etc/cni/net.d' }, 'cni.binDir and cni.confDir are the host paths');
  t.equal(envValue(container(k3s), 'CNI_BIN_DIR'), envValue(c, 'CNI_BIN_DIR'));
  const excl = container(one(render('cni', ['redirect.excludeCidrs[0]=10.96.0.1/32', 'redirect.excludePorts[0]=6443']), 'DaemonSet'));
  t.equal(envValue(excl, 'EXCLUDE_CIDRS'), '10.96.0.1/32');
  t.equal(envValue(excl, 'EXCLUDE_PORTS'), '6443');
});

// ---- values.schema.json -------------------------------------------------------------------------

t.test('values.schema.json refuses bad values with a message naming the value', async (t) => {
  const refused = (chart: ChartName, set: string[], message: RegExp) => {
    const err = t.throws(() => render(chart, set), HelmValuesSchemaError, `${chart} ${set.join(' ')} is refused`) as unknown as HelmValuesSchemaError;
    t.match(err.message, message, `${chart} ${set.join(' ')}: ${err.message.split('\n')[1] ?? err.message}`);
  };
  refused('control-plane', ['replicas=2'], /replicas/);
  refused('control-plane', ['replicaCount=0'], /replicaCount/);
  refused('control-plane', ['podDisruptionBudget.minAvailable=half'], /minAvailable/);
  refused('control-plane', ['logLevel=verbose'], /logLevel/);
  refused('ztunnel', ['socks5Port=70000'], /socks5Port/);
  refused('ztunnel', ['controlPlane.address=istiod'], /controlPlane.*address/);
  refused('ztunnel', ['updateStrategy.maxSurge=-1'], /maxSurge/);
  refused('cni', ['cgroup.driver=cgroupv1'], /driver/);
  refused('cni', ['cni.uninstallOnExit=always'], /uninstallOnExit/);
  refused('cni', ['cni.binDir=opt/cni/bin'], /binDir/);
  refused('base', ['crds.install=false'], /crds/);
  for (const chart of CHARTS) {
    const schema = JSON.parse(readFileSync(join(ROOT, 'charts', chart, 'values.schema.json'), 'utf8')) as Obj;
    t.equal(schema['additionalProperties'], false, `${chart}: no unknown top-level keys`);
    const open: string[] = [];
    const walk = (s: Obj, path: string) => {
      if (s['type'] === 'object' && s['properties'] && s['additionalProperties'] !== false) open.push(path);
      for (const [k, v] of Object.entries((s['properties'] ?? {}) as Obj)) walk(v, `${path}.${k}`);
      for (const [k, v] of Object.entries((s['definitions'] ?? {}) as Obj)) walk(v, `#/definitions/${k}`);
    };
    walk(schema, chart);
    t.same(open, [], `${chart}: every object with named properties refuses unknown keys`);
  }
});
