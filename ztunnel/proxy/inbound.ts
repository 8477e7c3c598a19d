import type { ServerHttp2Stream } from 'node:http2';
import { authorizeConnection } from '../../core/authz/evaluate.js';
import type { MeshState } from '../../core/model/state.js';
import { tryParseSpiffeId } from '../../core/identity/spiffe.js';
import { sniForIdentity } from '../../core/hbone/tls.js';
import { respondError, type HboneRejection, type HboneStreamRequest } from '../../core/hbone/server.js';
import { HboneError, denied, unknownAuthority } from '../../core/hbone/status.js';
import { proxyConnection, recordRefused, type ConnectionInfo } from './connection.js';
import { connectTcp, normalizeIp } from './outbound.js';
import type { ProxyInputs } from './inputs.js';
import { localIdentities } from '../identities.js';

/**
 * The inbound data path: a verified HBONE CONNECT stream for a workload on this node is
 * authorized with the client's SPIFFE ID, then spliced to the workload over plain TCP.
 */
export class Inbound {
  readonly #in: ProxyInputs;
  // SNI → identity of the meshed workloads on this node, computed once per configuration snapshot.
  readonly #sniIndex = new WeakMap<MeshState, Map<string, string>>();

  constructor(inputs: ProxyInputs) {
    this.#in = inputs;
  }

  /** The identity to present for an SNI: only identities of meshed workloads on this node. */
  identityForSni = (sni: string): string | undefined => {
    const state = this.#in.state();
    let index = this.#sniIndex.get(state);
    if (!index) {
      index = new Map();
      // The same set ztunnel keeps certificates for (ztunnel/identities.ts).
      for (const id of localIdentities(state, this.#in.config.nodeName)) index.set(sniForIdentity(id), id);
      this.#sniIndex.set(state, index);
    }
    return index.get(sni);
  };

  onReject = (r: HboneRejection): void => {
    const info: ConnectionInfo = {
      direction: 'inbound',
      srcIp: normalizeIp(r.peerAddress ?? 'unknown'),
      srcPort: 0,
      dstIp: 'unknown',
      dstPort: 0,
      security: 'mutual_tls',
      ...(r.peerIdentity ? { srcIdentity: r.peerIdentity } : {}),
    };
    recordRefused(this.#in, info, r.flag, new Error(r.reason));
  };

  onStream = (req: HboneStreamRequest): void => {
    void this.#handle(req);
  };

  async #handle(req: HboneStreamRequest): Promise<void> {
    const state = this.#in.state();
    const srcIp = normalizeIp(req.forwardedFor?.ip ?? req.peerAddress);
    const src = state.workloadByIp(srcIp);
    const info: ConnectionInfo = {
      direction: 'inbound',
      srcIp,
      srcPort: req.forwardedFor?.port ?? 0,
      srcIdentity: req.peerIdentity,
      dstIp: req.targetIp,
      dstPort: req.targetPort,
      security: 'mutual_tls',
      ...(src ? { srcWorkload: src } : {}),
    };
    const stream: ServerHttp2Stream = req.stream;
    try {
      const dst = state.workloadByIp(req.targetIp);
      if (!dst || dst.node !== this.#in.config.nodeName || dst.protocol !== 'HBONE') {
        throw unknownAuthority(req.authority);
      }
      info.dstWorkload = dst;
      info.dstIdentity = state.workloadIdentity(dst);
      const decision = authorizeConnection(state.policiesFor(dst), {
        sourcePrincipal: req.peerIdentity,
        sourceNamespace: tryParseSpiffeId(req.peerIdentity)?.namespace,
        sourceIp: srcIp,
        destinationIp: req.targetIp,
        destinationPort: req.targetPort,
      });
      if (!decision.allowed) throw denied(`${decision.reason} (${req.peerIdentity} → ${req.authority})`);
      const upstream = await connectTcp(this.#in, req.targetIp, req.targetPort);
      if (stream.destroyed || stream.closed) {
        upstream.destroy();
        return;
      }
      stream.respond({ ':status': 200 });
      proxyConnection(this.#in, info, stream, upstream, { socket: upstream, is: 'upstream' });
    } catch (err) {
      const e = err instanceof HboneError ? err : denied(String(err));
      recordRefused(this.#in, info, e.flag, e);
      respondError(stream, e.status);
    }
  }
}
