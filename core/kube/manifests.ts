/**
 * Kubernetes manifests (the YAML a user would `kubectl apply`) → the internal model.
 *
 * Two steps, both here and nowhere else:
 * 1. `parseManifests` reads multi-document YAML into typed objects, one at a time: an object with
 *    an unknown kind, a missing name, a bad selector or a policy field the mesh cannot enforce is
 *    rejected with problems naming the object (`Pod default/web`) and the field (`spec.selector`);
 *    the other objects of the same file are unaffected.
 * 2. `convertManifests` turns the accepted objects of a store, plus the node list, into one
 *    frozen `MeshConfig`. Cross-object rules live here (a pod on an unknown node, an address used
 *    twice, a waypoint that does not exist): they produce warnings naming the object, and the
 *    object is left out or partly applied, never the whole config.
 *
 * Objects are converted in a fixed order (by kind, namespace, name), so the same set of objects
 * always gives the same configuration, whatever order the files were read in.
 */
import { createHash } from 'node:crypto';
import { loadAll, YAMLException } from 'js-yaml';
import { PORTS } from '../hbone/constants.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, GATEWAY_NAME_LABEL, USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../labels.js';
import { canonicalIp } from '../model/ip.js';
import { deepFreeze } from '../model/freeze.js';
import { DEFAULT_ROOT_NAMESPACE, labelsMatch } from '../model/scope.js';
import { formatSpiffeId } from '../identity/spiffe.js';
import { Problems, describe, field, isMapping, keyPath, list, mapping, port, string, stringMap } from '../validation/check.js';
import { PolicySpecParser, httpAttributesWarning } from './authorization-policy.js';
import { RouteConverter } from './routes.js';
import { presentLists } from '../model/source.js';
import { WaypointPolicyConverter } from './waypoint-policy.js';
import type { DestinationRule, HttpRoute, VirtualService } from '../model/routes.js';
import { LABEL_RE, NAMESPACE_EXPECTED, NAME_EXPECTED, SA_RE, SUBDOMAIN_RE, checkLabel } from './names.js';
import type {
  AuthorizationPolicy,
  MeshConfig,
  MeshNamespace,
  NodeInfo,
  PeerAuthentication,
  PendingPod,
  Service,
  ServicePort,
  WaypointPolicy,
  WaypointRef,
  Workload,
} from '../model/types.js';

// ---- the user-facing API (Istio ambient's labels) -------------------------------------------

/** Istio's HBONE port on a waypoint. */
const WAYPOINT_HBONE_PORT = PORTS.hbone;
/** Namespace of pods and services that name none, as in Kubernetes. */
export const DEFAULT_NAMESPACE = 'default';
/** DNS domain of service hostnames. */
const CLUSTER_DNS_DOMAIN = 'cluster.local';

/** The kinds the store accepts, with the apiVersions each may be written with. */
export const SUPPORTED_KINDS = Object.freeze({
  Namespace: { apiVersions: ['v1'], namespaced: false },
  ServiceAccount: { apiVersions: ['v1'], namespaced: true },
  Pod: { apiVersions: ['v1'], namespaced: true },
  Service: { apiVersions: ['v1'], namespaced: true },
  Deployment: { apiVersions: ['apps/v1'], namespaced: true },
  AuthorizationPolicy: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], namespaced: true },
  PeerAuthentication: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], namespaced: true },
  Gateway: { apiVersions: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'], namespaced: true },
  HTTPRoute: { apiVersions: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'], namespaced: true },
  VirtualService: {
    apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'],
    namespaced: true,
  },
  DestinationRule: {
    apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'],
    namespaced: true,
  },
} as const);

export type ManifestKind = keyof typeof SUPPORTED_KINDS;
const KIND_NAMES = Object.keys(SUPPORTED_KINDS) as ManifestKind[];
/** Conversion order: kinds others refer to come first (only matters for messages). */
const KIND_ORDER = new Map<string, number>(KIND_NAMES.map((k, i) => [k, i]));

// ---- objects and problems ----------------------------------------------------------------

/** Which object: `Pod default/web`. Cluster-scoped kinds have no namespace. */
export interface ObjectRef {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

/** `Pod default/web`, `Namespace apps`. */
export function formatRef(ref: ObjectRef): string {
  return ref.namespace === undefined ? `${ref.kind} ${ref.name}` : `${ref.kind} ${ref.namespace}/${ref.name}`;
}

/** The store key of an object (kind, namespace, name). */
export function refKey(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace ?? ''}/${ref.name}`;
}

/**
 * - `error`: the object was rejected (not stored, or left out of the configuration);
 * - `warning`: the object applies, but not entirely as written (the message says what was dropped);
 * - `info`: nothing wrong, e.g. a pod not scheduled yet.
 */
export type Severity = 'error' | 'warning' | 'info';

/** One problem with one object, naming the field (`spec.selector.app`; empty for the object itself). */
export interface ObjectProblem {
  /** `Pod default/web`, or `document 3` when the object could not even be identified. */
  readonly object: string;
  readonly field: string;
  readonly message: string;
  readonly severity: Severity;
  /** Where the object came from: `apps.yaml#2` (file, document number from 1). */
  readonly source?: string;
}

/** `apps.yaml#2: Pod default/web: spec.nodeName: ...`. */
export function formatProblem(p: ObjectProblem): string {
  const where = p.source ? `${p.source}: ` : '';
  return `${where}${p.object}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

interface Meta {
  readonly name: string;
  /** Undefined for cluster-scoped kinds. */
  readonly namespace?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

interface Base<K extends ManifestKind> {
  readonly kind: K;
  readonly apiVersion: string;
  readonly meta: Meta;
  /** Where it came from (`file#doc`). */
  readonly source?: string;
  /** The document as written (deeply frozen), for waypoints and debug output. */
  readonly raw: Readonly<Record<string, unknown>>;
  /** JSON text of `raw`: the store compares it to tell a real change from a re-read. */
  readonly rawJson: string;
}

export interface NamespaceObject extends Base<'Namespace'> {}
export interface ServiceAccountObject extends Base<'ServiceAccount'> {}

export interface PodObject extends Base<'Pod'> {
  /** `metadata.uid` when the document has one (API objects do; the lab's files do not). */
  readonly uid?: string;
  readonly nodeName?: string;
  readonly serviceAccount: string;
  /** Canonical pod IPs from `status.podIPs` / `status.podIP` (the lab or the kubelet fills them). */
  readonly ips: readonly string[];
  readonly hostNetwork: boolean;
  /** False when the status says the pod is not running or not ready. */
  readonly healthy: boolean;
  /** Named container ports, for Services whose targetPort is a name. */
  readonly namedPorts: ReadonlyMap<string, number>;
  /** `status.phase` is Succeeded or Failed: its containers will not run again. */
  readonly finished?: boolean;
}

export interface DeploymentObject extends Base<'Deployment'> {
  readonly replicas: number;
  readonly selector: Readonly<Record<string, string>>;
  readonly templateLabels: Readonly<Record<string, string>>;
}

export interface ServiceSpecPort {
  readonly port: number;
  /** A number, or a container port name resolved per endpoint at conversion. */
  readonly targetPort: number | string;
  readonly name?: string;
}

export interface ServiceObject extends Base<'Service'> {
  /** Undefined: no selector (endpoints managed by hand, which the mesh does not read). */
  readonly selector?: Readonly<Record<string, string>>;
  readonly ports: readonly ServiceSpecPort[];
  /** Canonical cluster IPs; empty when headless or not assigned yet. */
  readonly clusterIps: readonly string[];
  readonly headless: boolean;
}

export interface AuthorizationPolicyObject extends Base<'AuthorizationPolicy'> {
  /** The L4 policy ztunnel enforces; undefined when the policy targets waypoints (`targetRefs`). */
  readonly policy?: AuthorizationPolicy;
  /** The L7 policy waypoints enforce, when it attaches with `targetRefs`. */
  readonly waypointPolicy?: WaypointPolicy;
}

export interface PeerAuthenticationObject extends Base<'PeerAuthentication'> {
  readonly policy: PeerAuthentication;
}

export interface GatewayObject extends Base<'Gateway'> {
  readonly gatewayClassName: string;
  /** `istio.io/waypoint-for`; only meaningful for waypoints. */
  readonly waypointFor: 'service' | 'workload' | 'all' | 'none';
  /** The HBONE listener's port (waypoints), else undefined. */
  readonly hbonePort?: number;
  /** `status.addresses[*].value` that are IPs. */
  readonly addresses: readonly string[];
}

