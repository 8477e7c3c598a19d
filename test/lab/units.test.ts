// The lab's pure parts, without root: manifest checks, nftables rules, metrics edges, process
// argv, and `up` stopping before any change when a prerequisite is missing.
import t from 'tap';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { edgesFromMetrics } from '../../lab/demo.js';
import { enrolmentChanges } from '../../lab/label.js';
import { containerArgv, loadManifests } from '../../lab/manifests.js';
import { serviceRules } from '../../lab/services.js';
import { podArgv } from '../../lab/sys.js';
import type { LabState, PodRecord } from '../../lab/state.js';

const dump = (objs: object[]) => objs.map((o) => yaml.dump(o)).join('---\n');

t.test('manifests: every problem named with file, object and field; none applied', async (t) => {
  const dir = t.testdir({
    'a.yaml': dump([
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ok', namespace: 'x' }, spec: { containers: [{ name: 'c', image: 'lab/sleep' }] } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'noimg', namespace: 'x' }, spec: { containers: [{ name: 'c', image: 'lab/nginx' }] } },
    ]),
    'b.yaml': dump([{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'x' }, spec: { replicas: 1, selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [] } } } }]),
  });
  const err = await loadManifests(dir).catch((e: unknown) => e as Error & { code: string });
  t.match(err, { code: 'ERR_LAB_BAD_MANIFEST' });
  t.match((err as Error).message, /a\.yaml#2: Pod x\/noimg: spec\.containers\[0\]\.image: "lab\/nginx" is not a built-in image/);
  t.match((err as Error).message, /b\.yaml#1: Deployment x\/d: spec\.template\.spec\.containers: /);
  t.match((err as Error).message, /nothing was applied/);
  const good = await loadManifests(join(dir, 'a.yaml')).catch((e: Error) => e);
  t.ok(good instanceof Error, 'one bad object rejects its whole file');
});

t.test('issue 19: a Deployment asking for more replicas than the lab runs is refused before anything is made', async (t) => {
  const deployment = (replicas: number) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'x' }, spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'lab/sleep' }] } } } });
  const dir = t.testdir({ 'big.yaml': dump([deployment(2147483647)]), 'ok.yaml': dump([deployment(100)]) });
  const err = await loadManifests(join(dir, 'big.yaml')).catch((e: unknown) => e as Error & { code: string });
  t.match(err, { code: 'ERR_LAB_BAD_MANIFEST', message: /big\.yaml#1: Deployment x\/web: spec\.replicas: 2147483647 replicas are more than the lab runs for one Deployment; expected at most 100$/ });
  t.equal((await loadManifests(join(dir, 'ok.yaml'))).length, 1, '100 replicas are accepted');
});

t.test('container argv: command + args, or the built-in program of a lab/ image', async (t) => {
  t.same(containerArgv({ command: ['python3', '-m', 'http.server'], args: ['8000'] }), ['python3', '-m', 'http.server', '8000']);
  const [node, script, ...rest] = containerArgv({ image: 'lab/http-echo', args: ['x'] });
  t.equal(node, process.execPath);
  t.match(script, /dist\/lab\/images\/http-echo\.js$/);
  t.same(rest, ['x']);
  t.match(containerArgv({ command: ['lab/get', 'http://web/'] }), [process.execPath, /get\.js$/, 'http://web/']);
});

t.test('process argv: cgroup first, then the network namespace, then the hosts file mount', async (t) => {
  const argv = podArgv(['app'], { cgroup: '/cg', netns: '/var/run/netns/p', hosts: '/h' });
  t.equal(argv[0], 'sh');
  t.match(argv[2], /cgroup\.procs/);
  t.equal(argv[3], '/cg');
  t.same(argv.slice(4, 7), ['nsenter', '--net=/var/run/netns/p', '--']);
  t.same(argv.slice(7, 11), ['unshare', '--mount', '--propagation', 'private']);
  t.equal(argv.at(-1), 'app');
});

t.test('service rules: DNAT to the selected pods, per target port, and masquerade', async (t) => {
  const pod = (name: string, ip: string, labels: Record<string, string>, ns = 'apps'): PodRecord =>
    ({ namespace: ns, name, ip, raw: { metadata: { name, namespace: ns, labels }, spec: { containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] } } }) as unknown as PodRecord;
  const s = {
    objects: {
      'Service/apps/web': { kind: 'Service', metadata: { name: 'web', namespace: 'apps' }, spec: { clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] } },
      'Service/apps/empty': { kind: 'Service', metadata: { name: 'empty', namespace: 'apps' }, spec: { clusterIP: '10.96.0.11', selector: { app: 'none' }, ports: [{ port: 80 }] } },
    },
    pods: { a: pod('a', '10.244.1.2', { app: 'web' }), b: pod('b', '10.244.2.2', { app: 'web' }), c: pod('c', '10.244.1.3', { app: 'web' }, 'other') },
  } as unknown as LabState;
  const rules = serviceRules(s);
  t.match(rules, /^table ip lab_services\ndelete table ip lab_services\n/, 'replaces the table in one transaction');
  t.match(rules, 'ip daddr 10.96.0.10 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.244.1.2, 1 : 10.244.2.2 } : 8080');
  t.notMatch(rules, '10.244.1.3', 'a pod of another namespace is no endpoint');
  t.notMatch(rules, '10.96.0.11', 'no endpoints, no rule');
  t.match(rules, 'ct status dnat masquerade');
});

