/**
 * Manifests (multi-document YAML or JSON) → typed objects (`objects.ts`), one at a time, and
 * nowhere else: an object with an unknown kind, a missing name, a bad selector or a policy field
 * the mesh cannot enforce is rejected with problems naming the object (`Pod default/web`) and the
 * field (`spec.selector`); the other objects of the same file are unaffected. Structure (types,
 * required fields, enums) is judged first by the upstream schema of the kind (`schema.ts`); what
 * it accepts is checked for meaning here and, for the specs of policy and routing kinds, by their
 * own converters (`authorization-policy.ts`, `waypoint-policy.ts`, `routes/`).
 */
import { YAMLException } from 'js-yaml';
import { YAML_LIMITS, loadYamlDocuments } from '../validation/yaml.js';
import { WAYPOINT_CLASS, WAYPOINT_FOR_LABEL } from '../labels.js';
import { canonicalIp } from '../model/ip.js';
import { deepFreeze } from '../model/freeze.js';
import { DEFAULT_ROOT_NAMESPACE, labelsMatch } from '../model/scope.js';
import { Problems, describe, field, indexPath, isMapping, keyPath, list, mapping, port, quote, string } from '../validation/check.js';
import { PolicySpecParser, httpAttributesWarning } from './authorization-policy.js';
import { DestinationRuleConverter } from './routes/destination-rule.js';
import { HttpRouteConverter } from './routes/http-route.js';
import { GrpcRouteConverter } from './routes/grpc-route.js';
import { TcpRouteConverter } from './routes/tcp-route.js';
import { ReferenceGrantConverter } from './routes/reference-grant.js';
import { appProtocolProblem } from '../model/app-protocol.js';
import { VirtualServiceConverter } from './routes/virtual-service.js';
import { WaypointPolicyConverter } from './waypoint-policy.js';
import { RequestAuthenticationConverter } from './request-authentication.js';
import { schemaProblems } from './schema.js';
import { LAB_MAX_REPLICAS } from './deployments.js';
import { LABEL_RE, NAMESPACE_EXPECTED, NAME_EXPECTED, PORT_NAME_EXPECTED, PORT_NAME_RE, SUBDOMAIN_RE, UID_EXPECTED, UID_RE, checkedAnnotations, checkedLabels } from './names.js';
import {
  DEFAULT_NAMESPACE,
  KIND_NAMES,
  SUPPORTED_KINDS,
  WAYPOINT_HBONE_PORT,
  formatRef,
  type BaseFields,
  type DeploymentObject,
  type GatewayObject,
  type ManifestKind,
  type ManifestObject,
  type Meta,
  type ObjectProblem,
  type PodObject,
  type ServiceObject,
  type Severity,
} from './objects.js';

/** A kind (CamelCase, as Kubernetes spells them) and an apiVersion (`group/version` or `version`). */
const KIND_RE = /^[A-Za-z][A-Za-z0-9]{0,62}$/;
const API_VERSION_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?(\/[a-z0-9]{1,63})?$/;

/** `s` as a message shows it: as written when it has the syntax `re` allows, else quoted (escaped, cut). */
function shown(s: string, re: RegExp): string {
  return re.test(s) ? s : quote(s);
}

