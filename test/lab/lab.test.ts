// Issue 7, end to end and the way a user drives it: `ambientctl lab up`, `apply -f`, `exec` a
// request to a Service by name, the answer's mTLS in the ztunnels' metrics, a bad manifest
// rejected whole, a DENY policy, label/unlabel, a crashed ztunnel restarted, and `down` leaving
// nothing behind. Root only; skips with the reason otherwise. Everything is named amb-lt<pid>-*.
import t from 'tap';
import { labRunner } from './cli.js';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { checkPrerequisites } from '../../lab/prereq.js';
import { leftovers } from '../../lab/cluster.js';
import { edgesFromMetrics, ztunnelMetrics } from '../../lab/demo.js';
import { defaultPaths, readState } from '../../lab/state.js';

const prefix = `amb-lt${process.pid}`;
const paths = defaultPaths(prefix);

const missing = await checkPrerequisites();
const skip = missing.length > 0 ? `the lab needs: ${missing.map((m) => m.what).join('; ')}` : false;

const lab = labRunner(prefix, 120_000);

const dump = (objs: object[]) => objs.map((o) => yaml.dump(o)).join('---\n');
const APPS = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'client', namespace: 'apps' } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'apps' } },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'apps' },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'lab/http-echo', ports: [{ containerPort: 8080 }] }] } },
    },
  },
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'apps' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } },
  { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'apps', labels: { app: 'client' } }, spec: { serviceAccountName: 'client', containers: [{ name: 'c', image: 'lab/sleep' }] } },
];
const DENY = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'deny-client', namespace: 'apps' },
  spec: { action: 'DENY', selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/apps/sa/client'] } }] }] },
};

/** Captures the fabric bridge (every byte between nodes) while `fn` runs; returns the pcap bytes. */
async function captureFabric(file: string, fn: () => Promise<void>): Promise<Buffer> {
  const s = (await readState(paths))!;
  const dump = spawn('ip', ['netns', 'exec', s.fabricNetns, 'tcpdump', '-Z', 'root', '-i', 'br0', '-U', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    dump.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (/listening on/.test(err)) resolve();
    });
    dump.on('exit', () => reject(new Error(`tcpdump exited: ${err}`)));
  });
  try {
    await fn();
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
  }
  return readFile(file);
}

