/**
 * The control plane's wire contract (port 15012), shared by the control plane and its clients:
 * paths, headers, the discovery messages and the JSON form of each resource. This is the only
 * place that reads or writes discovery wire shapes; `decode*` turns them into the frozen internal
 * model and refuses anything malformed. The contract is documented in docs/control-plane.md.
 */
import { MeshError } from '../errors.js';
import { PORTS } from '../hbone/constants.js';
import { ImmutableMap, deepFreeze } from '../model/freeze.js';
import { canonicalIp } from '../model/ip.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { DEFAULT_ROOT_NAMESPACE } from '../model/scope.js';
import { Problems, keyPath, quote } from '../validation/check.js';
import { PolicySpecParser } from '../kube/authorization-policy.js';
import { HOSTNAME_RE, LABEL_RE, NAMESPACE_EXPECTED, NAME_EXPECTED, SUBDOMAIN_RE, checkLabel } from '../kube/names.js';
import { DATAPLANE_MODE_LABEL } from '../labels.js';
import { DestinationRuleConverter } from '../kube/routes/destination-rule.js';
import { HttpRouteConverter } from '../kube/routes/http-route.js';
import { GrpcRouteConverter } from '../kube/routes/grpc-route.js';
import { TcpRouteConverter } from '../kube/routes/tcp-route.js';
import { ReferenceGrantConverter } from '../kube/routes/reference-grant.js';
import { appProtocolProblem } from '../model/app-protocol.js';
import type { ReferenceGrant } from '../model/reference-grant.js';
import { VirtualServiceConverter } from '../kube/routes/virtual-service.js';
import { WaypointPolicyConverter } from '../kube/waypoint-policy.js';
import { RequestAuthenticationConverter } from '../kube/request-authentication.js';
import { specProblems, type SpecKind } from '../kube/schema.js';
import type { DestinationRule, HttpRoute, TcpRoute, VirtualService } from '../model/routes.js';
import type {
  AuthorizationPolicy,
  MeshNamespace,
  MtlsMode,
  NodeInfo,
  PendingPod,
  PeerAuthentication,
  PolicyCondition,
  PolicyOperation,
  PolicyRule,
  PolicySource,
  RequestAuthentication,
  Service,
  ServicePort,
  WaypointPolicy,
  WaypointRef,
  Workload,
} from '../model/types.js';

/** `POST` a CSR here (bearer node token) to get a certificate. */
export const CA_PATH = '/v1/certificates';
/** `GET` here (client certificate) to open the discovery stream. */
export const DISCOVERY_PATH = '/v1/discovery';
/** Content type of the discovery stream: one JSON message per line. */
export const NDJSON = 'application/x-ndjson';
/** Query parameters of a discovery request. */
export const DISCOVERY_QUERY = { node: 'node', since: 'since', proxy: 'proxy' } as const;
/** Service account of ztunnels (`spiffe://<td>/ns/istio-system/sa/ztunnel`), as in Istio. */
export const ZTUNNEL_SERVICE_ACCOUNT = { namespace: 'istio-system', serviceAccount: 'ztunnel' } as const;
/** Service account of the control plane, which its serving certificate carries, as istiod's. */
export const CONTROL_PLANE_SERVICE_ACCOUNT = { namespace: 'istio-system', serviceAccount: 'istiod' } as const;
/** Istio's control-plane port. */
export const CONTROL_PLANE_PORT = PORTS.controlPlane;

/** The SPIFFE ID of ztunnels in `trustDomain`. */
export function ztunnelIdentity(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${ZTUNNEL_SERVICE_ACCOUNT.namespace}/sa/${ZTUNNEL_SERVICE_ACCOUNT.serviceAccount}`;
}

/** The SPIFFE ID of the control plane in `trustDomain`. */
export function controlPlaneIdentity(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${CONTROL_PLANE_SERVICE_ACCOUNT.namespace}/sa/${CONTROL_PLANE_SERVICE_ACCOUNT.serviceAccount}`;
}

// ---- CA messages --------------------------------------------------------------------------

/** Body of `POST /v1/certificates`. */
export interface CaRequest {
  /** PEM PKCS#10 request with one URI SAN, the SPIFFE ID. */
  readonly csr: string;
  /** The identity asked for; when absent, the CSR's SAN. */
  readonly identity?: string;
  /** Requested lifetime; the control plane caps it. */
  readonly ttlSeconds?: number;
}

