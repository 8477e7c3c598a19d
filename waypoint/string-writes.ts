import type { Duplex } from 'node:stream';

type Chunk = { chunk: unknown; encoding: BufferEncoding | 'buffer' };
type Patched = Duplex & {
  _write(chunk: unknown, encoding: BufferEncoding, cb: (err?: Error | null) => void): void;
  _writev?(chunks: Chunk[], cb: (err?: Error | null) => void): void;
};

const toBuffer = (chunk: unknown, encoding: BufferEncoding | 'buffer') =>
  typeof chunk === 'string' ? Buffer.from(chunk, encoding === 'buffer' ? 'utf8' : encoding) : chunk;

/**
 * Makes an HTTP/2 stream receive only Buffers. Node 20's Http2Stream loses the first bytes of a
 * string chunk written through `writev` (its string storage is released before nghttp2 sends
 * the data), and Node's HTTP/1 server and client write their head as a latin1 string, often
 * corked into a writev: an HTTP/1.1 message carried over an HBONE stream then arrives with a
 * garbled status or request line. Converting strings first avoids that path entirely.
 */
export function buffersOnly<T extends Duplex>(stream: T): T {
  const s = stream as unknown as Patched;
  const write = s._write;
  s._write = function (chunk, encoding, cb) {
    if (typeof chunk === 'string') write.call(this, Buffer.from(chunk, encoding), 'buffer' as BufferEncoding, cb);
    else write.call(this, chunk, encoding, cb);
  };
  const writev = s._writev;
  if (writev) {
    s._writev = function (chunks, cb) {
      writev.call(this, chunks.map((c) => ({ chunk: toBuffer(c.chunk, c.encoding), encoding: 'buffer' as const })), cb);
    };
  }
  return stream;
}