t.test('the lab, driven through ambientctl', { skip }, async (t) => {
  t.teardown(async () => {
    await lab('down');
  });
  const dir = t.testdir({ 'apps.yaml': dump(APPS), 'deny.yaml': dump([DENY]) });

  const first = await lab('up', '--nodes', '2');
  t.equal(first.code, 0, first.err);
  t.match(first.out, /starting control-plane[\s\S]*starting agent\/node-1[\s\S]*starting ztunnel\/node-1/, 'progress lines, the agent before its ztunnel');
  t.match(first.out, /COMPONENT\s+PID\s+STATUS[\s\S]*ztunnel\/node-2\s+\d+\s+Running/, 'the status table');
  const again = await lab('up');
  t.equal(again.code, 0, again.err);
  t.match(again.out, /already up; nothing changed/, 'a second up changes nothing');

  const applied = await lab('apply', '-f', dir + '/apps.yaml');
  t.equal(applied.code, 0, applied.err);
  t.match(applied.out, /deployment\/web -n apps created/);
  const pods = await lab('get', 'pods', '-n', 'apps');
  t.match(pods.out, /client\s+Running\s+node-\d\s+10\.244\.\d+\.\d+\s+enrolled/, pods.out);
  t.equal(pods.out.split('\n').filter((l) => /^apps\s+web-/.test(l)).length, 2, 'two replicas');
  const nodesUsed = new Set([...pods.out.matchAll(/node-(\d)/g)].map((m) => m[1]));
  t.equal(nodesUsed.size, 2, 'pods are spread over both nodes');

  await t.test('a request to the Service by each of its names is answered, over mTLS with the right identities', async (t) => {
    for (const host of ['web', 'web.apps', 'web.apps.svc.cluster.local']) {
      const r = await lab('exec', 'client', '-n', 'apps', '--', 'lab/get', '--quiet', `http://${host}/`);
      t.equal(r.code, 0, `${host}: ${r.err}`);
      t.match(JSON.parse(r.out), { namespace: 'apps', pod: /^web-/ }, host);
    }
    const s = (await readState(paths))!;
    const edges = edgesFromMetrics(await ztunnelMetrics(s));
    const edge = edges.find((e) => e.source === 'spiffe://cluster.local/ns/apps/sa/client' && e.destination === 'spiffe://cluster.local/ns/apps/sa/web');
    t.ok(edge, JSON.stringify(edges));
    t.equal(edge?.security, 'mutual_tls');
    t.ok((edge?.connections ?? 0) >= 3, 'one connection per request');
  });

  await t.test('the fabric carries the request only inside TLS', async (t) => {
    const secret = `lab-secret-${process.pid}`;
    const pcap = await captureFabric(join(dir, 'mesh.pcap'), async () => {
      // Several requests: two replicas, so some cross the fabric.
      for (let i = 0; i < 6; i++) t.equal((await lab('exec', 'client', '-n', 'apps', '--', 'lab/get', '--quiet', `http://web/${secret}`)).code, 0);
    });
    t.ok(pcap.includes(Buffer.from([15008 >> 8, 15008 & 0xff])), `packets to or from port 15008 were captured (${pcap.length} bytes)`);
    t.notOk(pcap.includes(Buffer.from(secret)), 'the path is never on the fabric in clear');
  });

  await t.test('a bad manifest is rejected with the file, object and field named, and nothing is applied', async (t) => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(
      bad,
      dump([
        { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'fine', namespace: 'apps' }, spec: { containers: [{ name: 'c', image: 'lab/sleep' }] } },
        { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'broken', namespace: 'apps' }, spec: { containers: [{ name: 'c', image: 'nginx' }] } },
        { apiVersion: 'v1', kind: 'Gizmo', metadata: { name: 'x', namespace: 'apps' } },
      ]),
    );
    const r = await lab('apply', '-f', bad);
    t.not(r.code, 0);
    t.match(r.err, /bad\.yaml#2: Pod apps\/broken: spec\.containers\[0\]\.command: the lab runs no container images/);
    t.match(r.err, /bad\.yaml#3.*Gizmo/);
    t.match(r.err, /nothing was applied/);
    t.notMatch((await lab('get', 'pods', '-n', 'apps')).out, /fine/, 'the good pod of the file was not created');
  });

  await t.test('a pod whose command fails shows its exit status and log', async (t) => {
    const f = join(dir, 'fail.yaml');
    await writeFile(f, dump([{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'fails', namespace: 'apps' }, spec: { containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'echo boom-$POD_NAME; exit 3'] }] } }]));
    t.equal((await lab('apply', '-f', f)).code, 0);
    let out = '';
    for (let i = 0; i < 50 && !/Exited\(3\)/.test(out); i++) {
      out = (await lab('get', 'pods', '-n', 'apps')).out;
      await new Promise((r) => setTimeout(r, 100));
    }
    t.match(out, /fails\s+Exited\(3\)/);
    t.match(out, /apps\/fails container c: Exited\(3\); the end of its log[^\n]*\n\s+boom-fails/);
    t.match((await lab('logs', 'fails', '-n', 'apps')).out, /boom-fails/);
    t.equal((await lab('delete', '-f', f)).code, 0);
    t.notMatch((await lab('get', 'pods', '-n', 'apps')).out, /fails/);
  });

  await t.test('a DENY policy from the client principal refuses its requests; deleting it lets them through', async (t) => {
    t.equal((await lab('apply', '-f', join(dir, 'deny.yaml'))).code, 0);
    let denied = false;
    for (let i = 0; i < 50 && !denied; i++) {
      denied = (await lab('exec', 'client', '-n', 'apps', '--', 'lab/get', '--quiet', 'http://web/')).code !== 0;
      if (!denied) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(denied, 'denied');
    t.match((await lab('get', 'authorizationpolicies', '-n', 'apps')).out, /deny-client/);
    t.equal((await lab('delete', '-f', join(dir, 'deny.yaml'))).code, 0);
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = (await lab('exec', 'client', '-n', 'apps', '--', 'lab/get', '--quiet', 'http://web/')).code === 0;
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(ok, 'allowed again');
  });

  await t.test('unlabelling the namespace takes its pods out of the mesh; labelling puts them back', async (t) => {
    const off = await lab('label', 'namespace', 'apps', 'istio.io/dataplane-mode-');
    t.equal(off.code, 0, off.err);
    t.match((await lab('get', 'pods', '-n', 'apps')).out, /client\s+Running\s+\S+\s+\S+\s+not-ambient/);
    // Out of the mesh, the node's nftables rules (kube-proxy's job) take the ClusterIP, and the
    // request crosses the fabric in clear: the capture sees it.
    const secret = `plain-${process.pid}`;
    const pcap = await captureFabric(join(dir, 'plain.pcap'), async () => {
      for (let i = 0; i < 6; i++) {
        const r = await lab('exec', 'client', '-n', 'apps', '--', 'lab/get', '--quiet', `http://web.apps/${secret}`);
        t.equal(r.code, 0, r.err);
      }
    });
    t.ok(pcap.includes(Buffer.from(secret)), 'outside the mesh the request is in clear on the fabric');
    const on = await lab('label', 'namespace', 'apps', 'istio.io/dataplane-mode=ambient');
    t.equal(on.code, 0, on.err);
    t.match((await lab('get', 'pods', '-n', 'apps')).out, /client\s+Running\s+\S+\s+\S+\s+enrolled/);
  });

  await t.test('a crashed ztunnel is restarted and reported by the next up', async (t) => {
    const s = (await readState(paths))!;
    process.kill(s.procs['ztunnel/node-1']!.pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    const r = await lab('up');
    t.equal(r.code, 0, r.err);
    t.match(r.out, /ztunnel\/node-1 \(pid \d+\) is not running; restarting it/);
    t.match(r.out, /restarted: ztunnel\/node-1/);
    t.match(r.out, /ztunnel\/node-1\s+\d+\s+Running\s+[\d.]+ MiB\s+1/);
  });

  await t.test('lab down after a crash removes everything and nothing else', async (t) => {
    const s = (await readState(paths))!;
    process.kill(s.procs['control-plane']!.pid, 'SIGKILL');
    const d = await lab('down');
    t.equal(d.code, 0, d.out + d.err);
    t.same(await leftovers(paths), [], 'no namespace, cgroup, pin, process or state dir with the prefix');
  });
});

t.test('down with nothing up succeeds and reports', { skip }, async (t) => {
  const d = await lab('down');
  t.equal(d.code, 0);
  t.match(d.out, /removed/);
});