t.test('enrolment changes: only pods whose agent decision flips, with the target state', async (t) => {
  const pod = (namespace: string, name: string, labels: Record<string, string> = {}) => ({ namespace, name, node: 'node-1', raw: { metadata: { name, namespace, labels } } });
  const pods = [
    pod('demo', 'frontend', { app: 'frontend' }),
    pod('demo', 'waypoint-abc-0', { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'istio.io/dataplane-mode': 'none' }),
    pod('demo', 'opted-out', { 'istio.io/dataplane-mode': 'none' }),
    pod('other', 'web'),
    pod('istio-system', 'tool'),
  ];
  const ns = (entries: Record<string, Record<string, string>>) => new Map(Object.entries(entries));
  const ambientDemo = { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' };
  const row = (c: { namespace: string; name: string; enrolled: boolean }) => `${c.namespace}/${c.name}:${c.enrolled ? 'enrol' : 'release'}`;

  t.same(enrolmentChanges(pods, ns({ demo: ambientDemo, other: {} }), ns({ demo: { 'istio.io/dataplane-mode': 'ambient' }, other: {} })), [], 'use-waypoint- changes no enrolment (the waypoint pod is never enrolled)');
  t.same(
    enrolmentChanges(pods, ns({ demo: ambientDemo, other: {} }), ns({ demo: { 'istio.io/use-waypoint': 'waypoint' }, other: {} })).map(row),
    ['demo/frontend:release'],
    'dataplane-mode- releases only the enrolled pods of that namespace',
  );
  const on = enrolmentChanges(pods, ns({ demo: {}, other: {} }), ns({ demo: {}, other: { 'istio.io/dataplane-mode': 'ambient' } }));
  t.same(on.map(row), ['other/web:enrol'], 'dataplane-mode=ambient enrols the namespace\'s pods');
  t.match(on[0], { node: 'node-1', reason: 'namespace other is ambient' }, 'with the agent\'s own reason');
  t.same(enrolmentChanges(pods, ns({}), ns({ 'istio-system': { 'istio.io/dataplane-mode': 'ambient' } })), [], 'an exempt namespace is never enrolled');
  t.same(enrolmentChanges(pods, ns({ demo: {} }), ns({ demo: { 'istio.io/dataplane-mode': 'sidecar' } })), [], 'a value other than ambient enrols nothing');
});

t.test('edges from metrics: destination-reported TCP metrics summed per identity pair', async (t) => {
  const l = 'reporter="destination",source_principal="spiffe://cluster.local/ns/a/sa/c",destination_principal="spiffe://cluster.local/ns/a/sa/s",connection_security_policy="mutual_tls"';
  const text = [
    `istio_tcp_connections_opened_total{${l}} 3`,
    `istio_tcp_sent_bytes_total{${l}} 100`,
    `istio_tcp_received_bytes_total{${l}} 900`,
    `istio_tcp_connections_opened_total{${l.replace('destination"', 'source"')}} 3`,
    '# HELP something',
  ].join('\n');
  t.same(edgesFromMetrics([text, text]), [
    { source: 'spiffe://cluster.local/ns/a/sa/c', destination: 'spiffe://cluster.local/ns/a/sa/s', security: 'mutual_tls', connections: 6, sent: 200, received: 1800 },
  ]);
});

t.test('lab up stops before changing anything when a prerequisite is missing', async (t) => {
  const { up, leftovers } = await t.mockImport<typeof import('../../lab/cluster.js')>('../../lab/cluster.js', {
    '../../lab/prereq.js': { checkPrerequisites: async () => [{ what: 'the nft command', fix: 'apt-get install nftables' }] },
  });
  const paths = { prefix: `amb-lu${process.pid}`, stateDir: join(t.testdir(), 'state') };
  const err = await up(paths).catch((e: unknown) => e);
  t.match(err, { code: 'ERR_LAB_PREREQUISITES', message: /missing:\n {2}- the nft command: apt-get install nftables\nnothing was changed/ });
  t.same(await leftovers(paths), [], 'nothing was created');
});
