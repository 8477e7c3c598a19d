/**
 * The manifest converter's node-agent kinds: pods on a node without an IP yet (`pendingPods`) and
 * the namespaces' dataplane mode (`namespaces`), by the full conversion and by the incremental
 * pod path, which must agree.
 */
import t from 'tap';
import * as yaml from 'js-yaml';
import type { ManifestObject, PodObject } from '../../../core/kube/objects.js';
import { parseManifests, parseObject } from '../../../core/kube/parse.js';
import { ManifestStore } from '../../../core/kube/store.js';
import { ManifestConverter, convertManifests } from '../../../core/kube/convert.js';
import type { MeshConfig, NodeInfo } from '../../../core/model/types.js';

const NODES: NodeInfo[] = [{ name: 'node-a', ztunnelAddress: '10.0.0.2', hbonePort: 15008 }];
const docs = (...objs: object[]) => objs.map((o) => yaml.dump(o)).join('---\n');
const ns = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
interface PodOpts {
  ns?: string;
  node?: string | null;
  ip?: string;
  labels?: Record<string, string>;
  uid?: string;
  hostNetwork?: boolean;
  phase?: string;
}
const pod = (name: string, o: PodOpts = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: o.ns ?? 'apps', labels: o.labels ?? { app: name }, ...(o.uid ? { uid: o.uid } : {}) },
  spec: { ...(o.node === null ? {} : { nodeName: o.node ?? 'node-a' }), ...(o.hostNetwork ? { hostNetwork: true } : {}), containers: [{ name: 'c', image: 'x' }] },
  status: { phase: o.phase ?? 'Pending', ...(o.ip ? { podIP: o.ip, podIPs: [{ ip: o.ip }] } : {}) },
});
const parse = (...objs: object[]) => {
  const { objects, problems } = parseManifests(docs(...objs), 'test.yaml');
  t.same(problems.filter((p) => p.severity === 'error'), [], 'fixtures parse');
  return objects;
};
const convert = (...objs: object[]) => convertManifests({ objects: parse(...objs), nodes: NODES, trustDomain: 'cluster.local' }).config;
const names = (cfg: MeshConfig) => ({ pending: (cfg.pendingPods ?? []).map((p) => `${p.namespace}/${p.name}`), workloads: cfg.workloads.map((w) => w.uid) });
const podOf = (doc: object) => parseObject(doc, 'test.yaml').object as PodObject;

t.test('a pod on a node without an IP is pending, with uid, labels and the verdict; with its IP it is a workload and no longer pending', async (t) => {
  const before = convert(ns('apps', { 'istio.io/dataplane-mode': 'ambient' }), pod('web-0', { uid: 'uid-web-0', labels: { app: 'web' } }));
  t.same(before.pendingPods, [{ namespace: 'apps', name: 'web-0', uid: 'uid-web-0', node: 'node-a', labels: { app: 'web' }, protocol: 'HBONE' }]);
  t.same(before.workloads, [], 'not a workload: nothing can route to it');
  t.ok(Object.isFrozen(before.pendingPods![0]), 'frozen like every model object');
  const after = convert(ns('apps', { 'istio.io/dataplane-mode': 'ambient' }), pod('web-0', { uid: 'uid-web-0', labels: { app: 'web' }, ip: '10.1.0.5', phase: 'Running' }));
  t.equal(after.pendingPods, undefined, 'no pending pods: the kind is absent, as the other optional kinds are');
  t.same(names(after).workloads, ['apps/web-0']);
  t.equal(after.workloads[0]!.protocol, 'HBONE');
});

t.test('the verdict follows the workload rules, and a waypoint pod is never HBONE', async (t) => {
  const cfg = convert(
    ns('apps', { 'istio.io/dataplane-mode': 'ambient' }),
    ns('plain'),
    pod('in-ns', {}),
    pod('opted-out', { labels: { 'istio.io/dataplane-mode': 'none' } }),
    pod('waypoint-0', { labels: { 'gateway.istio.io/managed': 'istio.io-mesh-controller', 'gateway.networking.k8s.io/gateway-name': 'waypoint' } }),
    pod('not-ambient', { ns: 'plain' }),
    pod('opted-in', { ns: 'plain', labels: { 'istio.io/dataplane-mode': 'ambient' } }),
  );
  const verdict = Object.fromEntries((cfg.pendingPods ?? []).map((p) => [`${p.namespace}/${p.name}`, p.protocol]));
  t.same(verdict, { 'apps/in-ns': 'HBONE', 'apps/opted-out': 'TCP', 'apps/waypoint-0': 'TCP', 'plain/not-ambient': 'TCP', 'plain/opted-in': 'HBONE' });
});

