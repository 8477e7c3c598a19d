// `ambientctl` against a cluster: the built CLI (dist/cli/ambientctl.js) runs as a process with a
// kubeconfig for the in-memory API-server fixture (test/helpers/kube-api-fixture.ts). For
// ztunnel-config, two real ztunnels run in this process and the fixture's port-forward
// (WebSocket, v4.channel.k8s.io) connects to their admin listeners.
// Addresses: 127.0.17.1 = the API server fixture, .2 = ztunnel node-a, .3 = ztunnel node-b,
// .10 client, .20 server (+ echo on 9090), .30/.40/.50 workloads that only appear in config.
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import * as yaml from 'js-yaml';
import { CLI_ERROR_CODES } from '../../cli/errors.js';
import { KubeApiFixture, writeKubeconfig, type FixtureRef } from '../helpers/kube-api-fixture.js';
import { baseConfig, startMesh } from '../helpers/mesh.js';
import { closeServer, echoServer, readAll, socks5Connect } from '../helpers/net.js';
import { CLI, oneErrorLine, runCli, startCli, type CliRun } from './run.js';

type Raw = Record<string, unknown>;

const HOST = '127.0.17.1';
const base = '127.0.17';

// About 110 CLI processes, each spending ~0.7 s of CPU loading @kubernetes/client-node: on a busy
// two-CPU machine that exceeds the runner's default 300 s, so this file asks for more.
t.setTimeout(600_000);

if (!existsSync(CLI) || !existsSync(join(CLI, '..', 'port-forward.js'))) {
  throw new Error(`${CLI} (with port-forward.js) is missing: build first (npx tsc -p tsconfig.json)`);
}

const dir = t.testdir({ home: {}, cni: {} });
const home = join(dir, 'home');
const api = await KubeApiFixture.start({ host: HOST });
t.teardown(() => api.close());
const kubeconfig = join(dir, 'kubeconfig');
await api.writeKubeconfig(kubeconfig);
const cli = (...args: string[]) => runCli(['--kubeconfig', kubeconfig, ...args], { home });
const where = `the cluster ${api.url} (context kube-api-fixture)`;

/** A table as rows of cells (cells are separated by two or more spaces). */
const rows = (r: CliRun) => r.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/));

/** The Gateway `istioctl waypoint apply` creates (istioctl/pkg/waypoint/waypoint.go makeGateway), transcribed. */
function istioctlGateway(ns: string, name: string, labels?: Record<string, string>): Raw {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: ns, ...(labels ? { labels } : {}) },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

const gwRef = (namespace: string, name: string): FixtureRef => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', namespace, name });
const nsRef = (name: string): FixtureRef => ({ apiVersion: 'v1', kind: 'Namespace', name });

/** The stored object without what the server adds (uid, resourceVersion, generation, creationTimestamp). */
function asSent(o: Raw | undefined): Raw | undefined {
  if (!o) return undefined;
  const { uid, resourceVersion, generation, creationTimestamp, ...metadata } = o.metadata as Raw;
  return { ...o, metadata };
}

const programmed = (status: 'True' | 'False', reason: string, message: string) => ({
  status: { conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Resource accepted' }, { type: 'Programmed', status, reason, message }] },
});

function resetNamespaces(): void {
  for (const ns of api.list('v1', 'Namespace')) api.remove(nsRef(String(ns.metadata.name)));
  for (const gw of api.list('gateway.networking.k8s.io/v1', 'Gateway')) api.remove(gwRef(String(gw.metadata.namespace), String(gw.metadata.name)));
  api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'pay' } });
  api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } });
}

t.test('waypoint apply creates the Gateway istioctl creates, idempotently', async (t) => {
  resetNamespaces();
  const creates = api.count({ verb: 'create', resource: 'gateways' });
  const r = await cli('waypoint', 'apply', '-n', 'shop');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '✅ waypoint shop/waypoint applied\n');
  t.equal(r.stderr, '');
  const stored = api.get(gwRef('shop', 'waypoint'));
  t.same(asSent(stored), istioctlGateway('shop', 'waypoint'), 'field by field: apiVersion, kind, name, namespace, no labels, class, one HBONE listener on 15008 named mesh');
  t.notOk((stored?.metadata as Raw).labels, 'no istio.io/waypoint-for label without --for: the control plane picks (service), as istioctl leaves it');
  t.equal(api.count({ verb: 'create', resource: 'gateways' }), creates + 1);
  const last = api.requests.filter((q) => q.verb === 'create' && q.resource === 'gateways').at(-1)!;
  t.equal(last.path, '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways', 'POSTed to the v1 gateways of the namespace');

  const rv = stored!.metadata.resourceVersion;
  const patches = api.count({ verb: 'patch', resource: 'gateways' });
  const again = await cli('waypoint', 'apply', '-n', 'shop');
  t.equal(again.code, 0, again.stderr);
  t.equal(again.stdout, '✅ waypoint shop/waypoint applied\n');
  t.equal(api.get(gwRef('shop', 'waypoint'))!.metadata.resourceVersion, rv, 'a second apply changes nothing');
  t.equal(api.count({ verb: 'patch', resource: 'gateways' }), patches, 'and writes nothing');

  const wl = await cli('waypoint', 'apply', '-n', 'shop', '--name', 'wl', '--for', 'workload');
  t.equal(wl.code, 0, wl.stderr);
  t.equal(wl.stdout, '✅ waypoint shop/wl applied\n');
  t.same(asSent(api.get(gwRef('shop', 'wl'))), istioctlGateway('shop', 'wl', { 'istio.io/waypoint-for': 'workload' }), '--for workload sets istio.io/waypoint-for');

  const rev = await cli('waypoint', 'apply', '-n', 'shop', '--for', 'all', '-r', 'canary');
  t.equal(rev.code, 0, rev.stderr);
  t.same(asSent(api.get(gwRef('shop', 'waypoint'))), istioctlGateway('shop', 'waypoint', { 'istio.io/waypoint-for': 'all', 'istio.io/rev': 'canary' }), 'an existing waypoint is updated');
  api.patch(gwRef('shop', 'waypoint'), { metadata: { labels: { team: 'payments' } } });
  const plain = await cli('waypoint', 'apply', '-n', 'shop');
  t.equal(plain.code, 0, plain.stderr);
  t.same(
    (api.get(gwRef('shop', 'waypoint'))!.metadata as Raw).labels,
    { team: 'payments' },
    'applying without --for/-r drops the labels apply set before (as server-side apply does) and keeps the ones others set',
  );
  t.same(api.get(gwRef('shop', 'waypoint'))!.spec, istioctlGateway('shop', 'waypoint').spec);
});

