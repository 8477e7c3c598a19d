// Rolling-update handover (HANDOVER=true) with two real ztunnel processes on one address, as two
// host-network ztunnel pods of a DaemonSet surge share a node: the second finds the ports taken,
// asks the first to drain, takes the ports over and turns ready; a connection opened through the
// first keeps flowing until it finishes. 127.0.18.2 = node-a (both ztunnels), .3 = node-b,
// .10 = client, .20 = server. No root needed: SOCKS5 carries the test traffic.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ztunnelProcesses } from '../helpers/mesh.js';
import { closeServer, socks5Connect } from '../helpers/net.js';
import { startZtunnelProcess, waitForStatus, type Proc } from '../helpers/proc.js';
import { until } from '../helpers/until.js';

const base = '127.0.18';
const NODE_A = `${base}.2`;
const SERVER = `${base}.20`;
const zp = await ztunnelProcesses(t, base);
const { configPath } = zp;

function start(node: string, address: string, extra: Record<string, string> = {}): Proc {
  // Outbound capture bound too (so it is handed over), without the eBPF check (no root here).
  return zp.start(node, address, { OUTBOUND_PORT: '15001', REDIRECTION_CHECK: 'off', ...extra });
}

async function echoOnce(socket: net.Socket, text: string): Promise<string> {
  socket.write(text);
  const [d] = (await once(socket, 'data')) as [Buffer];
  return d.toString();
}

/** Process start-up and handover take a while on a loaded machine. */
const PROCESS = { timeoutMs: 15_000 };

/**
 * Connects to `host:port` every few milliseconds and records which attempts were refused: the
 * window in which a new connection to the handed-over port fails (fast: a refusal, not a hang).
 */
function probe(host: string, port: number): { stop(): Promise<{ attempts: number; longestRefusedMs: number; refused: number }> } {
  let running = true;
  const results: Array<{ at: number; ok: boolean }> = [];
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host, port, localAddress: `${base}.10` });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      results.push({ at, ok });
      // The probe's cadence (not a synchronisation): a fresh attempt every few milliseconds.
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      let longest = 0;
      let since: number | undefined;
      for (const r of results) {
        if (!r.ok) since ??= r.at;
        else if (since !== undefined) {
          longest = Math.max(longest, r.at - since);
          since = undefined;
        }
      }
      return { attempts: results.length, longestRefusedMs: longest, refused: results.filter((r) => !r.ok).length };
    },
  };
}

