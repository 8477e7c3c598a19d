import t from 'tap';
import {
  TAG,
  bitString,
  fromPem,
  oid,
  readNode,
  readTime,
  readWhole,
  sequence,
  smallInteger,
  time,
  tlv,
  toPem,
  unsignedInteger,
} from '../../../core/identity/der.js';
import { DerDecodeError } from '../../../core/errors.js';

const hex = (b: Buffer): string => b.toString('hex');

t.test('integers are positive and minimal', async (t) => {
  t.equal(hex(smallInteger(0)), '020100');
  t.equal(hex(smallInteger(127)), '02017f');
  t.equal(hex(smallInteger(128)), '02020080', 'a set top bit gets a 0x00 so the value stays positive');
  t.equal(hex(smallInteger(256)), '02020100');
  t.equal(hex(unsignedInteger(Buffer.from('0000ff', 'hex'))), '020200ff', 'leading zeros stripped');
  t.equal(hex(unsignedInteger(Buffer.from('000001', 'hex'))), '020101');
  t.equal(hex(unsignedInteger(Buffer.alloc(3))), '020100');
});

t.test('object identifiers match known encodings', async (t) => {
  t.equal(hex(oid('1.2.840.10045.2.1')), '06072a8648ce3d0201');
  t.equal(hex(oid('2.5.29.17')), '0603551d11');
  t.equal(hex(oid('1.3.6.1.5.5.7.3.1')), '06082b06010505070301');
  t.equal(hex(oid('2.999.3')), '0603883703', 'first arcs above 2.39');
  t.equal(readNode(oid('1.2.840.113549.1.9.14')).oidString('x'), '1.2.840.113549.1.9.14');
  t.equal(readNode(oid('2.999.3')).oidString('x'), '2.999.3');
  t.throws(() => oid('1'), RangeError);
  t.throws(() => oid('3.1'), RangeError);
  t.throws(() => oid('1.2.x'), RangeError);
});

t.test('lengths use the short and long forms', async (t) => {
  t.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(127)).subarray(0, 2)), '047f');
  t.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(128)).subarray(0, 3)), '048180');
  t.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(300)).subarray(0, 4)), '0482012c');
  const long = tlv(TAG.OCTET_STRING, Buffer.alloc(70_000, 7));
  const n = readWhole(long);
  t.equal(n.content().length, 70_000);
  t.equal(n.content()[69_999], 7);
});

t.test('times: UTCTime until 2049, GeneralizedTime from 2050, seconds only', async (t) => {
  const d = new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678));
  const u = time(d);
  t.equal(u[0], TAG.UTC_TIME);
  t.equal(u.subarray(2).toString('latin1'), '300102030405Z');
  t.equal(readTime(readNode(u), 'x').getTime(), Date.UTC(2030, 0, 2, 3, 4, 5));
  const g = time(new Date(Date.UTC(2050, 0, 1)));
  t.equal(g[0], TAG.GENERALIZED_TIME);
  t.equal(g.subarray(2).toString('latin1'), '20500101000000Z');
  t.equal(readTime(readNode(g), 'x').getTime(), Date.UTC(2050, 0, 1));
  t.equal(readTime(readNode(time(new Date(Date.UTC(1999, 11, 31)))), 'x').getUTCFullYear(), 1999);
  t.throws(() => readTime(readNode(tlv(TAG.UTC_TIME, Buffer.from('3001020304Z'))), 'nb'), DerDecodeError);
});

t.test('the reader walks nested structures as views', async (t) => {
  const der = sequence(smallInteger(5), sequence(oid('2.5.29.17'), bitString(Buffer.from([1, 2]))));
  const [i, inner] = readWhole(der).children();
  t.equal(i!.tag, TAG.INTEGER);
  t.same([...i!.content()], [5]);
  const [o, b] = inner!.children();
  t.equal(o!.oidString('x'), '2.5.29.17');
  t.same([...b!.bitStringBytes('x')], [1, 2]);
  t.equal(b!.raw().buffer, der.buffer, 'no copies');
});

t.test('the reader refuses what is not strict DER', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['30', 'one byte', /truncated/],
    ['3080020100', 'indefinite length', /indefinite/],
    ['3005020100', 'length past the end', /runs past/],
    ['30850100000000', 'five length bytes', /too large/],
    ['1f0100', 'high tag number', /multi-byte/],
    ['020100ff', 'trailing bytes', /trailing/],
  ];
  for (const [h, name, re] of cases) {
    t.throws(() => readWhole(Buffer.from(h, 'hex')), { name: 'DerDecodeError', code: 'ERR_DER_DECODE', message: re }, name);
  }
  t.throws(() => readWhole(Buffer.from('020101', 'hex')).children(), /not constructed/);
  t.throws(() => readWhole(Buffer.from('020101', 'hex')).expect(TAG.SEQUENCE, 'thing'), /thing: expected tag 0x30/);
  t.throws(() => readWhole(Buffer.from('03020101', 'hex')).bitStringBytes('key'), /unused bits/);
  t.throws(() => readWhole(Buffer.from('060188', 'hex')).oidString('x'), /truncated oid/);
});

t.test('pem: one block of an expected label, strict base64', async (t) => {
  const der = sequence(smallInteger(1));
  const p = toPem('CERTIFICATE REQUEST', der);
  t.match(p, /^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE REQUEST-----\n$/);
  t.same(fromPem(`junk before\n${p}junk after`, ['CERTIFICATE REQUEST']), der);
  const long = toPem('X', Buffer.alloc(100, 1));
  t.ok(long.split('\n').every((l) => l.length <= 64), 'lines wrap at 64');
  t.throws(() => fromPem('hello', ['CERTIFICATE']), /no pem block/);
  t.throws(() => fromPem(toPem('CERTIFICATE', der), ['CERTIFICATE REQUEST']), /"CERTIFICATE" where "CERTIFICATE REQUEST"/);
  t.throws(() => fromPem(p + p, ['CERTIFICATE REQUEST']), /2 pem blocks/);
  t.throws(
    () => fromPem('-----BEGIN X-----\nMII*Ab==\n-----END X-----\n', ['X']),
    /not valid base64/,
  );
});
