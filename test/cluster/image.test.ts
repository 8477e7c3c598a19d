/**
 * The image is made two ways: by the Dockerfile (for users with Docker) and by cluster/image.sh
 * (no container engine here: a rootfs from this machine's Node 20 and tools, packed as a
 * docker-archive). This keeps the two in step: the paths under the working directory (the
 * Dockerfile's COPYs), the commands on PATH (its base image, apt-get install and tool check) and the
 * run settings (WORKDIR, ENV, USER, CMD, ENTRYPOINT) must be the same on both sides, and must cover
 * every command the components exec. As root, the archive the script builds is opened and held to
 * the same list.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import { promisify } from 'node:util';
import { load } from 'js-yaml';
import t from 'tap';

const execFileP = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'cluster', 'image.sh');

/** What an image holds, as both sides describe it. */
interface ImageSpec {
  workdir: string | undefined;
  env: string[];
  user: string | undefined;
  cmd: string | undefined;
  entrypoint: string | undefined;
  /** Paths under the working directory. */
  app: string[];
  /** Commands found on PATH. */
  tools: string[];
}

const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

/**
 * Apt packages whose command has another name. An `apt-get install` of a package missing here is
 * taken to provide the command of its own name (bpftool).
 */
const PACKAGE_COMMANDS: Readonly<Record<string, readonly string[]>> = { iproute2: ['ip'], 'util-linux': ['nsenter', 'mount'], coreutils: ['cat'] };

/** JSON exec form, normalised (whitespace-insensitive); a shell form is kept as written. */
const execForm = (s: string): string => {
  try {
    return JSON.stringify(JSON.parse(s));
  } catch {
    return s.trim();
  }
};

/** The run stage (after the last FROM) of a Dockerfile, read as an image spec. */
function dockerfileSpec(text: string): ImageSpec {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const lastFrom = lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  const from = lines[lastFrom]!.split(/\s+/)[1]!;
  const spec: ImageSpec = { workdir: undefined, env: [], user: undefined, cmd: undefined, entrypoint: undefined, app: [], tools: [] };
  const tools: string[] = [];
  // The node:* base images are Node itself.
  if (/^node:/.test(from)) tools.push('node');
  const app: string[] = [];
  for (const line of lines.slice(lastFrom + 1)) {
    const [, instr, rest = ''] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    switch (instr?.toUpperCase()) {
      case 'WORKDIR':
        spec.workdir = posix.resolve(spec.workdir ?? '/', rest.trim());
        break;
      case 'ENV':
        for (const kv of rest.trim().split(/\s+/)) spec.env.push(kv);
        break;
      case 'USER':
        spec.user = rest.trim();
        break;
      case 'CMD':
        spec.cmd = execForm(rest);
        break;
      case 'ENTRYPOINT':
        spec.entrypoint = execForm(rest);
        break;
      case 'COPY':
      case 'ADD': {
        const args = rest.trim().split(/\s+/).filter((a) => !a.startsWith('--'));
        const dest = args.pop()!;
        for (const src of args) {
          const target = dest.endsWith('/') || dest === '.' ? posix.join(dest, basename(src)) : dest;
          app.push(posix.relative(spec.workdir ?? '/', posix.resolve(spec.workdir ?? '/', target)));
        }
        break;
      }
      case 'RUN': {
        for (const m of rest.matchAll(/apt-get install((?:\s+[-\w.+]+)+)/g)) {
          for (const pkg of m[1]!.trim().split(/\s+/).filter((a) => !a.startsWith('-'))) tools.push(...(PACKAGE_COMMANDS[pkg] ?? [pkg]));
        }
        for (const m of rest.matchAll(/for \w+ in ([^;]+); do command -v/g)) tools.push(...m[1]!.trim().split(/\s+/));
        break;
      }
    }
  }
  spec.env.sort();
  spec.app = sorted(app);
  spec.tools = sorted(tools);
  return spec;
}

/** `cluster/image.sh manifest`'s lines, read as an image spec (and the image's tag). */
function manifestSpec(text: string): ImageSpec & { image: string | undefined } {
  const spec = { image: undefined as string | undefined, workdir: undefined as string | undefined, env: [] as string[], user: undefined as string | undefined, cmd: undefined as string | undefined, entrypoint: undefined as string | undefined, app: [] as string[], tools: [] as string[] };
  for (const line of text.split('\n').filter(Boolean)) {
    const [, key, value = ''] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    switch (key) {
      case 'image': spec.image = value; break;
      case 'workdir': spec.workdir = value; break;
      case 'env': spec.env.push(value); break;
      case 'user': spec.user = value; break;
      case 'cmd': spec.cmd = execForm(value); break;
      case 'entrypoint': spec.entrypoint = execForm(value); break;
      case 'app': spec.app.push(value); break;
      case 'tool': spec.tools.push(value); break;
      default: throw new Error(`unknown manifest line from cluster/image.sh: ${line}`);
    }
  }
  spec.env.sort();
  spec.app = sorted(spec.app);
  spec.tools = sorted(spec.tools);
  return spec;
}

