/**
 * The only updater of the node's enrolment: CNI calls, desired-state changes and the periodic
 * resync all run one at a time through one queue, and each compares what should be (the desired
 * state, the pods the runtime reported) with what the kernel says is attached.
 *
 * Enrolment only changes which new connections are redirected: attaching or detaching never
 * touches sockets that are already connected, so labelling or unlabelling a namespace does not
 * break open connections.
 */
import { MeshError } from '../../core/errors.js';
import type { Logger } from '../../core/telemetry/log.js';
import { AGENT_ERROR_CODES, type AddResponse, type AgentState, type CheckResponse, type DelResponse, type PodMode, type PodRequest, type PodStatus } from '../api.js';
import { checkCgroupPath, isAncestorOrSelf, isDirectory, makePodCgroup, PodCgroupError, PodCgroupOnlyInV1Error, removeMadeCgroups, type CgroupResolver } from './cgroup.js';
import { decide, type DecideContext, type Decision } from './decide.js';
import { EMPTY_DESIRED_STATE, type DesiredPod, type DesiredState } from './desired-state.js';
import { resolve as resolvePath } from 'node:path';
import { classify, ZTUNNEL_PROGRAMS, type CgroupAttachment, type Redirector, type RedirectConfig } from './redirector.js';
import type { PodRecord, StateStore } from './store.js';

/** A failure answered to the plugin; `agentCode` and `status` go on the wire (api.ts). */
export class AgentApiError extends MeshError {
  readonly agentCode: string;
  readonly status: number;
  constructor(agentCode: string, status: number, message: string, options?: { cause?: unknown }) {
    super(agentCode, message, options);
    this.agentCode = agentCode;
    this.status = status;
  }
}

const notReady = (why: string) => new AgentApiError(AGENT_ERROR_CODES.notReady, 503, `the node agent is not ready: ${why}; retry shortly`);

export interface ReconcilerInputs {
  readonly nodeName: string;
  readonly redirector: Redirector;
  readonly store: StateStore;
  readonly resolver: CgroupResolver;
  readonly cgroupRoot: string;
  /**
   * Where ztunnel runs, at start: every cgroup here gets the getsockname hooks and is never
   * enrolled; a cgroup carrying the hooks that is not here loses them. A fixed path gives one;
   * `ZTUNNEL_CGROUP=auto` gives what the finder saw, and `setZtunnelCgroups` follows it (both
   * ztunnels during a rolling update).
   */
  readonly ztunnelCgroups: readonly string[];
  /** How ztunnel's cgroups are found, for /state: the configured path, or `auto`. */
  readonly ztunnelSource: string;
  /** Other cgroups holding the mesh's own processes (the agent's). */
  readonly protectedCgroups: readonly string[];
  readonly exemptNamespaces: readonly string[];
  readonly rootNamespace: string;
  readonly redirectConfig: RedirectConfig;
  readonly pinDir: string;
  readonly desiredSource: string;
  /**
   * How long an ADD for a pod the desired state does not list waits for it (ADD_WAIT_SECONDS).
   * Absent or 0: the ADD decides at once from what is known.
   */
  readonly addWaitMs?: number;
  /** For /state: kubelet's cgroup root and the cgroup v1 hierarchies the resolver looks at. */
  readonly cgroupLayout?: { readonly kubeletRoot?: { readonly path: string; readonly source: string }; readonly v1Roots: readonly string[] };
  readonly logger: Logger;
  readonly now?: () => Date;
}

/** An ADD waiting for the desired state to list its pod. */
interface AddWaiter {
  readonly key: string;
  readonly containerId: string;
  readonly listed: (state: DesiredState) => boolean;
  readonly finish: (outcome: 'listed' | 'timed-out' | 'deleted' | 'stopping') => void;
}

