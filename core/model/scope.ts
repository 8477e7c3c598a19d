/**
 * Which workloads a policy (AuthorizationPolicy or PeerAuthentication) applies to, with Istio's
 * scoping rules.
 */
import type { Workload } from './types.js';

/**
 * Istio's default root namespace. Policies in it without a selector are mesh-wide; policies in
 * it with a selector apply to matching workloads in every namespace.
 */
export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

/** The scoping part shared by `AuthorizationPolicy` and `PeerAuthentication`. */
export interface ScopedPolicy {
  readonly namespace: string;
  readonly scope: 'mesh' | 'namespace' | 'workload';
  readonly selector: Readonly<Record<string, string>>;
}

/** Whether every label of `selector` is present with the same value in `labels` (Kubernetes matchLabels). */
export function labelsMatch(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const key of Object.keys(selector)) {
    if (!Object.hasOwn(labels, key) || labels[key] !== selector[key]) return false;
  }
  return true;
}

/**
 * Whether `policy` applies to `workload`:
 * - `mesh`: always;
 * - `namespace`: the workload is in the policy's namespace;
 * - `workload`: the selector matches the workload's labels and the workload is in the policy's
 *   namespace, or the policy is in the root namespace (Istio: a root-namespace policy with a
 *   selector selects across all namespaces).
 */
export function policyAppliesTo(
  policy: ScopedPolicy,
  workload: Workload,
  rootNamespace: string = DEFAULT_ROOT_NAMESPACE,
): boolean {
  switch (policy.scope) {
    case 'mesh':
      return true;
    case 'namespace':
      return policy.namespace === workload.namespace;
    case 'workload':
      return (
        (policy.namespace === workload.namespace || policy.namespace === rootNamespace) &&
        labelsMatch(policy.selector, workload.labels)
      );
  }
}
