/**
 * `POST /v1/certificates`: signs a CSR for an authenticated node proxy, only for identities it
 * may hold: the identities of workloads scheduled on its node (meshed pods, and waypoint pods),
 * and the ztunnel identity itself (which it uses to authenticate its discovery stream).
 *
 * Checks run cheapest first, and nothing is signed before every check passed: the token (401),
 * the request's shape (400), the identity asked for (400 when it is not a SPIFFE ID of this
 * trust domain), whether the caller may hold it (403), then the CSR itself (400: key type,
 * proof of possession, SANs). Every refusal is logged with the node and identity, and counted.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { CsrRejectedError } from '../core/errors.js';
import type { Logger } from '../core/telemetry/log.js';
import { describeGeneralName, parseCsr } from '../core/identity/csr.js';
import { tryParseSpiffeId } from '../core/identity/spiffe.js';
import type { SigningCa } from '../core/identity/plugin-ca.js';
import { ztunnelIdentity, type CaRequest, type CaResponse } from '../core/discovery/wire.js';
import { GATEWAY_NAME_LABEL } from '../core/labels.js';
import type { MeshState } from '../core/model/state.js';
import { bearer, type Authenticator, type Caller } from './auth.js';
import { RequestRefusedError, readBody, refuse, sendError, sendJson } from './http.js';
import type { ControlPlaneMetrics } from './metrics.js';

/** A CSR is about 500 bytes of PEM; anything near this is not a workload CSR. */
export const MAX_CA_BODY_BYTES = 64 * 1024;

/** What the CA service needs, passed explicitly. */
export interface CaServiceInputs {
  readonly trustDomain: string;
  readonly authenticator: Authenticator;
  /** The current signer (it is replaced when the CA files change). */
  readonly ca: () => SigningCa;
  /** The current configuration, or undefined before the first one (answers 503 then). */
  readonly mesh: () => MeshState | undefined;
  readonly metrics: ControlPlaneMetrics;
  readonly logger: Logger;
}

/**
 * The CA endpoint. `handle` answers one request stream.
 *
 * @example
 * const ca = new CaService({ trustDomain, authenticator, ca: () => signer, mesh: () => state.mesh, metrics, logger });
 * server.on('stream', (s, h) => h[':path'] === CA_PATH && ca.handle(s, h));
 */
export class CaService {
  readonly #in: CaServiceInputs;
  readonly #ztunnelId: string;
  // Identities each node may hold, per configuration (MeshState objects are immutable).
  #allowedFor = new WeakMap<MeshState, Map<string, Set<string>>>();