/** Body of a 200 answer. */
export interface CaResponse {
  /** Leaf first, then intermediates (never the root). */
  readonly certChain: string[];
  /** The trust bundle: every root peers must accept. */
  readonly roots: string[];
}

/** Body of every error answer (CA and discovery). */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

// ---- discovery messages -------------------------------------------------------------------

/** The resource kinds of the discovery stream, in the order a snapshot lists them. */
export const RESOURCE_KINDS = [
  'nodes',
  'workloads',
  'services',
  'authorizationPolicies',
  'peerAuthentications',
  'waypointPolicies',
  'requestAuthentications',
  'httpRoutes',
  'grpcRoutes',
  'tcpRoutes',
  'referenceGrants',
  'virtualServices',
  'destinationRules',
  'pendingPods',
  'namespaces',
] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/**
 * Kinds that travel as the resource the user wrote, `{name, namespace, spec}`, and are converted
 * by the receiver with the same converters the control plane validated them with
 * (`core/kube/routes/`, `core/kube/waypoint-policy.ts`): their model is large, and the
 * Kubernetes spec is the stable contract.
 */
export const SPEC_KINDS: ReadonlySet<ResourceKind> = new Set(['waypointPolicies', 'requestAuthentications', 'httpRoutes', 'grpcRoutes', 'tcpRoutes', 'referenceGrants', 'virtualServices', 'destinationRules']);

/** The internal type of each kind. */
export interface ResourceTypes {
  nodes: NodeInfo;
  workloads: Workload;
  services: Service;
  authorizationPolicies: AuthorizationPolicy;
  peerAuthentications: PeerAuthentication;
  waypointPolicies: WaypointPolicy;
  requestAuthentications: RequestAuthentication;
  httpRoutes: HttpRoute;
  grpcRoutes: HttpRoute;
  tcpRoutes: TcpRoute;
  referenceGrants: ReferenceGrant;
  virtualServices: VirtualService;
  destinationRules: DestinationRule;
  pendingPods: PendingPod;
  namespaces: MeshNamespace;
}

/**
 * Kinds only node agents use (they subscribe with the ztunnel view): pods that have no IP yet and
 * the namespaces' `istio.io/dataplane-mode`. ztunnel receives and ignores them; waypoints do not
 * receive them.
 */
export const NODE_AGENT_KINDS: ReadonlySet<ResourceKind> = new Set(['pendingPods', 'namespaces']);

/** Resources per kind: JSON values as they travel. Kinds a client does not know are ignored. */
export type WireResources = Partial<Record<string, unknown[]>>;

/**
 * The first message of a stream (and of a resync): the complete view of this client. Every kind
 * listed replaces what the client held; kinds not listed are empty.
 */
export interface SnapshotMessage {
  readonly type: 'snapshot';
  readonly version: string;
  readonly seq: number;
  readonly rootNamespace: string;
  readonly resources: WireResources;
}

/**
 * Changes since `from` (the version the client holds). `upserts` add or replace by key,
 * `removes` lists keys per kind; kinds in `replace` are first emptied (their full content is in
 * `upserts`). A client whose version is not `from` must drop the stream and resync.
 */
export interface DeltaMessage {
  readonly type: 'delta';
  readonly from: string;
  readonly version: string;
  readonly seq: number;
  readonly upserts: WireResources;
  readonly removes: Partial<Record<string, string[]>>;
  readonly replace?: string[];
}

/** The client's `since` version is current: nothing to send; the stream continues with deltas. */
export interface ResumeMessage {
  readonly type: 'resume';
  readonly version: string;
  readonly seq: number;
}

/**
 * The CA's trust bundle. Sent before the first snapshot/resume and again whenever the CA's
 * roots or signing certificate change; `signer` identifies the signing certificate (its SHA-256
 * fingerprint), so clients can re-request certificates after a rotation.
 */
export interface TrustBundleMessage {
  readonly type: 'trustBundle';
  readonly roots: string[];
  readonly signer: string;
}

export type DiscoveryMessage = SnapshotMessage | DeltaMessage | ResumeMessage | TrustBundleMessage;