/** Problems that remember their path and message apart, so they can be reported per field. */
class FieldProblems extends Problems {
  readonly entries: { field: string; message: string }[] = [];
  override add(path: string, message: string): void {
    super.add(path, message);
    this.entries.push({ field: path, message });
  }
}

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
  let docs: readonly unknown[];
  let tooLarge: ReturnType<typeof loadYamlDocuments>['tooLarge'];
  try {
    ({ docs, tooLarge } = loadYamlDocuments(text, source));
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
  for (const t of tooLarge) problems.push({ object: `${source}#${t.index + 1}`, field: '', message: t.message, severity: 'error', source });
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
    // A loop, not push(...r.problems): one object may have 150,000 problems (a list of empty
    // principals), more arguments than a call can take (RangeError: call stack).
    for (const x of r.problems) problems.push(x);
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
    // The label starts every message of the object and reaches logs before its name is checked:
    // a kind, name or namespace that is not a valid one is shown quoted (escaped, cut at 100).
    label = formatRef({
      kind: shown(kind, KIND_RE),
      name: shown(rawName, SUBDOMAIN_RE),
      ...(kind !== 'Namespace' ? { namespace: rawNs === undefined ? DEFAULT_NAMESPACE : shown(rawNs, LABEL_RE) } : {}),
    });
  }
  // A file's nesting is bounded by the YAML loader; JSON from an API server is not: a custom
  // resource keeps any nesting its decoder allows (10,000 levels), and the schema check,
  // JSON.stringify and deepFreeze below recurse once per level (RangeError near 5,000). Refused
  // whole, before any of them, at the loader's limit.
  const deep = deeperThan(doc, YAML_LIMITS.maxDepth);
  if (deep !== undefined) {
    p.add(deep, `nests deeper than ${YAML_LIMITS.maxDepth} levels, the most the mesh reads (a Kubernetes object nests about 15)`);
    return finish(undefined);
  }
  if (kind === undefined || apiVersion === undefined || !metaMap) return finish(undefined);
  if (!Object.hasOwn(SUPPORTED_KINDS, kind)) {
    p.add('kind', `unknown kind ${quote(kind)} (apiVersion ${shown(apiVersion, API_VERSION_RE)}); supported kinds: ${KIND_NAMES.join(', ')}`);
    return finish(undefined);
  }
  const k = kind as ManifestKind;
  const info = SUPPORTED_KINDS[k];
  if (!(info.apiVersions as readonly string[]).includes(apiVersion)) {
    p.add('apiVersion', `${quote(apiVersion)} is not an apiVersion of ${k}; expected ${info.apiVersions.join(' or ')}`);
    return finish(undefined);
  }
  // Structure first, as an API server does: the upstream schema of the kind (schema.ts) judges
  // types, required fields and enums, and an object it rejects never reaches the hand parsers, so
  // no field gets two messages. Every source comes through here (lab, manifest files, the
  // Kubernetes source): the base chart's CRDs keep spec as sent (charts/base/crds/README.md), so
  // nothing before this point has checked the structure of a custom resource.
  // invariant: every apiVersion of SUPPORTED_KINDS has a schema (schema.test.ts checks it).
  const structural = schemaProblems(doc) ?? [];
  for (const s of structural) p.add(s.field, s.message);
  if (structural.length > 0) return finish(undefined);
  // From here on the structure is the schema's: types, required fields and enums are not checked
  // again; what is checked is what the schema cannot say (names, label syntax, IPs, port ranges,
  // duplicates, what the mesh supports) and keys the mesh does not know.
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
    case 'RequestAuthentication': {
      const s = spec(false);
      if (!s) return finish(undefined);
      const requestAuthentication = new RequestAuthenticationConverter(p, rootNamespace).requestAuthentication(meta.name, ns, s, 'spec');
      if (!requestAuthentication) return finish(undefined);
      // Only waypoints validate JWTs in ambient mode; ztunnel sees no HTTP.
      if (requestAuthentication.targetRefs.length === 0) warn('spec', 'validated by no proxy: in ambient mode only a waypoint validates JWTs; attach the policy with targetRefs to the waypoint Gateway or a Service');
      else warn('spec.targetRefs', 'enforced by the waypoint it targets, not by ztunnel', 'info');
      return finish({ kind: k, ...base, requestAuthentication });
    }
    case 'Gateway':
      return finish(withSpec((s) => parseGateway(p, base, s, status)));
    case 'HTTPRoute': {
      const route = withSpec((s) => new HttpRouteConverter(p).httpRoute(meta.name, ns, s, 'spec'));
      return finish(route ? { kind: k, ...base, route } : undefined);
    }
    case 'GRPCRoute': {
      const route = withSpec((s) => new GrpcRouteConverter(p).grpcRoute(meta.name, ns, s, 'spec'));
      return finish(route ? { kind: k, ...base, route } : undefined);
    }
    case 'TCPRoute': {
      const route = withSpec((s) => new TcpRouteConverter(p).tcpRoute(meta.name, ns, s, 'spec'));
      return finish(route ? { kind: k, ...base, route } : undefined);
    }
    case 'ReferenceGrant': {
      const grant = withSpec((s) => new ReferenceGrantConverter(p).referenceGrant(meta.name, ns, s, 'spec'));
      return finish(grant ? { kind: k, ...base, grant } : undefined);
    }
    case 'VirtualService': {
      const virtualService = withSpec((s) => new VirtualServiceConverter(p).virtualService(meta.name, ns, s, 'spec'));
      return finish(virtualService ? { kind: k, ...base, virtualService } : undefined);
    }
    case 'DestinationRule': {
      const destinationRule = withSpec((s) => new DestinationRuleConverter(p).destinationRule(meta.name, ns, s, 'spec'));
      return finish(destinationRule ? { kind: k, ...base, destinationRule } : undefined);
    }
  }
}

