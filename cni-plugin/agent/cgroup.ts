/**
 * Where a pod's cgroup v2 directory is. The redirect programs are attached to the pod-level
 * cgroup, so they cover every container of the pod (cgroup programs apply to descendants).
 *
 * - `explicit`: the runtime said (CNI_ARGS AMBIENT_CGROUP, the plugin's `cgroupPath` template, or
 *   the desired state's `cgroup`); only checked.
 * - `template`: derived from the pod's identity with the agent's CGROUP_TEMPLATE (the lab).
 * - `cgroupfs` / `systemd`: kubelet's layouts, found from the pod UID under kubelet's own cgroup
 *   root (`--cgroup-root`, KUBELET_CGROUP_ROOT; docs/cni.md).
 *
 * On a hybrid host (cgroup v1 controllers, cgroup2 at e.g. /sys/fs/cgroup/unified) kubelet makes
 * the pod-level cgroup in the v1 hierarchies before the sandbox, but runc makes the cgroup2 one
 * only when a container starts, i.e. after CNI ADD. The kubelet resolvers then throw
 * {@link PodCgroupOnlyInV1Error} naming the cgroup2 directory to make; only the reconciler
 * decides to make it (for a pod it must enrol), so resolving never changes the host.
 */
import { mkdir, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { MeshError } from '../../core/errors.js';
import { expandCgroupPath } from '../cni/spec.js';

/** A pod cgroup that cannot be found, or that the agent refuses to use. */
export class PodCgroupError extends MeshError {
  constructor(message: string, code = 'ERR_POD_CGROUP_NOT_FOUND') {
    super(code, message);
  }
}

/**
 * The pod-level cgroup exists in a cgroup v1 hierarchy (kubelet made it, so it is this pod's) but
 * not yet in cgroup2 (runc makes that one only when a container starts). `v2Path` is the cgroup2
 * directory that runc will join; `v1Path` is the proof.
 */
export class PodCgroupOnlyInV1Error extends PodCgroupError {
  constructor(
    readonly v2Path: string,
    readonly v1Path: string,
    pod: PodIdentity,
  ) {
    super(
      `cgroup ${v2Path} of pod ${pod.namespace}/${pod.name} does not exist in cgroup v2 yet, but ${v1Path} does (a hybrid host: runc makes the cgroup2 directory only when a container starts)`,
      'ERR_POD_CGROUP_ONLY_IN_V1',
    );
  }
}

export interface PodIdentity {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  readonly containerId?: string;
}

/** Finds a pod's cgroup from its identity. */
export interface CgroupResolver {
  /** Absolute path of an existing directory under the root; throws {@link PodCgroupError}. */
  resolve(pod: PodIdentity): Promise<string>;
  /** For messages: how this resolver looks. */
  readonly describe: string;
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** `a` is `b` or one of its ancestors. */
export function isAncestorOrSelf(a: string, b: string): boolean {
  const rel = relative(a, b);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Resolves a path the runtime gave (absolute, or relative to `root`) and checks that it is an
 * existing directory strictly below `root`.
 */
export async function checkCgroupPath(root: string, given: string): Promise<string> {
  const path = resolve(root, given);
  if (!isAncestorOrSelf(root, path) || path === resolve(root)) {
    throw new PodCgroupError(`cgroup ${given} is not below the cgroup v2 root ${root}; pass a pod's directory under it`);
  }
  if (!(await isDirectory(path))) {
    throw new PodCgroupError(`cgroup ${path} does not exist; check the pod's cgroup path (the runtime's cgroupPath/AMBIENT_CGROUP, or CGROUP_DRIVER) and that ${root} is the host's cgroup v2 root`);
  }
  return path;
}

/** CGROUP_TEMPLATE with `{podUid}`, `{podNamespace}`, `{podName}`, `{containerId}`, relative to the root or absolute. */
export class TemplateCgroupResolver implements CgroupResolver {
  readonly describe: string;
  constructor(
    private readonly root: string,
    private readonly template: string,
  ) {
    this.describe = `template ${template} under ${root}`;
  }

  async resolve(pod: PodIdentity): Promise<string> {
    const path = expandCgroupPath(this.template, {
      containerId: pod.containerId ?? '',
      podNamespace: pod.namespace,
      podName: pod.name,
      ...(pod.uid ? { podUid: pod.uid } : {}),
    });
    if (path === undefined) throw new PodCgroupError(`cgroup template ${this.template} needs a value pod ${pod.namespace}/${pod.name} does not have (uid or container id)`);
    return checkCgroupPath(this.root, path);
  }
}

/** kubelet's QoS classes, in the order a pod's cgroup is looked for. */
const QOS = ['', 'burstable', 'besteffort'] as const;

/** Where a kubelet resolver looks: kubelet's cgroup root, and the cgroup v1 hierarchies (hybrid hosts). */
export interface KubeletLayout {
  /**
   * kubelet's `--cgroup-root` (`cgroupRoot`) as a cgroup path: `/` (kubelet's default) or e.g.
   * `/amc-node-1` (cgroupfs) or `/node.slice` (systemd). See {@link resolveKubeletCgroupRoot}.
   */
  readonly kubeletRoot?: string;
  /**
   * Mount points of full cgroup v1 hierarchies (`/sys/fs/cgroup/memory`, ...): empty on a pure
   * cgroup v2 host. See {@link cgroupV1Roots}.
   */
  readonly v1Roots?: readonly string[];
}

/**
 * kubelet with `cgroupDriver: cgroupfs`: `<root>/<kubeletRoot>/kubepods/pod<uid>` (Guaranteed) or
 * `<root>/<kubeletRoot>/kubepods/<qos>/pod<uid>`.
 */
export class CgroupfsResolver implements CgroupResolver {
  readonly describe: string;
  private readonly kubeletRoot: string;
  private readonly v1Roots: readonly string[];
  constructor(
    private readonly root: string,
    layout: KubeletLayout = {},
  ) {
    this.kubeletRoot = layout.kubeletRoot ?? '/';
    this.v1Roots = layout.v1Roots ?? [];
    this.describe = `cgroupfs driver under ${join(root, this.kubeletRoot, 'kubepods')}`;
  }

  /** Relative to a hierarchy's root. */
  relativeCandidates(uid: string): string[] {
    return QOS.map((q) => join('.', this.kubeletRoot, 'kubepods', q, `pod${uid}`));
  }

  candidates(uid: string): string[] {
    return this.relativeCandidates(uid).map((r) => join(this.root, r));
  }

  async resolve(pod: PodIdentity): Promise<string> {
    return firstExisting(pod, this.root, this.v1Roots, this.relativeCandidates.bind(this), this.describe);
  }
}

/**
 * kubelet with `cgroupDriver: systemd`: slices, with the UID's dashes turned into underscores:
 * `<root>/kubepods.slice/kubepods-pod<uid>.slice` (Guaranteed) or
 * `<root>/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice`. With a kubelet
 * cgroup root such as `/node.slice`, kubelet prefixes every slice name with the root's
 * (`/node.slice/node-kubepods.slice/node-kubepods-burstable.slice/...`), as systemd nests slices.
 */
export class SystemdResolver implements CgroupResolver {
  readonly describe: string;
  private readonly prefix: string[];
  private readonly v1Roots: readonly string[];
  constructor(
    private readonly root: string,
    layout: KubeletLayout = {},
  ) {
    this.prefix = systemdNameParts(layout.kubeletRoot ?? '/');
    this.v1Roots = layout.v1Roots ?? [];
    this.describe = `systemd driver under ${join(root, expandSlice([...this.prefix, 'kubepods']))}`;
  }

  relativeCandidates(uid: string): string[] {
    const u = uid.replace(/-/g, '_');
    return QOS.map((q) => join('.', expandSlice([...this.prefix, 'kubepods', ...(q === '' ? [] : [q]), `pod${u}`])));
  }

  candidates(uid: string): string[] {
    return this.relativeCandidates(uid).map((r) => join(this.root, r));
  }

  async resolve(pod: PodIdentity): Promise<string> {
    return firstExisting(pod, this.root, this.v1Roots, this.relativeCandidates.bind(this), this.describe);
  }
}

/** kubelet's ParseSystemdToCgroupName: `/a.slice/a-b.slice` → [a, b]; `/` → []. */
function systemdNameParts(cgroupRoot: string): string[] {
  const base = basename(resolve('/', cgroupRoot));
  if (base === '') return [];
  return base.replace(/\.slice$/, '').split('-').filter((p) => p !== '');
}

/** systemd's slice nesting (runc's ExpandSlice): [a, b, c] → `/a.slice/a-b.slice/a-b-c.slice`. */
function expandSlice(parts: readonly string[]): string {
  let path = '/';
  for (let i = 1; i <= parts.length; i++) path = join(path, `${parts.slice(0, i).join('-')}.slice`);
  return path;
}

async function firstExisting(pod: PodIdentity, root: string, v1Roots: readonly string[], candidates: (uid: string) => string[], describe: string): Promise<string> {
  if (!pod.uid) {
    throw new PodCgroupError(`pod ${pod.namespace}/${pod.name} has no uid (K8S_POD_UID), which the ${describe} needs to find its cgroup`);
  }
  const rels = candidates(pod.uid);
  const paths = rels.map((r) => join(root, r));
  for (const p of paths) if (await isDirectory(p)) return p;
  // Hybrid host: kubelet made the pod's cgroup in the v1 hierarchies, runc has not made the cgroup2 one yet.
  for (const rel of rels) {
    for (const v1 of v1Roots) {
      const p = join(v1, rel);
      if (await isDirectory(p)) throw new PodCgroupOnlyInV1Error(join(root, rel), p, pod);
    }
  }
  const v1 = v1Roots.length > 0 ? ` (nor in the cgroup v1 hierarchies ${v1Roots.join(', ')})` : '';
  throw new PodCgroupError(
    `no cgroup for pod ${pod.namespace}/${pod.name} (uid ${pod.uid}) with the ${describe}: looked at ${paths.join(', ')}${v1}; check CGROUP_DRIVER against kubelet's cgroupDriver, KUBELET_CGROUP_ROOT against kubelet's cgroupRoot, and CGROUP_ROOT against the host's cgroup v2 mount`,
  );
}

// --- kubelet's cgroup root ------------------------------------------------------------------------

/** KUBELET_CGROUP_ROOT's value that finds kubelet's cgroup root from the agent's own cgroup. */
export const KUBELET_CGROUP_ROOT_AUTO = 'auto';

/** kubelet's cgroup root and how the agent learnt it (shown in /state). */
export interface KubeletCgroupRoot {
  /** A cgroup path: `/` or e.g. `/amc-node-1`. */
  readonly path: string;
  /** `KUBELET_CGROUP_ROOT`, `auto: ...` naming the line of /proc/self/cgroup used, or `auto: fallback ...` saying why. */
  readonly source: string;
  /** Set when `auto` fell back to `/`: the reason, for a log line. */
  readonly fallback?: string;
}

/** The cgroup path of a kubelet pod segment (`kubepods` or a `...kubepods.slice`) in a path. */
function beforeKubepods(path: string): string | undefined {
  const segments = path.split('/').filter((s) => s !== '');
  const i = segments.findIndex((s) => s === 'kubepods' || s === 'kubepods.slice' || s.endsWith('-kubepods.slice'));
  if (i < 0) return undefined;
  return `/${segments.slice(0, i).join('/')}`;
}

/**
 * kubelet's cgroup root. `setting` is KUBELET_CGROUP_ROOT: an absolute cgroup path is taken as
 * it is; `auto` reads the agent's own cgroup (`selfCgroup`, the text of /proc/self/cgroup): the
 * agent is itself a pod of this kubelet, so its cgroup is `<root>/kubepods/...` (cgroupfs) or
 * `<root>/...kubepods.slice/...` (systemd). The unified `0::` line is used when it names a path,
 * else a v1 controller line (memory, pids, then any). A namespaced view (`/`, or a path climbing
 * out with `..`) or one without a kubepods segment gives `/`, with `fallback` saying why.
 *
 * @example
 * resolveKubeletCgroupRoot('auto', '0::/amc-node-1/kubepods/besteffort/pod1/c1\n').path // '/amc-node-1'
 */
export function resolveKubeletCgroupRoot(setting: string, selfCgroup: string | undefined): KubeletCgroupRoot {
  if (setting !== KUBELET_CGROUP_ROOT_AUTO) return { path: resolve('/', setting), source: `KUBELET_CGROUP_ROOT=${setting}` };
  const fallback = (why: string): KubeletCgroupRoot => ({ path: '/', source: `auto: fallback to / (${why})`, fallback: why });
  if (selfCgroup === undefined) return fallback('/proc/self/cgroup could not be read');
  const lines = selfCgroup
    .split('\n')
    .map((l) => /^(\d+):([^:]*):(.*)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ line: m[0], controllers: m[2]!.split(','), path: m[3]! }));
  const unified = lines.find((l) => l.line.startsWith('0::'));
  const v1 = lines.filter((l) => !l.line.startsWith('0::') && l.controllers.some((c) => c !== '' && !c.startsWith('name=')));
  const ordered = [
    ...(unified ? [unified] : []),
    ...v1.filter((l) => l.controllers.includes('memory')),
    ...v1.filter((l) => l.controllers.includes('pids')),
    ...v1,
  ];
  // A namespaced view shows `/` or a path relative to the namespace's root that climbs with `..`.
  const usable = ordered.filter((l) => l.path !== '/' && l.path !== '' && !l.path.split('/').includes('..'));
  if (usable.length === 0) return fallback(`the agent's cgroup is namespaced (${ordered.map((l) => l.line).join(', ') || 'no cgroup lines'}); set KUBELET_CGROUP_ROOT to kubelet's cgroupRoot`);
  const first = usable[0]!;
  const root = beforeKubepods(first.path);
  if (root === undefined) return fallback(`the agent's cgroup ${first.path} holds no kubepods segment (is the agent a pod of this kubelet?); set KUBELET_CGROUP_ROOT to kubelet's cgroupRoot`);
  return { path: root, source: `auto: from /proc/self/cgroup ${first.line}` };
}

/**
 * Mount points of full cgroup v1 hierarchies, from mountinfo text (`/proc/self/mountinfo`):
 * type `cgroup` mounted from the hierarchy's root (a mount of a sub-tree, as a container's
 * own view, would put kubelet's paths elsewhere). Empty on a pure cgroup v2 host.
 */
export function cgroupV1Roots(mountinfo: string): string[] {
  const out = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const sepAt = line.indexOf(' - ');
    if (sepAt === -1) continue;
    const fields = line.slice(0, sepAt).split(' ');
    const type = line.slice(sepAt + 3).split(' ')[0];
    if (type !== 'cgroup' || fields[3] !== '/' || !fields[4]) continue;
    out.add(fields[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return [...out].sort();
}

// --- cgroup2 directories the agent makes (hybrid hosts) -------------------------------------------

/**
 * Makes `path` (and its missing parents) under the cgroup2 root `root`, and nothing deeper.
 * Returns the directories it created, outermost first (empty when `path` already existed): those
 * are the only ones the agent may remove later.
 */
export async function makePodCgroup(root: string, path: string): Promise<string[]> {
  const abs = resolve(path);
  if (!isAncestorOrSelf(root, abs) || abs === resolve(root)) throw new PodCgroupError(`cgroup ${path} is not below the cgroup v2 root ${root}; refusing to create it`);
  const first = await mkdir(abs, { recursive: true });
  if (first === undefined) return [];
  const made: string[] = [];
  for (let p = abs; isAncestorOrSelf(first, p); p = dirname(p)) {
    made.unshift(p);
    if (p === first || p === sep) break;
  }
  return made;
}

/**
 * Removes directories the agent made (outermost first, as {@link makePodCgroup} returns them),
 * innermost first, with rmdir only: a directory that holds a process or a child (runc's container
 * cgroup, another pod) stays, and so do its parents. Returns the ones that remain.
 */
export async function removeMadeCgroups(made: readonly string[]): Promise<string[]> {
  const list = [...made];
  while (list.length > 0) {
    const p = list[list.length - 1]!;
    try {
      await rmdir(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') return list;
    }
    list.pop();
  }
  return list;
}
