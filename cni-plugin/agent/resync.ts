/**
 * The full reconcile (docs/cni.md, "Reconciling"): compares what should be (the desired state,
 * the pods the runtime reported) with what the kernel carries, and repairs the difference. Run by
 * the Reconciler at start, on each desired-state change and periodically; one pass at a time, in
 * its queue.
 */
import { checkCgroupPath, isDirectory } from './cgroup.js';
import { decide } from './decide.js';
import { factsOf, type PodView } from './pod-table.js';
import type { ReconcilerParts } from './reconciler.js';
import type { AgentState } from '../api.js';

export class Resync {
  /** The first pass that could read the kernel has run: with the programs loaded, the agent is ready. */
  synced = false;
  /** The last pass, for /state. */
  last: AgentState['lastResync'];

  constructor(private readonly parts: ReconcilerParts) {}

  async run(): Promise<void> {
    const { in: inputs, pods, ztunnel, log } = this.parts;
    const started = Date.now();
    const errors: string[] = [];
    let actions = 0;

    // Pods whose sandbox went away while the agent was not listening (a missed DEL).
    let recordsChanged = false;
    for (const [key, r] of pods.records) {
      if (r.cgroup && !(await isDirectory(r.cgroup))) {
        pods.forgetGone(key, r);
        recordsChanged = true;
        log.info({ pod: key, cgroup: r.cgroup }, 'forgot a pod whose cgroup is gone');
      }
    }

    if (pods.cleanup.size > 0 && (await pods.retryCleanup())) recordsChanged = true;

    const ctx = this.parts.context();
    const views = pods.views();
    pods.prune(new Set(views.map((v) => v.key)));
    const cgroups = new Map<string, string | undefined>();
    for (const view of views) cgroups.set(view.key, await this.cgroupOf(view));

    // The kernel is asked about the cgroups that matter only: ztunnel's, the pods', and those the
    // agent attached to before (which may now hold programs no pod wants). Never the whole tree.
    const candidates = new Set<string>([...ztunnel.cgroups, ...pods.tracked, ...ztunnel.tracked]);
    for (const c of cgroups.values()) if (c) candidates.add(c);
    let attachments;
    try {
      attachments = await inputs.redirector.attachmentsOf([...candidates]);
    } catch (err) {
      errors.push(`reading the kernel's attachments failed: ${(err as Error).message}`);
      this.finish(started, actions, errors);
      return;
    }
    const trackedBefore = this.trackedKey();
    pods.observe(attachments, ztunnel.cgroups);

    // ztunnel first: without its hooks, redirected connections cannot find their destination.
    actions += await ztunnel.sync(new Map(attachments.map((a) => [a.cgroup, a.programs])), errors);

    const wanted = new Set<string>();
    for (const view of views) {
      const cgroup = cgroups.get(view.key);
      const d = decide(factsOf(view, cgroup), ctx);
      pods.decisions.set(view.key, d);
      if (d.mode !== 'enrolled') {
        // Not finding the cgroup of a pod that needs nothing is no error.
        pods.errors.delete(view.key);
        if (!cgroup || !pods.attachedSomething(cgroup)) continue;
        try {
          await pods.detach(cgroup, view.key);
          actions++;
        } catch (err) {
          errors.push(`${view.key}: ${(err as Error).message}`);
        }
        continue;
      }
      if (!cgroup) continue; // the reason is in pods.errors
      wanted.add(cgroup);
      const a = pods.actual.get(cgroup);
      if (a?.redirect && !a.partial && a.strict === d.strict) continue;
      try {
        if (a?.redirect) {
          await inputs.redirector.setStrict(cgroup, d.strict);
        } else {
          await inputs.redirector.attachPod(cgroup, { strict: d.strict });
          if (view.record) {
            pods.records.set(view.key, { ...view.record, enrolledAt: this.parts.now().toISOString() });
            recordsChanged = true;
          }
        }
        actions++;
        pods.noteAttached(cgroup, { redirect: true, partial: false, strict: d.strict, ztunnel: a?.ztunnel ?? false });
        pods.errors.delete(view.key);
        log.info({ pod: view.key, cgroup, strict: d.strict, reason: d.reason }, a?.redirect ? 'pod strict filter set' : 'pod enrolled');
      } catch (err) {
        pods.errors.set(view.key, (err as Error).message);
        errors.push(`${view.key}: ${(err as Error).message}`);
      }
    }

    // Our programs on cgroups no pod wants (a pod deleted while the agent was away, a state
    // file from another life): redirecting them would be wrong.
    for (const [cgroup, a] of [...pods.actual]) {
      if (wanted.has(cgroup) || !(a.redirect || a.partial || a.strict)) continue;
      try {
        await pods.detach(cgroup, undefined);
        actions++;
      } catch (err) {
        errors.push(`detaching orphan ${cgroup}: ${(err as Error).message}`);
      }
    }
    if (recordsChanged || this.trackedKey() !== trackedBefore) await this.parts.save().catch((err: Error) => errors.push(`saving the state file: ${err.message}`));
    this.synced = true;
    this.finish(started, actions, errors);
  }

  /** The pod's cgroup: what the runtime said, else the desired state's, else the resolver's. */
  private async cgroupOf(view: PodView): Promise<string | undefined> {
    const { in: inputs, pods } = this.parts;
    if (view.record?.cgroup) return view.record.cgroup;
    const [namespace, name] = view.key.split('/') as [string, string];
    try {
      const uid = view.desired?.uid ?? view.record?.uid;
      const path = view.desired?.cgroup
        ? await checkCgroupPath(inputs.cgroupRoot, view.desired.cgroup)
        : await inputs.resolver.resolve({ namespace, name, ...(uid ? { uid } : {}), ...(view.record ? { containerId: view.record.containerId } : {}) });
      pods.resolved.set(view.key, path);
      pods.errors.delete(view.key);
      return path;
    } catch (err) {
      pods.resolved.delete(view.key);
      pods.errors.set(view.key, (err as Error).message);
      return undefined;
    }
  }

  /** The persisted cgroups (pods' and ztunnel's), to tell whether a pass changed them. */
  private trackedKey(): string {
    return [...this.parts.pods.tracked, ...[...this.parts.ztunnel.tracked].map((c) => `zt:${c}`)].sort().join('\n');
  }

  private finish(started: number, actions: number, errors: string[]): void {
    const { log, now } = this.parts;
    this.last = { at: now().toISOString(), durationMs: Date.now() - started, actions, errors };
    if (errors.length > 0) log.warn({ errors }, 'resync finished with errors; retrying at the next one');
    else if (actions > 0) log.info({ actions, durationMs: this.last.durationMs }, 'resync applied changes');
  }
}
