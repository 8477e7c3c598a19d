/**
 * The wire contract between the CNI plugin (and `ambientctl`) and the node agent: HTTP/1.1 with
 * JSON bodies over the agent's Unix socket. Both sides import these types; nothing else in the
 * plugin or the agent spells a path or a body shape.
 *
 * Every failure answers `{ error: { code, message } }` with an HTTP status; `code` is one of
 * {@link AGENT_ERROR_CODES}. The plugin maps those codes to CNI error codes in one place
 * (`cni/errors.ts`).
 */

export const AGENT_PATHS = Object.freeze({
  /** POST {@link PodRequest} → {@link AddResponse}: enrol a pod that the runtime just wired. */
  add: '/v1/cni/add',
  /** POST {@link PodRequest} → {@link DelResponse}: forget a pod (its sandbox is going away). */
  del: '/v1/cni/del',
  /** POST {@link PodRequest} → {@link CheckResponse}: is the pod enrolled as it should be? */
  check: '/v1/cni/check',
  /** GET → {@link AgentState}. Also served on the optional localhost port. */
  state: '/state',
  /** GET → 200 once the programs are loaded and the first reconcile ran, else 503. */
  ready: '/healthz/ready',
});

/** What the plugin knows about a pod sandbox when the runtime calls it. */
export interface PodRequest {
  /** CNI_CONTAINERID: the sandbox. */
  readonly containerId: string;
  /** From CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME / K8S_POD_UID. */
  readonly podNamespace?: string;
  readonly podName?: string;
  readonly podUid?: string;
  /** CNI_NETNS (absent on some DELs). */
  readonly netns?: string;
  readonly ifname?: string;
  /** The pod's addresses from prevResult, without prefix length. */
  readonly ips?: readonly string[];
  /**
   * The pod's cgroup when the runtime side knows it (CNI_ARGS AMBIENT_CGROUP, or the plugin's
   * `cgroupPath` template): absolute, or relative to the agent's cgroup v2 root. Absent: the agent
   * resolves it from the pod UID with its cgroup driver.
   */
  readonly cgroup?: string;
}

/** How the agent treats a pod. */
export type PodMode =
  /** redirected to ztunnel */
  | 'enrolled'
  /** namespace not ambient, or the pod opted out */
  | 'not-ambient'
  /** never enrolled: the agent's own pod, ztunnel's, or an exempt namespace */
  | 'exempt'
  /** should be enrolled but is not (yet): no cgroup, or attaching failed; see `error` */
  | 'pending';

export interface AddResponse {
  readonly mode: Exclude<PodMode, 'pending'>;
  /** Why, for logs and `ambientctl`. */
  readonly reason: string;
  readonly pod: PodStatus;
}

export interface DelResponse {
  /** False when the agent had no record of the container (nothing to do). */
  readonly removed: boolean;
}

export interface CheckResponse {
  readonly mode: PodMode;
  readonly reason: string;
}

export interface PodStatus {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  readonly node?: string;
  readonly containerId?: string;
  readonly netns?: string;
  readonly ips: readonly string[];
  readonly cgroup?: string;
  readonly labels: Readonly<Record<string, string>>;
  /** `cni`: the agent learnt of the pod from a CNI ADD; `desired`: only from the desired state. */
  readonly origin: 'cni' | 'desired';
  readonly mode: PodMode;
  /** The STRICT ingress filter is (to be) attached. */
  readonly strict: boolean;
  readonly reason: string;
  /** What the kernel reported at the last resync (our programs on the pod's cgroup). */
  readonly attached?: { readonly redirect: boolean; readonly strict: boolean };
  readonly error?: string;
  /** When the pod was last enrolled (ISO time). */
  readonly enrolledAt?: string;
  /**
   * cgroup2 directories the agent made for the pod (a hybrid host, where runc makes the pod's
   * cgroup2 directory only when a container starts); removed, when empty, after the pod goes.
   */
  readonly madeCgroups?: readonly string[];
  /**
   * The CNI ADD found the pod missing from the desired state and waited for it
   * (ADD_WAIT_SECONDS): `listed` when it appeared, `timed-out` when the ADD was decided without it.
   */
  readonly addWait?: { readonly outcome: 'listed' | 'timed-out'; readonly waitedMs: number };
}

