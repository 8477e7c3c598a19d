import t from 'tap';
import * as yaml from 'js-yaml';
import type { DeploymentObject, ManifestObject } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { LAB_MAX_REPLICAS, ownerReference, podsForDeployment } from '../../../core/kube/deployments.js';
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
