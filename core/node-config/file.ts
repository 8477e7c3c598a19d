/**
 * The ztunnel's standalone config file (YAML) → `MeshConfig`.
 *
 * This is the only place that knows the file's wire shape (documented in docs/config-file.md).
 * Validation is strict and collects every problem before failing: first each entry on its own,
 * then the rules across entries (references, duplicates, address conflicts). The result is deeply
 * frozen.
 */
import { readFile } from 'node:fs/promises';
import { YAMLException } from 'js-yaml';
import { loadYamlDocuments } from '../validation/yaml.js';
import { ConfigError } from '../errors.js';
import { PORTS } from '../hbone/constants.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { canonicalIp } from '../model/ip.js';
import { deepFreeze } from '../model/freeze.js';
import { DEFAULT_ROOT_NAMESPACE, labelsMatch } from '../model/scope.js';
import { PolicySpecParser, httpAttributesWarning } from '../kube/authorization-policy.js';
import { specProblems, type SpecKind } from '../kube/schema.js';
import { DestinationRuleConverter } from '../kube/routes/destination-rule.js';
import { HttpRouteConverter } from '../kube/routes/http-route.js';
import { GrpcRouteConverter } from '../kube/routes/grpc-route.js';
import { TcpRouteConverter } from '../kube/routes/tcp-route.js';
import { ReferenceGrantConverter } from '../kube/routes/reference-grant.js';
import { appProtocolProblem } from '../model/app-protocol.js';
import { VirtualServiceConverter } from '../kube/routes/virtual-service.js';
import { presentLists } from '../model/source.js';
import { WaypointPolicyConverter } from '../kube/waypoint-policy.js';
import { RequestAuthenticationConverter } from '../kube/request-authentication.js';
import {
  HOSTNAME_RE,
  LABEL_RE,
  NAMESPACE_EXPECTED,
  NAME_EXPECTED,
  SA_RE,
  SUBDOMAIN_RE,
  TRUST_DOMAIN_RE,
  UID_EXPECTED,
  UID_RE,
  checkLabel,
} from '../kube/names.js';
import {
  Problems,
  Uniq,
  boolean,
  describe,
  field,
  isMapping,
  keyPath,
  list,
  listField,
  mapping,
  oneOf,
  port,
  quote,
  string,
  stringMap,
} from '../validation/check.js';
import type {
  AuthorizationPolicy,
  MeshConfig,
  NodeInfo,
  PeerAuthentication,
  Protocol,
  Service,
  ServicePort,
  WaypointRef,
  WaypointPolicy,
  Workload,
} from '../model/types.js';

/** Trust domain when the file sets none: Kubernetes' and Istio's default. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
/** HBONE port of ztunnels and waypoints unless a node or waypoint overrides it (Istio's port). */
export const DEFAULT_HBONE_PORT = PORTS.hbone;
/** Service account of a workload that names none: the one Kubernetes gives every pod by default. */
export const DEFAULT_SERVICE_ACCOUNT = 'default';
/**
 * DNS domain of default service hostnames (`<name>.<namespace>.svc.cluster.local`). It is the
 * cluster's DNS domain, which Kubernetes keeps apart from the mesh trust domain.
 */
export const CLUSTER_DNS_DOMAIN = 'cluster.local';

/** Options of `parseMeshConfig` / `readMeshConfigFile`. */
export interface ParseOptions {
  /**
   * Istio's root namespace (default `istio-system`): policies there without a selector are
   * mesh-wide; with a selector they select workloads in every namespace.
   */
  readonly rootNamespace?: string;
}

const TOP_KEYS = [
  'trustDomain',
  'nodes',
  'workloads',
  'services',
  'authorizationPolicies',
  'peerAuthentications',
  'requestAuthentications',
  'httpRoutes',
  'grpcRoutes',
  'tcpRoutes',
  'referenceGrants',
  'virtualServices',
  'destinationRules',
];
const NODE_KEYS = ['name', 'ztunnelAddress', 'hbonePort'];
const WORKLOAD_KEYS = ['name', 'uid', 'namespace', 'serviceAccount', 'node', 'ips', 'protocol', 'labels', 'healthy', 'waypoint'];
const WAYPOINT_KEYS = ['address', 'hbonePort'];
const SERVICE_KEYS = ['name', 'namespace', 'hostname', 'vips', 'ports', 'selector', 'subjectAltNames', 'waypoint'];
const SERVICE_PORT_KEYS = ['port', 'targetPort', 'name', 'appProtocol'];
const RESOURCE_KEYS = ['name', 'namespace', 'spec'];
const PROTOCOLS: readonly Protocol[] = ['HBONE', 'TCP'];

