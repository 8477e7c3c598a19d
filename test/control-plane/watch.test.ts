/**
 * control-plane/watch.ts: a file is watched through its directory, and only events about that file
 * (or Kubernetes' `..data` swap) call back; a log file written beside the node list made the
 * control plane re-read the node list on every write (issue 19, a helper's finding).
 */
import t from 'tap';
import { mkdtemp, rm, symlink, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchPaths } from '../../control-plane/watch.js';
import { silentLogger } from '../../core/telemetry/log.js';
import { until } from '../helpers/until.js';

t.test('a watched file calls back for its own writes and the ..data swap, never for other files in its directory', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'amb-watch-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const nodes = join(dir, 'nodes.yaml');
  await writeFile(nodes, 'nodes: []\n');
  const calls: Array<ReadonlySet<string> | undefined> = [];
  const stop = await watchPaths([nodes], (changed) => void calls.push(changed), { logger: silentLogger, debounceMs: 20 });
  t.teardown(stop);

  // Writes of another file, then one of the node list: one callback naming the node list only.
  for (let i = 0; i < 5; i++) await writeFile(join(dir, 'control-plane.log'), `line ${i}\n`, { flag: 'a' });
  await writeFile(nodes, 'nodes: [{name: a}]\n');
  await until('the node list write called back', () => calls.length > 0);
  // An editor's save: a temporary file renamed over the node list.
  await writeFile(join(dir, 'nodes.yaml.tmp'), 'nodes: []\n');
  await rename(join(dir, 'nodes.yaml.tmp'), nodes);
  await until('the rename over the node list called back', () => calls.some((c) => c?.has(nodes) && c !== calls[0]));
  // Kubernetes' atomic writer: a new ..data symlink.
  await writeFile(join(dir, 'control-plane.log'), 'more\n', { flag: 'a' });
  await symlink('.', join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  await until('the ..data swap called back', () => calls.some((c) => c?.has(`${dir}/..data`)));

  for (const c of calls) {
    t.ok(c !== undefined, 'each callback names what changed');
    const names = [...(c ?? [])];
    t.same(names.filter((p) => p !== nodes && !p.startsWith(`${dir}/..`)), [], `no callback is about another file (${names.join(', ')})`);
  }
});