function parseMeta(p: Problems, m: Record<string, unknown>, kind: ManifestKind, namespaced: boolean): Meta | undefined {
  const before = p.size;
  const nameRe = kind === 'Namespace' ? LABEL_RE : SUBDOMAIN_RE;
  const nameExpected = kind === 'Namespace' ? NAMESPACE_EXPECTED : NAME_EXPECTED;
  const name = field(p, 'metadata', m, 'name', (v, q) =>
    string(p, q, v, nameExpected, (s) => (nameRe.test(s) ? undefined : `${quote(s)} is not ${nameExpected}`)),
  { required: true, expected: nameExpected });
  let namespace: string | undefined;
  if (namespaced) {
    namespace =
      field(p, 'metadata', m, 'namespace', (v, q) =>
        string(p, q, v, NAMESPACE_EXPECTED, (s) => (LABEL_RE.test(s) ? undefined : `${quote(s)} is not ${NAMESPACE_EXPECTED}`)),
      ) ?? DEFAULT_NAMESPACE;
  } else if (m.namespace !== undefined && m.namespace !== null) {
    p.add('metadata.namespace', `${kind} is cluster-scoped; remove metadata.namespace`);
  }
  const labels = field(p, 'metadata', m, 'labels', (v, q) => checkedLabels(p, q, v)) ?? {};
  const annotations = field(p, 'metadata', m, 'annotations', (v, q) => checkedAnnotations(p, q, v)) ?? {};
  if (p.size > before || name === undefined) return undefined;
  return { name, ...(namespace !== undefined ? { namespace } : {}), labels, annotations };
}
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
  // The node and the service account become the workload's node key and SPIFFE identity, and
  // fields of log lines: both are DNS-1123 subdomains, as an API server checks them
  // (pkg/apis/core/validation: ValidateNodeName, ValidateServiceAccountName), so no control
  // character, space or upper case letter gets in.
  const nodeName = field(p, 'spec', spec, 'nodeName', (v, q) => string(p, q, v, 'a node name', (s) => dnsName(s, 'node')));
  const saName = (v: unknown, q: string) => string(p, q, v, 'a service account name', (s) => dnsName(s, 'service account'));
  // `serviceAccount` is the deprecated alias of `serviceAccountName`: when both are set,
  // serviceAccountName wins and the alias is not read (Kubernetes, pkg/apis/core/v1/conversion.go,
  // Convert_v1_PodSpec_To_core_PodSpec); the one used is checked the same way either way.
  const named = spec.serviceAccountName !== undefined && spec.serviceAccountName !== null;
  const alias = spec.serviceAccount !== undefined && spec.serviceAccount !== null;
  const serviceAccount = (named ? field(p, 'spec', spec, 'serviceAccountName', saName) : alias ? field(p, 'spec', spec, 'serviceAccount', saName) : undefined) ?? 'default';
  if (named && alias && spec.serviceAccount !== spec.serviceAccountName) {
    warn('spec.serviceAccount', `${describe(spec.serviceAccount)} is ignored: spec.serviceAccountName is set and wins, as in Kubernetes (serviceAccount is its deprecated alias)`);
  }
  const hostNetwork = spec.hostNetwork === true;
  const namedPorts = new Map<string, number>();
  // The schema requires the containers and each port's integer containerPort; the port range and
  // the name syntax are ours (a name is what a Service's targetPort refers to).
  (spec.containers as Record<string, unknown>[]).forEach((c, i) => {
    ((c.ports ?? []) as Record<string, unknown>[]).forEach((cp, j) => {
      const at = `spec.containers[${i}].ports[${j}]`;
      const num = port(p, `${at}.containerPort`, cp.containerPort);
      // An empty name is no name, as in Kubernetes.
      const name = cp.name === '' ? undefined : field(p, at, cp, 'name', (v, q) => string(p, q, v, PORT_NAME_EXPECTED, (s) => (PORT_NAME_RE.test(s) ? undefined : `${quote(s)} is not ${PORT_NAME_EXPECTED}`)));
      if (name !== undefined && num !== undefined) namedPorts.set(name, num);
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
    p.add('status.podIP', `${quote(status.podIP)} is not the first of status.podIPs (${ips[0]})`);
  }
  const phase = typeof status.phase === 'string' ? status.phase : undefined;
  const rawMeta = isMapping(base.raw.metadata) ? base.raw.metadata : {};
  const uid =
    typeof rawMeta.uid === 'string' && rawMeta.uid !== ''
      ? string(p, 'metadata.uid', rawMeta.uid, UID_EXPECTED, (s) => (UID_RE.test(s) ? undefined : `${quote(s)} is not ${UID_EXPECTED}`))
      : undefined;
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

/** Why `s` cannot name a node or a service account (a DNS-1123 subdomain), or undefined. */
function dnsName(s: string, what: string): string | undefined {
  return SUBDOMAIN_RE.test(s) ? undefined : `${quote(s)} is not a ${what} name; expected ${NAME_EXPECTED}, at most 253 characters`;
}

/** `{matchLabels}` of a Deployment; `matchExpressions` cannot be checked against the template here. */
function parseLabelSelector(p: Problems, path: string, v: unknown): Record<string, string> | undefined {
  const m = mapping(p, path, v, ['matchLabels', 'matchExpressions'], 'a label selector {matchLabels: {...}}');
  if (!m) return undefined;
  if (m.matchExpressions !== undefined) {
    p.add(keyPath(path, 'matchExpressions'), 'is not supported by the mesh; use matchLabels');
    return undefined;
  }
  const labels = field(p, path, m, 'matchLabels', (x, q) => checkedLabels(p, q, x), { required: true, expected: 'a map of labels' });
  if (labels && Object.keys(labels).length === 0) {
    p.add(keyPath(path, 'matchLabels'), 'must not be empty; an empty selector selects every pod of the namespace');
    return undefined;
  }
  return labels;
}

function parseDeployment(p: Problems, base: BaseFields, spec: Record<string, unknown>): DeploymentObject | undefined {
  const before = p.size;
  // The schema requires selector and template and types replicas (an integer); a negative count
  // and the lab's bound are ours to refuse. The bound is checked here, before anything makes pods:
  // the lab makes a Deployment's pods itself (podsForDeployment), one process tree each, and the
  // control plane never does (from a cluster it reads Pods, not Deployments), so a count above it
  // (2147483647, 1e300) is refused on the Deployment rather than expanded.
  const replicas =
    field(p, 'spec', spec, 'replicas', (v, q) => {
      const n = v as number;
      if (n < 0) return p.add(q, `${describe(v)} is not a replica count; expected an integer from 0`), undefined;
      if (n > LAB_MAX_REPLICAS) return p.add(q, `${describe(v)} replicas are more than the lab runs for one Deployment; expected at most ${LAB_MAX_REPLICAS}`), undefined;
      return n;
    }) ?? 1;
  const selector = parseLabelSelector(p, 'spec.selector', spec.selector);
  const template = mapping(p, 'spec.template', spec.template, ['metadata', 'spec']);
  let templateLabels: Record<string, string> = {};
  if (template) {
    const tm = (template.metadata ?? {}) as Record<string, unknown>;
    templateLabels = field(p, 'spec.template.metadata', tm, 'labels', (v, q) => checkedLabels(p, q, v)) ?? {};
    if (!isMapping(template.spec)) p.add('spec.template.spec', `expected a pod spec, got ${describe(template.spec)}`);
    else if ((template.spec.containers as unknown[]).length === 0) p.add('spec.template.spec.containers', 'must not be empty; a pod needs a container');
  }
  if (selector && !labelsMatch(selector, templateLabels)) {
    // The labels are checked (no control character), but may be thousands: shown cut.
    const shown = JSON.stringify(templateLabels);
    const labels = shown.length <= 200 ? shown : `${shown.slice(0, 200)}… (${Object.keys(templateLabels).length} labels)`;
    p.add('spec.selector.matchLabels', `does not match spec.template.metadata.labels (${labels}); the deployment would own none of its pods`);
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
  let selector: Record<string, string> | undefined;
  if (spec.selector !== undefined && spec.selector !== null) {
    selector = checkedLabels(p, 'spec.selector', spec.selector);
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
        const num = port(p, keyPath(xq, 'port'), m.port);
        const protocol = m.protocol ?? 'TCP';
        if (protocol !== 'TCP') {
          warn(keyPath(xq, 'protocol'), `${describe(protocol)} ports are not carried by the mesh (TCP only); this port is left out`);
          return undefined;
        }
        let targetPort: number | string | undefined = num;
        if (m.targetPort !== undefined && m.targetPort !== null) {
          targetPort =
            typeof m.targetPort === 'string' && !/^\d+$/.test(m.targetPort)
              ? string(p, keyPath(xq, 'targetPort'), m.targetPort, 'a port name', (s) => (/^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(s) ? undefined : `${quote(s)} is not a port number or a container port name`))
              : port(p, keyPath(xq, 'targetPort'), m.targetPort, true);
        }
        // A Service port name is a DNS-1123 label (pkg/apis/core/validation, validateServicePort);
        // it becomes the name of the mesh's service port.
        const name = field(p, xq, m, 'name', (y, r) => string(p, r, y, 'a port name', (z) => (LABEL_RE.test(z) ? undefined : `${quote(z)} is not a port name; expected a DNS-1123 label (lowercase letters, digits and "-", at most 63)`)));
        if (name !== undefined) {
          if (portNames.has(name)) p.add(keyPath(xq, 'name'), `duplicate port name ${quote(name)}`);
          portNames.add(name);
        }
        if (num !== undefined) {
          if (seenPorts.has(num)) p.add(keyPath(xq, 'port'), `duplicate port ${num}`);
          seenPorts.add(num);
        }
        // A qualified name (the API server's check); what the waypoint speaks to the endpoints.
        const appProtocol = field(p, xq, m, 'appProtocol', (y, r) => string(p, r, y, 'an appProtocol', appProtocolProblem));
        if (p.size > b || num === undefined || targetPort === undefined) return undefined;
        return { port: num, targetPort, ...(name !== undefined ? { name } : {}), ...(appProtocol !== undefined ? { appProtocol } : {}) };
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
  // The schema bounds it (1-253 characters); it names a GatewayClass, a Kubernetes object whose
  // name is a DNS-1123 subdomain, so anything else (a control character, a space) names none.
  const gatewayClassName = spec.gatewayClassName as string;
  if (!SUBDOMAIN_RE.test(gatewayClassName)) p.add('spec.gatewayClassName', `${quote(gatewayClassName)} is not a GatewayClass name; expected ${NAME_EXPECTED}`);
  const forLabel = base.meta.labels[WAYPOINT_FOR_LABEL] ?? 'service';
  const waypointFor = (['service', 'workload', 'all', 'none'] as const).find((x) => x === forLabel);
  if (!waypointFor) p.add(`metadata.labels["${WAYPOINT_FOR_LABEL}"]`, `${quote(forLabel)} is not allowed; expected service, workload, all or none`);
  let hbonePort: number | undefined;
  if (gatewayClassName === WAYPOINT_CLASS) {
    const listeners = Array.isArray(spec.listeners) ? spec.listeners : [];
    const hbone = listeners.findIndex((l) => isMapping(l) && l.protocol === 'HBONE');
    if (hbone === -1) {
      p.add('spec.listeners', `a waypoint needs the listener {name: mesh, port: ${WAYPOINT_HBONE_PORT}, protocol: HBONE}`);
    } else {
      hbonePort = (listeners[hbone] as Record<string, unknown>).port as number; // the schema's PortNumber: 1-65535
    }
  }
  const addresses: string[] = [];
  if (Array.isArray(status.addresses)) {
    for (const a of status.addresses) {
      const ip = isMapping(a) && typeof a.value === 'string' ? canonicalIp(a.value) : undefined;
      if (ip) addresses.push(ip);
    }
  }
  if (p.size > before || !waypointFor) return undefined;
  return { kind: 'Gateway', ...base, gatewayClassName, waypointFor, ...(hbonePort !== undefined ? { hbonePort } : {}), addresses };
}

/** Levels of a too-deep field's path a problem names: enough to find it, and the message stays short. */
const NAMED_LEVELS = 4;

/**
 * The field of the first value of `doc` nested deeper than `max` levels (`doc` itself is level 1),
 * named by its first `NAMED_LEVELS` keys; undefined when there is none. An explicit stack, no
 * recursion, and a path is built only for what it finds: the walk is linear in the object's size.
 */
function deeperThan(doc: unknown, max: number): string | undefined {
  interface Entry {
    readonly v: unknown;
    readonly depth: number;
    readonly parent: Entry | undefined;
    readonly key: string | number;
  }
  const stack: Entry[] = [{ v: doc, depth: 1, parent: undefined, key: '' }];
  while (stack.length > 0) {
    const e = stack.pop()!;
    if (e.v === null || typeof e.v !== 'object') continue;
    if (e.depth > max) {
      const keys: Array<string | number> = [];
      for (let x: Entry | undefined = e; x?.parent !== undefined; x = x.parent) keys.push(x.key);
      keys.reverse();
      const named = keys.slice(0, NAMED_LEVELS).reduce<string>((path, k) => (typeof k === 'number' ? indexPath(path, k) : keyPath(path, k)), '');
      return keys.length > NAMED_LEVELS ? `${named}…` : named;
    }
    if (Array.isArray(e.v)) e.v.forEach((x, i) => stack.push({ v: x, depth: e.depth + 1, parent: e, key: i }));
    else for (const [k, x] of Object.entries(e.v)) stack.push({ v: x, depth: e.depth + 1, parent: e, key: k });
  }
  return undefined;
}