export interface HTTPRouteObject extends Base<'HTTPRoute'> {
  readonly route: HttpRoute;
}
export interface VirtualServiceObject extends Base<'VirtualService'> {
  readonly virtualService: VirtualService;
}
export interface DestinationRuleObject extends Base<'DestinationRule'> {
  readonly destinationRule: DestinationRule;
}

export type ManifestObject =
  | NamespaceObject
  | ServiceAccountObject
  | PodObject
  | DeploymentObject
  | ServiceObject
  | AuthorizationPolicyObject
  | PeerAuthenticationObject
  | GatewayObject
  | HTTPRouteObject
  | VirtualServiceObject
  | DestinationRuleObject;

/** The ref of a parsed object. */
export function objectRef(o: ManifestObject): ObjectRef {
  return o.meta.namespace === undefined
    ? { kind: o.kind, name: o.meta.name }
    : { kind: o.kind, namespace: o.meta.namespace, name: o.meta.name };
}

/** Problems that remember their path and message apart, so they can be reported per field. */
class FieldProblems extends Problems {
  readonly entries: { field: string; message: string }[] = [];
  override add(path: string, message: string): void {
    super.add(path, message);
    this.entries.push({ field: path, message });
  }
}

// ---- parsing ------------------------------------------------------------------------------

/** Options of `parseManifests`. */
export interface ManifestParseOptions {
  /** Istio root namespace: scopes of policies (`istio-system` unless set). */
  readonly rootNamespace?: string;
}

/** What `parseManifests` found: accepted objects and every problem (rejected objects included). */
export interface ParsedManifests {
  readonly objects: ManifestObject[];
  readonly problems: ObjectProblem[];
}

/**
 * Parses multi-document YAML (or JSON) manifests. `kind: List` documents are expanded. Each
 * object is checked on its own; a rejected one is reported (severity `error`) and the others are
 * returned. A YAML syntax error rejects the whole text (nothing of it is applied).
 *
 * @example
 * const { objects, problems } = parseManifests(text, 'apps.yaml');
 * for (const p of problems) console.error(formatProblem(p));
 */
export function parseManifests(text: string, source: string, opts: ManifestParseOptions = {}): ParsedManifests {
  let docs: unknown[];
  try {
    docs = loadAll(text, { filename: source });
  } catch (e) {
    const where = e instanceof YAMLException && e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : '';
    const why = e instanceof YAMLException ? e.reason : (e as Error).message;
    return {
      objects: [],
      problems: [{ object: source, field: '', message: `yaml syntax error${where}: ${why}; nothing in this file was applied`, severity: 'error', source }],
    };
  }
  const objects: ManifestObject[] = [];
  const problems: ObjectProblem[] = [];
  const rootNamespace = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  docs.forEach((doc, i) => {
    if (doc === null || doc === undefined) return; // an empty document (e.g. a trailing ---)
    const where = `${source}#${i + 1}`;
    if (isMapping(doc) && doc.kind === 'List' && Array.isArray(doc.items)) {
      doc.items.forEach((item, j) => collect(parseObject(item, `${where}.items[${j}]`, rootNamespace)));
      return;
    }
    collect(parseObject(doc, where, rootNamespace));
  });
  function collect(r: { object?: ManifestObject; problems: ObjectProblem[] }): void {
    if (r.object) objects.push(r.object);
    problems.push(...r.problems);
  }
  return { objects, problems };
}

/**
 * Parses one object (an already-loaded YAML/JSON document).
 *
 * @returns the object when accepted (possibly with warnings), and its problems.
 */
export function parseObject(
  doc: unknown,
  source: string,
  rootNamespace: string = DEFAULT_ROOT_NAMESPACE,
): { object?: ManifestObject; problems: ObjectProblem[] } {
  const p = new FieldProblems();
  const warnings: { field: string; message: string; severity: Severity }[] = [];
  let label = `document ${source.split('#').pop() ?? source}`;
  const finish = (object: ManifestObject | undefined) => {
    const problems: ObjectProblem[] = p.entries.map((e) => ({ object: label, field: e.field, message: e.message, severity: 'error', source }));
    for (const w of warnings) problems.push({ object: label, field: w.field, message: w.message, severity: w.severity, source });
    // Frozen once here: conversions share these objects (and their policy models) for as long
    // as the object is unchanged.
    return p.size > 0 || !object ? { problems } : { object: deepFreeze(object), problems };
  };
  if (!isMapping(doc)) {
    p.add('', `expected a Kubernetes object (a mapping with apiVersion, kind and metadata), got ${describe(doc)}`);
    return finish(undefined);
  }
  const kind = field(p, '', doc, 'kind', (v, q) => string(p, q, v, 'a kind'), { required: true, expected: `one of ${KIND_NAMES.join(', ')}` });
  const apiVersion = field(p, '', doc, 'apiVersion', (v, q) => string(p, q, v, 'an apiVersion'), { required: true, expected: 'e.g. v1' });
  const metaMap = field(p, '', doc, 'metadata', (v, q) => (isMapping(v) ? v : (p.add(q, `expected a mapping, got ${describe(v)}`), undefined)), {
    required: true,
    expected: 'a mapping with at least a name',
  });
  const rawName = metaMap && typeof metaMap.name === 'string' ? metaMap.name : undefined;
  const rawNs = metaMap && typeof metaMap.namespace === 'string' ? metaMap.namespace : undefined;
  if (kind !== undefined && rawName !== undefined) {
    label = formatRef({ kind, name: rawName, ...(kind !== 'Namespace' ? { namespace: rawNs ?? DEFAULT_NAMESPACE } : {}) });
  }
  if (kind === undefined || apiVersion === undefined || !metaMap) return finish(undefined);
  if (!Object.hasOwn(SUPPORTED_KINDS, kind)) {
    p.add('kind', `unknown kind ${JSON.stringify(kind)} (apiVersion ${apiVersion}); supported kinds: ${KIND_NAMES.join(', ')}`);
    return finish(undefined);
  }
  const k = kind as ManifestKind;
  const info = SUPPORTED_KINDS[k];
  if (!(info.apiVersions as readonly string[]).includes(apiVersion)) {
    p.add('apiVersion', `${JSON.stringify(apiVersion)} is not an apiVersion of ${k}; expected ${info.apiVersions.join(' or ')}`);
  }
  const meta = parseMeta(p, metaMap, k, info.namespaced);
  if (!meta) return finish(undefined);
  let raw: Readonly<Record<string, unknown>>;
  let rawJson: string;
  try {
    rawJson = JSON.stringify(doc);
    raw = deepFreeze(JSON.parse(rawJson) as Record<string, unknown>);
  } catch (e) {
    p.add('', `cannot be represented as JSON: ${(e as Error).message}`);
    return finish(undefined);
  }
  const base = { apiVersion, meta, source, raw, rawJson };
  const spec = (required: boolean): Record<string, unknown> | undefined => {
    if (!Object.hasOwn(doc, 'spec') || doc.spec === null || doc.spec === undefined) {
      if (required) p.add('spec', 'required field is missing');
      return required ? undefined : {};
    }
    if (!isMapping(doc.spec)) {
      p.add('spec', `expected a mapping, got ${describe(doc.spec)}`);
      return undefined;
    }
    return doc.spec;
  };
  /** A kind whose spec is required: `parse` sees it when it is a mapping; otherwise `spec` said why and there is nothing. */
  const withSpec = <T>(parse: (s: Record<string, unknown>) => T | undefined): T | undefined => {
    const s = spec(true);
    return s ? parse(s) : undefined;
  };
  const status = isMapping(doc.status) ? doc.status : {};
  const ns = meta.namespace as string;
  const warn = (fieldPath: string, message: string, severity: Severity = 'warning') => warnings.push({ field: fieldPath, message, severity });
  switch (k) {
    case 'Namespace':
      return finish({ kind: k, ...base });
    case 'ServiceAccount':
      return finish({ kind: k, ...base });
    case 'Pod':
      return finish(withSpec((s) => parsePod(p, base, s, status, warn)));
    case 'Deployment':
      return finish(withSpec((s) => parseDeployment(p, base, s)));
    case 'Service':
      return finish(withSpec((s) => parseService(p, base, s, warn)));
    case 'AuthorizationPolicy': {
      const s = spec(false);
      if (!s) return finish(undefined);
      if (Object.hasOwn(s, 'targetRefs') || Object.hasOwn(s, 'targetRef')) {
        // Enforced by waypoints (L7), never by ztunnel, as in Istio.
        const waypointPolicy = new WaypointPolicyConverter(p, rootNamespace).policy(meta.name, ns, s, 'spec');
        if (!waypointPolicy) return finish(undefined);
        warn('spec.targetRefs', 'enforced by the waypoint it targets, not by ztunnel', 'info');
        return finish({ kind: k, ...base, waypointPolicy });
      }
      const policy = new PolicySpecParser(p, rootNamespace).authorizationPolicy({ name: meta.name, namespace: ns }, s, 'spec');
      if (!policy) return finish(undefined);
      const http = httpAttributesWarning(policy);
      if (http) warn('spec.rules', http);
      return finish({ kind: k, ...base, policy });
    }
    case 'PeerAuthentication': {
      const s = spec(false);
      if (!s) return finish(undefined);
      const policy = new PolicySpecParser(p, rootNamespace).peerAuthentication({ name: meta.name, namespace: ns }, s, 'spec');
      if (!policy) return finish(undefined);
      return finish({ kind: k, ...base, policy });
    }
    case 'Gateway':
      return finish(withSpec((s) => parseGateway(p, base, s, status)));
    case 'HTTPRoute': {
      const route = withSpec((s) => new RouteConverter(p).httpRoute(meta.name, ns, s, 'spec'));
      return finish(route ? { kind: k, ...base, route } : undefined);
    }
    case 'VirtualService': {
      const virtualService = withSpec((s) => new RouteConverter(p).virtualService(meta.name, ns, s, 'spec'));
      return finish(virtualService ? { kind: k, ...base, virtualService } : undefined);
    }
    case 'DestinationRule': {
      const destinationRule = withSpec((s) => new RouteConverter(p).destinationRule(meta.name, ns, s, 'spec'));
      return finish(destinationRule ? { kind: k, ...base, destinationRule } : undefined);
    }
  }
}

