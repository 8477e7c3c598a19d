// `ambientctl --lab waypoint ...` against a lab-style store in a temp directory: the lab's own
// apply/delete/label code writes lab.json and the control plane's manifests, as `lab apply` does.
// No lab is started (no nodes, no processes), so this runs without root.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import type { LabState } from '../../lab/state.js';
import { oneErrorLine, runCli } from './run.js';

type Raw = Record<string, unknown>;

function emptyLab(prefix: string, objects: Record<string, Raw> = {}): LabState {
  return { prefix, fabricNetns: `${prefix}-fabric`, controlPlaneIp: '10.240.0.254', nodes: [], procs: {}, objects, pods: {}, created: new Date().toISOString() };
}

async function labState(dir: string): Promise<LabState> {
  return JSON.parse(await readFile(join(dir, 'lab.json'), 'utf8')) as LabState;
}

const OWNER = [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', controller: true }];

/** A Gateway as the lab stores it once its controller ran it (lab/waypoints.ts), with what it derived. */
function storedWaypoint(ns: string, name: string, labels: Record<string, string>, programmed: 'True' | 'False'): Record<string, Raw> {
  return {
    [`Gateway/${ns}/${name}`]: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name, namespace: ns, labels },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
      status: {
        addresses: [{ type: 'IPAddress', value: '10.96.0.10' }],
        conditions: [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Resource accepted' },
          programmed === 'True'
            ? { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'Resource programmed, assigned to service(s)' }
            : { type: 'Programmed', status: 'False', reason: 'Pending', message: 'the waypoint pod is not ready yet' },
        ],
      },
    },
    [`Service/${ns}/${name}`]: { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, ownerReferences: OWNER.map((o) => ({ ...o, name })) }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'mesh', port: 15008 }] } },
  };
}

