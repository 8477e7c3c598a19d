// Issue 4, end to end: two nodes (network namespaces on a fabric bridge), a node agent and a
// ztunnel per node as real processes, pods wired by Debian's bridge/host-local/loopback plugins
// with ambient-cni chained last. Root only; skips with the reason otherwise.
//
//   node-a (10.250.0.1, pods 10.251.1.0/24)       node-b (10.250.0.2, pods 10.251.2.0/24)
//     apps/client     (ambient)                      apps/server  (ambient; echo on 8080)
//     legacy/outsider (not in the mesh)
//     later/late      (labelled ambient mid-test)
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BpfLoader } from '../../bpf/loader.js';
import { Bpftool } from '../../bpf/bpftool.js';
import { execFileRunner } from '../../bpf/command.js';
import { CniPluginError, runChain } from '../../lab/cni-chain.js';
import { Cluster, type Pod } from './cluster.js';
import { Lab, LAB_POLL, Proc, labSkipReason } from './lab.js';
import { until } from '../helpers/until.js';
import { readPcap } from './pcap.js';

const skip = await labSkipReason({ tcpdump: true });
const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };
const PORT = 8080;
const tool = new Bpftool(execFileRunner());

/** Who the server saw as its peer: `hello <ip>:<port>` → ip. */
const peerOf = (hello: string | undefined) => hello?.split(' ')[1]?.split(':')[0];

