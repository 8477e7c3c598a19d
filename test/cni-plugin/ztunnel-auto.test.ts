// ZTUNNEL_CGROUP=auto for real (root): the compiled node agent finds the process listening on
// ZTUNNEL_IP:OUTBOUND_PORT (or :15008) through /proc, attaches the ztunnel programs to its cgroup
// (the kernel is asked through bpftool), extends them to a second ztunnel during a handover and
// takes them off the first once it stops listening. Listeners are test/bpf/fixtures/agent.mjs
// processes in test cgroups. The agent and the listeners share a test network namespace (the agent
// reads its own /proc/net/tcp, as a host-network agent reads the node's) with a veth pair
// carrying the "node" address: the loader refuses a loopback ZTUNNEL_IP (loopback is never
// redirected). Everything is named amb-cni-<pid>-<n>-… and removed at teardown.
import t from 'tap';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { BpfLoader } from '../../bpf/loader.js';
import { classify } from '../../cni-plugin/agent/redirector.js';
import type { AgentState } from '../../cni-plugin/api.js';
import { AGENT_MAIN, Lab, LAB_POLL, labSkipReason, sh, type Proc } from './lab.js';
import { until } from '../helpers/until.js';

const ACTOR = fileURLToPath(new URL('../bpf/fixtures/agent.mjs', import.meta.url));
const ZT_IP = '10.250.18.1';
const OTHER_IP = '10.250.18.9';
const OUTBOUND = 15001;

/** GET over the agent's Unix socket (it lives in the test namespace; the socket is a file). */
function getState(socketPath: string): Promise<AgentState> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: '/state' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(JSON.parse(body) as AgentState));
      })
      .on('error', reject);
  });
}

