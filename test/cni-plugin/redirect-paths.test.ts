// The measured cost of the redirect (issue 4): connect latency and throughput pod → pod on one
// node, with and without the eBPF redirection, in the same run. Prints a table; asserts only that
// each path went where it should (tests never assert on times). Root only.
//
//   direct              a pod outside the mesh → the destination pod
//   redirect → proxy    an enrolled pod, redirected to a 20-line Node passthrough in the ztunnel
//                       cgroup (fixtures/passthrough.mjs): the cost of the redirect itself
//   redirect → ztunnel  the same, with the real ztunnel passing plain TCP through (destination
//                       outside the mesh)
//   ztunnel HBONE       enrolled pod → meshed pod on the same node: ztunnel → HBONE (TLS, HTTP/2)
//                       → ztunnel → pod
//
// Size with AMB_CNI_COST_CONNECTIONS (default 100) and AMB_CNI_COST_MIB (per stream, default 64);
// docs/cni.md's figures used 600 and 512. AMB_CNI_COST_OUT=FILE also writes the rows as JSON.
import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { Cluster, OUTBOUND_PORT } from './cluster.js';
import { Lab, labSkipReason, type PodApp } from './lab.js';

const skip = await labSkipReason();
const PASSTHROUGH = fileURLToPath(new URL('./fixtures/passthrough.mjs', import.meta.url));
// Small by default: `npm test` runs this file to check the paths; the figures need the larger sizes.
const CONNECTIONS = Number(process.env['AMB_CNI_COST_CONNECTIONS'] ?? '100');
const BYTES = Number(process.env['AMB_CNI_COST_MIB'] ?? '64') * 1024 * 1024;
const RUNS = 3;
const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };

interface Row {
  path: string;
  connectP50: number;
  connectP99: number;
  firstByteP50: number;
  firstByteP99: number;
  mbps: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const median = (xs: number[]) => pct(xs, 50);

async function measure(t: Test, path: string, from: PodApp, host: string, expectPeer: (peer: string) => boolean): Promise<Row> {
  const probe = await from.connect(host, 8080);
  const peer = probe.hello?.split(' ')[1]?.split(':')[0] ?? '';
  t.ok(expectPeer(peer), `${path}: the destination saw ${peer}`);
  await from.request({ op: 'latency', host, port: 8080, n: 20 }); // warm-up
  const lat = await from.request({ op: 'latency', host, port: 8080, n: CONNECTIONS });
  t.ok(lat.ok, `${path}: ${CONNECTIONS} connections (${lat.error ?? 'ok'})`);
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await from.request({ op: 'throughput', host, port: 9000, bytes: BYTES });
    t.ok(r.ok, `${path}: ${BYTES} bytes arrived (${r.error ?? r.bytes})`);
    rates.push((BYTES * 8) / (r.ms! / 1000) / 1e6);
  }
  const c = lat.connectMs as number[];
  const f = lat.firstByteMs as number[];
  return { path, connectP50: median(c), connectP99: pct(c, 99), firstByteP50: median(f), firstByteP99: pct(f, 99), mbps: median(rates) };
}

t.test('the cost of the redirect', { skip }, async (t) => {
  const lab = await Lab.create(t);
  const cluster = await Cluster.create(lab, ['node-a'], { meshed: AMBIENT, plain: {}, dst: {}, 'dst-mesh': AMBIENT });
  const n = cluster.node('node-a');
  await cluster.startAgent(n);
  const meshed = await cluster.addPod('node-a', 'meshed', 'client');
  const plain = await cluster.addPod('node-a', 'plain', 'client');
  const dst = await cluster.addPod('node-a', 'dst', 'server');
  const dstMesh = await cluster.addPod('node-a', 'dst-mesh', 'server');
  await cluster.sync();
  for (const d of [dst, dstMesh]) {
    await d.app.listen(8080);
    await d.app.listen(9000, 'sink');
  }
  t.match(await cluster.podStatus(meshed), { mode: 'enrolled', attached: { redirect: true } });
  t.match(await cluster.podStatus(plain), { mode: 'not-ambient' });

  const rows: Row[] = [];
  rows.push(await measure(t, 'direct', plain.app, dst.ip, (p) => p === plain.ip));

  const proxy = lab.spawn('passthrough', [process.execPath, PASSTHROUGH, n.ip, String(OUTBOUND_PORT)], { cgroup: n.ztunnelCgroup, netns: n.netns.path });
  await proxy.waitFor(/passthrough ready/);
  rows.push(await measure(t, 'redirect → proxy', meshed.app, dst.ip, (p) => p === n.gateway));
  await proxy.stop();

  await cluster.startZtunnel(n);
  rows.push(await measure(t, 'redirect → ztunnel', meshed.app, dst.ip, (p) => p === n.ip));
  rows.push(await measure(t, 'ztunnel HBONE', meshed.app, dstMesh.ip, (p) => p === n.ip));

  const f = (x: number) => x.toFixed(3).padStart(8);
  const lines = [
    `redirect cost, one node, ${CONNECTIONS} sequential connections and ${RUNS} × ${BYTES / 1024 / 1024} MiB per path (median)`,
    'path                 connect p50/p99 ms    first byte p50/p99 ms   throughput Mbit/s',
    ...rows.map((r) => `${r.path.padEnd(20)} ${f(r.connectP50)} ${f(r.connectP99)}     ${f(r.firstByteP50)} ${f(r.firstByteP99)}     ${r.mbps.toFixed(0).padStart(8)}`),
  ];
  t.comment(lines.join('\n'));
  if (process.env['AMB_CNI_COST_OUT']) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(process.env['AMB_CNI_COST_OUT'], `${JSON.stringify(rows, null, 1)}\n`);
  }
});