t.test('waypoint list, status, delete and enrolment in the lab store', async (t) => {
  const dir = t.testdir({ home: {}, lab: {} });
  const labDir = join(dir, 'lab');
  await writeFile(
    join(labDir, 'lab.json'),
    JSON.stringify(
      emptyLab('amb-clitest', {
        'Namespace//shop': { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } } },
        'Namespace//pay': { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'pay', labels: {} } },
        ...storedWaypoint('shop', 'waypoint', { 'istio.io/waypoint-for': 'all' }, 'True'),
        ...storedWaypoint('shop', 'other', { 'istio.io/rev': 'canary' }, 'False'),
        ...storedWaypoint('pay', 'waypoint', {}, 'True'),
        'Gateway/pay/ingress': { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'pay' }, spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } },
      }),
    ),
  );
  const home = join(dir, 'home');
  const cli = (...args: string[]) => runCli(['--lab-dir', labDir, ...args], { home });

  const list = await cli('waypoint', 'list', '-n', 'shop');
  t.equal(list.code, 0, list.stderr);
  t.same(list.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/)), [
    ['NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'],
    ['other', 'canary', 'service', 'False'],
    ['waypoint', 'default', 'all', 'True'],
  ]);

  const all = await cli('waypoint', 'list', '-A');
  t.same(all.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/)), [
    ['NAMESPACE', 'NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'],
    ['pay', 'waypoint', 'default', 'service', 'True'],
    ['shop', 'other', 'canary', 'service', 'False'],
    ['shop', 'waypoint', 'default', 'all', 'True'],
  ], 'only istio-waypoint Gateways, sorted by namespace and name');
  const json = await cli('waypoint', 'list', '-n', 'pay', '-o', 'json');
  t.match(JSON.parse(json.stdout), { kind: 'List', items: [{ metadata: { name: 'waypoint', namespace: 'pay' }, status: { conditions: [{ type: 'Accepted' }, { type: 'Programmed', status: 'True' }] } }] });

  const status = await cli('waypoint', 'status', '-n', 'shop');
  t.equal(status.code, 0, status.stderr);
  t.same(status.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/)), [
    ['NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'],
    ['other', 'False', 'Programmed', 'Pending', 'the waypoint pod is not ready yet'],
    ['waypoint', 'True', 'Programmed', 'Programmed', 'Resource programmed, assigned to service(s)'],
  ]);
  const waited = await cli('waypoint', 'status', '-n', 'shop', '--name', 'other', '--wait', '--waypoint-timeout', '1s');
  t.equal(oneErrorLine(waited), 'ambientctl: timed out after 1s waiting for shop/other to be programmed');
  t.match(waited.stdout, /other\s+False\s+Programmed\s+Pending/, 'the table is printed before the error');

  await t.test('enrolling the namespace in another waypoint needs --overwrite; nothing is applied without it', async (t) => {
    const before = await readFile(join(labDir, 'lab.json'), 'utf8');
    const refused = await cli('waypoint', 'apply', '-n', 'shop', '--name', 'other', '--enroll-namespace');
    t.equal(oneErrorLine(refused), 'ambientctl: namespace shop already uses waypoint waypoint (istio.io/use-waypoint=waypoint); add --overwrite to switch it to other; nothing was applied');
    t.equal(refused.stdout, '');
    t.equal(await readFile(join(labDir, 'lab.json'), 'utf8'), before, 'the store is untouched');
  });

  await t.test('delete by name removes the Gateway and what the lab derived from it; the label left behind is pointed out', async (t) => {
    const del = await cli('waypoint', 'delete', 'waypoint', '-n', 'shop');
    t.equal(del.code, 0, del.stderr);
    t.equal(del.stdout, 'waypoint shop/waypoint deleted\n');
    t.match(del.stderr, /namespace shop still has istio\.io\/use-waypoint=waypoint; .*ambientctl lab label namespace shop istio\.io\/use-waypoint-/);
    const s = await labState(labDir);
    t.notOk(s.objects['Gateway/shop/waypoint']);
    t.notOk(s.objects['Service/shop/waypoint'], 'its Service went with it');
    t.ok(s.objects['Gateway/shop/other'], 'the other one stays');
    const manifests = yaml.loadAll(await readFile(join(labDir, 'manifests', 'lab.yaml'), 'utf8')) as Raw[];
    t.notOk(manifests.some((m) => m.kind === 'Gateway' && (m.metadata as Raw).name === 'waypoint' && (m.metadata as Raw).namespace === 'shop'), 'gone from the manifests the control plane reads');

    const missing = await cli('waypoint', 'delete', 'nope', 'other', '-n', 'shop');
    t.equal(missing.stdout, 'waypoint shop/other deleted\n', 'the ones that exist are deleted');
    t.equal(oneErrorLine(missing), 'ambientctl: waypoint shop/nope not found (ambientctl waypoint list -n shop)');
    t.match(oneErrorLine(await cli('waypoint', 'delete', '-n', 'shop')), /name the waypoints to delete, or use --all/);
    t.match(oneErrorLine(await cli('waypoint', 'delete', 'x', '--all', '-n', 'shop')), /give waypoint names or --all\/--revision, not both/);
    const every = await cli('waypoint', 'delete', '--all', '-n', 'pay');
    t.equal(every.stdout, 'waypoint pay/waypoint deleted\n', 'only waypoints: the istio Gateway stays');
    t.ok((await labState(labDir)).objects['Gateway/pay/ingress']);
    t.equal((await cli('waypoint', 'list', '-n', 'pay')).stdout, 'No waypoints found.\n');
  });

  await t.test('bad input: one line on stderr, exit 1, nothing changed', async (t) => {
    const before = await readFile(join(labDir, 'lab.json'), 'utf8');
    const where = `the lab amb-lab (${labDir})`;
    t.equal(oneErrorLine(await cli('waypoint', 'apply', '-n', 'nope')), `ambientctl: namespace nope not found in ${where}`);
    t.equal(oneErrorLine(await cli('waypoint', 'list', '-n', 'nope')), `ambientctl: namespace nope not found in ${where}`);
    t.equal(oneErrorLine(await cli('waypoint', 'delete', 'x', '-n', 'nope')), `ambientctl: namespace nope not found in ${where}`);
    t.equal(oneErrorLine(await cli('waypoint', 'apply', '-n', 'shop', '--for', 'pods')), 'ambientctl: --for pods: use one of service, workload, all, none');
    t.match(oneErrorLine(await cli('waypoint', 'apply', '-n', 'shop', '--name', 'Bad_Name')), /^ambientctl: --name "Bad_Name": use at most 63 lowercase letters/);
    t.match(oneErrorLine(await cli('waypoint', 'apply', '-n', 'shop', '--name', 'none')), /'none' is a reserved value/);
    t.match(oneErrorLine(await cli('waypoint', 'apply', '-n', 'shop', '--wait', '--waypoint-timeout', 'soon')), /^ambientctl: --waypoint-timeout soon: use a duration such as 90s/);
    t.match(oneErrorLine(await cli('waypoint', 'list', '-n', 'shop', '-o', 'xml')), /^ambientctl: -o xml: use json, yaml, or short/);
    t.match(oneErrorLine(await cli('waypoint', 'status', '-n', 'shop', '--name', 'ghost')), /^ambientctl: waypoint shop\/ghost not found/);
    t.equal(await readFile(join(labDir, 'lab.json'), 'utf8'), before);
    const noLab = await runCli(['--lab-dir', join(dir, 'nowhere'), 'waypoint', 'list'], { home });
    t.equal(oneErrorLine(noLab), `ambientctl: no lab is up in ${join(dir, 'nowhere')} (no lab.json); start one with ambientctl lab up, or drop --lab to use a cluster`);
    t.match(oneErrorLine(await runCli(['--lab', '--kubeconfig', '/x', 'waypoint', 'list'], { home })), /--lab and --kubeconfig\/--context choose different targets/);
    t.match(oneErrorLine(await runCli(['--lab-prefix', 'Bad!', 'waypoint', 'list'], { home })), /--lab-prefix "Bad!"/);
  });
});

t.test('generate prints the Gateway istioctl would, without a target', async (t) => {
  const r = await runCli(['waypoint', 'generate', '-n', 'shop', '--for', 'workload', '-r', 'canary'], { home: t.testdir() });
  t.equal(r.code, 0, r.stderr);
  t.same(yaml.load(r.stdout), {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'workload', 'istio.io/rev': 'canary' } },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  });
});
