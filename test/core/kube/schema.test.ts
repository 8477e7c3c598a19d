/**
 * core/kube/schema.ts: structural validation against the upstream schemas.
 *
 * (a) Unit rows: per kind, a valid object has no problem, and typical mistakes give exactly the
 *     expected problems, with their fields.
 * (b) The proof against upstream: the CRDs in ../shared/crds (Gateway API v1.6.1 standard
 *     channel, Istio crd-all.gen.yaml) compiled with ajv, standing in for an API server, judge a
 *     corpus of objects (fixtures/upstream-examples.yaml, fixtures/schema-corpus.yaml, each under
 *     every served version of its kind) and systematic mutations of them: wrong types, nulls, bad
 *     and every allowed enum value, numbers at and beyond their bounds, strings at and beyond their
 *     length, pattern and format violations, lists at and beyond their size, missing required
 *     fields, two members of a oneOf. `schemaProblems` must take the same decision on each, with
 *     the same fields and messages when both reject; every disagreement is listed in
 *     KNOWN_DIFFERENCES with its reason, and a listed difference that no longer occurs fails too.
 *     A probe also finds the fields the model packages check that the upstream CRDs do not have.
 *
 * What the stand-in API server does, as kube-apiserver's CRD handler does on create: drops
 * `status` (a status subresource), prunes null fields that are not nullable, applies defaults
 * (ajv `useDefaults`), then validates the schema. Formats: date-time, ipv4, ipv6 and byte are
 * checked; int32/int64/double/float are not (the API server logs them as unrecognized formats and
 * checks only that the value is a number). Not evaluated: CEL rules (`x-kubernetes-validations`;
 * ajv does not know them and neither do the models), list-type uniqueness
 * (`x-kubernetes-list-type: map|set`), and the API server's own metadata checks (names, label
 * syntax), so the proof mutates `spec` only and unit rows cover `metadata`.
 */
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as yaml from 'js-yaml';
import { Ajv, type ValidateFunction } from 'ajv';
import { SUPPORTED_KINDS } from '../../../core/kube/objects.js';
import { indexPath, keyPath } from '../../../core/validation/check.js';
import { MAX_LIST_ITEMS, SCHEMA_TYPES, hasSchema, problemsFromErrors, schemaProblems, type SchemaError, type SchemaProblem } from '../../../core/kube/schema.js';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);
const lines = (ps: readonly SchemaProblem[] | undefined): string[] | undefined => ps?.map((p) => (p.field === '' ? p.message : `${p.field}: ${p.message}`));

// ---- (a) unit rows ---------------------------------------------------------------------------

const meta = { name: 'x', namespace: 'apps' };

/** One valid object per (apiVersion, kind) the mesh reads. */
const VALID: Obj[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta },
  {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...meta, labels: { app: 'x' } },
    spec: { serviceAccountName: 'x', nodeName: 'n1', containers: [{ name: 'app', image: 'x:1', ports: [{ containerPort: 8080, protocol: 'TCP' }] }] },
    status: { phase: 'Running', podIP: '10.0.0.5' },
  },
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta,
    spec: { selector: { app: 'x' }, clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }, { port: 81, targetPort: 'http' }] },
  },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta,
    spec: { replicas: 2, selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'app', image: 'x:1' }] } } },
  },
  ...['security.istio.io/v1', 'security.istio.io/v1beta1'].flatMap((apiVersion) => [
    {
      apiVersion,
      kind: 'AuthorizationPolicy',
      metadata: meta,
      spec: { action: 'ALLOW', selector: { matchLabels: { app: 'x' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/a/sa/b'] } }], to: [{ operation: { ports: ['80'] } }] }] },
    },
    { apiVersion, kind: 'PeerAuthentication', metadata: meta, spec: { mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } } },
    {
      apiVersion,
      kind: 'RequestAuthentication',
      metadata: meta,
      spec: { targetRefs: [{ kind: 'Service', group: '', name: 'x' }], jwtRules: [{ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks.json', fromHeaders: [{ name: 'x-jwt', prefix: 'Bearer ' }] }] },
    },
  ]),
  ...['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'].flatMap((apiVersion) => [
    {
      apiVersion,
      kind: 'VirtualService',
      metadata: meta,
      spec: { hosts: ['x'], http: [{ match: [{ uri: { prefix: '/' } }], route: [{ destination: { host: 'x', subset: 'v1' }, weight: 100 }], timeout: '5s' }] },
    },
    { apiVersion, kind: 'DestinationRule', metadata: meta, spec: { host: 'x', subsets: [{ name: 'v1', labels: { version: 'v1' } }] } },
  ]),
  ...['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'].flatMap((apiVersion) => [
    {
      apiVersion,
      kind: 'Gateway',
      metadata: meta,
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    },
    {
      apiVersion,
      kind: 'HTTPRoute',
      metadata: meta,
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'x', port: 80 }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'x', port: 80, weight: 1 }] }] },
    },
  ]),
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'GRPCRoute',
    metadata: meta,
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'x', port: 50051 }], rules: [{ matches: [{ method: { service: 'x.X', method: 'Get' } }], backendRefs: [{ name: 'x', port: 50051, weight: 1 }] }] },
  },
  ...['gateway.networking.k8s.io/v1alpha2', 'gateway.networking.k8s.io/v1'].map((apiVersion) => ({
    apiVersion,
    kind: 'TCPRoute',
    metadata: meta,
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'x', port: 5432 }], rules: [{ backendRefs: [{ name: 'x', port: 5432, weight: 1 }] }] },
  })),
  ...['gateway.networking.k8s.io/v1beta1', 'gateway.networking.k8s.io/v1'].map((apiVersion) => ({
    apiVersion,
    kind: 'ReferenceGrant',
    metadata: meta,
    spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'apps' }], to: [{ group: '', kind: 'Service', name: 'x' }] },
  })),
];

