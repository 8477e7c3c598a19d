// Each pod → pod path of the redirect (issue 4) goes where it should: the destination sees the
// expected peer, connections and a stream complete, on one node of the lab. Root only. What the
// paths cost is a benchmark, not a test: bench/cni-redirect.ts (docs/cni.md, "Cost of the redirect").
import t from 'tap';
import { Lab, labSkipReason } from './lab.js';
import { HELLO_PORT, peerSeen, SINK_PORT, walkRedirectPaths } from './redirect-paths.js';

const skip = await labSkipReason();
// Small: enough to show each path carries connections and a stream whole, nothing to measure.
const CONNECTIONS = 10;
const BYTES = 1024 * 1024;
const STREAMS = 3;

t.test('every redirect path reaches its destination through the expected hop', { skip }, async (t) => {
  const lab = await Lab.create(t);
  await walkRedirectPaths(lab, {
    ready({ meshed, plain }) {
      t.match(meshed, { mode: 'enrolled', attached: { redirect: true } });
      t.match(plain, { mode: 'not-ambient' });
    },
    async path({ name, from, host, expectedPeer }) {
      const peer = await peerSeen(from, host);
      t.equal(peer, expectedPeer, `${name}: the destination saw ${peer}`);
      const lat = await from.request({ op: 'latency', host, port: HELLO_PORT, n: CONNECTIONS });
      t.ok(lat.ok, `${name}: ${CONNECTIONS} connections (${lat.error ?? 'ok'})`);
      for (let i = 0; i < STREAMS; i++) {
        const r = await from.request({ op: 'throughput', host, port: SINK_PORT, bytes: BYTES });
        t.ok(r.ok, `${name}: ${BYTES} bytes arrived (${r.error ?? r.bytes})`);
      }
    },
  });
});