class FileParser {
  readonly p = new Problems();
  private trustDomain = DEFAULT_TRUST_DOMAIN;
  private readonly nodeNames = new Set<string>();
  // Address ownership across workloads and service VIPs: canonical address → path of the owner.
  private readonly addresses = new Uniq(this.p, 'address');
  private readonly hboneEndpoints = new Uniq(this.p, 'ztunnel address and hbonePort');
  private readonly specs: PolicySpecParser;

  constructor(private readonly rootNamespace: string) {
    this.specs = new PolicySpecParser(this.p, rootNamespace);
  }

  parse(doc: unknown): MeshConfig | undefined {
    const top = mapping(
      this.p,
      '',
      doc,
      TOP_KEYS,
      `a mapping at the top of the file with the keys ${TOP_KEYS.join(', ')}`,
    );
    if (!top) return undefined;
    this.trustDomain =
      field(this.p, '', top, 'trustDomain', (v, path) =>
        string(this.p, path, v, 'a trust domain', (s) =>
          TRUST_DOMAIN_RE.test(s)
            ? undefined
            : `${quote(s)} is not a trust domain; expected lowercase letters, digits, ".", "-" and "_"`,
        ),
      ) ?? DEFAULT_TRUST_DOMAIN;

    const nodes = this.section(top, 'nodes', (v, path) => this.node(v, path));
    const workloads = this.section(top, 'workloads', (v, path) => this.workload(v, path));
    const hostnames = new Uniq(this.p, 'hostname');
    const services = this.section(top, 'services', (v, path) => this.service(v, path, workloads, hostnames));
    const allAuthz = this.policies(top, 'authorizationPolicies', (v, path) => this.authorizationPolicy(v, path));
    const peer = this.policies(top, 'peerAuthentications', (v, path) => this.peerAuthentication(v, path));
    // Policies with targetRefs belong to waypoints (L7), the others to ztunnel (L4).
    const authz = allAuthz.filter((x): x is AuthorizationPolicy => !('targetRefs' in x));
    const waypointPolicies = allAuthz.filter((x): x is WaypointPolicy => 'targetRefs' in x);
    const requestAuthentications = this.routeSection(top, 'requestAuthentications', 'RequestAuthentication', (r) =>
      new RequestAuthenticationConverter(this.p, this.rootNamespace).requestAuthentication(r.name, r.namespace, r.spec, r.specPath),
    ).filter((ra) => ra.targetRefs.length > 0);
    const httpRoutes = this.routeSection(top, 'httpRoutes', 'HTTPRoute', (r) => new HttpRouteConverter(this.p).httpRoute(r.name, r.namespace, r.spec, r.specPath));
    const tcpRoutes = this.routeSection(top, 'tcpRoutes', 'TCPRoute', (r) => new TcpRouteConverter(this.p).tcpRoute(r.name, r.namespace, r.spec, r.specPath));
    const grpcRoutes = this.routeSection(top, 'grpcRoutes', 'GRPCRoute', (r) => new GrpcRouteConverter(this.p).grpcRoute(r.name, r.namespace, r.spec, r.specPath));
    const referenceGrants = this.routeSection(top, 'referenceGrants', 'ReferenceGrant', (r) => new ReferenceGrantConverter(this.p).referenceGrant(r.name, r.namespace, r.spec, r.specPath));
    const virtualServices = this.routeSection(top, 'virtualServices', 'VirtualService', (r) =>
      new VirtualServiceConverter(this.p).virtualService(r.name, r.namespace, r.spec, r.specPath),
    );
    const destinationRules = this.routeSection(top, 'destinationRules', 'DestinationRule', (r) =>
      new DestinationRuleConverter(this.p).destinationRule(r.name, r.namespace, r.spec, r.specPath),
    );
    if (this.p.size > 0) return undefined;
    return {
      rootNamespace: this.rootNamespace,
      nodes,
      workloads,
      services,
      authorizationPolicies: authz,
      peerAuthentications: peer,
      ...presentLists({ waypointPolicies, requestAuthentications, httpRoutes, grpcRoutes, tcpRoutes, referenceGrants, virtualServices, destinationRules }),
    };
  }

