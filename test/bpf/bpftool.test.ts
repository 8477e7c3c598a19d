import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Bpftool } from '../../bpf/bpftool.js';
import { CommandError, execFileRunner, type CommandRunner } from '../../bpf/command.js';
import { BpfCommandError } from '../../bpf/errors.js';
import { DEFAULT_OBJECTS_DIR } from '../../bpf/loader.js';

interface Call {
  file: string;
  args: readonly string[];
  input?: string;
}

function recorder(answer: (args: readonly string[]) => string | CommandError): { run: CommandRunner; calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    run: {
      run: async (file, args, opts) => {
        calls.push({ file, args, ...(opts?.input !== undefined ? { input: opts.input } : {}) });
        const a = answer(args);
        if (a instanceof CommandError) throw a;
        return { stdout: a, stderr: '' };
      },
    },
  };
}

t.test('builds bpftool command lines', async (t) => {
  const r = recorder(() => '');
  const tool = new Bpftool(r.run, '/usr/sbin/bpftool');
  await tool.loadAll('/o/x.bpf.o', '/p/progs/x-1', { reuseMaps: new Map([['amb_config', '/p/maps/amb_config']]), mapDir: '/p/staging-x' });
  await tool.attach('/cg/pod', 'connect4', '/p/progs/x-1/amb_connect4');
  await tool.detach('/cg/pod', 'connect4', 42);
  await tool.batch([
    ['update', '/p/maps/amb_excl_ports', [0x16, 0], [1]],
    ['delete', '/p/maps/amb_node_ips', [10, 0, 0, 1]],
  ]);
  await tool.batch([]);
  t.same(r.calls, [
    { file: '/usr/sbin/bpftool', args: ['prog', 'loadall', '/o/x.bpf.o', '/p/progs/x-1', 'map', 'name', 'amb_config', 'pinned', '/p/maps/amb_config', 'pinmaps', '/p/staging-x'] },
    { file: '/usr/sbin/bpftool', args: ['cgroup', 'attach', '/cg/pod', 'connect4', 'pinned', '/p/progs/x-1/amb_connect4', 'multi'] },
    { file: '/usr/sbin/bpftool', args: ['cgroup', 'detach', '/cg/pod', 'connect4', 'id', '42'] },
    {
      file: '/usr/sbin/bpftool',
      args: ['batch', 'file', '-'],
      input: 'map update pinned /p/maps/amb_excl_ports key hex 16 00 value hex 01\nmap delete pinned /p/maps/amb_node_ips key hex 0a 00 00 01\n',
    },
  ], 'an empty batch runs nothing');
});

t.test('parses listings', async (t) => {
  const r = recorder((args) => {
    if (args.includes('show') && args.includes('/cg/empty')) return '';
    if (args.includes('show')) return JSON.stringify([{ id: 7, attach_type: 'cgroup_inet4_connect', attach_flags: 'multi', name: 'amb_connect4' }]);
    if (args.includes('tree')) return JSON.stringify([{ cgroup: '/cg/a', programs: [{ id: 8, attach_type: 'cgroup_sock_ops', name: 'amb_pod_sockops' }] }]);
    if (args.includes('dump')) return JSON.stringify([{ key: ['0x00', '0x00', '0x00', '0x00'], values: [{ cpu: 0, value: ['0x01'] }, { cpu: 1, value: ['0x02'] }] }]);
    return '';
  });
  const tool = new Bpftool(r.run);
  t.same(await tool.cgroupShow('/cg/empty'), [], 'a cgroup without programs prints nothing');
  t.same(await tool.cgroupShow('/cg/pod'), [{ id: 7, attachType: 'cgroup_inet4_connect', name: 'amb_connect4' }]);
  t.same(await tool.cgroupTree('/cg'), [{ cgroup: '/cg/a', programs: [{ id: 8, attachType: 'cgroup_sock_ops', name: 'amb_pod_sockops' }] }]);
  t.same(await tool.mapDump('/p/maps/amb_stats'), [{ key: [0, 0, 0, 0], values: [[1], [2]] }]);
  t.same(r.calls[0]!.args.slice(0, 1), ['-j'], 'listings ask for json');
});

t.test('failures say what was done, what bpftool said, and what to check', async (t) => {
  const failing = recorder(() => new CommandError({ file: 'bpftool', args: [], exitCode: 255, notFound: false, stdout: '{"error":"can\'t open cgroup /cg/x"}', stderr: '' }));
  const err = await new Bpftool(failing.run).cgroupShow('/cg/x').catch((e: unknown) => e);
  t.type(err, BpfCommandError);
  t.match(err, { code: 'ERR_BPF_COMMAND', exitCode: 255, message: /listing programs of cgroup \/cg\/x failed \(bpftool -j cgroup show \/cg\/x\): can't open cgroup \/cg\/x; check that the cgroup exists/ });
  const missing = recorder(() => new CommandError({ file: 'bpftool', args: [], exitCode: null, notFound: true, stdout: '', stderr: '' }));
  t.match(await new Bpftool(missing.run).version().catch((e: unknown) => e), { message: /bpftool not found in PATH; install the bpftool package/ });
});

const haveBpftool = await new Promise<boolean>((resolve) => execFile('bpftool', ['version'], (err) => resolve(!err)));

t.test('every object declares the same maps (they are shared through pins)', { skip: haveBpftool ? false : 'bpftool is not installed (Debian package bpftool)' }, async (t) => {
  const tool = new Bpftool(execFileRunner());
  const names = await Promise.all(['redirect', 'strict', 'ztunnel'].map(async (o) => (await tool.objectMapNames(join(DEFAULT_OBJECTS_DIR, `${o}.bpf.o`))).sort()));
  t.same(names[0], ['amb_config', 'amb_excl_cidrs', 'amb_excl_ports', 'amb_node_ips', 'amb_peer_dst', 'amb_pod_dst', 'amb_stats', 'amb_zt_dst']);
  t.same(names[1], names[0]);
  t.same(names[2], names[0]);
});
