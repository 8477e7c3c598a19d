/**
 * The plugin's failures, each with a stable `code` and the CNI error code it is reported with
 * (CNI spec 1.0, "Error"): 1-99 are the spec's, 100+ are ours. docs/cni.md lists every entry;
 * test/cni-plugin/errors.test.ts fails when the two drift.
 */
import { MeshError } from '../../core/errors.js';
import { AGENT_ERROR_CODES } from '../api.js';

export const CNI_ERRORS = Object.freeze({
  /** The network config's cniVersion is not one this plugin speaks, or CHECK below 0.4.0. */
  ERR_CNI_INCOMPATIBLE_VERSION: 1,
  /** A key in the plugin's entry of the network config that the plugin does not know. */
  ERR_CNI_UNSUPPORTED_FIELD: 2,
  /** A CNI_* variable is missing or malformed (CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_ARGS ...). */
  ERR_CNI_INVALID_ENV: 4,
  /** stdin is not JSON (or not a JSON object). */
  ERR_CNI_DECODE: 6,
  /** The network config is JSON but wrong: a required key missing, a value of the wrong type. */
  ERR_CNI_INVALID_CONFIG: 7,
  /** The node agent is unreachable, not answering, or not ready yet: the runtime should retry. */
  ERR_CNI_TRY_AGAIN: 11,
  /** The agent could not enrol a pod that must be enrolled (fail closed). */
  ERR_CNI_ENROLMENT_FAILED: 100,
  /** The agent answered something this plugin does not understand (version skew?). */
  ERR_CNI_AGENT_PROTOCOL: 101,
  /** CHECK: the pod should be redirected to ztunnel and is not. */
  ERR_CNI_NOT_ENROLLED: 102,
  /** The pod's cgroup does not exist where the agent looked. */
  ERR_CNI_CGROUP_NOT_FOUND: 103,
  /** CNI_NETNS names a network namespace that does not exist. */
  ERR_CNI_NETNS_NOT_FOUND: 104,
  /** The `ambient-cni` wrapper found no `node` binary (bin/ambient-cni). */
  ERR_CNI_NODE_MISSING: 105,
});

export type CniErrorCode = keyof typeof CNI_ERRORS;

/**
 * A failure to report to the runtime as the spec's error JSON. `msg` names the field or variable
 * at fault; `details` carries the longer story (every problem found, the agent's own message).
 */
export class CniError extends MeshError {
  readonly cniCode: number;
  readonly details: string;
  constructor(code: CniErrorCode, msg: string, details = '', options?: { cause?: unknown }) {
    super(code, msg, options);
    this.cniCode = CNI_ERRORS[code];
    this.details = details;
  }
}

/** The one place agent error codes become CNI errors. */
export function cniCodeForAgentError(agentCode: string): CniErrorCode {
  switch (agentCode) {
    case AGENT_ERROR_CODES.notReady:
      return 'ERR_CNI_TRY_AGAIN';
    case AGENT_ERROR_CODES.cgroupNotFound:
      return 'ERR_CNI_CGROUP_NOT_FOUND';
    case AGENT_ERROR_CODES.enrolmentFailed:
      return 'ERR_CNI_ENROLMENT_FAILED';
    case AGENT_ERROR_CODES.notEnrolled:
      return 'ERR_CNI_NOT_ENROLLED';
    default:
      return 'ERR_CNI_AGENT_PROTOCOL';
  }
}
