import type { Duplex } from 'node:stream';

/**
 * Copies bytes both ways between two duplex streams until both directions are finished.
 *
 * Invariants: backpressure holds in both directions (pipe pauses the reader while the writer's
 * buffer is full); a FIN on one side becomes a FIN (or HTTP/2 END_STREAM) on the other while the
 * reverse direction keeps flowing (half-close); an error or reset on either side destroys both,
 * so no socket outlives its peer. `onDone` is called exactly once, after both sides closed.
 */
export function splice(a: Duplex, b: Duplex, onDone: (err?: Error) => void): void {
  let firstError: Error | undefined;
  let closed = 0;
  let done = false;
  const finish = () => {
    if (++closed < 2 || done) return;
    done = true;
    onDone(firstError);
  };
  const fail = (err: Error) => {
    firstError ??= err;
    a.destroy();
    b.destroy();
  };
  a.on('error', fail);
  b.on('error', fail);
  // A side that closes without finishing both of its directions (e.g. RST) takes the other down.
  const onClose = (self: Duplex, other: Duplex) => () => {
    if (!(self.readableEnded && self.writableFinished)) other.destroy();
    finish();
  };
  a.once('close', onClose(a, b));
  b.once('close', onClose(b, a));
  a.pipe(b);
  b.pipe(a);
}
