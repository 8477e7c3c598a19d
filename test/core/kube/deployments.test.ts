import t from 'tap';
import * as yaml from 'js-yaml';
import type { DeploymentObject, ManifestObject } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { podsForDeployment } from '../../../core/kube/deployments.js';
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