t.test('waypoint apply --enroll-namespace labels the namespace', async (t) => {
  resetNamespaces();
  const r = await cli('waypoint', 'apply', '-n', 'pay', '--enroll-namespace');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '✅ waypoint pay/waypoint applied\n✅ namespace pay labeled with "istio.io/use-waypoint: waypoint"\n');
  t.equal(r.stderr, '⚠️ Warning: namespace is not enrolled in ambient. Consider running `kubectl label namespace pay istio.io/dataplane-mode=ambient`\n', 'the namespace is not ambient: warned, as istioctl does');
  t.same((api.get(nsRef('pay'))!.metadata as Raw).labels, { 'istio.io/use-waypoint': 'waypoint' });

  const quiet = await cli('waypoint', 'apply', '-n', 'shop', '--name', 'egress', '--enroll-namespace');
  t.equal(quiet.code, 0, quiet.stderr);
  t.equal(quiet.stderr, '', 'an ambient namespace: no warning');
  t.same((api.get(nsRef('shop'))!.metadata as Raw).labels, { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'egress' }, 'other labels stay');

  const creates = api.count({ verb: 'create', resource: 'gateways' });
  const refused = await cli('waypoint', 'apply', '-n', 'shop', '--name', 'other', '--enroll-namespace');
  t.equal(oneErrorLine(refused), 'ambientctl: namespace shop already uses waypoint egress (istio.io/use-waypoint=egress); add --overwrite to switch it to other; nothing was applied');
  t.equal(refused.stdout, '');
  t.equal(api.count({ verb: 'create', resource: 'gateways' }), creates, 'no Gateway was sent');
  t.notOk(api.get(gwRef('shop', 'other')));

  const over = await cli('waypoint', 'apply', '-n', 'shop', '--name', 'other', '--enroll-namespace', '--overwrite');
  t.equal(over.code, 0, over.stderr);
  t.equal((api.get(nsRef('shop'))!.metadata as Raw & { labels: Raw }).labels['istio.io/use-waypoint'], 'other', '--overwrite switches it');
});

t.test('waypoint list: table, -A, -o json, -o yaml; only istio-waypoint Gateways', async (t) => {
  resetNamespaces();
  api.apply({ ...istioctlGateway('shop', 'waypoint', { 'istio.io/waypoint-for': 'all' }), ...programmed('True', 'Programmed', 'Resource programmed, assigned to service(s) waypoint.shop.svc.cluster.local:15008') });
  api.apply({ ...istioctlGateway('shop', 'other', { 'istio.io/rev': 'canary' }), ...programmed('False', 'Invalid', 'no waypoint pod') });
  api.apply(istioctlGateway('pay', 'waypoint'));
  api.apply({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'pay' }, spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });

  // Read-only runs go in parallel: each is a node process, and most of its time is start-up.
  const [list, all, json, y, empty, emptyJson] = await Promise.all([
    cli('waypoint', 'list', '-n', 'shop'),
    cli('waypoint', 'list', '-A'),
    cli('waypoint', 'list', '-n', 'shop', '-o', 'json'),
    cli('waypoint', 'list', '-n', 'shop', '-o', 'yaml'),
    cli('waypoint', 'list', '-n', 'istio-system'),
    cli('waypoint', 'list', '-n', 'istio-system', '-o', 'json'),
  ]);
  t.equal(list.code, 0, list.stderr);
  t.same(rows(list), [
    ['NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'],
    ['other', 'canary', 'service', 'False'],
    ['waypoint', 'default', 'all', 'True'],
  ]);
  t.same(rows(all), [
    ['NAMESPACE', 'NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'],
    ['pay', 'waypoint', 'default', 'service', 'Unknown'],
    ['shop', 'other', 'canary', 'service', 'False'],
    ['shop', 'waypoint', 'default', 'all', 'True'],
  ], 'sorted by namespace and name; the istio-class Gateway is not a waypoint');
  t.ok(api.requests.some((q) => q.verb === 'list' && q.resource === 'gateways' && q.namespace === undefined), '-A lists across namespaces');

  t.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as { kind: string; items: Raw[] };
  t.equal(doc.kind, 'List');
  t.same(doc.items.map(asSent), [
    { ...istioctlGateway('shop', 'other', { 'istio.io/rev': 'canary' }), ...programmed('False', 'Invalid', 'no waypoint pod') },
    { ...istioctlGateway('shop', 'waypoint', { 'istio.io/waypoint-for': 'all' }), ...programmed('True', 'Programmed', 'Resource programmed, assigned to service(s) waypoint.shop.svc.cluster.local:15008') },
  ], 'the Gateways as the API server holds them');
  t.equal(y.code, 0, y.stderr);
  t.same(yaml.load(y.stdout), doc, '-o yaml is the same document');
  t.equal(empty.stdout, 'No waypoints found.\n');
  t.same(JSON.parse(emptyJson.stdout), { apiVersion: 'v1', kind: 'List', items: [] });
});

