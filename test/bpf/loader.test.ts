// The loader against the real kernel: idempotent load/attach/detach/unload, status(), config
// updates, upgrades of the objects, and its errors. Root only; skips with the reason otherwise.
import t from 'tap';
import { copyFile, mkdir, appendFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BpfLoader, DEFAULT_OBJECTS_DIR, PROGRAMS, type RedirectConfig } from '../../bpf/loader.js';
import { Bpftool } from '../../bpf/bpftool.js';
import { execFileRunner, type CommandRunner } from '../../bpf/command.js';
import { ConfigError } from '../../core/errors.js';
import { Sandbox, bpfSkipReason } from './sandbox.js';

const skip = await bpfSkipReason();
const POD_PROGRAMS = PROGRAMS.filter((p) => p.role === 'pod').map((p) => p.name).sort();
const ZTUNNEL_PROGRAMS = PROGRAMS.filter((p) => p.role === 'ztunnel').map((p) => p.name).sort();
const config: RedirectConfig = {
  ztunnelIp: '10.244.0.1',
  outboundPort: 15001,
  nodeIps: ['10.244.0.2', '192.168.7.1', 'fd00::1'],
  excludeCidrs: ['10.96.0.0/16', '10.97.0.1'],
  excludePorts: [22, 9999],
};
const tool = new Bpftool(execFileRunner());

async function namesOn(cgroup: string): Promise<string[]> {
  return (await tool.cgroupShow(cgroup)).map((p) => p.name).sort();
}

async function mapKeys(pinDir: string, map: string): Promise<string[]> {
  return (await tool.mapDump(join(pinDir, 'maps', map))).map((e) => e.key.map((b) => b.toString(16).padStart(2, '0')).join('')).sort();
}

