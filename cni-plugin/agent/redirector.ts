/**
 * The kernel side of enrolment, behind the small interface the agent needs. `BpfLoader`
 * (bpf/loader.ts) is the implementation; tests swap in a recording fake.
 */
import { PROGRAMS, type BpfStatus, type RedirectConfig } from '../../bpf/loader.js';

export type { BpfStatus, RedirectConfig };

/** What the agent does to the kernel. Every call is idempotent (see bpf/loader.ts). */
export interface Redirector {
  load(config: RedirectConfig): Promise<void>;
  attachPod(cgroup: string, opts: { strict: boolean }): Promise<void>;
  setStrict(cgroup: string, strict: boolean): Promise<void>;
  /** A cgroup that is gone counts as detached. */
  detachPod(cgroup: string): Promise<void>;
  attachZtunnel(cgroup: string): Promise<void>;
  detachZtunnel(cgroup: string): Promise<void>;
  /** What the kernel says is attached where (our programs only), over the whole cgroup hierarchy: costly, for tools. */
  status(): Promise<BpfStatus>;
  /** The same for these cgroups only: what the agent uses, so its cost follows the node's pods, not all its cgroups. */
  attachmentsOf(cgroups: readonly string[]): Promise<BpfStatus['attachments']>;
}

const namesOf = (role: string): readonly string[] => Object.freeze(PROGRAMS.filter((p) => p.role === role).map((p) => p.name));

/** Programs an enrolled pod's cgroup carries. */
export const POD_PROGRAMS = namesOf('pod');
/** The STRICT ingress filter. */
export const STRICT_PROGRAMS = namesOf('strict');
/** Programs on the ztunnel's cgroup. */
export const ZTUNNEL_PROGRAMS = namesOf('ztunnel');

/** What one cgroup carries, in the agent's terms. */
export interface CgroupAttachment {
  /** Every redirect program is there. */
  readonly redirect: boolean;
  /** At least one, but not all, redirect programs: a half-done attach or someone else's detach. */
  readonly partial: boolean;
  readonly strict: boolean;
  readonly ztunnel: boolean;
}

export function classify(programs: readonly string[]): CgroupAttachment {
  const has = new Set(programs);
  const pod = POD_PROGRAMS.filter((n) => has.has(n)).length;
  return {
    redirect: pod === POD_PROGRAMS.length,
    partial: pod > 0 && pod < POD_PROGRAMS.length,
    strict: STRICT_PROGRAMS.every((n) => has.has(n)),
    ztunnel: ZTUNNEL_PROGRAMS.every((n) => has.has(n)),
  };
}