function parseMeta(p: Problems, m: Record<string, unknown>, kind: ManifestKind, namespaced: boolean): Meta | undefined {
  const before = p.size;
  const nameRe = kind === 'Namespace' ? LABEL_RE : SUBDOMAIN_RE;
  const nameExpected = kind === 'Namespace' ? NAMESPACE_EXPECTED : NAME_EXPECTED;
  const name = field(p, 'metadata', m, 'name', (v, q) =>
    string(p, q, v, nameExpected, (s) => (nameRe.test(s) ? undefined : `${JSON.stringify(s)} is not ${nameExpected}`)),
  { required: true, expected: nameExpected });
  let namespace: string | undefined;
  if (namespaced) {
    namespace =
      field(p, 'metadata', m, 'namespace', (v, q) =>
        string(p, q, v, NAMESPACE_EXPECTED, (s) => (LABEL_RE.test(s) ? undefined : `${JSON.stringify(s)} is not ${NAMESPACE_EXPECTED}`)),
      ) ?? DEFAULT_NAMESPACE;
  } else if (m.namespace !== undefined && m.namespace !== null) {
    p.add('metadata.namespace', `${kind} is cluster-scoped; remove metadata.namespace`);
  }
  const labels = field(p, 'metadata', m, 'labels', (v, q) => stringMap(p, q, v, checkLabel)) ?? {};
  const annotations = field(p, 'metadata', m, 'annotations', (v, q) => stringMap(p, q, v)) ?? {};
  if (p.size > before || name === undefined) return undefined;
  return { name, ...(namespace !== undefined ? { namespace } : {}), labels, annotations };
}

type BaseFields = Omit<Base<ManifestKind>, 'kind'>;
type Warn = (field: string, message: string, severity?: Severity) => void;

function oneIp(p: Problems, path: string, v: unknown): string | undefined {
  const c = typeof v === 'string' && !v.includes('%') ? canonicalIp(v) : undefined;
  if (c === undefined) p.add(path, `${describe(v)} is not an IPv4 or IPv6 address`);
  return c;
}

function ipList(p: Problems, path: string, v: unknown): string[] | undefined {
  return list(p, path, v, (x, q) => oneIp(p, q, x));
}

function parsePod(p: Problems, base: BaseFields, spec: Record<string, unknown>, status: Record<string, unknown>, warn: Warn): PodObject | undefined {
  const before = p.size;
  const nodeName = field(p, 'spec', spec, 'nodeName', (v, q) => string(p, q, v, 'a node name'));
  const serviceAccount =
    field(p, 'spec', spec, 'serviceAccountName', (v, q) =>
      string(p, q, v, 'a service account name', (s) => (SA_RE.test(s) ? undefined : `${JSON.stringify(s)} is not ${NAME_EXPECTED}`)),
    ) ??
    field(p, 'spec', spec, 'serviceAccount', (v, q) => string(p, q, v, 'a service account name')) ??
    'default';
  const hostNetwork = spec.hostNetwork === true;
  const namedPorts = new Map<string, number>();
  const containers = field(p, 'spec', spec, 'containers', (v, q) => list(p, q, v, (c) => c), {
    required: true,
    expected: 'a list of containers',
  });
  containers?.forEach((c, i) => {
    if (!isMapping(c) || !Array.isArray(c.ports)) return;
    c.ports.forEach((cp: unknown, j: number) => {
      if (!isMapping(cp)) return;
      const q = `spec.containers[${i}].ports[${j}]`;
      const num = field(p, q, cp, 'containerPort', (v, r) => port(p, r, v), { required: true, expected: 'a port' });
      if (typeof cp.name === 'string' && num !== undefined) namedPorts.set(cp.name, num);
    });
  });
  // status.podIPs is authoritative (dual stack); podIP alone is what older writers fill.
  let ips: string[] = [];
  if (status.podIPs !== undefined && status.podIPs !== null) {
    ips =
      list(p, 'status.podIPs', status.podIPs, (x, q) => {
        const m = mapping(p, q, x, ['ip'], 'a mapping {ip}');
        return m ? field(p, q, m, 'ip', (v, r) => oneIp(p, r, v), { required: true, expected: 'an IP address' }) : undefined;
      }) ?? [];
  } else if (status.podIP !== undefined && status.podIP !== null) {
    const ip = oneIp(p, 'status.podIP', status.podIP);
    ips = ip === undefined ? [] : [ip];
  }
  if (typeof status.podIP === 'string' && ips.length > 0 && canonicalIp(status.podIP) !== ips[0]) {
    p.add('status.podIP', `${JSON.stringify(status.podIP)} is not the first of status.podIPs (${ips[0]})`);
  }
  const phase = typeof status.phase === 'string' ? status.phase : undefined;
  const rawMeta = isMapping(base.raw.metadata) ? base.raw.metadata : {};
  const uid = typeof rawMeta.uid === 'string' && rawMeta.uid !== '' ? rawMeta.uid : undefined;
  let healthy = phase === undefined || phase === 'Running';
  if (Array.isArray(status.conditions)) {
    for (const c of status.conditions) {
      if (isMapping(c) && c.type === 'Ready' && c.status === 'False') healthy = false;
    }
  }
  if (isMapping(base.raw.metadata) && base.raw.metadata.deletionTimestamp) healthy = false;
  if (nodeName === undefined) warn('spec.nodeName', 'not scheduled yet: the pod joins the mesh once it has a node and an IP', 'info');
  else if (ips.length === 0 && !hostNetwork) warn('status.podIPs', 'no IP yet: the pod joins the mesh once it has one', 'info');
  if (p.size > before) return undefined;
  return {
    kind: 'Pod',
    ...base,
    ...(uid !== undefined ? { uid } : {}),
    ...(nodeName !== undefined ? { nodeName } : {}),
    ...(phase === 'Succeeded' || phase === 'Failed' ? { finished: true } : {}),
    serviceAccount,
    ips,
    hostNetwork,
    healthy,
    namedPorts,
  };
}

/** `{matchLabels}` of a Deployment; `matchExpressions` cannot be checked against the template here. */
function parseLabelSelector(p: Problems, path: string, v: unknown): Record<string, string> | undefined {
  const m = mapping(p, path, v, ['matchLabels', 'matchExpressions'], 'a label selector {matchLabels: {...}}');
  if (!m) return undefined;
  if (m.matchExpressions !== undefined) {
    p.add(keyPath(path, 'matchExpressions'), 'is not supported by the mesh; use matchLabels');
    return undefined;
  }
  const labels = field(p, path, m, 'matchLabels', (x, q) => stringMap(p, q, x, checkLabel), { required: true, expected: 'a map of labels' });
  if (labels && Object.keys(labels).length === 0) {
    p.add(keyPath(path, 'matchLabels'), 'must not be empty; an empty selector selects every pod of the namespace');
    return undefined;
  }
  return labels;
}

