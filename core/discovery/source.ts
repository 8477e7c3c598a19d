/**
 * `ConfigSource` over the control plane's discovery stream (`GET /v1/discovery`, HTTP/2 over
 * mTLS, newline-delimited JSON; docs/control-plane.md).
 *
 * The client holds the resources it was sent and rebuilds a `MeshConfig` after every message.
 * When the stream ends or fails it keeps serving the last good configuration and reconnects with
 * backoff, sending the version it holds (`since`): the control plane answers with what changed
 * since (or `resume` when nothing did), or a snapshot when it no longer knows that version. A
 * message that is malformed, or a delta that does not start from the version held, is never
 * applied: the client drops the stream and asks for a snapshot.
 */
import http2, { type ClientHttp2Session } from 'node:http2';
import { MeshError } from '../errors.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { controlPlaneTlsOptions } from '../identity/control-plane-tls.js';
import type { WorkloadCertificate } from '../identity/certificate.js';
import type { TrustAnchors } from '../identity/trust-anchors.js';
import type { MeshConfig } from '../model/types.js';
import type { ConfigSource } from '../model/source.js';
import { DEFAULT_ROOT_NAMESPACE } from '../model/scope.js';
import {
  DISCOVERY_PATH,
  DISCOVERY_QUERY,
  RESOURCE_KINDS,
  WireFormatError,
  decodeMessage,
  formatHostPort,
  resourceKey,
  type DecodedMessage,
  type DecodedResources,
  type ResourceKind,
  type ResourceTypes,
} from './wire.js';

/** Inputs of `DiscoverySource`. */
export interface DiscoverySourceInputs {
  readonly address: { host: string; port: number };
  /** `ztunnel` (default) or `waypoint`: what the control plane sends. */
  readonly proxy?: 'ztunnel' | 'waypoint';
  /** The node a ztunnel serves (checked against its token). */
  readonly node?: string;
  /** The node token (ztunnels), read at every connect. */
  readonly token?: () => Promise<string>;
  /** The certificate presented to authenticate the stream (the proxy's own identity). */
  readonly certificate: () => Promise<WorkloadCertificate>;
  readonly trust: TrustAnchors;
  /** SPIFFE ID the control plane must present. */
  readonly serverIdentity: string;
  readonly logger?: Logger;
  /** First reconnect delay; doubles per failure up to `maxBackoffMs`. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** HTTP/2 PING interval while connected; a missing answer within `pingTimeoutMs` ends the connection. */
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  /** Largest single message accepted (a snapshot of a big mesh is tens of MiB). */
  readonly maxMessageBytes?: number;
  /** `start` rejects when no configuration arrived within this time; default: wait forever. */
  readonly startTimeoutMs?: number;
  /** Called when the control plane's trust bundle or signing certificate changed (a rotation). */
  readonly onTrustBundle?: (bundle: { roots: readonly string[]; signer: string }) => void;
}

/** Reconnect quickly after a blip (control-plane restart)... */
export const DEFAULT_INITIAL_BACKOFF_MS = 250;
/** ...but never hammer a control plane that is down for long. */
export const DEFAULT_MAX_BACKOFF_MS = 15_000;
/** Detects a control plane that vanished without closing the connection (host down, partition). */
export const DEFAULT_PING_INTERVAL_MS = 15_000;
export const DEFAULT_PING_TIMEOUT_MS = 10_000;
/** 10,000 workloads encode to about 3 MiB; leave an order of magnitude of room. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
/**
 * Receive windows. What a control plane has sent but a proxy has not read yet is held, encrypted,
 * per proxy; what is beyond the window stays in the snapshot buffer all proxies share. 1 MiB keeps
 * a LAN busy (1 MiB per round trip) while bounding that memory at 1 MiB per proxy.
 */
const STREAM_WINDOW = 1024 * 1024;
const SESSION_WINDOW = 2 * 1024 * 1024;

/** Counters for tests, `/config_dump` and logs. */
export interface DiscoveryStats {
  connects: number;
  snapshots: number;
  deltas: number;
  resumes: number;
  /** Messages refused (malformed, or a delta from another version). */
  rejected: number;
  lastError?: string;
}