t.test('waypoint status reports the Programmed condition from status and waits for it', async (t) => {
  resetNamespaces();
  api.apply({ ...istioctlGateway('shop', 'waypoint'), ...programmed('True', 'Programmed', 'Resource programmed, assigned to service(s) waypoint.shop.svc.cluster.local:15008') });
  api.apply({ ...istioctlGateway('shop', 'pending'), ...programmed('False', 'Pending', 'waiting for the deployment') });
  api.apply(istioctlGateway('shop', 'new'));

  const [st, json, y, late, ghost] = await Promise.all([
    cli('waypoint', 'status', '-n', 'shop'),
    cli('waypoint', 'status', '-n', 'shop', '--name', 'pending', '-o', 'json'),
    cli('waypoint', 'status', '-A', '-o', 'yaml'),
    cli('waypoint', 'status', '-n', 'shop', '--name', 'pending', '--wait', '--waypoint-timeout', '1s'),
    cli('waypoint', 'status', '-n', 'shop', '--name', 'ghost'),
  ]);
  t.equal(st.code, 0, st.stderr);
  t.same(rows(st), [
    ['NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'],
    ['new', 'Unknown', 'Programmed', 'Pending', 'no Programmed condition yet'],
    ['pending', 'False', 'Programmed', 'Pending', 'waiting for the deployment'],
    ['waypoint', 'True', 'Programmed', 'Programmed', 'Resource programmed, assigned to service(s) waypoint.shop.svc.cluster.local:15008'],
  ]);
  t.same(JSON.parse(json.stdout), [{ namespace: 'shop', name: 'pending', conditions: [{ type: 'Programmed', status: 'False', reason: 'Pending', message: 'waiting for the deployment' }] }]);
  t.same((yaml.load(y.stdout) as Raw[]).map((x) => x.name), ['new', 'pending', 'waypoint']);
  t.equal(oneErrorLine(late), 'ambientctl: timed out after 1s waiting for shop/pending to be programmed');
  t.match(late.stdout, /pending\s+False\s+Programmed\s+Pending/, 'the last condition is printed before the error');

  // The "controller" programs the Gateway while the CLI waits.
  const gets = api.count({ verb: 'get', resource: 'gateways' });
  const waiting = startCli(['--kubeconfig', kubeconfig, 'waypoint', 'status', '-n', 'shop', '--name', 'new', '--wait', '--waypoint-timeout', '20s'], { home });
  while (api.count({ verb: 'get', resource: 'gateways' }) < gets + 2) await new Promise((r) => setTimeout(r, 50));
  api.patch(gwRef('shop', 'new'), programmed('True', 'Programmed', 'now programmed'));
  const done = await waiting.done;
  t.equal(done.code, 0, done.stderr);
  t.same(rows(done).at(-1), ['new', 'True', 'Programmed', 'Programmed', 'now programmed'], 'returns once Programmed is True, with that condition');
  t.equal(oneErrorLine(ghost), 'ambientctl: waypoint shop/ghost not found (ambientctl waypoint list -n shop)');
});

t.test('waypoint apply --wait waits for Programmed, and gives up after --waypoint-timeout', async (t) => {
  resetNamespaces();
  const running = startCli(['--kubeconfig', kubeconfig, 'waypoint', 'apply', '-n', 'shop', '--wait', '--enroll-namespace'], { home });
  while (!api.get(gwRef('shop', 'waypoint'))) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  t.notOk((api.get(nsRef('shop'))!.metadata as Raw & { labels: Raw }).labels['istio.io/use-waypoint'], 'the namespace is not enrolled before the waypoint is ready');
  api.patch(gwRef('shop', 'waypoint'), programmed('True', 'Programmed', 'ok'));
  const r = await running.done;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '✅ waypoint shop/waypoint applied\n✅ waypoint shop/waypoint is ready!\n✅ namespace shop labeled with "istio.io/use-waypoint: waypoint"\n');

  const late = await cli('waypoint', 'apply', '-n', 'pay', '--wait', '--waypoint-timeout', '1s', '--enroll-namespace');
  t.equal(oneErrorLine(late), 'ambientctl: timed out after 1s waiting for waypoint pay/waypoint to be programmed (Programmed=Unknown Pending: no Programmed condition yet)');
  t.ok(api.get(gwRef('pay', 'waypoint')), 'the Gateway stays applied');
  t.notOk((api.get(nsRef('pay'))!.metadata as Raw).labels, 'the namespace is not labelled when the waypoint never became ready');
});

t.test('waypoint delete: one, several, --all, --revision; warns when the namespace still uses it', async (t) => {
  resetNamespaces();
  api.patch(nsRef('shop'), { metadata: { labels: { 'istio.io/use-waypoint': 'waypoint' } } });
  for (const n of ['waypoint', 'a', 'b', 'c']) api.apply(istioctlGateway('shop', n, n === 'c' ? { 'istio.io/rev': 'canary' } : undefined));
  api.apply(istioctlGateway('pay', 'waypoint'));
  api.apply(istioctlGateway('pay', 'second'));
  api.apply({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'pay' }, spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });

  const one = await cli('waypoint', 'delete', 'waypoint', '-n', 'shop');
  t.equal(one.code, 0, one.stderr);
  t.equal(one.stdout, 'waypoint shop/waypoint deleted\n');
  t.equal(one.stderr, '⚠️ Warning: namespace shop still has istio.io/use-waypoint=waypoint; its traffic cannot reach a waypoint until you remove the label: kubectl label namespace shop istio.io/use-waypoint-\n');
  t.notOk(api.get(gwRef('shop', 'waypoint')));
  t.equal((api.get(nsRef('shop'))!.metadata as Raw & { labels: Raw }).labels['istio.io/use-waypoint'], 'waypoint', 'the label is left for the operator to remove');

  const several = await cli('waypoint', 'delete', 'a', 'nope', 'b', '-n', 'shop');
  t.equal(several.stdout, 'waypoint shop/a deleted\nwaypoint shop/b deleted\n', 'the ones that exist are deleted');
  t.equal(oneErrorLine(several), 'ambientctl: waypoint shop/nope not found (ambientctl waypoint list -n shop)');
  t.notOk(api.get(gwRef('shop', 'a')));
  t.notOk(api.get(gwRef('shop', 'b')));

  const byRev = await cli('waypoint', 'delete', '--revision', 'canary', '-n', 'shop');
  t.equal(byRev.code, 0, byRev.stderr);
  t.equal(byRev.stdout, 'waypoint shop/c deleted\n');

  const all = await cli('waypoint', 'delete', '--all', '-n', 'pay');
  t.equal(all.code, 0, all.stderr);
  t.equal(all.stdout, 'waypoint pay/second deleted\nwaypoint pay/waypoint deleted\n');
  t.ok(api.get(gwRef('pay', 'ingress')), 'a Gateway of another class is not a waypoint and stays');
  t.equal((await cli('waypoint', 'delete', '--all', '-n', 'pay')).stdout, 'No waypoints found.\n');

  const [none, both] = await Promise.all([cli('waypoint', 'delete', '-n', 'shop'), cli('waypoint', 'delete', 'x', '--all', '-n', 'shop')]);
  t.match(oneErrorLine(none), /^ambientctl: name the waypoints to delete, or use --all/);
  t.match(oneErrorLine(both), /^ambientctl: give waypoint names or --all\/--revision, not both/);
});