/** A pod as the reconciler sees it: the runtime's record and/or the desired state's entry. */
interface PodView {
  readonly key: string;
  readonly record?: PodRecord;
  readonly desired?: DesiredPod;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

export class Reconciler {
  private readonly in: ReconcilerInputs;
  private readonly log: Logger;
  private readonly now: () => Date;
  private records = new Map<string, PodRecord>();
  private desired: DesiredState = EMPTY_DESIRED_STATE;
  private desiredLoadedAt: string | undefined;
  private desiredError: string | undefined;
  /** cgroup → what the kernel carried at the last look (status() or our own attach/detach). */
  private actual = new Map<string, CgroupAttachment>();
  /** Cgroups carrying programs of ours, as far as the agent knows (persisted): where orphans are looked for. */
  private tracked = new Set<string>();
  /** key → cgroup, for pods known only from the desired state. */
  private resolved = new Map<string, string>();
  private errors = new Map<string, string>();
  private decisions = new Map<string, Decision>();
  private ztunnelCgroups: readonly string[];
  /** Problems of the last look for ztunnel (auto mode): listeners without a visible owner. */
  private ztunnelProblems: readonly string[] = [];
  /** ztunnel cgroup → whether its hooks are attached, or why not. */
  private ztunnel = new Map<string, { attached: boolean; error?: string }>();
  /** Cgroups carrying ztunnel hooks of ours as far as the agent knows (persisted with `tracked`). */
  private ztTracked = new Set<string>();
  private loaded = false;
  private synced = false;
  private lastResync: AgentState['lastResync'];
  private queue: Promise<unknown> = Promise.resolve();
  private resyncQueued = false;
  private readonly startedAt: string;
  /** ADDs waiting for the desired state to list their pod; woken by setDesired. */
  private waiters = new Set<AddWaiter>();
  /** cgroup2 directories the agent made for pods that are gone, to rmdir once they are empty. */
  private cleanup = new Set<string>();
  private closed = false;

  constructor(inputs: ReconcilerInputs) {
    this.in = inputs;
    this.log = inputs.logger;
    this.now = inputs.now ?? (() => new Date());
    this.ztunnelCgroups = [...inputs.ztunnelCgroups];
    this.startedAt = this.now().toISOString();
  }

  get ready(): boolean {
    return this.loaded && this.synced;
  }

  /** Reads the records of a previous run. Call once, before anything else. */
  async restore(): Promise<void> {
    const stored = await this.in.store.load();
    for (const r of stored.pods) this.records.set(keyOf(r.namespace, r.name), r);
    this.tracked = new Set(stored.attached);
    this.cleanup = new Set(stored.cleanup);
    if (this.records.size > 0) this.log.info({ pods: this.records.size }, 'restored pod records of the previous run');
  }

  /** Loads the programs and writes the node's config into their maps (idempotent: enrolled pods stay enrolled). */
  load(): Promise<void> {
    return this.enqueue(async () => {
      await this.in.redirector.load(this.in.redirectConfig);
      this.loaded = true;
    });
  }

  setDesired(state: DesiredState): void {
    this.desired = state;
    this.desiredLoadedAt = this.now().toISOString();
    this.desiredError = undefined;
    for (const w of this.waiters) if (w.listed(state)) w.finish('listed');
    void this.requestResync().catch(() => {});
  }

  setDesiredError(err: Error | undefined): void {
    this.desiredError = err?.message;
  }

  /**
   * ztunnel now runs in these cgroups (ZTUNNEL_CGROUP=auto saw its listeners move): attaches the
   * hooks to the new ones and detaches them from cgroups that no longer host a ztunnel, without a
   * full resync. Resolves when done; failures are kept in /state and retried at the next resync.
   */
  setZtunnelCgroups(cgroups: readonly string[], problems: readonly string[] = []): Promise<void> {
    return this.enqueue(async () => {
      const before = this.ztunnelCgroups;
      this.ztunnelCgroups = [...new Set(cgroups)].sort();
      this.ztunnelProblems = [...problems];
      this.log.info({ cgroups: this.ztunnelCgroups, before, problems }, 'ztunnel cgroups changed');
      if (!this.loaded) return;
      const errors: string[] = [];
      let attachments;
      try {
        attachments = await this.in.redirector.attachmentsOf([...new Set([...this.ztunnelCgroups, ...before, ...this.ztTracked])]);
      } catch (err) {
        errors.push(`reading the kernel's attachments failed: ${(err as Error).message}`);
      }
      if (attachments) await this.syncZtunnel(new Map(attachments.map((a) => [a.cgroup, a.programs])), errors);
      if (errors.length > 0) this.log.warn({ errors }, 'following ztunnel failed; retrying at the next resync');
      await this.persist().catch((err: Error) => this.log.error({ err }, 'saving the state file failed'));
    });
  }

  /**
   * Queues one full resync unless one is already waiting (a burst of changes costs one pass).
   * Resolves when that pass has run.
   */
  requestResync(): Promise<void> {
    if (this.resyncQueued) return this.queue.then(() => undefined);
    this.resyncQueued = true;
    return this.enqueue(async () => {
      this.resyncQueued = false;
      await this.resync();
    });
  }

  // --- CNI --------------------------------------------------------------------------------------

