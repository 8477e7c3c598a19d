/**
 * Issue 19 on the real cluster: hostile objects sent to a real Kubernetes 1.20 API server
 * (cluster/, docs/real-cluster.md) while the mesh serves the shop app, through the control plane's
 * Kubernetes source. What the API server (or kubectl) refuses by itself is recorded; what reaches
 * the control plane must be a problem at its /debug/status, while ztunnel (a real discovery
 * client) keeps the shop's workloads and gets a good change made mid-stream, the control plane
 * never restarts, and its VmHWM stays under the target docs/control-plane.md states.
 *
 * Objects go in with `kubectl create --raw` (the bytes as written, no client-side decoding), except
 * the alias bomb, which only YAML carries (`kubectl create -f`). Istio's CRDs keep unknown fields
 * and have no list or string bounds, so hostile specs pass the API server there.
 *
 * Root only; its own cluster (tap runs test/cluster/ files one at a time), removed at the end even
 * on failure (AMC_KEEP=1 keeps it). With the image and Kubernetes cached: about 5 minutes, of which
 * the objects and the checks take one; the rest is the cluster starting and stopping.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CLUSTER, clusterEnv, readmeBlocks, ROOT, sh, until } from './real-cluster.js';
import { documentedMemoryTarget, parseProcStatus } from '../control-plane/helpers.js';
import { MAX_PROBLEMS_PER_OBJECT } from '../../control-plane/manifest-source.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root: it runs a real Kubernetes cluster (network and mount namespaces, cgroups, containerd)' : false;
t.setTimeout(40 * 60_000);

const MiB = 1024 * 1024;
/** Every hostile object carries it, so teardown finds them all. */
const LABEL = { 'issue19-hostile': 'yes' };

interface HostileObject {
  readonly what: string;
  readonly kind: string;
  readonly name: string;
  /** `raw`: the JSON bytes to the collection; `yaml`: text through `kubectl create -f`. */
  readonly raw?: Record<string, unknown>;
  readonly yaml?: string;
  readonly path: string;
}

const ns = 'shop';
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, namespace: ns, labels: LABEL, ...extra });
const podPath = `/api/v1/namespaces/${ns}/pods`;
const apPath = `/apis/security.istio.io/v1/namespaces/${ns}/authorizationpolicies`;
const routePath = `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes`;
const container = { name: 'main', image: 'localhost/ambient-mesh:0.1.0', imagePullPolicy: 'IfNotPresent', command: ['node', '-e', 'setInterval(() => {}, 1e9)'] };
const policy = (name: string, spec: Record<string, unknown>): HostileObject => ({
  what: '',
  kind: 'AuthorizationPolicy',
  name,
  path: apPath,
  raw: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: meta(name), spec },
});
const route = (name: string, rule: Record<string, unknown>): HostileObject => ({
  what: '',
  kind: 'HTTPRoute',
  name,
  path: routePath,
  raw: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: meta(name), spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }], rules: [rule] } },
});
const with_ = (o: HostileObject, what: string): HostileObject => ({ ...o, what });

/** A marker the JSON text replaces by an array 5,000 deep (`[[[...["x"]...]]]`), in a field Istio's CRD keeps as it is. */
const DEEP = '__DEEP__';
const jsonOf = (o: Record<string, unknown>) => JSON.stringify(o).replace(`"${DEEP}"`, `${'['.repeat(5_000)}"x"${']'.repeat(5_000)}`);