/** A discovery message or resource that does not have the documented shape. */
export class WireFormatError extends MeshError {
  constructor(
    readonly path: string,
    why: string,
  ) {
    super('ERR_DISCOVERY_WIRE', `malformed discovery message at ${path || 'top level'}: ${why}`);
  }
}

// ---- keys and encoding ----------------------------------------------------------------------

/** The key a resource is upserted and removed by. */
export function resourceKey<K extends ResourceKind>(kind: K, r: ResourceTypes[K]): string {
  switch (kind) {
    case 'nodes':
      return (r as NodeInfo).name;
    case 'namespaces':
      return (r as MeshNamespace).name;
    case 'workloads':
      return (r as Workload).uid;
    default: {
      const x = r as { namespace: string; name: string };
      return `${x.namespace}/${x.name}`;
    }
  }
}

/**
 * The JSON form of a resource: the model (Maps as objects, no undefined fields), or for
 * `SPEC_KINDS` `{name, namespace, spec}` with the spec as the user wrote it (`spec` is required
 * for those).
 */
export function encodeResource<K extends ResourceKind>(kind: K, r: ResourceTypes[K], spec?: unknown): unknown {
  if (SPEC_KINDS.has(kind)) {
    if (spec === undefined) throw new TypeError(`encoding ${kind} needs the spec of ${resourceKey(kind, r)}`);
    const x = r as { name: string; namespace: string };
    return { name: x.name, namespace: x.namespace, spec };
  }
  if (kind === 'peerAuthentications') {
    const pa = r as PeerAuthentication;
    return {
      name: pa.name,
      namespace: pa.namespace,
      scope: pa.scope,
      selector: pa.selector,
      mode: pa.mode,
      portLevel: Object.fromEntries([...pa.portLevel].map(([k, v]) => [String(k), v])),
    };
  }
  // The other kinds are plain data already; JSON.stringify drops undefined fields.
  return r;
}

// ---- decoding -------------------------------------------------------------------------------

type Json = Record<string, unknown>;

function obj(v: unknown, path: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new WireFormatError(path, 'expected an object');
  return v as Json;
}

/**
 * C0 controls and DEL. No string of the model may hold one (names, identities, labels, keys and
 * condition values all end up in logs, keys or headers); the manifest parser refuses them through
 * its syntax checks, and the decoder refuses them everywhere, also where it checks no syntax.
 */
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

function text(v: unknown, path: string): string {
  if (typeof v !== 'string' || v === '') throw new WireFormatError(path, 'expected a non-empty string');
  if (CONTROL_RE.test(v)) throw new WireFormatError(path, `${quote(v)} holds a control character`);
  return v;
}

/** PEM text (the trust bundle's roots): the one wire string made of lines, so printable ASCII and line breaks. */
const PEM_RE = /^-----BEGIN [A-Z ]+-----\r?\n[\x20-\x7e\r\n]*-----END [A-Z ]+-----\s*$/;

function pem(v: unknown, path: string): string {
  if (typeof v !== 'string' || !PEM_RE.test(v)) throw new WireFormatError(path, 'expected a PEM certificate (-----BEGIN CERTIFICATE----- ...)');
  return v;
}

function str(o: Json, k: string, path: string): string {
  return text(o[k], `${path}.${k}`);
}

/** A string field that must match `re`, the manifest parser's rule for it (`core/kube/names.ts`). */
function syntax(o: Json, k: string, path: string, re: RegExp, expected: string): string {
  const v = str(o, k, path);
  if (!re.test(v)) throw new WireFormatError(`${path}.${k}`, `${quote(v)} is not ${expected}`);
  return v;
}

/** Object names: DNS-1123 subdomains, as `parseMeta` requires of every kind but Namespace. */
const name = (o: Json, path: string, k = 'name'): string => syntax(o, k, path, SUBDOMAIN_RE, NAME_EXPECTED);
/** Namespaces (and a Namespace's own name): DNS-1123 labels. */
const namespace = (o: Json, path: string, k = 'namespace'): string => syntax(o, k, path, LABEL_RE, NAMESPACE_EXPECTED);
/** Node names: DNS-1123 subdomains, as Kubernetes names Nodes. */
const nodeName = (o: Json, path: string, k: string): string => syntax(o, k, path, SUBDOMAIN_RE, 'a node name (a DNS-1123 subdomain)');

