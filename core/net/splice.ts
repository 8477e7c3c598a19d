import type { Duplex } from 'node:stream';

/**
 * Bytes a direction may hold in its writer's buffer before the reader is paused. Larger than
 * Node's 16 KiB default so one event-loop turn can gather several reads into one write.
 */
export const MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * Copies bytes both ways between two duplex streams until both directions are finished.
 *
 * Invariants: backpressure holds in both directions (the reader pauses while its writer holds
 * more than MAX_BUFFERED_BYTES); a FIN on one side becomes a FIN (or HTTP/2 END_STREAM) on the
 * other while the reverse direction keeps flowing (half-close); an error or reset on either side
 * destroys both, so no socket outlives its peer. `onDone` is called exactly once, after both
 * sides closed.
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
  pump(a, b);
  pump(b, a);
}

/**
 * One direction. The first chunk of an event-loop turn is written at once (a request's bytes
 * are not held back); further chunks in the same turn are corked and flushed together when the
 * turn ends (setImmediate runs right after the poll phase). A TLS connection that delivered four
 * 16 KiB records in one read becomes two writes instead of four, and the receiver is woken less.
 */
function pump(src: Duplex, dst: Duplex): void {
  // An HTTP/2 stream needs no gathering: Node's session already batches a turn's frames into one
  // TLS write (it flushes from a native immediate).
  const gather = !('session' in dst);
  let inTurn = false;
  let corked = false;
  const endTurn = () => {
    inTurn = false;
    if (corked) {
      corked = false;
      dst.uncork();
    }
  };
  src.on('data', (chunk: Buffer) => {
    if (gather) {
      if (!inTurn) {
        inTurn = true;
        setImmediate(endTurn);
      } else if (!corked) {
        corked = true;
        dst.cork();
      }
    }
    dst.write(chunk);
    if (dst.writableLength > MAX_BUFFERED_BYTES) src.pause();
  });
  dst.on('drain', () => {
    if (src.isPaused()) src.resume();
  });
  src.once('end', () => {
    // end() uncorks and flushes whatever this turn gathered, then sends FIN / END_STREAM.
    dst.end();
  });
  // A reader paused earlier (e.g. after a SOCKS5 handshake) stays paused until told to flow.
  src.resume();
}
