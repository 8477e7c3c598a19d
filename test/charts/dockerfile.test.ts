/**
 * The Dockerfile cannot be built here (no container engine), so this checks what can go wrong
 * without building: every file it COPYs from the context exists, and every command the charts run
 * is a dist/ file the build produces (compiled from a .ts the build stage copies and tsconfig.json
 * includes).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createHelm } from '../helpers/helm.js';

const ROOT = join(import.meta.dirname, '..', '..');
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const copies = [...dockerfile.matchAll(/^COPY\s+(--from=\S+\s+)?(.+)$/gm)].map((m) => ({ from: m[1]?.trim(), args: m[2]!.trim().split(/\s+/) }));
const contextSources = copies.filter((c) => !c.from).flatMap((c) => c.args.slice(0, -1));

t.test('every COPY from the build context names a file or directory that exists and is not ignored', async (t) => {
  t.ok(contextSources.length >= 8, `${contextSources.length} sources`);
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const src of contextSources) {
    t.ok(existsSync(join(ROOT, src)), `${src} exists`);
    t.notOk(ignored.includes(src.split('/')[0]!), `${src} is not in .dockerignore`);
  }
  t.ok(/^RUN npm ci\b/m.test(dockerfile) && /npm run build/.test(dockerfile) && /npm prune --omit=dev/.test(dockerfile), 'npm ci, build, prune dev dependencies');
  t.match(dockerfile, /^FROM node:20[-.\w]*slim/m, 'node:20 slim base');
  t.match(dockerfile, /apt-get install[^\n]*\bbpftool\b/, 'bpftool for the node agent');
  t.match(dockerfile, /^COPY --from=build \/app\/bpf\/prebuilt bpf\/prebuilt$/m, 'the prebuilt eBPF objects beside dist/');
  const objects = readdirSync(join(ROOT, 'bpf', 'prebuilt')).filter((f) => f.endsWith('.bpf.o'));
  t.ok(objects.length > 0, `bpf/prebuilt holds ${objects.join(', ')}`);
});

t.test('every command the charts run is a dist/ file the image build produces', async (t) => {
  const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
  const copiedDirs = new Set(contextSources);
  const commands: string[][] = [];
  // Real helm (test/helpers/helm.ts); the test fails, saying why, when it cannot be obtained.
  const helm = createHelm((fn) => t.teardown(fn));
  for (const chart of ['control-plane', 'ztunnel', 'cni']) {
    const r = helm.template({ chart, namespace: 'istio-system' });
    for (const m of r.manifests) {
      const spec = (m.object as { spec?: { template?: { spec?: { containers?: Array<{ command?: string[] }> } } } }).spec?.template?.spec;
      for (const c of spec?.containers ?? []) if (c.command) commands.push(c.command);
    }
  }
  t.equal(commands.length, 3, 'one command per component chart');
  for (const cmd of commands) {
    t.equal(cmd[0], 'node', `${cmd.join(' ')}: runs node`);
    const js = cmd[1]!;
    t.match(js, /^dist\/.+\.js$/, `${js} is under dist/ (the image's working directory is the project root)`);
    const ts = js.replace(/^dist\//, '').replace(/\.js$/, '.ts');
    t.ok(existsSync(join(ROOT, ts)), `${js} is compiled from ${ts}`);
    const top = ts.split('/')[0]!;
    t.ok(copiedDirs.has(top), `${top}/ is copied into the build stage`);
    t.ok(tsconfig.include.includes(`${top}/**/*.ts`), `tsconfig.json compiles ${top}/`);
  }
});
