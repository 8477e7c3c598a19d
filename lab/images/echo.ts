#!/usr/bin/env node
/** `lab/echo`: a TCP echo server on $PORT (default 9000), for lab pods. */
import net from 'node:net';

const port = Number(process.env['PORT'] ?? 9000);
const server = net.createServer((s) => {
  s.on('error', () => s.destroy());
  s.pipe(s);
});
server.listen(port, '0.0.0.0', () => process.stdout.write(`echo listening on ${port}\n`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