const HOSTILE: readonly HostileObject[] = [
  {
    what: 'alias bomb (YAML, kubectl create -f)',
    kind: 'Namespace',
    name: 'bomb',
    path: '',
    yaml:
      `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bomb\n  labels: {issue19-hostile: "yes"}\n  annotations:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n` +
      ['b', 'c', 'd', 'e', 'f', 'g', 'h'].map((k, i) => `    ${k}: &${k} [${Array(9).fill(`*${'abcdefg'[i]}`).join(', ')}]\n`).join(''),
  },
  { what: 'Pod with a 1.4 MiB annotation', kind: 'Pod', name: 'big-annotation', path: podPath, raw: { apiVersion: 'v1', kind: 'Pod', metadata: meta('big-annotation', { annotations: { note: 'x'.repeat(1.4 * MiB) } }), spec: { containers: [container] } } },
  { what: 'Pod with serviceAccount Bad_SA', kind: 'Pod', name: 'bad-sa', path: podPath, raw: { apiVersion: 'v1', kind: 'Pod', metadata: meta('bad-sa'), spec: { serviceAccount: 'Bad_SA', containers: [container] } } },
  { what: 'Pod with an ANSI escape in nodeName', kind: 'Pod', name: 'ansi-node', path: podPath, raw: { apiVersion: 'v1', kind: 'Pod', metadata: meta('ansi-node'), spec: { nodeName: 'node\u001b[31m-1', containers: [container] } } },
  with_(route('crlf-header', { filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: 'a\r\nx-injected: 1' }] } }] }), 'HTTPRoute with CR/LF in a header value'),
  with_(route('bad-regex', { matches: [{ path: { type: 'RegularExpression', value: '/admin)|(/x' } }] }), 'HTTPRoute with the unbalanced regex /admin)|(/x'),
  with_(route('long-host', { filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'h'.repeat(MiB) } }] }), 'HTTPRoute with a 1 MiB redirect hostname'),
  with_(policy('stars', { targetRefs: [{ group: '', kind: 'Service', name: 'echo' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/{**}{**}{**}{**}{**}{**}x'] } }] }] }), 'AuthorizationPolicy with a {**}{**}... path'),
  with_(policy('long-list', { rules: [{ from: [{ source: { principals: Array.from({ length: 10_001 }, (_, i) => `cluster.local/ns/shop/sa/s${i}`) } }] }] }), 'AuthorizationPolicy with 10,001 principals'),
  with_(policy('nul-principal', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client\u0000'] } }] }] }), 'AuthorizationPolicy with a NUL in a principal'),
  with_(policy('big-principal', { rules: [{ from: [{ source: { principals: ['p'.repeat(1.4 * MiB)] } }] }] }), 'AuthorizationPolicy with a 1.4 MiB principal'),
  with_(policy('deep', { rules: [{ from: [{ source: { principals: ['x'] } }], when: [{ key: 'request.auth.claims[a]', values: [DEEP] }] }] }), 'AuthorizationPolicy nested 5,000 deep'),
  with_(policy('amplifier', { rules: Array.from({ length: 24 }, () => ({ from: [{ source: { principals: Array(10_000).fill('x') } }] })) }), 'AuthorizationPolicy of 240,000 bad principals (24 rules of 10,000; 0.9 MiB)'),
];

interface Problem {
  object: string;
  severity: string;
  message: string;
  text: string;
}

t.test('hostile objects through a real API server: the control plane keeps serving the shop and stays under its memory target', { skip: notRoot }, async (t) => {
  const target = documentedMemoryTarget();
  const work = mkdtempSync(join(tmpdir(), 'amc-hostile-'));
  let env: Record<string, string> | undefined;
  t.teardown(async () => {
    // Every object this test made, then the cluster (which would take them with it anyway).
    if (env) await sh(`kubectl delete ns bomb --ignore-not-found --wait=false; kubectl -n ${ns} delete pods,authorizationpolicies,httproutes -l issue19-hostile=yes --ignore-not-found --wait=false; kubectl -n ${ns} delete authorizationpolicy good-allow-client --ignore-not-found --wait=false`, { env, allowFail: true, timeoutMs: 60_000 });
    rmSync(work, { recursive: true, force: true });
    if (process.env['AMC_KEEP'] === '1') return;
    await sh(`${CLUSTER} down`, { timeoutMs: 180_000, allowFail: true });
  });

  const [clusterBlock, installBlock] = readmeBlocks('## Install in a cluster') as [string, string];
  const t0 = Date.now();
  const phases: string[] = [];
  const phase = (name: string) => phases.push(`${name} ${Math.round((Date.now() - t0) / 1000)} s`);
  await sh(clusterBlock, { timeoutMs: 35 * 60_000 });
  phase('cluster and image');
  env = await clusterEnv();
  const run = (script: string, timeoutMs = 180_000) => sh(script, { env: env!, timeoutMs });
  const kubectl = async (args: string) => (await run(`kubectl ${args}`)).stdout;
  const json = async <T>(args: string): Promise<T> => JSON.parse(await kubectl(`${args} -o json`)) as T;
  await run(installBlock, 600_000);
  phase('mesh installed');
  await kubectl(`apply -f ${join(ROOT, 'test', 'cluster', 'fixtures', 'shop.yaml')}`);
  await run(`kubectl -n ${ns} rollout status deployment/echo-v1 deployment/echo-v2 deployment/client --timeout=180s`, 200_000);

  interface CpPod {
    metadata: { name: string };
    status: { containerStatuses?: { restartCount: number }[] };
  }
  const cpPods = async () => (await json<{ items: CpPod[] }>('-n istio-system get pods -l app=istiod')).items;
  const [leader] = await cpPods();
  const exec = (pod: string, script: string) => kubectl(`-n istio-system exec ${pod} -- node -e ${shellQuote(script)}`);
  const problems = async (): Promise<Problem[]> => {
    const out = await exec(leader!.metadata.name, "fetch('http://127.0.0.1:15000/debug/status').then((r) => r.text()).then((x) => process.stdout.write(x))");
    return (JSON.parse(out) as { problems: Problem[] }).problems;
  };
  const memory = async () => {
    const all = await cpPods();
    return Promise.all(all.map(async (p) => ({ pod: p.metadata.name, ...parseProcStatus(await kubectl(`-n istio-system exec ${p.metadata.name} -- cat /proc/1/status`)) })));
  };
  interface ZtWorkload {
    name?: string;
    namespace?: string;
    protocol?: string;
  }
  const shopWorkloads = async (node: string) => {
    const list = JSON.parse((await run(`node dist/cli/ambientctl.js ztunnel-config workloads --node ${node} -o json`)).stdout) as ZtWorkload[];
    return list.filter((w) => w.namespace === ns && /^(client|echo-v1|echo-v2)-/.test(w.name ?? '')).sort((a, b) => (a.name! < b.name! ? -1 : 1));
  };

  const before = await until('node-1\'s ztunnel to list the three shop pods', async () => {
    const w = await shopWorkloads('node-1');
    return w.length === 3 ? w : undefined;
  }, 120_000, 1000);
  t.same(before.map((w) => w.protocol), ['TCP', 'TCP', 'TCP'], 'before: ztunnel (a discovery client) lists the three shop pods, not yet in the mesh (TCP)');
  const mem0 = await memory();
  t.comment(`control plane before: ${mem0.map((m) => `${m.pod} RSS ${(m.rssKiB / 1024).toFixed(1)} MiB, peak ${(m.hwmKiB / 1024).toFixed(1)} MiB`).join('; ')}`);

  phase('shop served');
  // The stream: each object sent, the good change made halfway through.
  const refused: string[] = [];
  const reached: HostileObject[] = [];
  for (const [i, h] of HOSTILE.entries()) {
    if (i === Math.floor(HOSTILE.length / 2)) {
      await kubectl(`label namespace ${ns} istio.io/dataplane-mode=ambient`);
      const good = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'good-allow-client', namespace: ns }, spec: { selector: { matchLabels: { app: 'echo' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] } };
      writeFileSync(join(work, 'good.json'), JSON.stringify(good));
      await kubectl(`create -f ${join(work, 'good.json')}`);
    }
    const file = join(work, `${i}.${h.yaml ? 'yaml' : 'json'}`);
    writeFileSync(file, h.yaml ?? jsonOf(h.raw!));
    const r = await sh(h.yaml ? `kubectl create -f ${file}` : `kubectl create --raw ${h.path} -f ${file}`, { env, allowFail: true, timeoutMs: 120_000 });
    if (r.code === 0) reached.push(h);
    else refused.push(`${h.what}: ${(r.stderr.trim().split('\n').find((l) => l.trim() !== '') ?? `exit ${r.code}`).slice(0, 240)}`);
  }
  t.comment(`refused before the mesh saw them (API server or kubectl):\n${refused.map((x) => `  - ${x}`).join('\n')}`);
  t.comment(`reached the control plane: ${reached.map((h) => `${h.kind} ${h.name}`).join(', ')}`);
  t.equal(refused.length + reached.length, HOSTILE.length, `${HOSTILE.length} hostile objects sent: ${refused.length} refused by Kubernetes, ${reached.length} stored`);
  t.ok(reached.some((h) => h.name === 'amplifier'), 'the 240,000-principal policy is stored (Istio\'s CRD has no bound), so the control plane must cope with it');

  const listed = await until('a problem at the control plane for each stored hostile object', async () => {
    const ps = await problems();
    return reached.every((h) => ps.some((p) => p.object === `${h.kind} ${ns}/${h.name}` && p.severity === 'error')) ? ps : undefined;
  }, 120_000, 1000);
  for (const h of reached) {
    const mine = listed.filter((p) => p.object === `${h.kind} ${ns}/${h.name}`);
    t.ok(mine.length >= 1 && mine.length <= MAX_PROBLEMS_PER_OBJECT + 1, `${h.what}: refused by the control plane (${mine.length} problem(s): ${mine[0]!.text.slice(0, 160)})`);
  }
  const amp = listed.filter((p) => p.object === `AuthorizationPolicy ${ns}/amplifier`);
  t.match(amp.at(-1)?.message ?? '', `${240_000 - MAX_PROBLEMS_PER_OBJECT} more problems of this object are not listed`, 'the 240,000 problems of one object are 50 listed and one counting the rest');

  const after = await until('node-1\'s ztunnel to hold the shop pods in the mesh (the good change made mid-stream)', async () => {
    const w = await shopWorkloads('node-1');
    return w.length === 3 && w.every((x) => x.protocol === 'HBONE') ? w : undefined;
  }, 120_000, 1000);
  t.same(after.map((w) => w.name), before.map((w) => w.name), 'ztunnel still lists the same three shop pods, now HBONE');
  const policies = await until('the good policy at the ztunnels', async () => {
    const out = (await run('node dist/cli/ambientctl.js ztunnel-config policies --node node-2 -o json')).stdout;
    const list = JSON.parse(out) as { name?: string; namespace?: string }[];
    return list.some((p) => p.name === 'good-allow-client') ? list : undefined;
  }, 120_000, 1000);
  t.notOk(policies.some((p) => reached.some((h) => h.name === p.name && p.namespace === ns)), `node-2's ztunnel holds the good policy and none of the hostile ones (${policies.map((p) => p.name).join(', ')})`);

  const pods = await cpPods();
  t.same(pods.flatMap((p) => (p.status.containerStatuses ?? []).map((c) => c.restartCount)), pods.map(() => 0), `the control plane never restarted (${pods.map((p) => p.metadata.name).join(', ')})`);
  const mem = await memory();
  phase('checked');
  t.comment(`elapsed: ${phases.join(', ')}`);
  for (const m of mem) t.ok(m.hwmKiB / 1024 < target.mib, `${m.pod}: peak RSS ${(m.hwmKiB / 1024).toFixed(1)} MiB (now ${(m.rssKiB / 1024).toFixed(1)}) under the ${target.mib} MiB target`);
});

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