t.test('every apiVersion of every kind the mesh reads has a schema, and no other', async (t) => {
  const supported = Object.entries(SUPPORTED_KINDS).flatMap(([kind, info]) => info.apiVersions.map((apiVersion) => `${apiVersion} ${kind}`));
  t.strictSame(SCHEMA_TYPES.map((s) => `${s.apiVersion} ${s.kind}`).sort(), supported.sort());
  t.strictSame(VALID.map((o) => `${String(o.apiVersion)} ${String(o.kind)}`).sort(), supported.sort(), 'a valid row for each');
});

t.test('a valid object of each kind and version has no problem', async (t) => {
  for (const o of VALID) t.strictSame(schemaProblems(o), [], `${String(o.apiVersion)} ${String(o.kind)}`);
});

t.test('an unknown apiVersion or kind, or no object at all, is not judged (undefined)', async (t) => {
  t.equal(schemaProblems({ apiVersion: 'v1', kind: 'ConfigMap', metadata: meta }), undefined, 'a kind the mesh does not read');
  t.equal(schemaProblems({ apiVersion: 'security.istio.io/v2', kind: 'AuthorizationPolicy', metadata: meta }), undefined, 'a version with no schema');
  t.equal(schemaProblems({ kind: 'Pod', metadata: meta }), undefined, 'no apiVersion');
  t.equal(schemaProblems(['a list']), undefined);
  t.equal(schemaProblems('text'), undefined);
  t.equal(hasSchema('networking.istio.io/v1alpha3', 'VirtualService'), true);
  t.equal(hasSchema('v1', 'ConfigMap'), false);
});