t.test('a second ztunnel takes over from the first; the first one\'s open connection finishes', async (t) => {
  // Each process's own readiness (what the chart probes): a file in its pod's volume, since both
  // answer on the same :15021 during the handover.
  const readyDir = t.testdir();
  const readyOf = (name: string) => join(readyDir, name);
  const first = start('node-a', NODE_A, { HANDOVER: 'true', DRAIN_TIMEOUT_SECONDS: '20', READY_FILE: readyOf('first') });
  await waitForStatus(`http://${NODE_A}:15021/healthz/ready`, 200);
  const b = start('node-b', `${base}.3`);
  await waitForStatus(`http://${base}.3:15021/healthz/ready`, 200);

  // Through the first: client → first (SOCKS5) → HBONE → node-b → server.
  const old = await socks5Connect({ proxy: { host: NODE_A, port: 15080 }, localAddress: `${base}.10`, host: SERVER, port: 9090 });
  t.equal(old.reply, 0);
  old.socket.resume();
  t.equal(await echoOnce(old.socket, 'before'), 'before');

  const gap = probe(NODE_A, 15001);
  t.ok(existsSync(readyOf('first')), 'the first is ready (its file)');
  const second = start('node-a', NODE_A, { HANDOVER: 'true', READY_FILE: readyOf('second') });
  await until('the second ztunnel to be ready', () => /"msg":"ztunnel ready"/.test(second.output()), PROCESS);
  const { attempts, longestRefusedMs, refused } = await gap.stop();
  t.match(second.output(), /"msg":"ports held by a previous ztunnel; asking it to drain \(handover\)"/);
  t.match(second.output(), /"msg":"the previous ztunnel released its ports; taking over"/);
  t.match(first.output(), /"msg":"draining"/, 'the first was asked to drain');
  t.notOk(existsSync(readyOf('first')), 'the draining first is not ready, whoever answers :15021');
  t.ok(existsSync(readyOf('second')), 'the second is');
  t.ok(attempts > 10, `the probe ran (${attempts} attempts)`);
  t.comment(`outbound port refused new connections for at most ${longestRefusedMs} ms (${refused} of ${attempts} attempts refused)`);

  // The open connection lives in the first process and keeps flowing.
  t.equal(await echoOnce(old.socket, 'during handover'), 'during handover', 'an open connection through the first keeps working');
  t.equal(first.child.exitCode, null, 'the first is still draining');

  // The ports are the second's: readiness answers, new connections go through it.
  await waitForStatus(`http://${NODE_A}:15021/healthz/ready`, 200);
  const fresh = await socks5Connect({ proxy: { host: NODE_A, port: 15080 }, localAddress: `${base}.10`, host: SERVER, port: 9090 });
  t.equal(fresh.reply, 0);
  fresh.socket.resume();
  t.equal(await echoOnce(fresh.socket, 'after'), 'after');
  fresh.socket.end();
  await until('the second to log the new connection', () => /"msg":"connection complete"/.test(second.output()), PROCESS);
  t.notMatch(first.output(), /"msg":"connection complete"/, 'the first has not carried anything new (its only connection is still open)');

  // The old connection finishes; the first's drain ends without waiting for its deadline.
  old.socket.end();
  await until('the first to finish its drain', () => /"msg":"ztunnel stopped"/.test(first.output()), PROCESS);
  t.notMatch(first.output(), /drain deadline reached/, 'drain ended when the last connection did, not at the deadline');
  t.match(first.output(), /"msg":"connection complete"/, 'the old connection finished in the first');
  // Handed over: it stays (no listeners, not ready) until SIGTERM, as the DaemonSet controller
  // sends when it deletes the old pod; exiting would make the kubelet restart it into a handover.
  // The positive sign is its decision to stay; that it then exits only for the SIGTERM is shown by
  // the handover exit path logging the signal.
  await until('the first to decide to stay', () => /"msg":"drained for a successor; staying/.test(first.output()), PROCESS);
  t.equal(first.child.exitCode, null, 'drained for a successor: waits for SIGTERM');
  t.match(first.output(), /"msg":"drained for a successor; staying, not ready and without listeners, until SIGTERM"/);
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, 'SIGTERM: exits 0');
  t.match(first.output(), /"signal":"SIGTERM"[^\n]*"msg":"exiting after a handover"/, 'at once, for the signal: nothing was left to drain');
  await waitForStatus(`http://${NODE_A}:15021/healthz/ready`, 200);
  second.child.kill('SIGTERM');
  b.child.kill('SIGTERM');
  t.equal(await second.exited, 0, 'the second, stopped by a signal, exits as usual');
  await b.exited;
});

t.test('without HANDOVER a taken port stops the second ztunnel, as before', async (t) => {
  const first = start('node-a', NODE_A);
  await waitForStatus(`http://${NODE_A}:15021/healthz/ready`, 200);
  const second = start('node-a', NODE_A);
  t.equal(await second.exited, 1);
  t.match(second.output(), /EADDRINUSE/);
  t.notMatch(first.output(), /"msg":"draining"/, 'the first was not asked to drain');
  await waitForStatus(`http://${NODE_A}:15021/healthz/ready`, 200);
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0);
});

t.test('a port held by something that is not a ztunnel: a bounded wait, then the port and its holder named', async (t) => {
  const holderAddress = `${base}.5`;
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(15008, holderAddress, resolve));
  t.teardown(() => closeServer(holder));
  const started = Date.now();
  const zt = start('node-a', holderAddress, { HANDOVER: 'true', HANDOVER_TIMEOUT_SECONDS: '1' });
  t.equal(await zt.exited, 1);
  t.ok(Date.now() - started < 15_000, 'gave up within its bound');
  t.match(zt.output(), /handover gave up after 1 s: inbound port 15008 on 127\.0\.18\.5 is held by pid (\d+)/);
  t.match(zt.output(), new RegExp(`held by pid ${process.pid} \\(`), 'the holder is this test process');
  t.match(zt.output(), /quitquitquit failed: ECONNREFUSED/, 'nobody answered the drain request');
  t.match(zt.output(), /ERR_HANDOVER_TIMEOUT/);
});

t.test('HANDOVER is checked like every variable', async (t) => {
  const p = startZtunnelProcess({ NODE_NAME: 'node-a', LOCAL_CONFIG_FILE: configPath, CA_ROOT_CERT_FILE: 'x', CA_ROOT_KEY_FILE: 'y', HANDOVER: 'yes', HANDOVER_TIMEOUT_SECONDS: '-1' });
  t.equal(await p.exited, 2);
  t.match(p.output(), /HANDOVER="yes" is not one of true, false/);
  t.match(p.output(), /HANDOVER_TIMEOUT_SECONDS="-1" is not a positive number/);
});
