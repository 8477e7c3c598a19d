/** The access log's batching front (waypoint/log-batch.ts), with real pino in front of it. */
import t from 'tap';
import { pino } from 'pino';
import { LineBatcher } from '../../waypoint/log-batch.js';

function sink() {
  const writes: string[] = [];
  let syncFlushes = 0;
  return { writes, syncFlushes: () => syncFlushes, write: (d: string) => writes.push(d), flushSync: () => void syncFlushes++ };
}

t.test('lines wait until minLength characters are pending, then go on as one write', async (t) => {
  const s = sink();
  const b = new LineBatcher(s, 100);
  b.write('a'.repeat(40) + '\n');
  b.write('b'.repeat(40) + '\n');
  t.same(s.writes, [], 'below minLength nothing is written');
  t.equal(b.pending, 82);
  b.write('c'.repeat(40) + '\n');
  t.same(s.writes, [`${'a'.repeat(40)}\n${'b'.repeat(40)}\n${'c'.repeat(40)}\n`], 'one joined write, lines in order');
  t.equal(b.pending, 0);
});

t.test('flush passes on what waits (the periodic timer); flushSync also has the sink write synchronously', async (t) => {
  const s = sink();
  const b = new LineBatcher(s, 1 << 20);
  b.flush();
  t.same(s.writes, [], 'nothing waiting: no empty write');
  b.write('x\n');
  b.flush();
  t.same(s.writes, ['x\n']);
  b.write('y\n');
  b.flushSync();
  t.same(s.writes, ['x\n', 'y\n'], 'flushSync passes the waiting line on first');
  t.equal(s.syncFlushes(), 1, 'then asks the sink to write synchronously');
});

t.test('pino through the batcher: every line whole, in order, as JSON', async (t) => {
  const s = sink();
  const b = new LineBatcher(s, 8 * 1024);
  const log = pino({ level: 'info', base: { component: 'waypoint' } }, b as unknown as NodeJS.WritableStream).child({ scope: 'access' });
  for (let i = 0; i < 500; i++) log.info({ i, path: `/p/${i}`, text: 'é✓' }, 'request complete');
  t.ok(s.writes.length > 1 && s.writes.length < 500, `batched into ${s.writes.length} writes`);
  b.flush();
  const lines = s.writes.join('').split('\n');
  t.equal(lines.pop(), '', 'ends with a newline');
  t.equal(lines.length, 500);
  const parsed = lines.map((l) => JSON.parse(l) as { i: number; msg: string; scope: string; text: string });
  t.same(
    parsed.map((p) => p.i),
    Array.from({ length: 500 }, (_, i) => i),
    'in order',
  );
  t.ok(parsed.every((p) => p.msg === 'request complete' && p.scope === 'access' && p.text === 'é✓'), 'fields intact, non-ASCII too');
});