export interface AgentState {
  readonly node: string;
  readonly ready: boolean;
  readonly startedAt: string;
  readonly bpf: {
    readonly pinDir: string;
    readonly loaded: boolean;
    readonly redirect: {
      readonly ztunnelIp: string;
      readonly outboundPort: number;
      readonly nodeIps: readonly string[];
      readonly excludeCidrs: readonly string[];
      readonly excludePorts: readonly number[];
    };
  };
  /**
   * `cgroup`: ZTUNNEL_CGROUP as configured (a path, or `auto`); `cgroups`: where ztunnel runs now
   * (two during a rolling update) and whether each carries the hooks; `attached`: all of them do.
   */
  readonly ztunnel: {
    readonly cgroup: string;
    readonly attached: boolean;
    readonly error?: string;
    readonly cgroups: ReadonlyArray<{ readonly cgroup: string; readonly attached: boolean; readonly error?: string }>;
  };
  readonly desired: {
    readonly source: string;
    readonly loadedAt?: string;
    readonly error?: string;
    readonly namespaces: number;
    readonly pods: number;
    /** How long a CNI ADD waits for the desired state to list its pod (ADD_WAIT_SECONDS; 0: not at all). */
    readonly addWaitSeconds: number;
    /** `namespace/name` of the pods whose ADD is waiting for the desired state now. */
    readonly waitingAdds: readonly string[];
  };
  /** Where the agent looks for pods' cgroups. */
  readonly cgroup: {
    /** The cgroup v2 mount the programs attach under (CGROUP_ROOT, or the first cgroup2 mount). */
    readonly root: string;
    /** How a pod's cgroup is found (CGROUP_DRIVER and its layout). */
    readonly resolver: string;
    /** kubelet's cgroup root (KUBELET_CGROUP_ROOT) and how it was found; absent with CGROUP_DRIVER=template. */
    readonly kubeletRoot?: { readonly path: string; readonly source: string };
    /** Full cgroup v1 hierarchies (a hybrid host); empty on a pure cgroup v2 host. */
    readonly v1Roots: readonly string[];
    /** cgroup2 directories the agent made for pods that are gone, not empty yet (removed at a later resync). */
    readonly pendingRemoval: readonly string[];
  };
  readonly pods: readonly PodStatus[];
  readonly lastResync?: {
    readonly at: string;
    readonly durationMs: number;
    readonly actions: number;
    readonly errors: readonly string[];
  };
}

/** Error codes in `{ error: { code } }` answers. */
export const AGENT_ERROR_CODES = Object.freeze({
  /** 503: programs not loaded or desired state not read yet; the runtime should retry. */
  notReady: 'ERR_AGENT_NOT_READY',
  /** 400: the request body is not a valid {@link PodRequest}. */
  badRequest: 'ERR_BAD_REQUEST',
  /** 404: no such path. */
  notFound: 'ERR_NOT_FOUND',
  /** 422: the pod must be enrolled but its cgroup does not exist (or is outside the cgroup root). */
  cgroupNotFound: 'ERR_POD_CGROUP_NOT_FOUND',
  /** 500: attaching the programs failed. */
  enrolmentFailed: 'ERR_ENROLMENT_FAILED',
  /** 409 (CHECK): the pod should be enrolled and is not, or the kernel disagrees. */
  notEnrolled: 'ERR_NOT_ENROLLED',
});

export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[keyof typeof AGENT_ERROR_CODES];

export interface ErrorBody {
  readonly error: { readonly code: AgentErrorCode | string; readonly message: string };
}
