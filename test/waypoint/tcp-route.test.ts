/**
 * TCPRoute (`gateway.networking.k8s.io/v1alpha2`) on a waypoint, as Istio 1.26 has it, through
 * real ztunnels, real HBONE and the real waypoint, with real TCP echo servers: each connection to
 * the Service goes to one backend chosen by weight (80/20, counted per connection), bytes both
 * ways; a route whose backend is of an unknown kind closes the connection (and says so in its
 * status); a Service without a TCPRoute keeps going to itself. Consumer TCPRoutes (GAMMA, as
 * HTTPRoute's upstream MeshConsumerRoute): a route in `front` whose parent is a Service in
 * `default` applies to clients in `front` only, and wins over the producer route there.
 */
import t from 'tap';
import net from 'node:net';
import { closeServer, readAll, socks5Connect } from '../helpers/net.js';
import { startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.161.2/.3 = ztunnels, .10 = the client (baseConfig's,
// namespace default), .11 = a client in namespace front, .21/.22 = echo v1/v2, .30 = the
// waypoint, .100-.103 = VIPs, .110/.111 = backend Services.
const base = '127.0.161';
const CLIENT = `${base}.10`;
const FRONT_CLIENT = `${base}.11`;
const VIP = { db: `${base}.100`, broken: `${base}.101`, plain: `${base}.102`, solo: `${base}.103` };
const PORT = 9000;
const WAYPOINT = { address: `${base}.30` };

const workloads = [
  { name: 'front-client', namespace: 'front', serviceAccount: 'front-client', node: 'node-a', ips: [FRONT_CLIENT], labels: { app: 'front-client' } },
  { name: 'echo-v1', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'default', serviceAccount: 'echo', node: 'node-a', ips: [`${base}.22`], labels: { app: 'echo', version: 'v2' } },
];
// A port named tcp-*: not sniffed, so a server-first protocol works (the servers speak first).
const tcpPort = [{ port: PORT, name: 'tcp-echo' }];
const service = (name: string, vip: string, selector: Record<string, string>, viaWaypoint: boolean) => ({
  name,
  namespace: 'default',
  vips: [vip],
  ports: tcpPort,
  selector,
  ...(viaWaypoint ? { waypoint: WAYPOINT } : {}),
});
const config = {
  services: [
    service('db', VIP.db, { app: 'echo' }, true),
    service('broken', VIP.broken, { app: 'echo' }, true),
    service('plain', VIP.plain, { app: 'echo', version: 'v1' }, true),
    service('solo', VIP.solo, { app: 'echo', version: 'v1' }, true),
    service('db-v1', `${base}.110`, { app: 'echo', version: 'v1' }, false),
    service('db-v2', `${base}.111`, { app: 'echo', version: 'v2' }, false),
  ],
  // The consumer routes' backends are in default: TCPRoutes of front need a grant there.
  referenceGrants: [
    { name: 'front-tcp', namespace: 'default', spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'TCPRoute', namespace: 'front' }], to: [{ group: '', kind: 'Service' }] } },
  ],
  tcpRoutes: [
    {
      name: 'db-split',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'db', port: PORT }],
        rules: [{ backendRefs: [{ name: 'db-v1', port: PORT, weight: 80 }, { name: 'db-v2', port: PORT, weight: 20 }] }],
      },
    },
    // Consumer routes: in front, parents in default. db has a producer route too; solo has none.
    {
      name: 'db-consumer',
      namespace: 'front',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'db', namespace: 'default', port: PORT }],
        rules: [{ backendRefs: [{ name: 'db-v2', namespace: 'default', port: PORT }] }],
      },
    },
    {
      name: 'solo-consumer',
      namespace: 'front',
      spec: { parentRefs: [{ kind: 'Service', name: 'solo', namespace: 'default' }], rules: [{ backendRefs: [{ name: 'db-v2', namespace: 'default', port: PORT }] }] },
    },
    {
      name: 'broken',
      namespace: 'default',
      spec: { parentRefs: [{ kind: 'Service', name: 'broken' }], rules: [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'b' }] }] },
    },
  ],
};

/** A TCP server that says its name, then echoes. */
async function namedEcho(host: string, name: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(PORT, host, r));
  return server;
}

const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const servers = [await namedEcho(`${base}.21`, 'echo-v1'), await namedEcho(`${base}.22`, 'echo-v2')];
t.teardown(async () => {
  await Promise.all(servers.map((s) => closeServer(s)));
  await wm.close();
});

