import t, { type Test } from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { CertificateAuthority } from '../../../core/identity/ca.js';
import type { WorkloadCertificate } from '../../../core/identity/certificate.js';
import { generateKeyAndCsr } from '../../../core/identity/csr.js';
import {
  LocalCaClient,
  SecretManager,
  type CaClient,
  type CaSignResult,
  type SecretManagerInputs,
} from '../../../core/identity/secret-manager.js';
import { CertificateUnavailableError } from '../../../core/errors.js';
import { createLogger } from '../../../core/telemetry/log.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { until } from '../../helpers/until.js';
import { HTTPBIN, SLEEP, TD } from './fixtures.js';

const ca = await CertificateAuthority.create({ trustDomain: TD, ttlSeconds: 3600 });

/** A CaClient that records calls, can fail on demand, and can hold requests until released. */
class ScriptedCa implements CaClient {
  readonly calls: number[] = [];
  failNext = 0;
  failAlways = false;
  hold: Promise<void> | undefined;
  constructor(private readonly inner: CaClient = new LocalCaClient(ca)) {}
  async sign(csrPem: string, identity: string): Promise<CaSignResult> {
    this.calls.push(Date.now());
    if (this.hold) await this.hold;
    if (this.failAlways || this.failNext > 0) {
      this.failNext = Math.max(0, this.failNext - 1);
      throw new Error('ca unavailable (scripted)');
    }
    return this.inner.sign(csrPem, identity);
  }
}

/** Resolves once `ca` has been called `n` times (the request reached the CA). */
async function callsReach(ca: ScriptedCa, n: number): Promise<void> {
  await until(`the CA to be called ${n} times`, () => ca.calls.length >= n, { everyMs: 2 });
}

function manager(t: Test, inputs: Partial<SecretManagerInputs> & { caClient: CaClient }): SecretManager {
  const sm = new SecretManager(inputs);
  t.teardown(() => sm.close());
  return sm;
}

/**
 * Resolves with the next certificate `sm` announces for `identity`. Holds a ref'd timer while
 * waiting: the manager's own timers are unref'd and would not keep the test process alive.
 */
function nextRotation(sm: SecretManager, identity: string, timeoutMs = 10_000): Promise<WorkloadCertificate> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no certificate for ${identity} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = sm.onRotate((c) => {
      if (c.identity !== identity) return;
      clearTimeout(timer);
      off();
      resolve(c);
    });
  });
}

t.test('the first fetch obtains a certificate; later fetches return the cached one', async (t) => {
  const scripted = new ScriptedCa();
  const sm = manager(t, { caClient: scripted });
  const cert = await sm.fetch(SLEEP);
  t.equal(cert.identity, SLEEP);
  t.same(cert.rootsPem, [ca.rootCertPem]);
  const leaf = new X509Certificate(cert.certChainPem[0]!);
  t.ok(leaf.checkPrivateKey(createPrivateKey(cert.keyPem)), 'key and certificate belong together');
  t.equal(cert.notAfter.getTime(), Date.parse(leaf.validTo));
  t.equal(cert.notBefore.getTime(), Date.parse(leaf.validFrom));
  t.equal(await sm.fetch(SLEEP), cert, 'same object while valid');
  t.equal(scripted.calls.length, 1);
  t.ok(Object.isFrozen(cert));
  const other = await sm.fetch(HTTPBIN);
  t.equal(other.identity, HTTPBIN, 'identities are independent');
  t.equal(scripted.calls.length, 2);
});

t.test('concurrent callers share one request', async (t) => {
  const scripted = new ScriptedCa();
  let release!: () => void;
  scripted.hold = new Promise((r) => (release = r));
  const sm = manager(t, { caClient: scripted });
  const pending = Array.from({ length: 10 }, () => sm.fetch(SLEEP));
  await callsReach(scripted, 1); // all ten asked while the one request is held at the CA
  release();
  const certs = await Promise.all(pending);
  t.equal(scripted.calls.length, 1, 'one CA call');
  t.ok(certs.every((c) => c === certs[0]), 'everyone gets the same certificate');
});

