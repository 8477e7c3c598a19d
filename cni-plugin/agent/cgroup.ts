/**
 * Where a pod's cgroup v2 directory is. The redirect programs are attached to the pod-level
 * cgroup, so they cover every container of the pod (cgroup programs apply to descendants).
 *
 * - `explicit`: the runtime said (CNI_ARGS AMBIENT_CGROUP, the plugin's `cgroupPath` template, or
 *   the desired state's `cgroup`); only checked.
 * - `template`: derived from the pod's identity with the agent's CGROUP_TEMPLATE (the lab).
 * - `cgroupfs` / `systemd`: kubelet's layouts, found from the pod UID (docs/cni.md).
 */
import { stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { MeshError } from '../../core/errors.js';
import { expandCgroupPath } from '../cni/spec.js';

/** A pod cgroup that cannot be found, or that the agent refuses to use. */
export class PodCgroupError extends MeshError {
  constructor(message: string) {
    super('ERR_POD_CGROUP_NOT_FOUND', message);
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

/**
 * kubelet with `cgroupDriver: cgroupfs`: `<root>/kubepods/pod<uid>` (Guaranteed) or
 * `<root>/kubepods/<qos>/pod<uid>`.
 */
export class CgroupfsResolver implements CgroupResolver {
  readonly describe: string;
  constructor(
    private readonly root: string,
    private readonly parent = 'kubepods',
  ) {
    this.describe = `cgroupfs driver under ${join(root, parent)}`;
  }

  candidates(uid: string): string[] {
    return QOS.map((q) => join(this.root, this.parent, q, `pod${uid}`));
  }

  async resolve(pod: PodIdentity): Promise<string> {
    return firstExisting(pod, this.candidates.bind(this), this.describe);
  }
}

/**
 * kubelet with `cgroupDriver: systemd`: slices, with the UID's dashes turned into underscores:
 * `<root>/kubepods.slice/kubepods-pod<uid>.slice` (Guaranteed) or
 * `<root>/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice`.
 */
export class SystemdResolver implements CgroupResolver {
  readonly describe: string;
  constructor(private readonly root: string) {
    this.describe = `systemd driver under ${join(root, 'kubepods.slice')}`;
  }

  candidates(uid: string): string[] {
    const u = uid.replace(/-/g, '_');
    return QOS.map((q) =>
      q === ''
        ? join(this.root, 'kubepods.slice', `kubepods-pod${u}.slice`)
        : join(this.root, 'kubepods.slice', `kubepods-${q}.slice`, `kubepods-${q}-pod${u}.slice`),
    );
  }

  async resolve(pod: PodIdentity): Promise<string> {
    return firstExisting(pod, this.candidates.bind(this), this.describe);
  }
}

async function firstExisting(pod: PodIdentity, candidates: (uid: string) => string[], describe: string): Promise<string> {
  if (!pod.uid) {
    throw new PodCgroupError(`pod ${pod.namespace}/${pod.name} has no uid (K8S_POD_UID), which the ${describe} needs to find its cgroup`);
  }
  const paths = candidates(pod.uid);
  for (const p of paths) if (await isDirectory(p)) return p;
  throw new PodCgroupError(`no cgroup for pod ${pod.namespace}/${pod.name} (uid ${pod.uid}) with the ${describe}: looked at ${paths.join(', ')}; check CGROUP_DRIVER against kubelet's cgroupDriver and CGROUP_ROOT against the host's cgroup v2 mount`);
}