/** Mistakes users make, each with every problem it must give (field: message), in order. */
const MISTAKES: { name: string; obj: Obj; expect: string[] }[] = [
  {
    name: 'Namespace: a label value that YAML read as a number',
    obj: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'istio.io/rev': 1 } } },
    expect: ['metadata.labels["istio.io/rev"]: expected a string, got 1 (quote it: "1")'],
  },
  {
    name: 'ServiceAccount: annotations as a list, a bad timestamp',
    obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'x', annotations: ['a=b'], creationTimestamp: 'yesterday' } },
    expect: [
      'metadata.annotations: expected a mapping, got a list',
      'metadata.creationTimestamp: expected a date and time (RFC 3339, e.g. 2026-01-02T15:04:05Z), got "yesterday"',
    ],
  },
  {
    name: 'Pod: a container without a name, a port as a string, a bad quantity, a null container',
    obj: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: meta,
      spec: { containers: [{ image: 'x', ports: [{ containerPort: '8080' }], resources: { limits: { cpu: 'lots' } } }, null] },
    },
    expect: [
      'spec.containers[0].name: required field is missing',
      'spec.containers[0].ports[0].containerPort: expected an integer, got "8080"',
      'spec.containers[0].resources.limits.cpu: expected a number or a quantity (e.g. 500m, 1Gi), got "lots"',
      'spec.containers[1]: expected a mapping, got null',
    ],
  },
  {
    name: 'Pod: no containers at all',
    obj: { apiVersion: 'v1', kind: 'Pod', metadata: meta, spec: { nodeName: 'n1' } },
    expect: ['spec.containers: required field is missing'],
  },
  {
    name: 'Service: a bad type and protocol, targetPort true, a port without its number',
    obj: { apiVersion: 'v1', kind: 'Service', metadata: meta, spec: { type: 'Internal', ports: [{ port: 80, targetPort: true, protocol: 'tcp' }, { name: 'b' }] } },
    expect: [
      'spec.ports[0].protocol: "tcp" is not allowed; expected one of SCTP, TCP, UDP',
      'spec.ports[0].targetPort: expected a string or an integer, got true',
      'spec.ports[1].port: required field is missing',
      'spec.type: "Internal" is not allowed; expected one of ClusterIP, ExternalName, LoadBalancer, NodePort',
    ],
  },
  {
    name: 'Deployment: no selector, replicas as a string',
    obj: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta, spec: { replicas: 'two', template: { spec: { containers: [{ name: 'a' }] } } } },
    expect: ['spec.selector: required field is missing', 'spec.replicas: expected an integer, got "two"'],
  },
  {
    name: 'AuthorizationPolicy: a lowercase action, `from` as a mapping, a when without key',
    obj: {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: meta,
      spec: { action: 'allow', rules: [{ from: { source: { principals: ['a'] } }, when: [{ values: ['x'] }] }] },
    },
    expect: [
      'spec.action: "allow" is not allowed; expected one of ALLOW, DENY, AUDIT, CUSTOM',
      'spec.rules[0].from: expected a list, got a mapping',
      'spec.rules[0].when[0].key: required field is missing',
    ],
  },
  {
    name: 'AuthorizationPolicy: ports as numbers (Istio wants strings), principals as a string',
    obj: {
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'AuthorizationPolicy',
      metadata: meta,
      spec: { rules: [{ from: [{ source: { principals: 'cluster.local/ns/a/sa/b' } }], to: [{ operation: { ports: [8080] } }] }] },
    },
    expect: ['spec.rules[0].from[0].source.principals: expected a list, got "cluster.local/ns/a/sa/b"', 'spec.rules[0].to[0].operation.ports[0]: expected a string, got 8080 (quote it: "8080")'],
  },
  {
    name: 'PeerAuthentication: a bad mode, a port-level entry that is not a mapping',
    obj: { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: meta, spec: { mtls: { mode: 'strict' }, portLevelMtls: { '8080': 'STRICT' } } },
    expect: [
      'spec.mtls.mode: "strict" is not allowed; expected one of UNSET, DISABLE, PERMISSIVE, STRICT',
      'spec.portLevelMtls["8080"]: expected a mapping, got "STRICT"',
    ],
  },
  {
    name: 'VirtualService: hosts as a string, two kinds of uri match, a destination without host, a weight as a string',
    obj: {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: meta,
      spec: { hosts: 'reviews', http: [{ match: [{ uri: { exact: '/a', prefix: '/b' } }], route: [{ destination: { subset: 'v1' }, weight: '50' }] }] },
    },
    expect: [
      'spec.hosts: expected a list, got "reviews"',
      'spec.http[0].match[0].uri: only one of its alternative fields may be set; it sets exact, prefix',
      'spec.http[0].route[0].destination.host: required field is missing',
      'spec.http[0].route[0].weight: expected an integer, got "50"',
    ],
  },
  {
    name: 'VirtualService: a fault percentage as a string, retry attempts as a string',
    obj: {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'VirtualService',
      metadata: meta,
      spec: { hosts: ['x'], http: [{ fault: { abort: { httpStatus: 503, percentage: { value: '10%' } } }, retries: { attempts: '3' }, route: [{ destination: { host: 'x' } }] }] },
    },
    expect: ['spec.http[0].fault.abort.percentage.value: expected a number, got "10%"', 'spec.http[0].retries.attempts: expected an integer, got "3"'],
  },
  {
    name: 'DestinationRule: no host, a subset without name, a bad load balancer and two of them',
    obj: {
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'DestinationRule',
      metadata: meta,
      spec: { subsets: [{ labels: { version: 'v1' } }], trafficPolicy: { loadBalancer: { simple: 'RANDOMLY', consistentHash: { useSourceIp: true } } } },
    },
    expect: [
      'spec.host: required field is missing',
      'spec.subsets[0].name: required field is missing',
      'spec.trafficPolicy.loadBalancer: only one of its alternative fields may be set; it sets simple, consistentHash',
      'spec.trafficPolicy.loadBalancer.simple: "RANDOMLY" is not allowed; expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST',
    ],
  },
  {
    name: 'Gateway: no class, a listener port out of range, a protocol with a space',
    obj: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: meta, spec: { listeners: [{ name: 'mesh', port: 70000, protocol: 'HBONE 1' }] } },
    expect: [
      'spec.gatewayClassName: required field is missing',
      'spec.listeners[0].port: 70000 is out of range; expected at most 65535',
      'spec.listeners[0].protocol: "HBONE 1" is not valid here; expected a string matching ^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\/[A-Za-z0-9]+$',
    ],
  },
  {
    name: 'HTTPRoute: a backend port as a string, a path type in lowercase, a negative weight, a filter without type, 17 rules',
    obj: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: meta,
      spec: {
        parentRefs: [{ name: 'x' }],
        rules: [
          { matches: [{ path: { type: 'prefix', value: '/' } }], filters: [{ requestHeaderModifier: { set: [{ name: 'a', value: 'b' }] } }], backendRefs: [{ name: 'x', port: '80', weight: -1 }] },
          ...Array.from({ length: 16 }, () => ({ backendRefs: [{ name: 'x', port: 80 }] })),
        ],
      },
    },
    expect: [
      'spec.rules: has 17 entries; expected at most 16',
      'spec.rules[0].backendRefs[0].port: expected an integer, got "80"',
      'spec.rules[0].backendRefs[0].weight: -1 is out of range; expected at least 0',
      'spec.rules[0].filters[0].type: required field is missing',
      'spec.rules[0].matches[0].path.type: "prefix" is not allowed; expected one of Exact, PathPrefix, RegularExpression',
    ],
  },
  {
    name: 'HTTPRoute v1beta1: a hostname too long, a parentRef without name',
    obj: { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'HTTPRoute', metadata: meta, spec: { parentRefs: [{ kind: 'Service' }], hostnames: ['a'.repeat(254)] } },
    expect: ['spec.parentRefs[0].name: required field is missing', 'spec.hostnames[0]: is too long (254 characters); expected at most 253'],
  },
];

t.test('typical mistakes give exactly the expected problems, with their fields', async (t) => {
  for (const m of MISTAKES) t.strictSame(lines(schemaProblems(m.obj)), m.expect, m.name);
});

