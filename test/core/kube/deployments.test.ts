import t from 'tap';
import * as yaml from 'js-yaml';
import type { DeploymentObject, ManifestObject } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { LAB_MAX_REPLICAS, MAX_POD_NAME, ownerReference, podName, podsForDeployment } from '../../../core/kube/deployments.js';
import { docs } from './documents.js';

t.test('podsForDeployment gives the pods the lab schedules', async (t) => {
  const d = parseManifests(
    yaml.dump({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' }, spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'echo' }] } } } }),
    'd.yaml',
  ).objects[0] as DeploymentObject;
  const pods = podsForDeployment(d);
  t.equal(pods.length, 2);
  const parsed = parseManifests(docs(...pods), 'pods').objects as ManifestObject[];
  t.same(parsed.map((p) => p.kind), ['Pod', 'Pod']);
  t.match(parsed[0]!.meta.name, /^web-[0-9a-f]{8}-0$/);
  t.same(parsed[0]!.meta.labels, { app: 'web' });
});

t.test('ownerReference carries the uid the upstream schema requires', async (t) => {
  const d = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' } };
  const ref = ownerReference(d);
  t.match(ref, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', controller: true, uid: /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/ });
  t.equal(ownerReference(d).uid, ref.uid, 'the same owner gets the same uid');
  t.not(ownerReference({ ...d, metadata: { name: 'web', namespace: 'other' } }).uid, ref.uid, 'another namespace, another uid');
  t.equal(ownerReference({ ...d, metadata: { ...d.metadata, uid: 'a-b-c' } }).uid, 'a-b-c', "an owner read from an API server keeps its uid");
});

t.test('issue 19: podsForDeployment never makes more than the lab\'s bound, whatever object it is given', async (t) => {
  const d = parseManifests(
    yaml.dump({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' }, spec: { replicas: LAB_MAX_REPLICAS, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'echo' }] } } } }),
    'd.yaml',
  ).objects[0] as DeploymentObject;
  t.equal(podsForDeployment(d).length, LAB_MAX_REPLICAS, 'the bound itself is made');
  // parseObject refuses more (parse.test.ts); an object built by hand with 2^31 - 1 or 1e300
  // replicas still gives the bound, not a RangeError or 2^31 pods.
  t.equal(podsForDeployment({ ...d, replicas: 2147483647 }).length, LAB_MAX_REPLICAS);
  t.equal(podsForDeployment({ ...d, replicas: 1e300 }).length, LAB_MAX_REPLICAS);
});

t.test('issue 19: a Deployment named with 253 characters makes valid pods, named at most 63 characters as Kubernetes names them', async (t) => {
  // A DNS-1123 subdomain of the full 253 characters: labels of 63, 63, 63 and 61, and the dots.
  const long = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.');
  t.equal(long.length, 253);
  const deployment = (name: string) =>
    ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: 'apps' }, spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'echo' }] } } } });
  const parsed = parseManifests(docs(deployment(long), deployment(`${'a'.repeat(63)}.other`)), 'd.yaml');
  t.same(parsed.problems, [], 'both Deployments are valid');
  const [d1, d2] = parsed.objects as DeploymentObject[];
  const pods = [...podsForDeployment(d1!), ...podsForDeployment(d2!)];
  const applied = parseManifests(docs(...pods), 'pods');
  t.same(applied.problems.filter((p) => p.severity === 'error'), [], 'every pod is a valid Pod (its name was 264 characters, over the 253 a pod name may have)');
  const names = applied.objects.map((p) => p.meta.name);
  t.equal(names.length, 6);
  t.ok(names.every((n) => n.length <= MAX_POD_NAME), `every name is at most ${MAX_POD_NAME} characters: ${names.map((n) => n.length).join(', ')}`);
  t.equal(new Set(names).size, 6, 'no two pods share a name, though both Deployment names start with the same 63 characters and templates');
  t.match(names[0], /^a{53}[0-9a-f]{8}-0$/, 'the Deployment name cut as Kubernetes cuts a generateName base, then hash and index');
  t.equal(podName('web', 'd7cef3ce', 0), 'web-d7cef3ce-0', 'a name that fits is unchanged');
  t.equal(podName('w'.repeat(51), 'd7cef3ce', 99).length, 63, 'the longest name that is not cut');
  t.equal(podName('w'.repeat(51), 'd7cef3ce', 99), `${'w'.repeat(51)}-d7cef3ce-99`);
  t.match(podName('w'.repeat(52), 'd7cef3ce', 99), /^w{52}[0-9a-f]{8}-99$/, 'one more character and the base is cut');
});

