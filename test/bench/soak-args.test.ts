import t from 'tap';
import { UsageError } from '../../bench/lib/args.js';
import { DEFAULT_BASE, DEFAULT_CONNECTIONS, DEFAULT_DURATION_SEC, parseSoakArgs } from '../../bench/lib/soak/args.js';

t.test('defaults: 10,000 users for 5 minutes, ramp and warm-up inside the run', async (t) => {
  const a = parseSoakArgs([], 20_000);
  t.equal(a.connections, DEFAULT_CONNECTIONS);
  t.equal(a.durationSec, DEFAULT_DURATION_SEC);
  t.equal(a.base, DEFAULT_BASE);
  t.ok(a.rampSec > 0 && a.rampSec < a.warmupSec, 'warm-up ends after the ramp');
  t.ok(a.warmupSec <= a.durationSec / 2, 'half the run at least is left after warm-up');
});

t.test('a quick run', async (t) => {
  const a = parseSoakArgs(['--connections', '1000', '--duration', '60', '--json'], 20_000);
  t.equal(a.connections, 1000);
  t.equal(a.durationSec, 60);
  t.equal(a.json, true);
});

t.test('more users than the descriptor limit allows is refused, saying what to do', async (t) => {
  t.throws(() => parseSoakArgs(['--connections', '19500'], 20_000), { code: 'ERR_BENCH_USAGE', message: /raise ulimit -n or use at most 19000 connections/ });
  t.doesNotThrow(() => parseSoakArgs(['--connections', '19000'], 20_000));
});

t.test('every bad flag is reported at once', async (t) => {
  const err = t.throws(() => parseSoakArgs(['--connections', '0', '--duration', '4', '--base', '10.0.0', '--warmup', '999'], 20_000)) as unknown;
  t.type(err, UsageError);
  const message = (err as Error).message;
  t.match(message, /--connections/);
  t.match(message, /--duration/);
  t.match(message, /--base/);
  t.match(message, /--warmup/);
});