t.test('never pending: host-network pods, unscheduled pods, finished pods; a pod on a node without a ztunnel is', async (t) => {
  const cfg = convert(
    ns('apps'),
    pod('host', { hostNetwork: true }),
    pod('unscheduled', { node: null }),
    pod('done', { phase: 'Succeeded' }),
    pod('failed', { phase: 'Failed' }),
    pod('elsewhere', { node: 'node-new' }),
  );
  t.same(names(cfg).pending, ['apps/elsewhere'], 'its node agent may be up before its ztunnel is');
  t.same(cfg.pendingPods![0]!.node, 'node-new');
  const withIp = convert(ns('apps'), pod('host', { hostNetwork: true, ip: '10.0.0.2', phase: 'Running' }));
  t.equal(withIp.pendingPods, undefined, 'a host-network pod with an IP is not pending either');
  t.same(withIp.workloads, [], 'nor a workload');
});

t.test('namespaces: every Namespace object, with only its dataplane mode', async (t) => {
  const cfg = convert(ns('b-plain', { team: 'x' }), ns('a-ambient', { 'istio.io/dataplane-mode': 'ambient', team: 'y' }), ns('c-none', { 'istio.io/dataplane-mode': 'none' }));
  t.same(cfg.namespaces, [{ name: 'a-ambient', dataplaneMode: 'ambient' }, { name: 'b-plain' }, { name: 'c-none', dataplaneMode: 'none' }]);
  t.equal(convert(pod('x', { ns: 'default' })).namespaces, undefined, 'no Namespace objects (a lab file): the kind is absent');
});

t.test('the incremental pod path gives what the full conversion gives: pending, then a workload, then gone', async (t) => {
  const store = new ManifestStore();
  store.apply(parse(ns('apps', { 'istio.io/dataplane-mode': 'ambient' }), pod('web-0', { uid: 'u0' })));
  const inc = new ManifestConverter();
  const inputs = () => ({ objects: store.sortedObjects(), sorted: true, nodes: NODES, trustDomain: 'cluster.local' });
  inc.convert(inputs());
  const step = (objects: ManifestObject[], deleted: { kind: string; namespace: string; name: string }[] = []) => {
    const changes: { prev?: PodObject; next?: PodObject }[] = [];
    for (const o of objects) {
      const prev = store.get({ kind: 'Pod', namespace: o.meta.namespace!, name: o.meta.name }) as PodObject | undefined;
      changes.push({ ...(prev ? { prev } : {}), next: o as PodObject });
    }
    for (const r of deleted) changes.push({ prev: store.get(r) as PodObject });
    store.apply(objects);
    store.delete(deleted);
    const fast = inc.updatePods(changes);
    const result = fast ?? inc.convert(inputs());
    const full = convertManifests(inputs()).config;
    t.same(result.config, full, 'incremental equals full');
    return { cfg: result.config, fast: fast !== undefined };
  };
  // A second pending pod, and a label change of the first: pod-only changes that keep no IP.
  let r = step([podOf(pod('web-1', { uid: 'u1' })), podOf(pod('web-0', { uid: 'u0', labels: { app: 'web', v: '2' } }))]);
  t.ok(r.fast, 'taken by the incremental path');
  t.same(names(r.cfg).pending, ['apps/web-0', 'apps/web-1']);
  t.same(r.cfg.pendingPods![0]!.labels, { app: 'web', v: '2' });
  r = step([podOf(pod('web-1', { uid: 'u1', labels: { app: 'web-1', 'istio.io/dataplane-mode': 'none' } }))]);
  t.equal(r.cfg.pendingPods![1]!.protocol, 'TCP', 'an opt-out label changes the verdict on the fast path');
  r = step([podOf(pod('web-0', { uid: 'u0', ip: '10.1.0.5', phase: 'Running' }))]);
  t.same(names(r.cfg), { pending: ['apps/web-1'], workloads: ['apps/web-0'] }, 'the IP moves web-0 from pending to workloads');
  r = step([], [{ kind: 'Pod', namespace: 'apps', name: 'web-1' }]);
  t.ok(r.fast);
  t.equal(r.cfg.pendingPods, undefined, 'deleted before it had an IP: gone');
  t.same(r.cfg.namespaces, [{ name: 'apps', dataplaneMode: 'ambient' }], 'the namespaces survive the incremental path');
});
