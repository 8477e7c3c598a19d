/**
 * The relay the dashboard runs in each lab network namespace (started as
 * `nsenter --net=NETNS -- node netns-relay.js SOCKET`): it listens on the Unix socket SOCKET
 * (a path, so the dashboard in the root namespace reaches it), reads one line `host:port`, connects
 * to that address inside the namespace and pipes both ways. One long-lived process per node
 * instead of one `nsenter node get.js` per scrape (that costs ~60 ms of CPU each, every 2 s).
 *
 * Only ports 15000 and 15020 (admin, metrics) are relayed: the socket is the dashboard's, in a
 * 0700 directory, but the relay is still no general-purpose way into a node.
 */
import { rmSync } from 'node:fs';
import net from 'node:net';

const ALLOWED_PORTS = new Set([15000, 15020]);
const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write('usage: netns-relay.js SOCKET\n');
  process.exit(2);
}

const server = net.createServer((client) => {
  let head = '';
  client.setTimeout(10_000, () => client.destroy());
  const onData = (b: Buffer): void => {
    head += b.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl < 0) {
      if (head.length > 300) client.destroy();
      return;
    }
    client.off('data', onData);
    client.pause();
    const m = /^([0-9a-fA-F.:]+):(\d+)$/.exec(head.slice(0, nl));
    if (!m || !ALLOWED_PORTS.has(Number(m[2])) || net.isIP(m[1]!) === 0) return void client.destroy();
    const up = net.connect(Number(m[2]), m[1]!);
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    up.on('connect', () => {
      const rest = Buffer.from(head.slice(nl + 1), 'latin1');
      if (rest.length) up.write(rest);
      client.pipe(up);
      up.pipe(client);
      client.resume();
    });
  };
  client.on('data', onData);
  client.on('error', () => client.destroy());
});
// A socket file left by a relay that was killed (SIGKILL leaves it) would make listen fail.
rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.stdout.write('relay ready\n'));
/** Closing the server removes its socket file. */
const stop = (): void => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
// The dashboard is our parent; when it goes (its end of our stdin closes), so do we.
process.stdin.on('end', stop);
process.stdin.resume();
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, stop);