  /** `httpRoutes:` / `grpcRoutes:` / `virtualServices:` / `destinationRules:`: lists of {name, namespace, spec}, unique per kind. */
  private routeSection<T>(
    top: Record<string, unknown>,
    key: string,
    kind: SpecKind,
    convert: (r: { name: string; namespace: string; spec: Record<string, unknown>; specPath: string }) => T | undefined,
  ): T[] {
    const uniq = new Uniq(this.p, kind);
    return (
      field(this.p, '', top, key, (v, path) =>
        list(this.p, path, v, (x, ip) => {
          const before = this.p.size;
          const r = this.resource(x, ip, kind);
          if (!r || !r.spec || r.name === undefined || r.namespace === undefined) return undefined;
          if (!uniq.check(`${r.namespace}/${r.name}`, keyPath(ip, 'name'))) return undefined;
          const out = convert({ name: r.name, namespace: r.namespace, spec: r.spec, specPath: r.specPath });
          return this.p.size > before ? undefined : out;
        }),
      ) ?? []
    );
  }

  // ---- sections -------------------------------------------------------------------------

  /** A top-level list; absent means empty. Items check their own uniqueness. */
  private section<T>(top: Record<string, unknown>, key: string, item: (v: unknown, path: string) => T | undefined): T[] {
    return field(this.p, '', top, key, (v, path) => list(this.p, path, v, item)) ?? [];
  }

  private policies<T extends { name: string; namespace: string }>(
    top: Record<string, unknown>,
    key: string,
    item: (v: unknown, path: string) => T | undefined,
  ): T[] {
    const uniq = new Uniq(this.p, 'policy');
    return (
      field(this.p, '', top, key, (v, path) =>
        list(this.p, path, v, (x, ip) => {
          const r = item(x, ip);
          if (r && !uniq.check(`${r.namespace}/${r.name}`, keyPath(ip, 'name'))) return undefined;
          return r;
        }),
      ) ?? []
    );
  }

  // ---- scalars --------------------------------------------------------------------------

