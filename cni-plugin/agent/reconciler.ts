/**
 * The only updater of the node's enrolment: CNI calls, desired-state changes and the periodic
 * resync all run one at a time through one queue, and each compares what should be (the desired
 * state, the pods the runtime reported) with what the kernel says is attached.
 *
 * Enrolment only changes which new connections are redirected: attaching or detaching never
 * touches sockets that are already connected, so labelling or unlabelling a namespace does not
 * break open connections.
 *
 * This file wires the jobs and owns the queue and readiness; the jobs are, by file:
 * - `pod-table.ts`: the per-pod state (the runtime's records, decisions, errors, what the kernel
 *   carries, the directories to clean up) and the invariants between them;
 * - `cni-handlers.ts`: CNI ADD, DEL and CHECK; `add-wait.ts`: an ADD's wait for the desired state;
 * - `resync.ts`: the full reconcile against the desired state and the kernel;
 * - `ztunnel-hooks.ts`: the getsockname hooks on ztunnel's cgroups, following ztunnel;
 * - `status.ts`: `GET /state` and the pod in an ADD's answer;
 * - `api-error.ts`: the failures answered to the plugin (re-exported here for server.ts).
 */
import type { Logger } from '../../core/telemetry/log.js';
import type { AddResponse, AgentState, CheckResponse, DelResponse, PodRequest } from '../api.js';
import { AddWaits } from './add-wait.js';
import { notReady } from './api-error.js';
import type { CgroupResolver } from './cgroup.js';
import { CniHandlers } from './cni-handlers.js';
import type { DecideContext } from './decide.js';
import type { DesiredState } from './desired-state.js';
import { PodTable } from './pod-table.js';
import type { Redirector, RedirectConfig } from './redirector.js';
import { Resync } from './resync.js';
import { agentState } from './status.js';
import type { StateStore } from './store.js';
import { ZtunnelHooks } from './ztunnel-hooks.js';

export { AgentApiError } from './api-error.js';

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

/** What the jobs that change state (cni-handlers.ts, resync.ts) share; built once by the Reconciler. */
export interface ReconcilerParts {
  readonly in: ReconcilerInputs;
  readonly log: Logger;
  readonly now: () => Date;
  readonly pods: PodTable;
  readonly ztunnel: ZtunnelHooks;
  /** The enrolment rule's context now: the desired state's namespaces and policies, the cgroups never enrolled. */
  readonly context: () => DecideContext;
  /** Writes the state file: the pod records, the cgroups carrying our programs, the directories to clean up. */
  readonly save: () => Promise<void>;
}

export class Reconciler {
  private readonly in: ReconcilerInputs;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly pods: PodTable;
  private readonly ztunnel: ZtunnelHooks;
  private readonly addWaits: AddWaits;
  private readonly cni: CniHandlers;
  private readonly resync: Resync;
  private desiredLoadedAt: string | undefined;
  private desiredError: string | undefined;
  private loaded = false;
  private queue: Promise<unknown> = Promise.resolve();
  private resyncQueued = false;
  private readonly startedAt: string;

  constructor(inputs: ReconcilerInputs) {
    this.in = inputs;
    this.log = inputs.logger;
    this.now = inputs.now ?? (() => new Date());
    this.pods = new PodTable(inputs.nodeName, inputs.redirector, inputs.logger);
    this.ztunnel = new ZtunnelHooks(inputs);
    this.addWaits = new AddWaits(inputs);
    const parts: ReconcilerParts = {
      in: inputs,
      log: this.log,
      now: this.now,
      pods: this.pods,
      ztunnel: this.ztunnel,
      context: () => this.context(),
      save: () => this.persist(),
    };
    this.cni = new CniHandlers(parts);
    this.resync = new Resync(parts);
    this.startedAt = this.now().toISOString();
  }

  get ready(): boolean {
    return this.loaded && this.resync.synced;
  }

  /** Reads the records of a previous run. Call once, before anything else. */
  async restore(): Promise<void> {
    this.pods.restore(await this.in.store.load());
    if (this.pods.records.size > 0) this.log.info({ pods: this.pods.records.size }, 'restored pod records of the previous run');
  }

  /** Loads the programs and writes the node's config into their maps (idempotent: enrolled pods stay enrolled). */
  load(): Promise<void> {
    return this.enqueue(async () => {
      await this.in.redirector.load(this.in.redirectConfig);
      this.loaded = true;
    });
  }

  setDesired(state: DesiredState): void {
    this.pods.desired = state;
    this.desiredLoadedAt = this.now().toISOString();
    this.desiredError = undefined;
    this.addWaits.wake(state);
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
      const before = this.ztunnel.moved(cgroups, problems);
      if (!this.loaded) return;
      await this.ztunnel.follow(before);
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
      await this.resync.run();
    });
  }

  /**
   * CNI ADD. When the desired state does not list the pod yet, the ADD first waits for it outside
   * the queue (add-wait.ts), so other calls go on; then it decides in the queue.
   */
  async add(req: PodRequest): Promise<AddResponse> {
    this.mustBeReady();
    const wait = await this.addWaits.wait(req, this.pods.desired);
    return this.enqueue(async () => {
      this.mustBeReady();
      return this.cni.add(req, wait);
    });
  }

  del(req: PodRequest): Promise<DelResponse> {
    this.addWaits.sandboxDeleted(req.containerId);
    return this.enqueue(() => this.cni.del(req));
  }

  check(req: PodRequest): Promise<CheckResponse> {
    return this.enqueue(async () => {
      if (!this.ready) throw notReady('the first reconcile has not finished');
      return this.cni.check(req);
    });
  }

  /** Ends every waiting ADD (they answer "not ready"); call when the agent stops. */
  close(): void {
    this.addWaits.close();
  }

  state(): AgentState {
    return agentState({
      in: this.in,
      ready: this.ready,
      loaded: this.loaded,
      startedAt: this.startedAt,
      pods: this.pods,
      ztunnel: this.ztunnel,
      desiredLoadedAt: this.desiredLoadedAt,
      desiredError: this.desiredError,
      waitingAdds: this.addWaits.waiting,
      lastResync: this.resync.last,
    });
  }

  /** Waits for everything queued so far. */
  async idle(): Promise<void> {
    await this.queue;
  }

  private mustBeReady(): void {
    if (!this.ready) throw notReady(this.loaded ? 'the first reconcile has not finished' : 'the eBPF programs are not loaded yet');
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private context(): DecideContext {
    const desired = this.pods.desired;
    return {
      namespaces: desired.namespaces,
      peerAuthentications: desired.peerAuthentications,
      exemptNamespaces: this.in.exemptNamespaces,
      protectedCgroups: [...this.ztunnel.cgroups, ...this.in.protectedCgroups],
      rootNamespace: this.in.rootNamespace,
    };
  }

  private async persist(): Promise<void> {
    await this.in.store.save(this.in.nodeName, [...this.pods.records.values()], [...new Set([...this.pods.tracked, ...this.ztunnel.tracked])], [...this.pods.cleanup]);
  }
}
