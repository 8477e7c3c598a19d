/**
 * The agent's record of the pods it learnt of through CNI, in a JSON file written atomically
 * (temp file + rename), so a restarted agent knows the pods' cgroups, sandboxes and addresses.
 * What is attached where is not trusted from here: the kernel is asked (Redirector.status()).
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
}

const VERSION = 1;

/** The state file exists but cannot be used: the agent refuses to guess (it might detach live pods). */
export class StateFileError extends MeshError {
  constructor(path: string, why: string) {
    super('ERR_AGENT_STATE_FILE', `agent state file ${path} ${why}; inspect it, and move it away to start afresh (the agent then re-learns pods from the desired state and new CNI calls)`);
  }
}

export class StateStore {
  constructor(readonly path: string) {}

  /** The records, or none when the file does not exist yet (first start on this node). */
  async load(): Promise<PodRecord[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new StateFileError(this.path, `cannot be read (${(err as NodeJS.ErrnoException).code})`);
    }
    let doc: { version?: unknown; pods?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw new StateFileError(this.path, 'is not JSON');
    }
    if (doc?.version !== VERSION || !Array.isArray(doc.pods)) throw new StateFileError(this.path, `is not a version ${VERSION} state file`);
    return doc.pods.filter(
      (p): p is PodRecord =>
        typeof p === 'object' && p !== null && typeof p.namespace === 'string' && typeof p.name === 'string' && typeof p.containerId === 'string' && Array.isArray(p.ips),
    );
  }

  async save(node: string, pods: readonly PodRecord[]): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify({ version: VERSION, node, pods }, null, 1)}\n`);
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