class ResyncNeeded extends Error {}

/** No first configuration arrived within `startTimeoutMs`; the proxy does not start without one. */
export class DiscoveryStartTimeoutError extends MeshError {
  constructor(message: string) {
    super('ERR_DISCOVERY_TIMEOUT', message);
  }
}

/**
 * @example
 * const source = new DiscoverySource({ address, node: 'node-a', token, certificate: () => secrets.fetch(ztunnelId), trust, serverIdentity });
 * await source.start((cfg) => { state = new MeshState(cfg); });
 */
export class DiscoverySource implements ConfigSource {
  readonly stats: DiscoveryStats = { connects: 0, snapshots: 0, deltas: 0, resumes: 0, rejected: 0 };
  readonly #in: DiscoverySourceInputs;
  readonly #log: Logger;
  readonly #resources = new Map<ResourceKind, Map<string, unknown>>(RESOURCE_KINDS.map((k) => [k, new Map()]));
  // The frozen list of each kind as last emitted; rebuilt only for kinds a message touched.
  readonly #lists = new Map<ResourceKind, readonly unknown[]>();
  #rootNamespace: string | undefined;
  #version: string | undefined;
  #bundleKey: string | undefined;
  #listener: ((cfg: MeshConfig) => void) | undefined;
  #session: ClientHttp2Session | undefined;
  #connected = false;
  #closed = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #firstConfig: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(inputs: DiscoverySourceInputs) {
    this.#in = inputs;
    this.#log = (inputs.logger ?? silentLogger).child({ control_plane: formatHostPort(inputs.address) });
  }

  /** The version of the configuration held (undefined before the first). */
  get version(): string | undefined {
    return this.#version;
  }

  /** Whether the stream is up. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Connects and resolves once the first configuration was delivered; keeps reconnecting until
   * then (or until `startTimeoutMs`).
   */
  start(listener: (cfg: MeshConfig) => void): Promise<void> {
    // invariant: the owner starts a source once and before closing it; breaking that is a bug here.
    if (this.#closed) return Promise.reject(new Error('DiscoverySource.start was called after close'));
    if (this.#listener) return Promise.reject(new Error('DiscoverySource.start was called twice'));
    this.#listener = listener;
    const first = new Promise<void>((resolve, reject) => (this.#firstConfig = { resolve, reject }));
    this.#loop = this.#run();
    if (this.#in.startTimeoutMs !== undefined) {
      const t = setTimeout(() => {
        this.#firstConfig?.reject(
          new DiscoveryStartTimeoutError(
            `no configuration from the control plane at ${formatHostPort(this.#in.address)} within ${this.#in.startTimeoutMs} ms (last error: ${this.stats.lastError ?? 'none'}); check CONTROL_PLANE_ADDRESS, that the control plane runs and that it has loaded its configuration`,
          ),
        );
      }, this.#in.startTimeoutMs);
      t.unref();
      void first.finally(() => clearTimeout(t)).catch(() => undefined);
    }
    return first.catch(async (err: Error) => {
      await this.close();
      throw err;
    });
  }

  /** Ends the stream and stops reconnecting; the listener is not called afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#session?.destroy();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      let progressed = false;
      try {
        progressed = await this.#connectOnce();
      } catch (err) {
        this.stats.lastError = (err as Error).message;
        if (!this.#closed) this.#log.warn({ err: (err as Error).message, version: this.#version }, 'discovery stream failed; serving the last configuration and reconnecting');
      }
      this.#connected = false;
      if (this.#closed) break;
      failures = progressed ? 1 : failures + 1;
      const d = Math.min(this.#in.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS, (this.#in.initialBackoffMs ?? DEFAULT_INITIAL_BACKOFF_MS) * 2 ** Math.min(failures - 1, 20));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, d / 2 + Math.random() * (d / 2));
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** One connection; resolves when it ends. Returns whether any message was applied. */
  async #connectOnce(): Promise<boolean> {
    const cert = await this.#in.certificate();
    const token = this.#in.token ? (await this.#in.token()).trim() : undefined;
    if (this.#closed) return false;
    const q = new URLSearchParams({ [DISCOVERY_QUERY.proxy]: this.#in.proxy ?? 'ztunnel' });
    if (this.#in.node !== undefined) q.set(DISCOVERY_QUERY.node, this.#in.node);
    if (this.#version !== undefined) q.set(DISCOVERY_QUERY.since, this.#version);
    const session = http2.connect(`https://${formatHostPort(this.#in.address)}`, {
      ...controlPlaneTlsOptions({ trust: this.#in.trust, serverIdentity: this.#in.serverIdentity, clientCertificate: cert }),
      settings: { initialWindowSize: STREAM_WINDOW },
    });
    this.#session = session;
    let progressed = false;
    try {
      await new Promise<void>((resolve, reject) => {
        let pingTimer: NodeJS.Timeout | undefined;
        const done = (err?: Error) => {
          clearInterval(pingTimer);
          if (err) reject(err);
          else resolve();
        };
        session.once('error', (err) => done(err));
        session.once('close', () => done());
        session.once('connect', () => {
          session.setLocalWindowSize(SESSION_WINDOW);
          pingTimer = setInterval(() => {
            const t = setTimeout(() => session.destroy(new Error('the control plane did not answer a ping')), this.#in.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS);
            session.ping((err) => {
              clearTimeout(t);
              if (err && !session.destroyed) session.destroy(err);
            });
          }, this.#in.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS);
          pingTimer.unref();
        });
        const req = session.request({ ':method': 'GET', ':path': `${DISCOVERY_PATH}?${q}`, ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) });
        req.on('error', (err) => done(err));
        let status = 0;
        const max = this.#in.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
        let parts: Buffer[] = [];
        let partLen = 0;
        const errorBody: Buffer[] = [];
        req.on('response', (h) => {
          status = Number(h[':status']);
          if (status === 200) {
            this.#connected = true;
            this.stats.connects++;
            this.#log.info({ since: this.#version }, 'discovery stream open');
          }
        });
        req.on('data', (chunk: Buffer) => {
          if (status !== 200) {
            if (errorBody.length < 64) errorBody.push(chunk);
            return;
          }
          let start = 0;
          for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
            const piece = chunk.subarray(start, nl);
            const line = partLen === 0 ? piece.toString('utf8') : Buffer.concat([...parts, piece]).toString('utf8');
            parts = [];
            partLen = 0;
            start = nl + 1;
            try {
              if (this.#onLine(line)) progressed = true;
            } catch (err) {
              this.stats.rejected++;
              if (err instanceof ResyncNeeded || err instanceof WireFormatError) {
                this.#log.error({ err: err.message }, 'discovery message refused; keeping the last configuration and asking for a snapshot');
                this.#version = undefined;
              }
              session.destroy();
              done(err as Error);
              return;
            }
          }
          if (start < chunk.length) {
            parts.push(chunk.subarray(start));
            partLen += chunk.length - start;
            if (partLen > max) {
              session.destroy();
              done(new Error(`a discovery message is larger than ${max} bytes`));
            }
          }
        });
        req.on('end', () => {
          if (status !== 200) {
            let msg = Buffer.concat(errorBody).toString('utf8');
            try {
              const e = (JSON.parse(msg) as { error?: { code?: string; message?: string } }).error;
              if (e?.message) msg = `${e.code ?? ''} ${e.message}`.trim();
            } catch {
              // not JSON: keep the text
            }
            session.close();
            done(new Error(`the control plane refused the discovery stream (${status}): ${msg}`));
            return;
          }
          session.close();
          done();
        });
      });
    } finally {
      if (!session.destroyed) session.destroy();
      if (this.#session === session) this.#session = undefined;
    }
    return progressed;
  }

  /** Applies one message; returns whether it changed or confirmed the configuration. */
  #onLine(line: string): boolean {
    if (line.trim() === '') return false;
    const msg = decodeMessage(line, { rootNamespace: this.#rootNamespace ?? DEFAULT_ROOT_NAMESPACE });
    if (!msg || this.#closed) return false;
    switch (msg.type) {
      case 'trustBundle': {
        this.#in.trust.update(msg.roots);
        const key = `${msg.signer}|${msg.roots.join('')}`;
        const changed = this.#bundleKey !== undefined && this.#bundleKey !== key;
        this.#bundleKey = key;
        if (changed) {
          this.#log.info({ signer: msg.signer, roots: msg.roots.length }, 'the ca changed (root or signer rotation)');
          try {
            this.#in.onTrustBundle?.({ roots: msg.roots, signer: msg.signer });
          } catch (err) {
            this.#log.error({ err }, 'the trust bundle listener threw');
          }
        }
        return false;
      }
      case 'resume':
        if (msg.version !== this.#version) throw new ResyncNeeded(`resume at ${msg.version}, but this client holds ${this.#version ?? 'nothing'}`);
        this.stats.resumes++;
        this.#log.info({ version: msg.version, seq: msg.seq }, 'discovery resumed: configuration unchanged');
        return true;
      case 'snapshot':
        this.#apply(msg);
        this.stats.snapshots++;
        this.#emit();
        return true;
      case 'delta':
        if (msg.from !== this.#version) throw new ResyncNeeded(`a delta from ${msg.from}, but this client holds ${this.#version ?? 'nothing'}`);
        this.#apply(msg);
        this.stats.deltas++;
        this.#emit();
        return true;
    }
  }

  #apply(msg: Extract<DecodedMessage, { type: 'snapshot' | 'delta' }>): void {
    const put = (resources: DecodedResources) => {
      for (const kind of RESOURCE_KINDS) {
        const list = resources[kind] as ResourceTypes[typeof kind][] | undefined;
        if (!list) continue;
        const m = this.#resources.get(kind)!;
        for (const r of list) m.set(resourceKey(kind, r), r);
        this.#lists.delete(kind);
      }
    };
    if (msg.type === 'snapshot') {
      for (const m of this.#resources.values()) m.clear();
      this.#lists.clear();
      this.#rootNamespace = msg.rootNamespace;
      put(msg.resources);
    } else {
      for (const kind of msg.replace) {
        this.#resources.get(kind)!.clear();
        this.#lists.delete(kind);
      }
      for (const [kind, keys] of Object.entries(msg.removes) as [ResourceKind, string[]][]) {
        const m = this.#resources.get(kind)!;
        for (const k of keys) m.delete(k);
        this.#lists.delete(kind);
      }
      put(msg.upserts);
    }
    this.#version = msg.version;
  }

  #emit(): void {
    const list = <K extends ResourceKind>(k: K): readonly ResourceTypes[K][] => {
      let l = this.#lists.get(k);
      if (!l) this.#lists.set(k, (l = Object.freeze([...this.#resources.get(k)!.values()])));
      return l as readonly ResourceTypes[K][];
    };
    // Route kinds only when present, as the file source does (configs without them keep their shape).
    const optional = <K extends 'waypointPolicies' | 'requestAuthentications' | 'httpRoutes' | 'grpcRoutes' | 'tcpRoutes' | 'referenceGrants' | 'virtualServices' | 'destinationRules' | 'pendingPods' | 'namespaces'>(k: K) =>
      this.#resources.get(k)!.size > 0 ? { [k]: list(k) } : {};
    const cfg: MeshConfig = Object.freeze({
      ...(this.#rootNamespace !== undefined ? { rootNamespace: this.#rootNamespace } : {}),
      nodes: list('nodes'),
      workloads: list('workloads'),
      services: list('services'),
      authorizationPolicies: list('authorizationPolicies'),
      peerAuthentications: list('peerAuthentications'),
      ...optional('waypointPolicies'),
      ...optional('requestAuthentications'),
      ...optional('httpRoutes'),
      ...optional('grpcRoutes'),
      ...optional('tcpRoutes'),
      ...optional('referenceGrants'),
      ...optional('virtualServices'),
      ...optional('destinationRules'),
      // Node-agent kinds (docs/control-plane.md); absent when the control plane sends none.
      ...optional('pendingPods'),
      ...optional('namespaces'),
    });
    try {
      this.#listener?.(cfg);
    } catch (err) {
      this.#log.error({ err }, 'the config listener threw; the new configuration may be only partly applied');
    }
    if (this.#firstConfig) {
      this.#firstConfig.resolve();
      this.#firstConfig = undefined;
    }
  }
}