/** What differs between the two, one line per difference; empty when they agree. */
function differences(docker: ImageSpec, script: ImageSpec): string[] {
  const out: string[] = [];
  for (const k of ['workdir', 'user', 'cmd', 'entrypoint'] as const) {
    if (docker[k] !== script[k]) out.push(`${k}: Dockerfile ${String(docker[k])}, cluster/image.sh ${String(script[k])}`);
  }
  for (const k of ['env', 'app', 'tools'] as const) {
    for (const x of docker[k]) if (!script[k].includes(x)) out.push(`${k} ${x}: in the Dockerfile, not in cluster/image.sh`);
    for (const x of script[k]) if (!docker[k].includes(x)) out.push(`${k} ${x}: in cluster/image.sh, not in the Dockerfile`);
  }
  return out;
}

/** Commands the components (what the charts run) exec, found in their sources. */
function execedCommands(): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const src = readFileSync(p, 'utf8');
        for (const re of [/\b(?:execFile|execFileP|execFileSync|spawn|spawnSync)\(\s*'([^']+)'/g, /\.run\(\s*'([^']+)'/g, /'--',\s*'([^'-][^']*)'/g]) {
          for (const m of src.matchAll(re)) found.push(m[1]!);
        }
      }
    }
  };
  for (const d of ['core', 'control-plane', 'ztunnel', 'waypoint', 'cni-plugin', 'bpf']) walk(join(ROOT, d));
  // bpftool is run through the Bpftool class, by the name it defaults to.
  const bin = /readonly bin = '([^']+)'/.exec(readFileSync(join(ROOT, 'bpf', 'bpftool.ts'), 'utf8'));
  if (bin) found.push(bin[1]!);
  return sorted(found);
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const scriptManifest = async (): Promise<string> => (await execFileP('bash', [SCRIPT, 'manifest'])).stdout;

t.test('the Dockerfile and cluster/image.sh put the same paths, tools and run settings in the image', async (t) => {
  const docker = dockerfileSpec(dockerfile);
  const script = manifestSpec(await scriptManifest());
  // The parse found what is there (a parser that finds nothing would agree with anything).
  t.ok(docker.app.length >= 4 && docker.app.includes('dist') && docker.app.includes('node_modules'), `Dockerfile app paths: ${docker.app.join(', ')}`);
  t.ok(docker.tools.includes('node') && docker.tools.includes('bpftool'), `Dockerfile tools: ${docker.tools.join(', ')}`);
  t.ok(docker.workdir && docker.user && docker.cmd, 'Dockerfile WORKDIR, USER, CMD');
  t.same(differences(docker, script), [], 'no differences');
  t.same(script.app, docker.app, 'app paths');
  t.same(script.tools, docker.tools, 'tools');
});

t.test('a COPY, a tool or a setting on one side only is a difference', async (t) => {
  const docker = dockerfileSpec(dockerfile);
  const manifest = await scriptManifest();
  const script = manifestSpec(manifest);
  const extraCopy = dockerfileSpec(`${dockerfile}\nCOPY --from=build /app/charts charts\n`);
  t.same(differences(extraCopy, script), ['app charts: in the Dockerfile, not in cluster/image.sh']);
  const extraApt = dockerfileSpec(dockerfile.replace('install -y --no-install-recommends bpftool', 'install -y --no-install-recommends bpftool iproute2'));
  t.same(differences(extraApt, script), ['tools ip: in the Dockerfile, not in cluster/image.sh']);
  const entry = dockerfileSpec(`${dockerfile}\nENTRYPOINT ["tini", "--"]\n`);
  t.same(differences(entry, script), [`entrypoint: Dockerfile ["tini","--"], cluster/image.sh undefined`]);
  const lessTool = manifestSpec(manifest.replace(/^tool cat\n/m, ''));
  t.same(differences(docker, lessTool), ['tools cat: in the Dockerfile, not in cluster/image.sh']);
  const moreApp = manifestSpec(`${manifest}app charts\n`);
  t.same(differences(docker, moreApp), ['app charts: in cluster/image.sh, not in the Dockerfile']);
  const otherUser = manifestSpec(manifest.replace(/^user .*$/m, 'user 0:0'));
  t.same(differences(docker, otherUser), [`user: Dockerfile ${docker.user}, cluster/image.sh 0:0`]);
});

t.test('every command the components exec is in the image, and every tool but node is one of them', async (t) => {
  const execed = execedCommands();
  t.ok(execed.includes('bpftool') && execed.includes('ldd'), `execed: ${execed.join(', ')}`);
  const { tools } = manifestSpec(await scriptManifest());
  for (const c of execed) t.ok(tools.includes(c), `${c} is a tool of the image`);
  // node runs the charts' commands (`node dist/...`), not an exec in the code.
  t.same(tools.filter((x) => x !== 'node' && !execed.includes(x)), [], 'no tool that nothing runs');
});

