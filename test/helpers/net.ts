import net from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';

/** Connects to a SOCKS5 proxy from `localAddress` and asks for `host:port`; resolves with the reply code and socket. */
export async function socks5Connect(opts: {
  proxy: { host: string; port: number };
  localAddress?: string;
  host: string;
  port: number;
  /** Default true (raw TCP tests half-close); HTTP clients pass false, as their sockets are. */
  allowHalfOpen?: boolean;
}): Promise<{ reply: number; socket: net.Socket }> {
  const socket = net.connect({
    host: opts.proxy.host,
    port: opts.proxy.port,
    allowHalfOpen: opts.allowHalfOpen ?? true,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
  });
  await once(socket, 'connect');
  const octets = opts.host.split('.').map(Number);
  const req = Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, ...octets, opts.port >> 8, opts.port & 0xff]);
  socket.write(req);
  const need = 2 + 10;
  let buf = Buffer.alloc(0);
  while (buf.length < need) {
    const chunk = await new Promise<Buffer | null>((resolve) => {
      const onData = (d: Buffer) => {
        cleanup();
        resolve(d);
      };
      const onEnd = () => {
        cleanup();
        resolve(null);
      };
      const cleanup = () => {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.off('error', onEnd);
      };
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
      socket.once('error', onEnd);
    });
    if (!chunk) break;
    buf = Buffer.concat([buf, chunk]);
  }
  socket.pause();
  if (buf.length < need) return { reply: -1, socket };
  if (buf.length > need) socket.unshift(buf.subarray(need));
  return { reply: buf[3]!, socket };
}

/**
 * A server that, per connection, hashes everything it receives until the client's FIN, then
 * answers with the hex sha256 and the byte count (so half-close is exercised), and records the
 * peer address of each connection.
 */
export async function hashServer(host: string, port = 0): Promise<{ server: net.Server; port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    peers.push(`${s.remoteAddress}`);
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    s.on('end', () => s.end(`${h.digest('hex')} ${n}\n`));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(port, host, r));
  return { server, port: (server.address() as net.AddressInfo).port, peers };
}

/** An echo server. */
export async function echoServer(host: string, port = 0): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(port, host, r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** Reads a socket to its end. */
export async function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.resume();
  socket.on('data', (d: Buffer) => chunks.push(d));
  await Promise.race([once(socket, 'end'), once(socket, 'close')]);
  return Buffer.concat(chunks);
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}
