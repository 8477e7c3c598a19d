/**
 * Connection-pool limits of a cluster (waypoint/traffic-policy/pool.ts): busy HTTP/1.1
 * connections, the pending queue (first come first served, cancellable), requests in flight,
 * retries in flight; overflow is 503 `UO`.
 */
import t from 'tap';
import { PoolLimits } from '../../../waypoint/traffic-policy/pool.js';
import { WaypointError } from '../../../waypoint/status.js';

const signal = () => new AbortController().signal;

t.test('maxConnections 1, http1MaxPendingRequests 1: one in flight, one waits, the third overflows with UO', async (t) => {
  const pool = new PoolLimits('outbound|80||web', { maxConnections: 1, http1MaxPendingRequests: 1 });
  const first = await pool.admit(true, signal());
  let secondIn = false;
  const second = pool.admit(true, signal()).then((r) => ((secondIn = true), r));
  const third = await pool.admit(true, signal()).catch((e: unknown) => e);
  t.ok(third instanceof WaypointError);
  t.match(third, { status: 503, flag: 'UO', code: 'ERR_WAYPOINT_UPSTREAM_OVERFLOW', retryOn: undefined, body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow' });
  t.same(pool.dump(), { active: 1, busyHttp1Connections: 1, pending: 1, retries: 0 });
  t.notOk(secondIn, 'the second waits for the connection');
  first();
  first(); // releasing twice counts once
  const release2 = await second;
  t.same(pool.dump(), { active: 1, busyHttp1Connections: 1, pending: 0, retries: 0 }, 'the pending request took the freed connection');
  release2();
  t.same(pool.dump(), { active: 0, busyHttp1Connections: 0, pending: 0, retries: 0 });
});

t.test('a waiting request that is cancelled leaves the queue with the signal\'s reason', async (t) => {
  const pool = new PoolLimits('c', { maxConnections: 1 });
  const held = await pool.admit(true, signal());
  const ac = new AbortController();
  const waiting = pool.admit(true, ac.signal);
  t.equal(pool.dump().pending, 1);
  ac.abort(new Error('client went away'));
  await t.rejects(waiting, { message: 'client went away' });
  t.equal(pool.dump().pending, 0);
  held();
});

t.test('http2MaxRequests bounds requests in flight over any protocol, without a queue', async (t) => {
  const pool = new PoolLimits('c', { http2MaxRequests: 2 });
  const a = await pool.admit(false, signal());
  await pool.admit(true, signal());
  const over = await pool.admit(false, signal()).catch((e: unknown) => e);
  t.match(over, { flag: 'UO', status: 503 });
  a();
  t.ok(await pool.admit(false, signal()), 'a slot again');
});

t.test('no limits: nothing waits; HTTP/2 requests never take an HTTP/1.1 connection', async (t) => {
  const pool = new PoolLimits('c', undefined);
  for (let i = 0; i < 100; i++) await pool.admit(i % 2 === 0, signal());
  t.same(pool.dump(), { active: 100, busyHttp1Connections: 50, pending: 0, retries: 0 });
});

t.test('maxRetries: retries in flight across the cluster; a new limit applies to what comes next', async (t) => {
  const pool = new PoolLimits('c', { maxRetries: 1 });
  const r = pool.admitRetry();
  t.ok(r);
  t.equal(pool.admitRetry(), undefined, 'a second retry in flight overflows');
  r!();
  t.ok(pool.admitRetry(), 'free again');
  pool.update({ maxRetries: 5 });
  t.ok(pool.admitRetry());
});
