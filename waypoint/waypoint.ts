import type net from 'node:net';
import http from 'node:http';
import type { Logger } from '../core/telemetry/log.js';
import { createTcpMetrics, type TcpMetrics } from '../core/telemetry/metrics.js';
import { createHttpMetrics, type HttpMetrics } from './http-metrics.js';
import { DrainTracker } from '../core/drain.js';
import { HboneClient, type CertificateSource } from '../core/hbone/client.js';
import { HboneServer } from '../core/hbone/server.js';
import { sniForIdentity } from '../core/hbone/tls.js';
import { MeshState } from '../core/model/state.js';
import type { Workload } from '../core/model/types.js';
import type { ConfigSource } from '../core/model/source.js';
import type { WaypointConfig } from './config.js';
import { listenOps } from '../core/telemetry/admin.js';
import { Downstream } from './downstream.js';
import { Inbound } from './inbound.js';
import { UpstreamPool } from './upstream.js';
import { buildPipeline } from './pipeline.js';
import { createRetryMetrics } from './filters/retry.js';
import { routeStatuses } from '../core/model/route-status.js';
import { GATEWAY_NAME_LABEL } from '../core/labels.js';
import { handleUpgrade } from './upgrade.js';
import type { GatewayRef } from './authz.js';
import { JwksFetcher } from './jwt.js';
import { TrafficPolicies } from './traffic-policy/cluster.js';

export interface WaypointInputs {
  readonly config: WaypointConfig;
  readonly logger: Logger;
  /** Workloads, services, routes and policies (the file source today, the control plane later). */
  readonly configSource: ConfigSource;
  /** The waypoint's certificate (the secret manager). */
  readonly certificates: CertificateSource & { close?(): void };
  readonly metrics?: TcpMetrics;
  /** Randomness for splits, faults and back-off; injectable for tests. */
  readonly random?: () => number;
}

export interface WaypointAddresses {
  readonly hbone: net.AddressInfo;
  readonly admin?: net.AddressInfo;
  readonly metrics?: net.AddressInfo;
  readonly readiness?: net.AddressInfo;
}

/**
 * The L7 proxy: HBONE in on 15008 with its own identity, HTTP routing/policy/resilience in the
 * middle, HBONE out to the chosen endpoint's ztunnel.
 */
