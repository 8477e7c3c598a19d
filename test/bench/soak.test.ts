/**
 * Smoke test of the soak benchmark (bench/soak.ts): a tiny run through two real ztunnel processes
 * (real mTLS, HBONE), so the benchmark does not rot. It must finish, print its tables and lose no
 * request; the users must have met every kind of close (the backend's idle close, their own FIN
 * and reset), or the run proved nothing.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { SoakReport } from '../../bench/lib/soak/report.js';

const SOAK = fileURLToPath(new URL('../../dist/bench/soak.js', import.meta.url));
/** Loopback prefix of this file (the soak's default is 127.0.50). */
const BASE = '127.0.51';
const USERS = 100;
/** Long enough for users to go idle past the backend's close (6 s) and come back. */
const DURATION_SEC = 15;

t.test(`soak with ${USERS} users for ${DURATION_SEC} s`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'soak-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const jsonFile = join(dir, 'soak.json');
  const child = spawn(
    process.execPath,
    [SOAK, '--connections', String(USERS), '--duration', String(DURATION_SEC), '--base', BASE, '--output', jsonFile],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  // SIGTERM lets the soak stop its ztunnels and backend (each in its own process group).
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = await exited;
  t.equal(code, 0, 'the soak completes', { stderr });

  t.match(stdout, /^requests\s+sent\s+answered\s+lost\s+verdict$/m, 'prints the requests table');
  t.match(stdout, /^VmRSS MiB\s+start\s+after warm-up\s+peak\s+end/m, 'prints the memory table');
  t.match(stdout, /^file descriptors\s+baseline\s+peak\s+end/m, 'prints the descriptors table');
  t.match(stdout, /^event-loop delay ms\s+idle p99/m, 'prints the event-loop table');

  const r = JSON.parse(readFileSync(jsonFile, 'utf8')) as SoakReport;
  t.ok(r.requests.sent > 0, 'requests were sent');
  t.equal(r.requests.lost, 0, 'no request lost', { lostBy: r.requests.lostBy });
  t.equal(r.requests.answered, r.requests.sent, 'every request answered');
  t.equal(r.requests.verdict, 'PASS', 'requests verdict PASS');
  t.ok(r.workload.serverCloses > 0, 'the backend closed idle connections and the users saw the closes');
  t.ok(r.workload.requestsAfterServerClose > 0, 'users reconnected after the backend closed and were answered');
  t.ok(r.workload.clientEnds > 0 && r.workload.clientResets > 0, 'users closed connections themselves, with FIN and with reset');
  t.equal(r.ztunnels.length, 2, 'both ztunnels measured');
  for (const z of r.ztunnels) {
    t.ok(z.loopDelayMs, `${z.name}: event-loop delay read from /metrics`);
    t.equal(z.fds.proxiedLeft, 0, `${z.name}: no proxied connection left after the users closed`);
    t.equal(z.fds.closedSockets, 0, `${z.name}: no descriptor of a closed socket kept`);
    t.equal(z.fdVerdict, 'PASS', `${z.name}: descriptors back to the baseline`, { fds: z.fds });
  }
});