t.test('checks its inputs before touching the kernel', async (t) => {
  const calls: string[][] = [];
  const run: CommandRunner = {
    run: async (file, args) => {
      calls.push([file, ...args]);
      return { stdout: '', stderr: '' };
    },
  };
  t.throws(() => new BpfLoader({ pinDir: 'relative/pins' }), TypeError);
  const dir = t.testdir({ cgroup: {} });
  const loader = new BpfLoader({ pinDir: join(dir, 'pins'), run });
  await t.rejects(loader.load({ ...config, ztunnelIp: 'nope' }), { code: 'ERR_CONFIG_INVALID' }, 'a bad config is refused first');
  await t.rejects(loader.load(config), { code: 'ERR_BPF_UNAVAILABLE', message: /is not on a bpf filesystem/ }, 'a pin dir outside bpffs is named');
  await t.rejects(loader.attachPod(join(dir, 'nope'), { strict: true }), { code: 'ERR_BPF_CGROUP_NOT_FOUND', message: /nope does not exist; check the pod's cgroup path/ });
  await t.rejects(loader.attachZtunnel(join(dir, 'cgroup')), { code: 'ERR_BPF_CGROUP_NOT_FOUND', message: /is not on a cgroup v2 filesystem/ });
  t.same(calls, [], 'bpftool never ran');
});

t.test('loader lifecycle', { skip }, async (t) => {
  const sb = await Sandbox.create();
  t.teardown(() => sb.cleanup());
  const pinDir = sb.pinDir('loader');
  const loader = new BpfLoader({ pinDir });
  sb.defer(() => loader.unload());
  const pod = await sb.cgroup('pod');
  const zt = await sb.cgroup('ztunnel');

  t.same(await loader.status(), { loaded: false, attachments: [] }, 'nothing before load');
  await t.rejects(loader.attachPod(pod, { strict: false }), { code: 'ERR_BPF_NOT_LOADED' }, 'attach before load says what is missing');

  await loader.load(config);
  await loader.load(config);
  t.equal((await loader.status()).loaded, true, 'loaded after two loads');
  t.same(await readdir(join(pinDir, 'maps')).then((m) => m.sort()), [
    'amb_config', 'amb_excl_cidrs', 'amb_excl_ports', 'amb_node_ips', 'amb_peer_dst', 'amb_pod_dst', 'amb_stats', 'amb_zt_dst',
  ]);
  t.equal((await readdir(join(pinDir, 'progs'))).length, 3, 'one directory per object');
  // IPv6 node addresses have no effect (IPv6 is never redirected): only the two IPv4 ones land.
  t.same(await mapKeys(pinDir, 'amb_node_ips'), ['0af40002', 'c0a80701']);
  t.same(await mapKeys(pinDir, 'amb_excl_ports'), ['1600', '0f27'].sort(), 'ports in host order (little endian)');
  t.same(await mapKeys(pinDir, 'amb_excl_cidrs'), ['100000000a600000', '200000000a610001']);
  t.same(await mapKeys(pinDir, 'amb_config'), ['00000000']);
  const cfgValue = (await tool.mapDump(join(pinDir, 'maps', 'amb_config')))[0]!.values[0]!;
  t.same([...cfgValue], [10, 244, 0, 1, 0x99, 0x3a, 1, 0], 'ztunnel ip (network order), port 15001 and enabled flag');

  // A second load with another config converges the maps to exactly the new entries.
  await loader.load({ ...config, nodeIps: ['10.244.0.3'], excludeCidrs: [], excludePorts: [9999] });
  t.same(await mapKeys(pinDir, 'amb_node_ips'), ['0af40003']);
  t.same(await mapKeys(pinDir, 'amb_excl_cidrs'), []);
  t.same(await mapKeys(pinDir, 'amb_excl_ports'), ['0f27']);

  const bad = loader.load({ ztunnelIp: 'fd00::1', outboundPort: 0, nodeIps: ['nope'], excludeCidrs: ['10.0.0.0/33'], excludePorts: [70000] });
  await t.rejects(bad, ConfigError, 'bad config refused');
  const err = (await bad.catch((e: unknown) => e)) as ConfigError;
  t.equal(err.problems.length, 5, 'every problem reported at once');
  t.same(await mapKeys(pinDir, 'amb_node_ips'), ['0af40003'], 'a refused config changes nothing');

  await t.rejects(loader.attachPod(join(sb.cgroupRoot, `${sb.prefix}-missing`), { strict: false }), {
    code: 'ERR_BPF_CGROUP_NOT_FOUND',
    message: new RegExp(`${sb.prefix}-missing does not exist`),
  });
  await t.rejects(loader.attachPod('relative/path', { strict: false }), { code: 'ERR_BPF_CGROUP_NOT_FOUND' });

  await loader.attachPod(pod, { strict: false });
  await loader.attachPod(pod, { strict: false });
  t.same(await namesOn(pod), POD_PROGRAMS, 'pod programs attached once');
  await loader.attachPod(pod, { strict: true });
  t.same(await namesOn(pod), [...POD_PROGRAMS, 'amb_strict_in'].sort(), 'strict adds the ingress filter');
  await loader.setStrict(pod, false);
  await loader.setStrict(pod, false);
  t.same(await namesOn(pod), POD_PROGRAMS, 'strict off removes only the filter');
  await loader.setStrict(pod, true);
  await loader.setStrict(pod, true);
  t.same(await namesOn(pod), [...POD_PROGRAMS, 'amb_strict_in'].sort());
  await loader.attachPod(pod, { strict: false });
  t.same(await namesOn(pod), POD_PROGRAMS, 'attachPod converges strict off too');

  await loader.attachZtunnel(zt);
  await loader.attachZtunnel(zt);
  t.same(await namesOn(zt), ZTUNNEL_PROGRAMS, 'ztunnel programs attached once');

  const status = await loader.status();
  t.same(
    status.attachments.sort((a, b) => a.cgroup.localeCompare(b.cgroup)),
    [
      { cgroup: pod, programs: POD_PROGRAMS },
      { cgroup: zt, programs: ZTUNNEL_PROGRAMS },
    ],
    'status lists our attachments from the kernel',
  );
  t.same(
    await loader.attachmentsOf([zt, pod, `${pod}/../does-not-exist`, pod]),
    status.attachments,
    'attachmentsOf asks about the named cgroups only: the same answer, a missing cgroup carries nothing',
  );
  t.same(await loader.attachmentsOf([zt]), [{ cgroup: zt, programs: ZTUNNEL_PROGRAMS }], 'one cgroup');

  // A second loader on the same pin dir (another process, or a restarted agent) sees the same state.
  const again = new BpfLoader({ pinDir });
  t.same((await again.status()).attachments.length, 2, 'state lives in the kernel, not the instance');
  await again.attachPod(pod, { strict: false });
  t.same(await namesOn(pod), POD_PROGRAMS);

  await loader.detachPod(pod);
  await loader.detachPod(pod);
  t.same(await namesOn(pod), [], 'detached, twice');
  await loader.detachPod(join(sb.cgroupRoot, `${sb.prefix}-gone`));
  t.pass('detaching a cgroup that does not exist succeeds');
  await loader.detachZtunnel(zt);
  await loader.detachZtunnel(zt);
  t.same(await namesOn(zt), []);

  await loader.attachPod(pod, { strict: true });
  await loader.attachZtunnel(zt);
  await loader.unload();
  t.same(await namesOn(pod), [], 'unload detaches pods');
  t.same(await namesOn(zt), [], 'unload detaches ztunnel');
  t.same(await loader.status(), { loaded: false, attachments: [] });
  await loader.unload();
  t.pass('unload twice');
  await t.rejects(loader.stats(), { code: 'ERR_BPF_NOT_LOADED' });
});

t.test('upgrading the objects moves attached cgroups to the new programs and keeps the maps', { skip }, async (t) => {
  const sb = await Sandbox.create();
  t.teardown(() => sb.cleanup());
  const pinDir = sb.pinDir('upgrade');
  const v1 = new BpfLoader({ pinDir });
  sb.defer(() => v1.unload());
  const pod = await sb.cgroup('pod');
  await v1.load(config);
  await v1.attachPod(pod, { strict: true });
  const before = await tool.cgroupShow(pod);
  const mapId = async () => (await tool.json('map', ['map', 'show', 'pinned', join(pinDir, 'maps', 'amb_peer_dst')], '') as { id: number }).id;
  const peerMapBefore = await mapId();

  // Version 2: the strict object differs by one trailing byte (libbpf ignores it; the digest does not).
  const objectsDir = t.testdir();
  await mkdir(objectsDir, { recursive: true });
  for (const o of ['redirect', 'strict', 'ztunnel']) await copyFile(join(DEFAULT_OBJECTS_DIR, `${o}.bpf.o`), join(objectsDir, `${o}.bpf.o`));
  await appendFile(join(objectsDir, 'strict.bpf.o'), Buffer.from([0]));
  const v2 = new BpfLoader({ pinDir, objectsDir });
  await v2.load(config);

  const after = await tool.cgroupShow(pod);
  t.same(after.map((p) => p.name).sort(), before.map((p) => p.name).sort(), 'same programs attached, once each');
  const id = (list: typeof before, name: string) => list.find((p) => p.name === name)!.id;
  t.not(id(after, 'amb_strict_in'), id(before, 'amb_strict_in'), 'the strict filter is the new version');
  t.equal(id(after, 'amb_connect4'), id(before, 'amb_connect4'), 'unchanged objects are not reloaded');
  t.equal(await mapId(), peerMapBefore, 'maps are reused across the upgrade');
  t.equal((await readdir(join(pinDir, 'progs'))).length, 3, 'the old version is unpinned');
  await v2.load(config);
  t.same((await tool.cgroupShow(pod)).map((p) => p.id).sort(), after.map((p) => p.id).sort(), 'loading v2 again changes nothing');
});