const skip = await labSkipReason();
t.test('the agent follows ztunnel through /proc and hooks every cgroup that hosts one', { skip }, async (t) => {
  const lab = await Lab.create(t);
  const dir = await lab.shortDir();
  const pinDir = lab.pinDir('agent');
  const ns = await lab.netns('node');
  await sh('ip', ['-n', ns.name, 'link', 'add', 'zt0', 'type', 'veth', 'peer', 'name', 'zt1']);
  for (const ip of [ZT_IP, OTHER_IP]) await sh('ip', ['-n', ns.name, 'addr', 'add', `${ip}/32`, 'dev', 'zt0']);
  for (const dev of ['zt0', 'zt1']) await sh('ip', ['-n', ns.name, 'link', 'set', dev, 'up']);
  const loader = new BpfLoader({ pinDir, cgroupRoot: lab.cgroupRoot });
  const hooked = async (cgroup: string) => classify((await loader.attachmentsOf([cgroup]))[0]?.programs ?? []).ztunnel;
  const anyHook = async (cgroup: string) => ((await loader.attachmentsOf([cgroup]))[0]?.programs ?? []).some((p) => p.startsWith('amb_'));

  // A listener process in a cgroup of its own (joined before node starts).
  let ids = 0;
  const actor = async (name: string, cgroup: string) => {
    const p = lab.spawn(name, [process.execPath, ACTOR], { cgroup, netns: ns.path });
    await p.waitFor(/"ready":true/);
    const send = async (cmd: Record<string, unknown>) => {
      const id = ++ids;
      p.child.stdin!.write(`${JSON.stringify({ ...cmd, id })}\n`);
      await p.waitFor(new RegExp(`"id":${id},"ok":`));
      const line = p.output().split('\n').find((l) => l.includes(`"id":${id},`))!;
      return JSON.parse(line) as { ok: boolean; error?: string };
    };
    return { proc: p, send };
  };

  const first = await lab.cgroup('zt-first');
  const second = await lab.cgroup('zt-second');
  const decoy = await lab.cgroup('decoy');
  const desired = await lab.writeFile('desired.yaml', 'namespaces:\n  - name: apps\n');
  const agent: Proc = lab.spawn('agent', [process.execPath, AGENT_MAIN], {
    netns: ns.path,
    env: {
      NODE_NAME: 'node-a',
      AGENT_SOCKET: `${dir}/cni.sock`,
      STATE_FILE: `${dir}/state.json`,
      DESIRED_STATE_FILE: desired,
      PIN_DIR: pinDir,
      ZTUNNEL_IP: ZT_IP,
      OUTBOUND_PORT: String(OUTBOUND),
      ZTUNNEL_CGROUP: 'auto',
      NODE_IPS: ZT_IP,
      CGROUP_ROOT: lab.cgroupRoot,
      CGROUP_DRIVER: 'template',
      CGROUP_TEMPLATE: `${lab.prefix}-pod-{podNamespace}-{podName}`,
      LOG_LEVEL: 'debug',
    },
  });
  await agent.waitFor(/"msg":"node agent ready"/, 30_000);
  const state = async () => (await getState(`${dir}/cni.sock`)).ztunnel;
  t.match(await state(), { cgroup: /^auto: /, attached: false, cgroups: [], error: /no ztunnel found/ }, 'nothing listens yet');

  // Decoys: the right port on another address, another port on the right address.
  const d = await actor('decoy', decoy);
  t.ok((await d.send({ op: 'listen', host: OTHER_IP, port: OUTBOUND, tag: 'other-ip' })).ok);
  t.ok((await d.send({ op: 'listen', host: ZT_IP, port: 15002, tag: 'other-port' })).ok);

  // The first ztunnel starts listening.
  const a = await actor('first', first);
  const listenedAt = Date.now();
  t.ok((await a.send({ op: 'listen', host: ZT_IP, port: OUTBOUND, tag: 'outbound' })).ok);
  await until('the first ztunnel cgroup to be hooked', () => hooked(first), LAB_POLL);
  const firstFound = Date.now() - listenedAt;
  t.match(await state(), { attached: true, cgroups: [{ cgroup: first, attached: true }] });
  t.notOk(await anyHook(decoy), 'a listener on another address or port is not ztunnel');

  // A second ztunnel cannot take the outbound port while the first holds it; it binds HBONE.
  const b = await actor('second', second);
  t.match(await b.send({ op: 'listen', host: ZT_IP, port: OUTBOUND, tag: 'outbound' }), { ok: false, error: 'EADDRINUSE' });
  t.ok((await b.send({ op: 'listen', host: '0.0.0.0', port: 15008, tag: 'hbone' })).ok, 'the wildcard address counts');
  await until('the second ztunnel cgroup to be hooked as well', () => hooked(second), LAB_POLL);
  t.ok(await hooked(first), 'extended: the first keeps its hooks while it listens');
  t.same((await state()).cgroups.map((c) => c.cgroup).sort(), [first, second].sort());

  // Handover: the first closes its listener (its process lives on, draining), the second takes the port.
  await a.send({ op: 'close', tag: 'outbound' });
  const closedAt = Date.now();
  t.ok((await b.send({ op: 'listen', host: ZT_IP, port: OUTBOUND, tag: 'outbound' })).ok, 'the port is free for the second');
  await until('the first ztunnel cgroup to lose its hooks', async () => !(await anyHook(first)), LAB_POLL);
  const firstDropped = Date.now() - closedAt;
  t.ok(await hooked(second), 'moved: the second keeps its hooks');
  t.match(await state(), { attached: true, cgroups: [{ cgroup: second, attached: true }] });
  t.ok(a.proc.child.exitCode === null, 'the first process still runs: only its listener decides');
  t.match(agent.output(), /"msg":"ztunnel hooks detached from a cgroup that no longer hosts a ztunnel"/);
  t.comment(`found a new listener after ${firstFound} ms; dropped the old one after ${firstDropped} ms (ZTUNNEL_CHECK_INTERVAL_SECONDS=1)`);

  t.equal(await agent.stop('SIGTERM'), 0);
  t.ok(await hooked(second), 'a stopping agent detaches nothing');
});
