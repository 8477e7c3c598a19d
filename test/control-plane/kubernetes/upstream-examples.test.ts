/**
 * The objects of the Istio and Gateway API documentation (test/core/kube/fixtures/
 * upstream-examples.yaml, each naming the page it mirrors), as the API server would return them
 * (server metadata added, list items without apiVersion/kind for built-in kinds), through the
 * Kubernetes source's boundary (to-manifest.ts) and the shared parser, then the status writer:
 * what is accepted, accepted with a warning, or rejected, and the status each gets. The status
 * writer runs against the kube-api-fixture (an in-memory API server; not a cluster). 127.0.16.40.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import type { ObjectProblem } from '../../../core/kube/objects.js';
import { parseObject } from '../../../core/kube/parse.js';
import { silentLogger } from '../../../core/telemetry/log.js';
import { KubeConfigApi, type KubeObject } from '../../../core/kube/api.js';
import { resourceOf } from '../../../control-plane/kubernetes/kinds.js';
import { StatusWriter } from '../../../control-plane/kubernetes/status.js';
import { toManifestDocument } from '../../../control-plane/kubernetes/to-manifest.js';
import { KubeApiFixture } from '../../helpers/kube-api-fixture.js';
import { until } from '../../helpers/until.js';

const FILE = fileURLToPath(new URL('../../core/kube/fixtures/upstream-examples.yaml', import.meta.url));
const docs = yaml.loadAll(readFileSync(FILE, 'utf8')) as KubeObject[];

/** What each example must become: `ok`, `warn` (applies, not entirely as written) or `reject`, with the problem's field. */
const EXPECTED: Record<string, { outcome: 'ok' | 'warn' | 'reject'; field?: RegExp; message?: RegExp }> = {
  'AuthorizationPolicy foo/allow-nothing': { outcome: 'ok' },
  'AuthorizationPolicy foo/deny-method-get': { outcome: 'warn', field: /^spec\.rules$/, message: /denying more than written; use a waypoint/ },
  'AuthorizationPolicy foo/httpbin': { outcome: 'warn', field: /^spec\.rules$/, message: /match nothing at L4/ },
  'AuthorizationPolicy default/productpage-viewer': { outcome: 'ok' },
  'AuthorizationPolicy default/productpage-viewer-l7': { outcome: 'ok' },
  'AuthorizationPolicy foo/ext-authz': { outcome: 'reject', field: /^spec\.action$/, message: /CUSTOM/ },
  'PeerAuthentication istio-system/default': { outcome: 'ok' },
  'PeerAuthentication foo/finance': { outcome: 'ok' },
  'VirtualService default/reviews': { outcome: 'ok' },
  'DestinationRule default/reviews': { outcome: 'ok' },
  'VirtualService default/ratings': { outcome: 'ok' },
  'VirtualService default/details': { outcome: 'ok' },
  'VirtualService default/bookinfo': { outcome: 'reject', field: /^spec\.gateways\[0\]$/, message: /only "mesh"/ },
  'Gateway default/waypoint': { outcome: 'ok' },
  'HTTPRoute default/reviews': { outcome: 'ok' },
  'HTTPRoute default/header-http-echo': { outcome: 'ok' },
  'HTTPRoute default/bar-route': { outcome: 'reject', field: /^spec\.parentRefs\[0\]\.kind$/, message: /attached to a Service \(GAMMA\)/ },
  'HTTPRoute default/bad-regex': { outcome: 'reject', field: /path\.value$/, message: /not a valid regular expression/ },
};

/** The object as the API server answers a list: server metadata, and no apiVersion/kind on built-in items. */
function asServed(o: KubeObject, i: number): KubeObject {
  const m = o.metadata as Record<string, unknown>;
  return {
    ...o,
    metadata: {
      ...m,
      uid: `uid-${i}`,
      resourceVersion: String(100 + i),
      generation: 1,
      creationTimestamp: '2026-12-01T00:00:00Z',
      managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(o), ...((m.annotations as object | undefined) ?? {}) },
    },
  };
}

const name = (o: KubeObject) => `${o.kind} ${(o.metadata as { namespace: string }).namespace}/${(o.metadata as { name: string }).name}`;
const problems: ObjectProblem[] = [];

