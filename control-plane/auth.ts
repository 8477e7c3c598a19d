/**
 * Who is calling. The CA and the discovery stream authenticate node proxies with a bearer
 * credential the config source vouches for: in the lab, a per-node token from the node list; in
 * a cluster (the Kubernetes source), a service-account token checked with TokenReview. Both sit
 * behind `Authenticator`, so the CA and discovery code never see which one is in use.
 */
import { tokenDigest } from './nodes.js';

/** An authenticated node proxy. */
export interface Caller {
  /** The node the credential belongs to: what it may obtain certificates for. */
  readonly node: string;
  /** For logs: how it authenticated (`node-token:node-a`). */
  readonly subject: string;
  /**
   * When set, the only identity the caller may obtain: a workload (a waypoint) authenticated with
   * its own service-account token gets its own identity, never its node's other workloads'.
   */
  readonly identity?: string;
}

export interface Authenticator {
  /** The caller a bearer credential belongs to, or undefined when it is not valid. */
  authenticate(credential: string): Promise<Caller | undefined>;
}

/** The bearer credential of an `authorization` header value, if it is `Bearer <credential>`. */
export function bearer(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/**
 * Per-node tokens from the node list. Tokens are compared by their SHA-256 (a map lookup on a
 * digest reveals nothing about the secret through timing).
 */
export class NodeTokenAuthenticator implements Authenticator {
  constructor(private readonly tokens: () => ReadonlyMap<string, string>) {}

  async authenticate(credential: string): Promise<Caller | undefined> {
    const node = this.tokens().get(tokenDigest(credential));
    return node === undefined ? undefined : { node, subject: `node-token:${node}` };
  }
}
