// End to end with the real programs and the real ztunnel contract, without the full ztunnel:
// a "node" network namespace holding the ztunnel address (10.244.0.1), the node's address
// (10.244.0.2) and some destinations, a "pod" namespace (10.244.1.5) joined by a veth pair, and
// two cgroups. A fake ztunnel in the ztunnel cgroup listens on 0.0.0.0:15001 and reports the
// socket.localAddress/localPort it sees for each accepted connection, which is exactly what
// ztunnel/proxy/listeners.ts reads. Root only; skips with the reason otherwise.
import t from 'tap';
import { join } from 'node:path';
import { BpfLoader, type RedirectConfig } from '../../bpf/loader.js';
import { Bpftool } from '../../bpf/bpftool.js';
import { execFileRunner } from '../../bpf/command.js';
import { Sandbox, bpfSkipReason, sh, type Reply } from './sandbox.js';

const skip = await bpfSkipReason({ netns: true });

const ZTUNNEL = '10.244.0.1';
const NODE = '10.244.0.2';
const POD = '10.244.1.5';
const REMOTE = '10.244.2.7'; // a destination that exists in the node namespace
const IN_EXCLUDED_CIDR = '10.96.5.5';
const OUTBOUND = 15001;
const tool = new Bpftool(execFileRunner());
const config: RedirectConfig = {
  ztunnelIp: ZTUNNEL,
  outboundPort: OUTBOUND,
  nodeIps: [NODE],
  excludeCidrs: ['10.96.0.0/16'],
  excludePorts: [9999],
};

/** Where a connection landed: `ztunnel 10.244.2.7:8080` (as ztunnel saw it) or `direct-x`. */
function landed(r: Reply): string {
  if (!r.ok) return `error ${r.error}`;
  const seen = r.reply!;
  return seen.tag === 'ztunnel' ? `ztunnel ${seen.local.replace(/^::ffff:/, '')}:${seen.localPort}` : seen.tag;
}

