/**
 * Pod churn while traffic flows, on loopback through real ztunnels (HBONE, mTLS) and a real
 * waypoint in this process: 1,000 workloads are added to the config file in steps (spread over
 * node-a and node-b, 10 service accounts, 90 % of them behind four services), then removed in
 * steps, while clients keep sending requests to a stable service (keep-alive and new
 * connections, with idle gaps; straight to the workload and through the waypoint).
 *
 * What a user sees is asserted: every request to the stable service answered; requests to
 * churned pods answered while they exist (a few run a real backend on their address); and, once
 * the pods are gone, the proxies are back where they started: the same workloads in their state
 * and `/config_dump`, and the same workload certificates held once the retention
 * (`CERT_RETENTION_SECONDS`, shortened here) has passed.
 *
 * 127.0.42.2/.3 = ztunnels of node-a/node-b, .10 = client (node-a), .20 = the stable server
 * (node-b), .30 = waypoint, .100/.101 = the stable service direct/through the waypoint,
 * .110-.113 = the churned pods' services, .120 = the service of the pods that run a backend.
 * The churned pods are 127.42.0.0/16: pod i at 127.42.<i / 250>.<i % 250 + 1>.
 */
import t from 'tap';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { backend, meshAgent, meshConfig, startWaypointMesh, type WaypointMesh } from '../waypoint/fixture.js';
import { until } from '../helpers/until.js';
import type { Ztunnel } from '../../ztunnel/ztunnel.js';

const base = '127.0.42';
const CLIENT = `${base}.10`;
const SERVER = `${base}.20`;
const WAYPOINT = { address: `${base}.30` };
const VIP = { stable: `${base}.100`, stableL7: `${base}.101`, live: `${base}.120` };
const PODS = 1000;
const STEPS = 20;
const ACCOUNTS = 10;
const CHURN_SERVICES = 4;
/** Workloads of the base config: client, server, waypoint. */
const BASE_WORKLOADS = 3;
/** A client's own deadline per request: not answered by then counts as hung. */
const REQUEST_TIMEOUT_MS = 8000;

const podIp = (i: number) => `127.42.${Math.floor(i / 250)}.${(i % 250) + 1}`;
/** Every 99th pod from the 8th runs a real backend on its address (11 pods, on both nodes). */
const isLive = (i: number) => i % 99 === 7;
const pod = (i: number) => ({
  name: `pod-${i}`,
  namespace: 'churn',
  // Each account on both nodes.
  serviceAccount: `sa-${Math.floor(i / 2) % ACCOUNTS}`,
  node: i % 2 ? 'node-b' : 'node-a',
  ips: [podIp(i)],
  labels: { app: isLive(i) ? 'live' : i % 10 === 9 ? 'loner' : `churn-${i % CHURN_SERVICES}` },
});
const service = (name: string, namespace: string, vip: string, app: string, viaWaypoint = false) => ({
  name,
  namespace,
  vips: [vip],
  ports: [{ port: 80, targetPort: 8080 }],
  selector: { app },
  ...(viaWaypoint ? { waypoint: WAYPOINT } : {}),
});
const services = [
  service('stable', 'default', VIP.stable, 'server'),
  service('stable-l7', 'default', VIP.stableL7, 'server', true),
  // The first churned service is behind the waypoint too: the waypoint's state churns as well.
  ...Array.from({ length: CHURN_SERVICES }, (_, k) => service(`churn-${k}`, 'churn', `${base}.${110 + k}`, `churn-${k}`, k === 0)),
  service('live', 'churn', VIP.live, 'live'),
];
/** The whole config file with the pods in `present`. */
const configWith = (present: Iterable<number>) => meshConfig(base, [...present].sort((a, b) => a - b).map(pod), { services });

