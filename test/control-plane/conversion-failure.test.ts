/**
 * The control plane's safety net (issue 19, "no object takes a component down"): if converting the
 * store ever throws, which is a bug in the mesh since conversion turns bad objects into problems,
 * the control plane keeps serving the last published configuration, counts the failure, and the
 * next change converts the whole store again.
 *
 * The converter is replaced (tap's mockImport) by `ThrowingConverterMock`, the real converter that
 * throws while the store holds a pod named `boom`: no real object makes the converter throw once
 * the bugs issue 19 found are fixed, so the net can only be shown with a planted throw.
 * Control plane at 127.0.44.1.
 */
import t from 'tap';
import { join } from 'node:path';
import * as convert from '../../core/kube/convert.js';
import { loadConfig } from '../../control-plane/config.js';
import { silentLogger } from '../../core/telemetry/log.js';
import { until } from '../helpers/until.js';
import { cpEnv, makeFiles, manifestYaml, namespace, pod, writeAtomic } from './helpers.js';

class ThrowingConverterMock extends convert.ManifestConverter {
  override convert(inputs: Parameters<convert.ManifestConverter['convert']>[0]): ReturnType<convert.ManifestConverter['convert']> {
    if ([...inputs.objects].some((o) => o.kind === 'Pod' && o.meta.name === 'boom')) throw new Error('planted conversion bug');
    return super.convert(inputs);
  }
  override updatePods(pods: Parameters<convert.ManifestConverter['updatePods']>[0]): ReturnType<convert.ManifestConverter['updatePods']> {
    // Force the full conversion, where the planted bug lives.
    void pods;
    return undefined;
  }
}

const { ControlPlane } = await t.mockImport<typeof import('../../control-plane/control-plane.js')>('../../control-plane/control-plane.js', {
  '../../core/kube/convert.js': { ...convert, ManifestConverter: ThrowingConverterMock },
});

const base = '127.0.44';
const files = await makeFiles(t.testdir(), [{ name: 'node-a', address: `${base}.2` }]);
const apps = join(files.manifests, 'apps.yaml');
const good = [namespace('default', { 'istio.io/dataplane-mode': 'ambient' }), pod('client', { node: 'node-a', ip: `${base}.10` })];
await writeAtomic(apps, manifestYaml(good));
const cp = await ControlPlane.start({ config: loadConfig(cpEnv(files, `${base}.1`, { METRICS_PORT: '0', READINESS_PORT: '0', ADMIN_PORT: '0' })), logger: silentLogger });
t.teardown(() => cp.close());

const failures = async (): Promise<number> => (await cp.metrics.convertFailures.get()).values[0]?.value ?? 0;
const workloads = (): string[] => [...cp.state.entries('workloads').keys()].sort();

t.test('a conversion that throws leaves the last configuration served, and the next change recovers', async (t) => {
  await until('the first configuration', () => workloads().length === 1);
  const before = { version: cp.state.version, workloads: workloads() };

  await writeAtomic(apps, manifestYaml([...good, pod('boom', { node: 'node-a', ip: `${base}.11` })]));
  await until('the planted failure to be counted', async () => (await failures()) === 1);
  t.equal(cp.state.version, before.version, 'the published version did not move');
  t.same(workloads(), before.workloads, 'the last configuration is still what is served');

  await writeAtomic(apps, manifestYaml([...good, pod('server', { node: 'node-a', ip: `${base}.12` })]));
  await until('the next change to be published', () => workloads().length === 2);
  t.not(cp.state.version, before.version, 'a new version was published after the failure');
  t.equal(await failures(), 1, 'one failure counted, none since');
});