t.test('errors: one line on stderr, exit 1', async (t) => {
  resetNamespaces();
  const before = api.requests.length;
  const [badFor, badOut, badContext] = await Promise.all([
    cli('waypoint', 'apply', '-n', 'shop', '--for', 'pods'),
    cli('waypoint', 'list', '-n', 'shop', '-o', 'xml'),
    cli('--context', 'other', 'waypoint', 'list'),
  ]);
  t.equal(oneErrorLine(badFor), 'ambientctl: --for pods: use one of service, workload, all, none');
  t.match(oneErrorLine(badOut), /^ambientctl: -o xml: use json, yaml, or short/);
  t.equal(oneErrorLine(badContext), `ambientctl: --context other: no such context in ${kubeconfig} (contexts: kube-api-fixture)`);
  t.equal(api.requests.length, before, 'bad flags are refused before the API server is asked');

  const commands = [['waypoint', 'apply'], ['waypoint', 'list'], ['waypoint', 'status'], ['waypoint', 'delete', 'x']];
  const unknown = await Promise.all(commands.map((args) => cli(...args, '-n', 'nope')));
  for (const [i, r] of unknown.entries()) t.equal(oneErrorLine(r), `ambientctl: namespace nope not found in ${where}`, `${commands[i]!.join(' ')}: unknown namespace`);
  t.notOk(api.get(gwRef('nope', 'waypoint')), 'nothing was created in a namespace that does not exist');

  await t.test('no kubeconfig', async (t) => {
    const missing = join(dir, 'no-such-kubeconfig');
    const other = t.testdir({ '.kube': {} });
    await writeKubeconfig(join(other, '.kube', 'config'), api);
    const [flag, none, env, viaEnv, viaHome] = await Promise.all([
      runCli(['--kubeconfig', missing, 'waypoint', 'list'], { home }),
      runCli(['waypoint', 'list'], { home }),
      runCli(['waypoint', 'list'], { home, env: { KUBECONFIG: missing } }),
      // Found as kubectl finds it: $KUBECONFIG, else ~/.kube/config.
      runCli(['waypoint', 'list', '-n', 'shop'], { home, env: { KUBECONFIG: kubeconfig } }),
      runCli(['waypoint', 'list', '-n', 'shop'], { home: other }),
    ]);
    t.equal(oneErrorLine(flag), `ambientctl: --kubeconfig ${missing}: no such file`);
    t.equal(oneErrorLine(none), `ambientctl: no kubeconfig: no --kubeconfig, $KUBECONFIG is unset and ${join(home, '.kube', 'config')} does not exist; for the lab on this machine add --lab`);
    t.equal(oneErrorLine(env), `ambientctl: no kubeconfig: none of the files in $KUBECONFIG exists (${missing})`);
    t.equal(viaEnv.code, 0, viaEnv.stderr);
    t.equal(viaHome.code, 0, viaHome.stderr);
    t.equal(viaHome.stdout, 'No waypoints found.\n');
  });

  await t.test('API server unreachable', async (t) => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, HOST, r));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    const dead = join(dir, 'dead-kubeconfig');
    await writeKubeconfig(dead, { url: `http://${HOST}:${port}`, token: api.token });
    const r = await runCli(['--kubeconfig', dead, 'waypoint', 'list', '-n', 'shop'], { home });
    t.equal(oneErrorLine(r), `ambientctl: cannot reach the API server http://${HOST}:${port} (context kube-api-fixture): ECONNREFUSED connect ECONNREFUSED ${HOST}:${port}; check the kubeconfig's server address and that the cluster is up`);
    t.equal(r.stdout, '');
  });

  await t.test('the server refuses: 401, 403, 404 on the Gateway API', async (t) => {
    const badToken = join(dir, 'bad-token-kubeconfig');
    await writeKubeconfig(badToken, { url: api.url, token: 'wrong' });
    t.equal(oneErrorLine(await runCli(['--kubeconfig', badToken, 'waypoint', 'list', '-n', 'shop'], { home })), 'ambientctl: GET /api/v1/namespaces/shop: 401 Unauthorized: Unauthorized; check the kubeconfig credentials');

    api.failNext({ verb: 'list', resource: 'gateways', status: 403 });
    t.equal(
      oneErrorLine(await cli('waypoint', 'list', '-n', 'shop')),
      'ambientctl: GET /apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways: 403 InternalError: injected failure (403) by the test; check your RBAC permissions',
    );
    api.failNext({ verb: 'create', resource: 'gateways', status: 403 });
    t.match(oneErrorLine(await cli('waypoint', 'apply', '-n', 'shop')), /^ambientctl: POST \/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/shop\/gateways: 403 .*check your RBAC permissions$/);
    t.notOk(api.get(gwRef('shop', 'waypoint')));
    api.failNext({ verb: 'patch', resource: 'namespaces', status: 403 });
    const enroll = await cli('waypoint', 'apply', '-n', 'shop', '--enroll-namespace');
    t.match(oneErrorLine(enroll), /^ambientctl: PATCH \/api\/v1\/namespaces\/shop: 403 .*check your RBAC permissions$/);
    t.equal(enroll.stdout, '✅ waypoint shop/waypoint applied\n', 'the Gateway was applied before the label failed');

    api.failNext({ verb: 'create', resource: 'gateways', status: 404 });
    t.match(oneErrorLine(await cli('waypoint', 'apply', '-n', 'pay')), /^ambientctl: the Gateway API CRDs are not installed \(.*\); install them: kubectl apply -f https:\/\/github\.com\/kubernetes-sigs\/gateway-api\/releases\/download\/v1\.3\.0\/standard-install\.yaml$/);
  });
});

