/**
 * The control plane: the CA and the discovery server on one TLS/HTTP/2 port (15012), fed by an
 * object source (manifests now, Kubernetes later) and a node list.
 *
 * Flow: the object source fills the `ManifestStore`; any store or node-list change schedules one
 * conversion (coalesced), `convertManifests` builds the `MeshConfig`, `EncodedState` encodes it
 * and computes what changed, and the `DiscoveryHub` sends that to every proxy. The CA authorizes
 * against the same state, so a pod is signable exactly when its node's ztunnel learns about it.
 */
import http2, { type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type http from 'node:http';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../core/telemetry/log.js';
import { SigningCa } from '../core/identity/plugin-ca.js';
import { SecretManager, type CaClient } from '../core/identity/secret-manager.js';
import type { WorkloadCertificate } from '../core/identity/certificate.js';
import { CA_PATH, DISCOVERY_PATH, RESOURCE_KINDS, controlPlaneIdentity } from '../core/discovery/wire.js';
import { formatProblem, objectRef, refKey, type PodObject, type ObjectProblem, type ServiceObject } from '../core/kube/objects.js';
import { ManifestStore, type ObjectChanges } from '../core/kube/store.js';
import { ManifestConverter, type WaypointResources } from '../core/kube/convert.js';
import { WAYPOINT_CLASS } from '../core/labels.js';
import type { NodeInfo } from '../core/model/types.js';
import { routeStatuses } from '../core/model/route-status.js';
import { waypointBound, type WaypointBoundCondition, type WaypointGateway } from '../core/model/waypoint-status.js';
import { NodeTokenAuthenticator, type Authenticator } from './auth.js';
import { CaService } from './ca-service.js';
import type { ControlPlaneConfig } from './config.js';
import { DiscoveryHub } from './discovery/hub.js';
import { handleDiscovery } from './discovery/handler.js';
import { EncodedState } from './discovery/state.js';
import { adminServer, metricsServer, readinessServer } from './admin.js';
import { refuse, sendError } from './http.js';
import { ManifestDirSource, type ObjectSource } from './manifest-source.js';
import { createControlPlaneMetrics, type ControlPlaneMetrics } from './metrics.js';
import { readNodeList, type NodeList } from './nodes.js';
import { watchPaths } from './watch.js';

/** Everything the control plane is built from; tests swap the sources and the authenticator. */
export interface ControlPlaneInputs {
  readonly config: ControlPlaneConfig;
  readonly logger: Logger;
  /** Objects (default: the manifests at `config.manifestsPath`). */
  readonly objectSource?: ObjectSource;
  /** The node list (default: `config.nodesFile`, re-read on change). */
  readonly nodeList?: () => Promise<NodeList>;
  /** Who a bearer token belongs to (default: the node list's tokens). */
  readonly authenticator?: Authenticator;
  readonly metrics?: ControlPlaneMetrics;
}

export interface ControlPlaneAddresses {
  readonly server: net.AddressInfo;
  readonly admin?: net.AddressInfo;
  readonly metrics?: net.AddressInfo;
  readonly readiness?: net.AddressInfo;
}

function listen(server: net.Server | http.Server, port: number, host: string): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address() as net.AddressInfo);
    });
  });
}

/**
 * A running control plane.
 *
 * @example
 * const cp = await ControlPlane.start({ config: loadConfig(process.env), logger });
 * // ... later
 * await cp.close();
 */
export class ControlPlane {
  readonly store = new ManifestStore();
  readonly state = new EncodedState();
  readonly hub: DiscoveryHub;
  readonly metrics: ControlPlaneMetrics;
  #addresses: ControlPlaneAddresses | undefined;
  readonly #in: ControlPlaneInputs;
  readonly #log: Logger;
  readonly #source: ObjectSource;
  #ca!: SigningCa;
  #nodes: NodeList = { nodes: [], tokens: new Map() };
  #waypointIds = new Set<string>();
  #waypoint: WaypointResources | undefined;
  #conversionProblems: readonly ObjectProblem[] = [];
  #convertScheduled = false;
  readonly #converter = new ManifestConverter();
  // Changes since the last conversion: pods only (key → first prev, latest next) can be patched
  // in; anything else needs a full conversion.
  #pendingPods = new Map<string, { prev?: PodObject; next?: PodObject }>();
  #fullNeeded = true;
  #ready = false;
  #server: Http2SecureServer | undefined;
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #servers: Array<http.Server> = [];
  readonly #stops: Array<() => void> = [];
  readonly #secrets: SecretManager;
  readonly #identity: string;
  #closing: Promise<void> | undefined;
  readonly #configListeners = new Set<() => void>();

