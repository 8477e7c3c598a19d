/** The upstream pool's keep-alive agent: a reused stream must not collect listeners. */
import t from 'tap';
import http from 'node:http';
import type net from 'node:net';
import { MeshState } from '../../core/model/state.js';
import type { Workload } from '../../core/model/types.js';
import { UpstreamPool } from '../../waypoint/upstream.js';
import { closeServer } from '../helpers/net.js';

t.test('regression: each request on a reused keep-alive stream added an error listener (MaxListenersExceededWarning)', async (t) => {
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => closeServer(server as unknown as net.Server));
  const port = (server.address() as net.AddressInfo).port;
  // protocol TCP: the pool opens plain TCP, so the agent's own logic is tested without HBONE
  // (test/waypoint/destination-rule.test.ts covers the HBONE streams).
  const w: Workload = { uid: 'u1', name: 'b', namespace: 'default', serviceAccount: 'b', trustDomain: 'cluster.local', node: 'n', ips: ['127.0.0.1'], protocol: 'TCP', labels: {}, healthy: true };
  const pool = new UpstreamPool({ hbone: {} as never, identity: () => 'x', baggage: () => '' });
  t.teardown(() => pool.close());
  const state = MeshState.empty();
  const agent = pool.agent(state, { workload: w, ip: '127.0.0.1', port });
  const sockets = new Set<net.Socket>();
  const errorListeners: number[] = [];
  for (let i = 0; i < 30; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ agent, host: '127.0.0.1', port, path: '/' }, (res) => {
        res.resume();
        res.on('end', () => {
          sockets.add(req.socket as net.Socket);
          // Once the socket is back on the free list.
          setImmediate(() => {
            errorListeners.push((req.socket as net.Socket).listenerCount('error'));
            resolve();
          });
        });
      });
      req.on('error', reject);
      req.end();
    });
  }
  t.equal(sockets.size, 1, 'one pooled connection carried every request');
  t.equal(new Set(errorListeners).size, 1, `the error listener count stays put (saw ${[...new Set(errorListeners)].join(', ')})`);
  t.ok(errorListeners[0]! < 5, `a handful of error listeners, not one per request (${errorListeners[0]})`);
});