t.test('renews in the background at notBefore + renewFraction × lifetime and notifies listeners', async (t) => {
  // The CA's clock runs a minute ahead so that notBefore (now - 1 min) is the real now; the
  // lifetime is then 60 s + ttl, and 1% of it is about a second.
  const ahead = await CertificateAuthority.create({ trustDomain: TD, ttlSeconds: 60, now: () => Date.now() + 60_000 });
  const sm = manager(t, { caClient: new LocalCaClient(ahead), renewFraction: 0.01 });
  const rotated = nextRotation(sm, SLEEP);
  const first = await sm.fetch(SLEEP);
  t.equal(await rotated, first, 'listeners hear of the first certificate too');
  const renewed = nextRotation(sm, SLEEP);
  const second = await renewed;
  t.not(second, first);
  t.not(second.keyPem, first.keyPem, 'a fresh key each renewal');
  const lifetime = first.notAfter.getTime() - first.notBefore.getTime();
  t.ok(Date.now() >= first.notBefore.getTime() + 0.01 * lifetime, 'not renewed before its time');
  t.equal(await sm.fetch(SLEEP), second, 'fetch returns the renewed certificate');
});

t.test('a short-lived certificate (ttl 2 s) is renewed before it expires', async (t) => {
  const short = await CertificateAuthority.create({ trustDomain: TD, ttlSeconds: 2 });
  const sm = manager(t, { caClient: new LocalCaClient(short) });
  const first = await sm.fetch(SLEEP);
  // notBefore is a minute back, so half-life has passed on arrival: the manager renews at half of
  // the remaining lifetime instead of looping.
  const second = await nextRotation(sm, SLEEP);
  t.ok(Date.now() < first.notAfter.getTime(), 'renewed while the old one was still valid');
  t.ok(second.notAfter.getTime() > first.notAfter.getTime());
});