t.test("the image's tag is what the charts name with image.hub set to its registry", async (t) => {
  const { image } = manifestSpec(await scriptManifest());
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const m = /^(.+)\/([^/:]+):([^:]+)$/.exec(image ?? '');
  t.ok(m, `${image} is <hub>/<name>:<tag>`);
  const [, hub, name, tag] = m!;
  t.equal(tag, pkg.version, 'tagged with package.json version');
  for (const chart of ['control-plane', 'ztunnel', 'cni']) {
    const values = load(readFileSync(join(ROOT, 'charts', chart, 'values.yaml'), 'utf8')) as { image: { name: string; pullPolicy: string } };
    const meta = load(readFileSync(join(ROOT, 'charts', chart, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    t.equal(`${hub}/${values.image.name}:${meta.appVersion}`, image, `${chart}: --set image.hub=${hub} names the image`);
    t.equal(values.image.pullPolicy, 'IfNotPresent', `${chart}: pullPolicy IfNotPresent (no registry serves it)`);
  }
});

const notRoot = process.getuid?.() !== 0 ? 'needs root: the build checks the rootfs by chroot and writes its cache under /var/cache/ambient-mesh' : false;

t.test('the archive cluster/image.sh builds holds its manifest', { skip: notRoot }, async (t) => {
  const script = manifestSpec(await scriptManifest());
  // Reuses the cached archive when nothing it is made of changed; otherwise builds (npm ci --omit=dev, tsc).
  const built = await execFileP('bash', [SCRIPT, 'build'], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  const archive = built.stdout.trim().split('\n').pop()!;
  t.match(archive, /\/ambient-mesh-[^/]+\.tar$/, `archive ${archive}`);
  const tarOut = async (...args: string[]): Promise<string> => (await execFileP('tar', args, { maxBuffer: 256 * 1024 * 1024 })).stdout;
  const manifest = JSON.parse(await tarOut('-xOf', archive, 'manifest.json')) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
  t.same(manifest[0]!.RepoTags, [script.image], 'tagged as the manifest says');
  const config = (JSON.parse(await tarOut('-xOf', archive, manifest[0]!.Config)) as { config: { Env: string[]; WorkingDir: string; User: string; Cmd: unknown; Entrypoint?: unknown } }).config;
  t.equal(config.WorkingDir, script.workdir, 'WorkingDir');
  t.equal(config.User, script.user, 'User');
  t.equal(JSON.stringify(config.Cmd), script.cmd, 'Cmd');
  t.equal(config.Entrypoint, undefined, 'no Entrypoint');
  for (const e of script.env) t.ok(config.Env.includes(e), `Env ${e}`);
  const pathDirs = config.Env.find((e) => e.startsWith('PATH='))!.slice(5).split(':');
  t.equal(manifest[0]!.Layers.length, 1, 'one layer');
  // The layer is a tar inside the tar: list it through a pipe (no extraction on disk).
  const { stdout: entries } = await execFileP('bash', ['-o', 'pipefail', '-c', 'tar -xOf "$1" "$2" | tar -tv', 'list', archive, manifest[0]!.Layers[0]!], { maxBuffer: 256 * 1024 * 1024 });
  const files = new Map<string, string>();
  for (const l of entries.split('\n').filter(Boolean)) {
    const m = /^(\S)\S*\s+\S+\s+\d+\s+\S+\s+\S+\s+\.\/(.*?)(?: -> (.*))?$/.exec(l);
    if (m) files.set(`/${m[2]!.replace(/\/$/, '')}`, m[1] === 'l' ? `->${m[3]}` : m[1]!);
  }
  const resolve = (p: string): string => {
    // The rootfs's own merged-/usr links (bin -> usr/bin, ...): one level, as Debian has them.
    const [, top, rest] = /^\/([^/]+)(\/.*)?$/.exec(p)!;
    const link = files.get(`/${top}`);
    return link?.startsWith('->') ? `/${link.slice(2)}${rest ?? ''}` : p;
  };
  for (const p of script.app) t.ok(files.has(posix.join(script.workdir!, p)), `${posix.join(script.workdir!, p)} in the layer`);
  for (const tool of script.tools) {
    const at = pathDirs.map((d) => resolve(posix.join(d, tool))).find((p) => files.get(p) === '-');
    t.ok(at, `${tool} is a file in the image's PATH (${at ?? 'none'})`);
  }
  t.equal(files.get('/usr/lib64/ld-linux-x86-64.so.2') ?? files.get(resolve('/lib64/ld-linux-x86-64.so.2')), '-', 'the dynamic loader');
});
