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
import { Problems } from '../validation/check.js';
import { DestinationRuleConverter } from '../kube/routes/destination-rule.js';
import { HttpRouteConverter } from '../kube/routes/http-route.js';
import { VirtualServiceConverter } from '../kube/routes/virtual-service.js';
import { WaypointPolicyConverter } from '../kube/waypoint-policy.js';
import { specProblems, type SpecKind } from '../kube/schema.js';
import type { DestinationRule, HttpRoute, VirtualService } from '../model/routes.js';
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
  'httpRoutes',
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
export const SPEC_KINDS: ReadonlySet<ResourceKind> = new Set(['waypointPolicies', 'httpRoutes', 'virtualServices', 'destinationRules']);

/** The internal type of each kind. */
export interface ResourceTypes {
  nodes: NodeInfo;
  workloads: Workload;
  services: Service;
  authorizationPolicies: AuthorizationPolicy;
  peerAuthentications: PeerAuthentication;
  waypointPolicies: WaypointPolicy;
  httpRoutes: HttpRoute;
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

function str(o: Json, k: string, path: string): string {
  const v = o[k];
  if (typeof v !== 'string' || v === '') throw new WireFormatError(`${path}.${k}`, 'expected a non-empty string');
  return v;
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
  return arr(o, k, path).map((x, i) => {
    if (typeof x !== 'string' || x === '') throw new WireFormatError(`${path}.${k}[${i}]`, 'expected a non-empty string');
    return x;
  });
}

function optStrings(o: Json, k: string, path: string): string[] | undefined {
  return o[k] === undefined ? undefined : strings(o, k, path);
}

function ip(v: unknown, path: string): string {
  const c = typeof v === 'string' ? canonicalIp(v) : undefined;
  if (c === undefined) throw new WireFormatError(path, 'expected an IP address');
  return c;
}

function stringRecord(o: Json, k: string, path: string): Record<string, string> {
  const m = obj(o[k], `${path}.${k}`);
  for (const [key, v] of Object.entries(m)) {
    if (typeof v !== 'string') throw new WireFormatError(`${path}.${k}.${key}`, 'expected a string');
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
  return { name: str(o, 'name', path), ztunnelAddress: ip(o.ztunnelAddress, `${path}.ztunnelAddress`), hbonePort: int(o, 'hbonePort', path, 1, 65535) };
}

function decodeWorkload(o: Json, path: string): Workload {
  const wp = waypoint(o, path);
  const w: Workload = {
    uid: str(o, 'uid', path),
    name: str(o, 'name', path),
    namespace: str(o, 'namespace', path),
    serviceAccount: str(o, 'serviceAccount', path),
    trustDomain: str(o, 'trustDomain', path),
    node: str(o, 'node', path),
    ips: arr(o, 'ips', path).map((x, i) => ip(x, `${path}.ips[${i}]`)),
    protocol: oneOf(o, 'protocol', path, ['HBONE', 'TCP'] as const),
    labels: stringRecord(o, 'labels', path),
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
  const uid = optStr(o, 'uid', path);
  return {
    namespace: str(o, 'namespace', path),
    name: str(o, 'name', path),
    ...(uid !== undefined ? { uid } : {}),
    node: str(o, 'node', path),
    labels: stringRecord(o, 'labels', path),
    protocol: oneOf(o, 'protocol', path, ['HBONE', 'TCP'] as const),
  };
}

function decodeNamespace(o: Json, path: string): MeshNamespace {
  // A label value may be empty in Kubernetes: any string is accepted, not only non-empty ones.
  const dataplaneMode = o.dataplaneMode;
  if (dataplaneMode !== undefined && typeof dataplaneMode !== 'string') throw new WireFormatError(`${path}.dataplaneMode`, 'expected a string');
  return { name: str(o, 'name', path), ...(dataplaneMode !== undefined ? { dataplaneMode } : {}) };
}

function decodeService(o: Json, path: string): Service {
  const wp = waypoint(o, path);
  return {
    name: str(o, 'name', path),
    namespace: str(o, 'namespace', path),
    hostname: str(o, 'hostname', path),
    vips: arr(o, 'vips', path).map((x, i) => ip(x, `${path}.vips[${i}]`)),
    ports: arr(o, 'ports', path).map((x, i): ServicePort => {
      const q = `${path}.ports[${i}]`;
      const p = obj(x, q);
      const name = optStr(p, 'name', q);
      return { port: int(p, 'port', q, 1, 65535), targetPort: int(p, 'targetPort', q, 1, 65535), ...(name !== undefined ? { name } : {}) };
    }),
    endpoints: strings(o, 'endpoints', path),
    subjectAltNames: strings(o, 'subjectAltNames', path),
    ...(wp ? { waypoint: wp } : {}),
  };
}

function decodeSource(o: Json, path: string): PolicySource {
  const out: Record<string, unknown> = { hasL7Fields: bool(o, 'hasL7Fields', path) };
  for (const k of ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks']) {
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

function decodeAuthorizationPolicy(o: Json, path: string): AuthorizationPolicy {
  return {
    name: str(o, 'name', path),
    namespace: str(o, 'namespace', path),
    scope: oneOf(o, 'scope', path, SCOPES),
    selector: stringRecord(o, 'selector', path),
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
    name: str(o, 'name', path),
    namespace: str(o, 'namespace', path),
    scope: oneOf(o, 'scope', path, SCOPES),
    selector: stringRecord(o, 'selector', path),
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
  const name = str(o, 'name', path);
  const namespace = str(o, 'namespace', path);
  const spec = obj(o.spec, `${path}.spec`);
  const structural = specProblems(kind, spec, `${path}.spec`);
  if (structural.length > 0) throw new WireFormatError(path, structural.map((s) => `${s.field}: ${s.message}`).join('; '));
  const p = new Problems();
  let r: T | undefined;
  try {
    r = convert(p, name, namespace, spec);
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
  httpRoutes: (o, path) => viaConverter(o, path, 'HTTPRoute', (p, name, ns, spec) => new HttpRouteConverter(p).httpRoute(name, ns, spec, `${path}.spec`)),
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
      const rootNamespace = str(m, 'rootNamespace', '');
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
        removes[k] = strings({ [k]: list }, k, 'removes');
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
      const roots = strings(m, 'roots', '');
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