  constructor(inputs: CaServiceInputs) {
    this.#in = inputs;
    this.#ztunnelId = ztunnelIdentity(inputs.trustDomain);
  }

  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const started = performance.now();
    let caller: Caller | undefined;
    let identity: string | undefined;
    this.#sign(stream, headers, (c, id) => {
      caller = c;
      identity = id;
    }).then(
      (body) => {
        const seconds = (performance.now() - started) / 1000;
        this.#in.metrics.signDuration.observe(seconds);
        this.#in.metrics.csrRequests.inc({ result: 'signed', reason: 'OK' });
        this.#in.logger.debug({ node: caller?.node, identity, duration_ms: seconds * 1000 }, 'certificate issued');
        sendJson(stream, 200, body);
      },
      (err: unknown) => {
        const refusal =
          err instanceof RequestRefusedError
            ? err
            : err instanceof CsrRejectedError
              ? refuse('csrRejected', err.message)
              : refuse('internal', `the ca failed: ${(err as Error).message}`);
        this.#in.metrics.csrRequests.inc({ result: 'refused', reason: refusal.code });
        const level = refusal.status >= 500 ? 'error' : 'warn';
        this.#in.logger[level]({ node: caller?.node, subject: caller?.subject, identity, status: refusal.status, code: refusal.code, reason: refusal.message }, 'certificate request refused');
        sendError(stream, refusal);
      },
    );
  }

  async #sign(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, learn: (c: Caller, id?: string) => void): Promise<CaResponse> {
    if (headers[':method'] !== 'POST') throw refuse('method', 'use POST with a JSON body {csr, identity, ttlSeconds}');
    const raw = await readBody(stream, MAX_CA_BODY_BYTES);
    const credential = bearer(headers.authorization);
    if (credential === undefined) throw refuse('unauthenticated', 'missing "authorization: Bearer <node token>"');
    const caller = await this.#in.authenticator.authenticate(credential);
    if (!caller) throw refuse('unauthenticated', 'the bearer token is not valid for any node; check the node token file');
    learn(caller);
    const mesh = this.#in.mesh();
    if (!mesh) throw refuse('notReady', 'the control plane has not loaded its configuration yet; retry');
    const req = parseRequest(raw);
    const identity = req.identity ?? identityInCsr(req.csr);
    learn(caller, identity);
    const id = tryParseSpiffeId(identity);
    if (!id) throw refuse('csrRejected', `${JSON.stringify(identity)} is not a spiffe id (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`);
    if (id.trustDomain !== this.#in.trustDomain) {
      throw refuse('csrRejected', `${identity} is in trust domain ${id.trustDomain}; this ca signs for ${this.#in.trustDomain} only`);
    }
    if (caller.identity !== undefined && identity !== caller.identity) {
      throw refuse('notAllowed', `${caller.subject} may only obtain its own identity ${caller.identity}, not ${identity}`);
    }
    if (!this.#allowed(mesh, caller.node, identity)) {
      throw refuse('notAllowed', `node ${caller.node} may not obtain ${identity}: no meshed workload with that identity is scheduled on node ${caller.node}`);
    }
    const ca = this.#in.ca();
    const signed = ca.sign(req.csr, { expectedIdentity: identity, ...(req.ttlSeconds !== undefined ? { ttlSeconds: req.ttlSeconds } : {}) });
    return { certChain: signed.certChainPem, roots: [...ca.rootsPem] };
  }

  #allowed(mesh: MeshState, node: string, identity: string): boolean {
    if (identity === this.#ztunnelId) return true;
    let perNode = this.#allowedFor.get(mesh);
    if (!perNode) this.#allowedFor.set(mesh, (perNode = new Map()));
    let ids = perNode.get(node);
    if (!ids) {
      ids = new Set();
      for (const w of mesh.workloadsOnNode(node)) {
        // Meshed pods, and waypoint pods (which Istio keeps out of redirection but which still
        // need their identity to terminate HBONE).
        if (w.protocol === 'HBONE' || w.labels[GATEWAY_NAME_LABEL] !== undefined) ids.add(mesh.workloadIdentity(w));
      }
      perNode.set(node, ids);
    }
    return ids.has(identity);
  }
}

function parseRequest(raw: Buffer): CaRequest {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    throw refuse('badRequest', 'the body is not JSON; send {"csr": "<PEM>", "identity": "spiffe://...", "ttlSeconds": 86400}');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse('badRequest', 'the body must be a JSON object {csr, identity, ttlSeconds}');
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !['csr', 'identity', 'ttlSeconds'].includes(k));
  if (unknown.length > 0) throw refuse('badRequest', `unknown field ${JSON.stringify(unknown[0])}; allowed: csr, identity, ttlSeconds`);
  if (typeof o.csr !== 'string' || o.csr === '') throw refuse('badRequest', 'csr must be a PEM certificate request');
  if (o.identity !== undefined && (typeof o.identity !== 'string' || o.identity === '')) throw refuse('badRequest', 'identity must be a SPIFFE id string');
  if (o.ttlSeconds !== undefined && !(typeof o.ttlSeconds === 'number' && Number.isFinite(o.ttlSeconds) && o.ttlSeconds > 0)) {
    throw refuse('badRequest', 'ttlSeconds must be a positive number');
  }
  return o as unknown as CaRequest;
}

/** The single URI SAN of a CSR: the identity a request without `identity` asks for. */
function identityInCsr(csrPem: string): string {
  let sans;
  try {
    sans = parseCsr(csrPem).subjectAltNames;
  } catch (err) {
    throw refuse('csrRejected', `certificate signing request rejected: not a pem pkcs#10 request: ${(err as Error).message}`);
  }
  if (sans.length !== 1 || sans[0]!.type !== 'uri') {
    const found = sans.length === 0 ? 'none' : sans.map(describeGeneralName).join(', ');
    throw refuse('csrRejected', `certificate signing request rejected: expected exactly one subject alternative name, a uri holding the spiffe id; found ${found}`);
  }
  return sans[0]!.value.toString('latin1');
}
