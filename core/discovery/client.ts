/**
 * A node proxy's connection to the control plane, wired once for every component that needs it
 * (ztunnel today; the node agent and waypoints the same way): the remote CA behind a secret
 * manager, and the discovery stream authenticated with the proxy's own certificate.
 *
 * After a CA rotation (the discovery stream says the trust bundle or the signer changed), every
 * certificate held is dropped and requested again at once, carrying the new bundle; connections
 * already open keep their TLS sessions.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from '../telemetry/log.js';
import { RemoteCaClient } from './ca-client.js';
import { SecretManager, type RotationListener } from '../identity/secret-manager.js';
import { ControlPlaneRootError, TrustAnchors } from '../identity/trust-anchors.js';
import { splitPemCertificates } from '../identity/plugin-ca.js';
import type { WorkloadCertificate } from '../identity/certificate.js';
import { DiscoverySource, type DiscoverySourceInputs } from './source.js';
import { controlPlaneIdentity, ztunnelIdentity } from './wire.js';

/** Options of `connectControlPlane`. */
export interface ControlPlaneClientOptions {
  readonly address: { host: string; port: number };
  readonly nodeName: string;
  readonly trustDomain: string;
  /** The node token: a file re-read at every use (tokens rotate), or a function. */
  readonly token: string | (() => Promise<string>);
  /** PEM roots to trust the control plane with before it sent its bundle. */
  readonly rootsPem: readonly string[];
  /** The control plane's SPIFFE ID; Istio's istiod identity unless set. */
  readonly serverIdentity?: string;
  /** The identity the stream is authenticated with; the ztunnel identity unless set. */
  readonly identity?: string;
  readonly proxy?: 'ztunnel' | 'waypoint';
  /** Lifetime asked for workload certificates. */
  readonly certTtlSeconds?: number;
  readonly logger: Logger;
  /** Reconnect and ping timings (tests shorten them). */
  readonly discovery?: Pick<DiscoverySourceInputs, 'initialBackoffMs' | 'maxBackoffMs' | 'pingIntervalMs' | 'pingTimeoutMs' | 'startTimeoutMs'>;
  /** Secret manager retry timings. */
  readonly secrets?: { initialBackoffMs?: number; maxBackoffMs?: number };
}

/** What `connectControlPlane` builds. */
export interface ControlPlaneClient {
  /** Certificates for the node's workloads (and for the proxy's own identity). */
  readonly certificates: {
    fetch(identity: string): Promise<WorkloadCertificate>;
    onRotate(listener: RotationListener): () => void;
    /** Drops an identity: no more renewals; the next fetch asks the CA again. */
    forget(identity: string): void;
    close(): void;
  };
  readonly configSource: DiscoverySource;
  readonly trust: TrustAnchors;
  readonly caClient: RemoteCaClient;
}

/** Reads PEM roots from a file; throws ControlPlaneRootError (ERR_CONTROL_PLANE_ROOT) naming the variable to check. */
export async function readRootsFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ControlPlaneRootError(`cannot read the control plane's root certificate at ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const roots = splitPemCertificates(text);
  if (roots.length === 0) throw new ControlPlaneRootError(`${path} holds no PEM certificate`);
  return roots;
}

/**
 * Builds the CA client, secret manager and discovery source of one node proxy. Nothing connects
 * until a certificate is fetched or `configSource.start` is called.
 *
 * @example
 * const cp = connectControlPlane({ address, nodeName: 'node-a', trustDomain, token: '/var/run/secrets/tokens/node-token', rootsPem, logger });
 * await Ztunnel.start({ config, logger, configSource: cp.configSource, certificates: cp.certificates });
 */
export function connectControlPlane(opts: ControlPlaneClientOptions): ControlPlaneClient {
  const trust = new TrustAnchors(opts.rootsPem);
  const token = typeof opts.token === 'string' ? ((path: string) => () => readFile(path, 'utf8'))(opts.token) : opts.token;
  const serverIdentity = opts.serverIdentity ?? controlPlaneIdentity(opts.trustDomain);
  const caClient = new RemoteCaClient({
    address: opts.address,
    token,
    trust,
    serverIdentity,
    ...(opts.certTtlSeconds !== undefined ? { ttlSeconds: opts.certTtlSeconds } : {}),
    logger: opts.logger.child({ scope: 'ca-client' }),
  });
  const secrets = new SecretManager({ caClient, logger: opts.logger.child({ scope: 'secrets' }), ...opts.secrets });
  const held = new Set<string>();
  secrets.onRotate((c) => held.add(c.identity));
  const identity = opts.identity ?? ztunnelIdentity(opts.trustDomain);
  const configSource = new DiscoverySource({
    address: opts.address,
    proxy: opts.proxy ?? 'ztunnel',
    node: opts.nodeName,
    token,
    certificate: () => secrets.fetch(identity),
    trust,
    serverIdentity,
    logger: opts.logger.child({ scope: 'discovery' }),
    ...opts.discovery,
    onTrustBundle: () => {
      const ids = [...held];
      held.clear();
      opts.logger.info({ certificates: ids.length }, 'ca rotated: re-requesting every certificate held');
      for (const id of ids) secrets.forget(id);
      // Now, not at their next use: a connection must not wait on the control plane (or fail
      // while it is away) for an identity the proxy held a moment ago. A failed request is
      // retried with backoff by the secret manager.
      for (const id of ids) secrets.fetch(id).catch(() => undefined);
    },
  });
  return {
    certificates: {
      fetch: (id) => secrets.fetch(id),
      onRotate: (l) => secrets.onRotate(l),
      forget: (id) => {
        held.delete(id);
        secrets.forget(id);
      },
      close: () => {
        secrets.close();
        caClient.close();
      },
    },
    configSource,
    trust,
    caClient,
  };
}
