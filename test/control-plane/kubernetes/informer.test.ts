import t, { type Test } from 'tap';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { silentLogger } from '../../../core/telemetry/log.js';
import { KubeConfigApi, type KubeObject } from '../../../core/kube/api.js';
import { Informer, type InformerTimings } from '../../../control-plane/kubernetes/informer.js';
import { KubeApiFixture } from '../../helpers/kube-api-fixture.js';
import { until } from '../../helpers/until.js';

// The list/watch loop against the kube-api-fixture (an in-memory API server, not a cluster):
// resume after a drop, 410 → re-list, bookmarks, backoff. Addresses: 127.0.11.20.
const api = await KubeApiFixture.start({ host: '127.0.11.20' });
t.teardown(() => api.close());
const kubeconfig = join(t.testdir(), 'kubeconfig');
await api.writeKubeconfig(kubeconfig);
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const kube = new KubeConfigApi(kc);

const cm = (name: string, data: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns1' }, data });
const ref = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns1', name });

/** An informer over config maps of one namespace, with a handler mirroring what it was told. */
function start(t: Test, timings: Partial<InformerTimings> = {}, path = '/api/v1/namespaces/ns1/configmaps') {
  const seen = new Map<string, KubeObject>();
  const calls: string[] = [];
  const name = (o: KubeObject) => String(o.metadata?.name);
  const informer = new Informer({
    api: kube,
    path,
    logger: silentLogger,
    random: () => 0.5,
    timings: { initialBackoffMs: 20, maxBackoffMs: 80, ...timings },
    handler: {
      replace: (items) => {
        calls.push(`replace ${items.map(name).join(',')}`);
        seen.clear();
        for (const o of items) seen.set(name(o), o);
      },
      upsert: (o) => (calls.push(`upsert ${name(o)}`), seen.set(name(o), o)),
      remove: (o) => (calls.push(`remove ${name(o)}`), seen.delete(name(o))),
    },
  });
  t.teardown(() => informer.close());
  return { informer, seen, calls };
}

t.test('lists once, then follows changes through the watch', async (t) => {
  api.apply(cm('a'));
  const lists = api.count({ verb: 'list', resource: 'configmaps' });
  const { informer, seen } = start(t);
  await informer.start();
  t.same([...seen.keys()], ['a'], 'the first list is handed over before start resolves');
  t.equal(api.count({ verb: 'list', resource: 'configmaps' }) - lists, 1);
  await until('the watch', () => api.openWatches({ resource: 'configmaps' }) === 1);
  const w = api.requests.filter((r) => r.verb === 'watch').at(-1)!;
  t.equal(w.query.allowWatchBookmarks, 'true', 'asks for bookmarks');
  t.equal(w.query.resourceVersion, informer.resourceVersion, "watches from the list's resourceVersion");
  api.apply(cm('b'));
  api.patch(ref('a'), { data: { k: 'v' } });
  await until('the changes', () => seen.has('b') && (seen.get('a') as { data?: Record<string, string> }).data?.k === 'v');
  api.remove(ref('b'));
  await until('the deletion', () => !seen.has('b'));
  t.equal(informer.resourceVersion, String(api.resourceVersion), 'each event advances the resourceVersion');
});

t.test('a dropped watch resumes from the last resourceVersion without a re-list', async (t) => {
  const { informer, seen, calls } = start(t, {}, '/api/v1/namespaces/ns2/configmaps');
  api.apply({ ...cm('x'), metadata: { name: 'x', namespace: 'ns2' } });
  await informer.start();
  await until('the watch', () => api.openWatches({ resource: 'configmaps', namespace: 'ns2' }) === 1 && informer.stats.watches === 1);
  api.apply({ ...cm('w'), metadata: { name: 'w', namespace: 'ns2' } });
  await until('an event on the first watch', () => seen.has('w'));
  const before = { lists: informer.stats.lists, watches: api.count({ verb: 'watch', resource: 'configmaps' }) };
  const rvAtDrop = informer.resourceVersion;
  // In one tick: the drop, then changes the informer cannot see until it is back.
  t.equal(api.dropWatches({ resource: 'configmaps' }) >= 1, true);
  api.apply({ ...cm('y'), metadata: { name: 'y', namespace: 'ns2' } });
  api.remove({ ...ref('x'), namespace: 'ns2' });
  await until('the changes made while disconnected', () => seen.has('y') && !seen.has('x'));
  t.equal(informer.stats.lists, before.lists, 'no re-list');
  t.equal(informer.stats.relists, 0);
  const resumed = api.requests.filter((r) => r.verb === 'watch' && r.path === '/api/v1/namespaces/ns2/configmaps').at(-1)!;
  t.equal(resumed.query.resourceVersion, rvAtDrop, 'the new watch starts at the resourceVersion held at the drop');
  t.same(calls, ['replace x', 'upsert w', 'upsert y', 'remove x'], 'the missed events replayed, nothing else');
  t.same(informer.stats.backoffs, [], 'a drop of a working watch is resumed at once');
});

t.test('410 Gone (a compacted resourceVersion) makes it list again, and the re-list removes what went meanwhile', async (t) => {
  const { informer, seen, calls } = start(t, {}, '/api/v1/namespaces/ns3/configmaps');
  const ns3 = (name: string) => ({ ...cm(name), metadata: { name, namespace: 'ns3' } });
  api.apply(ns3('keep'));
  api.apply(ns3('doomed'));
  await informer.start();
  await until('the watch', () => informer.stats.watches === 1 && api.openWatches({ resource: 'configmaps', namespace: 'ns3' }) === 1);
  api.dropWatches({ resource: 'configmaps' });
  api.remove({ ...ref('doomed'), namespace: 'ns3' });
  api.apply(ns3('new'));
  api.compact();
  await until('the re-list', () => informer.stats.relists === 1 && seen.has('new') && !seen.has('doomed'));
  t.equal(informer.stats.lists, 2, 'listed again once');
  t.same(calls, ['replace keep,doomed', 'replace keep,new']);
  await until('watching again', () => informer.stats.watches >= 3);
  api.apply(ns3('later'));
  await until('events after the re-list', () => seen.has('later'));
});

t.test('an HTTP 410 on the watch request also re-lists', async (t) => {
  const { informer } = start(t, {}, '/api/v1/namespaces/ns4/configmaps');
  await informer.start();
  await until('the watch', () => informer.stats.watches === 1 && api.openWatches({ resource: 'configmaps', namespace: 'ns4' }) === 1);
  api.apply({ ...cm('w'), metadata: { name: 'w', namespace: 'ns4' } });
  await until('an event: the watch was healthy', () => informer.stats.events === 1);
  api.failNext({ verb: 'watch', resource: 'configmaps', status: 410 });
  api.dropWatches({ resource: 'configmaps' });
  await until('the re-list', () => informer.stats.relists === 1 && informer.stats.lists === 2);
  t.same(informer.stats.backoffs, [], 'a 410 is not a failure: no backoff');
});

t.test('bookmarks advance the resourceVersion, so a resume skips what the bookmark covered', async (t) => {
  const { informer, calls } = start(t, {}, '/api/v1/namespaces/ns5/configmaps');
  await informer.start();
  // This informer's own watch: a watch of an earlier test may still be closing.
  await until('the watch', () => informer.stats.watches === 1 && api.openWatches({ resource: 'configmaps', namespace: 'ns5' }) === 1);
  // Writes elsewhere move the global resourceVersion; only a bookmark tells this watch about it.
  api.apply(cm('elsewhere'));
  const rv = String(api.resourceVersion);
  t.not(informer.resourceVersion, rv);
  t.ok(api.bookmark({ resource: 'configmaps' }) >= 1);
  await until('the bookmark', () => informer.resourceVersion === rv);
  t.equal(informer.stats.bookmarks, 1);
  api.dropWatches({ resource: 'configmaps' });
  await until('the resumed watch', () => informer.stats.watches === 2);
  const resumed = api.requests.filter((r) => r.verb === 'watch' && r.path === '/api/v1/namespaces/ns5/configmaps').at(-1)!;
  t.equal(resumed.query.resourceVersion, rv, "resumes from the bookmark's resourceVersion");
  t.same(calls, ['replace '], 'a bookmark is not an object change');
});

t.test('failures back off exponentially with jitter, capped, and reset after a success', async (t) => {
  api.failNext({ verb: 'list', resource: 'configmaps', status: 500, times: 3 });
  const { informer, seen } = start(t, {}, '/api/v1/namespaces/ns6/configmaps');
  api.apply({ ...cm('z'), metadata: { name: 'z', namespace: 'ns6' } });
  await informer.start();
  t.ok(seen.has('z'), 'it got there in the end');
  // random() = 0.5: half the delay plus a quarter; initial 20 ms, doubling, capped at 80 ms.
  t.same(informer.stats.backoffs, [15, 30, 60], 'equal jitter over 20, 40, 80 (capped)');
  t.equal(informer.stats.failures, 3);
  t.equal(informer.stats.lists, 4);
  await until('the watch', () => informer.stats.watches === 1 && api.openWatches({ resource: 'configmaps', namespace: 'ns6' }) === 1);
  api.apply({ ...cm('z2'), metadata: { name: 'z2', namespace: 'ns6' } });
  await until('an event: the watch was healthy', () => informer.stats.events === 1);
  api.failNext({ verb: 'watch', resource: 'configmaps', status: 503, times: 4 });
  api.dropWatches({ resource: 'configmaps' });
  await until('watching again after four failures', () => informer.stats.failures === 7 && api.openWatches({ resource: 'configmaps', namespace: 'ns6' }) === 1);
  t.same(informer.stats.backoffs.slice(3), [15, 30, 60, 60], 'the count started over after the successful list; the cap holds');
  t.equal(informer.stats.lists, 4, 'watch failures keep the resourceVersion: no re-list');
});

t.test('a watch the server ends at once, with no event, is retried with backoff (no hot loop)', async (t) => {
  const { informer } = start(t, { healthyWatchMs: 60_000 }, '/api/v1/namespaces/ns7/configmaps');
  await informer.start();
  for (let i = 1; i <= 3; i++) {
    await until(`watch ${i}`, () => informer.stats.watches === i && api.openWatches({ resource: 'configmaps', namespace: 'ns7' }) === 1);
    api.dropWatches({ resource: 'configmaps' });
  }
  await until('three backoffs', () => informer.stats.backoffs.length === 3);
  t.same(informer.stats.backoffs, [15, 30, 60]);
  t.equal(informer.stats.lists, 1, 'still no re-list');
});

t.test('a resource the server does not serve (404) does not hold up the start', async (t) => {
  api.failNext({ verb: 'list', resource: 'configmaps', status: 404, times: 1 });
  const { informer, calls } = start(t, {}, '/api/v1/namespaces/ns8/configmaps');
  await informer.start();
  t.same(calls.slice(0, 1), ['replace '], 'started empty');
  await until('the retry lists it', () => informer.stats.lists === 2 && informer.resourceVersion !== undefined);
});
