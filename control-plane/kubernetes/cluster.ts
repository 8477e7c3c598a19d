/**
 * The control plane in a cluster (`CONFIG_SOURCE=kubernetes`): the Kubernetes source feeds the
 * same `ControlPlane` the lab runs; ztunnels authenticate with TokenReview; the replica holding
 * the leader Lease writes statuses. Every replica serves the CA and discovery.
 */
import type { Logger } from '../../core/telemetry/log.js';
import { routeStatuses } from '../../core/model/route-status.js';
import { ControlPlane } from '../control-plane.js';
import type { ControlPlaneConfig } from '../config.js';
import type { KubeApi } from '../../core/kube/api.js';
import type { InformerTimings } from './informer.js';
import { LeaderElector, type LeaderTimings } from './leader.js';
import { KubernetesSource } from './source.js';
import { StatusWriter } from './status.js';
import { TokenReviewAuthenticator } from './token-review.js';
import { WaypointController } from './waypoints.js';

export interface ClusterControlPlaneInputs {
  /** With `kubernetes` settings (`CONFIG_SOURCE=kubernetes`). */
  readonly config: ControlPlaneConfig;
  readonly logger: Logger;
  readonly api: KubeApi;
  /** Tests shorten these. */
  readonly informerTimings?: Partial<InformerTimings>;
  readonly leaderTimings?: Partial<LeaderTimings>;
  readonly statusDebounceMs?: number;
}

export interface ClusterControlPlane {
  readonly controlPlane: ControlPlane;
  readonly source: KubernetesSource;
  readonly elector: LeaderElector;
  readonly status: StatusWriter;
  readonly waypoints: WaypointController;
  close(): Promise<void>;
}

/**
 * Lists everything, starts the control plane on it, and joins the leader election.
 *
 * @example
 * const kc = new KubeConfig(); kc.loadFromCluster();
 * const cluster = await startClusterControlPlane({ config, logger, api: new KubeConfigApi(kc) });
 * process.once('SIGTERM', () => void cluster.close());
 */
export async function startClusterControlPlane(inputs: ClusterControlPlaneInputs): Promise<ClusterControlPlane> {
  const { config, logger, api } = inputs;
  const k = config.kubernetes;
  // invariant: main.ts calls this only when CONFIG_SOURCE=kubernetes parsed into `config.kubernetes`.
  if (!k) throw new Error('startClusterControlPlane needs CONFIG_SOURCE=kubernetes settings');
  const ztunnel = { namespace: k.ztunnelNamespace, serviceAccount: k.ztunnelServiceAccount };
  const source = new KubernetesSource({
    api,
    rootNamespace: config.rootNamespace,
    logger: logger.child({ scope: 'kubernetes' }),
    ztunnel,
    ...(inputs.informerTimings ? { timings: inputs.informerTimings } : {}),
  });
  // The first configuration is built from complete lists (nodes included), never from a partial view.
  await source.sync();
  const authenticator = new TokenReviewAuthenticator({
    api,
    trustDomain: config.trustDomain,
    audience: k.tokenAudience,
    ztunnel,
    pod: (namespace, name) => source.object('Pod', namespace, name),
    logger: logger.child({ scope: 'tokenreview' }),
  });
  let controlPlane: ControlPlane;
  try {
    controlPlane = await ControlPlane.start({ config, logger, objectSource: source, nodeList: async () => source.nodeList(), authenticator });
  } catch (err) {
    await source.close();
    throw err;
  }
  const cp = controlPlane;
  source.onNodesChange(() => void cp.reloadNodes());
  let statusWriter: StatusWriter | undefined;
  const waypoints = new WaypointController({
    api,
    logger: logger.child({ scope: 'waypoints' }),
    settings: {
      ...(k.waypointImage !== undefined ? { image: k.waypointImage } : {}),
      ...(k.waypointImagePullPolicy !== undefined ? { imagePullPolicy: k.waypointImagePullPolicy } : {}),
      resources: k.waypointResources,
      controlPlaneAddress: k.serviceAddress,
      trustDomain: config.trustDomain,
      rootNamespace: config.rootNamespace,
      tokenAudience: k.tokenAudience,
    },
    objects: (kind) => source.objects(kind),
    object: (kind, namespace, name) => source.object(kind, namespace, name),
    roots: () => cp.ca.rootsPem,
    // The status writer exists once the derived objects are listed (its first pass reads them).
    onChange: () => statusWriter?.schedule(),
    ...(inputs.informerTimings ? { timings: inputs.informerTimings } : {}),
    ...(inputs.statusDebounceMs !== undefined ? { debounceMs: inputs.statusDebounceMs } : {}),
  });
  try {
    await waypoints.start();
  } catch (err) {
    await cp.close();
    throw err;
  }
  const status = new StatusWriter({
    api,
    objects: (kind) => source.objects(kind),
    problems: () => cp.problems(),
    routes: () => (cp.state.loaded ? routeStatuses(cp.state.mesh) : []),
    gatewayState: (namespace, name) => waypoints.gatewayState(namespace, name),
    serviceBound: (namespace, name) => cp.state.loaded && cp.state.mesh.serviceByName(namespace, name)?.waypoint !== undefined,
    logger: logger.child({ scope: 'status' }),
    ...(inputs.statusDebounceMs !== undefined ? { debounceMs: inputs.statusDebounceMs } : {}),
  });
  statusWriter = status;
  cp.onConfig(() => {
    status.schedule();
    waypoints.schedule();
  });
  // A rejected object changes no configuration, but its status must still say why; a derived
  // object someone changed must be put back.
  source.onChange(() => {
    status.schedule();
    waypoints.schedule();
  });
  const elector = new LeaderElector({
    api,
    namespace: k.leaderElectionNamespace,
    name: k.leaderElectionLease,
    identity: k.podName,
    logger: logger.child({ scope: 'leader' }),
    ...(inputs.leaderTimings ? { timings: inputs.leaderTimings } : {}),
  });
  elector.onChange((leader) => {
    waypoints.setActive(leader);
    if (leader) status.start();
    else status.stop();
  });
  elector.start();
  let closing: Promise<void> | undefined;
  return {
    controlPlane: cp,
    source,
    elector,
    status,
    waypoints,
    close: () =>
      (closing ??= (async () => {
        status.stop();
        waypoints.close();
        await elector.close();
        await cp.close();
      })()),
  };
}