t.test('failures are retried with exponential backoff; callers fail fast meanwhile', async (t) => {
  const scripted = new ScriptedCa();
  scripted.failNext = 3;
  const sm = manager(t, { caClient: scripted, initialBackoffMs: 40, maxBackoffMs: 100 });
  const issued = nextRotation(sm, SLEEP);
  const err = await sm.fetch(SLEEP).catch((e: unknown) => e);
  t.ok(err instanceof CertificateUnavailableError);
  t.match(err, { code: 'ERR_CERT_UNAVAILABLE', message: /no valid certificate for spiffe:.*sleep; check that the ca is reachable/ });
  t.match((err as Error).cause, { message: 'ca unavailable (scripted)' });
  await t.rejects(sm.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE' }, 'during backoff: rejected at once');
  t.equal(scripted.calls.length, 1, '... without another CA call');
  const cert = await issued;
  t.equal(scripted.calls.length, 4, 'three failures, then success');
  const gaps = scripted.calls.slice(1).map((c, i) => c - scripted.calls[i]!);
  // Equal jitter: each delay is in [d/2, d] with d = 40, 80, then capped at 100.
  const floors = [20, 40, 50];
  gaps.forEach((g, i) => t.ok(g >= floors[i]! - 2, `retry ${i + 1} waited ${g} ms >= ${floors[i]} ms`));
  t.equal(await sm.fetch(SLEEP), cert);
});

t.test('never returns an expired certificate', async (t) => {
  const scripted = new ScriptedCa();
  let offset = 0;
  const sm = manager(t, { caClient: scripted, now: () => Date.now() + offset, initialBackoffMs: 10_000 });
  const cert = await sm.fetch(SLEEP);
  scripted.failAlways = true;
  offset = 30 * 60_000;
  t.equal(await sm.fetch(SLEEP), cert, 'still valid: served');
  offset = cert.notAfter.getTime() - Date.now() + 1;
  const calls = scripted.calls.length;
  await t.rejects(sm.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE' }, 'expired and renewal fails: rejected');
  t.equal(scripted.calls.length, calls + 1, 'an expired certificate triggers a renewal attempt');
  await t.rejects(sm.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE' });
  t.equal(scripted.calls.length, calls + 1, 'then backs off');
});

t.test('forget stops renewing an identity; close stops everything', async (t) => {
  const scripted = new ScriptedCa();
  const sm = manager(t, { caClient: scripted });
  const a = await sm.fetch(SLEEP);
  sm.forget(SLEEP);
  sm.forget('spiffe://cluster.local/ns/x/sa/unknown'); // no-op
  const b = await sm.fetch(SLEEP);
  t.not(b, a, 'requested again after forget');
  t.equal(scripted.calls.length, 2);

  // Forgotten while in flight: the waiting caller still gets it, but nothing is cached.
  let release!: () => void;
  scripted.hold = new Promise((r) => (release = r));
  const pending = sm.fetch(HTTPBIN);
  await new Promise((r) => setImmediate(r));
  sm.forget(HTTPBIN);
  release();
  t.equal((await pending).identity, HTTPBIN);
  scripted.hold = undefined;
  await sm.fetch(HTTPBIN);
  t.equal(scripted.calls.length, 4, 'nothing was cached for the forgotten identity');

  sm.close();
  await t.rejects(sm.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE', cause: { message: /closed/ } });
});

t.test('forget stops a pending renewal or retry timer', async (t) => {
  // The timers on fake clocks: "stopped" is the timer gone, not a wait in which it did not fire.
  // Renewal: a 2 s certificate issued a minute back is renewed about a second after it arrived.
  const short = await CertificateAuthority.create({ trustDomain: TD, ttlSeconds: 2 });
  const renewing = new ScriptedCa(new LocalCaClient(short));
  const renewClock = new FakeClock();
  const sm = manager(t, { caClient: renewing, timers: renewClock });
  await sm.fetch(SLEEP);
  t.same(sm.identities(), [SLEEP]);
  t.equal(renewClock.pending, 1, 'a renewal is scheduled');
  sm.forget(SLEEP);
  t.same(sm.identities(), [], 'no longer held');
  t.equal(renewClock.pending, 0, 'the renewal timer is cleared');
  // Retry: a failed request is retried after 20 to 40 ms.
  const failing = new ScriptedCa();
  failing.failAlways = true;
  const retryClock = new FakeClock();
  const sm2 = manager(t, { caClient: failing, initialBackoffMs: 40, timers: retryClock });
  await t.rejects(sm2.fetch(HTTPBIN), { code: 'ERR_CERT_UNAVAILABLE' });
  t.equal(retryClock.pending, 1, 'a retry is scheduled');
  sm2.forget(HTTPBIN);
  t.equal(retryClock.pending, 0, 'the retry timer is cleared');
  t.notOk(renewClock.fireNext() || retryClock.fireNext(), 'nothing left to fire');
  t.equal(renewing.calls.length, 1, 'no renewal after forget');
  t.equal(failing.calls.length, 1, 'no retry after forget');
  // Forgotten during backoff: the next fetch asks the CA at once instead of failing fast.
  failing.failAlways = false;
  t.equal((await sm2.fetch(HTTPBIN)).identity, HTTPBIN);
  t.equal(failing.calls.length, 2);
});

t.test('forget does not break concurrent fetch callers', async (t) => {
  const scripted = new ScriptedCa();
  let release!: () => void;
  scripted.hold = new Promise((r) => (release = r));
  const sm = manager(t, { caClient: scripted });
  const heard: WorkloadCertificate[] = [];
  sm.onRotate((c) => heard.push(c));
  const before = Array.from({ length: 5 }, () => sm.fetch(SLEEP));
  await callsReach(scripted, 1);
  sm.forget(SLEEP);
  const after = Array.from({ length: 5 }, () => sm.fetch(SLEEP));
  release();
  const [olds, news] = await Promise.all([Promise.all(before), Promise.all(after)]);
  t.equal(scripted.calls.length, 2, 'one request before the forget, one after');
  t.ok(olds.every((c) => c === olds[0] && c.identity === SLEEP), 'callers from before the forget share its certificate');
  t.ok(news.every((c) => c === news[0] && c.identity === SLEEP), 'callers from after share the new request');
  t.not(olds[0], news[0]);
  t.equal(await sm.fetch(SLEEP), news[0], 'the request from after the forget is the one kept');
  t.same(heard, [news[0]], 'the forgotten request neither replaced it nor was announced');
  t.equal(scripted.calls.length, 2);

  // The same when the forgotten request fails: its callers get the error, and the identity is
  // not left backing off (the next fetch is not refused at once).
  scripted.hold = new Promise((r) => (release = r));
  scripted.failNext = 1;
  const failing = sm.fetch(HTTPBIN);
  // At the CA (so it is the held call that takes failNext), then forgotten.
  await callsReach(scripted, 3);
  sm.forget(HTTPBIN);
  const later = sm.fetch(HTTPBIN);
  release();
  await t.rejects(failing, { code: 'ERR_CERT_UNAVAILABLE', cause: { message: 'ca unavailable (scripted)' } }, 'the forgotten request fails for its callers');
  const got = await later;
  t.equal(got.identity, HTTPBIN, 'the request from after the forget succeeds');
  t.equal(await sm.fetch(HTTPBIN), got, '... and is kept: the failure did not put the identity into backoff');
  t.equal(scripted.calls.length, 4);
  t.same(sm.identities().sort(), [HTTPBIN, SLEEP].sort());
});

t.test('close clears renewal timers', async (t) => {
  const short = await CertificateAuthority.create({ trustDomain: TD, ttlSeconds: 2 });
  const scripted = new ScriptedCa(new LocalCaClient(short));
  const clock = new FakeClock();
  const sm = manager(t, { caClient: scripted, timers: clock });
  await sm.fetch(SLEEP);
  t.equal(clock.pending, 1, 'a renewal is scheduled');
  sm.close();
  t.equal(clock.pending, 0, 'the renewal timer is cleared');
  t.notOk(clock.fireNext(), 'nothing left to fire');
  t.equal(scripted.calls.length, 1, 'no renewal after close');
});

t.test('what the CA returns is checked before use', async (t) => {
  const cases: Array<[string, (csr: string, id: string) => Promise<CaSignResult>, RegExp]> = [
    [
      'another identity',
      async () => {
        const other = await generateKeyAndCsr(HTTPBIN);
        return { certChainPem: ca.sign(other.csrPem).certChainPem, rootsPem: ca.trustBundlePem };
      },
      /certificate for spiffe:.*httpbin, not spiffe:.*sleep/,
    ],
    [
      'another key',
      async (_csr, id) => {
        const other = await generateKeyAndCsr(id);
        return { certChainPem: ca.sign(other.csrPem).certChainPem, rootsPem: ca.trustBundlePem };
      },
      /different key/,
    ],
    [
      'a chain not under the roots',
      async (csr) => {
        const other = await CertificateAuthority.create({ trustDomain: TD });
        return { certChainPem: ca.sign(csr).certChainPem, rootsPem: other.trustBundlePem };
      },
      /does not lead to any of the returned roots/,
    ],
    ['an empty chain', async () => ({ certChainPem: [], rootsPem: ca.trustBundlePem }), /empty certificate chain/],
    ['no roots', async (csr) => ({ certChainPem: ca.sign(csr).certChainPem, rootsPem: [] }), /no roots/],
  ];
  for (const [name, sign, cause] of cases) {
    const sm = manager(t, { caClient: { sign } });
    const err = await sm.fetch(SLEEP).catch((e: unknown) => e);
    t.match(err, { code: 'ERR_CERT_UNAVAILABLE' }, name);
    t.match((err as Error).cause, { message: cause }, name);
  }
});

t.test('LocalCaClient only signs the identity it is asked for', async (t) => {
  const client = new LocalCaClient(ca);
  const { csrPem } = await generateKeyAndCsr(SLEEP);
  await t.rejects(client.sign(csrPem, HTTPBIN), { code: 'ERR_CSR_REJECTED', message: /authorized for .*httpbin only/ });
  const ok = await client.sign(csrPem, SLEEP);
  t.same(ok.rootsPem, [ca.rootCertPem]);
});

t.test('listeners: errors are contained, unsubscribe works', async (t) => {
  const sm = manager(t, { caClient: new ScriptedCa() });
  const got: string[] = [];
  sm.onRotate(() => {
    throw new Error('listener bug');
  });
  const off = sm.onRotate((c) => got.push(c.identity));
  await sm.fetch(SLEEP);
  off();
  await sm.fetch(HTTPBIN);
  t.same(got, [SLEEP]);
});

t.test('inputs and identities are validated', async (t) => {
  const caClient = new ScriptedCa();
  t.throws(() => new SecretManager({ caClient, renewFraction: 1 }), RangeError);
  t.throws(() => new SecretManager({ caClient, renewFraction: 0 }), RangeError);
  t.throws(() => new SecretManager({ caClient, initialBackoffMs: 0 }), RangeError);
  t.throws(() => new SecretManager({ caClient, initialBackoffMs: 100, maxBackoffMs: 50 }), RangeError);
  const sm = manager(t, { caClient });
  await t.rejects(sm.fetch('spiffe://cluster.local/default/sleep'), { code: 'ERR_INVALID_SPIFFE_ID' });
  t.equal(caClient.calls.length, 0);
});

// ---- retries on a fake clock: hours of CA outage counted without waiting ---------------------

/**
 * Runs the one pending retry and waits until it reached the CA and, having failed, scheduled the
 * next one. Returns the delay it had been scheduled with (on the fake clock).
 */
async function failedRetry(clock: FakeClock, ca: ScriptedCa): Promise<number> {
  const delay = clock.nextDelay()!;
  const calls = ca.calls.length;
  clock.fireNext();
  // Real time here: key generation and the CA call of a fired timer run for real.
  await until(`retry ${calls} failed and the next one is scheduled`, () => ca.calls.length === calls + 1 && clock.pending === 1, { everyMs: 1 });
  return delay;
}

/** A pino logger into memory: the level and fields of every line. */
function memoryLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = { write: (chunk: string) => void lines.push(JSON.parse(chunk) as Record<string, unknown>) } as unknown as NodeJS.WritableStream;
  return { logger: createLogger({ component: 'test', level: 'debug', destination }), lines };
}

t.test('a CA that keeps failing is retried with exponential backoff for as long as it fails: never given up, never a tight loop, one warn per attempt', async (t) => {
  const clock = new FakeClock();
  // The CA on the fake clock too, so the certificate it finally issues is valid on that clock.
  const scripted = new ScriptedCa(new LocalCaClient(await CertificateAuthority.create({ trustDomain: TD, now: clock.now })));
  scripted.failAlways = true;
  const { logger, lines } = memoryLogger();
  // random 0: the shortest waits equal jitter allows (d/2), so the attempt counts below are the most there can be.
  const sm = manager(t, { caClient: scripted, now: clock.now, timers: clock, random: () => 0, logger });
  await t.rejects(sm.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE' });
  t.equal(clock.pending, 1, 'a retry is scheduled');
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) delays.push(await failedRetry(clock, scripted));
  t.same(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000], 'half of 200 ms doubling, capped at half of 30 s');

  // A simulated hour of outage: 3600 s / 15 s attempts, not more, and still retrying after it.
  const before = scripted.calls.length;
  const end = clock.now() + 3600_000;
  while (clock.nextAt()! <= end) await failedRetry(clock, scripted);
  t.equal(scripted.calls.length - before, 240, 'one attempt per 15 s at most over an hour');
  t.same(sm.identities(), [SLEEP], 'still held');
  t.equal(clock.pending, 1, 'still retrying: never given up');
  await t.rejects(sm.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE' }, 'a caller meanwhile fails at once');

  const failures = lines.filter((l) => l.msg === 'workload certificate request failed; retrying');
  t.equal(failures.length, scripted.calls.length, 'one line per failed attempt');
  t.ok(failures.every((l) => l.level === 40), 'each at warn');
  t.notOk(lines.some((l) => (l.level as number) >= 50), 'nothing at error level');
  t.match(failures.at(-1), { identity: SLEEP, attempt: scripted.calls.length, retry_in_ms: 15000, serving_previous: false }, 'the line says which attempt and the wait before the next');

  // The CA answers again: the next retry gets the certificate.
  scripted.failAlways = false;
  const issued = nextRotation(sm, SLEEP);
  clock.fireNext();
  const cert = await issued;
  t.equal(await sm.fetch(SLEEP), cert, 'served once issued');
});

t.test('while the certificate in use is valid, a retry waits at most half its remaining lifetime: a CA back shortly before expiry is reached before expiry', async (t) => {
  const clock = new FakeClock();
  const hourCa = await CertificateAuthority.create({ trustDomain: TD, ttlSeconds: 3600, now: clock.now });
  const scripted = new ScriptedCa(new LocalCaClient(hourCa));
  // random 1: the longest waits (30 s once capped), the worst case for reaching the CA in time.
  const sm = manager(t, { caClient: scripted, now: clock.now, timers: clock, random: () => 1 });
  const first = await sm.fetch(SLEEP);
  const expiry = first.notAfter.getTime();
  scripted.failAlways = true;
  // The CA fails from the renewal at half-life until 5 s before the certificate expires.
  await failedRetry(clock, scripted); // the renewal
  const delays: number[] = [];
  let servedMeanwhile = true;
  while (clock.nextAt()! < expiry - 5000) {
    delays.push(await failedRetry(clock, scripted));
    servedMeanwhile &&= (await sm.fetch(SLEEP)) === first;
  }
  t.ok(servedMeanwhile, 'after every failed attempt the valid certificate was served at once, without a CA call');
  t.ok(delays.length > 20, `${delays.length} failed retries between the renewal and 5 s before expiry`);
  t.ok(delays.slice(3).every((d) => d >= 1000), 'past the first short backoffs, never less than a second apart (no tight loop near expiry)');
  t.ok(delays.slice(-2).every((d) => d < 30_000), 'the last waits before expiry are shorter than the backoff cap');
  scripted.failAlways = false;
  const renewed = nextRotation(sm, SLEEP);
  clock.fireNext();
  const second = await renewed;
  t.ok(clock.now() < expiry, 'renewed before the old certificate expired');
  t.ok(second.notAfter.getTime() > expiry, 'the new certificate outlives the old one');
  t.equal(await sm.fetch(SLEEP), second);
});
