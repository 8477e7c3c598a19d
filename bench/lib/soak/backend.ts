/**
 * The soak benchmark's backend, run as its own process (`node backend.js HOST PORT STATS_PORT
 * KEEPALIVE_MS`): it holds one socket per connection ztunnel B opens, up to the number of client
 * connections, which must not share the client's file-descriptor limit.
 *
 * An ordinary Node HTTP/1.1 keep-alive server: every request gets 200 and a body that names the
 * request's path (so the client can tell its own answer from any other), padded to
 * `RESPONSE_BYTES` (protocol.ts). An idle keep-alive connection is closed after KEEPALIVE_MS, as real
 * backends do; that close must travel back through both ztunnels to the client.
 *
 * `GET http://HOST:STATS_PORT/stats` answers `BackendStats` (protocol.ts) as JSON.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { responseBody, type BackendStats } from './protocol.js';

function main(argv: readonly string[]): void {
  const [host, portText, statsPortText, keepAliveText] = argv;
  const port = Number(portText);
  const statsPort = Number(statsPortText);
  const keepAliveTimeoutMs = Number(keepAliveText);
  if (!host || !Number.isInteger(port) || !Number.isInteger(statsPort) || !Number.isInteger(keepAliveTimeoutMs)) {
    process.stderr.write('usage: backend.js HOST PORT STATS_PORT KEEPALIVE_MS\n');
    process.exit(2);
  }
  const counts = { accepted: 0, open: 0, requests: 0, idleClosed: 0, peerClosed: 0 };
  const server = http.createServer((req, res) => {
    counts.requests++;
    const body = responseBody(req.url ?? '/');
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = keepAliveTimeoutMs;
  server.on('connection', (socket: Socket) => {
    counts.accepted++;
    counts.open++;
    let idleTimeout = false;
    let peerEnded = false;
    // Node arms the socket's timeout with keepAliveTimeout after each response; 'timeout' is the
    // server deciding the connection sat idle too long, after which it destroys the socket.
    socket.on('timeout', () => (idleTimeout = true));
    socket.on('end', () => (peerEnded = true));
    socket.on('close', (hadError) => {
      counts.open--;
      if (idleTimeout && !peerEnded) counts.idleClosed++;
      else if (peerEnded || hadError) counts.peerClosed++;
    });
  });
  server.listen(port, host);
  const stats = http.createServer((_req, res) => {
    const body: BackendStats = { keepAliveTimeoutMs, ...counts };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  stats.listen(statsPort, host);
}

main(process.argv.slice(2));
