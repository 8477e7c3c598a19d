/**
 * The command line's failures: one class, a stable `code` per cause, and a message that says what
 * was wrong and what to check. `ambientctl` prints `ambientctl: <message>` on stderr and exits 1.
 */
import { MeshError } from '../core/errors.js';

/** Stable codes of CLI failures (docs/ambientctl.md lists them). */
export const CLI_ERROR_CODES = {
  /** `-o`, `--for`, `--name` or another flag has a value the command does not accept. */
  BAD_FLAG: 'ERR_CLI_BAD_FLAG',
  /** No kubeconfig was found, or it could not be read. */
  NO_KUBECONFIG: 'ERR_CLI_NO_KUBECONFIG',
  /** `--context` names no context of the kubeconfig. */
  NO_CONTEXT: 'ERR_CLI_NO_CONTEXT',
  /** The API server (or the lab's ztunnel) could not be reached. */
  UNREACHABLE: 'ERR_CLI_UNREACHABLE',
  /** The API server answered with an error status. */
  API: 'ERR_CLI_API',
  /** The namespace does not exist. */
  NO_NAMESPACE: 'ERR_CLI_NO_NAMESPACE',
  /** The waypoint (Gateway of class istio-waypoint) does not exist. */
  NO_WAYPOINT: 'ERR_CLI_NO_WAYPOINT',
  /** No ztunnel runs on the node asked for (or at all). */
  NO_ZTUNNEL: 'ERR_CLI_NO_ZTUNNEL',
  /** A ztunnel answered /config_dump with something that is not a config dump. */
  BAD_DUMP: 'ERR_CLI_BAD_DUMP',
  /** `--lab` was given but no lab is up with that prefix/state directory. */
  NO_LAB: 'ERR_CLI_NO_LAB',
  /** `precheck` found at least one FAIL. */
  PRECHECK_FAILED: 'ERR_CLI_PRECHECK_FAILED',
  /** `--wait` gave up. */
  TIMEOUT: 'ERR_CLI_TIMEOUT',
} as const;

export type CliErrorCode = (typeof CLI_ERROR_CODES)[keyof typeof CLI_ERROR_CODES];

/**
 * A failure the operator can act on.
 *
 * @example
 * throw new CliError(CLI_ERROR_CODES.NO_NAMESPACE, 'namespace shop not found (kubectl get ns)');
 */
export class CliError extends MeshError {
  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