  /**
   * Enrols (or not) a pod the runtime just wired. When the desired state does not list the pod
   * yet (it reached ADD before the source published it, or its namespace's new label), the ADD
   * first waits, outside the queue so other calls go on, until an update lists it or `addWaitMs`
   * passes; then it decides, saying in the reason when it decided without the pod listed.
   */
  async add(req: PodRequest): Promise<AddResponse> {
    if (!this.ready) throw notReady(this.loaded ? 'the first reconcile has not finished' : 'the eBPF programs are not loaded yet');
    const wait = await this.waitUntilListed(req);
    return this.enqueue(async () => {
      if (!this.ready) throw notReady(this.loaded ? 'the first reconcile has not finished' : 'the eBPF programs are not loaded yet');
      const namespace = req.podNamespace!;
      const name = req.podName!;
      const key = keyOf(namespace, name);
      const previous = this.records.get(key);
      let cgroup: string | undefined;
      let cgroupError: PodCgroupError | undefined;
      try {
        cgroup = req.cgroup
          ? await checkCgroupPath(this.in.cgroupRoot, req.cgroup)
          : await this.in.resolver.resolve({ namespace, name, containerId: req.containerId, ...(req.podUid ? { uid: req.podUid } : {}) });
      } catch (err) {
        if (!(err instanceof PodCgroupError)) throw err;
        cgroupError = err;
      }
      // Directories this agent made for an earlier sandbox of the same pod stay this pod's.
      const samePod = previous !== undefined && previous.uid === req.podUid;
      let madeCgroups = samePod && previous.cgroup === cgroup ? [...(previous.madeCgroups ?? [])] : [];
      for (const c of [...this.cleanup]) {
        if (cgroup === undefined || !isAncestorOrSelf(c, cgroup)) continue;
        // Made for an earlier sandbox and not removed yet: it holds this one now.
        this.cleanup.delete(c);
        madeCgroups.push(c);
      }
      madeCgroups = [...new Set(madeCgroups)].sort((a, b) => a.length - b.length);
      let record: PodRecord = {
        namespace,
        name,
        ...(req.podUid ? { uid: req.podUid } : {}),
        containerId: req.containerId,
        ...(req.netns ? { netns: req.netns } : {}),
        ips: [...(req.ips ?? [])],
        ...(cgroup ? { cgroup } : {}),
        ...(madeCgroups.length > 0 ? { madeCgroups } : {}),
        ...(wait ? { addWait: wait } : {}),
      };
      this.records.set(key, record);
      this.errors.delete(key);
      const view: PodView = { key, record, ...this.desiredEntry(key) };
      let d = decide(this.facts(view, cgroup), this.context());
      if (wait?.outcome === 'timed-out') {
        d = { ...d, reason: `${d.reason}; decided without the desired state listing the pod: it did not within ${this.in.addWaitMs! / 1000}s of CNI ADD (ADD_WAIT_SECONDS)` };
      }
      this.decisions.set(key, d);
      let made: string[] = [];
      if (d.mode === 'enrolled' && !cgroup && cgroupError instanceof PodCgroupOnlyInV1Error) {
        // Hybrid host: the pod's cgroup exists in v1 (kubelet made it, so it is this pod's) but
        // runc makes the cgroup2 one only when a container starts, after this ADD: without it the
        // sandbox would fail forever. runc joins an existing directory, so the agent makes the
        // pod-level directory (never deeper) and remembers it made it.
        try {
          made = await makePodCgroup(this.in.cgroupRoot, cgroupError.v2Path);
          cgroup = cgroupError.v2Path;
          record = { ...record, cgroup, madeCgroups: [...(record.madeCgroups ?? []), ...made] };
          if (record.madeCgroups!.length === 0) {
            const { madeCgroups: _, ...rest } = record;
            record = rest;
          }
          this.records.set(key, record);
          this.log.info({ pod: key, cgroup, made, v1: cgroupError.v1Path }, "made the pod's cgroup2 directory (hybrid host)");
        } catch (err) {
          cgroupError = new PodCgroupError(`${cgroupError.message}; making it failed: ${(err as Error).message}`);
        }
      }
      if (d.mode === 'enrolled') {
        if (!cgroup) {
          this.errors.set(key, cgroupError!.message);
          await this.persist().catch(() => {});
          throw new AgentApiError(AGENT_ERROR_CODES.cgroupNotFound, 422, `pod ${key} must be enrolled (${d.reason}) but ${cgroupError!.message}`);
        }
        try {
          await this.in.redirector.attachPod(cgroup, { strict: d.strict });
        } catch (err) {
          // Leave nothing half-attached behind a failed ADD; the runtime retries the sandbox.
          await this.in.redirector.detachPod(cgroup).catch(() => {});
          this.actual.delete(cgroup);
          if (made.length > 0) {
            const left = await removeMadeCgroups(made);
            for (const c of left) this.cleanup.add(c);
            const kept = (record.madeCgroups ?? []).filter((c) => !made.includes(c));
            const { madeCgroups: _, ...rest } = record;
            this.records.set(key, kept.length > 0 ? { ...rest, madeCgroups: kept } : rest);
          }
          this.errors.set(key, (err as Error).message);
          await this.persist().catch(() => {});
          throw new AgentApiError(AGENT_ERROR_CODES.enrolmentFailed, 500, `enrolling pod ${key} failed: ${(err as Error).message}`, { cause: err });
        }
        this.records.set(key, { ...record, enrolledAt: this.now().toISOString() });
        this.actual.set(cgroup, { redirect: true, partial: false, strict: d.strict, ztunnel: false });
        this.tracked.add(cgroup);
        this.log.info({ pod: key, cgroup, strict: d.strict, containerId: req.containerId }, 'pod enrolled');
      } else {
        // A sandbox re-created after its namespace lost the label must not keep old programs.
        const stale = cgroup !== undefined && (this.attachedSomething(cgroup) || (previous?.cgroup === cgroup && previous.enrolledAt !== undefined));
        if (stale) await this.detach(cgroup!, key);
        this.log.info({ pod: key, mode: d.mode, reason: d.reason }, 'pod not enrolled');
      }
      try {
        await this.persist();
      } catch (err) {
        throw new AgentApiError(AGENT_ERROR_CODES.enrolmentFailed, 500, `recording pod ${key} in ${this.in.store.path} failed: ${(err as Error).message}`, { cause: err });
      }
      return { mode: d.mode, reason: d.reason, pod: this.status(view.key)! };
    });
  }