t.test('pods join and leave the mesh through the CNI plugin and the node agent', { skip }, async (t) => {
  const lab = await Lab.create(t);
  const cluster = await Cluster.create(lab, ['node-a', 'node-b'], { apps: AMBIENT, legacy: {}, later: {} });
  const a = cluster.node('node-a');
  const b = cluster.node('node-b');
  // The agent first: ztunnel with outbound capture waits until the agent attached its hooks.
  for (const n of [a, b]) {
    await cluster.startAgent(n);
    await cluster.startZtunnel(n);
  }

  const server = await cluster.addPod('node-b', 'apps', 'server');
  const client = await cluster.addPod('node-a', 'apps', 'client', { explicitCgroup: true });
  const outsider = await cluster.addPod('node-a', 'legacy', 'outsider');
  const late = await cluster.addPod('node-a', 'later', 'late');
  await cluster.syncAndWait();
  await server.app.listen(PORT);

  await t.test('the agent enrolled exactly the ambient pods at ADD, and the result passed through', async (t) => {
    t.match(await cluster.podStatus(server), { mode: 'enrolled', origin: 'cni', attached: { redirect: true, strict: false }, cgroup: server.cgroup });
    t.match(await cluster.podStatus(client), { mode: 'enrolled', attached: { redirect: true }, cgroup: client.cgroup }, 'explicit AMBIENT_CGROUP');
    t.match(await cluster.podStatus(outsider), { mode: 'not-ambient', attached: { redirect: false } });
    t.match(await cluster.podStatus(late), { mode: 'not-ambient', reason: /not labelled/ });
    // bridge's result, unchanged: the interfaces it made and the address host-local gave.
    t.match(client.result, { cniVersion: '1.0.0', interfaces: [{ name: 'cni0' }, {}, { name: 'eth0', sandbox: client.netns.path }], ips: [{ address: `${client.ip}/24`, gateway: a.gateway }] });
    await cluster.checkPod(client);
    await cluster.checkPod(outsider);
    t.pass('CHECK succeeds for an enrolled and a not-enrolled pod');
  });

  await t.test('an ambient pod whose cgroup is missing fails its ADD with a clear error, and DEL cleans up', async (t) => {
    const netns = await lab.netns('p-apps-nocg', { lo: false });
    const inputs = {
      conflist: a.conflist,
      containerId: 'apps-nocg',
      netns: netns.path,
      ifname: 'eth0',
      cniPath: [cluster.cniBin],
      runInNetns: a.netns.path,
      args: { K8S_POD_NAMESPACE: 'apps', K8S_POD_NAME: 'nocg', K8S_POD_UID: 'u-nocg' },
    };
    const err = await runChain({ ...inputs, command: 'ADD' }).catch((e: unknown) => e);
    t.ok(err instanceof CniPluginError, String(err));
    t.match(err, { plugin: 'ambient-cni', cniCode: 103, msg: /pod apps\/nocg must be enrolled .* cgroup .*-pod-apps-nocg does not exist/ });
    await runChain({ ...inputs, command: 'DEL' });
    t.notOk((await cluster.state(a)).pods.some((p) => p.name === 'nocg'), 'the DEL the runtime sends after a failed ADD leaves no record');
  });

  const SECRET = `mesh-secret-${process.pid}-`.repeat(20);
  const CONTROL = `plain-control-${process.pid}-`.repeat(20);

  await t.test('an ambient pod reaches a pod on another node through both ztunnels over HBONE; the fabric sees only TLS on 15008', async (t) => {
    const pcap = join(lab.dir, 'fabric.pcap');
    const dump = new Proc('tcpdump', spawn('nsenter', [`--net=${cluster.fabricNetns.path}`, '--', 'tcpdump', '-Z', 'root', '--immediate-mode', '-i', 'v1', '-U', '-n', '-s', '0', '-w', pcap, 'tcp'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    lab.defer('tcpdump', () => dump.stop('SIGKILL'));
    await dump.waitFor(/listening on/);

    const meshed = await client.app.connect(server.ip, PORT, { hold: 'meshed' });
    t.ok(meshed.ok, `connected: ${meshed.error ?? ''}`);
    t.equal(peerOf(meshed.hello), b.ip, "the server's peer is node-b's ztunnel: the connection came through it");
    t.equal(meshed.remote, `${server.ip}:${PORT}`, "the client's getpeername() still says the server (getpeername hook)");
    t.same((await client.app.echo('meshed', SECRET)).data, SECRET, 'bytes flow both ways');

    const plain = await outsider.app.connect(server.ip, PORT, { hold: 'plain' });
    t.equal(peerOf(plain.hello), outsider.ip, 'a pod outside the mesh connects directly (PERMISSIVE)');
    t.same((await outsider.app.echo('plain', CONTROL)).data, CONTROL);

    // The capture has caught up once it holds the last bytes sent (the control echo; tcpdump writes
    // packets in order, in immediate mode): only then stop it.
    await until('the capture to hold the control echo', async () => Buffer.concat((await readPcap(pcap)).map((s) => s.payload)).includes(CONTROL), LAB_POLL).catch(() => undefined);
    await dump.stop('SIGINT');
    const segments = await readPcap(pcap);
    t.comment(`${segments.length} tcp segments captured between the nodes`);
    const all = Buffer.concat(segments.map((s) => s.payload));
    t.ok(all.includes(CONTROL), 'control: plaintext from outside the mesh is visible in the capture');
    t.notOk(all.includes(SECRET), 'the meshed payload never crosses the fabric in clear');
    t.notOk(segments.some((s) => s.src === client.ip || s.dst === client.ip), "the client's own address never appears between nodes");
    const meshSegs = segments.filter((s) => s.src !== outsider.ip && s.dst !== outsider.ip);
    t.ok(meshSegs.length > 0, 'the meshed connection was captured');
    t.ok(meshSegs.every((s) => s.sport === 15008 || s.dport === 15008), 'between the ztunnels: port 15008 only');
    t.ok(meshSegs.every((s) => (s.src === a.ip && s.dst === b.ip) || (s.src === b.ip && s.dst === a.ip)), 'between the two ztunnel addresses only');
    const firstPayload = (from: string) => meshSegs.find((s) => s.src === from && s.payload.length > 0)?.payload;
    t.equal(firstPayload(a.ip)?.[0], 0x16, "node-a's first bytes are a TLS handshake record (ClientHello)");
    t.equal(firstPayload(b.ip)?.[0], 0x16, "node-b answers with a TLS handshake record (ServerHello)");
    const short = await client.app.connect(server.ip, PORT);
    t.equal(peerOf(short.hello), b.ip);
    await until("ztunnel a's access log", async () => /"workload":"client"[^\n]*"security":"mutual_tls"[^\n]*"msg":"connection complete"/.test(a.ztunnel!.output()), LAB_POLL);
    t.pass("ztunnel a logged the client's connection as mutual_tls");
  });

  await t.test('the agent survives its own restart without disturbing enrolled pods', async (t) => {
    const before = await tool.cgroupShow(client.cgroup);
    await a.agent!.stop('SIGTERM');
    t.same((await client.app.echo('meshed', 'during')).data, 'during', 'traffic flows while the agent is down');
    await cluster.startAgent(a);
    t.same(await tool.cgroupShow(client.cgroup), before, 'the same programs (same ids) are attached: nothing was detached and re-attached');
    t.match(await cluster.podStatus(client), { mode: 'enrolled', origin: 'cni', containerId: client.containerId, attached: { redirect: true } }, 'the restarted agent remembers the pod');
    t.same((await client.app.echo('meshed', 'after')).data, 'after', 'the connection opened before the restart still works');
    const again = await client.app.connect(server.ip, PORT);
    t.equal(peerOf(again.hello), b.ip, 'new connections are still redirected');
  });

  await t.test('labelling a namespace enrols its running pods; connections opened before keep working', async (t) => {
    const before = await late.app.connect(server.ip, PORT, { hold: 'before' });
    t.equal(peerOf(before.hello), late.ip, 'before the label: direct');
    cluster.namespaces.set('later', AMBIENT);
    await cluster.syncAndWait();
    const st = await until('late to be enrolled', async () => {
      const s = await cluster.podStatus(late);
      return s?.mode === 'enrolled' && s.attached?.redirect ? s : undefined;
    }, LAB_POLL);
    t.equal(st.origin, 'cni');
    t.same((await late.app.echo('before', 'still here')).data, 'still here', 'the connection opened before enrolment survives');
    const after = await late.app.connect(server.ip, PORT, { hold: 'during' });
    t.equal(peerOf(after.hello), b.ip, 'new connections go through the ztunnels, with no restart of the pod');

    cluster.namespaces.set('later', {});
    await cluster.syncAndWait();
    await until('late to be un-enrolled', async () => {
      const s = await cluster.podStatus(late);
      return s?.mode === 'not-ambient' && !s.attached?.redirect;
    }, LAB_POLL);
    const direct = await late.app.connect(server.ip, PORT);
    t.equal(peerOf(direct.hello), late.ip, 'unlabelling restores direct connections');
    t.same((await late.app.echo('during', 'tunnelled')).data, 'tunnelled', 'a connection opened while enrolled keeps going through ztunnel');
    t.same((await late.app.echo('before', 'and this')).data, 'and this');
  });

  await t.test('STRICT peer authentication drops plaintext from outside the mesh', async (t) => {
    cluster.strictNamespaces.add('apps');
    await cluster.syncAndWait();
    await until('the strict filter on the server', async () => (await cluster.podStatus(server))?.attached?.strict, LAB_POLL);
    const refused = await outsider.app.connect(server.ip, PORT, { timeoutMs: 1500 });
    t.notOk(refused.ok, `plaintext from outside the mesh is dropped (${refused.error})`);
    const meshed = await client.app.connect(server.ip, PORT);
    t.equal(peerOf(meshed.hello), b.ip, 'the mesh path still works: ztunnel b connects from its own address');
    t.match(await cluster.podStatus(client), { strict: true, attached: { strict: true } }, 'every pod of the namespace gets the filter');
    t.match(await cluster.podStatus(outsider), { strict: false, attached: { strict: false } }, 'not pods outside it');
    cluster.strictNamespaces.delete('apps');
    await cluster.syncAndWait();
    await until('the strict filter off', async () => (await cluster.podStatus(server))?.attached?.strict === false, LAB_POLL);
    t.equal(peerOf((await outsider.app.connect(server.ip, PORT)).hello), outsider.ip, 'PERMISSIVE again: direct plaintext reaches the pod');
  });

  await t.test('DEL leaves nothing attached, and succeeds again when everything is gone', async (t) => {
    const pods: Pod[] = [server, client, outsider, late];
    // As in a cluster: the pods leave the API (the desired state), and the runtime tears them down.
    cluster.pods.splice(0);
    await cluster.syncAndWait();
    for (const p of pods) await cluster.delPod(p);
    for (const n of [a, b]) {
      const st = await cluster.state(n);
      t.same(st.pods.filter((p) => p.origin === 'cni'), [], `${n.name}: no pod records left`);
      const status = await new BpfLoader({ pinDir: n.pinDir, cgroupRoot: lab.cgroupRoot }).status();
      t.same(
        status.attachments.map((x) => x.cgroup).filter((c) => c !== n.ztunnelCgroup && pods.every((p) => p.cgroup !== c)),
        [],
        `${n.name}: attached nowhere else`,
      );
    }
    for (const p of pods) t.same(await tool.cgroupShow(p.cgroup), [], `${p.namespace}/${p.name}: no programs on its cgroup`);
    await cluster.delPod(client);
    await a.agent!.stop('SIGTERM');
    await cluster.delPod(outsider);
    t.pass('DEL succeeds twice, and with the agent stopped');
  });
});
