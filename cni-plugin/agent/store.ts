/**
 * The agent's record of the pods it learnt of through CNI, in a JSON file written atomically
 * (temp file + rename), so a restarted agent knows the pods' cgroups, sandboxes and addresses.
 * It also lists the cgroups the agent attached programs to, so a restarted agent knows where to
 * look for programs no pod wants any more without walking every cgroup of the node. What is
 * attached there is not trusted from here: the kernel is asked (Redirector.attachmentsOf()).
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MeshError } from '../../core/errors.js';

/** One pod the runtime told the agent about. */
export interface PodRecord {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  readonly containerId: string;
  readonly netns?: string;
  readonly ips: readonly string[];
  /** Resolved, absolute; absent while it could not be found. */
  readonly cgroup?: string;
  /** When the agent last attached the redirect programs (ISO). */
  readonly enrolledAt?: string;
  /**
   * cgroup2 directories the agent made for this pod (hybrid hosts: the pod-level cgroup and any
   * missing parents, outermost first). Only these are ever removed, and only when empty.
   */
  readonly madeCgroups?: readonly string[];
  /** How the ADD's wait for the desired state to list the pod ended (api.ts PodStatus.addWait). */
  readonly addWait?: { readonly outcome: 'listed' | 'timed-out'; readonly waitedMs: number };
}

const VERSION = 1;

/** The state file exists but cannot be used: the agent refuses to guess (it might detach live pods). */
export class StateFileError extends MeshError {
  constructor(path: string, why: string) {
    super('ERR_AGENT_STATE_FILE', `agent state file ${path} ${why}; inspect it, and move it away to start afresh (the agent then re-learns pods from the desired state and new CNI calls)`);
  }
}

/** What a previous run left. */
export interface StoredState {
  readonly pods: PodRecord[];
  /** Cgroups the agent attached programs to (absent in files of older agents). */
  readonly attached: string[];
  /** cgroup2 directories the agent made for pods now gone, still to remove once empty. */
  readonly cleanup: string[];
}

export class StateStore {
  constructor(readonly path: string) {}

  /** The records, or none when the file does not exist yet (first start on this node). */
  async load(): Promise<StoredState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { pods: [], attached: [], cleanup: [] };
      throw new StateFileError(this.path, `cannot be read (${(err as NodeJS.ErrnoException).code})`);
    }
    let doc: { version?: unknown; pods?: unknown; attached?: unknown; cleanup?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw new StateFileError(this.path, 'is not JSON');
    }
    if (doc?.version !== VERSION || !Array.isArray(doc.pods)) throw new StateFileError(this.path, `is not a version ${VERSION} state file`);
    const pods = doc.pods.filter(
      (p): p is PodRecord =>
        typeof p === 'object' && p !== null && typeof p.namespace === 'string' && typeof p.name === 'string' && typeof p.containerId === 'string' && Array.isArray(p.ips),
    );
    const strings = (v: unknown) => (Array.isArray(v) ? v.filter((c): c is string => typeof c === 'string') : []);
    return { pods, attached: strings(doc.attached), cleanup: strings(doc.cleanup) };
  }

  async save(node: string, pods: readonly PodRecord[], attached: readonly string[] = [], cleanup: readonly string[] = []): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify({ version: VERSION, node, pods, attached: [...attached].sort(), ...(cleanup.length > 0 ? { cleanup: [...cleanup].sort() } : {}) }, null, 1)}\n`);
      // Durable before it replaces the old file: a crash leaves one whole version or the other.
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, this.path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}