t.test('the object is judged as an API server judges it on create', async (t) => {
  const route = VALID.find((o) => o.kind === 'HTTPRoute' && o.apiVersion === 'gateway.networking.k8s.io/v1') as Obj;
  const withNulls = clone(route);
  (withNulls.spec as Obj).hostnames = null;
  ((withNulls.spec as Obj).parentRefs as Obj[])[0]!.port = null;
  t.strictSame(schemaProblems(withNulls), [], 'a null field is dropped, as the API server prunes it');
  const nullRequired = clone(route);
  ((nullRequired.spec as Obj).parentRefs as Obj[])[0]!.name = null;
  t.strictSame(lines(schemaProblems(nullRequired)), ['spec.parentRefs[0].name: required field is missing'], 'a required field set to null is missing');
  const badStatus = { ...clone(route), status: { parents: 'none' } };
  t.strictSame(schemaProblems(badStatus), [], 'status is not validated (a subresource; not configuration)');
  const dated = { ...clone(route), metadata: { ...meta, creationTimestamp: new Date('2026-12-01T00:00:00Z') } };
  t.strictSame(schemaProblems(dated), [], 'a YAML timestamp (a Date) is read as the string kubectl would send');
  const unknown = clone(route);
  (unknown.spec as Obj).colour = 'blue';
  t.strictSame(schemaProblems(unknown), [], 'an unknown field is not reported (the API server prunes it)');
  const input = clone(withNulls);
  schemaProblems(input);
  t.strictSame(input, withNulls, 'the object passed in is not changed');
  const cyclic = clone(route);
  (cyclic.spec as Obj).self = cyclic;
  t.strictSame(lines(schemaProblems(cyclic)), ['cannot be read as JSON (a value JSON cannot hold, or a cycle)']);
});

t.test('each error is reported once, and keys that are not identifiers are quoted', async (t) => {
  // The models' validators report some errors twice (a referenced type and its use).
  const obj = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'x', labels: { 'app.kubernetes.io/name': 7 } }, spec: { parentRefs: [{ name: 1 }] } };
  t.strictSame(lines(schemaProblems(obj)), ['metadata.labels["app.kubernetes.io/name"]: expected a string, got 7 (quote it: "7")', 'spec.parentRefs[0].name: expected a string, got 1 (quote it: "1")']);
  const errors: SchemaError[] = [
    { instancePath: '/spec/a~1b/0', keyword: 'type', params: { type: 'string' } },
    { instancePath: '/spec/a~1b/0', keyword: 'type', params: { type: 'string' } },
    { instancePath: '/spec/m/0', keyword: 'minItems', params: { limit: 2 } },
    { instancePath: '/spec/m/0', keyword: 'maxProperties', params: { limit: 1 } },
  ];
  t.strictSame(lines(problemsFromErrors(errors, { spec: { 'a/b': [3], m: { '0': { a: 1, b: 2 } } } })), [
    'spec["a/b"][0]: expected a string, got 3 (quote it: "3")',
    'spec.m["0"]: has 0 entries; expected at least 2',
    'spec.m["0"]: has 2 keys; expected at most 1',
  ]);
});

// ---- (b) the proof against upstream ----------------------------------------------------------

const CRD_DIR = new URL('../../../../shared/crds/', import.meta.url);
const FIXTURES = new URL('./fixtures/', import.meta.url);
const SEED_FILES = ['upstream-examples.yaml', 'schema-corpus.yaml'];

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minItems?: number;
  maxItems?: number;
  nullable?: boolean;
  default?: unknown;
  oneOf?: Schema[];
  anyOf?: Schema[];
  'x-kubernetes-int-or-string'?: boolean;
}

/** The upstream schema of each served version: `${apiVersion} ${kind}` → openAPIV3Schema. */
function loadCrds(): Map<string, Schema> {
  const out = new Map<string, Schema>();
  for (const f of readdirSync(CRD_DIR).filter((f) => f.endsWith('.yaml'))) {
    for (const d of yaml.loadAll(readFileSync(new URL(f, CRD_DIR), 'utf8')) as Obj[]) {
      if (!isObj(d) || d.kind !== 'CustomResourceDefinition') continue;
      const spec = d.spec as { group: string; names: { kind: string }; versions: { name: string; served: boolean; schema: { openAPIV3Schema: Schema } }[] };
      for (const v of spec.versions) if (v.served) out.set(`${spec.group}/${v.name} ${spec.names.kind}`, v.schema.openAPIV3Schema);
    }
  }
  return out;
}

/** ajv as the stand-in API server's validation: every error collected, x-kubernetes-* ignored (strict: false). */
function apiServerAjv(): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: true });
  // Numeric formats: the API server does not check them (it logs "unrecognized format").
  for (const f of ['int32', 'int64', 'double', 'float']) ajv.addFormat(f, true);
  // String formats it checks (kube-openapi's strfmt registry), with node's IP parser for Go's.
  ajv.addFormat('ipv4', { type: 'string', validate: (s: string) => isIPv4(s) });
  ajv.addFormat('ipv6', { type: 'string', validate: (s: string) => isIPv6(s) });
  ajv.addFormat('byte', { type: 'string', validate: /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/ });
  ajv.addFormat('date-time', { type: 'string', validate: /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/ });
  return ajv;
}

/** The sub-schema of property `k` (or map value) under `s`. */
function propSchema(s: Schema | undefined, k: string): Schema | undefined {
  return s?.properties?.[k] ?? (typeof s?.additionalProperties === 'object' ? s.additionalProperties : undefined);
}

/**
 * What kube-apiserver does to a custom resource on create before validating it: no status, no
 * non-nullable nulls, then defaults (a pass of their own: ajv's `useDefaults` would apply them
 * after evaluating oneOf, which the Gateway's address oneOf depends on).
 */