export class Waypoint {
  readonly addresses: WaypointAddresses;
  readonly metrics: TcpMetrics;
  readonly httpMetrics: HttpMetrics;
  readonly hbone: HboneClient;
  readonly #in: WaypointInputs;
  readonly #drain: DrainTracker;
  readonly #hboneServer: HboneServer;
  readonly #servers: http.Server[];
  readonly #pool: UpstreamPool;
  readonly #downstream: Downstream;
  readonly #stateRef: { current: MeshState };
  readonly #whoami: () => { identity: string; gateway: GatewayRef };
  readonly #jwks: JwksFetcher;
  readonly #traffic: TrafficPolicies;
  #ready = false;
  #stopping: Promise<void> | undefined;
  #stoppedResolve!: () => void;
  /** Resolves when a shutdown (signal, /quitquitquit, or a call) has finished. */
  readonly stopped = new Promise<void>((resolve) => (this.#stoppedResolve = resolve));

  private constructor(inputs: WaypointInputs, parts: {
    addresses: WaypointAddresses;
    metrics: TcpMetrics;
    httpMetrics: HttpMetrics;
    hbone: HboneClient;
    drain: DrainTracker;
    hboneServer: HboneServer;
    servers: http.Server[];
    pool: UpstreamPool;
    downstream: Downstream;
    stateRef: { current: MeshState };
    whoami: () => { identity: string; gateway: GatewayRef };
    jwks: JwksFetcher;
    traffic: TrafficPolicies;
  }) {
    this.#in = inputs;
    this.addresses = parts.addresses;
    this.metrics = parts.metrics;
    this.httpMetrics = parts.httpMetrics;
    this.hbone = parts.hbone;
    this.#drain = parts.drain;
    this.#hboneServer = parts.hboneServer;
    this.#servers = parts.servers;
    this.#pool = parts.pool;
    this.#downstream = parts.downstream;
    this.#stateRef = parts.stateRef;
    this.#whoami = parts.whoami;
    this.#jwks = parts.jwks;
    this.#traffic = parts.traffic;
  }

  /** Loads config, binds the listeners, resolves once ready to serve. */
  static async start(inputs: WaypointInputs): Promise<Waypoint> {
    const { config, logger } = inputs;
    const metrics = inputs.metrics ?? createTcpMetrics();
    const httpMetrics = createHttpMetrics(metrics.registry);
    const drain = new DrainTracker();
    const stateRef = { current: MeshState.empty() };
    const self = (): Workload | undefined => stateRef.current.workloadByIp(config.address);
    const jwks = new JwksFetcher({ refreshMs: config.jwksRefreshMs, fetchTimeoutMs: config.jwksFetchTimeoutMs, logger: logger.child({ scope: 'jwks' }) });
    await inputs.configSource.start((cfg) => {
      stateRef.current = new MeshState(cfg);
      jwks.sync(cfg.requestAuthentications ?? []);
      const me = self();
      if (!me) logger.error({ address: config.address }, 'no workload in the config has the waypoint address; the waypoint has no identity and refuses every connection');
      logger.info(
        { services: cfg.services.length, httpRoutes: cfg.httpRoutes?.length ?? 0, virtualServices: cfg.virtualServices?.length ?? 0, policies: cfg.waypointPolicies?.length ?? 0 },
        'configuration updated',
      );
    });
    const identity = (): string => {
      const me = self();
      return me ? stateRef.current.workloadIdentity(me) : '';
    };
    const gateway = (): GatewayRef => {
      const me = self();
      return {
        name: config.gatewayName || me?.labels[GATEWAY_NAME_LABEL] || me?.name || '',
        namespace: me?.namespace ?? '',
      };
    };
    const hbone = new HboneClient({ certificates: inputs.certificates, logger: logger.child({ scope: 'hbone-client' }) });
    const pool = new UpstreamPool({
      hbone,
      identity,
      baggage: () => {
        const me = self();
        return me ? `k8s.namespace.name=${me.namespace},k8s.workload.name=${me.name},k8s.node.name=${me.node}` : '';
      },
    });
    // DestinationRule traffic policies: per-cluster state (balancers, limits, ejections), shown in /config_dump.
    const traffic = new TrafficPolicies(inputs.random ? { random: inputs.random } : {});
    const handler = buildPipeline({
      gateway,
      pool,
      traffic,
      metrics: httpMetrics,
      retryMetrics: createRetryMetrics(metrics.registry),
      jwks,
      logger: logger.child({ scope: 'access' }),
      ...(inputs.random ? { random: inputs.random } : {}),
    });
    const upgradeInputs = { pool, gateway, logger: logger.child({ scope: 'access' }), jwks };
    const downstream = new Downstream(handler, (info, req, socket, head) => void handleUpgrade(upgradeInputs, info, req, socket, head));
    const inbound = new Inbound({
      state: () => stateRef.current,
      gateway,
      downstream,
      pool,
      drain,
      tcpMetrics: metrics,
      logger: logger.child({ scope: 'access' }),
    });
    const hboneServer = new HboneServer({
      certificates: inputs.certificates,
      logger: logger.child({ scope: 'hbone-server' }),
      trustDomain: config.trustDomain,
      // The waypoint presents only its own identity, whatever a client asks for.
      identityForSni: (sni) => {
        const id = identity();
        return id !== '' && sni === sniForIdentity(id) ? id : undefined;
      },
      onStream: inbound.onStream,
    });
    const servers: http.Server[] = [];
    const addresses: Record<string, net.AddressInfo> = {};
    let wp: Waypoint | undefined;
    try {
      addresses.hbone = await hboneServer.listen(config.hbonePort, config.address);
      const ops = await listenOps({
        logger,
        registry: metrics.registry,
        target: () => wp,
        adminAddress: config.adminAddress,
        statsAddress: config.statsAddress,
        adminPort: config.adminPort,
        metricsPort: config.metricsPort,
        readinessPort: config.readinessPort,
      });
      servers.push(...ops.servers);
      Object.assign(addresses, ops.addresses);
    } catch (err) {
      jwks.close();
      hboneServer.close();
      for (const s of servers) s.close();
      await inputs.configSource.close();
      throw err;
    }
    wp = new Waypoint(inputs, {
      addresses: addresses as unknown as WaypointAddresses,
      metrics,
      httpMetrics,
      hbone,
      drain,
      hboneServer,
      servers,
      pool,
      downstream,
      stateRef,
      whoami: () => ({ identity: identity(), gateway: gateway() }),
      jwks,
      traffic,
    });
    wp.#ready = true;
    logger.info({ identity: identity(), gateway: gateway(), listeners: addresses }, 'waypoint ready');
    return wp;
  }

  get ready(): boolean {
    return this.#ready;
  }

  get state(): MeshState {
    return this.#stateRef.current;
  }

  /** Tunnelled streams (HTTP and TCP) currently open. */
  get openStreams(): number {
    return this.#drain.size;
  }

  configDump(): unknown {
    const state = this.state;
    return {
      ...this.#whoami(),
      address: this.#in.config.address,
      listeners: this.addresses,
      openStreams: this.#drain.size,
      hbonePool: this.hbone.dump(),
      upstreams: this.#pool.dump(),
      trafficPolicy: this.#traffic.dump(),
      routeStatus: routeStatuses(state),
      jwks: this.#jwks.dump(),
      ...(state.toJSON() as object),
    };
  }

  /**
   * Graceful shutdown: readiness fails, HBONE clients get GOAWAY, idle tunnelled connections
   * close and busy ones close after their current request; after `drainTimeoutMs` the rest are
   * closed.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= (async () => {
      const log = this.#in.logger;
      this.#ready = false;
      log.info({ open: this.#drain.size, deadline_ms: this.#in.config.drainTimeoutMs }, 'draining');
      for (const s of this.#servers) s.close();
      this.#hboneServer.drain();
      const { forced } = await this.#drain.drain(this.#in.config.drainTimeoutMs);
      if (forced > 0) log.warn({ forced }, 'drain deadline reached; closed the remaining connections');
      this.#pool.close();
      this.#jwks.close();
      this.hbone.close();
      this.#hboneServer.close();
      this.#downstream.http1.closeAllConnections();
      for (const s of this.#servers) s.closeAllConnections();
      await this.#in.configSource.close();
      this.#in.certificates.close?.();
      log.info('waypoint stopped');
      this.#stoppedResolve();
    })();
    return this.#stopping;
  }
}
