import t from 'tap';
import { identityOf, logLines, processMesh, type PodSpec } from './process-mesh.js';
import { until } from '../helpers/until.js';

// Issue 12: a control-plane outage that outlasts the certificates' renewal point (half-life).
// Certificates live 30 s (WORKLOAD_CERT_TTL_SECONDS on every process), so they are renewed about
// 15 s after they were issued. The control plane is killed once the certificates are in place and
// comes back only after every renewal has failed: meanwhile the old certificates are still valid
// and every request must be answered, including first connections of workloads that had never
// connected (new TLS handshakes with certificates past their half-life). Then the renewals
// succeed and traffic still flows. Every part is a real process. 127.0.62.1 = control plane,
// .2/.3 = ztunnels of node-a/node-b, .10-.12 = pods on node-a, .20 = the pod on node-b.
const base = '127.0.62';
const client: PodSpec = { name: 'client', node: 'node-a', ip: `${base}.10` };
// No connection before the outage: their first ones happen past half-life, or after the renewal.
const during: PodSpec = { name: 'during', node: 'node-a', ip: `${base}.11` };
const after: PodSpec = { name: 'after', node: 'node-a', ip: `${base}.12` };
const server: PodSpec = { name: 'server', node: 'node-b', ip: `${base}.20` };
const onA = [client, during, after].map(identityOf);
const onB = [identityOf(server)];
const mesh = await processMesh(t, { base, pods: [client, during, after, server], env: { WORKLOAD_CERT_TTL_SECONDS: '30' } });

/** `n` new connections from each of `froms` to the server; the problems of those not answered. */
async function traffic(froms: readonly PodSpec[], n: number, label: string): Promise<{ answered: number; failures: string[] }> {
  const failures: string[] = [];
  let answered = 0;
  for (let i = 0; i < n; i++) {
    for (const from of froms) {
      const problem = await mesh.request(from, server, `${label} ${i}`);
      if (problem === undefined) answered++;
      else failures.push(problem);
    }
  }
  return { answered, failures };
}

t.test('the control plane away past the certificates\' half-life: traffic flows on the old certificates, then on renewed ones', async (t) => {
  let cp = await mesh.startControlPlane();
  const a = await mesh.startZtunnel('node-a');
  const b = await mesh.startZtunnel('node-b');
  const issuedA = await mesh.waitForCertificates('node-a', onA);
  const issuedB = await mesh.waitForCertificates('node-b', onB);
  t.equal(await mesh.request(client, server, 'before'), undefined, 'traffic flows before the outage');

  await cp.kill('SIGKILL');
  // Past every certificate's renewal point: each renewal has been tried and has failed.
  const renewalFailed = (p: typeof a, id: string) => logLines(p, 'workload certificate request failed; retrying').some((l) => l.identity === id && l.serving_previous === true);
  await until('every workload certificate\'s renewal failed', () => onA.every((id) => renewalFailed(a, id)) && onB.every((id) => renewalFailed(b, id)), { timeoutMs: 60_000 });
  const outageA = await mesh.certificates('node-a');
  const outageB = await mesh.certificates('node-b');
  t.ok(onA.every((id) => outageA[id]!.notAfter === issuedA[id]!.notAfter) && onB.every((id) => outageB[id]!.notAfter === issuedB[id]!.notAfter), 'the certificates issued before the outage are still the ones held');

  const outage = await traffic([client, during], 10, 'outage');
  t.equal(outage.answered, 20, 'during the outage, past half-life: 20 of 20 requests answered (10 of them from a workload\'s first connections)');
  t.same(outage.failures, []);

  cp = await mesh.startControlPlane();
  const renewedA = await mesh.waitForCertificates('node-a', onA, (c, id) => Date.parse(c.notAfter!) > Date.parse(issuedA[id]!.notAfter!), 30_000);
  const renewedB = await mesh.waitForCertificates('node-b', onB, (c, id) => Date.parse(c.notAfter!) > Date.parse(issuedB[id]!.notAfter!), 30_000);
  t.ok([...onA.map((id) => renewedA[id]!), ...onB.map((id) => renewedB[id]!)].every((c) => c.rotations >= 1), 'every workload certificate was renewed once the control plane was back (notAfter advanced)');

  const back = await traffic([client, during, after], 10, 'back');
  t.equal(back.answered, 30, 'after the renewal: 30 of 30 requests answered (10 of them from a workload\'s first connections, on renewed certificates)');
  t.same(back.failures, []);
  t.notMatch(a.output(), /no valid certificate/, 'no connection lacked a certificate at any point');
});
