/**
 * What the agent knows of the node's pods, in one place. A pod is known by its key
 * (`namespace/name`) from two sides: the runtime's CNI calls (`records`) and the desired state
 * (`desired`, this node's pods only); `views()` joins them. What the agent decided, failed at and
 * saw for a pod is keyed by pod (`decisions`, `errors`, `resolved`) or by cgroup (`actual`,
 * `tracked`, `cleanup`).
 *
 * Invariants (the reconciler's jobs keep them through the methods below):
 * - `records`, `tracked` (with ztunnel's, ztunnel-hooks.ts) and `cleanup` are what the state file
 *   holds: a job that changes them saves them (reconciler.ts `persist`) before it finishes.
 * - `decisions`, `errors` and `resolved` may keep keys of pods that are gone until the next
 *   resync prunes them to `views()`; /state reads them only through `views()`. A DEL drops the
 *   pod's record, error and decision at once.
 * - `resolved` is read only when the pod's record gives no cgroup: it holds the cgroup found
 *   through the desired state's `cgroup` or the resolver, and loses it when that look fails.
 * - `actual` is what the kernel carried at the last look (a resync, a CHECK) or after our own
 *   attach/detach; a cgroup missing from it carries nothing of ours as far as the agent knows.
 * - `tracked` holds the cgroups other than ztunnel's that carried pod programs of ours at the last
 *   look or since our own attach (each resync sets it from the kernel's answer; until the first,
 *   it is the state file's list, ztunnel's cgroups included): where programs no pod wants are
 *   looked for, without walking every cgroup. A detach removes the cgroup from `actual` and
 *   `tracked` and the pod's `enrolledAt` together (`detach`).
 * - `cleanup` holds cgroup2 directories the agent made for pods that are gone; one that holds (or
 *   is) a recorded pod's cgroup is never removed, and a new sandbox inside one takes it back.
 */
import type { Logger } from '../../core/telemetry/log.js';
import { isAncestorOrSelf, removeMadeCgroups } from './cgroup.js';
import type { Decision, PodFacts } from './decide.js';
import { EMPTY_DESIRED_STATE, type DesiredPod, type DesiredState } from './desired-state.js';
import { classify, type BpfStatus, type CgroupAttachment, type Redirector } from './redirector.js';
import type { PodRecord, StoredState } from './store.js';

export const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

/** A pod as the reconciler sees it: the runtime's record and/or the desired state's entry. */
export interface PodView {
  readonly key: string;
  readonly record?: PodRecord;
  readonly desired?: DesiredPod;
}

/** The enrolment rule's facts about a pod (decide.ts), with the cgroup found for it. */
export function factsOf(view: PodView, cgroup: string | undefined): PodFacts {
  const [namespace, name] = view.key.split('/') as [string, string];
  return { namespace, name, labels: view.desired?.labels ?? {}, ...(cgroup ? { cgroup } : {}), ...(view.desired?.ambient !== undefined ? { ambient: view.desired.ambient } : {}) };
}

export class PodTable {
  /** key → what the runtime said at CNI ADD (persisted). */
  readonly records = new Map<string, PodRecord>();
  desired: DesiredState = EMPTY_DESIRED_STATE;
  /** key → the enrolment rule's last verdict. */
  readonly decisions = new Map<string, Decision>();
  /** key → why the pod is not as decided (no cgroup, a failed attach). */
  readonly errors = new Map<string, string>();
  /** key → cgroup, for pods whose record gives none (known only from the desired state). */
  readonly resolved = new Map<string, string>();
  /** cgroup → what the kernel carries, as far as the agent knows. */
  readonly actual = new Map<string, CgroupAttachment>();
  /** Cgroups carrying pod programs of ours, as far as the agent knows (persisted). */
  readonly tracked = new Set<string>();
  /** cgroup2 directories the agent made for pods that are gone, to rmdir once they are empty. */
  readonly cleanup = new Set<string>();

  constructor(
    /** This node: desired pods scheduled elsewhere are not the agent's. */
    private readonly nodeName: string,
    private readonly redirector: Redirector,
    private readonly log: Logger,
  ) {}

  /** Takes what a previous run saved; call before anything else. */
  restore(stored: StoredState): void {
    for (const r of stored.pods) this.records.set(keyOf(r.namespace, r.name), r);
    this.tracked.clear();
    for (const c of stored.attached) this.tracked.add(c);
    this.cleanup.clear();
    for (const c of stored.cleanup) this.cleanup.add(c);
  }

  localDesiredPods(): DesiredPod[] {
    return this.desired.pods.filter((p) => p.node === undefined || p.node === this.nodeName);
  }

  desiredEntry(key: string): { desired?: DesiredPod } {
    const d = this.localDesiredPods().find((p) => keyOf(p.namespace, p.name) === key);
    return d ? { desired: d } : {};
  }

