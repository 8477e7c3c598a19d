/**
 * Manifests for the lab: the files `apply -f`/`delete -f` name, parsed by core's manifest parser
 * (the control plane's own), so a manifest means the same here as in the control plane, plus
 * the lab's own container checks; and what a container runs (the lab runs no images: a command
 * on this machine's filesystem, or a built-in `lab/` program).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { formatProblem, type ManifestObject, type ObjectProblem } from '../core/kube/objects.js';
import { parseManifests } from '../core/kube/parse.js';
import { LabError } from './cluster.js';
import { IMAGES_DIR } from './sys.js';

/** The built-in programs (lab/images/*.ts), named `lab/<name>` as a container image or a command. */
const BUILTIN_IMAGES = ['echo', 'http-echo', 'get', 'sleep', 'waypoint'];

type Raw = Record<string, unknown>;

/** Manifest files: FILE, or every *.yaml/*.yml/*.json under DIR (sorted, recursive). */
async function manifestFiles(path: string): Promise<string[]> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new LabError(`${path}: no such file or directory`, 'ERR_LAB_NO_FILE');
  if (!st.isDirectory()) return [path];
  const out: string[] = [];
  for (const e of (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(path, e.name);
    if (e.isDirectory()) out.push(...(await manifestFiles(p)));
    else if (['.yaml', '.yml', '.json'].includes(extname(e.name))) out.push(p);
  }
  return out;
}

/** Parses and checks every manifest; throws with every problem (file, object, field) when any is an error. */
export async function loadManifests(path: string): Promise<ManifestObject[]> {
  const objects: ManifestObject[] = [];
  const problems: ObjectProblem[] = [];
  for (const f of await manifestFiles(path)) {
    const r = parseManifests(await readFile(f, 'utf8'), f);
    objects.push(...r.objects);
    problems.push(...r.problems.filter((p) => p.severity === 'error'));
  }
  for (const o of objects) {
    if (o.kind === 'Pod') problems.push(...containerProblems(o.raw.spec as Raw, 'spec', o));
    if (o.kind === 'Deployment') problems.push(...containerProblems((o.raw.spec as Raw).template ? ((o.raw.spec as Raw).template as Raw).spec as Raw : undefined, 'spec.template.spec', o));
  }
  if (problems.length > 0) throw new LabError(`rejected; nothing was applied:\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`, 'ERR_LAB_BAD_MANIFEST');
  return objects;
}

function containerProblems(spec: Raw | undefined, at: string, o: ManifestObject): ObjectProblem[] {
  const object = `${o.kind} ${o.meta.namespace ?? ''}/${o.meta.name}`;
  const problem = (field: string, message: string): ObjectProblem => ({ object, field, message, severity: 'error', ...(o.source ? { source: o.source } : {}) });
  const containers = spec?.containers;
  if (!Array.isArray(containers) || containers.length === 0) return [problem(`${at}.containers`, 'is required: a list with at least one container')];
  const out: ObjectProblem[] = [];
  containers.forEach((c: Raw, i) => {
    const f = `${at}.containers[${i}]`;
    if (typeof c?.name !== 'string' || c.name === '') out.push(problem(`${f}.name`, 'is required'));
    const image = typeof c?.image === 'string' ? c.image : '';
    const hasCommand = Array.isArray(c?.command) && c.command.length > 0;
    if (image.startsWith('lab/') && !BUILTIN_IMAGES.includes(image.slice(4))) out.push(problem(`${f}.image`, `${JSON.stringify(image)} is not a built-in image; use one of ${BUILTIN_IMAGES.map((b) => `lab/${b}`).join(', ')}`));
    else if (!image.startsWith('lab/') && !hasCommand) out.push(problem(`${f}.command`, `the lab runs no container images; give a command (run on this machine's filesystem) or use a built-in image (${BUILTIN_IMAGES.map((b) => `lab/${b}`).join(', ')})`));
    for (const k of ['command', 'args']) if (c?.[k] !== undefined && !(Array.isArray(c[k]) && (c[k] as unknown[]).every((x) => typeof x === 'string'))) out.push(problem(`${f}.${k}`, 'must be a list of strings'));
  });
  return out;
}

/** The argv of a container: command + args, or the built-in program of a `lab/` image. */
export function containerArgv(c: Raw): string[] {
  const image = typeof c.image === 'string' ? c.image : '';
  const command = Array.isArray(c.command) ? (c.command as string[]) : undefined;
  const args = Array.isArray(c.args) ? (c.args as string[]) : [];
  if (command) return [...builtin(command), ...args];
  return [process.execPath, join(IMAGES_DIR, `${image.slice(4)}.js`), ...args];
}

/** `lab/get ...` → node dist/lab/images/get.js ...: the built-in programs as commands. */
export function builtin(argv: readonly string[]): string[] {
  const first = argv[0] ?? '';
  if (first.startsWith('lab/') && BUILTIN_IMAGES.includes(first.slice(4))) return [process.execPath, join(IMAGES_DIR, `${first.slice(4)}.js`), ...argv.slice(1)];
  return [...argv];
}