function asApiServerSees(obj: Obj, schema: Schema): Obj {
  const c = clone(obj);
  delete c.status;
  const prune = (v: unknown, s: Schema | undefined): void => {
    if (Array.isArray(v)) v.forEach((x) => prune(x, s?.items));
    else if (isObj(v)) {
      for (const [k, x] of Object.entries(v)) {
        const ps = propSchema(s, k);
        if (x === null && !ps?.nullable) delete v[k];
        else prune(x, ps);
      }
    }
  };
  const applyDefaults = (v: unknown, s: Schema | undefined): void => {
    if (Array.isArray(v)) v.forEach((x) => applyDefaults(x, s?.items));
    else if (isObj(v)) {
      for (const [k, ps] of Object.entries(s?.properties ?? {})) if (!Object.hasOwn(v, k) && ps.default !== undefined) v[k] = clone(ps.default);
      for (const [k, x] of Object.entries(v)) applyDefaults(x, propSchema(s, k));
    }
  };
  prune(c, schema);
  applyDefaults(c, schema);
  return c;
}

type Path = (string | number)[];
interface Mutation {
  readonly path: Path;
  readonly what: string;
  readonly obj: Obj;
}

const getAt = (o: unknown, p: Path): unknown => p.reduce<unknown>((a, k) => (a as Record<string | number, unknown> | undefined)?.[k], o);
function setAt(o: Obj, p: Path, v: unknown): Obj {
  const c = clone(o);
  (getAt(c, p.slice(0, -1)) as Record<string | number, unknown>)[p[p.length - 1]!] = v;
  return c;
}
function deleteAt(o: Obj, p: Path): Obj {
  const c = clone(o);
  delete (getAt(c, p.slice(0, -1)) as Record<string | number, unknown>)[p[p.length - 1]!];
  return c;
}
/** `spec.rules[*].backendRefs[*].port`: the field with list indexes as `[*]`, for matching known differences. */
const pattern = (p: Path): string => p.map((k) => (typeof k === 'number' ? '[*]' : `.${k}`)).join('').slice(1);

function typesOf(s: Schema): string[] {
  if (s['x-kubernetes-int-or-string']) return ['integer', 'string'];
  return s.type ? [s.type] : [];
}

/** A value of the wrong type for `s` (undefined when `s` takes any type). */
function wrongType(s: Schema): unknown {
  const types = typesOf(s);
  if (types.length === 0) return undefined;
  if (types.includes('string') && types.includes('integer')) return true;
  return { string: 42, integer: 'seven', number: 'seven', boolean: 'yes', object: 'a string', array: 'a string' }[types[0]!];
}

/** A simple value `s` takes, for filling required fields and oneOf members. */
function simpleValue(s: Schema | undefined, depth = 0): unknown {
  if (!s) return 'x';
  if (s.enum && s.enum.length > 0) return s.enum[0];
  const type = typesOf(s)[0];
  switch (type) {
    case 'integer':
    case 'number':
      return s.minimum !== undefined ? Math.max(s.minimum, 1) : 1;
    case 'boolean':
      return true;
    case 'array':
      return [];
    case 'object': {
      const o: Obj = {};
      if (depth < 4) for (const r of s.required ?? []) o[r] = simpleValue(s.properties?.[r], depth + 1);
      return o;
    }
    default:
      return 'x';
  }
}

/** Values that break (`bad`) or sit exactly on (`edge`) a scalar's constraints. */
function scalarCases(s: Schema): { what: string; value: unknown; edge?: boolean }[] {
  const out: { what: string; value: unknown; edge?: boolean }[] = [];
  if (s.enum) {
    out.push({ what: 'enum', value: typeof s.enum[0] === 'number' ? 999 : 'NotAnAllowedValue' });
    for (const e of s.enum) out.push({ what: `enum=${String(e)}`, value: e, edge: true });
  }
  if (s.type === 'integer' || s.type === 'number') {
    if (s.minimum !== undefined) out.push({ what: 'minimum', value: s.minimum - 1 }, { what: 'at minimum', value: s.minimum, edge: true });
    if (s.maximum !== undefined) out.push({ what: 'maximum', value: s.maximum + 1 }, { what: 'at maximum', value: s.maximum, edge: true });
    if (s.type === 'integer') out.push({ what: 'fraction', value: 1.5 });
    if (s.format === 'int32' && s.maximum === undefined) out.push({ what: 'beyond int32', value: 2 ** 31 });
  }
  if (s.type === 'string') {
    if (s.maxLength !== undefined) out.push({ what: 'maxLength', value: 'a'.repeat(s.maxLength + 1) }, { what: 'at maxLength', value: 'a'.repeat(s.maxLength), edge: true });
    if (s.minLength) out.push({ what: 'minLength', value: '' });
    if (s.pattern) out.push({ what: 'pattern', value: 'no such thing!' });
    if (s.format === 'ipv4' || s.format === 'ipv6') out.push({ what: 'format', value: 'not-an-ip' });
    if (s.format === 'date-time') out.push({ what: 'format', value: 'yesterday' });
  }
  for (const alt of s.anyOf ?? []) if (alt.format === 'ipv4' || alt.format === 'ipv6') out.push({ what: 'format', value: 'not-an-ip' });
  return out;
}

