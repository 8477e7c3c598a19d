import t from 'tap';
import { Writable } from 'node:stream';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileConfigSource, DEFAULT_RELOAD_DEBOUNCE_MS } from '../../../core/node-config/file-source.js';
import { ConfigError } from '../../../core/errors.js';
import { createLogger } from '../../../core/telemetry/log.js';
import type { MeshConfig } from '../../../core/model/types.js';
import { until } from '../../helpers/until.js';

/** File events are asynchronous and coalesced: their effects are awaited up to 5 s. */
const FILE_EVENTS = { timeoutMs: 5000 };

const cfgText = (ip: string) => `
nodes: [{name: node-a, ztunnelAddress: 127.0.0.2}]
workloads: [{name: sleep, namespace: default, node: node-a, ips: [${ip}]}]
`;

/** A logger whose JSON lines land in `lines`. */
function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ component: 'test', level: 'debug', destination }), lines };
}

const ipOf = (c: MeshConfig | undefined) => c?.workloads[0]?.ips[0];

t.test('delivers the file at start, then every good change; keeps the last good config on a bad one', async (t) => {
  const dir = t.testdir({ 'config.yaml': cfgText('10.0.0.1'), 'other.txt': 'x' });
  const path = join(dir, 'config.yaml');
  const { logger, lines } = captureLogger();
  const source = new FileConfigSource({ path, logger, debounceMs: 20 });
  t.teardown(() => source.close());
  const seen: MeshConfig[] = [];
  await source.start((c) => seen.push(c));
  t.equal(seen.length, 1, 'first config delivered before start resolves');
  t.equal(ipOf(seen[0]), '10.0.0.1');
  t.equal(source.lastError, undefined);

  await writeFile(path, cfgText('10.0.0.2'));
  await until('the reload after an in-place write', () => seen.length === 2, FILE_EVENTS);
  t.equal(ipOf(seen[1]), '10.0.0.2');

  // A bad change: logged with the field at fault, nothing delivered, lastError set.
  await writeFile(path, cfgText('10.0.0.300'));
  await until('the bad file to be rejected', () => source.lastError !== undefined, FILE_EVENTS);
  t.type(source.lastError, ConfigError);
  t.same((source.lastError as ConfigError).problems, ['workloads[0].ips[0]: "10.0.0.300" is not an IPv4 or IPv6 address']);
  const rejected = lines.find((l) => l.msg === 'config file rejected; keeping the last good configuration');
  t.ok(rejected, 'error logged');
  t.equal(rejected?.level, 50);
  t.same(rejected?.problems, ['workloads[0].ips[0]: "10.0.0.300" is not an IPv4 or IPv6 address']);
  t.equal(seen.length, 2, 'the last good config stays');

  // An unrelated file in the directory changes nothing. Any event in the directory re-reads the
  // file (documented in watched-file.ts), and the file is still bad: a further rejection is the
  // positive sign that the event was processed.
  const rejections = () => lines.filter((l) => l.msg === 'config file rejected; keeping the last good configuration').length;
  const rejectedBefore = rejections();
  await writeFile(join(dir, 'other.txt'), 'y');
  await until('the directory event to be processed (one more rejection)', () => rejections() > rejectedBefore, FILE_EVENTS);
  t.equal(seen.length, 2);

  // Replaced the way editors save: write a temp file, rename it over the old one.
  await writeFile(join(dir, '.config.yaml.tmp'), cfgText('10.0.0.3'));
  await rename(join(dir, '.config.yaml.tmp'), path);
  await until('the reload after a rename', () => seen.length === 3, FILE_EVENTS);
  t.equal(ipOf(seen[2]), '10.0.0.3');
  t.equal(source.lastError, undefined, 'a good file clears lastError');
  t.ok(Object.isFrozen(seen[2]));
});

