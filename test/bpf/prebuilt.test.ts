// The committed objects must be exactly what the sources build to: rebuild into a temporary
// directory with bpf/build.sh (what the Makefile runs) and compare byte for byte. The build is reproducible for one
// toolchain (recorded in bpf/prebuilt/TOOLCHAIN); on another one the comparison is skipped with
// the reason, never passed silently.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BPF_DIR = fileURLToPath(new URL('../../bpf', import.meta.url));
const PREBUILT = join(BPF_DIR, 'prebuilt');

function run(file: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ ok: !err, out: `${stdout}${stderr}` }));
  });
}

async function missingTools(): Promise<string | false> {
  for (const [cmd, pkg] of [['clang', 'clang'], ['llvm-strip', 'llvm']] as const) {
    if (!(await run('sh', ['-c', `command -v ${cmd}`])).ok) return `${cmd} is not installed (Debian package ${pkg}); cannot rebuild the eBPF objects`;
  }
  if (!(await run('test', ['-f', '/usr/include/bpf/bpf_helpers.h'])).ok) return 'libbpf headers are not installed (Debian package libbpf-dev)';
  return false;
}

const skip = await missingTools();

t.test('bpf/prebuilt matches a rebuild from bpf/src', { skip }, async (t) => {
  const out = t.testdir();
  const build = await run('sh', [join(BPF_DIR, 'build.sh'), out]);
  t.ok(build.ok, 'the objects build', { output: build.out });
  if (!build.ok) return;

  const sources = (await readdir(join(BPF_DIR, 'src'))).filter((f) => f.endsWith('.bpf.c')).map((f) => f.replace(/\.c$/, '.o')).sort();
  const committed = (await readdir(PREBUILT)).filter((f) => f.endsWith('.bpf.o')).sort();
  t.same(committed, sources, 'one committed object per source, and no others');

  const wantToolchain = await readFile(join(PREBUILT, 'TOOLCHAIN'), 'utf8');
  const haveToolchain = await readFile(join(out, 'TOOLCHAIN'), 'utf8');
  if (wantToolchain !== haveToolchain) {
    const flat = (s: string) => s.trim().replace(/\n/g, ', ');
    t.pass('byte comparison', {
      skip: `the committed objects were built with "${flat(wantToolchain)}", this machine has "${flat(haveToolchain)}": the build is reproducible per toolchain only`,
    });
    return;
  }
  for (const obj of sources) {
    const [want, have] = await Promise.all([readFile(join(PREBUILT, obj)).catch(() => Buffer.alloc(0)), readFile(join(out, obj))]);
    t.ok(want.equals(have), `${obj} is up to date (if not: run \`make -C bpf\` and commit bpf/prebuilt)`);
  }
});