  del(req: PodRequest): Promise<DelResponse> {
    // An ADD of this sandbox still waiting for the desired state: the runtime gave up on it.
    for (const w of this.waiters) if (w.containerId === req.containerId) w.finish('deleted');
    return this.enqueue(async () => {
      const entry = [...this.records.entries()].find(([, r]) => r.containerId === req.containerId);
      if (!entry) {
        // Either never seen, or a DEL for an older sandbox of a pod whose new sandbox is recorded:
        // that one must keep its programs.
        return { removed: false };
      }
      const [key, record] = entry;
      if (record.cgroup) await this.detach(record.cgroup, key).catch(() => {});
      this.records.delete(key);
      await this.removeMade(record, key);
      this.errors.delete(key);
      this.decisions.delete(key);
      await this.persist().catch((err: Error) => this.log.error({ err }, 'recording a DEL failed'));
      this.log.info({ pod: key, containerId: req.containerId }, 'pod removed');
      return { removed: true };
    });
  }

  check(req: PodRequest): Promise<CheckResponse> {
    return this.enqueue(async () => {
      if (!this.ready) throw notReady('the first reconcile has not finished');
      const key = keyOf(req.podNamespace!, req.podName!);
      const record = this.records.get(key);
      const view: PodView = { key, ...(record ? { record } : {}), ...this.desiredEntry(key) };
      const d = decide(this.facts(view, record?.cgroup), this.context());
      const fail = (why: string) => new AgentApiError(AGENT_ERROR_CODES.notEnrolled, 409, `pod ${key}: ${why}`);
      if (!record || record.containerId !== req.containerId) {
        if (d.mode === 'enrolled') throw fail(`should be enrolled (${d.reason}) but the agent has no record of container ${req.containerId}`);
        return { mode: d.mode, reason: d.reason };
      }
      const attached = record.cgroup ? await this.kernelView(record.cgroup) : undefined;
      if (d.mode === 'enrolled') {
        if (!record.cgroup) throw fail(`should be enrolled (${d.reason}) but its cgroup is unknown: ${this.errors.get(key) ?? 'not resolved'}`);
        if (!attached?.redirect) throw fail(`should be enrolled (${d.reason}) but the redirect programs are not attached to ${record.cgroup}`);
        if (attached.strict !== d.strict) throw fail(`the STRICT ingress filter is ${attached.strict ? 'attached' : 'missing'} on ${record.cgroup}, and should ${d.strict ? 'be attached' : 'not be'}`);
      } else if (attached && (attached.redirect || attached.partial || attached.strict)) {
        throw fail(`is ${d.mode} (${d.reason}) but programs are still attached to ${record.cgroup}`);
      }
      return { mode: d.mode, reason: d.reason };
    });
  }