t.test('version: the client, and the control plane and ztunnels the cluster runs', async (t) => {
  resetNamespaces();
  const pod = (name: string, labels: Record<string, string>, image: string, nodeName = 'node-a') =>
    api.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'istio-system', labels }, spec: { nodeName, containers: [{ name: 'main', image }] }, status: { phase: 'Running' } });
  pod('istiod-5d8f7', { app: 'istiod' }, 'registry.example:5000/ambient/control-plane:0.1.0');
  pod('ztunnel-v1', { app: 'ztunnel' }, 'registry.example:5000/ambient/ztunnel:0.1.0');
  pod('ztunnel-v2', { app: 'ztunnel' }, 'ambient/ztunnel', 'node-b');
  t.teardown(() => {
    for (const n of ['istiod-5d8f7', 'ztunnel-v1', 'ztunnel-v2']) api.remove({ apiVersion: 'v1', kind: 'Pod', namespace: 'istio-system', name: n });
  });

  const [r, json, y, short, nothing, local] = await Promise.all([
    cli('version'),
    cli('version', '-o', 'json'),
    cli('version', '-o', 'yaml'),
    cli('version', '--short'),
    cli('-i', 'elsewhere', 'version'),
    runCli(['version'], { home }),
  ]);
  t.equal(r.code, 0, r.stderr);
  t.same(rows(r), [
    ['COMPONENT', 'NAME', 'VERSION'],
    ['client', 'ambientctl', '0.1.0'],
    ['control-plane', 'istio-system/istiod-5d8f7', '0.1.0 (image registry.example:5000/ambient/control-plane:0.1.0)'],
    ['ztunnel', 'istio-system/ztunnel-v1', '0.1.0 (image registry.example:5000/ambient/ztunnel:0.1.0)'],
    ['ztunnel', 'istio-system/ztunnel-v2', 'unknown (image ambient/ztunnel has no tag)'],
  ], 'the registry port is not taken for a tag');
  t.ok(api.requests.some((q) => q.verb === 'list' && q.resource === 'pods' && q.namespace === 'istio-system' && q.query.labelSelector === 'app=istiod'), 'control-plane pods by --control-plane-selector');
  t.same((JSON.parse(json.stdout) as Raw[])[0], { component: 'client', name: 'ambientctl', version: '0.1.0' });
  t.equal((JSON.parse(json.stdout) as Raw[]).length, 4);
  t.same(yaml.load(y.stdout), JSON.parse(json.stdout));
  t.equal(short.stdout, '0.1.0\n');
  t.equal(nothing.code, 0, nothing.stderr);
  t.same(rows(nothing), [['COMPONENT', 'NAME', 'VERSION'], ['client', 'ambientctl', '0.1.0']]);
  t.equal(nothing.stderr, `(no mesh components found in the cluster ${api.url} (context kube-api-fixture))\n`);
  t.equal(local.code, 0, local.stderr);
  t.same(rows(local), [['COMPONENT', 'NAME', 'VERSION'], ['client', 'ambientctl', '0.1.0']], 'no kubeconfig asked for: only the client, no error');
  api.failNext({ verb: 'list', resource: 'pods', status: 403 });
  t.match(oneErrorLine(await cli('version')), /^ambientctl: GET \/api\/v1\/namespaces\/istio-system\/pods\?labelSelector=app%3Distiod: 403 .*check your RBAC permissions$/);
});

