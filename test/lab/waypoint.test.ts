// Issue 6 in the lab: `lab up --demo` runs a waypoint for the demo namespace (the lab's gateway
// controller derives its Deployment, Service and ServiceAccount from the Gateway), the HTTPRoute
// splits the backend 90/10 per request, the VirtualService injects a fault, and deleting the
// Gateway takes the waypoint away while traffic goes on directly. Root only; skips with the
// reason otherwise. Everything is named amb-lw<pid>-*.
import t from 'tap';
import { labRunner } from './cli.js';
import * as yaml from 'js-yaml';
import { checkPrerequisites } from '../../lab/prereq.js';
import { leftovers } from '../../lab/cluster.js';
import { DEMO_SPLIT } from '../../lab/demo.js';
import { defaultPaths, readState } from '../../lab/state.js';

const prefix = `amb-lw${process.pid}`;
const paths = defaultPaths(prefix);

const missing = await checkPrerequisites();
const skip = missing.length > 0 ? `the lab needs: ${missing.map((m) => m.what).join('; ')}` : false;

const lab = labRunner(prefix);

t.test('the demo runs through a waypoint the lab starts for its Gateway', { skip }, async (t) => {
  t.teardown(async () => {
    await lab('down');
  });
  const up = await lab('up', '--nodes', '2', '--demo');
  t.equal(up.code, 0, up.err);
  t.match(up.out, /deployment\/waypoint -n demo created/, 'the controller derived the waypoint Deployment');
  t.match(up.out, /gateway\/waypoint -n demo programmed: waypoint waypoint-\w+-0 \(10\.244\.\d+\.\d+\) behind 10\.96\.0\.\d+:15008/);

  const line = up.out.split('\n').find((l) => l.includes('backend versions seen')) ?? '';
  const seen = Object.fromEntries([...line.matchAll(/(v\d)×(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  const v1 = seen['v1'] ?? 0;
  const v2 = seen['v2'] ?? 0;
  t.equal(v1 + v2, 100, `every request answered (${up.out.split('\n').find((l) => l.includes('versions seen'))})`);
  // 100 draws at p = 0.1: P(v2 outside 1..25) < 1e-4.
  t.ok(v2 >= 1 && v2 <= 25, `v2 got ${v2} of 100 with weight ${DEMO_SPLIT.v2}`);
  t.match(up.out, /GET http:\/\/ratings\/fault → HTTP 503/, 'the injected abort');
  t.match(up.out, /client\s+ratings\s+503\s+FI\s+1/, 'the waypoint labels it FI');
  t.match(up.out, /cluster\.local\/ns\/demo\/sa\/waypoint\s+cluster\.local\/ns\/demo\/sa\/backend\s+mutual_tls/, 'the backend\'s ztunnel sees the waypoint\'s identity');

  const s = (await readState(paths))!;
  const gw = s.objects['Gateway/demo/waypoint'] as { status?: { addresses?: Array<{ value: string }>; conditions?: Array<{ type: string; status: string }> } };
  t.match(gw.status?.conditions, [{ type: 'Accepted', status: 'True' }, { type: 'Programmed', status: 'True' }], 'the Gateway\'s status, as a cluster would show it');
  t.equal(gw.status?.addresses?.[0]?.value, (s.objects['Service/demo/waypoint'] as { spec: { clusterIP: string } }).spec.clusterIP, 'its address is the waypoint Service');

  await t.test('a use-waypoint label change waits for no pod (it changes no enrolment)', async (t) => {
    // Before issue 12 this waited for every pod of the namespace to be enrolled, the waypoint's
    // own (opted out, never enrolled) included, and failed with a timeout.
    const off = await lab('label', 'namespace', 'demo', 'istio.io/use-waypoint-');
    t.equal(off.code, 0, off.err);
    t.match(off.out, /namespace\/demo labeled; no pod changed enrolment/);
    const on = await lab('label', 'namespace', 'demo', 'istio.io/use-waypoint=waypoint');
    t.equal(on.code, 0, on.err);
    t.match(on.out, /namespace\/demo labeled; no pod changed enrolment/);
    t.match((await lab('get', 'pods', '-n', 'demo')).out, /frontend\S*\s+Running\s+\S+\s+\S+\s+enrolled/, 'the demo pods stay enrolled');
  });

  await t.test('deleting the Gateway removes its waypoint; traffic then goes direct', async (t) => {
    const dir = t.testdir({ 'gw.yaml': yaml.dump(s.objects['Gateway/demo/waypoint']) });
    const del = await lab('delete', '-f', `${dir}/gw.yaml`);
    t.equal(del.code, 0, del.err);
    t.match(del.out, /pod demo\/waypoint-\w+-0 deleted/);
    const after = (await readState(paths))!;
    t.notOk(after.objects['Service/demo/waypoint'], 'its Service is gone');
    t.notOk(after.objects['Deployment/demo/waypoint'], 'its Deployment is gone');
    t.notOk(Object.keys(after.pods).some((k) => k.startsWith('demo/waypoint-')), 'its pod is gone');
    const r = await lab('exec', 'client', '-n', 'demo', '--', 'lab/get', '--quiet', '--count', '20', 'http://frontend/');
    t.equal(r.code, 0, r.err);
    const versions = r.out.trim().split('\n').flatMap((l) => (JSON.parse(l) as { upstreams: Array<{ answer?: { version?: string } }> }).upstreams.map((u) => u.answer?.version).filter(Boolean));
    t.equal(versions.length, 20, 'the backend answers every request without the waypoint');
  });

  const down = await lab('down');
  t.equal(down.code, 0, down.err);
  t.same(await leftovers(paths), [], 'nothing left behind');
});