  // --- resync -----------------------------------------------------------------------------------

  private async resync(): Promise<void> {
    const started = Date.now();
    const errors: string[] = [];
    let actions = 0;

    // Pods whose sandbox went away while the agent was not listening (a missed DEL).
    let recordsChanged = false;
    for (const [key, r] of this.records) {
      if (r.cgroup && !(await isDirectory(r.cgroup))) {
        this.records.delete(key);
        this.errors.delete(key);
        // Its own directory is gone; parents the agent made for it may be empty now.
        for (const c of r.madeCgroups ?? []) this.cleanup.add(c);
        recordsChanged = true;
        this.log.info({ pod: key, cgroup: r.cgroup }, 'forgot a pod whose cgroup is gone');
      }
    }

    if (this.cleanup.size > 0 && (await this.retryCleanup())) recordsChanged = true;

    const ctx = this.context();
    const views = this.views();
    const keys = new Set(views.map((v) => v.key));
    for (const m of [this.decisions, this.errors, this.resolved]) for (const k of m.keys()) if (!keys.has(k)) m.delete(k);
    const cgroups = new Map<string, string | undefined>();
    for (const view of views) cgroups.set(view.key, await this.cgroupOf(view));

    // The kernel is asked about the cgroups that matter only: ztunnel's, the pods', and those the
    // agent attached to before (which may now hold programs no pod wants). Never the whole tree.
    const candidates = new Set<string>([...this.ztunnelCgroups, ...this.tracked, ...this.ztTracked]);
    for (const c of cgroups.values()) if (c) candidates.add(c);
    let attachments;
    try {
      attachments = await this.in.redirector.attachmentsOf([...candidates]);
    } catch (err) {
      errors.push(`reading the kernel's attachments failed: ${(err as Error).message}`);
      this.finishResync(started, actions, errors);
      return;
    }
    this.actual = new Map(attachments.map((a) => [a.cgroup, classify(a.programs)]));
    const trackedBefore = this.trackedKey();
    const zts = new Set(this.ztunnelCgroups);
    this.tracked = new Set([...this.actual].filter(([c, a]) => !zts.has(c) && (a.redirect || a.partial || a.strict)).map(([c]) => c));

    // ztunnel first: without its hooks, redirected connections cannot find their destination.
    actions += await this.syncZtunnel(new Map(attachments.map((a) => [a.cgroup, a.programs])), errors);

    const wanted = new Set<string>();
    for (const view of views) {
      const cgroup = cgroups.get(view.key);
      const d = decide(this.facts(view, cgroup), ctx);
      this.decisions.set(view.key, d);
      if (d.mode !== 'enrolled') {
        // Not finding the cgroup of a pod that needs nothing is no error.
        this.errors.delete(view.key);
        if (!cgroup || !this.attachedSomething(cgroup)) continue;
        try {
          await this.detach(cgroup, view.key);
          actions++;
        } catch (err) {
          errors.push(`${view.key}: ${(err as Error).message}`);
        }
        continue;
      }
      if (!cgroup) continue; // the reason is in this.errors
      wanted.add(cgroup);
      const a = this.actual.get(cgroup);
      if (a?.redirect && !a.partial && a.strict === d.strict) continue;
      try {
        if (a?.redirect) {
          await this.in.redirector.setStrict(cgroup, d.strict);
        } else {
          await this.in.redirector.attachPod(cgroup, { strict: d.strict });
          if (view.record) {
            this.records.set(view.key, { ...view.record, enrolledAt: this.now().toISOString() });
            recordsChanged = true;
          }
        }
        actions++;
        this.actual.set(cgroup, { redirect: true, partial: false, strict: d.strict, ztunnel: a?.ztunnel ?? false });
        this.tracked.add(cgroup);
        this.errors.delete(view.key);
        this.log.info({ pod: view.key, cgroup, strict: d.strict, reason: d.reason }, a?.redirect ? 'pod strict filter set' : 'pod enrolled');
      } catch (err) {
        this.errors.set(view.key, (err as Error).message);
        errors.push(`${view.key}: ${(err as Error).message}`);
      }
    }

    // Our programs on cgroups no pod wants (a pod deleted while the agent was away, a state
    // file from another life): redirecting them would be wrong.
    for (const [cgroup, a] of [...this.actual]) {
      if (wanted.has(cgroup) || !(a.redirect || a.partial || a.strict)) continue;
      try {
        await this.detach(cgroup, undefined);
        actions++;
      } catch (err) {
        errors.push(`detaching orphan ${cgroup}: ${(err as Error).message}`);
      }
    }
    if (recordsChanged || this.trackedKey() !== trackedBefore) await this.persist().catch((err: Error) => errors.push(`saving the state file: ${err.message}`));
    this.synced = true;
    this.finishResync(started, actions, errors);
  }

