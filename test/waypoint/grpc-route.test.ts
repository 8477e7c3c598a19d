/**
 * GRPCRoute through the real waypoint, real HBONE and real ztunnels, with a real gRPC client and
 * servers (`@grpc/grpc-js`; the service is defined by hand with `makeGenericClientConstructor`,
 * JSON messages, no protobuf codegen): a weighted 80/20 split between two versions, an exact
 * method match sending one method to v2, a header match, header modifiers both ways, a backend
 * of an unknown kind (the route accepted, its call answered with a gRPC error, never hanging),
 * a call no rule matches (UNIMPLEMENTED, as Envoy maps 404), and RequestMirror (upstream
 * GRPCRouteRequestMirror): each call, a stream with a body, is copied to the mirror too.
 *
 * The gRPC client cannot dial through SOCKS5, so a local TCP forwarder (real sockets) carries
 * each of its connections through ztunnel A's SOCKS5 listener from the client workload's address
 * to the service VIP: what a captured pod connection does.
 */
import t from 'tap';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { closeServer, socks5Connect } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.160.2/.3 = ztunnels, .9 = the client's forwarder,
// .10 = the client workload (baseConfig's), .21/.22 = echo v1/v2, .30 = the waypoint, .100/.101 = VIPs.
const base = '127.0.160';
const CLIENT = `${base}.10`;
const FORWARDER = `${base}.9`;
const VIP = { echo: `${base}.100`, strict: `${base}.101` };
const PORT = 50051;
const WAYPOINT = { address: `${base}.30` };

const workloads = [
  { name: 'echo-v1', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo', version: 'v1' } },
  { name: 'echo-v2', namespace: 'default', serviceAccount: 'echo', node: 'node-a', ips: [`${base}.22`], labels: { app: 'echo', version: 'v2' } },
];
const grpcPort = [{ port: PORT, name: 'grpc' }];
const service = (name: string, vip: string, selector: Record<string, string>, viaWaypoint: boolean) => ({
  name,
  namespace: 'default',
  vips: [vip],
  ports: grpcPort,
  selector,
  ...(viaWaypoint ? { waypoint: WAYPOINT } : {}),
});
const to = (name: string, weight?: number) => ({ name, port: PORT, ...(weight !== undefined ? { weight } : {}) });
const config = {
  services: [
    service('echo', VIP.echo, { app: 'echo' }, true),
    service('strict', VIP.strict, { app: 'echo' }, true),
    service('echo-v1', `${base}.110`, { app: 'echo', version: 'v1' }, false),
    service('echo-v2', `${base}.111`, { app: 'echo', version: 'v2' }, false),
  ],
  grpcRoutes: [
    {
      name: 'echo',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: PORT }],
        rules: [
          // Exact method match: Shout goes to v2.
          { matches: [{ method: { service: 'echo.Echo', method: 'Shout' } }], backendRefs: [to('echo-v2')] },
          // A header match, with header modifiers both ways.
          {
            matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
            filters: [
              { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-route', value: 'canary' }], remove: ['x-drop'] } },
              { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-answered-by', value: 'canary-rule' }] } },
            ],
            backendRefs: [to('echo-v2')],
          },
          // RequestMirror: echo.Other calls go to v1, each copied to v2.
          {
            matches: [{ method: { service: 'echo.Other' } }],
            filters: [{ type: 'RequestMirror', requestMirror: { backendRef: to('echo-v2') } }],
            backendRefs: [to('echo-v1')],
          },
          // A backend of a kind a waypoint cannot forward to.
          { matches: [{ method: { service: 'echo.Broken' } }], backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'bucket' }] },
          // Everything else: 80/20.
          { backendRefs: [to('echo-v1', 80), to('echo-v2', 20)] },
        ],
      },
    },
    {
      name: 'strict',
      namespace: 'default',
      spec: { parentRefs: [{ kind: 'Service', name: 'strict' }], rules: [{ matches: [{ method: { service: 'echo.Echo' } }], backendRefs: [to('echo-v1')] }] },
    },
  ],
};

