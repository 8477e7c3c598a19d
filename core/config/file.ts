/**
 * The ztunnel's standalone config file (YAML) → `MeshConfig`.
 *
 * This is the only place that knows the file's wire shape (documented in docs/config-file.md).
 * Validation is strict and collects every problem before failing: first each entry on its own,
 * then the rules across entries (references, duplicates, address conflicts). The result is deeply
 * frozen.
 */
import { readFile } from 'node:fs/promises';
import { loadAll, YAMLException } from 'js-yaml';
import { ConfigError } from '../errors.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { canonicalIp, parseCidr } from '../model/ip.js';
import { deepFreeze, ImmutableMap } from '../model/freeze.js';
import { DEFAULT_ROOT_NAMESPACE, labelsMatch } from '../model/scope.js';
import { L4_CONDITION_KEYS } from '../model/authz.js';
import { RouteConverter } from './routes.js';
import { WaypointPolicyConverter } from './waypoint-policy.js';
import {
  Problems,
  Uniq,
  boolean,
  describe,
  field,
  isMapping,
  keyPath,
  list,
  mapping,
  oneOf,
  port,
  string,
  stringMap,
} from './check.js';
import type {
  AuthorizationPolicy,
  MeshConfig,
  MtlsMode,
  NodeInfo,
  PeerAuthentication,
  PolicyAction,
  PolicyCondition,
  PolicyOperation,
  PolicyRule,
  PolicySource,
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
export const DEFAULT_HBONE_PORT = 15008;
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
  'httpRoutes',
  'virtualServices',
];
const NODE_KEYS = ['name', 'ztunnelAddress', 'hbonePort'];
const WORKLOAD_KEYS = ['name', 'uid', 'namespace', 'serviceAccount', 'node', 'ips', 'protocol', 'labels', 'healthy', 'waypoint'];
const WAYPOINT_KEYS = ['address', 'hbonePort'];
const SERVICE_KEYS = ['name', 'namespace', 'hostname', 'vips', 'ports', 'selector', 'subjectAltNames', 'waypoint'];
const SERVICE_PORT_KEYS = ['port', 'targetPort', 'name'];
const RESOURCE_KEYS = ['name', 'namespace', 'spec'];
const AUTHZ_SPEC_KEYS = ['selector', 'action', 'rules'];
const SELECTOR_KEYS = ['matchLabels'];
const RULE_KEYS = ['from', 'to', 'when'];
const SOURCE_L4_KEYS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'serviceAccounts', 'notServiceAccounts'];
const SOURCE_L7_KEYS = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_L4_KEYS = ['ports', 'notPorts'];
const OPERATION_L7_KEYS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
const CONDITION_KEYS = ['key', 'values', 'notValues'];
const PEER_AUTH_SPEC_KEYS = ['selector', 'mtls', 'portLevelMtls'];
const MTLS_KEYS = ['mode'];
const PROTOCOLS: readonly Protocol[] = ['HBONE', 'TCP'];
const ISTIO_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;
const L4_ACTIONS: readonly PolicyAction[] = ['ALLOW', 'DENY'];
const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];
/** `when` keys Istio defines that an L4 proxy cannot evaluate (besides every `request.*` key). */
const L7_CONDITION_KEYS = ['remote.ip', 'connection.sni'];

// Kubernetes name syntax. Namespaces are DNS-1123 labels; object names and service accounts are
// DNS-1123 subdomains (the service-account rule matches core/identity/spiffe.ts).
const LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SUBDOMAIN_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SA_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Label keys: optional DNS-subdomain prefix and '/', then a name of up to 63 characters.
const LABEL_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

const NAME_EXPECTED = 'a DNS-1123 name (lowercase letters, digits, "-" and ".")';
const NAMESPACE_EXPECTED = 'a DNS-1123 label (lowercase letters, digits and "-", at most 63)';
const PRINCIPAL_EXPECTED =
  '<trust-domain>/ns/<namespace>/sa/<service-account>, without spiffe://, optionally with one * at the start or the end';