  /**
   * Attaches the ztunnel hooks to every ztunnel cgroup lacking them and detaches them from
   * cgroups that carry them but no longer host a ztunnel. `attachments`: cgroup → our programs
   * there, for at least the current, previous and tracked ztunnel cgroups. Returns the actions taken.
   */
  private async syncZtunnel(attachments: Map<string, readonly string[]>, errors: string[]): Promise<number> {
    let actions = 0;
    const hooks = (c: string) => (attachments.get(c) ?? []).filter((p) => ZTUNNEL_PROGRAMS.includes(p));
    const status = new Map<string, { attached: boolean; error?: string }>();
    const root = resolvePath(this.in.cgroupRoot);
    for (const zt of this.ztunnelCgroups) {
      if (resolvePath(zt) === root) {
        // Hooks on the root would run for every process of the node, pods included.
        const error = `ztunnel runs in the cgroup v2 root ${zt}; refusing to attach its hooks there (they would apply to every process): run ztunnel in a cgroup of its own`;
        status.set(zt, { attached: false, error });
        errors.push(error);
        continue;
      }
      if (hooks(zt).length === ZTUNNEL_PROGRAMS.length) {
        status.set(zt, { attached: true });
        this.ztTracked.add(zt);
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
        this.ztTracked.add(zt);
        this.log.info({ cgroup: zt }, 'ztunnel hooks attached');
      } catch (err) {
        status.set(zt, { attached: false, error: (err as Error).message });
        errors.push(`attaching the ztunnel hooks to ${zt}: ${(err as Error).message}`);
      }
    }
    const current = new Set(this.ztunnelCgroups);
    for (const c of new Set([...attachments.keys(), ...this.ztTracked])) {
      if (current.has(c)) continue;
      if (hooks(c).length === 0) {
        this.ztTracked.delete(c);
        continue;
      }
      try {
        // The old ztunnel's accepted connections keep their destination: it was read at accept.
        await this.in.redirector.detachZtunnel(c);
        actions++;
        this.ztTracked.delete(c);
        this.log.info({ cgroup: c }, 'ztunnel hooks detached from a cgroup that no longer hosts a ztunnel');
      } catch (err) {
        errors.push(`detaching the ztunnel hooks from ${c}: ${(err as Error).message}`);
      }
    }
    this.ztunnel = status;
    return actions;
  }

  private trackedKey(): string {
    return [...this.tracked, ...[...this.ztTracked].map((c) => `zt:${c}`)].sort().join('\n');
  }

  private finishResync(started: number, actions: number, errors: string[]): void {
    this.lastResync = { at: this.now().toISOString(), durationMs: Date.now() - started, actions, errors };
    if (errors.length > 0) this.log.warn({ errors }, 'resync finished with errors; retrying at the next one');
    else if (actions > 0) this.log.info({ actions, durationMs: this.lastResync.durationMs }, 'resync applied changes');
  }

  // --- helpers ----------------------------------------------------------------------------------

  /** Whether the desired state lists the pod of `req` (by namespace/name, and uid when both have one). */
  private lists(state: DesiredState, req: PodRequest): boolean {
    return state.pods.some(
      (p) => (p.node === undefined || p.node === this.in.nodeName) && p.namespace === req.podNamespace && p.name === req.podName && (!p.uid || !req.podUid || p.uid === req.podUid),
    );
  }