function parseDeployment(p: Problems, base: BaseFields, spec: Record<string, unknown>): DeploymentObject | undefined {
  const before = p.size;
  const replicas =
    field(p, 'spec', spec, 'replicas', (v, q) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
        p.add(q, `${describe(v)} is not a replica count; expected an integer from 0`);
        return undefined;
      }
      return v;
    }) ?? 1;
  const selector = field(p, 'spec', spec, 'selector', (v, q) => parseLabelSelector(p, q, v), { required: true, expected: '{matchLabels: {...}}' });
  const template = field(p, 'spec', spec, 'template', (v, q) => mapping(p, q, v, ['metadata', 'spec'], 'a pod template {metadata, spec}'), {
    required: true,
    expected: 'a pod template {metadata, spec}',
  });
  let templateLabels: Record<string, string> = {};
  if (template) {
    const tm = isMapping(template.metadata) ? template.metadata : {};
    templateLabels = field(p, 'spec.template.metadata', tm, 'labels', (v, q) => stringMap(p, q, v, checkLabel)) ?? {};
    if (!isMapping(template.spec)) p.add('spec.template.spec', `expected a pod spec, got ${describe(template.spec)}`);
    else field(p, 'spec.template.spec', template.spec, 'containers', (v, q) => list(p, q, v, (c) => c, { nonEmpty: 'a pod needs a container' }), { required: true, expected: 'a list of containers' });
  }
  if (selector && !labelsMatch(selector, templateLabels)) {
    p.add('spec.selector.matchLabels', `does not match spec.template.metadata.labels (${JSON.stringify(templateLabels)}); the deployment would own none of its pods`);
  }
  if (p.size > before || !selector) return undefined;
  return { kind: 'Deployment', ...base, replicas, selector, templateLabels };
}

function parseService(p: Problems, base: BaseFields, spec: Record<string, unknown>, warn: Warn): ServiceObject | undefined {
  const before = p.size;
  const type = typeof spec.type === 'string' ? spec.type : 'ClusterIP';
  if (type === 'ExternalName') {
    p.add('spec.type', 'ExternalName services are not supported by the mesh');
    return undefined;
  }
  if (!['ClusterIP', 'NodePort', 'LoadBalancer'].includes(type)) p.add('spec.type', `${JSON.stringify(type)} is not a service type; expected ClusterIP, NodePort or LoadBalancer`);
  let selector: Record<string, string> | undefined;
  if (spec.selector !== undefined && spec.selector !== null) {
    selector = stringMap(p, 'spec.selector', spec.selector, checkLabel);
    if (selector && Object.keys(selector).length === 0) selector = undefined;
  }
  if (!selector && p.size === before) {
    warn('spec.selector', 'no selector: the mesh sees no endpoints for this service (hand-made Endpoints are not read)');
  }
  const portNames = new Set<string>();
  const seenPorts = new Set<number>();
  const ports =
    field(p, 'spec', spec, 'ports', (v, q) =>
      list(p, q, v, (x, xq) => {
        const m = mapping(p, xq, x, ['name', 'port', 'targetPort', 'protocol', 'nodePort', 'appProtocol'], 'a service port {name, port, targetPort, protocol}');
        if (!m) return undefined;
        const b = p.size;
        const num = field(p, xq, m, 'port', (y, r) => port(p, r, y), { required: true, expected: 'an integer from 1 to 65535' });
        const protocol = m.protocol ?? 'TCP';
        if (protocol !== 'TCP') {
          warn(keyPath(xq, 'protocol'), `${describe(protocol)} ports are not carried by the mesh (TCP only); this port is left out`);
          return undefined;
        }
        let targetPort: number | string | undefined = num;
        if (m.targetPort !== undefined && m.targetPort !== null) {
          targetPort =
            typeof m.targetPort === 'string' && !/^\d+$/.test(m.targetPort)
              ? string(p, keyPath(xq, 'targetPort'), m.targetPort, 'a port name', (s) => (/^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(s) ? undefined : `${JSON.stringify(s)} is not a port number or a container port name`))
              : port(p, keyPath(xq, 'targetPort'), m.targetPort, true);
        }
        const name = field(p, xq, m, 'name', (y, r) => string(p, r, y, 'a port name'));
        if (name !== undefined) {
          if (portNames.has(name)) p.add(keyPath(xq, 'name'), `duplicate port name ${JSON.stringify(name)}`);
          portNames.add(name);
        }
        if (num !== undefined) {
          if (seenPorts.has(num)) p.add(keyPath(xq, 'port'), `duplicate port ${num}`);
          seenPorts.add(num);
        }
        if (p.size > b || num === undefined || targetPort === undefined) return undefined;
        return { port: num, targetPort, ...(name !== undefined ? { name } : {}) };
      }),
    { required: true, expected: 'a list of ports' }) ?? [];
  let headless = false;
  let clusterIps: string[] = [];
  const ipsField = spec.clusterIPs ?? (spec.clusterIP !== undefined && spec.clusterIP !== null && spec.clusterIP !== '' ? [spec.clusterIP] : undefined);
  const ipsPath = spec.clusterIPs !== undefined ? 'spec.clusterIPs' : 'spec.clusterIP';
  if (Array.isArray(ipsField) && ipsField[0] === 'None') headless = true;
  else if (spec.clusterIPs !== undefined && spec.clusterIPs !== null) clusterIps = ipList(p, ipsPath, ipsField) ?? [];
  else if (ipsField !== undefined) clusterIps = [oneIp(p, ipsPath, spec.clusterIP)].filter((x): x is string => x !== undefined);
  if (headless) warn('spec.clusterIP', 'headless: the mesh carries traffic to its pods by pod IP, not through a service address', 'info');
  else if (clusterIps.length === 0 && p.size === before) warn('spec.clusterIP', 'no cluster IP assigned yet: the service joins the mesh once it has one', 'info');
  if (p.size > before) return undefined;
  return { kind: 'Service', ...base, ...(selector ? { selector } : {}), ports, clusterIps, headless };
}

function parseGateway(p: Problems, base: BaseFields, spec: Record<string, unknown>, status: Record<string, unknown>): GatewayObject | undefined {
  const before = p.size;
  const gatewayClassName = field(p, 'spec', spec, 'gatewayClassName', (v, q) => string(p, q, v, 'a GatewayClass name'), {
    required: true,
    expected: `${WAYPOINT_CLASS} for a waypoint`,
  });
  const forLabel = base.meta.labels[WAYPOINT_FOR_LABEL] ?? 'service';
  const waypointFor = (['service', 'workload', 'all', 'none'] as const).find((x) => x === forLabel);
  if (!waypointFor) p.add(`metadata.labels["${WAYPOINT_FOR_LABEL}"]`, `${JSON.stringify(forLabel)} is not allowed; expected service, workload, all or none`);
  let hbonePort: number | undefined;
  if (gatewayClassName === WAYPOINT_CLASS) {
    const listeners = Array.isArray(spec.listeners) ? spec.listeners : [];
    const hbone = listeners.findIndex((l) => isMapping(l) && l.protocol === 'HBONE');
    if (hbone === -1) {
      p.add('spec.listeners', `a waypoint needs the listener {name: mesh, port: ${WAYPOINT_HBONE_PORT}, protocol: HBONE}`);
    } else {
      hbonePort = port(p, `spec.listeners[${hbone}].port`, (listeners[hbone] as Record<string, unknown>).port);
    }
  }
  const addresses: string[] = [];
  if (Array.isArray(status.addresses)) {
    for (const a of status.addresses) {
      const ip = isMapping(a) && typeof a.value === 'string' ? canonicalIp(a.value) : undefined;
      if (ip) addresses.push(ip);
    }
  }
  if (p.size > before || gatewayClassName === undefined || !waypointFor) return undefined;
  return { kind: 'Gateway', ...base, gatewayClassName, waypointFor, ...(hbonePort !== undefined ? { hbonePort } : {}), addresses };
}

// ---- the store ----------------------------------------------------------------------------

/** The objects a store change touched: `prev` is the replaced version, if any. */
export interface ObjectChanges {
  readonly upserted: readonly { readonly prev?: ManifestObject; readonly next: ManifestObject }[];
  readonly deleted: readonly ManifestObject[];
}