t.test('every example is accepted, warned about or rejected as Istio would', async (t) => {
  t.same(docs.map(name).sort(), Object.keys(EXPECTED).sort(), 'the expectations cover the fixture file');
  docs.forEach((o, i) => {
    const key = name(o);
    const want = EXPECTED[key]!;
    const r = resourceOf(String(o.kind))!;
    t.ok(r, `${key}: a watched resource`);
    const { object, problems: ps } = parseObject(toManifestDocument(r, asServed(o, i)), 'kubernetes', 'istio-system');
    problems.push(...ps);
    const errors = ps.filter((p) => p.severity === 'error');
    const warnings = ps.filter((p) => p.severity === 'warning');
    if (want.outcome === 'reject') {
      t.notOk(object, `${key}: rejected`);
      t.ok(errors.some((p) => want.field!.test(p.field) && want.message!.test(p.message)), `${key}: ${errors.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
    } else {
      t.ok(object, `${key}: accepted`);
      t.same(errors, [], `${key}: no error`);
      if (want.outcome === 'warn') t.ok(warnings.some((p) => want.field!.test(p.field) && want.message!.test(p.message)), `${key}: warned`);
      else t.same(warnings, [], `${key}: no warning`);
    }
  });
});

t.test('the status each example gets', async (t) => {
  const api = await KubeApiFixture.start({ host: '127.0.16.40' });
  t.teardown(() => api.close());
  const kubeconfig = `${t.testdir()}/kubeconfig`;
  await api.writeKubeconfig(kubeconfig);
  for (const o of docs) api.apply(o);
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const writer = new StatusWriter({
    api: new KubeConfigApi(kc),
    objects: (kind) => (api.list(resourceOf(kind)!.group === '' ? 'v1' : `${resourceOf(kind)!.group}/v1`, kind) as KubeObject[]),
    problems: () => problems,
    routes: () => [],
    logger: silentLogger,
    debounceMs: 10,
  });
  writer.start();
  t.teardown(() => writer.stop());
  type Cond = { type: string; status: string; reason: string; message: string };
  const get = (kind: string, ns: string, n: string) =>
    api.get({ apiVersion: `${resourceOf(kind)!.group}/v1`, kind, namespace: ns, name: n }) as unknown as { status?: { conditions?: Cond[]; parents?: Array<{ conditions: Cond[] }> } } | undefined;
  await until('statuses written', () => get('HTTPRoute', 'default', 'bad-regex')?.status?.parents !== undefined && get('AuthorizationPolicy', 'foo', 'ext-authz')?.status?.conditions !== undefined);
  await writer.flush();
  t.match(get('AuthorizationPolicy', 'foo', 'allow-nothing')?.status?.conditions, [{ type: 'ZtunnelAccepted', status: 'True', reason: 'Accepted' }]);
  t.match(get('AuthorizationPolicy', 'foo', 'deny-method-get')?.status?.conditions, [{ type: 'ZtunnelAccepted', status: 'True', reason: 'UnsupportedValue', message: /denying more than written/ }], "Istio's condition for HTTP attributes on an L4 policy");
  t.match(get('AuthorizationPolicy', 'default', 'productpage-viewer-l7')?.status?.conditions, [{ type: 'WaypointAccepted', status: 'True', reason: 'Accepted' }]);
  t.match(get('AuthorizationPolicy', 'foo', 'ext-authz')?.status?.conditions, [{ type: 'ZtunnelAccepted', status: 'False', reason: 'Invalid', message: /spec\.action: "CUSTOM" is not supported/ }]);
  t.match(get('PeerAuthentication', 'foo', 'finance')?.status?.conditions, [{ type: 'Accepted', status: 'True' }]);
  t.match(get('VirtualService', 'default', 'bookinfo')?.status?.conditions, [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: /spec\.gateways\[0\]/ }]);
  t.match(get('HTTPRoute', 'default', 'bar-route')?.status?.parents, [{ conditions: [{ type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: /parent Gateway is not supported/ }] }]);
  t.match(get('HTTPRoute', 'default', 'bad-regex')?.status?.parents, [{ conditions: [{ type: 'Accepted', status: 'False' }, { type: 'ResolvedRefs', status: 'False' }] }]);
  t.match(get('Gateway', 'default', 'waypoint')?.status?.conditions, [{ type: 'Accepted', status: 'True' }]);
});
