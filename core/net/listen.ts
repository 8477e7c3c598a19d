import type net from 'node:net';

/** Binds a server; resolves with its address, rejects with the bind error (e.g. EADDRINUSE). */
export async function listen(server: net.Server, port: number, host: string): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as net.AddressInfo;
}
