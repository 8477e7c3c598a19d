/**
 * The plugin's calls (api.ts): ADD enrols (or not) a pod the runtime just wired, DEL forgets a
 * sandbox, CHECK says whether the kernel carries what the rule decides. The Reconciler runs each
 * in its queue, after its readiness check and, for ADD, after the wait for the desired state
 * (add-wait.ts). Failures answered to the plugin are {@link AgentApiError}s, fail-closed: an ADD
 * that must enrol and cannot leaves nothing half-attached.
 */
import { AGENT_ERROR_CODES, type AddResponse, type CheckResponse, type DelResponse, type PodRequest } from '../api.js';
import { AgentApiError } from './api-error.js';
import { checkCgroupPath, makePodCgroup, PodCgroupError, PodCgroupOnlyInV1Error, removeMadeCgroups } from './cgroup.js';
import { decide } from './decide.js';
import { factsOf, keyOf, type PodView } from './pod-table.js';
import type { ReconcilerParts } from './reconciler.js';
import { podStatus } from './status.js';
import type { PodRecord } from './store.js';

export class CniHandlers {
  constructor(private readonly parts: ReconcilerParts) {}

  /**
   * Enrols (or not) a pod the runtime just wired. `wait`: how the ADD's wait for the desired
   * state ended (undefined when it did not wait); a decision taken without the pod listed says so
   * in its reason.
   */
  async add(req: PodRequest, wait: PodRecord['addWait']): Promise<AddResponse> {
    const { in: inputs, pods, log } = this.parts;
    const namespace = req.podNamespace!;
    const name = req.podName!;
    const key = keyOf(namespace, name);
    const previous = pods.records.get(key);
    let cgroup: string | undefined;
    let cgroupError: PodCgroupError | undefined;
    try {
      cgroup = req.cgroup
        ? await checkCgroupPath(inputs.cgroupRoot, req.cgroup)
        : await inputs.resolver.resolve({ namespace, name, containerId: req.containerId, ...(req.podUid ? { uid: req.podUid } : {}) });
    } catch (err) {
      if (!(err instanceof PodCgroupError)) throw err;
      cgroupError = err;
    }
    // Directories this agent made for an earlier sandbox of the same pod stay this pod's.
    const samePod = previous !== undefined && previous.uid === req.podUid;
    let madeCgroups = samePod && previous.cgroup === cgroup ? [...(previous.madeCgroups ?? [])] : [];
    madeCgroups.push(...pods.reclaimMade(cgroup));
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
    pods.records.set(key, record);
    pods.errors.delete(key);
    const view: PodView = { key, record, ...pods.desiredEntry(key) };
    let d = decide(factsOf(view, cgroup), this.parts.context());
    if (wait?.outcome === 'timed-out') {
      d = { ...d, reason: `${d.reason}; decided without the desired state listing the pod: it did not within ${inputs.addWaitMs! / 1000}s of CNI ADD (ADD_WAIT_SECONDS)` };
    }
    pods.decisions.set(key, d);
    let made: string[] = [];
    if (d.mode === 'enrolled' && !cgroup && cgroupError instanceof PodCgroupOnlyInV1Error) {
      // Hybrid host: the pod's cgroup exists in v1 (kubelet made it, so it is this pod's) but
      // runc makes the cgroup2 one only when a container starts, after this ADD: without it the
      // sandbox would fail forever. runc joins an existing directory, so the agent makes the
      // pod-level directory (never deeper) and remembers it made it.
      try {
        made = await makePodCgroup(inputs.cgroupRoot, cgroupError.v2Path);
        cgroup = cgroupError.v2Path;
        record = { ...record, cgroup, madeCgroups: [...(record.madeCgroups ?? []), ...made] };
        if (record.madeCgroups!.length === 0) {
          const { madeCgroups: _, ...rest } = record;
          record = rest;
        }
        pods.records.set(key, record);
        log.info({ pod: key, cgroup, made, v1: cgroupError.v1Path }, "made the pod's cgroup2 directory (hybrid host)");
      } catch (err) {
        cgroupError = new PodCgroupError(`${cgroupError.message}; making it failed: ${(err as Error).message}`);
      }
    }
    if (d.mode === 'enrolled') {
      if (!cgroup) {
        pods.errors.set(key, cgroupError!.message);
        await this.parts.save().catch(() => {});
        throw new AgentApiError(AGENT_ERROR_CODES.cgroupNotFound, 422, `pod ${key} must be enrolled (${d.reason}) but ${cgroupError!.message}`);
      }
      try {
        await inputs.redirector.attachPod(cgroup, { strict: d.strict });
      } catch (err) {
        // Leave nothing half-attached behind a failed ADD; the runtime retries the sandbox.
        await inputs.redirector.detachPod(cgroup).catch(() => {});
        pods.actual.delete(cgroup);
        if (made.length > 0) {
          const left = await removeMadeCgroups(made);
          for (const c of left) pods.cleanup.add(c);
          const kept = (record.madeCgroups ?? []).filter((c) => !made.includes(c));
          const { madeCgroups: _, ...rest } = record;
          pods.records.set(key, kept.length > 0 ? { ...rest, madeCgroups: kept } : rest);
        }
        pods.errors.set(key, (err as Error).message);
        await this.parts.save().catch(() => {});
        throw new AgentApiError(AGENT_ERROR_CODES.enrolmentFailed, 500, `enrolling pod ${key} failed: ${(err as Error).message}`, { cause: err });
      }
      pods.records.set(key, { ...record, enrolledAt: this.parts.now().toISOString() });
      pods.noteAttached(cgroup, { redirect: true, partial: false, strict: d.strict, ztunnel: false });
      log.info({ pod: key, cgroup, strict: d.strict, containerId: req.containerId }, 'pod enrolled');
    } else {
      // A sandbox re-created after its namespace lost the label must not keep old programs.
      const stale = cgroup !== undefined && (pods.attachedSomething(cgroup) || (previous?.cgroup === cgroup && previous.enrolledAt !== undefined));
      if (stale) await pods.detach(cgroup!, key);
      log.info({ pod: key, mode: d.mode, reason: d.reason }, 'pod not enrolled');
    }
    try {
      await this.parts.save();
    } catch (err) {
      throw new AgentApiError(AGENT_ERROR_CODES.enrolmentFailed, 500, `recording pod ${key} in ${inputs.store.path} failed: ${(err as Error).message}`, { cause: err });
    }
    return { mode: d.mode, reason: d.reason, pod: podStatus(pods, view.key)! };
  }