  /** Every pod the agent knows of: recorded, listed for this node, or both. */
  views(): PodView[] {
    const out = new Map<string, PodView>();
    for (const [key, record] of this.records) out.set(key, { key, record });
    for (const d of this.localDesiredPods()) {
      const key = keyOf(d.namespace, d.name);
      const prev = out.get(key);
      // A record for a different pod of the same name (another uid) belongs to an old pod.
      if (prev?.record?.uid && d.uid && prev.record.uid !== d.uid) {
        out.set(key, { key, desired: d });
        continue;
      }
      out.set(key, { ...prev, key, desired: d });
    }
    return [...out.values()];
  }

  /** Drops what is kept per pod for pods that are no longer known. */
  prune(keys: ReadonlySet<string>): void {
    for (const m of [this.decisions, this.errors, this.resolved]) for (const k of m.keys()) if (!keys.has(k)) m.delete(k);
  }

  /** Forgets a pod whose cgroup is gone (a DEL the agent missed); the directories it made for it may be empty now. */
  forgetGone(key: string, record: PodRecord): void {
    this.records.delete(key);
    this.errors.delete(key);
    for (const c of record.madeCgroups ?? []) this.cleanup.add(c);
  }

  /**
   * Takes the kernel's answer for the cgroups the agent asked about: `actual` becomes it, and
   * `tracked` the cgroups other than ztunnel's carrying any pod program of ours.
   */
  observe(attachments: BpfStatus['attachments'], ztunnelCgroups: readonly string[]): void {
    this.actual.clear();
    for (const a of attachments) this.actual.set(a.cgroup, classify(a.programs));
    const zts = new Set(ztunnelCgroups);
    this.tracked.clear();
    for (const [c, a] of this.actual) if (!zts.has(c) && (a.redirect || a.partial || a.strict)) this.tracked.add(c);
  }

  /** Asks the kernel what one cgroup carries, and keeps the answer in `actual`. */
  async kernelView(cgroup: string): Promise<CgroupAttachment | undefined> {
    const entry = (await this.redirector.attachmentsOf([cgroup])).find((a) => a.cgroup === cgroup);
    const a = entry ? classify(entry.programs) : undefined;
    if (a) this.actual.set(cgroup, a);
    else this.actual.delete(cgroup);
    return a;
  }

  attachedSomething(cgroup: string): boolean {
    const a = this.actual.get(cgroup);
    return a !== undefined && (a.redirect || a.partial || a.strict);
  }

  /** The redirect programs went on `cgroup` (an attach, or the STRICT filter switched). */
  noteAttached(cgroup: string, attachment: CgroupAttachment): void {
    this.actual.set(cgroup, attachment);
    this.tracked.add(cgroup);
  }

  /** Detaches our pod programs from `cgroup` (`key`: the pod it was enrolled for, if any). */
  async detach(cgroup: string, key: string | undefined): Promise<void> {
    await this.redirector.detachPod(cgroup);
    this.actual.delete(cgroup);
    this.tracked.delete(cgroup);
    if (key) {
      const r = this.records.get(key);
      if (r?.enrolledAt) {
        const { enrolledAt: _, ...rest } = r;
        this.records.set(key, rest);
      }
    }
    this.log.info({ pod: key, cgroup }, key ? 'pod un-enrolled' : 'detached programs from a cgroup no pod wants');
  }

  /**
   * Directories in `cleanup` that hold `cgroup`: made for an earlier sandbox and not removed yet,
   * they hold this one now, so they leave `cleanup` and become the new sandbox's.
   */
  reclaimMade(cgroup: string | undefined): string[] {
    const taken: string[] = [];
    for (const c of [...this.cleanup]) {
      if (cgroup === undefined || !isAncestorOrSelf(c, cgroup)) continue;
      this.cleanup.delete(c);
      taken.push(c);
    }
    return taken;
  }

  /** Removes the directories the agent made for a pod that is gone (when empty); the rest wait in `cleanup`. */
  async removeMade(record: PodRecord, key: string): Promise<void> {
    if (!record.madeCgroups?.length) return;
    const left = await removeMadeCgroups(record.madeCgroups);
    for (const c of left) this.cleanup.add(c);
    this.log.info({ pod: key, removed: record.madeCgroups.filter((c) => !left.includes(c)), kept: left }, 'removed the cgroup2 directories the agent made for the pod (kept: not empty yet)');
  }

  /**
   * rmdir of the directories in `cleanup`, innermost first; never one that holds (or is) a
   * recorded pod's cgroup. Returns whether the set changed.
   */
  async retryCleanup(): Promise<boolean> {
    const live = [...this.records.values()].flatMap((r) => (r.cgroup ? [r.cgroup] : []));
    let changed = false;
    for (const c of [...this.cleanup].sort((a, b) => b.length - a.length)) {
      if (live.some((l) => isAncestorOrSelf(c, l))) continue;
      if ((await removeMadeCgroups([c])).length === 0) {
        this.cleanup.delete(c);
        changed = true;
        this.log.info({ cgroup: c }, 'removed a cgroup2 directory the agent had made');
      }
    }
    return changed;
  }
}
