/**
 * HTTP/1.1 Upgrade (WebSocket) requests through the real waypoint, real HBONE and real ztunnels
 * get the rule's and the chosen backend's `RequestHeaderModifier` and `URLRewrite`, as any other
 * request does (upstream Gateway API conformance runs its header and rewrite cases over plain
 * requests; Envoy applies route filters to an upgrade request's head the same way). The backend
 * answers 101 and then writes the request head it got, as JSON, before echoing.
 */
import t from 'tap';
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { closeServer } from '../helpers/net.js';
import { meshAgent, startWaypointMesh } from './fixture.js';

// Loopback addresses of this file: 127.0.162.2 = ztunnel node-a, .3 = node-b, .10 = client,
// .21 = the backend, .30 = the waypoint, .100 = the service VIP.
const base = '127.0.162';
const CLIENT = `${base}.10`;
const VIP = `${base}.100`;
const WAYPOINT = { address: `${base}.30` };

const workloads = [{ name: 'ws', namespace: 'default', serviceAccount: 'ws', node: 'node-b', ips: [`${base}.21`], labels: { app: 'ws' } }];
const headerMod = (m: Record<string, unknown>) => ({ type: 'RequestHeaderModifier', requestHeaderModifier: m });
const prefix = (value: string) => [{ path: { type: 'PathPrefix', value } }];
const config = {
  services: [{ name: 'ws', namespace: 'default', vips: [VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'ws' }, waypoint: WAYPOINT }],
  httpRoutes: [
    {
      name: 'ws',
      namespace: 'default',
      spec: {
        parentRefs: [{ kind: 'Service', group: '', name: 'ws', port: 80 }],
        rules: [
          // The rule's filters, then the backend's.
          {
            matches: prefix('/rule'),
            filters: [
              headerMod({ set: [{ name: 'X-Set', value: 'by-rule' }], add: [{ name: 'X-Add', value: 'added' }], remove: ['X-Drop'] }),
              { type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/socket' } } },
            ],
            backendRefs: [{ name: 'ws', port: 80, filters: [headerMod({ set: [{ name: 'X-Backend-Filter', value: 'by-backend' }] })] }],
          },
          // A backend's own URLRewrite.
          {
            matches: prefix('/backend'),
            backendRefs: [{ name: 'ws', port: 80, filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/full' } } }] }],
          },
          // No filter: the head goes out as the client wrote it.
          { matches: prefix('/plain'), backendRefs: [{ name: 'ws', port: 80 }] },
        ],
      },
    },
  ],
};

interface Seen {
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

// The backend: 101, then the head it got as one JSON line, then an echo.
const server = http.createServer((_req, res) => res.writeHead(426).end());
server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
  socket.on('error', () => {});
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${req.headers.upgrade}\r\nconnection: Upgrade\r\n\r\n`);
  socket.write(`${JSON.stringify({ url: req.url, headers: req.headers })}\n`);
  socket.pipe(socket);
});
await new Promise<void>((r) => server.listen(8080, `${base}.21`, r));
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  server.closeAllConnections();
  await closeServer(server as unknown as net.Server);
});

/** Upgrades `path` through the mesh; what the backend saw, and that bytes then flow both ways. */
async function upgrade(path: string, headers: Record<string, string> = {}): Promise<{ status: number; seen: Seen; echo: string }> {
  const { res, socket, head } = await new Promise<{ res: http.IncomingMessage; socket: net.Socket; head: Buffer }>((resolve, reject) => {
    const req = http.request(`http://${VIP}${path}`, { agent, headers: { connection: 'Upgrade', upgrade: 'websocket', ...headers } });
    req.on('upgrade', (r, s, h) => resolve({ res: r, socket: s, head: h }));
    req.on('response', (r) => reject(new Error(`got ${r.statusCode} instead of an upgrade`)));
    req.on('error', reject);
    req.end();
  });
  try {
    // What came with the 101 (Node hands it over as `head`), then what follows.
    let text = head.toString('utf8');
    socket.setEncoding('utf8');
    socket.write('ping\n');
    // The head line, then the echo of "ping".
    await new Promise<void>((resolve, reject) => {
      if (text.split('\n').length >= 3) return resolve();
      socket.on('data', (d: string) => {
        text += d;
        if (text.split('\n').length >= 3) resolve();
      });
      socket.once('error', reject);
      socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
    });
    const [line, echo] = text.split('\n');
    return { status: res.statusCode ?? 0, seen: JSON.parse(line!) as Seen, echo: echo! };
  } finally {
    socket.destroy();
  }
}

t.test("an upgrade gets the rule's header modifier and URLRewrite, then the backend's header modifier", async (t) => {
  const r = await upgrade('/rule/chat?room=1', { 'x-set': 'from-client', 'x-add': 'first', 'x-drop': 'secret' });
  t.equal(r.status, 101);
  t.equal(r.echo, 'ping', 'bytes flow both ways after the upgrade');
  t.equal(r.seen.url, '/socket/chat?room=1', 'URLRewrite ReplacePrefixMatch, query kept');
  t.equal(r.seen.headers.host, 'rewritten.example', 'URLRewrite hostname');
  t.equal(r.seen.headers['x-set'], 'by-rule', 'set');
  t.equal(r.seen.headers['x-add'], 'first,added', 'add');
  t.equal(r.seen.headers['x-drop'], undefined, 'remove');
  t.equal(r.seen.headers['x-backend-filter'], 'by-backend', "the chosen backend's header modifier");
  t.equal(r.seen.headers.upgrade, 'websocket', 'the upgrade headers pass on');
  t.match(r.seen.headers.connection, /upgrade/i);
});

t.test("an upgrade gets the chosen backend's URLRewrite", async (t) => {
  const r = await upgrade('/backend/x');
  t.equal(r.status, 101);
  t.equal(r.seen.url, '/full', 'ReplaceFullPath');
  t.equal(r.seen.headers.host, VIP, 'the Host is kept without a hostname rewrite');
});

t.test('an upgrade without filters goes out as the client sent it', async (t) => {
  const r = await upgrade('/plain/y', { 'x-set': 'from-client' });
  t.equal(r.status, 101);
  t.equal(r.seen.url, '/plain/y');
  t.equal(r.seen.headers['x-set'], 'from-client');
  t.equal(r.seen.headers['x-backend-filter'], undefined);
});