t.test('precheck: every check reported with a status; the exit code follows FAILs', async (t) => {
  resetNamespaces();
  const STATUSES = ['OK', 'WARN', 'FAIL'];
  const [r, table] = await Promise.all([cli('precheck', '-o', 'json'), cli('precheck')]);
  const checks = JSON.parse(r.stdout) as Array<{ check: string; status: string; detail: string; fix?: string }>;
  const names = checks.map((c) => c.check);
  for (const want of ['kernel', 'cgroup v2', 'kernel BTF', 'bpftool', 'CNI config', 'cilium socket-LB', 'sidecar injector']) t.ok(names.includes(want), `reports ${want}`);
  for (const c of checks) {
    t.ok(STATUSES.includes(c.status), `${c.check}: ${c.status}`);
    t.ok(c.detail.length > 0, `${c.check} says what it found`);
    if (c.status !== 'OK') t.ok(c.fix, `${c.check} (${c.status}) says what to do`);
  }
  const failed = checks.filter((c) => c.status === 'FAIL').length;
  if (failed > 0) t.equal(oneErrorLine(r), `ambientctl: ${failed} check${failed > 1 ? 's' : ''} failed`, 'FAILs on this machine make exit 1 with the count');
  else t.equal(r.code, 0, r.stderr);
  t.ok(api.requests.some((q) => q.path === '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations'), 'the cluster checks ran against the kubeconfig');
  t.same(rows(table)[0], ['STATUS', 'CHECK', 'DETAIL', 'FIX']);
  t.equal(rows(table).length, checks.length + 1, 'one row per check');

  await t.test('controlled inputs: each check fails for its own reason', async (t) => {
    const proc = join(dir, 'proc');
    await mkdir(join(proc, 'self'), { recursive: true });
    await writeFile(join(proc, 'self', 'mountinfo'), '24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n');
    await writeFile(join(dir, 'cni', '10-calico.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'calico' }, { type: 'istio-cni' }] }));
    await writeFile(join(dir, 'btf'), '');
    api.apply({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'istio-sidecar-injector' }, webhooks: [] });
    api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'both', labels: { 'istio-injection': 'enabled', 'istio.io/dataplane-mode': 'ambient' } } });
    t.teardown(() => api.remove({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', name: 'istio-sidecar-injector' }));
    const run = await cli('precheck', '--kernel-release', '5.4.0-150-generic', '--proc-dir', proc, '--btf-path', join(dir, 'btf'), '--cni-conf-dir', join(dir, 'cni'), '--bpftool', join(dir, 'no-bpftool'), '-o', 'json');
    const got = Object.fromEntries((JSON.parse(run.stdout) as Array<{ check: string; status: string; detail: string }>).map((c) => [`${c.check}/${c.status}`, c.detail]));
    t.match(got['kernel/FAIL'], /^5\.4\.0-150-generic is older than/);
    t.equal(got['cgroup v2/OK'], 'mounted at /sys/fs/cgroup');
    t.equal(got['kernel BTF/OK'], join(dir, 'btf'));
    t.equal(got['bpftool/FAIL'], `${join(dir, 'no-bpftool')} not found in PATH`);
    t.equal(got['CNI config/OK'], `${join(dir, 'cni', '10-calico.conflist')} (plugins: calico, istio-cni)`);
    t.match(got['other meshes/FAIL'], /^istio-cni in .*Istio's ztunnel would capture the same pods/);
    t.equal(got['cilium socket-LB/WARN'], 'not checked: needs bpftool');
    t.match(got['sidecar injector/WARN'], /^istio-sidecar-injector is installed/);
    t.equal(got['sidecar injector/FAIL'], 'namespaces both injected and ambient: both');
    t.equal(oneErrorLine(run), 'ambientctl: 4 checks failed');

    const noCni = await cli('precheck', '--cni-conf-dir', join(dir, 'nowhere'), '-o', 'json');
    t.match((JSON.parse(noCni.stdout) as Array<{ check: string; status: string; detail: string }>).find((c) => c.check === 'CNI config'), { status: 'FAIL', detail: `no CNI config directory (looked in ${join(dir, 'nowhere')})` }, 'no CNI: reported, not a crash');
  });

  const noKube = await runCli(['precheck', '--cni-conf-dir', join(dir, 'cni'), '-o', 'json'], { home });
  t.equal(noKube.stderr.split('\n')[0], '(no kubeconfig: cluster checks skipped)', 'no kubeconfig: node checks only, said so');
  t.notOk((JSON.parse(noKube.stdout) as Array<{ check: string }>).some((c) => c.check === 'sidecar injector'));
  t.equal(oneErrorLine(await runCli(['precheck', '--kubeconfig', join(dir, 'none')], { home })), `ambientctl: --kubeconfig ${join(dir, 'none')}: no such file`, 'a kubeconfig asked for must exist');
});

t.test('ztunnel-config reads a real ztunnel\'s /config_dump through a port-forward', async (t) => {
  resetNamespaces();
  const WAYPOINT_VIP = '10.96.0.99';
  const config = baseConfig(base, {
    workloads: [
      { name: 'client', namespace: 'default', serviceAccount: 'client', node: 'node-a', ips: [`${base}.10`], labels: { app: 'client' } },
      { name: 'server', namespace: 'default', serviceAccount: 'server', node: 'node-b', ips: [`${base}.20`], labels: { app: 'server' } },
      { name: 'waypoint', namespace: 'data', serviceAccount: 'waypoint', node: 'node-b', ips: [`${base}.30`], labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
      { name: 'db', namespace: 'data', serviceAccount: 'db', node: 'node-a', ips: [`${base}.40`], labels: { app: 'db' }, waypoint: { address: WAYPOINT_VIP }, healthy: false },
      { name: 'legacy', namespace: 'default', serviceAccount: 'legacy', node: 'node-b', ips: [`${base}.50`], protocol: 'TCP', labels: { app: 'legacy' } },
    ],
    services: [
      { name: 'server', namespace: 'default', vips: ['10.96.0.10'], ports: [{ port: 80, targetPort: 9090 }], selector: { app: 'server' } },
      { name: 'waypoint', namespace: 'data', vips: [WAYPOINT_VIP], ports: [{ port: 15008 }], selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
      { name: 'db', namespace: 'data', vips: ['10.96.0.20'], ports: [{ port: 5432 }], selector: { app: 'db' }, waypoint: { address: WAYPOINT_VIP } },
    ],
    authorizationPolicies: [
      { name: 'deny-db', namespace: 'data', spec: { selector: { matchLabels: { app: 'db' } }, action: 'DENY', rules: [{ from: [{ source: { namespaces: ['default'] } }] }] } },
      { name: 'allow-mesh', namespace: 'istio-system', spec: { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default', 'data'] } }] }] } },
      { name: 'default-ns', namespace: 'default', spec: { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }] }] } },
    ],
    peerAuthentications: [{ name: 'strict', namespace: 'data', spec: { mtls: { mode: 'STRICT' } } }],
  });
  const echo = await echoServer(`${base}.20`, 9090);
  const mesh = await startMesh({ dir: t.testdir(), base, config });
  t.teardown(async () => {
    await mesh.close();
    await closeServer(echo.server);
  });
  // Traffic from client (node-a) to server (node-b): node-a gets the client's certificate, node-b the server's.
  const { reply, socket } = await socks5Connect({ proxy: { host: mesh.addr.a, port: 15080 }, localAddress: `${base}.10`, host: `${base}.20`, port: 9090 });
  t.equal(reply, 0, 'client reaches server through the mesh');
  socket.end('ping');
  t.equal((await readAll(socket)).toString(), 'ping');

  const zpod = (name: string, nodeName: string, phase = 'Running', labels: Record<string, string> = { app: 'ztunnel' }, namespace = 'istio-system') =>
    api.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels }, spec: { nodeName, hostNetwork: true, containers: [{ name: 'ztunnel', image: 'ambient/ztunnel:0.1.0' }] }, status: { phase, podIP: nodeName === 'node-a' ? mesh.addr.a : mesh.addr.b } });
  zpod('ztunnel-aaaaa', 'node-a');
  zpod('ztunnel-bbbbb', 'node-b');
  zpod('ztunnel-old', 'node-a', 'Succeeded');
  zpod('not-ztunnel', 'node-a', 'Running', { app: 'other' });
  // What the kubelet reaches as localhost:15000 inside each pod: that ztunnel's admin listener.
  api.setPortForward('istio-system', 'ztunnel-aaaaa', 15000, { host: mesh.addr.a, port: 15000 });
  api.setPortForward('istio-system', 'ztunnel-bbbbb', 15000, { host: mesh.addr.b, port: 15000 });

  type Dump = { workloads: Raw[]; services: Raw[]; authorizationPolicies: Raw[]; peerAuthentications: Raw[]; certificates: Record<string, Raw> };
  const dumpOf = (z: { configDump(): unknown }) => JSON.parse(JSON.stringify(z.configDump())) as Dump;
  const byNsName = (a: Raw, b: Raw) => String(a.namespace).localeCompare(String(b.namespace)) || String(a.name).localeCompare(String(b.name));
  const zc = (...args: string[]) => cli('ztunnel-config', ...args);
  const forwardsTo = (pod: string) => api.requests.filter((q) => q.subresource === 'portforward' && q.name === pod).length;

  await t.test('workloads: the table and -o json match what the ztunnel holds', async (t) => {
    const held = dumpOf(mesh.a);
    const vipName = new Map(held.services.map((s) => [(s.vips as string[])[0], String(s.name)]));
    const expected = [...held.workloads].sort(byNsName);
    t.equal(expected.length, 5);
    const before = forwardsTo('ztunnel-aaaaa');
    const [r, json, y, filtered, first] = await Promise.all([
      zc('workloads', '--node', 'node-a'),
      zc('workloads', '--node', 'node-a', '-o', 'json'),
      zc('workloads', '--node', 'node-a', '-o', 'yaml'),
      zc('workloads', '--node', 'node-a', '--workload-namespace', 'default', '--workload-node', 'node-b'),
      zc('workloads'),
    ]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stderr, '', 'no note when --node picked the ztunnel');
    t.same(rows(r), [
      ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'],
      ...expected.map((w) => [w.namespace, w.name, (w.ips as string[])[0], w.node, w.waypoint ? vipName.get((w.waypoint as Raw).address as string) : 'None', w.protocol]),
    ]);
    t.same(rows(r)[1], ['data', 'db', `${base}.40`, 'node-a', 'waypoint', 'HBONE'], 'a waypoint VIP is shown by its service name');
    t.same(rows(r).at(-1), ['default', 'server', `${base}.20`, 'node-b', 'None', 'HBONE']);
    t.equal(forwardsTo('ztunnel-aaaaa'), before + 5, 'one port-forward per run, each to the ztunnel pod of node-a');
    const pf = api.requests.filter((q) => q.subresource === 'portforward').at(-1)!;
    t.same({ path: pf.path, ports: pf.query.ports }, { path: '/api/v1/namespaces/istio-system/pods/ztunnel-aaaaa/portforward', ports: '15000' });

    t.equal(json.code, 0, json.stderr);
    t.same(JSON.parse(json.stdout), expected, '-o json: the workloads exactly as in /config_dump');
    t.same(yaml.load(y.stdout), expected);
    t.same(rows(filtered).slice(1).map((x) => x[1]), ['legacy', 'server']);
    t.equal(first.code, 0, first.stderr);
    t.equal(first.stderr, '(ztunnel ztunnel-aaaaa on node-a; --node picks another)\n', 'without --node: the first Running ztunnel by node, said so');
  });

  await t.test('services and policies', async (t) => {
    const held = dumpOf(mesh.b);
    const healthy = new Set(held.workloads.filter((w) => w.healthy !== false).map((w) => w.uid));
    const services = [...held.services].sort(byNsName);
    const [r, sJson, p, pJson, pNs] = await Promise.all([
      zc('services', '--node', 'node-b'),
      zc('services', '--node', 'node-b', '-o', 'json'),
      zc('policies', '--node', 'node-b'),
      zc('policies', '--node', 'node-b', '-o', 'json'),
      zc('policies', '--node', 'node-b', '--policy-namespace', 'data'),
    ]);
    t.equal(r.code, 0, r.stderr);
    t.same(rows(r), [
      ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'],
      ...services.map((s) => [s.namespace, s.name, (s.vips as string[])[0], s.waypoint ? 'waypoint' : 'None', `${(s.endpoints as string[]).filter((e) => healthy.has(e)).length}/${(s.endpoints as string[]).length}`]),
    ]);
    t.same(rows(r)[1], ['data', 'db', '10.96.0.20', 'waypoint', '0/1'], 'an unhealthy endpoint is not counted as ready');
    t.same(JSON.parse(sJson.stdout), services);

    const SCOPE: Record<string, string> = { mesh: 'Global', namespace: 'Namespace', workload: 'WorkloadSelector' };
    const pols = [
      ...held.authorizationPolicies.map((p) => ({ raw: p, row: [p.namespace, p.name, p.action, SCOPE[String(p.scope)]] })),
      ...held.peerAuthentications.map((p) => ({ raw: p, row: [p.namespace, p.name, `mTLS ${String(p.mode)}`, SCOPE[String(p.scope)]] })),
    ].sort((a, b) => byNsName(a.raw, b.raw));
    t.equal(p.code, 0, p.stderr);
    t.same(rows(p), [['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'], ...pols.map((x) => x.row)]);
    t.same(rows(p).slice(1), [
      ['data', 'deny-db', 'DENY', 'WorkloadSelector'],
      ['data', 'strict', 'mTLS STRICT', 'Namespace'],
      ['default', 'default-ns', 'ALLOW', 'Namespace'],
      ['istio-system', 'allow-mesh', 'ALLOW', 'Global'],
    ]);
    t.same(JSON.parse(pJson.stdout), pols.map((x) => x.raw));
    t.same(rows(pNs).slice(1).map((x) => x[1]), ['deny-db', 'strict']);
  });

  await t.test('certificates: --node picks the ztunnel pod of that node', async (t) => {
    const certRows = (d: Dump) =>
      Object.entries(d.certificates)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([id, c]) => [id, 'Leaf', 'Available', String(Date.parse(String(c.notBefore)) <= Date.now() && Date.now() < Date.parse(String(c.notAfter))), 'NA', c.notAfter, c.notBefore]);
    const [a, b, bJson, ambiguous] = await Promise.all([zc('certificates', '--node', 'node-a'), zc('certificates', '--node', 'node-b'), zc('certificates', '--node', 'node-b', '-o', 'json'), zc('certificates')]);
    t.equal(a.code, 0, a.stderr);
    t.same(rows(a), [['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'], ...certRows(dumpOf(mesh.a))]);
    // Each ztunnel holds the certificates of every meshed workload on its node (fetched ahead of use).
    const rowOf = (r: typeof a, id: string) => rows(r).slice(1).find((x) => x[0] === id);
    t.equal(rowOf(a, 'spiffe://cluster.local/ns/default/sa/client')?.[3], 'true', "node-a holds the client's certificate, valid");
    t.same(rows(b), [['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'], ...certRows(dumpOf(mesh.b))]);
    t.ok(rowOf(b, 'spiffe://cluster.local/ns/default/sa/server'), "node-b holds the server's");
    t.same(JSON.parse(bJson.stdout), Object.entries(dumpOf(mesh.b).certificates).map(([identity, c]) => ({ identity, ...c })));
    t.equal(oneErrorLine(ambiguous), 'ambientctl: 2 ztunnels (on node-a, node-b) hold different certificates; pick one with --node');
  });

  await t.test('which ztunnel: selector, namespace, node', async (t) => {
    t.equal(oneErrorLine(await zc('workloads', '--node', 'node-z')), `ambientctl: no ztunnel runs on node node-z in ${where} (ztunnels run on: node-a, node-b)`);
    t.equal(oneErrorLine(await cli('--ztunnel-selector', 'app=none', 'ztunnel-config', 'workloads')), `ambientctl: no ztunnel runs in ${where}`);
    t.ok(api.requests.some((q) => q.resource === 'pods' && q.query.labelSelector === 'app=none'), '--ztunnel-selector is the label selector sent');
    zpod('zt-custom', 'node-b', 'Running', { app: 'zt' }, 'mesh-system');
    api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'mesh-system' } });
    api.setPortForward('mesh-system', 'zt-custom', 15000, { host: mesh.addr.b, port: 15000 });
    const custom = await cli('-i', 'mesh-system', '--ztunnel-selector', 'app=zt', 'ztunnel-config', 'certificates');
    t.equal(custom.code, 0, custom.stderr);
    t.ok(rows(custom).slice(1).some((x) => x[0] === 'spiffe://cluster.local/ns/default/sa/server'), '-i and --ztunnel-selector find the pod; one ztunnel needs no --node');
  });

  await t.test('failures reaching ztunnel', async (t) => {
    api.setPortForward('istio-system', 'ztunnel-bbbbb', 15000, undefined);
    const refused = await zc('workloads', '--node', 'node-b');
    t.match(
      oneErrorLine(refused),
      /^ambientctl: ztunnel istio-system\/ztunnel-bbbbb on node-b: port-forward to istio-system\/ztunnel-bbbbb:15000: error forwarding port 15000 to pod ztunnel-bbbbb_istio-system, uid [-0-9a-f]+: failed to connect to localhost:15000 inside the pod's network namespace: connect: connection refused; is ztunnel's admin on 127\.0\.0\.1:15000 in the pod \(ADMIN_PORT, --proxy-admin-port\) and the pod running\?$/,
    );
    // A target that is registered but not listening: the real connect error comes back.
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, `${base}.3`, r));
    const closedPort = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    api.setPortForward('istio-system', 'ztunnel-bbbbb', 15000, { host: mesh.addr.b, port: closedPort });
    t.match(oneErrorLine(await zc('workloads', '--node', 'node-b')), /localhost:15000 inside the pod's network namespace: connect: ECONNREFUSED; is ztunnel's admin/);
    api.setPortForward('istio-system', 'ztunnel-bbbbb', 15000, { host: mesh.addr.b, port: 15000 });

    api.failNext({ verb: 'get', resource: 'pods', subresource: 'portforward', status: 403 });
    t.equal(
      oneErrorLine(await zc('workloads', '--node', 'node-b')),
      `ambientctl: port-forward to istio-system/ztunnel-bbbbb:15000: the API server ${api.url} refused the WebSocket upgrade with 403; check your RBAC permissions: a port-forward needs get and create on pods/portforward`,
    );
    api.remove({ apiVersion: 'v1', kind: 'Pod', namespace: 'istio-system', name: 'ztunnel-old' });

    // --proxy-admin-port at a port that is not ztunnel's admin: the metrics port answers text.
    api.setPortForward('istio-system', 'ztunnel-aaaaa', 15020, { host: mesh.addr.a, port: 15020 });
    t.equal(
      oneErrorLine(await cli('--proxy-admin-port', '15020', 'ztunnel-config', 'workloads', '--node', 'node-a')),
      "ambientctl: ztunnel istio-system/ztunnel-aaaaa on node-a: GET /config_dump on port 15020 answered 404: see /metrics (is port 15020 ztunnel's admin port? --proxy-admin-port)",
    );
    t.match(oneErrorLine(await cli('--proxy-admin-port', 'x', 'ztunnel-config', 'workloads')), /^ambientctl: --proxy-admin-port x: use a port number 1-65535$/);
    t.equal(api.portForwardConnections > 0, true);
  });

  await t.test('the fixture speaks the kubelet wire: port LE on both channels first, data on 2i, close when the pod side closes', async (t) => {
    const key = randomBytes(16).toString('base64');
    const req = http.request({
      host: HOST,
      port: Number(new URL(api.url).port),
      path: '/api/v1/namespaces/istio-system/pods/ztunnel-aaaaa/portforward?ports=15000',
      headers: { authorization: `Bearer ${api.token}`, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13', 'sec-websocket-protocol': 'v5.channel.k8s.io, v4.channel.k8s.io' },
    });
    req.end();
    const [res, sock, head] = (await once(req, 'upgrade')) as [http.IncomingMessage, net.Socket, Buffer];
    t.equal(res.headers['sec-websocket-protocol'], 'v4.channel.k8s.io', 'v5 is not served for port-forward; v4 is chosen');
    // A masked client frame: channel 0, then an HTTP request to the admin port.
    const payload = Buffer.concat([Buffer.from([0]), Buffer.from('GET /config_dump HTTP/1.0\r\nhost: localhost\r\n\r\n')]);
    const mask = randomBytes(4);
    sock.write(Buffer.concat([Buffer.from([0x82, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]));
    const raw = Buffer.concat([head, await readAll(sock)]);
    const frames: Array<{ opcode: number; data: Buffer }> = [];
    for (let off = 0; off < raw.length; ) {
      const opcode = raw[off]! & 0x0f;
      let len = raw[off + 1]! & 0x7f;
      let h = 2;
      if (len === 126) (len = raw.readUInt16BE(off + 2)), (h = 4);
      else if (len === 127) (len = Number(raw.readBigUInt64BE(off + 2))), (h = 10);
      frames.push({ opcode, data: raw.subarray(off + h, off + h + len) });
      off += h + len;
    }
    t.same([...frames[0]!.data], [0, 15000 & 0xff, 15000 >> 8], 'data channel 0: the port, 2 bytes little-endian');
    t.same([...frames[1]!.data], [1, 15000 & 0xff, 15000 >> 8], 'error channel 1: the port too');
    const data = Buffer.concat(frames.slice(2).filter((f) => f.opcode === 0x2).map((f) => { t.equal(f.data[0], 0, 'later frames carry their channel byte'); return f.data.subarray(1); }));
    t.match(data.toString(), /^HTTP\/1\.1 200 /);
    t.match(data.toString(), /"workloads":/);
    t.equal(frames.at(-1)!.opcode, 0x8, 'the WebSocket is closed once ztunnel closed the connection');
  });
});

t.test('docs/ambientctl.md lists every error code', async (t) => {
  const doc = await readFile(new URL('../../docs/ambientctl.md', import.meta.url), 'utf8');
  for (const code of Object.values(CLI_ERROR_CODES)) t.ok(doc.includes(`\`${code}\``), `${code} is documented`);
});
