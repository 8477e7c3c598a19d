import net from 'node:net';
import { rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import type { Logger } from '../core/telemetry/log.js';
import { MeshError } from '../core/errors.js';
import { createTcpMetrics, type TcpMetrics } from '../core/telemetry/metrics.js';
import { DrainTracker } from '../core/drain.js';
import { HboneClient, type CertificateSource } from '../core/hbone/client.js';
import { HboneServer } from '../core/hbone/server.js';
import { MeshState } from '../core/model/state.js';
import type { ConfigSource } from '../core/model/source.js';
import type { ZtunnelConfig } from './config.js';
import { Outbound } from './proxy/outbound.js';
import { Inbound } from './proxy/inbound.js';
import { outboundCaptureServer, socks5Server } from './proxy/listeners.js';
import type { ProxyInputs } from './proxy/inputs.js';
import { listenOps } from '../core/telemetry/admin.js';
import { listen } from '../core/net/listen.js';
import { takeOverPorts, type PortClaim } from './handover.js';
import { IdentityRetention } from './identities.js';

/** READY_FILE could not be written, so the kubelet's exec probe would never see ztunnel ready. */
export class ReadyFileError extends MeshError {
  constructor(path: string, cause: unknown) {
    super(
      'ERR_READY_FILE',
      `cannot write READY_FILE ${path} (${(cause as NodeJS.ErrnoException)?.code ?? 'error'}); check the path and that its volume is mounted writable`,
      { cause },
    );
  }
}

export interface ZtunnelInputs {
  readonly config: ZtunnelConfig;
  readonly logger: Logger;
  /** Workloads, services and policies (the file source today, the control plane later). */
  readonly configSource: ConfigSource;
  /** Workload certificates (the secret manager). */
  readonly certificates: CertificateSource & {
    close?(): void;
    onRotate?(listener: (cert: { identity: string; notBefore: Date; notAfter: Date }) => void): () => void;
    /**
     * Stops renewing an identity no meshed workload on this node has any more (ztunnel/identities.ts).
     * Without it, every identity ever used here stays renewed.
     */
    forget?(identity: string): void;
  };
  /**
   * Identities ztunnel holds for itself in the same certificate source (its control-plane
   * identity): never forgotten, whatever the configuration says.
   */
  readonly ownIdentities?: readonly string[];
  readonly metrics?: TcpMetrics;
  /** Plain TCP connections to workloads; swappable in tests. */
  readonly connectTcp?: (opts: net.NetConnectOpts) => net.Socket;
  /**
   * With outbound capture on: resolves when the eBPF hooks that hand over original destinations
   * are in place (ztunnel/redirection.ts), throws saying what is missing. Retried until
   * `redirectionWaitMs`, since the node agent may start after ztunnel.
   */
  readonly checkRedirection?: () => Promise<void>;
}

export interface ZtunnelAddresses {
  readonly outbound?: net.AddressInfo;
  readonly inbound?: net.AddressInfo;
  readonly socks5?: net.AddressInfo;
  readonly admin?: net.AddressInfo;
  readonly metrics?: net.AddressInfo;
  readonly readiness?: net.AddressInfo;
}

/** The per-node L4 proxy: its listeners, its state, its drain. */
export class Ztunnel {
  readonly addresses: ZtunnelAddresses;
  readonly hbone: HboneClient;
  readonly metrics: TcpMetrics;
  readonly #in: ZtunnelInputs;
  readonly #drain: DrainTracker;
  readonly #hboneServer: HboneServer;
  readonly #servers: Array<net.Server | http.Server>;
  #stateRef: { current: MeshState };
  /** The identities held and which of them are still needed; also feeds /config_dump. */
  readonly #identities: IdentityRetention;
  #ready = false;
  #stopping: Promise<void> | undefined;
  #stoppedResolve!: () => void;
  /** Resolves when a shutdown (signal, /quitquitquit, or a call) has finished. */
  readonly stopped = new Promise<void>((resolve) => (this.#stoppedResolve = resolve));

  private constructor(
    inputs: ZtunnelInputs,
    parts: {
      addresses: ZtunnelAddresses;
      hbone: HboneClient;
      metrics: TcpMetrics;
      drain: DrainTracker;
      hboneServer: HboneServer;
      servers: Array<net.Server | http.Server>;
      stateRef: { current: MeshState };
      identities: IdentityRetention;
    },
  ) {
    this.#in = inputs;
    this.addresses = parts.addresses;
    this.hbone = parts.hbone;
    this.metrics = parts.metrics;
    this.#drain = parts.drain;
    this.#hboneServer = parts.hboneServer;
    this.#servers = parts.servers;
    this.#stateRef = parts.stateRef;
    this.#identities = parts.identities;
  }

  /** Loads config, binds every enabled listener, and resolves once ready to serve. */
  static async start(inputs: ZtunnelInputs): Promise<Ztunnel> {
    const { config, logger } = inputs;
    // A file left by a previous container of this pod (the volume outlives it) says nothing of this one.
    if (config.readyFile) await rm(config.readyFile, { force: true }).catch(() => undefined);
    const metrics = inputs.metrics ?? createTcpMetrics();
    const drain = new DrainTracker();
    const stateRef = { current: MeshState.empty() };
    const source = inputs.certificates;
    const identitiesLog = logger.child({ scope: 'identities' });
    const identities = new IdentityRetention({
      nodeName: config.nodeName,
      graceMs: config.certRetentionMs,
      forget: source.forget ? (id) => source.forget!(id) : undefined,
      // Certificates of the node's workloads are requested as soon as a snapshot schedules them
      // here, so connections never wait on the CA (nor fail while it is away) once they exist.
      // A CA failure is the secret manager's to log and retry with backoff; anything else (an
      // identity the manager refuses outright) would otherwise go unseen until a connection.
      prefetch: (id) =>
        void source.fetch(id).catch((err: MeshError) => {
          if (err?.code !== 'ERR_CERT_UNAVAILABLE') identitiesLog.warn({ identity: id, err }, 'cannot prefetch the certificate of a workload identity');
        }),
      pinned: inputs.ownIdentities ?? [],
      logger: identitiesLog,
    });
    if (!source.forget) {
      logger.warn('the certificate source cannot forget identities: certificates of workloads that left this node stay renewed');
    }
    // Before the config source starts: in control-plane mode it fetches ztunnel's own certificate.
    source.onRotate?.((c) => identities.issued(c));
    // Every certificate the data path asks for goes through here, so a use postpones forgetting.
    const certificates: CertificateSource = {
      fetch: (identity) => {
        identities.used(identity);
        return source.fetch(identity);
      },
    };
    await inputs.configSource.start((cfg) => {
      stateRef.current = new MeshState(cfg);
      // The one place snapshots are swapped, so the one place identities are reviewed.
      identities.update(stateRef.current);
      logger.info(
        { workloads: cfg.workloads.length, services: cfg.services.length, policies: cfg.authorizationPolicies.length },
        'configuration updated',
      );
    });
    const hbone = new HboneClient({ certificates, logger: logger.child({ scope: 'hbone-client' }) });
    const proxy: ProxyInputs = {
      config,
      state: () => stateRef.current,
      certificates,
      hbone,
      metrics,
      drain,
      logger: logger.child({ scope: 'access' }),
      connectTcp: inputs.connectTcp ?? ((o) => net.connect(o)),
    };
    const outbound = new Outbound(proxy);
    const inbound = new Inbound(proxy);
    const hboneServer = new HboneServer({
      certificates,
      logger: logger.child({ scope: 'hbone-server' }),
      trustDomain: config.trustDomain,
      identityForSni: inbound.identityForSni,
      onStream: inbound.onStream,
      onReject: inbound.onReject,
    });

    if (config.handover) {
      try {
        await takeOverPorts({ claims: portClaims(config), quitUrl: quitUrl(config), timeoutMs: config.handoverTimeoutMs, logger: logger.child({ scope: 'handover' }) });
      } catch (err) {
        hboneServer.close();
        identities.close();
        await inputs.configSource.close();
        throw err;
      }
    }
    const servers: Array<net.Server | http.Server> = [];
    const addresses: Record<string, net.AddressInfo> = {};
    let zt: Ztunnel | undefined;
    const bind = async (name: keyof ZtunnelAddresses, server: net.Server | http.Server, port: number, host: string) => {
      if (port === 0) return;
      servers.push(server);
      addresses[name] = await listen(server, port, host);
    };
    try {
      addresses.inbound = await hboneServer.listen(config.inboundPort, config.address);
      await bind('outbound', outboundCaptureServer(proxy, outbound), config.outboundPort, config.address);
      await bind('socks5', socks5Server(proxy, outbound), config.socks5Port, config.address);
      const ops = await listenOps({
        logger,
        registry: metrics.registry,
        target: () => zt,
        adminAddress: config.adminAddress,
        statsAddress: config.statsAddress,
        adminPort: config.adminPort,
        metricsPort: config.metricsPort,
        readinessPort: config.readinessPort,
      });
      servers.push(...ops.servers);
      Object.assign(addresses, ops.addresses);
    } catch (err) {
      hboneServer.close();
      for (const s of servers) s.close();
      identities.close();
      await inputs.configSource.close();
      throw err;
    }
    zt = new Ztunnel(inputs, { addresses, hbone, metrics, drain, hboneServer, servers, stateRef, identities });
    if (config.outboundPort !== 0 && inputs.checkRedirection) {
      try {
        await retryUntil(inputs.checkRedirection, config.redirectionWaitMs, (err) =>
          logger.warn({ code: (err as MeshError).code }, `${(err as Error).message}; waiting`),
        );
      } catch (err) {
        await zt.#closeNow();
        throw err;
      }
    }
    if (config.readyFile) {
      try {
        await writeFile(config.readyFile, `${process.pid}\n`);
      } catch (err) {
        await zt.#closeNow();
        throw new ReadyFileError(config.readyFile, err);
      }
    }
    zt.#ready = true;
    logger.info({ node: config.nodeName, listeners: addresses }, 'ztunnel ready');
    return zt;
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** The current configuration snapshot. */
  get state(): MeshState {
    return this.#stateRef.current;
  }

  /** Open proxied connections. */
  get openConnections(): number {
    return this.#drain.size;
  }

  /** TCP connections currently open on the HBONE listener (tests check nothing leaks). */
  inboundConnectionCount(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.#hboneServer.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
  }

  configDump(): unknown {
    return {
      node: this.#in.config.nodeName,
      trustDomain: this.#in.config.trustDomain,
      listeners: this.addresses,
      openConnections: this.#drain.size,
      hbonePool: this.hbone.dump(),
      certificates: this.#identities.dump(),
      ...(this.state.toJSON() as object),
    };
  }

  async #closeNow(): Promise<void> {
    this.hbone.close();
    this.#hboneServer.close();
    for (const s of this.#servers) s.close();
    await this.#in.configSource.close();
    this.#identities.close();
    this.#in.certificates.close?.();
  }

  /**
   * Graceful shutdown: readiness fails, listeners stop accepting, HBONE peers get GOAWAY, open
   * connections get `drainTimeoutMs` to finish, then whatever is left is closed.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= (async () => {
      const log = this.#in.logger;
      this.#ready = false;
      if (this.#in.config.readyFile) await rm(this.#in.config.readyFile, { force: true }).catch(() => undefined);
      log.info({ open: this.#drain.size, deadline_ms: this.#in.config.drainTimeoutMs }, 'draining');
      for (const s of this.#servers) s.close();
      this.#hboneServer.drain();
      this.hbone.drain();
      const { forced } = await this.#drain.drain(this.#in.config.drainTimeoutMs);
      if (forced > 0) log.warn({ forced }, 'drain deadline reached; closed the remaining connections');
      for (const s of this.#servers) {
        if ('closeAllConnections' in s) s.closeAllConnections();
      }
      await this.#closeNow();
      log.info('ztunnel stopped');
      this.#stoppedResolve();
    })();
    return this.#stopping;
  }
}

/** Every listener ztunnel binds, in the order it binds them (0: disabled). */
function portClaims(c: ZtunnelConfig): PortClaim[] {
  return [
    { name: 'inbound', host: c.address, port: c.inboundPort },
    { name: 'outbound', host: c.address, port: c.outboundPort },
    { name: 'socks5', host: c.address, port: c.socks5Port },
    { name: 'admin', host: c.adminAddress, port: c.adminPort },
    { name: 'metrics', host: c.statsAddress, port: c.metricsPort },
    { name: 'readiness', host: c.statsAddress, port: c.readinessPort },
  ];
}

/** The previous ztunnel's admin: the same address and port this one is about to take. */
function quitUrl(c: ZtunnelConfig): string | undefined {
  if (c.adminPort === 0) return undefined;
  const host = c.adminAddress === '0.0.0.0' ? '127.0.0.1' : c.adminAddress === '::' ? '::1' : c.adminAddress;
  return `http://${net.isIPv6(host) ? `[${host}]` : host}:${c.adminPort}/quitquitquit`;
}

/** Calls `check` until it resolves; after `deadlineMs` rethrows its last error. Reports the first failure. */
async function retryUntil(check: () => Promise<void>, deadlineMs: number, onFirstFailure: (err: unknown) => void): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      if (attempt === 0) onFirstFailure(err);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