/**
 * Keys and uids: a workload's uid is `<namespace>/<name>` (the manifest converter's) and a pending
 * pod's the Kubernetes `metadata.uid` (a UUID); both are visible ASCII of at most 317 characters
 * (a 63-character namespace, "/", a 253-character name).
 */
const UID_RE = /^[!-~]{1,317}$/;
const UID_EXPECTED = 'a uid (visible ASCII characters, at most 317)';
function uid(v: unknown, path: string): string {
  const s = text(v, path);
  if (!UID_RE.test(s)) throw new WireFormatError(path, `${quote(s)} is not ${UID_EXPECTED}`);
  return s;
}

function optStr(o: Json, k: string, path: string): string | undefined {
  return o[k] === undefined ? undefined : str(o, k, path);
}

function int(o: Json, k: string, path: string, min: number, max: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new WireFormatError(`${path}.${k}`, `expected an integer from ${min} to ${max}`);
  return v;
}

function bool(o: Json, k: string, path: string): boolean {
  if (typeof o[k] !== 'boolean') throw new WireFormatError(`${path}.${k}`, 'expected true or false');
  return o[k] as boolean;
}

function arr(o: Json, k: string, path: string): unknown[] {
  const v = o[k];
  if (!Array.isArray(v)) throw new WireFormatError(`${path}.${k}`, 'expected a list');
  return v;
}

function strings(o: Json, k: string, path: string): string[] {
  return arr(o, k, path).map((x, i) => text(x, `${path}.${k}[${i}]`));
}

function optStrings(o: Json, k: string, path: string): string[] | undefined {
  return o[k] === undefined ? undefined : strings(o, k, path);
}

function ip(v: unknown, path: string): string {
  // No zone (`fe80::1%eth0`): the manifest parser refuses one too, and canonicalIp would drop it.
  const c = typeof v === 'string' && !v.includes('%') ? canonicalIp(v) : undefined;
  if (c === undefined) throw new WireFormatError(path, 'expected an IP address');
  return c;
}

/** Labels (or a selector): each entry meets `checkLabel`, the manifest parser's rule. */
function labels(o: Json, k: string, path: string): Record<string, string> {
  const q = `${path}.${k}`;
  const m = obj(o[k], q);
  for (const [key, v] of Object.entries(m)) {
    if (typeof v !== 'string') throw new WireFormatError(keyPath(q, key), 'expected a string');
    const bad = checkLabel(key, v);
    if (bad !== undefined) throw new WireFormatError(keyPath(q, key), bad);
  }
  return { ...(m as Record<string, string>) };
}

function oneOf<T extends string>(o: Json, k: string, path: string, allowed: readonly T[]): T {
  const v = o[k];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw new WireFormatError(`${path}.${k}`, `expected one of ${allowed.join(', ')}`);
  return v as T;
}

function waypoint(o: Json, path: string): WaypointRef | undefined {
  if (o.waypoint === undefined) return undefined;
  const w = obj(o.waypoint, `${path}.waypoint`);
  return { address: ip(w.address, `${path}.waypoint.address`), hbonePort: int(w, 'hbonePort', `${path}.waypoint`, 1, 65535) };
}

const SCOPES = ['mesh', 'namespace', 'workload'] as const;
const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

function decodeNode(o: Json, path: string): NodeInfo {
  return { name: nodeName(o, path, 'name'), ztunnelAddress: ip(o.ztunnelAddress, `${path}.ztunnelAddress`), hbonePort: int(o, 'hbonePort', path, 1, 65535) };
}

function decodeWorkload(o: Json, path: string): Workload {
  const wp = waypoint(o, path);
  const w: Workload = {
    uid: uid(o.uid, `${path}.uid`),
    name: name(o, path),
    namespace: namespace(o, path),
    serviceAccount: str(o, 'serviceAccount', path),
    trustDomain: str(o, 'trustDomain', path),
    node: nodeName(o, path, 'node'),
    ips: arr(o, 'ips', path).map((x, i) => ip(x, `${path}.ips[${i}]`)),
    protocol: oneOf(o, 'protocol', path, ['HBONE', 'TCP'] as const),
    labels: labels(o, 'labels', path),
    healthy: bool(o, 'healthy', path),
    ...(wp ? { waypoint: wp } : {}),
  };
  try {
    parseSpiffeId(`spiffe://${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`);
  } catch (e) {
    throw new WireFormatError(path, (e as Error).message);
  }
  return w;
}