/** The properties a node's schema allows, with those only its oneOf/anyOf members declare. */
function propertiesOf(s: Schema): [string, Schema][] {
  const all = new Map<string, Schema>(Object.entries(s.properties ?? {}));
  for (const alt of [...(s.oneOf ?? []), ...(s.anyOf ?? [])]) for (const [k, v] of Object.entries(alt.properties ?? {})) if (!all.has(k)) all.set(k, v);
  return [...all];
}

/**
 * Mutations of `obj` under `spec`, guided by the upstream schema: for each value present, a wrong
 * type, null, its constraint cases, its required fields removed, two members of its oneOf; for
 * each property absent, a wrong type, its constraint cases, and (to reach deeper) a minimal value
 * whose own fields are mutated in turn.
 */
function mutations(obj: Obj, schema: Schema): Mutation[] {
  const out: Mutation[] = [];
  const seen = new Set<string>();
  const add = (path: Path, what: string, o: Obj): void => {
    const key = `${path.join('.')} ${what}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ path, what, obj: o });
  };
  const walk = (base: Obj, v: unknown, s: Schema | undefined, p: Path, depth: number): void => {
    if (!s) return;
    const w = wrongType(s);
    if (w !== undefined) add(p, 'type', setAt(base, p, w));
    for (const c of scalarCases(s)) add(p, c.what, setAt(base, p, c.value));
    if (!Array.isArray(getAt(base, p.slice(0, -1)))) add(p, 'null', setAt(base, p, null));
    if (Array.isArray(v)) {
      if (s.maxItems !== undefined && v.length > 0) {
        add(p, 'maxItems', setAt(base, p, Array.from({ length: s.maxItems + 1 }, () => clone(v[0]))));
        add(p, 'at maxItems', setAt(base, p, Array.from({ length: s.maxItems }, () => clone(v[0]))));
      }
      if (s.minItems) add(p, 'minItems', setAt(base, p, []));
      v.forEach((x, i) => walk(base, x, s.items, [...p, i], depth));
      return;
    }
    if (!isObj(v)) return;
    for (const r of s.required ?? []) if (Object.hasOwn(v, r)) add([...p, r], 'required', deleteAt(base, [...p, r]));
    const members = (s.oneOf ?? []).flatMap((alt) => (alt.required?.length === 1 ? alt.required : []));
    const absentMembers = members.filter((m) => !Object.hasOwn(v, m));
    if (members.length > 1 && absentMembers.length >= 2) {
      const [a, b] = absentMembers as [string, string];
      const two = clone(base);
      const node = getAt(two, p) as Obj;
      node[a] = simpleValue(propSchema(s, a));
      node[b] = simpleValue(propSchema(s, b));
      add(p, `oneOf ${a}+${b}`, two);
    }
    for (const [k, ps] of propertiesOf(s)) {
      const pk = [...p, k];
      if (Object.hasOwn(v, k)) {
        walk(base, v[k], ps, pk, depth);
        continue;
      }
      const w2 = wrongType(ps);
      if (w2 !== undefined) add(pk, 'type (absent)', setAt(base, pk, w2));
      for (const c of scalarCases(ps)) add(pk, `${c.what} (absent)`, setAt(base, pk, c.value));
      // Reach into absent structures: a minimal value, whose own fields get mutations too.
      if (depth < 3 && (ps.type === 'object' || (ps.type === 'array' && ps.items?.type === 'object'))) {
        const item = simpleValue(ps.type === 'array' ? ps.items : ps);
        const filled = setAt(base, pk, ps.type === 'array' ? [item] : item);
        add(pk, 'minimal (absent)', filled);
        walk(filled, getAt(filled, pk), ps, pk, depth + 1);
      }
    }
    if (typeof s.additionalProperties === 'object') for (const k of Object.keys(v)) if (!s.properties?.[k]) walk(base, v[k], s.additionalProperties, [...p, k], depth);
  };
  walk(obj, obj.spec, schema.properties?.spec, ['spec'], 0);
  return out;
}

/** `spec.rules[0].name`: a path in the notation of problems. */
const fieldOf = (p: Path): string => p.reduce<string>((f, k) => (typeof k === 'number' ? indexPath(f, k) : keyPath(f, k)), '');

/**
 * Every property name the model packages' validators read (`data.retry` in their precompiled
 * code) and every property name of the upstream CRDs: the candidates of the probe below.
 */
function candidateNames(crds: Map<string, Schema>): string[] {
  const names = new Set<string>();
  for (const pkg of ['@kubernetes-models/gateway-api', '@kubernetes-models/istio']) {
    const dir = new URL('./_schemas/', import.meta.resolve(pkg));
    for (const f of readdirSync(dir).filter((f) => f.endsWith('.js'))) {
      for (const m of readFileSync(new URL(f, dir), 'utf8').matchAll(/\bdata\.([A-Za-z_$][\w$]*)/g)) names.add(m[1]!);
    }
  }
  const walk = (s: Schema | undefined): void => {
    if (!s) return;
    for (const [k, ps] of propertiesOf(s)) {
      names.add(k);
      walk(ps);
    }
    walk(s.items);
    if (typeof s.additionalProperties === 'object') walk(s.additionalProperties);
  };
  for (const s of crds.values()) walk(s);
  names.delete('length');
  return [...names];
}

/**
 * The probe for fields the models check but the upstream CRDs do not have (so the API server
 * prunes them): at each mapping of `base` under `spec` (not maps of arbitrary keys), every
 * candidate name the upstream schema lacks is set, first to `[]`, then to `true`; no typed field
 * takes both, so a field the model knows is reported by one of the two. Each one found becomes a
 * mutation setting just that field.
 */
function modelOnlyMutations(base: Obj, schema: Schema, candidates: readonly string[]): Mutation[] {
  const out: Mutation[] = [];
  const visit = (v: unknown, s: Schema | undefined, p: Path): void => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => visit(x, s?.items, [...p, i]));
      return;
    }
    if (!isObj(v) || !s) return;
    if (typeof s.additionalProperties !== 'object') {
      const upstream = new Set(propertiesOf(s).map(([k]) => k));
      const probed = candidates.filter((k) => !Object.hasOwn(v, k) && !upstream.has(k));
      const byField = new Map(probed.map((k) => [keyPath(fieldOf(p), k), k]));
      const found = new Map<string, unknown>();
      for (const probe of [[], true]) {
        const o = clone(base);
        const node = getAt(o, p) as Obj;
        for (const k of probed) node[k] = probe;
        for (const problem of schemaProblems(o) ?? []) {
          const k = byField.get(problem.field);
          if (k !== undefined && !found.has(k)) found.set(k, probe);
        }
      }
      for (const [k, probe] of found) out.push({ path: [...p, k], what: 'model-only field', obj: setAt(base, [...p, k], probe) });
    }
    for (const [k, x] of Object.entries(v)) visit(x, propSchema(s, k), [...p, k]);
  };
  visit(base.spec, schema.properties?.spec, ['spec']);
  return out;
}

/**
 * Where `schemaProblems` and the upstream CRDs disagree, and why. `fields` matches the mutated
 * field with list indexes as [*]; `what` the mutation; `apiVersions` where it applies.
 */
const KNOWN_DIFFERENCES: { apiVersions: RegExp; kind: string; fields: RegExp; what: RegExp; reason: string }[] = [
  {
    apiVersions: /^security\.istio\.io\//,
    kind: 'AuthorizationPolicy',
    fields: /^spec\.rules\[\*\]\.from\[\*\]\.source\.(trustDomains|notTrustDomains)$/,
    what: /./,
    reason:
      'newer than @kubernetes-models/istio 3.0.1 (the latest release): the Istio CRDs of 2026-08-22 have source.trustDomains/notTrustDomains, the model does not, so a wrong type there is not reported (the API server rejects it); the mesh does not implement these fields',
  },
  {
    apiVersions: /^networking\.istio\.io\//,
    kind: 'VirtualService',
    fields: /^spec\.http\[\*\]\.redirect\.prefixRewrite$/,
    what: /./,
    reason: 'newer than @kubernetes-models/istio 3.0.1: http.redirect.prefixRewrite is not in the model, so a wrong type there is not reported',
  },
  {
    apiVersions: /^networking\.istio\.io\//,
    kind: 'DestinationRule',
    fields: /\.(connectionPool\.http\.http2KeepAlive|loadBalancer\.backendUtilization|loadBalancer\.zoneAwareLbSetting|outlierDetection\.outlierDetectionHttpErrorCodes|retryBudget\.budgetInterval)(\.|\[|$)/,
    what: /./,
    reason:
      'newer than @kubernetes-models/istio 3.0.1: http2KeepAlive, backendUtilization, zoneAwareLbSetting (also members of the loadBalancer oneOf), outlierDetectionHttpErrorCodes and retryBudget.budgetInterval are not in the model, so their errors are not reported',
  },
  {
    apiVersions: /^gateway\.networking\.k8s\.io\//,
    kind: 'Gateway',
    fields: /^spec\.addresses(\[\*\](\.(type|value))?)?$/,
    what: /./,
    reason:
      '@kubernetes-models/gateway-api 2.0.0 drops the oneOf of a Gateway address ("type: IPAddress" needs an IPv4 or IPv6 value), so a bad IP there is accepted; ajv also reports that oneOf for an address that is not a mapping, which the model does not',
  },
  {
    apiVersions: /^gateway\.networking\.k8s\.io\//,
    kind: 'HTTPRoute',
    fields: /^spec\.(useDefaultGateways|rules\[\*\]\.(retry|sessionPersistence)|rules\[\*\](\.backendRefs\[\*\])?\.filters\[\*\]\.externalAuth)$/,
    what: /^model-only field$/,
    reason:
      '@kubernetes-models/gateway-api 2.0.0 is generated from the experimental channel: these fields are type-checked here, while a standard-channel API server prunes them (an experimental-channel one checks them as we do); the mesh reads rules[].retry',
  },
  {
    apiVersions: /^gateway\.networking\.k8s\.io\//,
    kind: 'Gateway',
    fields: /^spec\.defaultScope$/,
    what: /^model-only field$/,
    reason: 'experimental channel in the model (as for HTTPRoute): spec.defaultScope is checked here and pruned by a standard-channel API server',
  },
];

const noCrds = existsSync(CRD_DIR) ? false : `no upstream CRDs at ${fileURLToPath(CRD_DIR)}: the proof needs ../shared/crds next to the checkout`;

t.test('the upstream CRDs and schemaProblems take the same decisions', { skip: noCrds }, async (t) => {
  const crds = loadCrds();
  const ajv = apiServerAjv();
  const compiled = new Map<string, ValidateFunction>();
  const validator = (type: string): ValidateFunction => {
    let v = compiled.get(type);
    if (!v) {
      v = ajv.compile(crds.get(type) as object);
      compiled.set(type, v);
    }
    return v;
  };
  // TCPRoute v1alpha2: what Istio 1.26 reads and its users write (Gateway API before 1.5 served
  // only v1alpha2); upstream v1.6.1 keeps its schema but serves v1 only, so it is not compared.
  const NOT_SERVED_UPSTREAM = new Set(['gateway.networking.k8s.io/v1alpha2 TCPRoute']);
  const crdTypes = SCHEMA_TYPES.filter((s) => s.apiVersion.includes('.')).map((s) => `${s.apiVersion} ${s.kind}`).filter((ty) => !NOT_SERVED_UPSTREAM.has(ty));
  const groupKinds = new Set(crdTypes.map((ty) => `${ty.split('/')[0]!} ${ty.split(' ')[1]!}`));
  const servedOfOurKinds = [...crds.keys()].filter((ty) => groupKinds.has(`${ty.split('/')[0]!} ${ty.split(' ')[1]!}`));
  t.strictSame(servedOfOurKinds.sort(), [...crdTypes].sort(), 'every served version of the kinds the mesh reads has a schema here, and no other');

  const candidates = candidateNames(crds);
  const seeds = SEED_FILES.flatMap((f) => yaml.loadAll(readFileSync(new URL(f, FIXTURES), 'utf8')) as Obj[]).filter(isObj);
  const used = new Set<number>();
  let total = 0;
  for (const seed of seeds) {
    const kind = String(seed.kind);
    const versions = crdTypes.filter((ty) => ty.endsWith(` ${kind}`)).map((ty) => ty.split(' ')[0]!);
    for (const apiVersion of versions) {
      const base = { ...clone(seed), apiVersion };
      const type = `${apiVersion} ${kind}`;
      const name = `${type} ${String((seed.metadata as Obj).name)}`;
      await t.test(name, async (t) => {
        const schema = crds.get(type) as Schema;
        const v = validator(type);
        const upstream = (o: Obj): { ok: boolean; problems: SchemaProblem[] } => {
          const seen = asApiServerSees(o, schema);
          const ok = v(seen);
          return { ok, problems: ok ? [] : problemsFromErrors((v.errors ?? []) as SchemaError[], seen) };
        };
        t.strictSame({ upstream: upstream(base).problems, ours: schemaProblems(base) }, { upstream: [], ours: [] }, 'the seed is valid');
        const unexpected: string[] = [];
        const different: string[] = [];
        let rejected = 0;
        let accepted = 0;
        for (const m of [...mutations(base, schema), ...modelOnlyMutations(base, schema, candidates)]) {
          total++;
          const up = upstream(m.obj);
          const ours = schemaProblems(m.obj) ?? [];
          if (up.ok) accepted++;
          else rejected++;
          const label = `${pattern(m.path)} ${m.what}`;
          const known = KNOWN_DIFFERENCES.findIndex((k) => k.kind === kind && k.apiVersions.test(apiVersion) && k.fields.test(pattern(m.path)) && k.what.test(m.what));
          if (up.ok !== (ours.length === 0)) {
            if (known >= 0) used.add(known);
            else unexpected.push(`${label}: upstream ${up.ok ? 'accepts' : `rejects (${lines(up.problems)!.join('; ')})`}, schemaProblems ${ours.length === 0 ? 'accepts' : `rejects (${lines(ours)!.join('; ')})`}`);
          } else if (!up.ok) {
            const a = lines(up.problems)!.sort();
            const b = lines(ours)!.sort();
            if (JSON.stringify(a) !== JSON.stringify(b)) {
              if (known >= 0) used.add(known);
              else different.push(`${label}: upstream [${a.join('; ')}] schemaProblems [${b.join('; ')}]`);
            }
          }
        }
        t.strictSame(unexpected, [], 'no decision differs beyond KNOWN_DIFFERENCES');
        t.strictSame(different, [], 'when both reject, the same problems (fields and messages)');
        t.ok(rejected > 0 && accepted > 0, `mutations both rejected (${rejected}) and accepted (${accepted})`);
      });
    }
  }
  t.ok(total > 1000, `${total} mutations compared`);
  t.strictSame(
    KNOWN_DIFFERENCES.filter((_, i) => !used.has(i)).map((k) => `${k.kind} ${k.fields.source} ${k.what.source}`),
    [],
    'every known difference still occurs',
  );
});

t.test('a list longer than the mesh reads is refused before the validators run', async (t) => {
  const principals = Array.from({ length: MAX_LIST_ITEMS + 1 }, (_, i) => `cluster.local/ns/a/sa/s${i}`);
  const policy = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'a' }, spec: { rules: [{ from: [{ source: { principals } }] }] } };
  t.same(schemaProblems(policy), [{ field: 'spec.rules[0].from[0].source.principals', message: `a list of ${MAX_LIST_ITEMS + 1} items; the mesh reads at most ${MAX_LIST_ITEMS} in one list` }]);
  policy.spec.rules[0]!.from[0]!.source.principals = principals.slice(0, MAX_LIST_ITEMS);
  t.same(schemaProblems(policy), [], 'at the bound, the list is read');
});