  /**
   * Waits, up to `addWaitMs`, for a desired state listing the pod of `req`; woken by each
   * setDesired, never by polling. Undefined when there was nothing to wait for (listed already,
   * an exempt namespace, or waiting off). Throws when the sandbox was deleted or the agent stops.
   */
  private async waitUntilListed(req: PodRequest): Promise<PodRecord['addWait']> {
    const bound = this.in.addWaitMs ?? 0;
    const key = keyOf(req.podNamespace!, req.podName!);
    if (bound <= 0 || this.in.exemptNamespaces.includes(req.podNamespace!) || this.lists(this.desired, req)) return undefined;
    const started = Date.now();
    this.log.info({ pod: key, containerId: req.containerId, boundMs: bound }, 'the desired state does not list the pod yet; the ADD waits for it');
    const outcome = await new Promise<'listed' | 'timed-out' | 'deleted' | 'stopping'>((resolve) => {
      const timer = setTimeout(() => waiter.finish('timed-out'), bound);
      const waiter: AddWaiter = {
        key,
        containerId: req.containerId,
        listed: (state) => this.lists(state, req),
        finish: (o) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(o);
        },
      };
      this.waiters.add(waiter);
      if (this.closed) waiter.finish('stopping');
    });
    const waitedMs = Date.now() - started;
    if (outcome === 'deleted') throw notReady(`sandbox ${req.containerId} of pod ${key} was deleted (CNI DEL) while its ADD waited for the desired state`);
    if (outcome === 'stopping') throw notReady('the agent is stopping');
    if (outcome === 'timed-out') this.log.warn({ pod: key, waitedMs }, 'the desired state did not list the pod in time (ADD_WAIT_SECONDS); deciding from what is known');
    else this.log.info({ pod: key, waitedMs }, 'the desired state lists the pod now');
    return { outcome, waitedMs };
  }

  /** Removes the directories the agent made for a pod that is gone (when empty); the rest wait in `cleanup`. */
  private async removeMade(record: PodRecord, key: string): Promise<void> {
    if (!record.madeCgroups?.length) return;
    const left = await removeMadeCgroups(record.madeCgroups);
    for (const c of left) this.cleanup.add(c);
    this.log.info({ pod: key, removed: record.madeCgroups.filter((c) => !left.includes(c)), kept: left }, 'removed the cgroup2 directories the agent made for the pod (kept: not empty yet)');
  }