t.test('ebpf redirection end to end', { skip }, async (t) => {
  const sb = await Sandbox.create();
  t.teardown(() => sb.cleanup());
  const loader = new BpfLoader({ pinDir: sb.pinDir('e2e') });
  sb.defer(() => loader.unload());

  const node = await sb.netns('node');
  const pod = await sb.netns('pod');
  const ipn = (...args: string[]) => sh('ip', ['-n', node.name, ...args]);
  const ipp = (...args: string[]) => sh('ip', ['-n', pod.name, ...args]);
  await ipn('link', 'add', 'vnode', 'type', 'veth', 'peer', 'name', 'vpod', 'netns', pod.name);
  await ipn('addr', 'add', `${ZTUNNEL}/32`, 'dev', 'vnode');
  await ipn('link', 'set', 'vnode', 'up');
  await ipn('route', 'add', `${POD}/32`, 'dev', 'vnode');
  // The node's other addresses live on its loopback device (no dummy driver needed).
  for (const a of [NODE, REMOTE, IN_EXCLUDED_CIDR]) await ipn('addr', 'add', `${a}/32`, 'dev', 'lo');
  await ipp('addr', 'add', `${POD}/32`, 'dev', 'vpod');
  await ipp('link', 'set', 'vpod', 'up');
  await ipp('route', 'add', `${ZTUNNEL}/32`, 'dev', 'vpod');
  await ipp('route', 'add', 'default', 'via', ZTUNNEL, 'dev', 'vpod');

  const podCg = await sb.cgroup('pod');
  const ztCg = await sb.cgroup('ztunnel');
  const ztunnel = await sb.agent({ cgroup: ztCg, netns: node.path });
  const dests = await sb.agent({ netns: node.path }); // the rest of the world: in no test cgroup
  const app = await sb.agent({ cgroup: podCg, netns: pod.path });

  await ztunnel.listen('0.0.0.0', OUTBOUND, 'ztunnel');
  await dests.listen(REMOTE, 8080, 'direct-remote');
  await dests.listen(REMOTE, 9999, 'direct-port');
  await dests.listen(IN_EXCLUDED_CIDR, 8080, 'direct-cidr');
  await dests.listen(NODE, 8080, 'direct-node');
  await app.listen('0.0.0.0', 8080, 'pod');
  await app.listen('127.0.0.1', 7070, 'pod-loopback');

  t.equal(landed(await app.connect(REMOTE, 8080)), 'direct-remote', 'before enrolment the pod goes direct');

  await loader.load(config);
  await loader.attachZtunnel(ztCg);
  await loader.attachPod(podCg, { strict: false });

  await t.test('redirected connections carry their original destination to ztunnel', async (t) => {
    const r = await app.connect(REMOTE, 8080);
    t.equal(landed(r), `ztunnel ${REMOTE}:8080`);
    t.equal(r.reply!.remote, POD, 'ztunnel sees the pod as the peer');
    t.equal(r.reply!.remotePort, r.localPort, '... from the socket the pod connected with');
    t.same([r.remote, r.remotePort], [REMOTE, 8080], 'the app sees the address it connected to (getpeername)');
    t.equal(landed(await app.connect('10.200.0.9', 443)), 'ztunnel 10.200.0.9:443', 'a destination nobody listens on still reaches ztunnel');
    t.equal(landed(await app.connect(`::ffff:${REMOTE}`, 8081)), `ztunnel ${REMOTE}:8081`, 'IPv4-mapped destinations on IPv6 sockets (connect6)');
  });

  await t.test('exclusions go direct', async (t) => {
    t.equal(landed(await app.connect(REMOTE, 9999)), 'direct-port', 'excluded port');
    t.equal(landed(await app.connect(IN_EXCLUDED_CIDR, 8080)), 'direct-cidr', 'excluded cidr');
    t.equal(landed(await app.connect(NODE, 8080)), 'direct-node', 'the node address');
    t.equal(landed(await app.connect('127.0.0.1', 7070)), 'pod-loopback', 'loopback');
    // Straight to the ztunnel: not redirected, so ztunnel sees its own listener address and
    // (listeners.ts) closes such connections.
    t.equal(landed(await app.connect(ZTUNNEL, OUTBOUND)), `ztunnel ${ZTUNNEL}:${OUTBOUND}`, 'the ztunnel address itself');
  });

  await t.test('source port reuse: every connection gets its own destination', async (t) => {
    const before = await loader.stats();
    // The same (pod ip, source port) key over and over: only the per-socket hand-over keeps them apart.
    const seen: string[] = [];
    const want: string[] = [];
    for (let i = 1; i <= 40; i++) {
      const dst = `10.250.${i % 4}.${i}`;
      const r = await app.connect(dst, 1000 + i, { localAddress: POD, localPort: 40123 });
      t.equal(r.localPort, 40123, `connection ${i} reused source port 40123`, { diagnostic: !r.ok });
      seen.push(landed(r));
      want.push(`ztunnel ${dst}:${1000 + i}`);
    }
    t.same(seen, want);
    // And many at once, with whatever ports the kernel picks.
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => app.connect(`10.251.0.${i + 1}`, 2000 + i)));
    t.same(many.map(landed), many.map((_, i) => `ztunnel 10.251.0.${i + 1}:${2000 + i}`), '50 concurrent connections');
    const after = await loader.stats();
    t.equal(after.peerMissing - before.peerMissing, 0, 'ztunnel never accepted a redirected connection without its entry');
    t.equal(after.peerMoved - before.peerMoved, 90, 'each entry was moved onto its accepted socket');
    t.equal(after.origDstServed - before.origDstServed, 90, 'getsockname answered for each');
  });

  await t.test('an entry ztunnel never accepts is removed when the pod socket closes', async (t) => {
    await ztunnel.close('ztunnel');
    const before = await loader.stats();
    const r = await app.connect(REMOTE, 8083);
    t.equal(r.error, 'ECONNREFUSED', 'nobody listens on the outbound port');
    const after = await loader.stats();
    t.equal(after.peerRecorded - before.peerRecorded, 1);
    t.equal(after.peerExpired - before.peerExpired, 1, 'removed at TCP_CLOSE');
    t.same(await tool.mapDump(join(loader.pinDir, 'maps', 'amb_peer_dst')), [], 'the hand-over map holds nothing: no leaks');
    await ztunnel.listen('0.0.0.0', OUTBOUND, 'ztunnel');
  });

  await t.test('a dual-stack ztunnel listener (getsockname6)', async (t) => {
    await ztunnel.close('ztunnel');
    await ztunnel.listen('::', OUTBOUND, 'ztunnel');
    const r = await app.connect(REMOTE, 8082);
    t.equal(r.reply?.local, `::ffff:${REMOTE}`);
    t.equal(r.reply?.localPort, 8082);
    await ztunnel.close('ztunnel');
    await ztunnel.listen('0.0.0.0', OUTBOUND, 'ztunnel');
  });

  await t.test('a config update applies to new connections', async (t) => {
    await loader.load({ ...config, excludePorts: [9999, 8080] });
    t.equal(landed(await app.connect(REMOTE, 8080)), 'direct-remote', 'port 8080 now excluded');
    await loader.load(config);
    t.equal(landed(await app.connect(REMOTE, 8080)), `ztunnel ${REMOTE}:8080`, 'and redirected again');
  });

  await t.test('strict admits SYNs only from the ztunnel address', async (t) => {
    const fromNode = () => dests.connect(POD, 8080, { localAddress: NODE, timeoutMs: 1500 });
    const fromZtunnel = () => dests.connect(POD, 8080, { localAddress: ZTUNNEL, timeoutMs: 1500 });
    t.equal(landed(await fromNode()), 'pod', 'not strict: anyone reaches the pod');
    const dropped = (await loader.stats()).strictDropped;
    await loader.setStrict(podCg, true);
    t.equal(landed(await fromNode()), 'error timeout', 'strict: a SYN from another address is dropped');
    t.equal(landed(await fromZtunnel()), 'pod', 'strict: a SYN from the ztunnel address is admitted');
    t.equal(landed(await app.connect('127.0.0.1', 7070)), 'pod-loopback', 'strict: loopback is admitted');
    t.equal(landed(await app.connect(POD, 8080)), `ztunnel ${POD}:8080`, 'strict: the pod still reaches ztunnel (replies pass)');
    t.ok((await loader.stats()).strictDropped > dropped, 'the drop is counted');
    await loader.setStrict(podCg, false);
    t.equal(landed(await fromNode()), 'pod', 'strict off: admitted again');
  });

  await t.test('detaching the pod restores direct connections', async (t) => {
    await loader.detachPod(podCg);
    t.equal(landed(await app.connect(REMOTE, 8080)), 'direct-remote');
    const r = await app.connect('10.200.0.9', 443, { timeoutMs: 1500 });
    t.equal(r.ok, false, 'an unknown destination is unreachable again');
  });

  const status = await loader.status();
  t.same(status.attachments.map((a) => a.cgroup), [ztCg], 'only the ztunnel cgroup is still attached');
  for (const a of [ztunnel, dests, app]) t.equal(a.errors, '', 'agent wrote nothing to stderr');
});