t.test('deleted file: error kept, config kept, recovers when it comes back', async (t) => {
  const dir = t.testdir({ 'config.yaml': cfgText('10.0.0.1') });
  const path = join(dir, 'config.yaml');
  const { logger } = captureLogger();
  const source = new FileConfigSource({ path, logger, debounceMs: 20 });
  t.teardown(() => source.close());
  const seen: MeshConfig[] = [];
  await source.start((c) => seen.push(c));
  await rm(path);
  await until('the missing file to be noticed', () => source.lastError !== undefined, FILE_EVENTS);
  t.match(source.lastError?.message, /cannot read the file \(ENOENT/);
  await writeFile(path, cfgText('10.0.0.9'));
  await until('the file to come back', () => seen.length === 2, FILE_EVENTS);
  t.equal(ipOf(seen[1]), '10.0.0.9');
  t.equal(source.lastError, undefined);
});

t.test('start fails with ConfigError on a bad or missing file', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'nodes: [{name: a}]\n' });
  const { logger } = captureLogger();
  const bad = new FileConfigSource({ path: join(dir, 'bad.yaml'), logger });
  await t.rejects(bad.start(() => t.fail('no config expected')), {
    code: 'ERR_CONFIG_INVALID',
    problems: ['nodes[0].ztunnelAddress: required field is missing; expected the IP address of the node\'s ztunnel'],
  });
  const missing = new FileConfigSource({ path: join(dir, 'nope.yaml'), logger });
  await t.rejects(missing.start(() => t.fail('no config expected')), { code: 'ERR_CONFIG_INVALID', message: /ENOENT/ });
  await t.rejects(bad.start(() => undefined), /after close/, 'a failed start leaves the source closed');
});

t.test('rootNamespace is passed to the parser; warnings are logged; close stops delivery', async (t) => {
  const text = `authorizationPolicies: [{name: p, namespace: mesh-root, spec: {rules: [{to: [{operation: {methods: [GET]}}]}]}}]\n`;
  const dir = t.testdir({ 'c.yaml': text });
  const path = join(dir, 'c.yaml');
  const { logger, lines } = captureLogger();
  const source = new FileConfigSource({ path, logger, rootNamespace: 'mesh-root', debounceMs: 20 });
  const seen: MeshConfig[] = [];
  await source.start((c) => seen.push(c));
  t.equal(seen[0]?.authorizationPolicies[0]?.scope, 'mesh');
  t.ok(lines.some((l) => l.level === 40 && /mesh-root\/p uses HTTP attributes/.test(String(l.msg))), 'warning logged');
  await t.rejects(source.start(() => undefined), /twice/);
  // A fence: a second source on the same file, still open. libuv delivers a directory's events to
  // every watcher of the loop together, and the fence waits longer (60 ms against 20 ms) before
  // reading: once it has delivered the change, the closed source would have delivered it too.
  const fence = new FileConfigSource({ path, logger, rootNamespace: 'mesh-root', debounceMs: 60 });
  t.teardown(() => fence.close());
  const fenceSeen: MeshConfig[] = [];
  await fence.start((c) => fenceSeen.push(c));
  await source.close();
  await writeFile(path, 'nodes: []\n');
  await until('the open source to deliver the change', () => fenceSeen.length === 2, FILE_EVENTS);
  t.equal(seen.length, 1, 'nothing after close');
});

t.test('a listener that throws is logged and does not stop reloads', async (t) => {
  const dir = t.testdir({ 'c.yaml': cfgText('10.0.0.1') });
  const path = join(dir, 'c.yaml');
  const { logger, lines } = captureLogger();
  const source = new FileConfigSource({ path, logger, debounceMs: 20 });
  t.teardown(() => source.close());
  let calls = 0;
  await source.start(() => {
    calls++;
    throw new Error('boom');
  });
  await writeFile(path, cfgText('10.0.0.2'));
  await until('the second delivery', () => calls === 2, FILE_EVENTS);
  t.ok(lines.some((l) => l.msg === 'the config listener threw; the new configuration may be only partly applied'));
  t.equal(DEFAULT_RELOAD_DEBOUNCE_MS, 100);
});
