/**
 * The import boundaries (ARCHITECTURE.md, "Import boundaries"; the rules in .dependency-cruiser.cjs)
 * hold for the sources, and the check really catches a crossing: every rule is shown firing on a
 * planted import in a fixture tree, next to the imports the same rule allows.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const DEPCRUISE = join(REPO, 'node_modules', '.bin', 'depcruise');
const CONFIG = '.dependency-cruiser.cjs';
/** The folders with product code; test/ is the only top-level source folder not checked. */
const SOURCES = ['core', 'bpf', 'ztunnel', 'waypoint', 'control-plane', 'cni-plugin', 'lab', 'cli', 'bench', 'tools', 'fuzz', 'dashboard'];

interface Violation {
  readonly from: string;
  readonly to: string;
  readonly rule: { readonly name: string };
}
interface CruiseResult {
  readonly violations: readonly Violation[];
  readonly modules: number;
}

/** Runs the real `depcruise` CLI in `cwd` (its config and tsconfig are those of `cwd`) over `dirs`. */
function cruise(cwd: string, dirs: readonly string[]): Promise<CruiseResult> {
  return new Promise((resolve, reject) => {
    execFile(DEPCRUISE, ['--config', CONFIG, '--output-type', 'json', ...dirs], { cwd, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      // The json report is printed whatever was found; no report at all is a failure of the check itself.
      let out: { summary: { violations: Violation[]; totalCruised: number } };
      try {
        out = JSON.parse(stdout) as typeof out;
      } catch {
        return reject(new Error(`depcruise did not print its json report (exit ${err?.code ?? 0}): ${stderr.trim() || stdout.slice(0, 500)}`));
      }
      resolve({ violations: out.summary.violations, modules: out.summary.totalCruised });
    });
  });
}

const edge = (v: Violation): string => `${v.rule.name}: ${v.from} → ${v.to}`;

t.test('the sources cross no boundary', async (t) => {
  const r = await cruise(REPO, SOURCES);
  // A config that matched no files would report nothing: the cruise must have seen the sources.
  t.ok(r.modules > 150, `depcruise cruised the sources (${r.modules} modules)`);
  t.same(r.violations.map(edge), [], 'no import crosses a boundary (fix the import, or change the rule and ARCHITECTURE.md together)');
});

/**
 * One fixture file per case, `<from folder>/caseN.ts` (the folder may be nested: core/kube), importing `to` (created as an empty module).
 * `rule` is the rule that must report it, or undefined when the import is allowed.
 */