  private name(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, NAME_EXPECTED, (s) =>
      SUBDOMAIN_RE.test(s) ? undefined : `${quote(s)} is not ${NAME_EXPECTED}`,
    );
  }

  private namespace(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, NAMESPACE_EXPECTED, (s) =>
      LABEL_RE.test(s) ? undefined : `${quote(s)} is not ${NAMESPACE_EXPECTED}`,
    );
  }

  /** The required `name` and `namespace` of a namespaced entry (workload, service, Istio resource). */
  private nameAndNamespace(m: Record<string, unknown>, path: string): { name: string | undefined; namespace: string | undefined } {
    return {
      name: field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: NAME_EXPECTED }),
      namespace: field(this.p, path, m, 'namespace', (x, q) => this.namespace(x, q), { required: true, expected: NAMESPACE_EXPECTED }),
    };
  }

  /** An IP address, returned in canonical form (see core/model/ip.ts). */
  private address(v: unknown, path: string): string | undefined {
    if (typeof v !== 'string') {
      this.p.add(path, `expected an IPv4 or IPv6 address, got ${describe(v)}`);
      return undefined;
    }
    const c = v.includes('%') ? undefined : canonicalIp(v);
    if (c === undefined) this.p.add(path, `${quote(v)} is not an IPv4 or IPv6 address`);
    return c;
  }

  /**
   * Required field `k`: a non-empty list of IP addresses (canonical), each unused so far in the
   * whole file: an address belongs to one workload or service.
   */
  private addressList(m: Record<string, unknown>, path: string, k: string, nonEmpty: string, expected: string): string[] | undefined {
    return listField(
      this.p,
      path,
      m,
      k,
      (ip, iq) => {
        const a = this.address(ip, iq);
        return a !== undefined && this.addresses.check(a, iq) ? a : undefined;
      },
      { required: true, expected, nonEmpty, listExpected: 'a list of IP addresses' },
    );
  }

  private spiffeId(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a SPIFFE id', (s) => {
      try {
        parseSpiffeId(s);
        return undefined;
      } catch (e) {
        return `${quote(s)} is not a SPIFFE id: ${(e as Error).message.replace(/^invalid spiffe id "[^"]*": /, '')}`;
      }
    });
  }


  private waypoint(v: unknown, path: string): WaypointRef | undefined {
    const m = mapping(this.p, path, v, WAYPOINT_KEYS, 'a mapping {address, hbonePort}');
    if (!m) return undefined;
    const before = this.p.size;
    const address = field(this.p, path, m, 'address', (x, q) => this.address(x, q), {
      required: true,
      expected: 'the IP of the waypoint service or workload',
    });
    const hbonePort = field(this.p, path, m, 'hbonePort', (x, q) => port(this.p, q, x)) ?? DEFAULT_HBONE_PORT;
    if (this.p.size > before || address === undefined) return undefined;
    return { address, hbonePort };
  }

  // ---- nodes, workloads, services ---------------------------------------------------------

  private node(v: unknown, path: string): NodeInfo | undefined {
    const m = mapping(this.p, path, v, NODE_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: NAME_EXPECTED });
    // Registered even if other fields fail, so workloads on it get no spurious "undeclared node".
    if (name !== undefined && this.nodeNames.has(name)) {
      this.p.add(keyPath(path, 'name'), `duplicate node name ${quote(name)}`);
    }
    if (name !== undefined) this.nodeNames.add(name);
    const ztunnelAddress = field(this.p, path, m, 'ztunnelAddress', (x, q) => this.address(x, q), {
      required: true,
      expected: "the IP address of the node's ztunnel",
    });
    const hbonePort = field(this.p, path, m, 'hbonePort', (x, q) => port(this.p, q, x)) ?? DEFAULT_HBONE_PORT;
    // Several ztunnels may share a host address (tests, the lab), but not address and port.
    if (ztunnelAddress !== undefined) this.hboneEndpoints.check(`${ztunnelAddress}:${hbonePort}`, keyPath(path, 'ztunnelAddress'));
    if (this.p.size > before || name === undefined || ztunnelAddress === undefined) return undefined;
    return { name, ztunnelAddress, hbonePort };
  }

  private readonly workloadUids = new Uniq(this.p, 'workload uid');
  private readonly workloadNames = new Uniq(this.p, 'workload');

  private workload(v: unknown, path: string): Workload | undefined {
    const m = mapping(this.p, path, v, WORKLOAD_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    const { name, namespace } = this.nameAndNamespace(m, path);
    // Held as metadata.uid is (core/kube/names.ts): it keys the node agents' pod tables and log
    // fields, and the discovery decoder refuses any other.
    const explicitUid = field(this.p, path, m, 'uid', (x, q) => string(this.p, q, x, UID_EXPECTED, (s) => (UID_RE.test(s) ? undefined : `${quote(s)} is not ${UID_EXPECTED}`)));
    const uid = explicitUid ?? (name !== undefined && namespace !== undefined ? `${namespace}/${name}` : undefined);
    if (uid !== undefined) this.workloadUids.check(uid, keyPath(path, explicitUid !== undefined ? 'uid' : 'name'));
    // With a defaulted uid the uid check above already covers namespace/name.
    if (explicitUid !== undefined && name !== undefined && namespace !== undefined) {
      this.workloadNames.check(`${namespace}/${name}`, keyPath(path, 'name'));
    }
    const serviceAccount =
      field(this.p, path, m, 'serviceAccount', (x, q) =>
        string(this.p, q, x, 'a service account name', (s) =>
          SA_RE.test(s) ? undefined : `${quote(s)} is not a service account name; expected ${NAME_EXPECTED}`,
        ),
      ) ?? DEFAULT_SERVICE_ACCOUNT;
    const node = field(
      this.p,
      path,
      m,
      'node',
      (x, q) => {
        const n = string(this.p, q, x, 'a node name');
        if (n !== undefined && !this.nodeNames.has(n)) {
          this.p.add(q, `node ${quote(n)} is not declared under nodes; declared: ${this.declaredNodes()}`);
          return undefined;
        }
        return n;
      },
      { required: true, expected: 'the name of a node declared under nodes' },
    );
    const ips = this.addressList(m, path, 'ips', 'a workload needs at least one IP address', 'a list of IP addresses');
    const protocol = field(this.p, path, m, 'protocol', (x, q) => oneOf(this.p, q, x, PROTOCOLS)) ?? 'HBONE';
    const labels = field(this.p, path, m, 'labels', (x, q) => stringMap(this.p, q, x, checkLabel)) ?? {};
    const healthy = field(this.p, path, m, 'healthy', (x, q) => boolean(this.p, q, x)) ?? true;
    const waypoint = field(this.p, path, m, 'waypoint', (x, q) => this.waypoint(x, q));
    if (this.p.size > before) return undefined;
    return {
      uid: uid as string,
      name: name as string,
      namespace: namespace as string,
      serviceAccount,
      trustDomain: this.trustDomain,
      node: node as string,
      ips: ips as string[],
      protocol,
      labels,
      healthy,
      ...(waypoint ? { waypoint } : {}),
    };
  }

  /**
   * The declared node names a message lists: the first ten and how many more. Listing them all in
   * each message made a file of N workloads on undeclared nodes print N times N names.
   */
  private declaredNodes(): string {
    if (this.nodeNames.size === 0) return 'none';
    const shown: string[] = [];
    for (const n of this.nodeNames) {
      if (shown.length === 10) break;
      shown.push(n);
    }
    return this.nodeNames.size > shown.length ? `${shown.join(', ')} and ${this.nodeNames.size - shown.length} more` : shown.join(', ');
  }

  /** Workloads by `namespace`, label key and value; built once, on the first service. */
  private workloadIndex: Map<string, Workload[]> | undefined;

  /**
   * The uids of the workloads `selector` selects in `namespace`, in file order. Through an index of
   * workloads by namespace and label, as the converter's (core/kube/convert.ts): comparing every
   * service with every workload took 4.8 s for 8,000 of each (a 1.4 MB file).
   */
  private endpoints(workloads: readonly Workload[], namespace: string, selector: Record<string, string>): string[] {
    const key = (k: string, v: string) => `${namespace.length}:${namespace}${k.length}:${k}=${v}`;
    if (!this.workloadIndex) {
      this.workloadIndex = new Map();
      for (const w of workloads) {
        for (const [k, v] of Object.entries(w.labels)) {
          const at = `${w.namespace.length}:${w.namespace}${k.length}:${k}=${v}`;
          const l = this.workloadIndex.get(at);
          if (l) l.push(w);
          else this.workloadIndex.set(at, [w]);
        }
      }
    }
    // The shortest candidate list among the selector's labels; every candidate is then matched whole.
    let candidates: readonly Workload[] | undefined;
    for (const [k, v] of Object.entries(selector)) {
      const l = this.workloadIndex.get(key(k, v)) ?? [];
      if (candidates === undefined || l.length < candidates.length) candidates = l;
    }
    return (candidates ?? []).filter((w) => labelsMatch(selector, w.labels)).map((w) => w.uid);
  }

  private readonly serviceKeys = new Uniq(this.p, 'service');

  private service(v: unknown, path: string, workloads: readonly Workload[], hostnames: Uniq): Service | undefined {
    const m = mapping(this.p, path, v, SERVICE_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    const { name, namespace } = this.nameAndNamespace(m, path);
    const unique = name === undefined || namespace === undefined || this.serviceKeys.check(`${namespace}/${name}`, keyPath(path, 'name'));
    const explicitHost = field(this.p, path, m, 'hostname', (x, q) =>
      string(this.p, q, x, 'a DNS name', (s) => (HOSTNAME_RE.test(s) ? undefined : `${quote(s)} is not a DNS name`)),
    );
    const hostname =
      explicitHost ?? (name !== undefined && namespace !== undefined ? `${name}.${namespace}.svc.${CLUSTER_DNS_DOMAIN}` : undefined);
    // A defaulted hostname clashes exactly when namespace/name does, which is reported already.
    if (hostname !== undefined && (explicitHost !== undefined || unique)) {
      hostnames.check(hostname, keyPath(path, explicitHost !== undefined ? 'hostname' : 'name'));
    }
    const vips = this.addressList(m, path, 'vips', 'a service needs at least one virtual IP', 'a list of virtual IP addresses');
    const ports = field(this.p, path, m, 'ports', (x, q) => this.servicePorts(x, q), {
      required: true,
      expected: 'a list of {port, targetPort, name}',
    });
    const selector = field(this.p, path, m, 'selector', (x, q) => {
      const s = stringMap(this.p, q, x, checkLabel);
      if (s && Object.keys(s).length === 0) {
        this.p.add(q, 'must not be empty; an empty selector would select no endpoints in Kubernetes');
        return undefined;
      }
      return s;
    }, { required: true, expected: 'a map of labels, e.g. {app: echo}' });
    const subjectAltNames =
      field(this.p, path, m, 'subjectAltNames', (x, q) =>
        list(this.p, q, x, (s, sq) => this.spiffeId(s, sq), { expected: 'a list of SPIFFE ids' }),
      ) ?? [];
    const waypoint = field(this.p, path, m, 'waypoint', (x, q) => this.waypoint(x, q));
    if (this.p.size > before) return undefined;
    const endpoints = this.endpoints(workloads, namespace as string, selector as Record<string, string>);
    return {
      name: name as string,
      namespace: namespace as string,
      hostname: hostname as string,
      vips: vips as string[],
      ports: ports as ServicePort[],
      endpoints,
      subjectAltNames,
      ...(waypoint ? { waypoint } : {}),
    };
  }

  private servicePorts(v: unknown, path: string): ServicePort[] | undefined {
    const seen = new Uniq(this.p, 'service port');
    const names = new Uniq(this.p, 'port name');
    const before = this.p.size;
    const out = list(
      this.p,
      path,
      v,
      (x, q) => {
        const m = mapping(this.p, q, x, SERVICE_PORT_KEYS, 'a mapping {port, targetPort, name}');
        if (!m) return undefined;
        const b = this.p.size;
        const p = field(this.p, q, m, 'port', (y, r) => port(this.p, r, y), { required: true, expected: 'an integer from 1 to 65535' });
        if (p !== undefined) seen.check(String(p), keyPath(q, 'port'));
        const targetPort = field(this.p, q, m, 'targetPort', (y, r) => port(this.p, r, y)) ?? p;
        const name = field(this.p, q, m, 'name', (y, r) =>
          string(this.p, r, y, 'a port name', (s) => (LABEL_RE.test(s) ? undefined : `${quote(s)} is not ${NAMESPACE_EXPECTED}`)),
        );
        if (name !== undefined) names.check(name, keyPath(q, 'name'));
        const appProtocol = field(this.p, q, m, 'appProtocol', (y, r) => string(this.p, r, y, 'an appProtocol', appProtocolProblem));
        if (this.p.size > b) return undefined;
        return { port: p as number, targetPort: targetPort as number, ...(name !== undefined ? { name } : {}), ...(appProtocol !== undefined ? { appProtocol } : {}) };
      },
      { nonEmpty: 'a service needs at least one port', expected: 'a list of {port, targetPort, name}' },
    );
    return this.p.size > before ? undefined : out;
  }

  // ---- Istio resources ------------------------------------------------------------------

  /**
   * name/namespace/spec of an Istio resource entry; `spec` may be absent (Istio allows `spec: {}`).
   * The spec's structure is judged by the upstream schema of `kind` first, as for a Kubernetes
   * object (`core/kube/schema.ts`); a spec that fails it is `undefined` (its problems recorded),
   * and the converters, which take the structure as checked, do not see it.
   */
  private resource(v: unknown, path: string, kind: SpecKind): { name?: string; namespace?: string; spec: Record<string, unknown> | undefined; specPath: string } | undefined {
    const m = mapping(this.p, path, v, RESOURCE_KEYS, 'a mapping {name, namespace, spec}');
    if (!m) return undefined;
    const { name, namespace } = this.nameAndNamespace(m, path);
    const specPath = keyPath(path, 'spec');
    const spec = Object.hasOwn(m, 'spec') && m.spec !== null ? (isMapping(m.spec) ? m.spec : undefined) : {};
    if (spec === undefined) this.p.add(specPath, `expected a mapping (the spec of the Istio resource), got ${describe(m.spec)}`);
    const structural = spec === undefined ? [] : specProblems(kind, spec, specPath);
    for (const sp of structural) this.p.add(sp.field, sp.message);
    const checked = structural.length > 0 ? undefined : spec;
    return { ...(name !== undefined ? { name } : {}), ...(namespace !== undefined ? { namespace } : {}), spec: checked, specPath };
  }


  private authorizationPolicy(v: unknown, path: string): AuthorizationPolicy | WaypointPolicy | undefined {
    const before = this.p.size;
    const r = this.resource(v, path, 'AuthorizationPolicy');
    if (!r || !r.spec) return undefined;
    if (Object.hasOwn(r.spec, 'targetRefs')) {
      if (r.name === undefined || r.namespace === undefined) return undefined;
      const wp = new WaypointPolicyConverter(this.p, this.rootNamespace).policy(r.name, r.namespace, r.spec, r.specPath);
      return this.p.size > before ? undefined : wp;
    }
    const policy = this.specs.authorizationPolicy(r, r.spec, r.specPath);
    return this.p.size > before ? undefined : policy;
  }

  private peerAuthentication(v: unknown, path: string): PeerAuthentication | undefined {
    const before = this.p.size;
    const r = this.resource(v, path, 'PeerAuthentication');
    if (!r || !r.spec) return undefined;
    const policy = this.specs.peerAuthentication(r, r.spec, r.specPath);
    return this.p.size > before ? undefined : policy;
  }
}

function yamlProblem(e: YAMLException): string {
  const where = e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : '';
  return `yaml syntax error${where}: ${e.reason}`;
}

/**
 * Parses and validates the ztunnel config file. `source` names the file in error messages.
 *
 * @throws ConfigError listing every problem, each prefixed with its path in the file
 *   (`workloads[2].ips[0]: "10.0.0.300" is not an IPv4 or IPv6 address`).
 *
 * @example
 * const cfg = parseMeshConfig(text, '/etc/ztunnel/config.yaml');
 * cfg.workloads[0].uid // => 'default/sleep'
 */
export function parseMeshConfig(text: string, source: string, opts: ParseOptions = {}): MeshConfig {
  let docs: readonly unknown[];
  try {
    const loaded = loadYamlDocuments(text, source);
    if (loaded.tooLarge.length > 0) throw new ConfigError(source, loaded.tooLarge.map((t) => t.message));
    docs = loaded.docs;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const msg = e instanceof YAMLException ? yamlProblem(e) : `cannot parse the file as YAML: ${(e as Error).message}`;
    throw new ConfigError(source, [msg]);
  }
  if (docs.length === 0 || (docs.length === 1 && (docs[0] === null || docs[0] === undefined))) {
    // Refused rather than read as an empty mesh: an editor that truncates before writing would
    // otherwise wipe every workload from a running ztunnel.
    throw new ConfigError(source, [`the file is empty; expected a mapping with the keys ${TOP_KEYS.join(', ')}`]);
  }
  if (docs.length > 1) {
    throw new ConfigError(source, [`expected one YAML document, found ${docs.length} (separated by ---)`]);
  }
  const parser = new FileParser(opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
  const cfg = parser.parse(docs[0]);
  if (!cfg || parser.p.size > 0) throw new ConfigError(source, parser.p.list);
  return deepFreeze(cfg);
}

/**
 * Reads and parses the config file at `path`.
 *
 * @throws ConfigError when the file cannot be read or is invalid.
 */
export async function readMeshConfigFile(path: string, opts: ParseOptions = {}): Promise<MeshConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(path, [`cannot read the file (${code}: ${(e as Error).message}); check the path and its permissions`]);
  }
  return parseMeshConfig(text, path, opts);
}

/**
 * Warnings about a valid config that the operator should still hear about: policies with HTTP
 * attributes, which the L4 proxy enforces more strictly than written.
 */
export function configWarnings(cfg: MeshConfig): string[] {
  const out: string[] = [];
  for (const p of cfg.authorizationPolicies) {
    const w = httpAttributesWarning(p);
    if (w) out.push(`authorization policy ${p.namespace}/${p.name} ${w}`);
  }
  return out;
}