  /**
   * rmdir of the directories in `cleanup`, innermost first; never one that holds (or is) a
   * recorded pod's cgroup. Returns whether the set changed.
   */
  private async retryCleanup(): Promise<boolean> {
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

  /** Ends every waiting ADD (they answer "not ready"); call when the agent stops. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters) w.finish('stopping');
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private context(): DecideContext {
    return {
      namespaces: this.desired.namespaces,
      peerAuthentications: this.desired.peerAuthentications,
      exemptNamespaces: this.in.exemptNamespaces,
      protectedCgroups: [...this.ztunnelCgroups, ...this.in.protectedCgroups],
      rootNamespace: this.in.rootNamespace,
    };
  }

  private desiredEntry(key: string): { desired?: DesiredPod } {
    const d = this.localDesiredPods().find((p) => keyOf(p.namespace, p.name) === key);
    return d ? { desired: d } : {};
  }

  private localDesiredPods(): DesiredPod[] {
    return this.desired.pods.filter((p) => p.node === undefined || p.node === this.in.nodeName);
  }

  private views(): PodView[] {
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

  private facts(view: PodView, cgroup: string | undefined) {
    const [namespace, name] = view.key.split('/') as [string, string];
    return { namespace, name, labels: view.desired?.labels ?? {}, ...(cgroup ? { cgroup } : {}), ...(view.desired?.ambient !== undefined ? { ambient: view.desired.ambient } : {}) };
  }

  /** The pod's cgroup: what the runtime said, else the desired state's, else the resolver's. */
  private async cgroupOf(view: PodView): Promise<string | undefined> {
    if (view.record?.cgroup) return view.record.cgroup;
    const [namespace, name] = view.key.split('/') as [string, string];
    try {
      const uid = view.desired?.uid ?? view.record?.uid;
      const path = view.desired?.cgroup
        ? await checkCgroupPath(this.in.cgroupRoot, view.desired.cgroup)
        : await this.in.resolver.resolve({ namespace, name, ...(uid ? { uid } : {}), ...(view.record ? { containerId: view.record.containerId } : {}) });
      this.resolved.set(view.key, path);
      this.errors.delete(view.key);
      return path;
    } catch (err) {
      this.resolved.delete(view.key);
      this.errors.set(view.key, (err as Error).message);
      return undefined;
    }
  }

  private attachedSomething(cgroup: string): boolean {
    const a = this.actual.get(cgroup);
    return a !== undefined && (a.redirect || a.partial || a.strict);
  }

  private async detach(cgroup: string, key: string | undefined): Promise<void> {
    await this.in.redirector.detachPod(cgroup);
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

  private async kernelView(cgroup: string): Promise<CgroupAttachment | undefined> {
    const entry = (await this.in.redirector.attachmentsOf([cgroup])).find((a) => a.cgroup === cgroup);
    const a = entry ? classify(entry.programs) : undefined;
    if (a) this.actual.set(cgroup, a);
    else this.actual.delete(cgroup);
    return a;
  }

  private async persist(): Promise<void> {
    await this.in.store.save(this.in.nodeName, [...this.records.values()], [...new Set([...this.tracked, ...this.ztTracked])], [...this.cleanup]);
  }

  // --- state ------------------------------------------------------------------------------------

  private status(key: string): PodStatus | undefined {
    const view = this.views().find((v) => v.key === key);
    if (!view) return undefined;
    const [namespace, name] = key.split('/') as [string, string];
    const cgroup = view.record?.cgroup ?? this.resolved.get(key);
    const d = this.decisions.get(key);
    const error = this.errors.get(key);
    const a = cgroup ? this.actual.get(cgroup) : undefined;
    let mode: PodMode = d?.mode ?? 'pending';
    if (mode === 'enrolled' && !a?.redirect) mode = 'pending';
    const uid = view.record?.uid ?? view.desired?.uid;
    return {
      namespace,
      name,
      ...(uid ? { uid } : {}),
      ...(view.desired?.node ? { node: view.desired.node } : {}),
      ...(view.record ? { containerId: view.record.containerId } : {}),
      ...(view.record?.netns ? { netns: view.record.netns } : {}),
      ips: view.record?.ips.length ? view.record.ips : (view.desired?.ips ?? []),
      ...(cgroup ? { cgroup } : {}),
      labels: view.desired?.labels ?? {},
      origin: view.record ? 'cni' : 'desired',
      mode,
      strict: d?.strict ?? false,
      reason: d?.reason ?? 'not reconciled yet',
      attached: { redirect: a?.redirect ?? false, strict: a?.strict ?? false },
      ...(error ? { error } : {}),
      ...(view.record?.enrolledAt ? { enrolledAt: view.record.enrolledAt } : {}),
      ...(view.record?.madeCgroups?.length ? { madeCgroups: view.record.madeCgroups } : {}),
      ...(view.record?.addWait ? { addWait: view.record.addWait } : {}),
    };
  }

  state(): AgentState {
    const rc = this.in.redirectConfig;
    return {
      node: this.in.nodeName,
      ready: this.ready,
      startedAt: this.startedAt,
      bpf: {
        pinDir: this.in.pinDir,
        loaded: this.loaded,
        redirect: { ztunnelIp: rc.ztunnelIp, outboundPort: rc.outboundPort, nodeIps: rc.nodeIps, excludeCidrs: rc.excludeCidrs, excludePorts: rc.excludePorts },
      },
      ztunnel: this.ztunnelState(),
      desired: {
        source: this.in.desiredSource,
        ...(this.desiredLoadedAt ? { loadedAt: this.desiredLoadedAt } : {}),
        ...(this.desiredError ? { error: this.desiredError } : {}),
        namespaces: this.desired.namespaces.size,
        pods: this.localDesiredPods().length,
        addWaitSeconds: (this.in.addWaitMs ?? 0) / 1000,
        waitingAdds: [...new Set([...this.waiters].map((w) => w.key))].sort(),
      },
      cgroup: {
        root: this.in.cgroupRoot,
        resolver: this.in.resolver.describe,
        ...(this.in.cgroupLayout?.kubeletRoot ? { kubeletRoot: this.in.cgroupLayout.kubeletRoot } : {}),
        v1Roots: this.in.cgroupLayout?.v1Roots ?? [],
        pendingRemoval: [...this.cleanup].sort(),
      },
      pods: this.views()
        .map((v) => this.status(v.key)!)
        .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)),
      ...(this.lastResync ? { lastResync: this.lastResync } : {}),
    };
  }

  private ztunnelState(): AgentState['ztunnel'] {
    const cgroups = this.ztunnelCgroups.map((cgroup) => ({ cgroup, ...(this.ztunnel.get(cgroup) ?? { attached: false }) }));
    const errors = [...cgroups.flatMap((c) => (c.error ? [c.error] : [])), ...this.ztunnelProblems];
    if (cgroups.length === 0) errors.unshift(`no ztunnel found (${this.in.ztunnelSource}); is ztunnel running and listening?`);
    return {
      cgroup: this.in.ztunnelSource,
      attached: cgroups.length > 0 && cgroups.every((c) => c.attached),
      ...(errors.length > 0 ? { error: errors.join('; ') } : {}),
      cgroups,
    };
  }

  /** Waits for everything queued so far. */
  async idle(): Promise<void> {
    await this.queue;
  }
}
