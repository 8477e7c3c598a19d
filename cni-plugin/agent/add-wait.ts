/**
 * A CNI ADD for a pod the desired state does not list yet (it reached ADD before the source
 * published it, or its namespace's new label) waits, outside the reconciler's queue so other calls
 * go on, until an update lists it or ADD_WAIT_SECONDS pass (docs/cni.md, "Which pods are
 * enrolled"). Woken by each desired state, never by polling; a DEL of the sandbox or the agent
 * stopping ends the wait with "not ready".
 */
import type { PodRequest } from '../api.js';
import { notReady } from './api-error.js';
import type { DesiredState } from './desired-state.js';
import { keyOf } from './pod-table.js';
import type { ReconcilerInputs } from './reconciler.js';
import type { PodRecord } from './store.js';

type Outcome = 'listed' | 'timed-out' | 'deleted' | 'stopping';

/** An ADD waiting for the desired state to list its pod. */
interface AddWaiter {
  readonly key: string;
  readonly containerId: string;
  readonly listed: (state: DesiredState) => boolean;
  readonly finish: (outcome: Outcome) => void;
}

export class AddWaits {
  private readonly in: Pick<ReconcilerInputs, 'nodeName' | 'exemptNamespaces' | 'addWaitMs' | 'logger'>;
  private readonly waiters = new Set<AddWaiter>();
  private closed = false;

  constructor(inputs: Pick<ReconcilerInputs, 'nodeName' | 'exemptNamespaces' | 'addWaitMs' | 'logger'>) {
    this.in = inputs;
  }

  /** The pods whose ADDs wait now, for /state. */
  get waiting(): string[] {
    return [...new Set([...this.waiters].map((w) => w.key))].sort();
  }

  /** Whether the desired state lists the pod of `req` (by namespace/name, and uid when both have one). */
  private lists(state: DesiredState, req: PodRequest): boolean {
    return state.pods.some(
      (p) => (p.node === undefined || p.node === this.in.nodeName) && p.namespace === req.podNamespace && p.name === req.podName && (!p.uid || !req.podUid || p.uid === req.podUid),
    );
  }

  /**
   * Waits, up to `addWaitMs`, for a desired state listing the pod of `req` (`current`: the one
   * held now). Undefined when there was nothing to wait for (listed already, an exempt namespace,
   * or waiting off). Throws when the sandbox was deleted or the agent stops.
   */
  async wait(req: PodRequest, current: DesiredState): Promise<PodRecord['addWait']> {
    const bound = this.in.addWaitMs ?? 0;
    const key = keyOf(req.podNamespace!, req.podName!);
    if (bound <= 0 || this.in.exemptNamespaces.includes(req.podNamespace!) || this.lists(current, req)) return undefined;
    const started = Date.now();
    this.in.logger.info({ pod: key, containerId: req.containerId, boundMs: bound }, 'the desired state does not list the pod yet; the ADD waits for it');
    const outcome = await new Promise<Outcome>((resolve) => {
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
    if (outcome === 'timed-out') this.in.logger.warn({ pod: key, waitedMs }, 'the desired state did not list the pod in time (ADD_WAIT_SECONDS); deciding from what is known');
    else this.in.logger.info({ pod: key, waitedMs }, 'the desired state lists the pod now');
    return { outcome, waitedMs };
  }

  /** A new desired state: ends the waits of the pods it lists. */
  wake(state: DesiredState): void {
    for (const w of this.waiters) if (w.listed(state)) w.finish('listed');
  }

  /** An ADD of this sandbox still waiting for the desired state: the runtime gave up on it. */
  sandboxDeleted(containerId: string): void {
    for (const w of this.waiters) if (w.containerId === containerId) w.finish('deleted');
  }

  /** Ends every waiting ADD (they answer "not ready"); call when the agent stops. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters) w.finish('stopping');
  }
}