function checkLabel(k: string, v: string): string | undefined {
  const slash = k.indexOf('/');
  const prefix = slash === -1 ? undefined : k.slice(0, slash);
  const name = slash === -1 ? k : k.slice(slash + 1);
  if ((prefix !== undefined && !SUBDOMAIN_RE.test(prefix)) || !LABEL_NAME_RE.test(name)) {
    return 'is not a valid label key; expected [prefix/]name with a name of up to 63 letters, digits, "-", "_" or "."';
  }
  if (!LABEL_VALUE_RE.test(v)) {
    return `${JSON.stringify(v)} is not a valid label value; expected up to 63 letters, digits, "-", "_" or ".", starting and ending alphanumeric`;
  }
  return undefined;
}

class FileParser {
  readonly p = new Problems();
  private trustDomain = DEFAULT_TRUST_DOMAIN;
  private readonly nodeNames = new Set<string>();
  // Address ownership across workloads and service VIPs: canonical address → path of the owner.
  private readonly addresses = new Uniq(this.p, 'address');
  private readonly hboneEndpoints = new Uniq(this.p, 'ztunnel address and hbonePort');

  constructor(private readonly rootNamespace: string) {}

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
            : `${JSON.stringify(s)} is not a trust domain; expected lowercase letters, digits, ".", "-" and "_"`,
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
    const routes = new RouteConverter(this.p);
    const httpRoutes = this.routeSection(top, 'httpRoutes', 'HTTPRoute', (r) => routes.httpRoute(r.name, r.namespace, r.spec, r.specPath));
    const virtualServices = this.routeSection(top, 'virtualServices', 'VirtualService', (r) =>
      routes.virtualService(r.name, r.namespace, r.spec, r.specPath),
    );
    if (this.p.size > 0) return undefined;
    return {
      rootNamespace: this.rootNamespace,
      nodes,
      workloads,
      services,
      authorizationPolicies: authz,
      peerAuthentications: peer,
      // Only when present, so configs without them keep their exact shape.
      ...(waypointPolicies.length > 0 ? { waypointPolicies } : {}),
      ...(httpRoutes.length > 0 ? { httpRoutes } : {}),
      ...(virtualServices.length > 0 ? { virtualServices } : {}),
    };
  }

  /** `httpRoutes:` / `virtualServices:`: lists of {name, namespace, spec}, unique per kind. */
  private routeSection<T>(
    top: Record<string, unknown>,
    key: string,
    kind: string,
    convert: (r: { name: string; namespace: string; spec: Record<string, unknown>; specPath: string }) => T | undefined,
  ): T[] {
    const uniq = new Uniq(this.p, kind);
    return (
      field(this.p, '', top, key, (v, path) =>
        list(this.p, path, v, (x, ip) => {
          const before = this.p.size;
          const r = this.resource(x, ip);
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
      SUBDOMAIN_RE.test(s) ? undefined : `${JSON.stringify(s)} is not ${NAME_EXPECTED}`,
    );
  }

  private namespace(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, NAMESPACE_EXPECTED, (s) =>
      LABEL_RE.test(s) ? undefined : `${JSON.stringify(s)} is not ${NAMESPACE_EXPECTED}`,
    );
  }

  /** An IP address, returned in canonical form (see core/model/ip.ts). */
  private address(v: unknown, path: string): string | undefined {
    if (typeof v !== 'string') {
      this.p.add(path, `expected an IPv4 or IPv6 address, got ${describe(v)}`);
      return undefined;
    }
    const c = v.includes('%') ? undefined : canonicalIp(v);
    if (c === undefined) this.p.add(path, `${JSON.stringify(v)} is not an IPv4 or IPv6 address`);
    return c;
  }

  private cidr(v: unknown, path: string): string | undefined {
    if (typeof v !== 'string' || parseCidr(v) === undefined) {
      this.p.add(path, `${describe(v)} is not an IP address or CIDR block; expected e.g. 10.0.0.0/8, 10.1.2.3 or fd00::/64`);
      return undefined;
    }
    return v;
  }

  private spiffeId(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a SPIFFE id', (s) => {
      try {
        parseSpiffeId(s);
        return undefined;
      } catch (e) {
        return `${JSON.stringify(s)} is not a SPIFFE id: ${(e as Error).message.replace(/^invalid spiffe id "[^"]*": /, '')}`;
      }
    });
  }

  /** An Istio principal: `td/ns/x/sa/y`, or a pattern with one `*` at the start or end, or `*`. */
  private principal(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, `a principal (${PRINCIPAL_EXPECTED})`, (s) => {
      const bad = `${JSON.stringify(s)} is not a principal; expected ${PRINCIPAL_EXPECTED}`;
      if (s.startsWith('spiffe://')) {
        return `${JSON.stringify(s)}: write principals without the spiffe:// prefix, e.g. ${JSON.stringify(s.slice(9))}`;
      }
      if (s === '*') return undefined;
      const stars = s.split('*').length - 1;
      if (stars > 1 || (stars === 1 && !s.startsWith('*') && !s.endsWith('*')) || /\s/.test(s)) return bad;
      if (stars === 1) return undefined;
      try {
        parseSpiffeId(`spiffe://${s}`);
        return undefined;
      } catch (e) {
        const why = (e as Error).message.replace(/^invalid spiffe id "[^"]*": /, '');
        return why.startsWith('expected') ? bad : `${bad} (${why})`;
      }
    });
  }

  /** A namespace in a policy: a DNS label or a pattern with one `*` at the start or end, or `*`. */
  private namespacePattern(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a namespace', (s) => {
      if (s === '*') return undefined;
      const core = s.startsWith('*') ? s.slice(1) : s.endsWith('*') ? s.slice(0, -1) : s;
      if (core.includes('*') || !/^[a-z0-9-]+$/.test(core) || (core === s && !LABEL_RE.test(s))) {
        return `${JSON.stringify(s)} is not a namespace; expected ${NAMESPACE_EXPECTED}, optionally with one * at the start or the end`;
      }
      return undefined;
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
      this.p.add(keyPath(path, 'name'), `duplicate node name ${JSON.stringify(name)}`);
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
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: NAME_EXPECTED });
    const namespace = field(this.p, path, m, 'namespace', (x, q) => this.namespace(x, q), {
      required: true,
      expected: NAMESPACE_EXPECTED,
    });
    const explicitUid = field(this.p, path, m, 'uid', (x, q) => string(this.p, q, x, 'a non-empty string'));
    const uid = explicitUid ?? (name !== undefined && namespace !== undefined ? `${namespace}/${name}` : undefined);
    if (uid !== undefined) this.workloadUids.check(uid, keyPath(path, explicitUid !== undefined ? 'uid' : 'name'));
    // With a defaulted uid the uid check above already covers namespace/name.
    if (explicitUid !== undefined && name !== undefined && namespace !== undefined) {
      this.workloadNames.check(`${namespace}/${name}`, keyPath(path, 'name'));
    }
    const serviceAccount =
      field(this.p, path, m, 'serviceAccount', (x, q) =>
        string(this.p, q, x, 'a service account name', (s) =>
          SA_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a service account name; expected ${NAME_EXPECTED}`,
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
          const known = [...this.nodeNames];
          this.p.add(q, `node ${JSON.stringify(n)} is not declared under nodes; declared: ${known.length ? known.join(', ') : 'none'}`);
          return undefined;
        }
        return n;
      },
      { required: true, expected: 'the name of a node declared under nodes' },
    );
    const ips = field(
      this.p,
      path,
      m,
      'ips',
      (x, q) =>
        list(
          this.p,
          q,
          x,
          (ip, iq) => {
            const a = this.address(ip, iq);
            return a !== undefined && this.addresses.check(a, iq) ? a : undefined;
          },
          { nonEmpty: 'a workload needs at least one IP address', expected: 'a list of IP addresses' },
        ),
      { required: true, expected: 'a list of IP addresses' },
    );
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

  private readonly serviceKeys = new Uniq(this.p, 'service');

  private service(v: unknown, path: string, workloads: readonly Workload[], hostnames: Uniq): Service | undefined {
    const m = mapping(this.p, path, v, SERVICE_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: NAME_EXPECTED });
    const namespace = field(this.p, path, m, 'namespace', (x, q) => this.namespace(x, q), {
      required: true,
      expected: NAMESPACE_EXPECTED,
    });
    const unique = name === undefined || namespace === undefined || this.serviceKeys.check(`${namespace}/${name}`, keyPath(path, 'name'));
    const explicitHost = field(this.p, path, m, 'hostname', (x, q) =>
      string(this.p, q, x, 'a DNS name', (s) => (HOSTNAME_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a DNS name`)),
    );
    const hostname =
      explicitHost ?? (name !== undefined && namespace !== undefined ? `${name}.${namespace}.svc.${CLUSTER_DNS_DOMAIN}` : undefined);
    // A defaulted hostname clashes exactly when namespace/name does, which is reported already.
    if (hostname !== undefined && (explicitHost !== undefined || unique)) {
      hostnames.check(hostname, keyPath(path, explicitHost !== undefined ? 'hostname' : 'name'));
    }
    const vips = field(
      this.p,
      path,
      m,
      'vips',
      (x, q) =>
        list(
          this.p,
          q,
          x,
          (ip, iq) => {
            const a = this.address(ip, iq);
            return a !== undefined && this.addresses.check(a, iq) ? a : undefined;
          },
          { nonEmpty: 'a service needs at least one virtual IP', expected: 'a list of IP addresses' },
        ),
      { required: true, expected: 'a list of virtual IP addresses' },
    );
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
    const endpoints = workloads
      .filter((w) => w.namespace === namespace && labelsMatch(selector as Record<string, string>, w.labels))
      .map((w) => w.uid);
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
          string(this.p, r, y, 'a port name', (s) => (LABEL_RE.test(s) ? undefined : `${JSON.stringify(s)} is not ${NAMESPACE_EXPECTED}`)),
        );
        if (name !== undefined) names.check(name, keyPath(q, 'name'));
        if (this.p.size > b) return undefined;
        return { port: p as number, targetPort: targetPort as number, ...(name !== undefined ? { name } : {}) };
      },
      { nonEmpty: 'a service needs at least one port', expected: 'a list of {port, targetPort, name}' },
    );
    return this.p.size > before ? undefined : out;
  }

  // ---- Istio resources ------------------------------------------------------------------

  /** name/namespace/spec of an Istio resource entry; `spec` may be absent (Istio allows `spec: {}`). */
  private resource(v: unknown, path: string): { name?: string; namespace?: string; spec: Record<string, unknown> | undefined; specPath: string } | undefined {
    const m = mapping(this.p, path, v, RESOURCE_KEYS, 'a mapping {name, namespace, spec}');
    if (!m) return undefined;
    const name = field(this.p, path, m, 'name', (x, q) => this.name(x, q), { required: true, expected: NAME_EXPECTED });
    const namespace = field(this.p, path, m, 'namespace', (x, q) => this.namespace(x, q), {
      required: true,
      expected: NAMESPACE_EXPECTED,
    });
    const specPath = keyPath(path, 'spec');
    const spec = Object.hasOwn(m, 'spec') && m.spec !== null ? (isMapping(m.spec) ? m.spec : undefined) : {};
    if (spec === undefined) this.p.add(specPath, `expected a mapping (the spec of the Istio resource), got ${describe(m.spec)}`);
    return { ...(name !== undefined ? { name } : {}), ...(namespace !== undefined ? { namespace } : {}), spec, specPath };
  }

  /** A workload selector; `{}` and `{matchLabels: {}}` count as no selector, as in Istio. */
  private selector(spec: Record<string, unknown>, specPath: string): Record<string, string> | undefined {
    return field(this.p, specPath, spec, 'selector', (x, q) => {
      const m = mapping(this.p, q, x, SELECTOR_KEYS, 'a mapping {matchLabels: {...}}');
      if (!m) return undefined;
      return field(this.p, q, m, 'matchLabels', (y, r) => stringMap(this.p, r, y, checkLabel)) ?? {};
    });
  }

  private scope(namespace: string, selector: Record<string, string> | undefined): 'mesh' | 'namespace' | 'workload' {
    if (selector && Object.keys(selector).length > 0) return 'workload';
    return namespace === this.rootNamespace ? 'mesh' : 'namespace';
  }

  private authorizationPolicy(v: unknown, path: string): AuthorizationPolicy | WaypointPolicy | undefined {
    const before = this.p.size;
    const r = this.resource(v, path);
    if (!r || !r.spec) return undefined;
    if (Object.hasOwn(r.spec, 'targetRefs')) {
      if (r.name === undefined || r.namespace === undefined) return undefined;
      const wp = new WaypointPolicyConverter(this.p, this.rootNamespace).policy(r.name, r.namespace, r.spec, r.specPath);
      return this.p.size > before ? undefined : wp;
    }
    const { spec, specPath } = r;
    for (const k of ['targetRef', 'targetRefs']) {
      if (Object.hasOwn(spec, k)) {
        this.p.add(keyPath(specPath, k), 'attaches the policy to a waypoint, which this file does not configure; use selector to apply it to workloads');
      }
    }
    if (Object.hasOwn(spec, 'provider')) {
      this.p.add(keyPath(specPath, 'provider'), 'belongs to the CUSTOM action, which the L4 proxy does not support');
    }
    const rest = Object.fromEntries(Object.entries(spec).filter(([k]) => !['targetRef', 'targetRefs', 'provider'].includes(k)));
    mapping(this.p, specPath, rest, AUTHZ_SPEC_KEYS);
    const selector = this.selector(spec, specPath) ?? {};
    const actionPath = keyPath(specPath, 'action');
    const istioAction = field(this.p, specPath, spec, 'action', (x, q) => oneOf(this.p, q, x, ISTIO_ACTIONS)) ?? 'ALLOW';
    let action: PolicyAction | undefined;
    if ((L4_ACTIONS as readonly string[]).includes(istioAction)) action = istioAction as PolicyAction;
    else this.p.add(actionPath, `${JSON.stringify(istioAction)} is not supported by the L4 proxy (ztunnel); expected ${L4_ACTIONS.join(' or ')}`);
    const rulesPath = keyPath(specPath, 'rules');
    const hasRules = Object.hasOwn(spec, 'rules') && spec.rules !== null;
    if (action === 'DENY' && !hasRules) {
      this.p.add(rulesPath, 'a DENY policy without rules never matches; add rules, or rules: [{}] to deny every connection');
    }
    const rules =
      field(this.p, specPath, spec, 'rules', (x, q) => list(this.p, q, x, (rv, rq) => this.rule(rv, rq, r.namespace))) ?? [];
    if (this.p.size > before || action === undefined) return undefined;
    return {
      name: r.name as string,
      namespace: r.namespace as string,
      scope: this.scope(r.namespace as string, selector),
      selector,
      action,
      rules,
    };
  }

  private rule(v: unknown, path: string, policyNamespace: string | undefined): PolicyRule | undefined {
    const m = mapping(this.p, path, v, RULE_KEYS, 'a mapping {from, to, when}');
    if (!m) return undefined;
    const before = this.p.size;
    const from =
      field(this.p, path, m, 'from', (x, q) =>
        list(
          this.p,
          q,
          x,
          (e, eq) => {
            const em = mapping(this.p, eq, e, ['source'], 'a mapping {source: {...}}');
            if (!em) return undefined;
            return field(this.p, eq, em, 'source', (s, sq) => this.source(s, sq, policyNamespace), {
              required: true,
              expected: 'a mapping of principals, namespaces, ipBlocks ...',
            });
          },
          { nonEmpty: 'omit `from` to match any source', expected: 'a list of {source: {...}}' },
        ),
      ) ?? [];
    const to =
      field(this.p, path, m, 'to', (x, q) =>
        list(
          this.p,
          q,
          x,
          (e, eq) => {
            const em = mapping(this.p, eq, e, ['operation'], 'a mapping {operation: {...}}');
            if (!em) return undefined;
            return field(this.p, eq, em, 'operation', (o, oq) => this.operation(o, oq), {
              required: true,
              expected: 'a mapping of ports, notPorts ...',
            });
          },
          { nonEmpty: 'omit `to` to match any destination', expected: 'a list of {operation: {...}}' },
        ),
      ) ?? [];
    const when = field(this.p, path, m, 'when', (x, q) => list(this.p, q, x, (c, cq) => this.condition(c, cq))) ?? [];
    if (this.p.size > before) return undefined;
    return { from, to, when };
  }

  /** A list of non-empty strings each checked by `item` (Istio rejects empty values). */
  private values(
    m: Record<string, unknown>,
    path: string,
    key: string,
    item: (v: unknown, path: string) => string | undefined,
  ): string[] | undefined {
    return field(this.p, path, m, key, (x, q) => list(this.p, q, x, item, { nonEmpty: `omit ${key} instead` }));
  }

  private source(v: unknown, path: string, policyNamespace: string | undefined): PolicySource | undefined {
    const m = mapping(this.p, path, v, [...SOURCE_L4_KEYS, ...SOURCE_L7_KEYS]);
    if (!m) return undefined;
    const before = this.p.size;
    const present = Object.keys(m).filter((k) => m[k] !== null && m[k] !== undefined);
    if (present.length === 0) {
      this.p.add(path, `must not be empty; set at least one of ${[...SOURCE_L4_KEYS, ...SOURCE_L7_KEYS].join(', ')}`);
      return undefined;
    }
    const principal = (x: unknown, q: string) => this.principal(x, q);
    const ns = (x: unknown, q: string) => this.namespacePattern(x, q);
    const cidr = (x: unknown, q: string) => this.cidr(x, q);
    const sa = (x: unknown, q: string) => this.serviceAccountRef(x, q, policyNamespace);
    const principals = this.values(m, path, 'principals', principal);
    const notPrincipals = this.values(m, path, 'notPrincipals', principal);
    const namespaces = this.values(m, path, 'namespaces', ns);
    const notNamespaces = this.values(m, path, 'notNamespaces', ns);
    const ipBlocks = this.values(m, path, 'ipBlocks', cidr);
    const notIpBlocks = this.values(m, path, 'notIpBlocks', cidr);
    const serviceAccounts = this.values(m, path, 'serviceAccounts', sa);
    const notServiceAccounts = this.values(m, path, 'notServiceAccounts', sa);
    this.values(m, path, 'requestPrincipals', (x, q) => string(this.p, q, x, 'a request principal'));
    this.values(m, path, 'notRequestPrincipals', (x, q) => string(this.p, q, x, 'a request principal'));
    this.values(m, path, 'remoteIpBlocks', cidr);
    this.values(m, path, 'notRemoteIpBlocks', cidr);
    if ((serviceAccounts || notServiceAccounts) && (principals || notPrincipals || namespaces || notNamespaces)) {
      this.p.add(path, 'serviceAccounts/notServiceAccounts cannot be combined with principals or namespaces (as in Istio)');
    }
    if (this.p.size > before) return undefined;
    // serviceAccounts are a shorthand Istio matches on namespace and account, in any trust
    // domain: exactly what the principal suffix pattern `*/ns/<ns>/sa/<sa>` matches.
    const allPrincipals = principals ?? serviceAccounts;
    const allNotPrincipals = notPrincipals ?? notServiceAccounts;
    return {
      ...(allPrincipals ? { principals: allPrincipals } : {}),
      ...(allNotPrincipals ? { notPrincipals: allNotPrincipals } : {}),
      ...(namespaces ? { namespaces } : {}),
      ...(notNamespaces ? { notNamespaces } : {}),
      ...(ipBlocks ? { ipBlocks } : {}),
      ...(notIpBlocks ? { notIpBlocks } : {}),
      hasL7Fields: SOURCE_L7_KEYS.some((k) => present.includes(k)),
    };
  }

  /** `ns/sa` or `sa` (in the policy's namespace), converted to the principal pattern `*\/ns/<ns>/sa/<sa>`. */
  private serviceAccountRef(v: unknown, path: string, policyNamespace: string | undefined): string | undefined {
    const s = string(this.p, path, v, 'a service account, "<namespace>/<name>" or "<name>"');
    if (s === undefined) return undefined;
    const [a, b, ...extra] = s.split('/');
    const ns = b === undefined ? policyNamespace : a;
    const sa = b === undefined ? a : b;
    if (extra.length > 0 || sa === undefined || !SA_RE.test(sa) || (ns !== undefined && !LABEL_RE.test(ns))) {
      this.p.add(path, `${JSON.stringify(s)} is not a service account; expected "<namespace>/<name>" or "<name>"`);
      return undefined;
    }
    return ns === undefined ? undefined : `*/ns/${ns}/sa/${sa}`;
  }

  private operation(v: unknown, path: string): PolicyOperation | undefined {
    const m = mapping(this.p, path, v, [...OPERATION_L4_KEYS, ...OPERATION_L7_KEYS]);
    if (!m) return undefined;
    const before = this.p.size;
    const present = Object.keys(m).filter((k) => m[k] !== null && m[k] !== undefined);
    if (present.length === 0) {
      this.p.add(path, `must not be empty; set at least one of ${[...OPERATION_L4_KEYS, ...OPERATION_L7_KEYS].join(', ')}`);
      return undefined;
    }
    const portList = (k: string) =>
      field(this.p, path, m, k, (x, q) =>
        list(this.p, q, x, (e, eq) => port(this.p, eq, e, true), { nonEmpty: `omit ${k} instead`, expected: 'a list of ports ("8080")' }),
      );
    const ports = portList('ports');
    const notPorts = portList('notPorts');
    for (const k of OPERATION_L7_KEYS) this.values(m, path, k, (x, q) => string(this.p, q, x, 'a non-empty string'));
    if (this.p.size > before) return undefined;
    return {
      ...(ports ? { ports } : {}),
      ...(notPorts ? { notPorts } : {}),
      hasL7Fields: OPERATION_L7_KEYS.some((k) => present.includes(k)),
    };
  }

  private condition(v: unknown, path: string): PolicyCondition | undefined {
    const m = mapping(this.p, path, v, CONDITION_KEYS, 'a mapping {key, values, notValues}');
    if (!m) return undefined;
    const before = this.p.size;
    const allowedKeys = `${[...L4_CONDITION_KEYS].join(', ')} (enforced at L4), or ${L7_CONDITION_KEYS.join(', ')}, request.* (HTTP)`;
    const key = field(
      this.p,
      path,
      m,
      'key',
      (x, q) =>
        string(this.p, q, x, 'a condition key', (s) =>
          L4_CONDITION_KEYS.has(s) || L7_CONDITION_KEYS.includes(s) || /^request\.\S+$/.test(s)
            ? undefined
            : `${JSON.stringify(s)} is not a supported condition key; expected one of ${allowedKeys}`,
        ),
      { required: true, expected: allowedKeys },
    );
    const item = (x: unknown, q: string): string | undefined => {
      switch (key) {
        case 'source.ip':
        case 'destination.ip':
          return this.cidr(x, q);
        case 'destination.port': {
          const n = port(this.p, q, x, true);
          return n === undefined ? undefined : String(n);
        }
        case 'source.principal':
          return this.principal(x, q);
        case 'source.namespace':
          return this.namespacePattern(x, q);
        default:
          return string(this.p, q, x, 'a non-empty string');
      }
    };
    const values = this.values(m, path, 'values', item);
    const notValues = this.values(m, path, 'notValues', item);
    const has = (k: string) => Object.hasOwn(m, k) && m[k] !== null;
    if (key !== undefined && !has('values') && !has('notValues')) {
      this.p.add(path, `set values or notValues for key ${key}`);
    }
    if (this.p.size > before) return undefined;
    return { key: key as string, ...(values ? { values } : {}), ...(notValues ? { notValues } : {}) };
  }

  private peerAuthentication(v: unknown, path: string): PeerAuthentication | undefined {
    const before = this.p.size;
    const r = this.resource(v, path);
    if (!r || !r.spec) return undefined;
    const { spec, specPath } = r;
    mapping(this.p, specPath, spec, PEER_AUTH_SPEC_KEYS);
    const selector = this.selector(spec, specPath) ?? {};
    const mode = (m: unknown, q: string): MtlsMode | undefined => {
      const mm = mapping(this.p, q, m, MTLS_KEYS, 'a mapping {mode: STRICT|PERMISSIVE|DISABLE|UNSET}');
      if (!mm) return undefined;
      return field(this.p, q, mm, 'mode', (x, xq) => oneOf(this.p, xq, x, MTLS_MODES)) ?? 'UNSET';
    };
    const topMode = field(this.p, specPath, spec, 'mtls', mode) ?? 'UNSET';
    const portLevel = field(this.p, specPath, spec, 'portLevelMtls', (x, q) => {
      if (!isMapping(x)) {
        this.p.add(q, `expected a map of port to {mode}, e.g. {"8080": {mode: PERMISSIVE}}, got ${describe(x)}`);
        return undefined;
      }
      if (Object.keys(selector).length === 0) {
        this.p.add(q, 'only a policy with a selector may set portLevelMtls (as in Istio); add spec.selector.matchLabels');
      }
      if (Object.keys(x).length === 0) this.p.add(q, 'must not be empty when present');
      const entries: [number, MtlsMode][] = [];
      for (const [k, val] of Object.entries(x)) {
        const kq = keyPath(q, k);
        const n = /^\d{1,5}$/.test(k) ? Number(k) : NaN;
        if (!(n >= 1 && n <= 65535)) {
          this.p.add(kq, `${JSON.stringify(k)} is not a port; expected an integer from 1 to 65535`);
          continue;
        }
        const pm = mode(val, kq);
        if (pm !== undefined) entries.push([n, pm]);
      }
      return entries;
    });
    if (this.p.size > before) return undefined;
    return {
      name: r.name as string,
      namespace: r.namespace as string,
      scope: this.scope(r.namespace as string, selector),
      selector,
      mode: topMode,
      portLevel: new ImmutableMap(portLevel ?? []),
    };
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
  let docs: unknown[];
  try {
    docs = loadAll(text, { filename: source });
  } catch (e) {
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
    const http = p.rules.some(
      (r) => r.from.some((s) => s.hasL7Fields) || r.to.some((o) => o.hasL7Fields) || r.when.some((w) => !L4_CONDITION_KEYS.has(w.key)),
    );
    if (!http) continue;
    out.push(
      p.action === 'ALLOW'
        ? `authorization policy ${p.namespace}/${p.name} uses HTTP attributes: its rules that use them match nothing at L4 (stricter than written); use a waypoint to enforce HTTP rules`
        : `authorization policy ${p.namespace}/${p.name} uses HTTP attributes: ztunnel enforces its rules without them, denying more than written; use a waypoint to enforce HTTP rules`,
    );
  }
  return out;
}