  async del(req: PodRequest): Promise<DelResponse> {
    const { pods, log } = this.parts;
    const entry = [...pods.records.entries()].find(([, r]) => r.containerId === req.containerId);
    if (!entry) {
      // Either never seen, or a DEL for an older sandbox of a pod whose new sandbox is recorded:
      // that one must keep its programs.
      return { removed: false };
    }
    const [key, record] = entry;
    if (record.cgroup) await pods.detach(record.cgroup, key).catch(() => {});
    pods.records.delete(key);
    await pods.removeMade(record, key);
    pods.errors.delete(key);
    pods.decisions.delete(key);
    await this.parts.save().catch((err: Error) => log.error({ err }, 'recording a DEL failed'));
    log.info({ pod: key, containerId: req.containerId }, 'pod removed');
    return { removed: true };
  }

  async check(req: PodRequest): Promise<CheckResponse> {
    const { in: inputs, pods } = this.parts;
    const key = keyOf(req.podNamespace!, req.podName!);
    const record = pods.records.get(key);
    const view: PodView = { key, ...(record ? { record } : {}), ...pods.desiredEntry(key) };
    const d = decide(factsOf(view, record?.cgroup), this.parts.context());
    const fail = (why: string) => new AgentApiError(AGENT_ERROR_CODES.notEnrolled, 409, `pod ${key}: ${why}`);
    if (!record || record.containerId !== req.containerId) {
      if (d.mode === 'enrolled') throw fail(`should be enrolled (${d.reason}) but the agent has no record of container ${req.containerId}`);
      return { mode: d.mode, reason: d.reason };
    }
    const attached = record.cgroup ? await pods.kernelView(record.cgroup) : undefined;
    if (d.mode === 'enrolled') {
      if (!record.cgroup) throw fail(`should be enrolled (${d.reason}) but its cgroup is unknown: ${pods.errors.get(key) ?? 'not resolved'}`);
      if (!attached?.redirect) throw fail(`should be enrolled (${d.reason}) but the redirect programs are not attached to ${record.cgroup}`);
      if (attached.strict !== d.strict) throw fail(`the STRICT ingress filter is ${attached.strict ? 'attached' : 'missing'} on ${record.cgroup}, and should ${d.strict ? 'be attached' : 'not be'}`);
    } else if (attached && (attached.redirect || attached.partial || attached.strict)) {
      throw fail(`is ${d.mode} (${d.reason}) but programs are still attached to ${record.cgroup}`);
    }
    return { mode: d.mode, reason: d.reason };
  }
}
