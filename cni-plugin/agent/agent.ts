/**
 * The node agent: loads the programs, keeps the node's pods enrolled as the desired state says,
 * and serves the CNI plugin. Stopping it leaves every pod as it is: a restarted agent picks up
 * from its state file and the kernel, without detaching anything that should stay.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../core/telemetry/log.js';
import type { CgroupResolver, KubeletCgroupRoot } from './cgroup.js';
import { ZTUNNEL_CGROUP_AUTO, type AgentConfig } from './config.js';
import { ZtunnelFinder, type ZtunnelScan } from './ztunnel-finder.js';
import type { DesiredStateSource } from './desired-state.js';
import type { Redirector, RedirectConfig } from './redirector.js';
import { Reconciler } from './reconciler.js';
import { apiHandler, listenTcp, listenUnix } from './server.js';
import { StateStore } from './store.js';

export interface AgentInputs {
  readonly config: AgentConfig;
  readonly logger: Logger;
  readonly redirector: Redirector;
  readonly desiredSource: DesiredStateSource;
  readonly resolver: CgroupResolver;
  /** The host's cgroup v2 root (resolved by main.ts when CGROUP_ROOT is unset). */
  readonly cgroupRoot: string;
  /** The node's addresses, never redirected (resolved by main.ts when NODE_IPS is unset). */
  readonly nodeIps: readonly string[];
  /** kubelet's cgroup root as resolved by main.ts (absent with CGROUP_DRIVER=template), for /state. */
  readonly kubeletCgroupRoot?: KubeletCgroupRoot;
  /** Full cgroup v1 hierarchies the resolver also looks in (a hybrid host), for /state. */
  readonly v1Roots?: readonly string[];
  /** The agent's own cgroup: never enrolled. */
  readonly ownCgroup?: string;
  /** With ZTUNNEL_CGROUP=auto: how ztunnel is found (default: through `config.procRoot`). */
  readonly ztunnelFinder?: Pick<ZtunnelFinder, 'find' | 'describe'>;
}

export class NodeAgent {
  readonly reconciler: Reconciler;
  private readonly servers: http.Server[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ztunnelTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly inputs: AgentInputs,
    reconciler: Reconciler,
  ) {
    this.reconciler = reconciler;
  }

  /** Restores, loads, reads the desired state, reconciles once, then serves. Rejects on any start-up failure. */
  static async start(inputs: AgentInputs): Promise<NodeAgent> {
    const { config, logger } = inputs;
    const redirectConfig: RedirectConfig = {
      ztunnelIp: config.ztunnelIp,
      outboundPort: config.outboundPort,
      nodeIps: inputs.nodeIps,
      excludeCidrs: config.excludeCidrs,
      excludePorts: config.excludePorts,
    };
    const auto = config.ztunnelCgroup === ZTUNNEL_CGROUP_AUTO;
    const finder = auto
      ? (inputs.ztunnelFinder ??
        new ZtunnelFinder({
          procRoot: config.procRoot,
          cgroupRoot: inputs.cgroupRoot,
          ztunnelIp: config.ztunnelIp,
          ports: [config.outboundPort, config.ztunnelInboundPort].filter((p) => p !== 0),
        }))
      : undefined;
    const log = logger.child({ scope: 'ztunnel-finder' });
    const look = async (): Promise<ZtunnelScan | undefined> => {
      try {
        return await finder!.find();
      } catch (err) {
        log.warn({ err }, `looking for ztunnel failed: ${(err as Error).message}`);
        return undefined;
      }
    };
    // Seeded before the first resync, so a restarted agent does not detach a running ztunnel.
    const first = finder ? await look() : undefined;
    if (first?.problems.length) log.warn({ problems: first.problems }, 'some of ztunnel\'s listeners could not be placed');
    const reconciler = new Reconciler({
      nodeName: config.nodeName,
      redirector: inputs.redirector,
      store: new StateStore(config.stateFile),
      resolver: inputs.resolver,
      cgroupRoot: inputs.cgroupRoot,
      ztunnelCgroups: auto ? (first?.cgroups ?? []) : [config.ztunnelCgroup],
      ztunnelSource: auto ? `${ZTUNNEL_CGROUP_AUTO}: ${finder!.describe}` : config.ztunnelCgroup,
      protectedCgroups: inputs.ownCgroup ? [inputs.ownCgroup] : [],
      exemptNamespaces: config.exemptNamespaces,
      rootNamespace: config.rootNamespace,
      redirectConfig,
      pinDir: config.pinDir,
      desiredSource: inputs.desiredSource.describe,
      addWaitMs: config.addWaitMs,
      cgroupLayout: {
        ...(inputs.kubeletCgroupRoot ? { kubeletRoot: { path: inputs.kubeletCgroupRoot.path, source: inputs.kubeletCgroupRoot.source } } : {}),
        v1Roots: inputs.v1Roots ?? [],
      },
      logger: logger.child({ scope: 'reconciler' }),
    });
    const agent = new NodeAgent(inputs, reconciler);
    try {
      await reconciler.restore();
      await reconciler.load();
      await inputs.desiredSource.start((s) => reconciler.setDesired(s));
      await reconciler.requestResync();
      const api = http.createServer(apiHandler({ reconciler, logger }, { readOnly: false }));
      agent.servers.push(api);
      await listenUnix(api, config.socket);
      if (config.statePort !== 0) {
        const ro = http.createServer(apiHandler({ reconciler, logger }, { readOnly: true }));
        agent.servers.push(ro);
        await listenTcp(ro, config.statePort, config.stateAddress);
      }
    } catch (err) {
      await agent.stop();
      throw err;
    }
    agent.timer = setInterval(() => {
      reconciler.setDesiredError(inputs.desiredSource.lastError);
      reconciler.requestResync().catch(() => {});
    }, config.resyncIntervalMs);
    agent.timer.unref();
    if (finder) {
      // One check at a time: a slow /proc walk must not pile up behind the interval.
      let running = false;
      agent.ztunnelTimer = setInterval(() => {
        if (running || agent.stopping) return;
        running = true;
        void (async () => {
          const scan = await look();
          if (scan?.changed) {
            log.info({ processes: scan.processes, problems: scan.problems }, 'ztunnel moved');
            await reconciler.setZtunnelCgroups(scan.cgroups, scan.problems);
          }
        })().finally(() => (running = false));
      }, config.ztunnelCheckIntervalMs);
      agent.ztunnelTimer.unref();
    }
    logger.info(
      { node: config.nodeName, socket: config.socket, ztunnelIp: config.ztunnelIp, nodeIps: inputs.nodeIps, cgroupRoot: inputs.cgroupRoot, resolver: inputs.resolver.describe, kubeletCgroupRoot: inputs.kubeletCgroupRoot, v1Roots: inputs.v1Roots, addWaitMs: config.addWaitMs, pods: reconciler.state().pods.length },
      'node agent ready',
    );
    return agent;
  }

  /** Where the optional state port listens (tests bind port 0). */
  stateAddress(): AddressInfo | undefined {
    const ro = this.servers[1];
    return ro ? (ro.address() as AddressInfo) : undefined;
  }

  /** Stops serving and reconciling; detaches nothing. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      if (this.ztunnelTimer) clearInterval(this.ztunnelTimer);
      // ADDs waiting for the desired state answer "not ready" now; the runtime retries them.
      this.reconciler.close();
      for (const s of this.servers) {
        s.close();
        s.closeAllConnections();
      }
      await this.inputs.desiredSource.close();
      await this.reconciler.idle();
      this.inputs.logger.info('node agent stopped; enrolled pods stay enrolled');
    })();
    return this.stopping;
  }
}
