import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Bytes a direction may hold in its writer's buffer before the reader is paused. Larger than
 * Node's 16 KiB default so one event-loop turn can gather several reads into one write.
 */
export const MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * Aborts one side of a splice so its peer learns of a reset, not of an orderly end: a TCP socket
 * sends RST, an HTTP/2 stream sends RST_STREAM(CONNECT_ERROR), which RFC 9113 §8.5 gives a
 * tunnel whose TCP connection was reset (and which the far ztunnel turns back into a RST).
 * A plain `destroy()` would close a TCP socket with FIN, and a client could take a truncated
 * response for a whole one.
 */
export function resetSide(side: Duplex): void {
  if (side.destroyed) return;
  if ('rstCode' in side && typeof (side as http2.Http2Stream).close === 'function') {
    (side as http2.Http2Stream).close(http2.constants.NGHTTP2_CONNECT_ERROR);
    return;
  }
  // libuv refuses a reset after a shutdown (FIN already sent): Node then leaves the handle open
  // for good (and a process hangs in its exit cleanup), so such a socket is only destroyed.
  if (side instanceof net.Socket && !side.writableEnded && typeof side.resetAndDestroy === 'function') {
    try {
      // Only a plain TCP handle can send RST (a TLS socket's handle cannot).
      side.resetAndDestroy();
      return;
    } catch {
      // fall through
    }
  }
  side.destroy();
}

/**
 * Copies bytes both ways between two duplex streams until both directions are finished.
 *
 * Invariants: backpressure holds in both directions (the reader pauses while its writer holds
 * more than MAX_BUFFERED_BYTES); a FIN on one side becomes a FIN (or HTTP/2 END_STREAM) on the
 * other while the reverse direction keeps flowing (half-close); an error or reset on either side
 * resets the other (RST / RST_STREAM, see `resetSide`), so no socket outlives its peer and no
 * reset reaches the far application as an orderly end. A side that closes in order while the
 * other still has bytes for it (a socket that ended both directions at the peer's FIN) closes
 * the other too: those bytes would have nowhere to go. `onDone` is called exactly once, after
 * both sides closed.
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
    resetSide(a);
    resetSide(b);
  };
  a.on('error', fail);
  b.on('error', fail);
  const onClose = (self: Duplex, other: Duplex) => () => {
    if (!(self.readableEnded && self.writableFinished)) {
      // Closed without finishing both directions: reset (RST, RST_STREAM) or destroyed.
      firstError ??= new Error('connection reset');
      resetSide(other);
    } else if (!other.readableEnded) other.destroy();
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