interface Reply {
  readonly backend: string;
  readonly method: string;
  readonly headers: Record<string, string>;
}
const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString('utf8')) as unknown,
};
const unary = (service: string, method: string): grpc.MethodDefinition<unknown, unknown> => ({
  path: `/${service}/${method}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
/** Four methods of three services; each server answers with its name, the method and the metadata it got. */
const DEFINITION: grpc.ServiceDefinition = {
  Say: unary('echo.Echo', 'Say'),
  Shout: unary('echo.Echo', 'Shout'),
  Break: unary('echo.Broken', 'Break'),
  Other: unary('echo.Other', 'Say'),
};
const Client = grpc.makeGenericClientConstructor(DEFINITION, 'Echo');

/** Every call each server answered (the mirror's copies included): server name, method, metadata. */
const served: Reply[] = [];

async function echoServer(host: string, name: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  const handler =
    (method: string): grpc.handleUnaryCall<unknown, Reply> =>
    (call, cb) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(call.metadata.getMap())) headers[k] = String(v);
      served.push({ backend: name, method, headers });
      cb(null, { backend: name, method, headers });
    };
  server.addService(DEFINITION, { Say: handler('Say'), Shout: handler('Shout'), Break: handler('Break'), Other: handler('Other') });
  await new Promise<void>((resolve, reject) => server.bindAsync(`${host}:${PORT}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}

/** A TCP listener whose connections go, through ztunnel A's SOCKS5, from the client workload to `vip:port`. */
async function forwarder(proxy: { host: string; port: number }, vip: string): Promise<net.Server> {
  const server = net.createServer((down) => {
    down.pause();
    socks5Connect({ proxy, localAddress: CLIENT, host: vip, port: PORT, allowHalfOpen: false }).then(
      ({ reply, socket: up }) => {
        if (reply !== 0) {
          up.destroy();
          down.destroy();
          return;
        }
        up.on('error', () => down.destroy());
        down.on('error', () => up.destroy());
        up.pipe(down);
        down.pipe(up);
        down.resume();
      },
      () => down.destroy(),
    );
  });
  await new Promise<void>((r) => server.listen(0, FORWARDER, r));
  return server;
}

type CallResult = { ok: true; reply: Reply; headers: grpc.Metadata } | { ok: false; error: grpc.ServiceError };

function call(client: grpc.Client, method: keyof typeof DEFINITION, metadata: Record<string, string> = {}): Promise<CallResult> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => {
    let headers = new grpc.Metadata();
    const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
    const c = fn({}, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, reply: Reply) =>
      resolve(err ? { ok: false, error: err } : { ok: true, reply, headers }),
    ) as grpc.ClientUnaryCall;
    c.on('metadata', (m: grpc.Metadata) => (headers = m));
  });
}

const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const servers = [await echoServer(`${base}.21`, 'echo-v1'), await echoServer(`${base}.22`, 'echo-v2')];
const proxy = { host: wm.mesh.addr.a, port: 15080 };
const forwarders = { echo: await forwarder(proxy, VIP.echo), strict: await forwarder(proxy, VIP.strict) };
const clientFor = (f: net.Server) => new Client(`${FORWARDER}:${(f.address() as net.AddressInfo).port}`, grpc.credentials.createInsecure());
const clients = { echo: clientFor(forwarders.echo), strict: clientFor(forwarders.strict) };
t.teardown(async () => {
  for (const c of Object.values(clients)) c.close();
  await Promise.all(Object.values(forwarders).map((f) => closeServer(f)));
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.tryShutdown(() => r()))));
  await wm.close();
});

