// Installing the plugin on a node: the launcher and its payload in a real bin dir (run for real),
// our entry in the node's primary CNI config, kept there when another agent rewrites it, and
// taken out (a converted .conf restored) on uninstall.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { silentLogger } from '../../../core/telemetry/log.js';
import { until } from '../../helpers/until.js';
import {
  BACKUP_SUFFIX,
  CniConfigError,
  CniInstaller,
  convertedName,
  primaryConfFile,
  withoutPlugin,
  withPlugin,
} from '../../../cni-plugin/agent/install.js';

const run = promisify(execFile);
/** Runs the launcher as a runtime does for VERSION: CNI_* only, stdin closed. */
function launch(path: string): Promise<{ stdout: string; code: number }> {
  return new Promise((resolve) => {
    const child = execFile(path, [], { env: { CNI_COMMAND: 'VERSION' }, timeout: 20_000 }, (err, stdout) => {
      resolve({ stdout, code: err ? Number((err as { code?: unknown }).code ?? -1) : 0 });
    });
    child.stdin?.end();
  });
}
const PLUGIN_JS = fileURLToPath(new URL('../../../dist/cni-plugin/plugin.js', import.meta.url));
const ENTRY = { agentSocket: '/var/run/ambient/cni.sock', exemptNamespaces: ['kube-system'] };

