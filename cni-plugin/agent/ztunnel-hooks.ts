/**
 * The getsockname hooks on ztunnel's cgroups: every cgroup where a ztunnel runs carries them (so
 * a redirected connection's original destination reads back at accept), and a cgroup that no
 * longer hosts a ztunnel loses them. A fixed ZTUNNEL_CGROUP gives one cgroup; `auto` follows what
 * the finder sees (both ztunnels during a rolling update). These cgroups are never enrolled
 * (reconciler.ts puts them in the enrolment rule's protected cgroups).
 */
import { resolve as resolvePath } from 'node:path';
import { isDirectory } from './cgroup.js';
import type { ReconcilerInputs } from './reconciler.js';
import { ZTUNNEL_PROGRAMS } from './redirector.js';

/** Whether one ztunnel cgroup carries the hooks, or why not (/state). */
export interface ZtunnelCgroupStatus {
  readonly attached: boolean;
  readonly error?: string;
}

export class ZtunnelHooks {
  private current: readonly string[];
  /** Problems of the last look for ztunnel (auto mode): listeners without a visible owner. */
  private lookProblems: readonly string[] = [];
  /** ztunnel cgroup → whether its hooks are attached, or why not. */
  private status = new Map<string, ZtunnelCgroupStatus>();
  /** Cgroups carrying ztunnel hooks of ours as far as the agent knows (persisted with the pod table's `tracked`). */
  readonly tracked = new Set<string>();

  private readonly in: Pick<ReconcilerInputs, 'redirector' | 'cgroupRoot' | 'ztunnelCgroups' | 'logger'>;

  constructor(inputs: Pick<ReconcilerInputs, 'redirector' | 'cgroupRoot' | 'ztunnelCgroups' | 'logger'>) {
    this.in = inputs;
    this.current = [...inputs.ztunnelCgroups];
  }

  /** Where ztunnel runs now. */
  get cgroups(): readonly string[] {
    return this.current;
  }

  get problems(): readonly string[] {
    return this.lookProblems;
  }

  statusOf(cgroup: string): ZtunnelCgroupStatus | undefined {
    return this.status.get(cgroup);
  }

  /** ztunnel now runs in `cgroups` (the finder saw its listeners move); returns where it ran before. */
  moved(cgroups: readonly string[], problems: readonly string[]): readonly string[] {
    const before = this.current;
    this.current = [...new Set(cgroups)].sort();
    this.lookProblems = [...problems];
    this.in.logger.info({ cgroups: this.current, before, problems }, 'ztunnel cgroups changed');
    return before;
  }

  /**
   * Moves the hooks after `moved`, without a full resync: reads what the current, previous and
   * tracked ztunnel cgroups carry, then syncs. Failures are kept for /state and logged; the next
   * resync retries them.
   */
  async follow(before: readonly string[]): Promise<void> {
    const errors: string[] = [];
    let attachments;
    try {
      attachments = await this.in.redirector.attachmentsOf([...new Set([...this.current, ...before, ...this.tracked])]);
    } catch (err) {
      errors.push(`reading the kernel's attachments failed: ${(err as Error).message}`);
    }
    if (attachments) await this.sync(new Map(attachments.map((a) => [a.cgroup, a.programs])), errors);
    if (errors.length > 0) this.in.logger.warn({ errors }, 'following ztunnel failed; retrying at the next resync');
  }

  /**
   * Attaches the ztunnel hooks to every ztunnel cgroup lacking them and detaches them from
   * cgroups that carry them but no longer host a ztunnel. `attachments`: cgroup → our programs
   * there, for at least the current, previous and tracked ztunnel cgroups. Returns the actions taken.
   */
  async sync(attachments: Map<string, readonly string[]>, errors: string[]): Promise<number> {
    let actions = 0;
    const hooks = (c: string) => (attachments.get(c) ?? []).filter((p) => ZTUNNEL_PROGRAMS.includes(p));
    const status = new Map<string, ZtunnelCgroupStatus>();
    const root = resolvePath(this.in.cgroupRoot);
    for (const zt of this.current) {
      if (resolvePath(zt) === root) {
        // Hooks on the root would run for every process of the node, pods included.
        const error = `ztunnel runs in the cgroup v2 root ${zt}; refusing to attach its hooks there (they would apply to every process): run ztunnel in a cgroup of its own`;
        status.set(zt, { attached: false, error });
        errors.push(error);
        continue;
      }
      if (hooks(zt).length === ZTUNNEL_PROGRAMS.length) {
        status.set(zt, { attached: true });
        this.tracked.add(zt);
        continue;
      }
      if (!(await isDirectory(zt))) {
        status.set(zt, { attached: false, error: `cgroup ${zt} does not exist (yet); is ZTUNNEL_CGROUP right and ztunnel started?` });
        continue;
      }
      try {
        await this.in.redirector.attachZtunnel(zt);
        actions++;
        status.set(zt, { attached: true });
        this.tracked.add(zt);
        this.in.logger.info({ cgroup: zt }, 'ztunnel hooks attached');
      } catch (err) {
        status.set(zt, { attached: false, error: (err as Error).message });
        errors.push(`attaching the ztunnel hooks to ${zt}: ${(err as Error).message}`);
      }
    }
    const current = new Set(this.current);
    for (const c of new Set([...attachments.keys(), ...this.tracked])) {
      if (current.has(c)) continue;
      if (hooks(c).length === 0) {
        this.tracked.delete(c);
        continue;
      }
      try {
        // The old ztunnel's accepted connections keep their destination: it was read at accept.
        await this.in.redirector.detachZtunnel(c);
        actions++;
        this.tracked.delete(c);
        this.in.logger.info({ cgroup: c }, 'ztunnel hooks detached from a cgroup that no longer hosts a ztunnel');
      } catch (err) {
        errors.push(`detaching the ztunnel hooks from ${c}: ${(err as Error).message}`);
      }
    }
    this.status = status;
    return actions;
  }
}