/** One GET with the client's own deadline; resolves with the body of a 200, else says what went wrong. */
function get(agent: http.Agent, url: string): Promise<{ body?: string; problem?: string }> {
  return new Promise((resolve) => {
    const req = http.request(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? { body } : { problem: `status ${res.statusCode}` }));
      res.on('error', (err) => resolve({ problem: err.message }));
    });
    const timer = setTimeout(() => req.destroy(new Error(`hung: no answer within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err) => resolve({ problem: err.message }));
    req.end();
  });
}

/** Proxies reconfigure and connections close asynchronously; waits allow 15 s on a loaded machine. */
const WAIT = { timeoutMs: 15_000 };

const certificatesHeld = (zt: Ztunnel) => Object.keys((zt.configDump() as { certificates: Record<string, unknown> }).certificates).sort();
const dumpedWorkloads = (zt: Ztunnel) => (zt.configDump() as { workloads: unknown[] }).workloads.length;

let wm: WaypointMesh;
t.before(async () => {
  wm = await startWaypointMesh({
    dir: t.testdir({}),
    base,
    workloads: [],
    config: { services },
    // Identities of pods that left are forgotten after 1 s instead of 5 min.
    env: { CERT_RETENTION_SECONDS: '1' },
  });
});
t.teardown(() => wm.close());

t.test('1,000 pods added and removed while traffic flows', async (t) => {
  const { a, b } = wm.mesh;
  const proxies = () => [a.state, b.state, wm.waypoint.state];
  const stable = await backend(SERVER, 8080, 'server');
  t.teardown(() => {
    stable.server.closeAllConnections();
    return new Promise<void>((r) => stable.server.close(() => r()));
  });
  const baseline = { a: certificatesHeld(a), b: certificatesHeld(b) };
  t.same(proxies().map((s) => s.config.workloads.length), [BASE_WORKLOADS, BASE_WORKLOADS, BASE_WORKLOADS], 'before: the base workloads only');

  // The stable service's clients: keep-alive connections straight to the workload and through
  // the waypoint, and a client dialling per request, each with idle gaps (a longer one now and then).
  const results = { sent: 0, answered: 0, problems: [] as string[] };
  let stopped = false;
  const loop = async (url: string, perRequest: boolean, seed: number) => {
    const kept = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
    for (let n = 0; !stopped; n++) {
      const agent = perRequest ? meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT) : kept;
      results.sent++;
      const r = await get(agent, `${url}/${seed}/${n}`);
      if (perRequest) agent.destroy();
      if (r.body?.includes('"name":"server"')) results.answered++;
      else results.problems.push(`${url}/${seed}/${n}: ${r.problem ?? r.body}`);
      await sleep(n % 9 === 8 ? 600 : 10 + ((seed * 31 + n * 17) % 120)); // the client's idle gap
    }
    kept.destroy();
  };
  const loops = [
    loop(`http://${VIP.stable}`, false, 1),
    loop(`http://${VIP.stable}`, false, 2),
    loop(`http://${VIP.stableL7}`, false, 3),
    loop(`http://${VIP.stableL7}`, false, 4),
    loop(`http://${VIP.stable}`, true, 5),
    loop(`http://${VIP.stableL7}`, true, 6),
  ];
  t.teardown(() => {
    stopped = true;
    return Promise.all(loops);
  });

  // The churned pods that run a backend, started before their pod is added (a pod is ready
  // before it becomes an endpoint) and stopped once every proxy has its removal.
  const liveServers = new Map<number, http.Server>();
  t.teardown(() => Promise.all([...liveServers.values()].map((s) => (s.closeAllConnections(), new Promise((r) => s.close(r))))));
  const startLive = async (i: number) => {
    const s = http.createServer((req, res) => (req.resume(), res.end(`live pod-${i}`)));
    await new Promise<void>((r) => s.listen(8080, podIp(i), r));
    liveServers.set(i, s);
  };
  const stopLive = async (i: number) => {
    const s = liveServers.get(i)!;
    liveServers.delete(i);
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  };
  const live = { sent: 0, answered: 0, problems: [] as string[] };
  /** Requests to the live pods present: each one straight to its address, and five to their service. */
  const callLivePods = async (present: ReadonlySet<number>) => {
    const here = [...present].filter(isLive);
    if (here.length === 0) return;
    const one = async (url: string, ok: (body: string) => boolean) => {
      const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
      live.sent++;
      const r = await get(agent, url);
      agent.destroy();
      if (r.body !== undefined && ok(r.body)) live.answered++;
      else live.problems.push(`${url}: ${r.problem ?? r.body}`);
    };
    await Promise.all([
      ...here.map((i) => one(`http://${podIp(i)}:8080/direct`, (body) => body === `live pod-${i}`)),
      ...Array.from({ length: 5 }, () => one(`http://${VIP.live}/service`, (body) => here.some((i) => body === `live pod-${i}`))),
    ]);
  };

  const present = new Set<number>();
  const apply = async (what: string) => {
    await wm.mesh.writeConfig(configWith(present));
    const want = BASE_WORKLOADS + present.size;
    // Counts only grow while adding and only shrink while removing: the count names the version.
    await until(`both ztunnels and the waypoint have ${want} workloads (${what})`, () => proxies().every((s) => s.config.workloads.length === want), WAIT);
  };
  let peak = { a: [] as string[], b: [] as string[] };
  const perStep = PODS / STEPS;
  for (let step = 0; step < STEPS; step++) {
    const added = Array.from({ length: perStep }, (_, k) => step * perStep + k);
    await Promise.all(added.filter(isLive).map(startLive));
    for (const i of added) present.add(i);
    await apply(`add step ${step + 1}`);
    await callLivePods(present);
    if (step === STEPS - 1) {
      // Prefetched as their pods were scheduled: every account on each node.
      await until('both ztunnels hold every account\'s certificate', () => certificatesHeld(a).length === baseline.a.length + ACCOUNTS && certificatesHeld(b).length === baseline.b.length + ACCOUNTS, WAIT);
      peak = { a: certificatesHeld(a), b: certificatesHeld(b) };
    }
  }
  t.equal(present.size, PODS, `${PODS} pods present`);
  t.equal(dumpedWorkloads(a), BASE_WORKLOADS + PODS, "ztunnel A's /config_dump lists them");
  t.equal(peak.a.length - baseline.a.length, ACCOUNTS, `ztunnel A held the certificates of the ${ACCOUNTS} service accounts of its pods`);
  t.equal(peak.b.length - baseline.b.length, ACCOUNTS, `ztunnel B held the certificates of the ${ACCOUNTS} service accounts of its pods`);

  // Removed in a different order: step k removes every pod whose index is k modulo STEPS.
  for (let step = 0; step < STEPS; step++) {
    const removed = [...present].filter((i) => i % STEPS === step);
    for (const i of removed) present.delete(i);
    await apply(`remove step ${step + 1}`);
    await Promise.all(removed.filter(isLive).map(stopLive));
    await callLivePods(present);
  }
  t.equal(present.size, 0, 'every pod removed');
  // Enough traffic after the last step that a stale pool, stream or snapshot would show.
  const after = results.sent;
  await until('the stable service is used after the churn', () => results.sent >= after + 30, WAIT);
  stopped = true;
  await Promise.all(loops);

  t.comment(`stable service: ${results.answered} of ${results.sent} answered; churned pods: ${live.answered} of ${live.sent}`);
  t.ok(results.sent > 100, `the stable service was used all along (${results.sent} requests)`);
  t.same(results.problems, [], 'no request to the stable service failed or hung');
  t.equal(results.answered, results.sent, 'every request to the stable service answered');
  t.ok(live.sent >= 2 * STEPS, `the pods that run a backend were called while they existed (${live.sent} requests)`);
  t.same(live.problems, [], 'no request to a churned pod failed or hung while it existed');
  t.equal(live.answered, live.sent, 'every request to a churned pod answered while it existed');

  // The proxies are back where they started.
  t.same(proxies().map((s) => s.config.workloads.length), [BASE_WORKLOADS, BASE_WORKLOADS, BASE_WORKLOADS], 'both ztunnels and the waypoint: the base workloads only');
  t.same([dumpedWorkloads(a), dumpedWorkloads(b)], [BASE_WORKLOADS, BASE_WORKLOADS], "and so do the ztunnels' /config_dump");
  // The clients closed their connections: nothing is left open on the way (the waypoint's idle
  // upstream streams close after their keep-alive, 4 s).
  const open = () => ({ a: a.openConnections, b: b.openConnections, waypoint: wm.waypoint.openStreams });
  await until('no connection is left open', () => Object.values(open()).every((n) => n === 0), WAIT).catch(() => undefined);
  t.same(open(), { a: 0, b: 0, waypoint: 0 }, 'no proxied connection left open in either ztunnel or the waypoint');
  await until('both ztunnels are back to their baseline certificates', () => certificatesHeld(a).join() === baseline.a.join() && certificatesHeld(b).join() === baseline.b.join(), WAIT).catch(() => undefined);
  t.same(certificatesHeld(a), baseline.a, `ztunnel A holds its baseline certificates again (${baseline.a.length}) after the retention`);
  t.same(certificatesHeld(b), baseline.b, `ztunnel B holds its baseline certificates again (${baseline.b.length}) after the retention`);
});
