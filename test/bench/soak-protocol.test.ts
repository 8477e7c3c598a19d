import t from 'tap';
import { parseResponse, requestBytes, responseBody, RESPONSE_BYTES } from '../../bench/lib/soak/protocol.js';

const head = (status: number, length: number): string => `HTTP/1.1 ${status} X\r\nContent-Length: ${length}\r\nKeep-Alive: timeout=5\r\n\r\n`;
const whole = (path: string): Buffer => Buffer.from(head(200, RESPONSE_BYTES) + responseBody(path), 'latin1');

t.test('the body names its path and has the fixed size', async (t) => {
  t.equal(Buffer.byteLength(responseBody('/u1/r2')), RESPONSE_BYTES);
  t.ok(responseBody('/u1/r2').startsWith('/u1/r2\n'));
  t.equal(requestBytes('/a').toString(), 'GET /a HTTP/1.1\r\nHost: soak-backend\r\n\r\n');
});

t.test('a whole response with its own body is answered', async (t) => {
  t.same(parseResponse(whole('/u1/r2'), '/u1/r2'), { kind: 'ok' });
});

t.test('a response cut anywhere is incomplete, not answered', async (t) => {
  const buf = whole('/u1/r2');
  for (const cut of [1, 20, buf.indexOf('\r\n\r\n') + 4, buf.length - 1]) {
    t.same(parseResponse(buf.subarray(0, cut), '/u1/r2'), { kind: 'incomplete' }, `cut at ${cut}`);
  }
});

t.test('wrong answers are lost with a stable reason', async (t) => {
  t.same(parseResponse(whole('/u1/r3'), '/u1/r2'), { kind: 'bad', why: 'wrong body' }, "another request's body");
  t.same(parseResponse(Buffer.from(head(503, 0)), '/x'), { kind: 'bad', why: 'status 503' });
  t.same(parseResponse(Buffer.concat([whole('/x'), Buffer.from('H')]), '/x'), { kind: 'bad', why: 'bytes after the response' });
  t.same(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), '/x'), { kind: 'bad', why: 'no content-length' });
  t.same(parseResponse(Buffer.from('SSH-2.0\r\n\r\n'), '/x'), { kind: 'bad', why: 'not an http/1.1 response' });
  t.same(parseResponse(Buffer.alloc(9000, 'a'), '/x'), { kind: 'bad', why: 'response head too long' });
});
