/**
 * The effective mTLS mode of a workload port, with Istio's PeerAuthentication precedence.
 */
import { DEFAULT_ROOT_NAMESPACE, policyAppliesTo } from './scope.js';
import type { MtlsMode, PeerAuthentication, Workload } from './types.js';

/** The mode that ends the inheritance chain; Istio's default when nothing says otherwise. */
export const DEFAULT_MTLS_MODE = 'PERMISSIVE';

/** A resolved mode: never `UNSET`. */
export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;

/** Options of `effectiveMtlsMode`. */
export interface MtlsOptions {
  /** Istio's root namespace; default `istio-system`. */
  readonly rootNamespace?: string;
}

/**
 * Resolves the mTLS mode for a connection to `workload` on `port` (the workload's own port, i.e.
 * a service's targetPort).
 *
 * Precedence, as in Istio: the workload-scoped policy, then the namespace-wide one, then the
 * mesh-wide one (a policy in the root namespace without selector); `UNSET` inherits from the next
 * level, and a workload-scoped policy's `portLevelMtls` entry for `port` comes before its own
 * mode. When several policies sit at one level, the oldest wins; a file has no creation times,
 * so list order stands in for them and the first listed wins. Nothing set: PERMISSIVE.
 *
 * `peerAuths` may hold policies that do not apply to the workload; they are skipped.
 *
 * @example
 * effectiveMtlsMode(cfg.peerAuthentications, workload, 8080) // => 'STRICT'
 */
export function effectiveMtlsMode(
  peerAuths: readonly PeerAuthentication[],
  workload: Workload,
  port: number,
  opts: MtlsOptions = {},
): EffectiveMtlsMode {
  const root = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  let mesh: PeerAuthentication | undefined;
  let ns: PeerAuthentication | undefined;
  let wl: PeerAuthentication | undefined;
  for (const pa of peerAuths) {
    if (!policyAppliesTo(pa, workload, root)) continue;
    if (pa.scope === 'mesh') mesh ??= pa;
    else if (pa.scope === 'namespace') ns ??= pa;
    else wl ??= pa;
  }
  const chain: (MtlsMode | undefined)[] = [wl?.portLevel.get(port), wl?.mode, ns?.mode, mesh?.mode];
  for (const mode of chain) {
    if (mode !== undefined && mode !== 'UNSET') return mode;
  }
  return DEFAULT_MTLS_MODE;
}
