import t from 'tap';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../../../core/telemetry/log.js';
import { FileDesiredStateSource, parseDesiredState } from '../../../cni-plugin/agent/desired-file.js';
import type { DesiredState } from '../../../cni-plugin/agent/desired-state.js';
import { until } from '../../helpers/until.js';

const GOOD = `
namespaces:
  - name: apps
    labels: {istio.io/dataplane-mode: ambient}
  - name: legacy
pods:
  - namespace: apps
    name: web-0
    uid: 4d0a7f0e-8a5c-4c1e-9d36-2b1f6e0a9c11
    node: node-a
    labels: {app: web}
    cgroup: kubepods.slice/kubepods-pod4d0a7f0e_8a5c_4c1e_9d36_2b1f6e0a9c11.slice
    ips: [10.251.1.7]
peerAuthentications:
  - name: strict
    namespace: apps
    spec: {mtls: {mode: STRICT}}
`;

t.test('parses namespaces, pods and peer authentications into frozen internal types', async (t) => {
  const s = parseDesiredState(GOOD, 'desired.yaml');
  t.same(s.namespaces.get('apps')?.labels, { 'istio.io/dataplane-mode': 'ambient' });
  t.same(s.namespaces.get('legacy')?.labels, {});
  t.match(s.pods, [{ namespace: 'apps', name: 'web-0', node: 'node-a', ips: ['10.251.1.7'], labels: { app: 'web' } }]);
  t.match(s.peerAuthentications, [{ namespace: 'apps', scope: 'namespace', mode: 'STRICT' }], "core's parser: the same meaning as ztunnel's");
  t.ok(Object.isFrozen(s.pods[0]));
  t.throws(() => (s.namespaces as Map<string, unknown>).set('x', {}), /immutable/);
});

t.test('every problem with its path', async (t) => {
  const bad = `
namespaces:
  - {name: Apps, lables: {}}
  - {name: legacy}
  - {name: legacy}
pods:
  - {namespace: apps, labels: {version: 1}, ips: [10.0.0.300]}
peerAuthentications:
  - {name: s, namespace: apps, spec: {mtls: {mode: STRIC}}}
nodes: []
`;
  const err = (() => {
    try {
      parseDesiredState(bad, 'desired.yaml');
    } catch (e) {
      return e as Error & { problems: string[] };
    }
  })();
  t.match(err?.problems, [
    /nodes: unknown key/,
    /namespaces\[0\]\.lables: unknown key; did you mean "labels"\?/,
    /namespaces\[0\]\.name: "Apps" is not a Kubernetes name/,
    /namespaces\[2\]\.name: duplicate namespace "legacy"; first used at namespaces\[1\]\.name/,
    /pods\[0\]\.name: required field is missing/,
    /pods\[0\]\.labels\.version: expected a string value, got 1 \(quote it: "1"\)/,
    /pods\[0\]\.ips\[0\]: "10.0.0.300" is not an IP address/,
    /peerAuthentications\[0\]\.spec\.mtls\.mode: "STRIC" is not allowed/,
  ]);
  t.throws(() => parseDesiredState('', 'desired.yaml'), { message: /the file is empty/ }, 'an empty file is refused, not read as "nothing is ambient"');
  t.throws(() => parseDesiredState('namespaces: [', 'desired.yaml'), { message: /yaml syntax error at line/ });
});

t.test('the file source delivers edits, and keeps the last good state on a bad one', async (t) => {
  const dir = t.testdir({ 'desired.yaml': GOOD });
  const path = join(dir, 'desired.yaml');
  const source = new FileDesiredStateSource({ path, logger: silentLogger, debounceMs: 10 });
  t.teardown(() => source.close());
  const seen: DesiredState[] = [];
  await source.start((s) => seen.push(s));
  t.equal(seen.length, 1);
  t.equal(source.describe, `file:${path}`);

  // As editors and ConfigMap mounts do: a new file renamed over the old one.
  await writeFile(`${path}.new`, GOOD.replace('name: legacy', 'name: legacy\n    labels: {istio.io/dataplane-mode: ambient}'));
  await rename(`${path}.new`, path);
  await until('the renamed file to be delivered', () => seen.length === 2);
  t.equal(seen[1]?.namespaces.get('legacy')?.labels['istio.io/dataplane-mode'], 'ambient');

  await writeFile(path, 'namespaces: [{name: BAD}]');
  await until('the bad file to be rejected', () => source.lastError !== undefined);
  t.match(source.lastError?.message, /not a Kubernetes name/);
  t.equal(seen.length, 2, 'a bad edit is not delivered');
  await writeFile(path, GOOD);
  await until('the fixed file to be delivered', () => seen.length === 3);
  t.notOk(source.lastError);
});

t.test('a missing file fails the start', async (t) => {
  const source = new FileDesiredStateSource({ path: join(t.testdir(), 'missing.yaml'), logger: silentLogger });
  await t.rejects(source.start(() => {}), { message: /cannot read the file \(ENOENT.*check DESIRED_STATE_FILE/ });
});
