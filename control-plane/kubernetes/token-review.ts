/**
 * Authenticating node proxies in a cluster: the bearer credential is a projected service-account
 * token, checked by the API server (TokenReview, with the audience the charts project it for).
 *
 * What a valid token may obtain depends on whose it is:
 * - the ztunnel DaemonSet's service account (ztunnel, and the node agent, which runs under it):
 *   the identities of the workloads on the node of the pod the token is bound to. A token not bound
 *   to a pod (a legacy Secret token) is refused: it says nothing about a node.
 * - any other service account (a waypoint pod): its own identity only, on its pod's node.
 *
 * The node comes from the token itself when the API server puts it there (`authentication.kubernetes.io/node-name`,
 * Kubernetes 1.30+), else from the bound pod as the pod informer last saw it, whose uid must match
 * the token's (a pod deleted and re-created under the same name is another pod).
 *
 * Successful reviews are remembered for a short while (per token digest), so a ztunnel signing
 * many certificates at start-up costs one review, not one per certificate.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../core/telemetry/log.js';
import type { Authenticator, Caller } from '../auth.js';
import { KubeApiError, type KubeApi, type KubeObject } from '../../core/kube/api.js';

const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
const SA_USER_RE = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** How long a successful review is trusted; short, so a deleted pod's token stops working soon. */
const DEFAULT_CACHE_MS = 60_000;
/** Bound on remembered reviews (one per live token). */
const MAX_CACHED = 10_000;
/**
 * How long a token the API server called invalid is refused without asking again: anyone who
 * reaches 15012 could otherwise turn random tokens into TokenReviews. Short, since a valid token
 * is never answered invalid.
 */
const REFUSED_CACHE_MS = 5_000;

export interface TokenReviewInputs {
  readonly api: KubeApi;
  readonly trustDomain: string;
  /** TokenReview `spec.audiences`: the token must have been issued for it. */
  readonly audience: string;
  readonly ztunnel: { readonly namespace: string; readonly serviceAccount: string };
  /** The pod informer's view (`KubernetesSource.object('Pod', ns, name)`). */
  readonly pod: (namespace: string, name: string) => KubeObject | undefined;
  readonly logger: Logger;
  readonly cacheMs?: number;
  readonly now?: () => number;
}

interface ReviewStatus {
  readonly authenticated?: boolean;
  /** The asked-for audiences the token is valid for; an authenticator that ignores audiences leaves it empty. */
  readonly audiences?: readonly string[];
  readonly error?: string;
  readonly user?: { readonly username?: string; readonly extra?: Record<string, readonly string[] | undefined> };
}

/**
 * @example
 * const auth = new TokenReviewAuthenticator({ api, trustDomain: 'cluster.local', audience: 'istio-ca',
 *   ztunnel: { namespace: 'istio-system', serviceAccount: 'ztunnel' }, pod: (ns, n) => source.object('Pod', ns, n), logger });
 * const caller = await auth.authenticate(token); // { node: 'node-1', subject: 'istio-system/ztunnel (pod ztunnel-x)' }
 */
export class TokenReviewAuthenticator implements Authenticator {
  readonly #in: TokenReviewInputs;
  readonly #cache = new Map<string, { caller: Caller; until: number }>();
  readonly #refused = new Map<string, number>();

  constructor(inputs: TokenReviewInputs) {
    this.#in = inputs;
  }

  async authenticate(credential: string): Promise<Caller | undefined> {
    const now = (this.#in.now ?? Date.now)();
    const digest = createHash('sha256').update(credential).digest('hex');
    const hit = this.#cache.get(digest);
    if (hit && hit.until > now) return hit.caller;
    this.#cache.delete(digest);
    const refusedUntil = this.#refused.get(digest);
    if (refusedUntil !== undefined && refusedUntil > now) return undefined;
    this.#refused.delete(digest);
    let status: ReviewStatus;
    try {
      const review = await this.#in.api.request<{ status?: ReviewStatus }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: credential, audiences: [this.#in.audience] } },
      });
      status = review.status ?? {};
    } catch (err) {
      // The API server being away is not the caller's fault, but nothing can be vouched for either.
      this.#in.logger.warn({ err: err instanceof KubeApiError ? err.message : err }, 'tokenreview failed; refusing the caller until the api server answers');
      return undefined;
    }
    if (status.authenticated !== true) {
      if (this.#refused.size >= MAX_CACHED) this.#refused.clear();
      this.#refused.set(digest, now + REFUSED_CACHE_MS);
    }
    const caller = this.#caller(status);
    if (!caller) return undefined;
    if (this.#cache.size >= MAX_CACHED) this.#cache.clear();
    this.#cache.set(digest, { caller, until: now + (this.#in.cacheMs ?? DEFAULT_CACHE_MS) });
    return caller;
  }

  #caller(status: ReviewStatus): Caller | undefined {
    const log = this.#in.logger;
    if (status.authenticated !== true) {
      log.info({ reason: status.error }, 'token refused by tokenreview');
      return undefined;
    }
    // The API server answers "valid" for a token of another audience when an authenticator ignores
    // audiences, with no audiences in the status: only an explicit match counts.
    if (!Array.isArray(status.audiences) || !status.audiences.includes(this.#in.audience)) {
      log.info({ audiences: status.audiences }, `token refused: not issued for the audience ${this.#in.audience}`);
      return undefined;
    }
    const username = status.user?.username ?? '';
    const sa = SA_USER_RE.exec(username);
    if (!sa) {
      log.info({ user: username }, 'token refused: not a service-account token');
      return undefined;
    }
    const [, namespace, serviceAccount] = sa as unknown as [string, string, string];
    const extra = status.user?.extra ?? {};
    const one = (k: string) => (Array.isArray(extra[k]) && extra[k]!.length === 1 ? extra[k]![0] : undefined);
    const podName = one(EXTRA_POD_NAME);
    const podUid = one(EXTRA_POD_UID);
    if (podName === undefined) {
      log.info({ user: username }, 'token refused: not bound to a pod (use a projected service-account token), so its node is unknown');
      return undefined;
    }
    let node = one(EXTRA_NODE_NAME);
    if (node === undefined) {
      const pod = this.#in.pod(namespace, podName);
      const meta = (pod?.metadata ?? {}) as Record<string, unknown>;
      const spec = (pod?.spec ?? {}) as Record<string, unknown>;
      if (!pod || (podUid !== undefined && meta.uid !== podUid)) {
        log.info({ user: username, pod: `${namespace}/${podName}` }, 'token refused: its pod is not known (yet); the caller retries');
        return undefined;
      }
      if (typeof spec.nodeName !== 'string' || spec.nodeName === '') {
        log.info({ user: username, pod: `${namespace}/${podName}` }, 'token refused: its pod is not scheduled on a node');
        return undefined;
      }
      node = spec.nodeName;
    }
    const zt = this.#in.ztunnel;
    const subject = `serviceaccount:${namespace}/${serviceAccount} pod:${podName} node:${node}`;
    if (namespace === zt.namespace && serviceAccount === zt.serviceAccount) return { node, subject };
    return { node, subject, identity: `spiffe://${this.#in.trustDomain}/ns/${namespace}/sa/${serviceAccount}` };
  }
}