function decodePendingPod(o: Json, path: string): PendingPod {
  const id = o.uid === undefined ? undefined : uid(o.uid, `${path}.uid`);
  return {
    namespace: namespace(o, path),
    name: name(o, path),
    ...(id !== undefined ? { uid: id } : {}),
    node: nodeName(o, path, 'node'),
    labels: labels(o, 'labels', path),
    protocol: oneOf(o, 'protocol', path, ['HBONE', 'TCP'] as const),
  };
}

function decodeNamespace(o: Json, path: string): MeshNamespace {
  // A label value may be empty in Kubernetes: any string is accepted, not only non-empty ones.
  const dataplaneMode = o.dataplaneMode;
  if (dataplaneMode !== undefined && typeof dataplaneMode !== 'string') throw new WireFormatError(`${path}.dataplaneMode`, 'expected a string');
  const bad = dataplaneMode === undefined ? undefined : checkLabel(DATAPLANE_MODE_LABEL, dataplaneMode);
  if (bad !== undefined) throw new WireFormatError(`${path}.dataplaneMode`, bad);
  return { name: namespace(o, path, 'name'), ...(dataplaneMode !== undefined ? { dataplaneMode } : {}) };
}

function decodeService(o: Json, path: string): Service {
  const wp = waypoint(o, path);
  return {
    name: name(o, path),
    namespace: namespace(o, path),
    hostname: syntax(o, 'hostname', path, HOSTNAME_RE, 'a DNS name'),
    vips: arr(o, 'vips', path).map((x, i) => ip(x, `${path}.vips[${i}]`)),
    ports: arr(o, 'ports', path).map((x, i): ServicePort => {
      const q = `${path}.ports[${i}]`;
      const p = obj(x, q);
      const name = optStr(p, 'name', q);
      const appProtocol = optStr(p, 'appProtocol', q);
      const bad = appProtocol !== undefined ? appProtocolProblem(appProtocol) : undefined;
      if (bad !== undefined) throw new WireFormatError(`${q}.appProtocol`, bad);
      return {
        port: int(p, 'port', q, 1, 65535),
        targetPort: int(p, 'targetPort', q, 1, 65535),
        ...(name !== undefined ? { name } : {}),
        ...(appProtocol !== undefined ? { appProtocol } : {}),
      };
    }),
    endpoints: arr(o, 'endpoints', path).map((x, i) => uid(x, `${path}.endpoints[${i}]`)),
    subjectAltNames: strings(o, 'subjectAltNames', path).map((s, i) => spiffeId(s, `${path}.subjectAltNames[${i}]`)),
    ...(wp ? { waypoint: wp } : {}),
  };
}

/** A SPIFFE ID (`core/identity/spiffe.ts`, the rule the standalone file's subjectAltNames meet). */
function spiffeId(s: string, path: string): string {
  try {
    parseSpiffeId(s);
  } catch (e) {
    throw new WireFormatError(path, (e as Error).message);
  }
  return s;
}

const SOURCE_KEYS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks'] as const;

function decodeSource(o: Json, path: string): PolicySource {
  const out: Record<string, unknown> = { hasL7Fields: bool(o, 'hasL7Fields', path) };
  for (const k of SOURCE_KEYS) {
    const v = optStrings(o, k, path);
    if (v) out[k] = v;
  }
  return out as unknown as PolicySource;
}

function decodeOperation(o: Json, path: string): PolicyOperation {
  const out: Record<string, unknown> = { hasL7Fields: bool(o, 'hasL7Fields', path) };
  for (const k of ['ports', 'notPorts']) {
    if (o[k] === undefined) continue;
    out[k] = arr(o, k, path).map((x, i) => {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 65535) throw new WireFormatError(`${path}.${k}[${i}]`, 'expected a port');
      return x;
    });
  }
  return out as unknown as PolicyOperation;
}