/** What a store change did. */
export interface StoreChange {
  /** Objects added or changed. */
  readonly upserted: number;
  readonly deleted: number;
  /** Objects refused (duplicates); their problems are in `problems`. */
  readonly problems: ObjectProblem[];
}

/**
 * The set of accepted objects. `revision` increases on every real change; re-applying an
 * identical object changes nothing. Listeners run synchronously after each change.
 *
 * @example
 * const store = new ManifestStore();
 * store.onChange(() => schedule(convert));
 * store.apply(parseManifests(text, 'apps.yaml').objects);
 */
export class ManifestStore {
  private readonly byKey = new Map<string, ManifestObject>();
  private readonly listeners = new Set<(change: ObjectChanges) => void>();
  #revision = 0;
  // Objects in conversion order, kept across changes that only replace objects (the common
  // case: a pod's labels or status); re-sorted when objects are added or removed.
  #sorted: ManifestObject[] | undefined;
  #index = new Map<string, number>();

  get revision(): number {
    return this.#revision;
  }

  get size(): number {
    return this.byKey.size;
  }

  objects(): IterableIterator<ManifestObject> {
    return this.byKey.values();
  }

  /** Every object in conversion order (kind, namespace, name); pass to `convertManifests` with `sorted: true`. */
  sortedObjects(): readonly ManifestObject[] {
    if (!this.#sorted) {
      this.#sorted = sortObjects([...this.byKey.values()]);
      this.#index = new Map(this.#sorted.map((o, i) => [refKey(objectRef(o)), i]));
    }
    return this.#sorted;
  }

  get(ref: ObjectRef): ManifestObject | undefined {
    return this.byKey.get(refKey(ref));
  }

  /** Listeners run synchronously after each change, with what changed. */
  onChange(listener: (change: ObjectChanges) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adds or replaces objects (as `kubectl apply` does). */
  apply(objects: readonly ManifestObject[]): StoreChange {
    const upserted: ObjectChanges['upserted'][number][] = [];
    for (const o of objects) {
      const key = refKey(objectRef(o));
      const prev = this.byKey.get(key);
      if (prev && prev.rawJson === o.rawJson && prev.kind === o.kind) continue;
      this.#put(key, prev, o);
      upserted.push(prev ? { prev, next: o } : { next: o });
    }
    return this.#changed({ upserted, deleted: [] }, []);
  }

  /** Removes objects (as `kubectl delete` does); unknown refs are ignored. */
  delete(refs: readonly ObjectRef[]): StoreChange {
    const deleted: ManifestObject[] = [];
    for (const r of refs) {
      const key = refKey(r);
      const prev = this.byKey.get(key);
      if (!prev) continue;
      this.byKey.delete(key);
      deleted.push(prev);
    }
    if (deleted.length > 0) this.#sorted = undefined;
    return this.#changed({ upserted: [], deleted }, []);
  }

  /**
   * Makes the store hold exactly `objects` (a directory re-read). The same object twice (same
   * kind, namespace and name, from two files) is an error for the second one; the first stays.
   * An object identical to the stored one (same text) keeps the stored instance, so conversions
   * recognise it as unchanged.
   */
  replaceAll(objects: readonly ManifestObject[]): StoreChange {
    const next = new Map<string, ManifestObject>();
    const problems: ObjectProblem[] = [];
    for (const o of objects) {
      const ref = objectRef(o);
      const key = refKey(ref);
      const first = next.get(key);
      if (first) {
        problems.push({
          object: formatRef(ref),
          field: 'metadata.name',
          message: `defined twice; the definition in ${first.source ?? 'another document'} is used and this one ignored`,
          severity: 'error',
          ...(o.source !== undefined ? { source: o.source } : {}),
        });
        continue;
      }
      next.set(key, o);
    }
    const upserted: ObjectChanges['upserted'][number][] = [];
    const deleted: ManifestObject[] = [];
    for (const [key, o] of next) {
      const prev = this.byKey.get(key);
      if (prev && prev.rawJson === o.rawJson && prev.kind === o.kind) continue;
      this.#put(key, prev, o);
      upserted.push(prev ? { prev, next: o } : { next: o });
    }
    for (const [key, o] of this.byKey) {
      if (next.has(key)) continue;
      this.byKey.delete(key);
      deleted.push(o);
    }
    if (deleted.length > 0) this.#sorted = undefined;
    return this.#changed({ upserted, deleted }, problems);
  }

  #put(key: string, prev: ManifestObject | undefined, o: ManifestObject): void {
    this.byKey.set(key, o);
    const at = this.#index.get(key);
    if (prev && this.#sorted && at !== undefined) this.#sorted[at] = o;
    else this.#sorted = undefined;
  }

  #changed(change: ObjectChanges, problems: ObjectProblem[]): StoreChange {
    const result = { upserted: change.upserted.length, deleted: change.deleted.length, problems };
    if (result.upserted > 0 || result.deleted > 0) {
      this.#revision++;
      for (const l of this.listeners) l(change);
    }
    return result;
  }
}

// ---- conversion ---------------------------------------------------------------------------

/** Inputs of a conversion. */
export interface ConvertInputs {
  readonly objects: Iterable<ManifestObject>;
  /** `objects` are in conversion order already (`ManifestStore.sortedObjects`). */
  readonly sorted?: boolean;
  /** The nodes of the cluster (the lab's or the cluster's node list). */
  readonly nodes: readonly NodeInfo[];
  readonly trustDomain: string;
  readonly rootNamespace?: string;
}

/** The objects behind the waypoint kinds of the configuration (their specs travel as written). */
export interface WaypointResources {
  readonly gateways: readonly GatewayObject[];
  readonly httpRoutes: readonly HTTPRouteObject[];
  readonly virtualServices: readonly VirtualServiceObject[];
  readonly destinationRules: readonly DestinationRuleObject[];
  /** AuthorizationPolicies with targetRefs. */
  readonly authorizationPolicies: readonly AuthorizationPolicyObject[];
}

/** The outcome of a conversion. */
export interface ConvertResult {
  /** Deeply frozen. */
  readonly config: MeshConfig;
  readonly waypoint: WaypointResources;
  /** Cross-object problems (the parse problems of each object are reported when it is parsed). */
  readonly problems: readonly ObjectProblem[];
}

function sortKey(o: ManifestObject): string {
  return `${String(KIND_ORDER.get(o.kind)).padStart(2, '0')}/${o.meta.namespace ?? ''}/${o.meta.name}`;
}

