import t from 'tap';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { KubeApiFixture } from '../../helpers/kube-api-fixture.js';
import { until } from '../../helpers/until.js';

// The fixture itself, driven by client-node's own clients (what the control plane and ambientctl
// use): kubeconfig credentials, lists without kinds, watch resume, 410, status, conflicts.
// Addresses: 127.0.11.10.
const api = await KubeApiFixture.start({ host: '127.0.11.10' });
t.teardown(() => api.close());
const kubeconfig = join(t.testdir(), 'kubeconfig');
await api.writeKubeconfig(kubeconfig);
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);

t.test('client-node lists and gets through the kubeconfig; items of built-in kinds carry no kind', async (t) => {
  api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { a: 'b' } } });
  const core = kc.makeApiClient(CoreV1Api);
  const list = await core.listNamespace();
  t.same(list.items.map((n) => n.metadata?.name), ['apps']);
  t.equal(list.metadata?.resourceVersion, String(api.resourceVersion));
  const raw = await (await fetch(`${api.url}/api/v1/namespaces`, { headers: { authorization: `Bearer ${api.token}` } })).json() as { items: Record<string, unknown>[] };
  t.equal(raw.items[0]!.kind, undefined, 'as the real server, list items of built-in kinds have no kind');
  const bad = await fetch(`${api.url}/api/v1/namespaces`);
  t.equal(bad.status, 401, 'requests without the token are refused');
});

t.test('watch: replay from a resourceVersion, bookmarks, 410 after compaction', async (t) => {
  const rv0 = api.resourceVersion;
  api.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p1', namespace: 'apps' }, spec: { containers: [] } });
  const events: { type: string; rv?: string; code?: number }[] = [];
  let done = false;
  const w = new Watch(kc);
  const ctl = await w.watch('/api/v1/pods', { resourceVersion: String(rv0), allowWatchBookmarks: true }, (type, obj: { metadata?: { resourceVersion?: string }; code?: number }) => {
    events.push({ type, ...(obj.metadata?.resourceVersion !== undefined ? { rv: obj.metadata.resourceVersion } : {}), ...(obj.code !== undefined ? { code: obj.code } : {}) });
  }, () => (done = true));
  await until('the replayed change', () => events.length === 1);
  t.equal(events[0]!.type, 'ADDED', 'the change after the given resourceVersion is replayed');
  t.equal(api.bookmark(), 1);
  await until('the bookmark', () => events.length === 2);
  t.same(events[1], { type: 'BOOKMARK', rv: String(api.resourceVersion) });
  t.equal(api.dropWatches(), 1);
  await until('the dropped watch to end', () => done);
  ctl.abort();
  api.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p2', namespace: 'apps' }, spec: { containers: [] } });
  api.compact();
  const late: { type: string; code?: number }[] = [];
  await w.watch('/api/v1/pods', { resourceVersion: String(rv0) }, (type, obj: { code?: number }) => late.push({ type, ...(obj.code !== undefined ? { code: obj.code } : {}) }), () => undefined);
  await until('the 410 after compaction', () => late.length === 1);
  t.same(late, [{ type: 'ERROR', code: 410 }], 'a compacted resourceVersion gets 410 Gone');
  t.equal(api.count({ verb: 'watch', resource: 'pods' }), 2);
});

t.test('status subresource merge patch, optimistic concurrency, token reviews', async (t) => {
  api.apply({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'apps' }, spec: { action: 'DENY' } });
  const r = await fetch(`${api.url}/apis/security.istio.io/v1/namespaces/apps/authorizationpolicies/deny/status`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/merge-patch+json' },
    body: JSON.stringify({ status: { conditions: [{ type: 'Accepted', status: 'True' }] }, spec: { action: 'ALLOW' } }),
  });
  t.equal(r.status, 200);
  const stored = api.get({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', namespace: 'apps', name: 'deny' })!;
  t.same(stored.status, { conditions: [{ type: 'Accepted', status: 'True' }] });
  t.same(stored.spec, { action: 'DENY' }, 'the status subresource changes only the status');
  const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'istio-system' }, spec: { holderIdentity: 'a' } };
  const post = (body: unknown, method = 'POST', path = '/apis/coordination.k8s.io/v1/namespaces/istio-system/leases') =>
    fetch(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const created = await post(lease);
  t.equal(created.status, 201);
  t.equal((await post(lease)).status, 409, 'create twice: AlreadyExists');
  const rv = ((await created.json()) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
  const path = '/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/l';
  t.equal((await post({ ...lease, metadata: { ...lease.metadata, resourceVersion: rv } }, 'PUT', path)).status, 200);
  t.equal((await post({ ...lease, metadata: { ...lease.metadata, resourceVersion: rv } }, 'PUT', path)).status, 409, 'a stale resourceVersion: Conflict');
  api.setTokenReview('tok', { authenticated: true, user: { username: 'system:serviceaccount:istio-system:ztunnel' }, audiences: ['istio-ca'] });
  const review = async (token: string, audiences: string[]) =>
    ((await (await post({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } }, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews')).json()) as { status: { authenticated: boolean; audiences?: string[] } }).status;
  t.same(await review('tok', ['istio-ca']), { authenticated: true, user: { username: 'system:serviceaccount:istio-system:ztunnel' }, audiences: ['istio-ca'] });
  t.equal((await review('tok', ['other'])).authenticated, false, 'wrong audience');
  t.equal((await review('nope', ['istio-ca'])).authenticated, false, 'unknown token');
});
