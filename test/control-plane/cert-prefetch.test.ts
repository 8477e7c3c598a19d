import t from 'tap';
import { identityOf, processMesh, type PodSpec } from './process-mesh.js';

// Issue 12: after a ztunnel restart (SIGKILL), with the control plane killed a few seconds later,
// none of the node's pods could connect while the control plane was away: certificates were only
// fetched on a workload's first connection. Now ztunnel fetches them from its first snapshot.
// Every part is a real process. 127.0.61.1 = control plane, .2/.3 = ztunnels of node-a/node-b,
// .10/.11 = pods on node-a, .20/.21 = pods on node-b.
const base = '127.0.61';
const clients: PodSpec[] = [
  { name: 'client-1', node: 'node-a', ip: `${base}.10` },
  { name: 'client-2', node: 'node-a', ip: `${base}.11` },
];
const servers: PodSpec[] = [
  { name: 'server-1', node: 'node-b', ip: `${base}.20` },
  { name: 'server-2', node: 'node-b', ip: `${base}.21` },
];
const mesh = await processMesh(t, { base, pods: [...clients, ...servers] });

t.test('a ztunnel restarted just before the control plane goes away keeps its pods connected', async (t) => {
  const cp = await mesh.startControlPlane();
  const first = await mesh.startZtunnel('node-a');
  await mesh.startZtunnel('node-b');
  await mesh.waitForCertificates('node-b', servers.map(identityOf));
  t.equal(await mesh.request(clients[0]!, servers[0]!, 'before'), undefined, 'traffic flows before the restart');

  // SIGKILL: nothing of the old process survives (no drain, no handover), as after a crash.
  await first.kill('SIGKILL');
  t.equal(await first.exited, 'SIGKILL', 'node-a\'s ztunnel was killed by SIGKILL');
  const a = await mesh.startZtunnel('node-a');
  const dump = await mesh.waitForCertificates('node-a', clients.map(identityOf));
  t.ok(clients.every((c) => dump[identityOf(c)]!.needed), 'the restarted ztunnel fetched both local workloads\' certificates, before any connection');
  t.notOk(identityOf(servers[0]!) in dump, 'and not those of another node\'s workloads');

  await cp.kill('SIGKILL');
  t.not(await fetch(`http://${mesh.address.cp}:15021/healthz/ready`).then((r) => r.status, () => 'down'), 200, 'the control plane is down');

  // 20 new connections, across both clients and both servers: every (client, server) pair needs
  // a new TLS handshake from the restarted ztunnel, with a certificate it cannot ask for now.
  const failures: string[] = [];
  let answered = 0;
  for (let i = 0; i < 20; i++) {
    const problem = await mesh.request(clients[i % 2]!, servers[Math.floor(i / 2) % 2]!, `request ${i}`);
    if (problem === undefined) answered++;
    else failures.push(problem);
  }
  t.equal(answered, 20, '20 of 20 new connections answered while the control plane is down');
  t.same(failures, []);
  t.notMatch(a.output(), /no valid certificate/, 'no connection of the restarted ztunnel lacked a certificate');
});