function decodeCondition(o: Json, path: string): PolicyCondition {
  const values = optStrings(o, 'values', path);
  const notValues = optStrings(o, 'notValues', path);
  return { key: str(o, 'key', path), ...(values ? { values } : {}), ...(notValues ? { notValues } : {}) };
}

/** Problems whose paths are rewritten from the spec's shape to the wire's (see `checkPolicyValues`). */
class WireProblems extends Problems {
  first: { path: string; message: string } | undefined;
  override add(path: string, message: string): void {
    super.add(path, message);
    this.first ??= { path: path.replace(/\.(source|operation)(?=[.[]|$)/g, '').replace('.selector.matchLabels', '.selector'), message };
  }
}

/**
 * The values of an L4 policy (principals, namespaces, CIDRs, ports, condition keys and values)
 * meet the checks the manifest parser made: the policy goes back into the Istio spec it came from
 * and through the same parser (`PolicySpecParser`), so both accept exactly the same strings and
 * any rule added there applies here. HTTP-only fields do not travel (an L4 proxy cannot see them);
 * a source or operation that had only those gets a stand-in, so it is not taken for an empty one.
 * The first problem is the WireFormatError, its path in the wire's shape.
 */
function checkPolicyValues(policy: AuthorizationPolicy, path: string, ctx: DecodeContext): void {
  const lists = (x: object, keys: readonly string[]) => Object.fromEntries(keys.filter((k) => (x as Json)[k] !== undefined).map((k) => [k, (x as Json)[k]]));
  const spec = {
    selector: { matchLabels: policy.selector },
    action: policy.action,
    rules: policy.rules.map((r) => ({
      ...(r.from.length > 0
        ? { from: r.from.map((s) => ({ source: { ...lists(s, SOURCE_KEYS), ...(s.hasL7Fields ? { requestPrincipals: ['*'] } : {}) } })) }
        : {}),
      ...(r.to.length > 0
        ? { to: r.to.map((op) => ({ operation: { ...lists(op, ['ports', 'notPorts']), ...(op.hasL7Fields ? { methods: ['GET'] } : {}) } })) }
        : {}),
      ...(r.when.length > 0 ? { when: r.when } : {}),
    })),
  };
  const p = new WireProblems();
  new PolicySpecParser(p, ctx.rootNamespace).authorizationPolicy(policy, spec, path);
  if (p.first) throw new WireFormatError(p.first.path, p.first.message);
}

function decodeAuthorizationPolicy(o: Json, path: string, ctx: DecodeContext): AuthorizationPolicy {
  const policy: AuthorizationPolicy = {
    name: name(o, path),
    namespace: namespace(o, path),
    scope: oneOf(o, 'scope', path, SCOPES),
    selector: labels(o, 'selector', path),
    action: oneOf(o, 'action', path, ['ALLOW', 'DENY'] as const),
    rules: arr(o, 'rules', path).map((x, i): PolicyRule => {
      const q = `${path}.rules[${i}]`;
      const r = obj(x, q);
      return {
        from: arr(r, 'from', q).map((s, j) => decodeSource(obj(s, `${q}.from[${j}]`), `${q}.from[${j}]`)),
        to: arr(r, 'to', q).map((s, j) => decodeOperation(obj(s, `${q}.to[${j}]`), `${q}.to[${j}]`)),
        when: arr(r, 'when', q).map((s, j) => decodeCondition(obj(s, `${q}.when[${j}]`), `${q}.when[${j}]`)),
      };
    }),
  };
  checkPolicyValues(policy, path, ctx);
  return policy;
}

function decodePeerAuthentication(o: Json, path: string): PeerAuthentication {
  const pl = obj(o.portLevel, `${path}.portLevel`);
  const entries: [number, MtlsMode][] = Object.entries(pl).map(([k, v]) => {
    const n = /^\d{1,5}$/.test(k) ? Number(k) : NaN;
    if (!(n >= 1 && n <= 65535)) throw new WireFormatError(`${path}.portLevel.${k}`, 'expected a port number as key');
    if (typeof v !== 'string' || !(MTLS_MODES as readonly string[]).includes(v)) throw new WireFormatError(`${path}.portLevel.${k}`, `expected one of ${MTLS_MODES.join(', ')}`);
    return [n, v as MtlsMode];
  });
  return {
    name: name(o, path),
    namespace: namespace(o, path),
    scope: oneOf(o, 'scope', path, SCOPES),
    selector: labels(o, 'selector', path),
    mode: oneOf(o, 'mode', path, MTLS_MODES),
    portLevel: new ImmutableMap(entries),
  };
}

/** Context a decoder needs: the root namespace scopes waypoint policies. */
export interface DecodeContext {
  readonly rootNamespace: string;
}

/**
 * A `SPEC_KINDS` resource through the shared converter; its problems become one WireFormatError.
 * The converters take the structure as checked, so the spec meets the upstream schema of `kind`
 * first (the control plane checked it already; a malformed message must still not reach them),
 * and anything a converter throws is a WireFormatError too: nothing throws past the decoder.
 */
function viaConverter<T>(
  o: Json,
  path: string,
  kind: SpecKind,
  convert: (p: Problems, name: string, namespace: string, spec: Record<string, unknown>) => T | undefined,
): T {
  const n = name(o, path);
  const ns = namespace(o, path);
  const spec = obj(o.spec, `${path}.spec`);
  const structural = specProblems(kind, spec, `${path}.spec`);
  if (structural.length > 0) throw new WireFormatError(path, structural.map((s) => `${s.field}: ${s.message}`).join('; '));
  const p = new Problems();
  let r: T | undefined;
  try {
    r = convert(p, n, ns, spec);
  } catch (e) {
    throw new WireFormatError(path, `rejected by the converter: ${(e as Error).message}`);
  }
  if (p.size > 0 || r === undefined) throw new WireFormatError(path, p.list.join('; ') || 'rejected by the converter');
  return r;
}

const DECODERS: { [K in ResourceKind]: (o: Json, path: string, ctx: DecodeContext) => ResourceTypes[K] } = {
  nodes: decodeNode,
  workloads: decodeWorkload,
  services: decodeService,
  authorizationPolicies: decodeAuthorizationPolicy,
  peerAuthentications: decodePeerAuthentication,
  waypointPolicies: (o, path, ctx) =>
    viaConverter(o, path, 'AuthorizationPolicy', (p, name, ns, spec) => new WaypointPolicyConverter(p, ctx.rootNamespace).policy(name, ns, spec, `${path}.spec`)),
  requestAuthentications: (o, path, ctx) =>
    viaConverter(o, path, 'RequestAuthentication', (p, name, ns, spec) =>
      new RequestAuthenticationConverter(p, ctx.rootNamespace).requestAuthentication(name, ns, spec, `${path}.spec`),
    ),
  httpRoutes: (o, path) => viaConverter(o, path, 'HTTPRoute', (p, name, ns, spec) => new HttpRouteConverter(p).httpRoute(name, ns, spec, `${path}.spec`)),
  tcpRoutes: (o, path) => viaConverter(o, path, 'TCPRoute', (p, name, ns, spec) => new TcpRouteConverter(p).tcpRoute(name, ns, spec, `${path}.spec`)),
  grpcRoutes: (o, path) => viaConverter(o, path, 'GRPCRoute', (p, name, ns, spec) => new GrpcRouteConverter(p).grpcRoute(name, ns, spec, `${path}.spec`)),
  referenceGrants: (o, path) =>
    viaConverter(o, path, 'ReferenceGrant', (p, name, ns, spec) => new ReferenceGrantConverter(p).referenceGrant(name, ns, spec, `${path}.spec`)),
  virtualServices: (o, path) => viaConverter(o, path, 'VirtualService', (p, name, ns, spec) => new VirtualServiceConverter(p).virtualService(name, ns, spec, `${path}.spec`)),
  destinationRules: (o, path) => viaConverter(o, path, 'DestinationRule', (p, name, ns, spec) => new DestinationRuleConverter(p).destinationRule(name, ns, spec, `${path}.spec`)),
  pendingPods: decodePendingPod,
  namespaces: decodeNamespace,
};

/**
 * Decodes one resource into the frozen internal model.
 *
 * @throws WireFormatError naming the path of the first malformed field.
 */
export function decodeResource<K extends ResourceKind>(
  kind: K,
  v: unknown,
  path: string = kind,
  ctx: DecodeContext = { rootNamespace: DEFAULT_ROOT_NAMESPACE },
): ResourceTypes[K] {
  return deepFreeze(DECODERS[kind](obj(v, path), path, ctx));
}

function isKind(k: string): k is ResourceKind {
  return (RESOURCE_KINDS as readonly string[]).includes(k);
}

/** Decoded resources of a message: known kinds only, each resource validated. */
export type DecodedResources = { [K in ResourceKind]?: ResourceTypes[K][] };

function decodeResources(v: unknown, path: string, ctx: DecodeContext): DecodedResources {
  const m = obj(v, path);
  const out: DecodedResources = {};
  for (const [k, list] of Object.entries(m)) {
    if (!isKind(k)) continue; // forward compatibility: kinds a newer control plane adds
    if (!Array.isArray(list)) throw new WireFormatError(`${path}.${k}`, 'expected a list');
    (out as Record<string, unknown[]>)[k] = list.map((x, i) => decodeResource(k, x, `${path}.${k}[${i}]`, ctx));
  }
  return out;
}

/** A discovery message with its resources decoded. Unknown message types decode to undefined. */
export type DecodedMessage =
  | (Omit<SnapshotMessage, 'resources'> & { resources: DecodedResources })
  | (Omit<DeltaMessage, 'upserts' | 'removes' | 'replace'> & { upserts: DecodedResources; removes: Partial<Record<ResourceKind, string[]>>; replace: ResourceKind[] })
  | ResumeMessage
  | TrustBundleMessage;

/**
 * Parses and validates one line of the discovery stream. `ctx.rootNamespace` is the one of the
 * last snapshot (a snapshot brings its own).
 *
 * @returns undefined for a message type this client does not know (ignored, for forward compatibility).
 * @throws WireFormatError for malformed JSON or a malformed message.
 */
export function decodeMessage(line: string, ctx: DecodeContext = { rootNamespace: DEFAULT_ROOT_NAMESPACE }): DecodedMessage | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw new WireFormatError('', `not JSON: ${(e as Error).message}`);
  }
  const m = obj(v, '');
  const type = str(m, 'type', '');
  switch (type) {
    case 'snapshot': {
      const rootNamespace = syntax(m, 'rootNamespace', '', LABEL_RE, NAMESPACE_EXPECTED);
      return {
        type,
        version: str(m, 'version', ''),
        seq: int(m, 'seq', '', 0, Number.MAX_SAFE_INTEGER),
        rootNamespace,
        resources: decodeResources(m.resources, 'resources', { rootNamespace }),
      };
    }
    case 'delta': {
      const removes: Partial<Record<ResourceKind, string[]>> = {};
      for (const [k, list] of Object.entries(obj(m.removes, 'removes'))) {
        if (!isKind(k)) continue;
        removes[k] = arr({ [k]: list }, k, 'removes').map((x, i) => uid(x, `removes.${k}[${i}]`));
      }
      const replace = m.replace === undefined ? [] : strings(m, 'replace', '').filter(isKind);
      return {
        type,
        from: str(m, 'from', ''),
        version: str(m, 'version', ''),
        seq: int(m, 'seq', '', 0, Number.MAX_SAFE_INTEGER),
        upserts: decodeResources(m.upserts, 'upserts', ctx),
        removes,
        replace,
      };
    }
    case 'resume':
      return { type, version: str(m, 'version', ''), seq: int(m, 'seq', '', 0, Number.MAX_SAFE_INTEGER) };
    case 'trustBundle': {
      if (!Array.isArray(m.roots)) throw new WireFormatError('.roots', 'expected a list of PEM certificates');
      const roots = m.roots.map((r, i) => pem(r, `.roots[${i}]`));
      if (roots.length === 0) throw new WireFormatError('roots', 'must not be empty');
      return { type, roots, signer: str(m, 'signer', '') };
    }
    default:
      return undefined;
  }
}

/** `host:port`, `[v6]:port`, or a host alone (port `defaultPort`). */
export function parseHostPort(s: string, defaultPort: number = CONTROL_PLANE_PORT): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s) ?? /^([^:[\]]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m || !m[1]) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  return { host: m[1], port };
}

/** The URL authority for `host:port` (IPv6 in brackets). */
export function formatHostPort(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