function sortObjects(objects: ManifestObject[]): ManifestObject[] {
  const keyed = objects.map((o) => ({ k: sortKey(o), o }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  return keyed.map((x) => x.o);
}

/**
 * Converts a set of accepted objects into the mesh configuration (a one-off
 * `ManifestConverter`).
 *
 * - Every pod with a node from `nodes` and an IP is a workload (host-network pods are not). Its
 *   protocol is HBONE when its namespace carries `istio.io/dataplane-mode=ambient` (or the pod
 *   itself does) and the pod does not carry `istio.io/dataplane-mode=none`; else TCP (traffic to
 *   it passes through unchanged).
 * - Every Service with a cluster IP is a service; its endpoints are the workloads of its namespace
 *   its selector matches; a named targetPort is resolved on those pods.
 * - `istio.io/use-waypoint` on a pod, a service or their namespace attaches the waypoint Gateway
 *   of that name (in the same namespace unless `istio.io/use-waypoint-namespace` says otherwise),
 *   if its `istio.io/waypoint-for` covers the kind of traffic; `none` on a pod or service opts out.
 * - AuthorizationPolicies (without targetRefs) and PeerAuthentications become L4 policies;
 *   with targetRefs, waypoint policies; HTTPRoutes and VirtualServices, routes.
 * - For node agents: every pod with a node but no IP yet (not host-network, not finished) is a
 *   pending pod, with the verdict its workload will have (HBONE: enrol it), except that a waypoint
 *   pod (`gateway.istio.io/managed=istio.io-mesh-controller`) is never HBONE; it moves to the
 *   workloads once it has an IP. Every Namespace object is listed with its
 *   `istio.io/dataplane-mode` label.
 *
 * @example
 * const { config, problems } = convertManifests({ objects: store.objects(), nodes, trustDomain: 'cluster.local' });
 */
export function convertManifests(inputs: ConvertInputs): ConvertResult {
  return new ManifestConverter().convert(inputs);
}

interface ServiceSlot {
  readonly svc: ServiceObject;
  /** Index in the services list, or -1 when the service is left out. */
  pos: number;
}

/**
 * The conversion, kept between calls so that the frequent change (pods coming, going, changing
 * labels or readiness) costs work proportional to the change, not to the mesh: `convert` does
 * everything and remembers its indexes; `updatePods` then patches the last result for changed
 * pods and the services whose selectors they match. Anything else (a namespace, a service, a
 * gateway, the node list, an address conflict) takes `convert` again. Both paths produce the same
 * configuration for the same objects.
 *
 * @example
 * const converter = new ManifestConverter();
 * let result = converter.convert({ objects: store.sortedObjects(), sorted: true, nodes, trustDomain });
 * // after a pod-only change:
 * result = converter.updatePods(changes) ?? converter.convert({ ... });
 */
export class ManifestConverter {
  #trustDomain = '';
  #rootNamespace = DEFAULT_ROOT_NAMESPACE;
  #namespaces = new Map<string, NamespaceObject>();
  #serviceAccounts = new Set<string>();
  #nodes = new Map<string, NodeInfo>();
  #gateways = new Map<string, GatewayObject>();
  #serviceByName = new Map<string, ServiceObject>();
  #waypointAddress = new Map<string, WaypointRef | null>();
  #undeclared = new Set<string>();
  #owners = new Map<string, ManifestObject>();
  #workloads: Workload[] = [];
  #workloadByPod = new Map<PodObject, Workload>();
  #podPos = new Map<string, number>();
  #podByKey = new Map<string, PodObject>();
  #labelIndex = new Map<string, PodObject[]>();
  #services: Service[] = [];
  #servicesByNs = new Map<string, ServiceSlot[]>();
  /** Pods on a node without an IP yet, by store key (node agents need them before the IP exists). */
  #pending = new Map<string, PendingPod>();
  #problems = new Map<string, ObjectProblem[]>();
  #last: ConvertResult | undefined;
  // Unchanged pods and services convert to the same frozen objects, so later stages (encoding,
  // diffing) skip them by identity.
  readonly #workloadCache = new WeakMap<PodObject, Workload>();
  readonly #serviceCache = new WeakMap<ServiceObject, Service>();
  readonly #labelKeys = new WeakMap<PodObject, readonly string[]>();
  readonly #pendingCache = new WeakMap<PodObject, PendingPod>();
  readonly #namespaceCache = new WeakMap<NamespaceObject, MeshNamespace>();

  /** Converts everything. */
  convert(inputs: ConvertInputs): ConvertResult {
    this.#trustDomain = inputs.trustDomain;
    this.#rootNamespace = inputs.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.#namespaces = new Map();
    this.#serviceAccounts = new Set();
    this.#gateways = new Map();
    this.#serviceByName = new Map();
    this.#waypointAddress = new Map();
    this.#undeclared = new Set();
    this.#owners = new Map();
    this.#workloads = [];
    this.#workloadByPod = new Map();
    this.#podPos = new Map();
    this.#podByKey = new Map();
    this.#labelIndex = new Map();
    this.#services = [];
    this.#servicesByNs = new Map();
    this.#pending = new Map();
    this.#problems = new Map();
    this.#nodes = new Map();
    for (const n of inputs.nodes) if (!this.#nodes.has(n.name)) this.#nodes.set(n.name, n);

    const sorted = inputs.sorted ? inputs.objects : sortObjects([...inputs.objects]);
    const pods: PodObject[] = [];
    const services: ServiceObject[] = [];
    const waypoint = { gateways: [] as GatewayObject[], httpRoutes: [] as HTTPRouteObject[], virtualServices: [] as VirtualServiceObject[], destinationRules: [] as DestinationRuleObject[], authorizationPolicies: [] as AuthorizationPolicyObject[] };
    const authz: AuthorizationPolicy[] = [];
    const peer: PeerAuthentication[] = [];
    const policyObjects: ManifestObject[] = [];
    for (const o of sorted) {
      switch (o.kind) {
        case 'Namespace':
          this.#namespaces.set(o.meta.name, o);
          break;
        case 'ServiceAccount':
          this.#serviceAccounts.add(`${o.meta.namespace}/${o.meta.name}`);
          break;
        case 'Pod':
          pods.push(o);
          break;
        case 'Service':
          services.push(o);
          this.#serviceByName.set(`${o.meta.namespace}/${o.meta.name}`, o);
          break;
        case 'Gateway':
          this.#gateways.set(`${o.meta.namespace}/${o.meta.name}`, o);
          waypoint.gateways.push(o);
          break;
        case 'HTTPRoute':
          waypoint.httpRoutes.push(o);
          policyObjects.push(o);
          break;
        case 'VirtualService':
          waypoint.virtualServices.push(o);
          policyObjects.push(o);
          break;
        case 'DestinationRule':
          waypoint.destinationRules.push(o);
          policyObjects.push(o);
          break;
        case 'AuthorizationPolicy':
          if (o.policy) authz.push(o.policy);
          if (o.waypointPolicy) waypoint.authorizationPolicies.push(o);
          policyObjects.push(o);
          break;
        case 'PeerAuthentication':
          peer.push(o.policy);
          policyObjects.push(o);
          break;
        case 'Deployment':
          break; // its pods are created by the lab (or the cluster) and arrive as Pod objects
      }
    }
    for (const pod of pods) {
      this.#checkNamespace(pod);
      const pending = this.#pendingOf(pod);
      if (pending) this.#pending.set(refKey(objectRef(pod)), pending);
      const w = this.#convertPod(pod);
      if (!w) continue;
      this.#podPos.set(refKey(objectRef(pod)), this.#workloads.length);
      this.#podByKey.set(refKey(objectRef(pod)), pod);
      this.#workloads.push(w);
      this.#indexPod(pod);
    }
    for (const svc of services) {
      this.#checkNamespace(svc);
      const ns = svc.meta.namespace as string;
      let slots = this.#servicesByNs.get(ns);
      if (!slots) this.#servicesByNs.set(ns, (slots = []));
      const slot: ServiceSlot = { svc, pos: -1 };
      slots.push(slot);
      if (svc.clusterIps.length === 0 && !svc.headless) continue;
      const clash = svc.clusterIps.find((ip) => this.#owners.has(ip));
      if (clash !== undefined) {
        this.#note(svc, 'spec.clusterIP', `address ${clash} is already used by ${formatRef(objectRef(this.#owners.get(clash)!))}; the service is left out`, 'error');
        continue;
      }
      for (const ip of svc.clusterIps) this.#owners.set(ip, svc);
      slot.pos = this.#services.length;
      this.#services.push(this.#convertService(svc));
    }
    for (const o of policyObjects) this.#checkNamespace(o);

    const waypointPolicies = waypoint.authorizationPolicies.map((o) => o.waypointPolicy as WaypointPolicy);
    const httpRoutes = waypoint.httpRoutes.map((o) => o.route);
    const virtualServices = waypoint.virtualServices.map((o) => o.virtualService);
    const destinationRules = waypoint.destinationRules.map((o) => o.destinationRule);
    const pendingPods = this.#pendingList();
    // Namespaces arrive in name order (conversion order), so equal stores give equal lists.
    const namespaces = [...this.#namespaces.values()].map((o) => this.#namespaceOf(o));
    const config: MeshConfig = {
      rootNamespace: this.#rootNamespace,
      nodes: deepFreeze([...this.#nodes.values()]),
      workloads: [...this.#workloads],
      services: [...this.#services],
      authorizationPolicies: authz,
      peerAuthentications: peer,
      ...presentLists({ waypointPolicies, httpRoutes, virtualServices, destinationRules, pendingPods, namespaces }),
    };
    // Every element is frozen already (parsed objects, cached conversions); freezing the lists and
    // the top is enough, and far cheaper than walking 10,000 workloads again.
    for (const v of Object.values(config)) if (Array.isArray(v)) Object.freeze(v);
    this.#last = { config: Object.freeze(config), waypoint: Object.freeze(waypoint), problems: this.#allProblems() };
    return this.#last;
  }

  /**
   * Patches the last result for changed pods (`prev` → `next`; `next` undefined: deleted).
   * Returns undefined when the change needs a full `convert` (no result yet, a pod whose
   * addresses changed or clash, a pod in an undeclared namespace).
   */
  updatePods(changes: readonly { prev?: PodObject; next?: PodObject }[]): ConvertResult | undefined {
    const last = this.#last;
    if (!last) return undefined;
    for (const { prev, next } of changes) {
      const o = (next ?? prev)!;
      const ns = o.meta.namespace as string;
      if (!this.#namespaces.has(ns) && ns !== DEFAULT_NAMESPACE && ns !== this.#rootNamespace) return undefined;
      if (prev && next && !sameStrings(prev.ips, next.ips)) return undefined;
      // An address owned by another object: who wins depends on the conversion order.
      const was = this.#podByKey.get(refKey(objectRef(o)));
      if (was && next && !sameStrings(was.ips, next.ips)) return undefined;
      if (next && next.ips.some((ip) => this.#owners.has(ip) && this.#owners.get(ip) !== was)) return undefined;
    }
    const removed = new Set<number>();
    const appended: Workload[] = [];
    const workloads = [...this.#workloads];
    const touchedServices = new Set<ServiceSlot>();
    for (const { prev, next } of changes) {
      const o = (next ?? prev)!;
      const key = refKey(objectRef(o));
      const ns = o.meta.namespace as string;
      this.#problems.delete(key);
      this.#pending.delete(key);
      const pending = next ? this.#pendingOf(next) : undefined;
      if (pending) this.#pending.set(key, pending);
      for (const slot of this.#servicesByNs.get(ns) ?? []) {
        const sel = slot.svc.selector;
        if (sel && ((prev && labelsMatch(sel, prev.meta.labels)) || (next && labelsMatch(sel, next.meta.labels)))) touchedServices.add(slot);
      }
      const pos = this.#podPos.get(key);
      // The instance converted last time, whatever the caller calls `prev`.
      const was = this.#podByKey.get(key);
      if (was) {
        this.#unindexPod(was);
        this.#workloadByPod.delete(was);
        this.#podByKey.delete(key);
        for (const ip of was.ips) if (this.#owners.get(ip) === was) this.#owners.delete(ip);
      }
      const w = next ? this.#convertPod(next) : undefined;
      if (w) {
        this.#podByKey.set(key, next!);
        this.#indexPod(next!);
        if (pos !== undefined) workloads[pos] = w;
        else appended.push(w);
      } else if (pos !== undefined) {
        removed.add(pos);
      }
    }
    let list = workloads;
    if (removed.size > 0 || appended.length > 0) {
      list = workloads.filter((_, i) => !removed.has(i));
      list.push(...appended);
      this.#podPos = new Map();
      list.forEach((w, i) => this.#podPos.set(`Pod/${w.namespace}/${w.name}`, i));
    }
    this.#workloads = list;
    const services = [...this.#services];
    for (const slot of touchedServices) {
      this.#problems.delete(refKey(objectRef(slot.svc)));
      if (slot.pos >= 0) services[slot.pos] = this.#convertService(slot.svc);
    }
    this.#services = services;
    const { pendingPods: _was, ...rest } = last.config;
    const pendingPods = this.#pendingList();
    const config: MeshConfig = Object.freeze({
      ...rest,
      workloads: Object.freeze([...list]),
      services: Object.freeze([...services]),
      ...(pendingPods.length > 0 ? { pendingPods: Object.freeze(pendingPods) } : {}),
    });
    this.#last = { config, waypoint: last.waypoint, problems: this.#allProblems() };
    return this.#last;
  }

  // ---- internals ----------------------------------------------------------------------------

  #note(o: ManifestObject, fieldPath: string, message: string, severity: Severity = 'warning'): void {
    const key = refKey(objectRef(o));
    let list = this.#problems.get(key);
    if (!list) this.#problems.set(key, (list = []));
    list.push({ object: formatRef(objectRef(o)), field: fieldPath, message, severity, ...(o.source !== undefined ? { source: o.source } : {}) });
  }

  #allProblems(): ObjectProblem[] {
    const out: ObjectProblem[] = [];
    for (const l of this.#problems.values()) out.push(...l);
    return out;
  }

  #nsLabels(ns: string): Readonly<Record<string, string>> {
    return this.#namespaces.get(ns)?.meta.labels ?? {};
  }

  #checkNamespace(o: ManifestObject): void {
    const ns = o.meta.namespace as string;
    if (this.#namespaces.has(ns) || ns === DEFAULT_NAMESPACE || ns === this.#rootNamespace || this.#undeclared.has(ns)) return;
    this.#undeclared.add(ns);
    this.#note(o, 'metadata.namespace', `namespace ${JSON.stringify(ns)} is not declared (no Namespace object); its pods are outside the mesh unless labelled themselves`);
  }

  /** The waypoint a pod or service sends its traffic through, from its labels and its namespace's. */
  #resolveWaypoint(o: PodObject | ServiceObject, forKind: 'service' | 'workload'): WaypointRef | undefined {
    const ns = o.meta.namespace as string;
    const own = o.meta.labels[USE_WAYPOINT_LABEL];
    if (own === 'none') return undefined;
    // A waypoint's own pods and service never send their traffic through a waypoint.
    if (o.meta.labels[GATEWAY_NAME_LABEL] !== undefined || (o.kind === 'Service' && this.#gateways.get(`${ns}/${o.meta.name}`)?.gatewayClassName === WAYPOINT_CLASS)) return undefined;
    const fromOwn = own !== undefined;
    const nsLabels = this.#nsLabels(ns);
    const name = own ?? nsLabels[USE_WAYPOINT_LABEL];
    if (name === undefined || name === 'none') return undefined;
    const wpNs = (fromOwn ? o.meta.labels[USE_WAYPOINT_NAMESPACE_LABEL] : nsLabels[USE_WAYPOINT_NAMESPACE_LABEL]) ?? ns;
    const where = fromOwn ? `metadata.labels["${USE_WAYPOINT_LABEL}"]` : `namespace ${ns} label ${USE_WAYPOINT_LABEL}`;
    const gw = this.#gateways.get(`${wpNs}/${name}`);
    if (!gw || gw.gatewayClassName !== WAYPOINT_CLASS) {
      // Reported on each object that asks for it itself, and on each service of a namespace that
      // does (its pods would repeat it for every replica).
      if (fromOwn || o.kind === 'Service') this.#note(o, fromOwn ? where : '', `waypoint ${wpNs}/${name} (${where}) is not a Gateway of class ${WAYPOINT_CLASS}; traffic goes direct`);
      return undefined;
    }
    if (gw.waypointFor !== 'all' && gw.waypointFor !== forKind) {
      if (fromOwn) this.#note(o, where, `waypoint ${wpNs}/${name} is for ${gw.waypointFor} traffic (${WAYPOINT_FOR_LABEL}), not ${forKind} traffic; traffic goes direct`);
      return undefined;
    }
    const key = `${wpNs}/${name}`;
    let ref = this.#waypointAddress.get(key);
    if (ref === undefined) {
      const address = gw.addresses[0] ?? this.#serviceByName.get(key)?.clusterIps[0];
      ref = address === undefined ? null : Object.freeze({ address, hbonePort: gw.hbonePort ?? WAYPOINT_HBONE_PORT });
      this.#waypointAddress.set(key, ref);
    }
    if (ref === null) {
      this.#note(o, fromOwn ? where : '', `waypoint ${key} has no address yet (no status.addresses and no Service ${key} with a cluster IP); traffic goes direct`);
      return undefined;
    }
    return ref;
  }

  /** Istio's rule: the pod's own label (`none` opts out, `ambient` opts in), else its namespace's. */
  #ambient(pod: PodObject): boolean {
    const podMode = pod.meta.labels[DATAPLANE_MODE_LABEL];
    return podMode === DATAPLANE_MODE.none ? false : podMode === DATAPLANE_MODE.ambient || this.#nsLabels(pod.meta.namespace as string)[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE.ambient;
  }

  /**
   * The pending pod of a pod scheduled on a node that has no IP yet (host-network pods never:
   * they are not wired by CNI; finished pods never: no sandbox will be made for them). Its node
   * need not be in the node list: node agents run on nodes whose ztunnel is not up yet.
   */
  #pendingOf(pod: PodObject): PendingPod | undefined {
    if (pod.hostNetwork || pod.nodeName === undefined || pod.ips.length > 0 || pod.finished) return undefined;
    // A waypoint is never captured, whatever its namespace says (Istio's node agent excludes it too).
    const waypoint = pod.meta.labels[WAYPOINT_MANAGED_LABEL] === WAYPOINT_MANAGED_VALUE;
    const protocol = this.#ambient(pod) && !waypoint ? 'HBONE' : 'TCP';
    let p = this.#pendingCache.get(pod);
    if (!p || p.protocol !== protocol) {
      p = deepFreeze<PendingPod>({
        namespace: pod.meta.namespace as string,
        name: pod.meta.name,
        ...(pod.uid !== undefined ? { uid: pod.uid } : {}),
        node: pod.nodeName,
        labels: pod.meta.labels,
        protocol,
      });
      this.#pendingCache.set(pod, p);
    }
    return p;
  }

  /** Pending pods in conversion order (namespace, name), whichever path changed them. */
  #pendingList(): PendingPod[] {
    return [...this.#pending.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, p]) => p);
  }

  #namespaceOf(o: NamespaceObject): MeshNamespace {
    const mode = o.meta.labels[DATAPLANE_MODE_LABEL];
    let n = this.#namespaceCache.get(o);
    if (!n) {
      n = Object.freeze({ name: o.meta.name, ...(mode !== undefined ? { dataplaneMode: mode } : {}) });
      this.#namespaceCache.set(o, n);
    }
    return n;
  }

  /** The workload of a pod, or undefined when it is not one (yet); claims its addresses. */
  #convertPod(pod: PodObject): Workload | undefined {
    const ns = pod.meta.namespace as string;
    if (pod.hostNetwork || pod.nodeName === undefined || pod.ips.length === 0) return undefined;
    if (!this.#nodes.has(pod.nodeName)) {
      this.#note(pod, 'spec.nodeName', `node ${JSON.stringify(pod.nodeName)} is not in the node list; the pod is left out until the node registers`);
      return undefined;
    }
    const clash = pod.ips.find((ip) => this.#owners.has(ip));
    if (clash !== undefined) {
      this.#note(pod, 'status.podIPs', `address ${clash} is already used by ${formatRef(objectRef(this.#owners.get(clash)!))}; the pod is left out`, 'error');
      return undefined;
    }
    for (const ip of pod.ips) this.#owners.set(ip, pod);
    if (pod.serviceAccount !== 'default' && !this.#serviceAccounts.has(`${ns}/${pod.serviceAccount}`)) {
      this.#note(pod, 'spec.serviceAccountName', `service account ${ns}/${pod.serviceAccount} is not declared; the identity is issued anyway`);
    }
    const ambient = this.#ambient(pod);
    const wp = ambient ? this.#resolveWaypoint(pod, 'workload') : undefined;
    const protocol = ambient ? 'HBONE' : 'TCP';
    let w = this.#workloadCache.get(pod);
    // Everything else of the workload comes from the (immutable) pod object itself.
    if (!w || w.protocol !== protocol || w.trustDomain !== this.#trustDomain || !sameWaypoint(w.waypoint, wp)) {
      // The identity must be a valid SPIFFE ID; names were checked at parse time, so this only
      // fails for a trust domain the caller got wrong.
      formatSpiffeId({ trustDomain: this.#trustDomain, namespace: ns, serviceAccount: pod.serviceAccount });
      w = deepFreeze<Workload>({
        uid: `${ns}/${pod.meta.name}`,
        name: pod.meta.name,
        namespace: ns,
        serviceAccount: pod.serviceAccount,
        trustDomain: this.#trustDomain,
        node: pod.nodeName,
        ips: pod.ips,
        protocol,
        labels: pod.meta.labels,
        healthy: pod.healthy,
        ...(wp ? { waypoint: wp } : {}),
      });
      this.#workloadCache.set(pod, w);
    }
    this.#workloadByPod.set(pod, w);
    return w;
  }

  #podLabelKeys(pod: PodObject): readonly string[] {
    let keys = this.#labelKeys.get(pod);
    if (!keys) {
      const ns = pod.meta.namespace as string;
      keys = Object.entries(pod.meta.labels).map(([k, v]) => `${ns}\u0000${k}\u0000${v}`);
      this.#labelKeys.set(pod, keys);
    }
    return keys;
  }

  /** Pods are indexed per namespace by label pair, so a selector only looks at pods carrying its first label. */
  #indexPod(pod: PodObject): void {
    for (const key of this.#podLabelKeys(pod)) {
      let l = this.#labelIndex.get(key);
      if (!l) this.#labelIndex.set(key, (l = []));
      l.push(pod);
    }
  }

  #unindexPod(pod: PodObject): void {
    for (const key of this.#podLabelKeys(pod)) {
      const l = this.#labelIndex.get(key);
      const i = l ? l.indexOf(pod) : -1;
      if (i >= 0) l!.splice(i, 1);
    }
  }

  #convertService(svc: ServiceObject): Service {
    const ns = svc.meta.namespace as string;
    let selected: PodObject[] = [];
    if (svc.selector) {
      const entries = Object.entries(svc.selector);
      const [k0, v0] = entries[0] as [string, string];
      const candidates = this.#labelIndex.get(`${ns}\u0000${k0}\u0000${v0}`) ?? [];
      selected = entries.length === 1 ? candidates : candidates.filter((p) => labelsMatch(svc.selector as Record<string, string>, p.meta.labels));
    }
    const ports: ServicePort[] = [];
    svc.ports.forEach((sp, i) => {
      if (typeof sp.targetPort === 'number') {
        ports.push({ port: sp.port, targetPort: sp.targetPort, ...(sp.name !== undefined ? { name: sp.name } : {}) });
        return;
      }
      // A named target port: the pods' container port of that name. The model has one target
      // port per service port, so pods that disagree are reported and the lowest one wins.
      const found = new Set<number>();
      for (const pod of selected) {
        const n = pod.namedPorts.get(sp.targetPort);
        if (n !== undefined) found.add(n);
      }
      const all = [...found].sort((a, b) => a - b);
      const first = all[0];
      if (first === undefined) {
        if (selected.length > 0) this.#note(svc, `spec.ports[${i}].targetPort`, `no selected pod has a container port named ${JSON.stringify(sp.targetPort)}; this port is left out`);
        return;
      }
      if (all.length > 1) this.#note(svc, `spec.ports[${i}].targetPort`, `pods disagree on the port named ${JSON.stringify(sp.targetPort)} (${all.join(', ')}); using ${first}`);
      ports.push({ port: sp.port, targetPort: first, ...(sp.name !== undefined ? { name: sp.name } : {}) });
    });
    const wp = this.#resolveWaypoint(svc, 'service');
    // Sorted, so that the same pods give the same service whatever order they arrived in.
    const endpoints = selected.map((p) => (this.#workloadByPod.get(p) as Workload).uid).sort();
    let out = this.#serviceCache.get(svc);
    if (!out || !sameWaypoint(out.waypoint, wp) || !samePorts(out.ports, ports) || !sameStrings(out.endpoints, endpoints)) {
      out = deepFreeze<Service>({
        name: svc.meta.name,
        namespace: ns,
        hostname: `${svc.meta.name}.${ns}.svc.${CLUSTER_DNS_DOMAIN}`,
        vips: svc.clusterIps,
        ports,
        endpoints,
        subjectAltNames: [],
        ...(wp ? { waypoint: wp } : {}),
      });
      this.#serviceCache.set(svc, out);
    }
    return out;
  }
}

function sameWaypoint(a: WaypointRef | undefined, b: WaypointRef | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.address === b.address && a.hbonePort === b.hbonePort);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function samePorts(a: readonly ServicePort[], b: readonly ServicePort[]): boolean {
  return a.length === b.length && a.every((x, i) => x.port === b[i]!.port && x.targetPort === b[i]!.targetPort && x.name === b[i]!.name);
}

// ---- helpers for the lab ------------------------------------------------------------------

/**
 * The pods a Deployment asks for, as Pod documents without node or IP (the lab schedules them
 * and fills `spec.nodeName` and `status.podIPs`). Names are `<deployment>-<template hash>-<i>`,
 * so a changed template gives new pod names, as a rollout does.
 */
export function podsForDeployment(d: DeploymentObject): Record<string, unknown>[] {
  const spec = d.raw.spec as Record<string, unknown>;
  const template = spec.template as Record<string, unknown>;
  const hash = createHash('sha256').update(JSON.stringify(template)).digest('hex').slice(0, 8);
  const tmeta = isMapping(template.metadata) ? template.metadata : {};
  return Array.from({ length: d.replicas }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...tmeta,
      name: `${d.meta.name}-${hash}-${i}`,
      namespace: d.meta.namespace,
      labels: { ...d.templateLabels },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.meta.name }],
    },
    spec: JSON.parse(JSON.stringify(template.spec)) as unknown,
  }));
}
