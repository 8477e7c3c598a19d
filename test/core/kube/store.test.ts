import t from 'tap';
import { formatProblem } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { ManifestStore } from '../../../core/kube/store.js';
import { docs, ns } from './documents.js';

t.test('the store: apply, delete, replaceAll with duplicates, change events', async (t) => {
  const store = new ManifestStore();
  const events: string[] = [];
  store.onChange((c) => events.push(`+${c.upserted.length} -${c.deleted.length}`));
  const a = parseManifests(docs(ns('a'), ns('b')), 'one.yaml').objects;
  t.equal(store.apply(a).upserted, 2);
  t.equal(store.apply(parseManifests(docs(ns('a')), 'again.yaml').objects).upserted, 0, 're-applying the same object changes nothing');
  const dup = store.replaceAll([...parseManifests(docs(ns('a'), ns('c')), 'x.yaml').objects, ...parseManifests(docs(ns('c', { x: 'y' })), 'y.yaml').objects]);
  t.equal(dup.deleted, 1, 'b is gone');
  t.match(dup.problems.map(formatProblem), [/^y.yaml#1: Namespace c: metadata.name: defined twice; the definition in x.yaml#2 is used/]);
  t.same(store.sortedObjects().map((o) => o.meta.name), ['a', 'c']);
  t.equal(store.get({ kind: 'Namespace', name: 'a' }), a[0], 'an unchanged object keeps its stored instance');
  store.delete([{ kind: 'Namespace', name: 'a' }]);
  t.same(events, ['+2 -0', '+1 -1', '+0 -1']);
});