const flannelConflist = {
  name: 'cbr0',
  cniVersion: '0.3.1',
  plugins: [
    { type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};
const bridgeConf = { cniVersion: '1.0.0', name: 'k8s', type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.1.0/24' } };
const json = (o: unknown) => `${JSON.stringify(o, null, 2)}\n`;

t.test('withPlugin: appended last to a conflist, idempotent, an old entry replaced', async (t) => {
  const first = withPlugin('10-flannel.conflist', json(flannelConflist), ENTRY);
  t.ok(first.changed);
  t.notOk(first.converted);
  const doc = JSON.parse(first.text);
  t.same(doc.plugins.map((p: { type: string }) => p.type), ['flannel', 'portmap', 'ambient-cni']);
  t.same(doc.plugins[2], { ...ENTRY, type: 'ambient-cni' });
  t.equal(doc.cniVersion, '0.3.1', 'cniVersion kept');
  const again = withPlugin('10-flannel.conflist', first.text, ENTRY);
  t.notOk(again.changed, 'a second pass changes nothing (no write, no watch loop)');
  t.equal(again.text, first.text);
  // An older entry (other settings), not last: replaced and moved last.
  const old = { ...flannelConflist, plugins: [flannelConflist.plugins[0], { type: 'ambient-cni', agentSocket: '/old.sock' }, flannelConflist.plugins[1]] };
  const fixed = JSON.parse(withPlugin('x.conflist', json(old), ENTRY).text);
  t.same(fixed.plugins.map((p: { type: string }) => p.type), ['flannel', 'portmap', 'ambient-cni']);
  t.equal(fixed.plugins[2].agentSocket, ENTRY.agentSocket);
});

t.test('withPlugin: a single-plugin .conf becomes a conflist keeping cniVersion and name', async (t) => {
  const c = withPlugin('10-bridge.conf', json(bridgeConf), ENTRY);
  t.ok(c.converted);
  const doc = JSON.parse(c.text);
  t.same(doc, {
    cniVersion: '1.0.0',
    name: 'k8s',
    plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.1.0/24' } }, { ...ENTRY, type: 'ambient-cni' }],
  });
  t.equal(convertedName('/etc/cni/net.d/10-bridge.conf'), '/etc/cni/net.d/10-bridge.conflist');
  t.equal(convertedName('/etc/cni/net.d/10-bridge.json'), '/etc/cni/net.d/10-bridge.conflist');
  t.same(JSON.parse(withoutPlugin('x', c.text)!).plugins, [doc.plugins[0]]);
  t.equal(withoutPlugin('x', json(flannelConflist)), undefined, 'nothing of ours: nothing to remove');
});

t.test('withPlugin: bad input is refused with the file named, never rewritten', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['{"cniVersion": "1.0.0", "plugins": [', /cni config \/etc\/cni\/net\.d\/bad\.conflist is not valid JSON/],
    ['[1,2]', /is not a JSON object/],
    ['{"name": "x", "plugins": [{"type": "bridge"}]}', /has no cniVersion string/],
    ['{"cniVersion": "9.9.9", "plugins": [{"type": "bridge"}]}', /cniVersion 9\.9\.9, which ambient-cni does not speak/],
    ['{"cniVersion": "1.0.0", "plugins": []}', /"plugins" key that is not a non-empty list/],
    ['{"cniVersion": "1.0.0", "plugins": [{"bridge": "cni0"}]}', /plugins\[0\] has no "type"/],
    ['{"cniVersion": "1.0.0", "name": "x"}', /has neither "plugins" nor "type"/],
    ['{"cniVersion": "1.0.0", "plugins": [{"type": "ambient-cni"}]}', /chains only ambient-cni/],
  ];
  for (const [text, re] of cases) {
    t.throws(() => withPlugin('/etc/cni/net.d/bad.conflist', text, ENTRY), re, text);
    try {
      withPlugin('/etc/cni/net.d/bad.conflist', text, ENTRY);
    } catch (err) {
      t.ok(err instanceof CniConfigError && err.code === 'ERR_CNI_CONFIG' && err.file === '/etc/cni/net.d/bad.conflist');
    }
  }
});

t.test('primaryConfFile: the lexically first .conf/.conflist/.json, as the runtime picks it', async (t) => {
  const dir = t.testdir({
    '20-other.conflist': '{}',
    '10-flannel.conflist': '{}',
    '05-notes.txt': 'x',
    '.hidden.conf': '{}',
    '00-dir.conf': {},
    '99-x.json': '{}',
  });
  t.equal(await primaryConfFile(dir), join(dir, '10-flannel.conflist'));
  t.equal(await primaryConfFile(join(dir, 'missing')), undefined);
  await writeFile(join(dir, '01-a.json'), '{}');
  t.equal(await primaryConfFile(dir), join(dir, '01-a.json'));
});

t.test('installBinary: a launcher that runs the plugin with the bundled node, on a clean environment', async (t) => {
  if (!existsSync(PLUGIN_JS)) {
    t.fail(`${PLUGIN_JS} is missing: run npm run build first`);
    return;
  }
  const dir = t.testdir({ bin: {}, net: {} });
  const bin = join(dir, 'bin');
  const cni = new CniInstaller({ binDir: bin, confDir: join(dir, 'net'), entry: ENTRY, logger: silentLogger, pluginJs: PLUGIN_JS });
  const { digest } = await cni.installBinary();
  const launcher = join(bin, 'ambient-cni');
  t.equal((await stat(launcher)).mode & 0o777, 0o755);
  const payload = join(bin, 'ambient-cni.d', digest);
  t.ok(existsSync(join(payload, 'node')), 'node copied');
  t.ok(existsSync(join(payload, 'js/cni-plugin/plugin.js')) && existsSync(join(payload, 'js/core/errors.js')), 'the plugin modules and what they import');
  // No PATH, no node anywhere but the payload: what a runtime's exec of the plugin gives it.
  const { stdout, code } = await launch(launcher);
  t.equal(code, 0);
  t.same(JSON.parse(stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
  const again = await cni.installBinary();
  t.equal(again.digest, digest, 'same build, same payload');
  t.same(await readdir(join(bin, 'ambient-cni.d')), [digest], 'one payload');
  // A newer build: new payload, the old one removed after the launcher switched.
  const js2 = join(dir, 'dist2');
  await run('cp', ['-r', join(PLUGIN_JS, '../..'), js2]);
  await writeFile(join(js2, 'cni-plugin/plugin.js'), `${await readFile(join(js2, 'cni-plugin/plugin.js'), 'utf8')}\n// v2\n`);
  const cni2 = new CniInstaller({ binDir: bin, confDir: join(dir, 'net'), entry: ENTRY, logger: silentLogger, pluginJs: join(js2, 'cni-plugin/plugin.js') });
  const v2 = await cni2.installBinary();
  t.not(v2.digest, digest);
  t.same(await readdir(join(bin, 'ambient-cni.d')), [v2.digest]);
  t.match((await launch(launcher)).stdout, /"cniVersion":"1.0.0"/);
  // A payload removed by hand: the launcher says so in the CNI error format.
  await rm(join(bin, 'ambient-cni.d'), { recursive: true });
  const broken = await launch(launcher);
  t.equal(broken.code, 1);
  t.match(JSON.parse(broken.stdout), { code: 105, msg: /payload ambient-cni\.d\/[0-9a-f]+ is missing/ });
});

t.test('a node config: inserted, re-inserted after another agent rewrites it, removed on uninstall', async (t) => {
  const dir = t.testdir({ bin: {}, net: { '10-flannel.conflist': json(flannelConflist), '99-loopback.conf': json({ cniVersion: '1.0.0', name: 'lo', type: 'loopback' }) } });
  const net = join(dir, 'net');
  const file = join(net, '10-flannel.conflist');
  const cni = new CniInstaller({ binDir: join(dir, 'bin'), confDir: net, entry: ENTRY, logger: silentLogger, checkIntervalMs: 60_000 });
  t.teardown(() => cni.stop());
  await cni.start();
  const types = async (f = file) => JSON.parse(await readFile(f, 'utf8')).plugins.map((p: { type: string }) => p.type);
  t.same(await types(), ['flannel', 'portmap', 'ambient-cni']);
  t.equal(cni.configured, file);
  t.same(JSON.parse(await readFile(join(net, '99-loopback.conf'), 'utf8')).type, 'loopback', 'only the primary config is touched');
  t.same((await readdir(net)).sort(), ['10-flannel.conflist', '99-loopback.conf'], 'no temp files left');

  // flannel's daemon writes its config again (atomically, as it does): we put our entry back.
  await writeFile(join(net, 'tmp-flannel'), json(flannelConflist));
  await rename(join(net, 'tmp-flannel'), file);
  await until('the entry to come back', async () => (await types()).at(-1) === 'ambient-cni');
  t.same(await types(), ['flannel', 'portmap', 'ambient-cni']);

  // A broken rewrite: reported (naming the file), the file left as the other agent wrote it.
  await writeFile(file, '{"cniVersion": "0.3.1", "plugins": [');
  await until('the error', async () => cni.lastError !== undefined);
  await cni.settled();
  t.match(cni.lastError, { code: 'ERR_CNI_CONFIG', message: new RegExp(`${file} is not valid JSON`) });
  t.equal(await readFile(file, 'utf8'), '{"cniVersion": "0.3.1", "plugins": [', 'never overwritten');
  await writeFile(file, json(flannelConflist));
  await until('the repair', async () => (await types()).at(-1) === 'ambient-cni');
  t.equal(cni.lastError, undefined);

  await cni.stop();
  const { files, errors } = await cni.uninstall();
  t.same(errors, []);
  t.same(files, [file]);
  t.same(JSON.parse(await readFile(file, 'utf8')), flannelConflist, 'back to what flannel wrote');
});

t.test('a single-plugin .conf: converted, and restored on uninstall', async (t) => {
  const dir = t.testdir({ bin: {}, net: { '10-bridge.conf': json(bridgeConf) } });
  const net = join(dir, 'net');
  const cni = new CniInstaller({ binDir: join(dir, 'bin'), confDir: net, entry: ENTRY, logger: silentLogger, checkIntervalMs: 60_000 });
  t.teardown(() => cni.stop());
  await cni.start();
  await cni.settled();
  t.same((await readdir(net)).sort(), [`10-bridge.conf${BACKUP_SUFFIX}`, '10-bridge.conflist'], 'the .conf (which would win the lexical order) replaced by a conflist');
  t.equal(await primaryConfFile(net), join(net, '10-bridge.conflist'));
  const list = JSON.parse(await readFile(join(net, '10-bridge.conflist'), 'utf8'));
  t.equal(list.cniVersion, '1.0.0');
  t.same(list.plugins.map((p: { type: string }) => p.type), ['bridge', 'ambient-cni']);

  // The primary CNI's agent writes its .conf again: converted again.
  await writeFile(join(net, '10-bridge.conf'), json({ ...bridgeConf, bridge: 'cni1' }));
  await until('the second conversion', async () => !existsSync(join(net, '10-bridge.conf')));
  await cni.settled();
  t.equal(JSON.parse(await readFile(join(net, '10-bridge.conflist'), 'utf8')).plugins[0].bridge, 'cni1');

  await cni.stop();
  await cni.uninstall();
  t.same(await readdir(net), ['10-bridge.conf'], 'the conflist and the backup gone');
  t.same(JSON.parse(await readFile(join(net, '10-bridge.conf'), 'utf8')), { ...bridgeConf, bridge: 'cni1' }, 'the latest .conf restored');
});

t.test('no config yet: waits, then inserts when the primary CNI writes one', async (t) => {
  const dir = t.testdir({ bin: {}, net: {} });
  const net = join(dir, 'net');
  const cni = new CniInstaller({ binDir: join(dir, 'bin'), confDir: net, entry: ENTRY, logger: silentLogger, checkIntervalMs: 60_000 });
  t.teardown(() => cni.stop());
  await cni.start();
  t.equal(cni.configured, undefined);
  t.match(cni.lastError, { message: /holds no \*\.conf, \*\.conflist or \*\.json yet/ });
  await writeFile(join(net, '10-flannel.conflist'), json(flannelConflist));
  await until('the insert', async () => cni.configured !== undefined);
  t.equal(JSON.parse(await readFile(join(net, '10-flannel.conflist'), 'utf8')).plugins.at(-1).type, 'ambient-cni');
});

t.test('uninstall: a config edited by someone else after the conversion loses only our entry', async (t) => {
  const dir = t.testdir({ bin: {}, net: { '10-bridge.conf': json(bridgeConf), 'bad.conflist': '{' } });
  const net = join(dir, 'net');
  const cni = new CniInstaller({ binDir: join(dir, 'bin'), confDir: net, entry: ENTRY, logger: silentLogger, checkIntervalMs: 60_000 });
  await cni.start();
  await cni.stop();
  const conflist = join(net, '10-bridge.conflist');
  const doc = JSON.parse(await readFile(conflist, 'utf8'));
  doc.plugins.splice(1, 0, { type: 'portmap', capabilities: { portMappings: true } });
  await writeFile(conflist, json(doc));
  const { files, errors } = await cni.uninstall();
  t.same(files, [conflist]);
  t.equal(errors.length, 1, 'the unparsable file is reported');
  t.match(errors[0], { code: 'ERR_CNI_CONFIG', message: /bad\.conflist is not valid JSON/ });
  t.same(JSON.parse(await readFile(conflist, 'utf8')).plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap']);
  t.same((await readdir(net)).sort(), ['10-bridge.conflist', 'bad.conflist'], 'their edit kept as a conflist; the backup removed');
});
