import t from 'tap';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CniPluginError, formatArgs, runChain, type NetConfList } from '../../lab/cni-chain.js';

/** A plugin that logs what it got (env + stdin) and answers per its behaviour. */
async function plugin(dir: string, name: string, behaviour: 'result' | 'echo-prev' | 'fail'): Promise<void> {
  const path = join(dir, name);
  await writeFile(
    path,
    `#!${process.execPath}
const fs = require('fs');
const stdin = fs.readFileSync(0, 'utf8');
fs.appendFileSync(${JSON.stringify(join(dir, 'log'))}, JSON.stringify({ plugin: ${JSON.stringify(name)}, command: process.env.CNI_COMMAND, args: process.env.CNI_ARGS, ifname: process.env.CNI_IFNAME, conf: JSON.parse(stdin) }) + '\\n');
const behaviour = ${JSON.stringify(behaviour)};
if (behaviour === 'fail') { process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', code: 7, msg: 'bad thing', details: 'the details' })); process.exit(1); }
if (process.env.CNI_COMMAND !== 'ADD') process.exit(0);
const conf = JSON.parse(stdin);
process.stdout.write(JSON.stringify(behaviour === 'echo-prev' ? conf.prevResult : { cniVersion: conf.cniVersion, ips: [{ address: '10.0.0.5/24' }] }));
`,
  );
  await chmod(path, 0o755);
}

const log = async (dir: string) => (await readFile(join(dir, 'log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { plugin: string; command: string; args: string; conf: Record<string, unknown> });

t.test('ADD in order with prevResult injected; DEL in reverse with the cached result', async (t) => {
  const dir = t.testdir();
  await plugin(dir, 'first', 'result');
  await plugin(dir, 'second', 'echo-prev');
  const conflist: NetConfList = { cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'first', ipam: {} }, { type: 'second', agentSocket: '/x' }] };
  const base = { conflist, containerId: 'c1', netns: '/var/run/netns/x', ifname: 'eth0', cniPath: ['/nonexistent', dir], args: { K8S_POD_NAME: 'web' } };
  const result = await runChain({ ...base, command: 'ADD' });
  t.same(result, { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/24' }] });
  await runChain({ ...base, command: 'DEL', prevResult: result! });
  const calls = await log(dir);
  t.same(calls.map((c) => `${c.command} ${c.plugin}`), ['ADD first', 'ADD second', 'DEL second', 'DEL first']);
  t.same(calls[0]!.conf, { type: 'first', ipam: {}, cniVersion: '1.0.0', name: 'net' }, 'the first plugin gets no prevResult');
  t.same(calls[1]!.conf['prevResult'], result, 'the second gets the first one’s result');
  t.same(calls[2]!.conf['prevResult'], result, 'DEL gets the cached result');
  t.equal(calls[0]!.args, 'IgnoreUnknown=1;K8S_POD_NAME=web');
  t.equal(formatArgs(), 'IgnoreUnknown=1');
});

t.test('failures name the plugin and carry its error object', async (t) => {
  const dir = t.testdir();
  await plugin(dir, 'first', 'result');
  await plugin(dir, 'broken', 'fail');
  const base = { containerId: 'c1', netns: '/x', ifname: 'eth0', cniPath: [dir] };
  const err = await runChain({ ...base, command: 'ADD', conflist: { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'first' }, { type: 'broken' }] } }).catch((e: unknown) => e);
  t.ok(err instanceof CniPluginError);
  t.match(err, { plugin: 'broken', cniCode: 7, msg: 'bad thing', details: 'the details', message: /cni plugin broken ADD failed with code 7 \(exit 1\): bad thing \(the details\)/ });
  await t.rejects(runChain({ ...base, command: 'ADD', conflist: { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'missing' }] } }), { message: /no executable missing in CNI_PATH/ });
});
