/**
 * Structural validation of the Kubernetes objects the mesh reads, against the schemas upstream
 * publishes: the OpenAPI schemas of Kubernetes itself (Namespace, ServiceAccount, Pod, Service,
 * Deployment) and the CRD schemas of Istio and the Gateway API, as compiled into validators by the
 * `kubernetes-models`, `@kubernetes-models/istio` and `@kubernetes-models/gateway-api` packages.
 *
 * `schemaProblems` reports every structural error once, with its field in the notation of the
 * hand-written checks (`spec.rules[0].backendRefs[0].port`, `metadata.labels["app.kubernetes.io/name"]`)
 * and a message that says what was found and what is expected. Semantics (CIDRs, SPIFFE IDs,
 * DNS-1123 names, cross-references, what the mesh supports) stay with the parsers.
 *
 * The object is judged as an API server with the upstream CRDs would judge it on create:
 * - it is read as JSON (YAML timestamps become strings, as `kubectl` sends them);
 * - a field set to null is dropped before validation (the API server prunes nulls of
 *   non-nullable fields, and decoding a built-in kind turns them into the zero value); a null
 *   list element stays and is an error;
 * - `status` is not validated: it is written through the status subresource, the API server
 *   ignores it on the object itself, and it is not the user's configuration;
 * - unknown fields are not reported (the API server prunes them; the parsers say what they do
 *   not support).
 * CEL rules (`x-kubernetes-validations`) and list-type uniqueness (`x-kubernetes-list-type: map`)
 * are not evaluated, and the model packages' schema versions differ from the upstream CRDs in a
 * few places: test/core/kube/schema.test.ts compares this function with the upstream CRDs and
 * lists every known difference with its reason.
 */
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { AuthorizationPolicy as AuthorizationPolicyV1 } from '@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy';
import { AuthorizationPolicy as AuthorizationPolicyV1beta1 } from '@kubernetes-models/istio/security.istio.io/v1beta1/AuthorizationPolicy';
import { PeerAuthentication as PeerAuthenticationV1 } from '@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication';
import { PeerAuthentication as PeerAuthenticationV1beta1 } from '@kubernetes-models/istio/security.istio.io/v1beta1/PeerAuthentication';
import { RequestAuthentication as RequestAuthenticationV1 } from '@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication';
import { RequestAuthentication as RequestAuthenticationV1beta1 } from '@kubernetes-models/istio/security.istio.io/v1beta1/RequestAuthentication';
import { VirtualService as VirtualServiceV1 } from '@kubernetes-models/istio/networking.istio.io/v1/VirtualService';
import { VirtualService as VirtualServiceV1beta1 } from '@kubernetes-models/istio/networking.istio.io/v1beta1/VirtualService';
import { VirtualService as VirtualServiceV1alpha3 } from '@kubernetes-models/istio/networking.istio.io/v1alpha3/VirtualService';
import { DestinationRule as DestinationRuleV1 } from '@kubernetes-models/istio/networking.istio.io/v1/DestinationRule';
import { DestinationRule as DestinationRuleV1beta1 } from '@kubernetes-models/istio/networking.istio.io/v1beta1/DestinationRule';
import { DestinationRule as DestinationRuleV1alpha3 } from '@kubernetes-models/istio/networking.istio.io/v1alpha3/DestinationRule';
import { Gateway as GatewayV1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway';
import { Gateway as GatewayV1beta1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1beta1/Gateway';
import { HTTPRoute as HTTPRouteV1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute';
import { HTTPRoute as HTTPRouteV1beta1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1beta1/HTTPRoute';
import { GRPCRoute as GRPCRouteV1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GRPCRoute';
import { TCPRoute as TCPRouteV1alpha2 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha2/TCPRoute';
import { ReferenceGrant as ReferenceGrantV1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/ReferenceGrant';
import { ReferenceGrant as ReferenceGrantV1beta1 } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1beta1/ReferenceGrant';
import { describe, indexPath, isMapping, keyPath } from '../validation/check.js';

/** One structural error: the field (`spec.rules[0].matches`; empty for the object itself) and what is wrong. */
export interface SchemaProblem {
  readonly field: string;
  readonly message: string;
}

/**
 * An error as the models' precompiled (ajv) validators report it: `instancePath` is a JSON
 * pointer into the object, `params` depends on `keyword`.
 */
export interface SchemaError {
  readonly instancePath: string;
  readonly keyword: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly message?: string;
}

/** A model class: built from the object's data, `validate()` throws an error whose `errors` are SchemaErrors. */
interface ModelClass {
  readonly apiVersion: string;
  readonly kind: string;
  new (data: never): { validate(): void };
}

/**
 * Every apiVersion of every kind the mesh reads (objects.ts `SUPPORTED_KINDS`; the test checks
 * that the two agree). Each import pulls in only that class's validator and the types it uses.
 */
const MODELS: readonly ModelClass[] = [
  Namespace,
  ServiceAccount,
  Pod,
  Service,
  Deployment,
  AuthorizationPolicyV1,
  AuthorizationPolicyV1beta1,
  PeerAuthenticationV1,
  PeerAuthenticationV1beta1,
  RequestAuthenticationV1,
  RequestAuthenticationV1beta1,
  VirtualServiceV1,
  VirtualServiceV1beta1,
  VirtualServiceV1alpha3,
  DestinationRuleV1,
  DestinationRuleV1beta1,
  DestinationRuleV1alpha3,
  GatewayV1,
  GatewayV1beta1,
  HTTPRouteV1,
  HTTPRouteV1beta1,
  GRPCRouteV1,
  TCPRouteV1alpha2,
  ReferenceGrantV1,
  ReferenceGrantV1beta1,
] as readonly ModelClass[];

/**
 * Versions the models lack, judged by the model of a version with the same schema (the object's
 * apiVersion is the model's while it is judged): TCPRoute `v1` (Gateway API 1.5+) has the schema
 * of `v1alpha2`, the only TCPRoute model @kubernetes-models/gateway-api 2.0.0 has.
 */
const ALIASES: readonly { readonly apiVersion: string; readonly model: ModelClass }[] = [
  { apiVersion: 'gateway.networking.k8s.io/v1', model: TCPRouteV1alpha2 as unknown as ModelClass },
];

const BY_TYPE = new Map<string, ModelClass>([
  ...MODELS.map((m): [string, ModelClass] => [`${m.apiVersion} ${m.kind}`, m]),
  ...ALIASES.map((a): [string, ModelClass] => [`${a.apiVersion} ${a.model.kind}`, a.model]),
]);

/** The (apiVersion, kind) pairs `schemaProblems` has a schema for. */
export const SCHEMA_TYPES: readonly { readonly apiVersion: string; readonly kind: string }[] = Object.freeze([
  ...MODELS.map((m) => Object.freeze({ apiVersion: m.apiVersion, kind: m.kind })),
  ...ALIASES.map((a) => Object.freeze({ apiVersion: a.apiVersion, kind: a.model.kind })),
]);

/** Whether `schemaProblems` knows the schema of this apiVersion and kind. */
export function hasSchema(apiVersion: string, kind: string): boolean {
  return BY_TYPE.has(`${apiVersion} ${kind}`);
}

/**
 * Every structural error of `obj` against the upstream schema of its apiVersion and kind, each
 * once, in the order the validator finds them; `[]` when there is none.
 *
 * Returns `undefined` when `obj` is not a mapping with string `apiVersion` and `kind` naming a
 * schema this module has: which kinds and versions are accepted is the caller's business (the
 * parser reports an unknown kind or apiVersion with the list of supported ones).
 *
 * @example
 * schemaProblems({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy',
 *   metadata: { name: 'a' }, spec: { action: 'MAYBE' } });
 * // [{ field: 'spec.action', message: '"MAYBE" is not allowed; expected one of ALLOW, DENY, AUDIT, CUSTOM' }]
 */
export function schemaProblems(obj: unknown): SchemaProblem[] | undefined {
  if (!isMapping(obj) || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string') return undefined;
  const model = BY_TYPE.get(`${obj.apiVersion} ${obj.kind}`);
  if (model === undefined) return undefined;
  let submitted: Submitted;
  try {
    submitted = asSubmitted(obj);
  } catch {
    return [{ field: '', message: 'cannot be read as JSON (a value JSON cannot hold, or a cycle)' }];
  }
  // The generated validators check every element of a list, even past a schema's maxItems (50,000
  // items of one list took 5 s): a list longer than the mesh reads is refused before they run.
  const { data, longLists } = submitted;
  if (longLists.length > 0) return longLists;
  try {
    // An alias (ALIASES) is judged as its model's version.
    const judged = model.apiVersion === obj.apiVersion ? data : { ...(data as Record<string, unknown>), apiVersion: model.apiVersion };
    new model(judged as never).validate();
    return [];
  } catch (e) {
    const errors = (e as { errors?: unknown }).errors;
    // invariant: the models' validate() throws only ValidationError, which carries ajv's errors.
    if (!Array.isArray(errors)) throw e;
    return problemsFromErrors(errors as SchemaError[], data);
  }
}

/** The apiVersion whose schema judges a bare spec of each kind (the version the control plane reads). */
const SPEC_VERSIONS = {
  AuthorizationPolicy: 'security.istio.io/v1',
  PeerAuthentication: 'security.istio.io/v1',
  RequestAuthentication: 'security.istio.io/v1',
  HTTPRoute: 'gateway.networking.k8s.io/v1',
  GRPCRoute: 'gateway.networking.k8s.io/v1',
  TCPRoute: 'gateway.networking.k8s.io/v1alpha2',
  // v1beta1: the version every Gateway API release since 0.6 serves (v1 only since 1.5).
  ReferenceGrant: 'gateway.networking.k8s.io/v1beta1',
  VirtualService: 'networking.istio.io/v1',
  DestinationRule: 'networking.istio.io/v1',
} as const;

/** A kind whose spec also travels without its object: the standalone file's entries, the discovery wire. */
export type SpecKind = keyof typeof SPEC_VERSIONS;

/**
 * The structural errors of a bare `spec` of `kind`, judged by the schema of the kind's `v1` as the
 * spec of an object would be, with fields under `specPath` instead of `spec`. For specs that are
 * not inside a Kubernetes object (entries of the standalone file, `core/node-config/file.ts`;
 * resources on the discovery wire, `core/discovery/wire.ts`) and still go through the spec
 * converters, which take the structure as checked.
 *
 * @example
 * specProblems('PeerAuthentication', { mtls: { mode: 'ON' } }, 'peerAuthentications[0].spec');
 * // [{ field: 'peerAuthentications[0].spec.mtls.mode', message: '"ON" is not allowed; expected one of UNSET, DISABLE, PERMISSIVE, STRICT' }]
 */
export function specProblems(kind: SpecKind, spec: unknown, specPath: string): SchemaProblem[] {
  const obj = { apiVersion: SPEC_VERSIONS[kind], kind, metadata: { name: 'spec' }, spec };
  // invariant: the object has a schema and valid metadata, so every problem is at or under `spec`
  // (or at the root when the spec cannot be read as JSON).
  return (schemaProblems(obj) ?? []).map(({ field, message }) => {
    const rest = field.startsWith('spec') ? field.slice('spec'.length) : '';
    return { field: specPath === '' ? rest.replace(/^\./, '') : `${specPath}${rest}`, message };
  });
}

interface Submitted {
  /** `obj` as the API server validates it: a JSON copy without `status` and without null fields. */
  readonly data: Record<string, unknown>;
  /** Every list in it longer than MAX_LIST_ITEMS, as a problem at its field. */
  readonly longLists: SchemaProblem[];
}

/**
 * Most elements the mesh reads in one list. Upstream's own bounds are lower where they exist
 * (Gateway API: 16 rules, 64 backendRefs; Istio: 4,096 portLevelSettings); Istio's principals,
 * hosts and Kubernetes' Service ports have none, and stay far below this in real configuration.
 */
export const MAX_LIST_ITEMS = 10_000;

/** Where a mapping or list sits in the copy: its parent and its key, to name a field only when needed. */
interface Place {
  readonly parent: Place | undefined;
  readonly key: string | number;
}

function fieldAt(place: Place | undefined): string {
  const keys: Array<string | number> = [];
  for (let at = place; at !== undefined; at = at.parent) keys.push(at.key);
  let field = '';
  for (let i = keys.length - 1; i >= 0; i--) {
    const k = keys[i]!;
    field = typeof k === 'number' ? indexPath(field, k) : keyPath(field, k);
  }
  return field;
}

/**
 * One walk over the JSON copy that drops null fields and finds the long lists. Linear in the
 * object's size with an explicit stack (no recursion depth); a field's name is only built for a
 * long list, never for the scalars (a Pod with 80,000 labels made 80,000 names in a second walk).
 * Throws what `JSON.stringify` throws (a BigInt, a cycle, a nesting deeper than its stack).
 */
function asSubmitted(obj: Record<string, unknown>): Submitted {
  const data = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  delete data.status;
  const longLists: SchemaProblem[] = [];
  const stack: Array<{ v: object; place: Place | undefined }> = [{ v: data, place: undefined }];
  while (stack.length > 0) {
    const { v, place } = stack.pop()!;
    if (Array.isArray(v)) {
      if (v.length > MAX_LIST_ITEMS) {
        longLists.push({ field: fieldAt(place), message: `a list of ${v.length} items; the mesh reads at most ${MAX_LIST_ITEMS} in one list` });
        continue;
      }
      v.forEach((x: unknown, i) => {
        if (x !== null && typeof x === 'object') stack.push({ v: x, place: { parent: place, key: i } });
      });
    } else {
      const m = v as Record<string, unknown>;
      for (const k of Object.keys(m)) {
        const x = m[k];
        if (x === null) delete m[k];
        else if (typeof x === 'object') stack.push({ v: x as object, place: { parent: place, key: k } });
      }
    }
  }
  return { data, longLists };
}

// ---- errors to problems ------------------------------------------------------------------------

/** The JSON pointer's segments: `/spec/a~1b/0` → `spec`, `a/b`, `0`. */
function segments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The field notation of a pointer into `data`: list elements as `[i]`, keys as `.k` or `["k"]`. */
function fieldOf(data: unknown, segs: readonly string[]): string {
  let path = '';
  let v: unknown = data;
  for (const s of segs) {
    if (Array.isArray(v)) {
      path = indexPath(path, Number(s));
      v = v[Number(s)];
    } else {
      path = keyPath(path, s);
      v = isMapping(v) ? v[s] : undefined;
    }
  }
  return path;
}

function valueAt(data: unknown, segs: readonly string[]): unknown {
  let v: unknown = data;
  for (const s of segs) {
    if (Array.isArray(v)) v = v[Number(s)];
    else if (isMapping(v)) v = v[s];
    else return undefined;
  }
  return v;
}

/**
 * Numeric formats the API server does not check (it logs them as unrecognized and checks only the
 * type, and minimum/maximum where the schema has them); the models' validators check their ranges.
 */
const UNCHECKED_FORMATS = new Set(['int32', 'int64', 'float', 'double']);

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  null: 'null',
};

const FORMAT_WORDS: Record<string, string> = {
  'date-time': 'a date and time (RFC 3339, e.g. 2026-01-02T15:04:05Z)',
  ipv4: 'an IPv4 address',
  ipv6: 'an IPv6 address',
  quantity: 'a quantity (e.g. 500m, 1Gi)',
  byte: 'base64 data',
  cidr: 'a CIDR (e.g. 10.0.0.0/8)',
};

function typeWord(t: unknown): string {
  const types = Array.isArray(t) ? t : String(t).split(',');
  return types.map((x) => TYPE_WORDS[String(x)] ?? String(x)).join(' or ');
}

const BOUND_WORDS: Record<string, string> = { '>=': 'at least', '>': 'more than', '<=': 'at most', '<': 'less than' };

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function entries(v: unknown): string {
  return count(Array.isArray(v) ? v.length : 0, 'entry', 'entries');
}

/** What a value should have been, for merging the alternatives of a oneOf/anyOf into one message. */
function expectedOf(e: SchemaError): string | undefined {
  switch (e.keyword) {
    case 'type':
      return typeWord(e.params.type);
    case 'format':
      return FORMAT_WORDS[String(e.params.format)] ?? `a value of format ${String(e.params.format)}`;
    case 'enum':
      return `one of ${(e.params.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'pattern':
      return `a string matching ${String(e.params.pattern)}`;
    default:
      return undefined;
  }
}

/** The message of one error about `v`, the value at its path. */
function messageOf(e: SchemaError, v: unknown): string {
  const p = e.params;
  switch (e.keyword) {
    case 'type': {
      // YAML reads `version: 1` or `enabled: true` as a number or a boolean: say how to write the string.
      const quote = String(p.type) === 'string' && (typeof v === 'number' || typeof v === 'boolean') ? ` (quote it: "${String(v)}")` : '';
      return `expected ${typeWord(p.type)}, got ${describe(v)}${quote}`;
    }
    case 'enum':
      return `${describe(v)} is not allowed; expected one of ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'required':
      return 'required field is missing';
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${describe(v)} is out of range; expected ${BOUND_WORDS[String(p.comparison)] ?? String(p.comparison)} ${String(p.limit)}`;
    case 'multipleOf':
      return `${describe(v)} is not a multiple of ${String(p.multipleOf)}`;
    case 'minLength':
      return Number(p.limit) === 1 ? 'must not be empty' : `${describe(v)} is too short; expected at least ${count(Number(p.limit), 'character')}`;
    case 'maxLength':
      return `is too long (${count([...String(v)].length, 'character')}); expected at most ${String(p.limit)}`;
    case 'pattern':
      return `${describe(v)} is not valid here; expected a string matching ${String(p.pattern)}`;
    case 'format':
      return `expected ${expectedOf(e) ?? 'a valid value'}, got ${describe(v)}`;
    case 'minItems':
      return Number(p.limit) === 1
        ? 'must not be empty; expected at least 1 entry'
        : `has ${entries(v)}; expected at least ${String(p.limit)}`;
    case 'maxItems':
      return `has ${entries(v)}; expected at most ${String(p.limit)}`;
    case 'minProperties':
      return Number(p.limit) === 1 ? 'must not be empty' : `expected at least ${count(Number(p.limit), 'key')}`;
    case 'maxProperties':
      return `has ${count(isMapping(v) ? Object.keys(v).length : 0, 'key')}; expected at most ${String(p.limit)}`;
    case 'uniqueItems':
      return `entries ${String(p.j)} and ${String(p.i)} are the same; entries must be unique`;
    case 'not':
      return 'is not allowed here';
    default:
      return e.message ?? `is not valid (${e.keyword})`;
  }
}

/**
 * Turns validator errors about `data` into problems, each once, leaving out the numeric formats
 * the API server does not check. Besides paths and messages, it undoes what alternatives
 * (`oneOf`/`anyOf`) leave behind in ajv's list:
 * - no alternative matched (an int-or-string given `true`, a quantity given `"lots"`): the errors
 *   of the alternatives at the same path become one message (`expected an integer or a string`);
 * - several matched (Istio's proto oneofs: `uri: {exact, prefix}`): ajv also reports the `not`
 *   (the "none set" alternative) and `required` of the alternatives that did not match, at the
 *   same path; these become one message naming the fields set. The objects carrying such a
 *   oneOf have no required fields of their own, so no real `required` error is lost.
 * Exported for the test, which reads the upstream CRD validator's errors the same way.
 */
export function problemsFromErrors(errors: readonly SchemaError[], data: unknown): SchemaProblem[] {
  const byPath = new Map<string, SchemaError[]>();
  const seen = new Set<string>();
  for (const e of errors) {
    if (e.keyword === 'format' && UNCHECKED_FORMATS.has(String(e.params.format))) continue;
    const key = `${e.instancePath}\u0000${e.keyword}\u0000${JSON.stringify(e.params)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  const out: SchemaProblem[] = [];
  const emitted = new Set<string>();
  const emit = (field: string, message: string): void => {
    const key = `${field}\u0000${message}`;
    if (emitted.has(key)) return;
    emitted.add(key);
    out.push({ field, message });
  };
  const hasDeeper = (pointer: string): boolean => [...byPath.keys()].some((p) => p.startsWith(`${pointer}/`));
  for (const [pointer, list] of byPath) {
    const segs = segments(pointer);
    const field = fieldOf(data, segs);
    const v = valueAt(data, segs);
    let rest = list;
    const several = list.find((e) => e.keyword === 'oneOf' && Array.isArray(e.params.passingSchemas));
    if (several) {
      rest = list.filter((e) => e !== several && e.keyword !== 'not' && e.keyword !== 'required');
      // Not a mapping: alternatives that only name properties all pass, and the type error says it.
      if (isMapping(v)) emit(field, `only one of its alternative fields may be set; it sets ${Object.keys(v).join(', ')}`);
    }
    const none = rest.find((e) => (e.keyword === 'oneOf' || e.keyword === 'anyOf') && !Array.isArray(e.params.passingSchemas));
    if (none) {
      const branches = rest.filter((e) => e !== none && expectedOf(e) !== undefined);
      rest = rest.filter((e) => e !== none && !branches.includes(e) && e.keyword !== 'oneOf' && e.keyword !== 'anyOf');
      if (branches.length > 0) {
        const expected = [...new Set(branches.map((e) => expectedOf(e) as string))];
        emit(field, `expected ${expected.join(' or ')}, got ${describe(v)}`);
      } else if (!hasDeeper(pointer)) {
        emit(field, 'matches none of the forms allowed here');
      }
    }
    for (const e of rest) {
      if (e.keyword === 'required') {
        const missing = String(e.params.missingProperty);
        emit(keyPath(field, missing), messageOf(e, undefined));
      } else {
        emit(field, messageOf(e, v));
      }
    }
  }
  return out;
}