const CASES: ReadonlyArray<{ from: string; to: string; rule?: string; typeOnly?: boolean }> = [
  { from: 'ztunnel', to: 'waypoint/main.ts', rule: 'component-imports-only-core' },
  { from: 'ztunnel', to: 'waypoint/main.ts', rule: 'component-imports-only-core', typeOnly: true },
  { from: 'ztunnel', to: 'core/errors.ts' },
  { from: 'ztunnel', to: 'ztunnel/proxy.ts' },
  { from: 'waypoint', to: 'control-plane/main.ts', rule: 'component-imports-only-core' },
  { from: 'control-plane', to: 'cni-plugin/api.ts', rule: 'component-imports-only-core' },
  { from: 'control-plane', to: 'bpf/loader.ts', rule: 'component-imports-only-core' },
  { from: 'core', to: 'ztunnel/proxy.ts', rule: 'core-imports-only-core' },
  { from: 'core', to: 'test/helpers/mesh.ts', rule: 'nothing-imports-tests' },
  { from: 'bpf', to: 'cni-plugin/api.ts', rule: 'bpf-imports-only-core' },
  { from: 'bpf', to: 'core/errors.ts' },
  { from: 'cni-plugin', to: 'bpf/loader.ts' },
  { from: 'cni-plugin', to: 'lab/cni-chain.ts', rule: 'cni-plugin-imports-only-core-and-bpf' },
  { from: 'lab', to: 'waypoint/main.ts', rule: 'lab-runs-components-not-imports-them' },
  { from: 'lab', to: 'cni-plugin/agent/reconciler.ts', rule: 'lab-runs-components-not-imports-them' },
  { from: 'lab', to: 'cli/output.ts', rule: 'lab-runs-components-not-imports-them' },
  { from: 'lab', to: 'cni-plugin/api.ts' },
  { from: 'lab', to: 'cni-plugin/agent/decide.ts' },
  { from: 'lab', to: 'bpf/loader.ts' },
  { from: 'cli', to: 'lab/index.ts' },
  { from: 'cli', to: 'lab/cluster.ts', rule: 'cli-imports-core-lab-index-bpf-kernel' },
  { from: 'cli', to: 'bpf/kernel.ts' },
  { from: 'cli', to: 'bpf/loader.ts', rule: 'cli-imports-core-lab-index-bpf-kernel' },
  { from: 'cli', to: 'control-plane/main.ts', rule: 'cli-imports-core-lab-index-bpf-kernel' },
  { from: 'bench', to: 'control-plane/main.ts' },
  { from: 'bench', to: 'ztunnel/proxy.ts', rule: 'bench-imports-core-and-the-control-plane' },
  { from: 'tools', to: 'lab/index.ts', rule: 'tools-import-only-core' },
  { from: 'fuzz', to: 'ztunnel/socks5.ts' },
  { from: 'fuzz', to: 'cni-plugin/cni/spec.ts' },
  { from: 'fuzz', to: 'core/kube/parse.ts' },
  { from: 'fuzz', to: 'ztunnel/proxy.ts', rule: 'fuzz-imports-core-and-boundary-parsers' },
  { from: 'fuzz', to: 'waypoint/main.ts', rule: 'fuzz-imports-core-and-boundary-parsers' },
  { from: 'ztunnel', to: 'ztunnel/missing.ts', rule: 'not-resolvable' },
  { from: 'core/identity', to: 'core/discovery/wire.ts', rule: 'core-folders-import-only-lower-layers' },
  { from: 'core/authz', to: 'core/kube/waypoint-policy.ts', rule: 'core-folders-import-only-lower-layers' },
  { from: 'core/kube', to: 'core/node-config/file.ts', rule: 'core-folders-import-only-lower-layers' },
  { from: 'core/discovery', to: 'core/kube/routes/http-route.ts' },
  { from: 'core/node-config', to: 'core/discovery/wire.ts' },
  { from: 'core/kube', to: 'core/errors.ts' },
  { from: 'cli', to: 'dashboard/server.ts' },
  { from: 'dashboard', to: 'lab/index.ts' },
  { from: 'dashboard', to: 'core/labels.ts' },
  { from: 'dashboard', to: 'lab/cluster.ts', rule: 'dashboard-imports-core-and-lab-index' },
  { from: 'dashboard', to: 'cli/output.ts', rule: 'dashboard-imports-core-and-lab-index' },
  { from: 'dashboard', to: 'ztunnel/proxy.ts', rule: 'dashboard-imports-core-and-lab-index' },
];

t.test('the check fails on planted imports, naming rule and edge, and allows the allowed ones', async (t) => {
  const dir = t.testdir();
  await copyFile(join(REPO, CONFIG), join(dir, CONFIG));
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }));
  const files = new Map<string, string>();
  const expected: string[] = [];
  for (const [i, c] of CASES.entries()) {
    const from = `${c.from}/case${i}.ts`;
    const rel = relative(c.from, c.to.replace(/[.]ts$/, '.js'));
    const spec = rel.startsWith('.') ? rel : `./${rel}`;
    files.set(from, c.typeOnly ? `import type { X } from '${spec}';\nexport type Y = X;\n` : `import { x } from '${spec}';\nexport const y = x;\n`);
    if (!c.to.includes('missing')) files.set(c.to, 'export const x = 1;\nexport type X = number;\n');
    // An import that resolves to nothing is reported as written.
    if (c.rule) expected.push(`${c.rule}: ${from} → ${c.to.includes('missing') ? spec : c.to}`);
  }
  for (const [path, text] of files) {
    await mkdir(join(dir, dirname(path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  const dirs = [...new Set(CASES.map((c) => c.from))];
  const r = await cruise(dir, dirs);
  t.same(r.violations.map(edge).sort(), expected.sort(), 'exactly the planted crossings are reported, each by its rule');

  // The text report, as `npx depcruise` prints it for a developer: its exit status is the number of errors.
  const text = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile(DEPCRUISE, ['--config', CONFIG, '--output-type', 'err', ...dirs], { cwd: dir }, (err, stdout) => resolve({ code: typeof err?.code === 'number' ? err.code : 0, out: stdout })),
  );
  t.equal(text.code, expected.length, 'depcruise exits with the number of violations');
  t.match(text.out, /error component-imports-only-core: ztunnel\/case0\.ts → waypoint\/main\.ts/, 'the text report names the rule and the edge');
  t.comment(text.out.trim());
});
