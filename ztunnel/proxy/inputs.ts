import type net from 'node:net';
import type { Logger } from '../../core/telemetry/log.js';
import type { TcpMetrics } from '../../core/telemetry/metrics.js';
import type { DrainTracker } from '../../core/drain.js';
import type { HboneClient, CertificateSource } from '../../core/hbone/client.js';
import type { MeshState } from '../../core/model/state.js';
import type { ZtunnelConfig } from '../config.js';

/** Everything a ztunnel listener needs, passed explicitly (Istio ztunnel's ProxyInputs). */
export interface ProxyInputs {
  readonly config: ZtunnelConfig;
  /** The current configuration snapshot; replaced whole on every update. */
  readonly state: () => MeshState;
  readonly certificates: CertificateSource;
  readonly hbone: HboneClient;
  readonly metrics: TcpMetrics;
  readonly drain: DrainTracker;
  readonly logger: Logger;
  /** Plain TCP connections to workloads; swappable in tests. */
  readonly connectTcp: (opts: net.NetConnectOpts) => net.Socket;
}