t.test('the route is accepted; the unknown backend kind shows in ResolvedRefs', async (t) => {
  const dump = wm.waypoint.configDump() as { routeStatus: { kind: string; name: string; conditions: { type: string; status: string; reason: string }[] }[] };
  const echo = dump.routeStatus.find((s) => s.kind === 'GRPCRoute' && s.name === 'echo');
  t.match(echo?.conditions, [
    { type: 'Accepted', status: 'True', reason: 'Accepted' },
    { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind' },
  ]);
  const strict = dump.routeStatus.find((s) => s.kind === 'GRPCRoute' && s.name === 'strict');
  t.match(strict?.conditions, [
    { type: 'Accepted', status: 'True' },
    { type: 'ResolvedRefs', status: 'True' },
  ]);
});

t.test('weighted backendRefs split calls 80/20 over one client connection', async (t) => {
  const N = 200;
  const seen = { 'echo-v1': 0, 'echo-v2': 0 } as Record<string, number>;
  for (let i = 0; i < N; i++) {
    const r = await call(clients.echo, 'Say');
    if (!r.ok) {
      t.fail(`call ${i}: ${r.error.code} ${r.error.details}`);
      return;
    }
    seen[r.reply.backend] = (seen[r.reply.backend] ?? 0) + 1;
  }
  t.equal(seen['echo-v1']! + seen['echo-v2']!, N, `every call answered by v1 or v2: ${JSON.stringify(seen)}`);
  // Binomial(200, 0.2): mean 40, standard deviation 5.7; 20..60 is beyond 3.5 of them either way.
  t.ok(seen['echo-v2']! >= 20 && seen['echo-v2']! <= 60, `v2 got ${seen['echo-v2']} of ${N} (expected about 40)`);
});

t.test('an exact method match routes one method to v2', async (t) => {
  for (let i = 0; i < 20; i++) {
    const r = await call(clients.echo, 'Shout');
    t.ok(r.ok && r.reply.backend === 'echo-v2' && r.reply.method === 'Shout', `Shout ${i} → ${r.ok ? r.reply.backend : r.error.details}`);
  }
});

t.test('a header match, with request and response header modifiers', async (t) => {
  for (let i = 0; i < 10; i++) {
    const r = await call(clients.echo, 'Say', { 'x-canary': 'yes', 'x-drop': 'secret' });
    if (!r.ok) {
      t.fail(r.error.details);
      return;
    }
    t.equal(r.reply.backend, 'echo-v2', 'the header match picks the canary rule');
    t.equal(r.reply.headers['x-route'], 'canary', 'RequestHeaderModifier set reaches the server');
    t.equal(r.reply.headers['x-drop'], undefined, 'RequestHeaderModifier remove');
    t.same(r.headers.get('x-answered-by'), ['canary-rule'], 'ResponseHeaderModifier reaches the client');
  }
  const plain = await call(clients.echo, 'Say', { 'x-canary': 'no' });
  t.ok(plain.ok && plain.reply.headers['x-route'] === undefined && plain.headers.get('x-answered-by').length === 0, 'another header value: not the canary rule');
});

t.test('an unknown backend kind answers the call with a gRPC error, HTTP 500 as Envoy maps it', async (t) => {
  const r = await call(clients.echo, 'Break');
  t.notOk(r.ok, 'the call fails');
  if (r.ok) return;
  t.equal(r.error.code, grpc.status.UNKNOWN, 'grpc-status 2 (UNKNOWN): Envoy maps a local 500 so');
  t.equal(r.error.details, 'backend not found');
  t.same(r.error.metadata.get('x-envoy-local-status'), ['500']);
  const after = await call(clients.echo, 'Say');
  t.ok(after.ok, 'the connection keeps serving other calls');
});

t.test('a call no rule matches gets UNIMPLEMENTED (no route, 404)', async (t) => {
  const miss = await call(clients.strict, 'Other');
  t.notOk(miss.ok);
  if (!miss.ok) t.equal(miss.error.code, grpc.status.UNIMPLEMENTED, 'grpc-status 12 for echo.Other/Say');
  const hit = await call(clients.strict, 'Say');
  t.ok(hit.ok && hit.reply.backend === 'echo-v1', 'echo.Echo/Say matches the service-only rule');
});

t.test('GRPCRouteRequestMirror: each call goes to its backend and a copy to the mirror', async (t) => {
  const N = 5;
  for (let i = 0; i < N; i++) {
    const r = await call(clients.echo, 'Other', { 'x-call': String(i) });
    t.ok(r.ok && r.reply.backend === 'echo-v1', `call ${i} answered by the rule's backend (${r.ok ? r.reply.backend : r.error.details})`);
  }
  const copies = () => served.filter((s) => s.backend === 'echo-v2' && s.method === 'Other').map((s) => s.headers['x-call']);
  await until('the mirror to have every call', () => copies().length >= N);
  t.same(copies().sort(), ['0', '1', '2', '3', '4'], 'echo-v2 got a copy of each call, request message included (it decoded it)');
});