  private constructor(inputs: ControlPlaneInputs) {
    this.#in = inputs;
    this.#log = inputs.logger;
    this.metrics = inputs.metrics ?? createControlPlaneMetrics();
    this.#source =
      inputs.objectSource ??
      new ManifestDirSource({
        path: inputs.config.manifestsPath,
        rootNamespace: inputs.config.rootNamespace,
        debounceMs: inputs.config.manifestsDebounceMs,
        logger: inputs.logger.child({ scope: 'manifests' }),
        onError: () => this.metrics.reloadErrors.inc({ source: 'manifests' }),
      });
    this.hub = new DiscoveryHub(this.state, {
      logger: inputs.logger.child({ scope: 'discovery' }),
      historySize: inputs.config.historySize,
      slowClientTimeoutMs: inputs.config.slowClientTimeoutMs,
      onPush: (type, bytes) => {
        this.metrics.pushes.inc({ type });
        this.metrics.pushBytes.inc({ type }, bytes);
      },
      onDrop: (reason) => this.metrics.droppedProxies.inc({ reason }),
    });
    this.metrics.setConnectedProxies(() => {
      const counts: Record<string, number> = { ztunnel: 0, waypoint: 0 };
      for (const s of this.hub.list()) counts[s.proxy] = (counts[s.proxy] ?? 0) + 1;
      return counts;
    });
    this.#identity = controlPlaneIdentity(inputs.config.trustDomain);
    // The serving certificate comes from our own CA, renewed at half-life like any workload's.
    const selfCa: CaClient = {
      sign: async (csrPem, identity) => {
        const signed = this.#ca.sign(csrPem, { expectedIdentity: identity });
        return { certChainPem: signed.certChainPem, rootsPem: [...this.#ca.rootsPem] };
      },
    };
    this.#secrets = new SecretManager({ caClient: selfCa, logger: inputs.logger.child({ scope: 'serving-cert' }) });
  }

  /**
   * Loads the CA, the node list and the objects, binds every listener, and resolves once ready.
   *
   * @throws InvalidCaRootError, ConfigError (node list), or a listen error; nothing stays bound.
   */
  static async start(inputs: ControlPlaneInputs): Promise<ControlPlane> {
    const cp = new ControlPlane(inputs);
    try {
      await cp.#start();
    } catch (err) {
      await cp.close();
      throw err;
    }
    return cp;
  }

  get addresses(): ControlPlaneAddresses {
    // invariant: `ControlPlane.start` sets the addresses before it returns the instance.
    if (!this.#addresses) throw new Error('the control plane is not started');
    return this.#addresses;
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** The current signer. */
  get ca(): SigningCa {
    return this.#ca;
  }

  get nodes(): readonly NodeInfo[] {
    return this.#nodes.nodes;
  }

  /** Problems of the objects as read and as converted. */
  problems(): ObjectProblem[] {
    return [...this.#source.problems(), ...this.#conversionProblems];
  }

  /** Called after every conversion (the status writer compares statuses then). */
  onConfig(listener: () => void): () => void {
    this.#configListeners.add(listener);
    return () => this.#configListeners.delete(listener);
  }

  /** The raw resources waypoints read, as of the last conversion. */
  get waypointResources(): WaypointResources | undefined {
    return this.#waypoint;
  }

  async #start(): Promise<void> {
    const { config } = this.#in;
    await this.reloadCa();
    await this.reloadNodes();
    this.#stops.push(
      await watchPaths(
        [config.caCertFile, config.caKeyFile, ...(config.caChainFile ? [config.caChainFile] : []), ...(config.trustBundleFile ? [config.trustBundleFile] : [])],
        () => this.reloadCa().catch(() => undefined),
        { logger: this.#log },
      ),
    );
    if (!this.#in.nodeList) {
      this.#stops.push(await watchPaths([config.nodesFile], () => this.reloadNodes().catch(() => undefined), { logger: this.#log }));
    }
    this.store.onChange((change) => this.#onStoreChange(change));
    await this.#source.start(this.store);
    this.#convert();

    const cert = await this.#secrets.fetch(this.#identity);
    const server = http2.createSecureServer({
      ...this.#tlsOptions(cert),
      requestCert: true,
      // Callers of the CA have no certificate yet (they authenticate with a token); discovery
      // checks `socket.authorized` itself.
      rejectUnauthorized: false,
      allowHTTP1: false,
      maxSessionMemory: 64,
      settings: { maxConcurrentStreams: 1000 },
    });
    this.#server = server;
    this.#secrets.onRotate((c) => {
      server.setSecureContext(this.#tlsOptions(c));
      this.#log.info({ not_after: c.notAfter.toISOString() }, 'serving certificate renewed');
    });
    server.on('session', (session) => {
      this.#sessions.add(session);
      session.on('close', () => this.#sessions.delete(session));
      session.on('error', (err) => this.#log.debug({ err }, 'control-plane session error'));
    });
    server.on('tlsClientError', (err) => this.#log.debug({ err }, 'tls handshake with a client failed'));
    const authenticator = this.#in.authenticator ?? new NodeTokenAuthenticator(() => this.#nodes.tokens);
    const caService = new CaService({
      trustDomain: config.trustDomain,
      authenticator,
      ca: () => this.#ca,
      mesh: () => (this.state.loaded ? this.state.mesh : undefined),
      metrics: this.metrics,
      logger: this.#log.child({ scope: 'ca' }),
    });
    const discoveryLog = this.#log.child({ scope: 'discovery' });
    server.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      const path = (headers[':path'] ?? '').split('?')[0];
      if (path === CA_PATH) return caService.handle(stream, headers);
      if (path === DISCOVERY_PATH) {
        void handleDiscovery(stream, headers, {
          trustDomain: config.trustDomain,
          authenticator,
          hub: this.hub,
          ready: () => this.state.loaded,
          isWaypoint: (id) => this.#waypointIds.has(id),
          metrics: this.metrics,
          logger: discoveryLog,
        });
        return;
      }
      sendError(stream, refuse('notFound', `no such endpoint ${JSON.stringify(path)}; use POST ${CA_PATH} or GET ${DISCOVERY_PATH}`));
    });
    const addresses: { -readonly [K in keyof ControlPlaneAddresses]: ControlPlaneAddresses[K] } = {
      server: await listen(server, config.port, config.address),
    };
    const bind = async (name: 'admin' | 'metrics' | 'readiness', s: http.Server, port: number, host: string) => {
      if (port === 0) return;
      this.#servers.push(s);
      addresses[name] = await listen(s, port, host);
    };
    await bind(
      'admin',
      adminServer({
        logger: this.#log,
        connections: () => ({ version: this.state.version, seq: this.state.seq, proxies: this.hub.list() }),
        status: () => this.#status(),
        configDump: () => ({ version: this.state.version, seq: this.state.seq, ...(this.state.mesh.toJSON() as object) }),
      }),
      config.adminPort,
      config.adminAddress,
    );
    await bind('metrics', metricsServer(this.metrics.registry), config.metricsPort, config.statsAddress);
    await bind('readiness', readinessServer(() => this.#ready), config.readinessPort, config.statsAddress);
    this.#addresses = addresses;
    this.#ready = true;
    this.#log.info({ listeners: addresses, version: this.state.version, resources: this.state.size }, 'control plane ready');
  }

  #tlsOptions(cert: WorkloadCertificate): { key: string; cert: string; ca: string[]; minVersion: 'TLSv1.3'; ALPNProtocols: string[] } {
    return { key: cert.keyPem, cert: cert.certChainPem.join('\n'), ca: [...this.#ca.rootsPem], minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] };
  }

  /**
   * Re-reads the CA files. A bad set is logged and the current signer stays. When the roots or
   * the signing certificate changed, the serving certificate is re-issued and every proxy is
   * sent the new trust bundle.
   */
  async reloadCa(): Promise<void> {
    const { config } = this.#in;
    let ca: SigningCa;
    try {
      ca = await SigningCa.load({
        trustDomain: config.trustDomain,
        certFile: config.caCertFile,
        keyFile: config.caKeyFile,
        ...(config.caChainFile ? { chainFile: config.caChainFile } : {}),
        ...(config.trustBundleFile ? { bundleFile: config.trustBundleFile } : {}),
        ttlSeconds: config.certTtlSeconds,
      });
    } catch (err) {
      if (!this.#ca) throw err;
      this.metrics.reloadErrors.inc({ source: 'ca' });
      this.#log.error({ err }, 'the ca files were rejected; the current ca keeps signing');
      return;
    }
    const prev = this.#ca;
    if (prev && prev.signer === ca.signer && prev.rootsPem.join('') === ca.rootsPem.join('')) return;
    this.#ca = ca;
    this.#log.info({ signer: ca.signer, roots: ca.rootsPem.length, intermediates: ca.intermediatesPem.length, not_after: ca.notAfter.toISOString() }, prev ? 'ca reloaded' : 'ca loaded');
    this.hub.setTrustBundle({ roots: ca.rootsPem, signer: ca.signer });
    if (prev && this.#server) {
      // New trust for client certificates at once; a serving certificate under the new signer next.
      this.#secrets.forget(this.#identity);
      const cert = await this.#secrets.fetch(this.#identity);
      this.#server.setSecureContext(this.#tlsOptions(cert));
    }
  }

  /** Re-reads the node list (a bad file keeps the last good one). */
  async reloadNodes(): Promise<void> {
    let list: NodeList;
    try {
      list = await (this.#in.nodeList ?? (() => readNodeList(this.#in.config.nodesFile)))();
    } catch (err) {
      if (!this.#ready && this.#nodes.nodes.length === 0 && this.#nodes.tokens.size === 0 && !this.state.loaded) throw err;
      this.metrics.reloadErrors.inc({ source: 'nodes' });
      this.#log.error({ err }, 'the node list was rejected; keeping the last good one');
      return;
    }
    this.#nodes = list;
    this.#log.info({ nodes: list.nodes.map((n) => n.name) }, 'node list loaded');
    this.#fullNeeded = true;
    if (this.state.loaded) this.#scheduleConvert();
  }

  #onStoreChange(change: ObjectChanges): void {
    for (const { prev, next } of change.upserted) {
      if (next.kind !== 'Pod' || (prev && prev.kind !== 'Pod')) {
        this.#fullNeeded = true;
        continue;
      }
      const key = refKey(objectRef(next));
      const seen = this.#pendingPods.get(key);
      // The state the last conversion saw is the first `prev`; the state to convert is the latest.
      const first = seen ? seen.prev : (prev as PodObject | undefined);
      this.#pendingPods.set(key, first ? { prev: first, next } : { next });
    }
    for (const o of change.deleted) {
      if (o.kind !== 'Pod') {
        this.#fullNeeded = true;
        continue;
      }
      const key = refKey(objectRef(o));
      const seen = this.#pendingPods.get(key);
      const prev = seen ? seen.prev : o;
      if (prev) this.#pendingPods.set(key, { prev });
      else this.#pendingPods.delete(key); // added and removed before any conversion saw it
    }
    this.#scheduleConvert();
  }

  #scheduleConvert(): void {
    if (this.#convertScheduled) return;
    this.#convertScheduled = true;
    // Coalesces a burst of store changes (one directory re-read, or a batch apply) into one version.
    setImmediate(() => {
      this.#convertScheduled = false;
      if (this.#closing) return;
      this.#convert();
    });
  }

  #convert(): void {
    const started = performance.now();
    const pods = [...this.#pendingPods.values()];
    const full = this.#fullNeeded;
    this.#pendingPods = new Map();
    this.#fullNeeded = false;
    let result: ReturnType<ManifestConverter['convert']>;
    try {
      result =
        (!full ? this.#converter.updatePods(pods) : undefined) ??
        this.#converter.convert({
          objects: this.store.sortedObjects(),
          sorted: true,
          nodes: this.#nodes.nodes,
          trustDomain: this.#in.config.trustDomain,
          rootNamespace: this.#in.config.rootNamespace,
        });
    } catch (err) {
      // Invariant: conversion turns every bad object into a problem on that object, so a throw is a
      // bug in the mesh. It must not take the control plane down (one object from one namespace
      // would crash-loop it): the last published configuration keeps being served, and the next
      // change converts the whole store again.
      this.#fullNeeded = true;
      this.metrics.convertFailures.inc();
      this.#log.error({ err }, 'configuration conversion failed; the last published configuration stays (a bug in the mesh: report it with the objects involved)');
      return;
    }
    this.#conversionProblems = result.problems;
    this.#waypoint = result.waypoint;
    const td = this.#in.config.trustDomain;
    this.#waypointIds = new Set(
      result.waypoint.gateways.filter((g) => g.gatewayClassName === WAYPOINT_CLASS).map((g) => `spiffe://${td}/ns/${g.meta.namespace}/sa/${g.meta.name}`),
    );
    const specs = new Map<string, unknown>();
    const w = result.waypoint;
    for (const o of w.authorizationPolicies) specs.set(`waypointPolicies/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    for (const o of w.requestAuthentications) specs.set(`requestAuthentications/${o.meta.namespace}/${o.meta.name}`, o.raw.spec ?? {});
    for (const o of w.httpRoutes) specs.set(`httpRoutes/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    for (const o of w.grpcRoutes) specs.set(`grpcRoutes/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    for (const o of w.tcpRoutes) specs.set(`tcpRoutes/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    for (const o of w.referenceGrants) specs.set(`referenceGrants/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    for (const o of w.virtualServices) specs.set(`virtualServices/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    for (const o of w.destinationRules) specs.set(`destinationRules/${o.meta.namespace}/${o.meta.name}`, o.raw.spec);
    const delta = this.state.update(result.config, (kind, key) => specs.get(`${kind}/${key}`));
    this.hub.publish(delta);
    this.metrics.convertDuration.observe((performance.now() - started) / 1000);
    this.metrics.configSeq.set(this.state.seq);
    for (const kind of RESOURCE_KINDS) this.metrics.configResources.set({ kind }, this.state.entries(kind).size);
    const problems = this.problems();
    for (const severity of ['error', 'warning', 'info'] as const) {
      this.metrics.objectProblems.set({ severity }, problems.filter((p) => p.severity === severity).length);
    }
    if (delta) {
      const changed = Object.fromEntries([...delta.changed].map(([k, v]) => [k, v.size]));
      this.#log.info({ version: delta.to, seq: delta.seq, changed, duration_ms: Math.round(performance.now() - started), proxies: this.hub.size }, 'configuration published');
    }
    for (const l of this.#configListeners) l();
  }

  #status(): unknown {
    const problems = this.problems();
    return {
      version: this.state.version,
      seq: this.state.seq,
      objects: this.store.size,
      nodes: this.#nodes.nodes.map((n) => n.name),
      ca: { signer: this.#ca?.signer, roots: this.#ca?.rootsPem.length, notAfter: this.#ca?.notAfter.toISOString() },
      problems: problems.map((p) => ({ ...p, text: formatProblem(p) })),
      // What a cluster's status writer puts on the objects (control-plane/kubernetes/status.ts), for
      // the lab and the manifests directory, where nothing is written back.
      routeStatus: this.state.loaded ? routeStatuses(this.state.mesh) : [],
      waypointBound: this.#waypointBindings(),
    };
  }

  /** `istio.io/WaypointBound` of every Service that asks for a waypoint, as the status writer computes it. */
  #waypointBindings(): Array<{ namespace: string; name: string; condition: WaypointBoundCondition }> {
    const namespaceLabels = new Map<string, Readonly<Record<string, string>>>();
    const gateways = new Map<string, WaypointGateway>();
    const services: ServiceObject[] = [];
    for (const o of this.store.objects()) {
      if (o.kind === 'Namespace') namespaceLabels.set(o.meta.name, o.meta.labels);
      else if (o.kind === 'Gateway') gateways.set(`${o.meta.namespace}/${o.meta.name}`, { gatewayClassName: o.gatewayClassName, waypointFor: o.waypointFor });
      else if (o.kind === 'Service') services.push(o);
    }
    const out: Array<{ namespace: string; name: string; condition: WaypointBoundCondition }> = [];
    for (const s of services) {
      const ns = s.meta.namespace as string;
      const condition = waypointBound({
        namespace: ns,
        name: s.meta.name,
        labels: s.meta.labels,
        namespaceLabels: namespaceLabels.get(ns) ?? {},
        gateway: (gns, gname) => gateways.get(`${gns}/${gname}`),
        bound: this.state.loaded && this.state.mesh.serviceByName(ns, s.meta.name)?.waypoint !== undefined,
      });
      if (condition) out.push({ namespace: ns, name: s.meta.name, condition });
    }
    return out;
  }

  /**
   * Stops listening and ends every stream (proxies keep their configuration and reconnect).
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#ready = false;
      for (const stop of this.#stops) stop();
      await this.#source.close();
      this.hub.close();
      this.#secrets.close();
      const closing: Promise<void>[] = [];
      if (this.#server) {
        const s = this.#server;
        closing.push(new Promise((r) => s.close(() => r())));
      }
      for (const session of this.#sessions) session.destroy();
      for (const s of this.#servers) {
        closing.push(new Promise((r) => s.close(() => r())));
        s.closeAllConnections();
      }
      await Promise.all(closing);
    })();
    return this.#closing;
  }
}