/** One connection through the mesh: what the server says first, and the echo of `payload`. */
async function connect(vip: string, payload: string, from = CLIENT): Promise<{ reply: number; text: string }> {
  const { reply, socket } = await socks5Connect({ proxy: { host: wm.mesh.addr.a, port: 15080 }, localAddress: from, host: vip, port: PORT });
  if (reply !== 0) {
    socket.destroy();
    return { reply, text: '' };
  }
  socket.on('error', () => {});
  socket.end(payload);
  return { reply, text: (await readAll(socket)).toString() };
}

t.test('the TCPRoute is accepted; the unknown backend kind shows in ResolvedRefs', async (t) => {
  const dump = wm.waypoint.configDump() as { routeStatus: { kind: string; name: string; conditions: { type: string; status: string; reason: string }[] }[] };
  t.match(dump.routeStatus.find((s) => s.kind === 'TCPRoute' && s.name === 'db-split')?.conditions, [
    { type: 'Accepted', status: 'True', reason: 'Accepted' },
    { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs' },
  ]);
  t.match(dump.routeStatus.find((s) => s.kind === 'TCPRoute' && s.name === 'broken')?.conditions, [
    { type: 'Accepted', status: 'True' },
    { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind' },
  ]);
});

t.test('weighted backendRefs split TCP connections 80/20, bytes both ways', async (t) => {
  const N = 200;
  const seen: Record<string, number> = { 'echo-v1': 0, 'echo-v2': 0 };
  for (let i = 0; i < N; i++) {
    const r = await connect(VIP.db, `ping ${i}\n`);
    const [name, echo] = r.text.split('\n');
    if (r.reply !== 0 || echo !== `ping ${i}` || !(name! in seen)) {
      t.fail(`connection ${i}: reply ${r.reply}, got ${JSON.stringify(r.text)}`);
      return;
    }
    seen[name!]!++;
  }
  t.equal(seen['echo-v1']! + seen['echo-v2']!, N, `every connection answered by v1 or v2 and echoed: ${JSON.stringify(seen)}`);
  // Binomial(200, 0.2): mean 40, standard deviation 5.7; 20..60 is beyond 3.5 of them either way.
  t.ok(seen['echo-v2']! >= 20 && seen['echo-v2']! <= 60, `v2 got ${seen['echo-v2']} of ${N} connections (expected about 40)`);
});

t.test('a backend of an unknown kind: the connection is closed, nothing reaches a server', async (t) => {
  const r = await connect(VIP.broken, 'hello\n');
  t.equal(r.text, '', 'no byte comes back: the waypoint closed the tunnel');
  const after = await connect(VIP.db, 'again\n');
  t.match(after.text, /^echo-v[12]\nagain\n$/, 'the waypoint keeps serving other connections');
});

t.test('a Service without a TCPRoute goes to itself', async (t) => {
  for (let i = 0; i < 5; i++) t.equal((await connect(VIP.plain, 'x\n')).text, 'echo-v1\nx\n');
});

t.test('a consumer TCPRoute applies to its own namespace only, and wins over the producer route there', async (t) => {
  const counts = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});
  const N = 20;
  const front: string[] = [];
  const dflt: string[] = [];
  const soloFront: string[] = [];
  const soloDefault: string[] = [];
  for (let i = 0; i < N; i++) {
    front.push((await connect(VIP.db, `f${i}\n`, FRONT_CLIENT)).text);
    dflt.push((await connect(VIP.db, `d${i}\n`)).text.split('\n')[0]!);
    soloFront.push((await connect(VIP.solo, `s${i}\n`, FRONT_CLIENT)).text);
    soloDefault.push((await connect(VIP.solo, 'x\n')).text);
  }
  t.same(counts(front), Object.fromEntries(front.map((_, i) => [`echo-v2\nf${i}\n`, 1])), 'front: every connection to db goes to db-v2 (the consumer route), echoed');
  // The producer route's 80/20 split: P(20 connections all to v2) = 0.2^20, never.
  t.ok((counts(dflt)['echo-v1'] ?? 0) > 0, `default: the producer route's split, not the consumer route (${JSON.stringify(counts(dflt))})`);
  t.same(counts(soloFront), Object.fromEntries(soloFront.map((_, i) => [`echo-v2\ns${i}\n`, 1])), 'front: solo goes to db-v2 (its consumer route)');
  t.same(counts(soloDefault), { 'echo-v1\nx\n': N }, 'default: solo, with no producer route, goes to itself');
  const dump = wm.waypoint.configDump() as { routeStatus: { kind: string; name: string; conditions: { type: string; status: string }[] }[] };
  t.match(dump.routeStatus.find((s) => s.kind === 'TCPRoute' && s.name === 'db-consumer')?.conditions, [
    { type: 'Accepted', status: 'True' },
    { type: 'ResolvedRefs', status: 'True' },
  ]);
});
