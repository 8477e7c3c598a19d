/**
 * What an object source keeps of hostile objects (issue 19, found by hostile-stream.test.ts's
 * measurements): at most MAX_PROBLEMS_PER_OBJECT problems per object plus one counting the rest,
 * and no spread of a file's objects or problems into a call. Before: one file of 130,000 refused
 * documents made every reload of the manifests directory throw `RangeError: Maximum call stack
 * size exceeded`, so no other file's change was applied while it existed; one AuthorizationPolicy
 * of 240,000 bad principals kept 240,000 problems (about 120 MB) for as long as it existed.
 * The file source on a real directory; the Kubernetes source against the kube-api-fixture (an
 * in-memory API server, not a cluster) at 127.0.219.101.
 */
import t from 'tap';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeConfigApi } from '../../core/kube/api.js';
import type { ObjectProblem } from '../../core/kube/objects.js';
import { ManifestStore } from '../../core/kube/store.js';
import { silentLogger } from '../../core/telemetry/log.js';
import { limitProblems, ManifestDirSource, MAX_PROBLEMS_PER_OBJECT } from '../../control-plane/manifest-source.js';
import { KubernetesSource } from '../../control-plane/kubernetes/source.js';
import { resourceOf } from '../../control-plane/kubernetes/kinds.js';
import { KubeApiFixture } from '../helpers/kube-api-fixture.js';
import { until } from '../helpers/until.js';
import { manifestYaml, namespace, pod } from './helpers.js';

/** An AuthorizationPolicy in `default` with `n` principals that are not principals (a NUL each). */
const badPrincipals = (name: string, n: number) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'default' },
  spec: { rules: [{ from: [{ source: { principals: Array.from({ length: n }, (_, i) => `p${i}\u0000`) } }] }] },
});

t.test('limitProblems keeps the first problems of each object and counts the rest in one', async (t) => {
  const of = (object: string, n: number, source = 'a.yaml#1'): ObjectProblem[] =>
    Array.from({ length: n }, (_, i) => ({ object, field: `spec.x[${i}]`, message: 'bad', severity: 'error' as const, source }));
  const out = limitProblems([...of('Pod default/a', 120), ...of('Pod default/b', 3, 'a.yaml#2'), ...of('Pod default/a', 2, 'b.yaml#1')]);
  const a = out.filter((p) => p.object === 'Pod default/a' && p.source === 'a.yaml#1');
  t.equal(a.length, MAX_PROBLEMS_PER_OBJECT + 1, `an object with 120 problems keeps ${MAX_PROBLEMS_PER_OBJECT}, plus one`);
  t.same(a.slice(0, MAX_PROBLEMS_PER_OBJECT).map((p) => p.field), Array.from({ length: MAX_PROBLEMS_PER_OBJECT }, (_, i) => `spec.x[${i}]`), 'the first ones, in order');
  t.match(a.at(-1), { field: '', severity: 'error', message: `${120 - MAX_PROBLEMS_PER_OBJECT} more problems of this object are not listed (the first ${MAX_PROBLEMS_PER_OBJECT} are)` }, 'the last says how many more');
  t.equal(out.filter((p) => p.object === 'Pod default/b').length, 3, 'another object keeps all of its few');
  t.equal(out.filter((p) => p.source === 'b.yaml#1').length, 2, 'the same name from another document is another object');
});

t.test('the file source: a file of 130,000 refused documents does not stop the other files, and a policy of 1,000 bad principals keeps 51 problems', async (t) => {
  const dir = t.testdir();
  const good = join(dir, 'good.yaml');
  await writeFile(good, manifestYaml([namespace('default'), pod('a', { node: 'node-a', ip: '10.219.1.1' })]));
  // 130,000 documents that are not objects, one problem each (each its own object): more than a
  // call takes as arguments.
  await writeFile(join(dir, 'many.yaml'), '---\n1\n'.repeat(130_000));
  await writeFile(join(dir, 'policy.yaml'), manifestYaml([badPrincipals('many-bad', 1000)]));
  const store = new ManifestStore();
  const source = new ManifestDirSource({ path: dir, rootNamespace: 'istio-system', logger: silentLogger, debounceMs: 10 });
  t.teardown(() => source.close());
  await source.start(store);
  t.same(store.sortedObjects().map((o) => `${o.kind}/${o.meta.name}`).sort(), ['Namespace/default', 'Pod/a'], 'the good file is loaded');
  t.equal(source.problems().filter((p) => p.source?.startsWith('many.yaml#')).length, 130_000, 'each refused document is a problem');
  const policy = source.problems().filter((p) => p.source === 'policy.yaml#1');
  t.equal(policy.length, MAX_PROBLEMS_PER_OBJECT + 1, `the policy's problems: the first ${MAX_PROBLEMS_PER_OBJECT} and one counting the rest`);
  t.match(policy[0]!.message, /is not a principal/, 'the first say what is wrong');
  t.match(policy.at(-1)!.message, `${1000 - MAX_PROBLEMS_PER_OBJECT} more problems of this object are not listed`, 'the last counts the others');

  await writeFile(good, manifestYaml([namespace('default'), pod('a', { node: 'node-a', ip: '10.219.1.1' }), pod('b', { node: 'node-a', ip: '10.219.1.2' })]));
  await source.reload(new Set([good]));
  t.ok(store.sortedObjects().some((o) => o.kind === 'Pod' && o.meta.name === 'b'), 'a change to the good file is applied while the big one exists');
});

t.test('the Kubernetes source keeps 51 problems of an object with 1,000', async (t) => {
  const api = await KubeApiFixture.start({ host: '127.0.219.101' });
  t.teardown(() => api.close());
  const kubeconfig = join(t.testdir(), 'kubeconfig');
  await api.writeKubeconfig(kubeconfig);
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  api.apply(namespace('default'));
  api.apply(badPrincipals('many-bad', 1000));
  const source = new KubernetesSource({
    api: new KubeConfigApi(kc),
    rootNamespace: 'istio-system',
    logger: silentLogger,
    ztunnel: { namespace: 'istio-system', serviceAccount: 'ztunnel' },
    resources: ['Namespace', 'AuthorizationPolicy'].map((k) => resourceOf(k)!),
  });
  t.teardown(() => source.close());
  await source.start(new ManifestStore());
  const mine = await until('the policy to be read', () => {
    const ps = source.problems().filter((p) => p.object === 'AuthorizationPolicy default/many-bad');
    return ps.length > 0 ? ps : undefined;
  });
  t.equal(mine.length, MAX_PROBLEMS_PER_OBJECT + 1, `${MAX_PROBLEMS_PER_OBJECT} problems and one counting the rest`);
  t.match(mine.at(-1)!.message, `${1000 - MAX_PROBLEMS_PER_OBJECT} more problems of this object are not listed`, 'the last counts the others');
});
