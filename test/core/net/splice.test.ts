import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { splice } from '../../../core/net/splice.js';
import { until } from '../../helpers/until.js';

/** A TCP pair on loopback: returns [client side, server side]. */
async function pair(t: Test): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const [s] = await accepted;
  await once(client, 'connect');
  t.teardown(() => {
    client.destroy();
    s.destroy();
  });
  return [client, s];
}

t.test('copies both ways, keeps the reverse direction open after a FIN, and reports once', async (t) => {
  // app1 <-> (x1 | splice | x2) <-> app2
  const [app1, x1] = await pair(t);
  const [x2, app2] = await pair(t);
  let doneCalls = 0;
  const done = new Promise<Error | undefined>((resolve) =>
    splice(x1, x2, (err) => {
      doneCalls++;
      resolve(err);
    }),
  );
  app1.end('hello');
  const got: Buffer[] = [];
  app2.on('data', (d: Buffer) => got.push(d));
  await once(app2, 'end');
  t.equal(Buffer.concat(got).toString(), 'hello', 'bytes and FIN arrived');
  // The other direction still flows after app1's FIN.
  app2.end('world');
  const back: Buffer[] = [];
  app1.on('data', (d: Buffer) => back.push(d));
  await once(app1, 'end');
  t.equal(Buffer.concat(back).toString(), 'world');
  t.equal(await done, undefined, 'no error');
  // Every socket of both connections has closed: no event is left that could report a second time.
  await until('all four sockets to close', () => [app1, x1, x2, app2].every((s) => s.closed));
  t.equal(doneCalls, 1, 'onDone called exactly once');
});

t.test('a reset on one side resets the other: the far application sees RST, not an orderly end', async (t) => {
  const [app1, x1] = await pair(t);
  const [x2, app2] = await pair(t);
  const done = new Promise<Error | undefined>((resolve) => splice(x1, x2, resolve));
  app2.resume();
  let ended = false;
  app2.once('end', () => (ended = true));
  const app2Error = new Promise<NodeJS.ErrnoException>((r) => app2.once('error', r));
  app1.resetAndDestroy();
  const err = await done;
  t.ok(err, 'the splice reports the reset');
  t.equal((await app2Error).code, 'ECONNRESET', 'the other application got a reset');
  t.notOk(ended, 'and never an orderly end (a truncated response must not look whole)');
  t.ok(x1.destroyed && x2.destroyed, 'both spliced sockets destroyed');
});

t.test('a reset reaching a side that already sent its FIN closes it (libuv allows no reset after a shutdown)', async (t) => {
  const [app1, x1] = await pair(t);
  const [x2, app2] = await pair(t);
  const done = new Promise<Error | undefined>((resolve) => splice(x1, x2, resolve));
  app1.on('error', () => {});
  app1.resume();
  const app2Error = new Promise<NodeJS.ErrnoException>((r) => app2.once('error', r));
  app2.resume();
  // app2 half-closes: x1 sends FIN to app1 (x1 is shut down for writing), then app1 resets.
  app2.end();
  await once(app1, 'end');
  app1.resetAndDestroy();
  t.ok(await done, 'the splice reports the reset');
  t.equal((await app2Error).code, 'ECONNRESET', 'the reset reached app2');
  t.ok(x1.destroyed && x2.destroyed, 'both spliced sockets destroyed (a reset on the shut-down one would have leaked its handle)');
});

t.test('backpressure: a reader that does not read stops the writer from buffering without bound', async (t) => {
  const [app1, x1] = await pair(t);
  const [x2, app2] = await pair(t);
  splice(x1, x2, () => {});
  app2.pause(); // the destination stops reading
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  // Write until the source socket itself reports backpressure and the splice has paused its
  // reader (the positive sign that it stopped taking bytes); then it must be holding at most its
  // bound plus kernel buffers, not everything written. Without backpressure every write drains and
  // the loop writes all 2000 chunks.
  for (let i = 0; i < 2000; i++) {
    written += chunk.length;
    if (!app1.write(chunk)) {
      let drained = false;
      void once(app1, 'drain').then(() => (drained = true), () => undefined);
      const next = await until('the writer to drain or the splice to pause its reader', () => (drained ? 'drained' : x1.isPaused() && 'paused'));
      if (next === 'paused') break;
    }
  }
  t.ok(written < 2000 * chunk.length, `writer was stopped after ${written} bytes`);
  t.ok(x2.writableLength <= 2 * 1024 * 1024, `splice buffers ${x2.writableLength} bytes, within its bound`);
  t.ok(x1.isPaused(), 'the splice paused its reader');
});
