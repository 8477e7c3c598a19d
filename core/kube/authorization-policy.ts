/**
 * The `spec` of Istio's AuthorizationPolicy and PeerAuthentication → the internal model. Shared by
 * every config source that carries these resources (the standalone file in `file.ts`, the manifest
 * parser in `parse.ts`), so they accept exactly the same specs with the same messages.
 *
 * Problems are recorded in the caller's `Problems` with paths under the caller's `specPath`; a
 * method returns undefined when the resource is unusable.
 *
 * Callers pass specs whose structure the upstream schema has judged (`schema.ts`: `parseObject`,
 * and `specProblems` for the standalone file): types, required fields and enums are not checked
 * again here; what is checked is what the schema cannot say (principals, CIDRs, namespaces, ports
 * as numbers, empty lists and entries, what ztunnel enforces) and keys the mesh does not know.
 */
import { spiffeIdProblem } from '../identity/spiffe.js';
import { parseCidr } from '../model/ip.js';
import { ImmutableMap } from '../model/freeze.js';
import { L4_CONDITION_KEYS } from '../authz/evaluate.js';
import { policyPathProblem } from '../authz/match.js';
import { Problems, conditionKeyField, describe, field, keyPath, list, mapping, port, quote, string, wrappedListField } from '../validation/check.js';
import { LABEL_RE, NAMESPACE_EXPECTED, PRINCIPAL_EXPECTED, SA_RE, checkedLabels } from './names.js';
import type {
  AuthorizationPolicy,
  MtlsMode,
  PeerAuthentication,
  PolicyAction,
  PolicyCondition,
  PolicyOperation,
  PolicyRule,
  PolicySource,
} from '../model/types.js';

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
/** Every action Istio defines; the L4 proxy enforces only `L4_ACTIONS`. */
export const ISTIO_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;
export const L4_ACTIONS: readonly PolicyAction[] = ['ALLOW', 'DENY'];
/** `when` keys Istio defines that an L4 proxy cannot evaluate (besides every `request.*` key). */
const L7_CONDITION_KEYS = ['remote.ip', 'connection.sni'];

// The identity values of a policy, one definition for the L4 parser (below) and the waypoint's
// (waypoint-policy.ts), so ztunnel and the waypoint accept the same strings. Istio matches each as
// exact, `*`, `prefix*` or `*suffix` (core/authz/match.ts `matchesPattern`, as Istio's
// pilot/pkg/security/authz/matcher/string.go): a second `*`, or one in the middle, is refused, since it
// would be read as a literal `*` that no identity contains.

/** Characters of a SPIFFE ID after `spiffe://` (SPIFFE ID spec §2.1, §2.2: trust domain and path). */
const SPIFFE_CHARS_RE = /^[A-Za-z0-9._/-]*$/;
/** C0 and C1 controls, DEL, and the bidi and zero-width characters that make look-alike identities. */
const INVISIBLE_RE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/;

/** Where `s` has a `*`: none, only `*`, one at the start or end ('edge'), or elsewhere/more ('bad'). */
function starShape(s: string): 'none' | 'any' | 'edge' | 'bad' {
  if (s === '*') return 'any';
  const first = s.indexOf('*');
  if (first === -1) return 'none';
  if (first !== s.lastIndexOf('*')) return 'bad';
  return first === 0 || first === s.length - 1 ? 'edge' : 'bad';
}

/**
 * Why `s` is not a policy principal, or undefined: `<trust-domain>/ns/<namespace>/sa/<account>`
 * (a SPIFFE ID without `spiffe://`), or `*`, or one with a single `*` at the start or the end
 * whose other characters are SPIFFE ID characters.
 */
export function principalProblem(s: string): string | undefined {
  // The message is built only for a bad one: a policy holds up to 10,000 principals per list.
  const bad = () => `${quote(s)} is not a principal; expected ${PRINCIPAL_EXPECTED}`;
  if (s.startsWith('spiffe://')) {
    return `${quote(s)}: write principals without the spiffe:// prefix, e.g. ${quote(s.slice(9))}`;
  }
  const shape = starShape(s);
  if (shape === 'any') return undefined;
  if (shape === 'bad') return bad();
  if (shape === 'edge') return SPIFFE_CHARS_RE.test(s.replace('*', '')) ? undefined : bad();
  // No error per bad principal: one policy may hold 240,000 of them (building their errors took 2-9 s).
  const why = spiffeIdProblem(`spiffe://${s}`);
  if (why === undefined) return undefined;
  return why.startsWith('expected') ? bad() : `${bad()} (${why})`;
}

/** Why `s` is not a policy namespace, or undefined: a DNS-1123 label, `*`, or one `*` at the start or end. */
export function namespacePatternProblem(s: string): string | undefined {
  const shape = starShape(s);
  if (shape === 'any') return undefined;
  const core = shape === 'edge' ? s.replace('*', '') : s;
  if (shape === 'bad' || !/^[a-z0-9-]+$/.test(core) || (shape === 'none' && !LABEL_RE.test(s))) {
    return `${quote(s)} is not a namespace; expected ${NAMESPACE_EXPECTED}, optionally with one * at the start or the end`;
  }
  return undefined;
}

/**
 * Why `s` is not a request principal (`<iss>/<sub>` of a JWT), or undefined: any text without
 * control, bidi or zero-width characters, `*`, or one `*` at the start or the end.
 */
export function requestPrincipalProblem(s: string): string | undefined {
  if (s.length > REQUEST_PRINCIPAL_MAX) return `${quote(s)} is too long for a request principal; at most ${REQUEST_PRINCIPAL_MAX} characters`;
  if (starShape(s) === 'bad') return `${quote(s)} is not a request principal; expected <issuer>/<subject>, optionally with one * at the start or the end`;
  if (INVISIBLE_RE.test(s)) return `${quote(s)} is not a request principal: control, bidi and zero-width characters are not allowed`;
  return undefined;
}

// Limits of the HTTP fields of a policy, where Istio sets none (issue 19); docs/waypoint.md lists
// them. Each check is one linear pass, made before a value reaches a matcher.
/** Longest `hosts` entry: a DNS name (253, as Gateway API's Hostname) plus `:` and a 5-digit port. */
export const POLICY_HOST_MAX = 259;
/** Longest `methods` entry: ours (the longest registered HTTP method, UPDATEREDIRECTREF, has 17). */
export const POLICY_METHOD_MAX = 64;
/** Longest `when` value: Gateway API's header value limit (4096), for every key. */
export const CONDITION_VALUE_MAX = 4096;
/** Longest `when` key: `request.headers[` + a 256-character header name (Gateway API) + `]`; claims alike. */
export const CONDITION_KEY_MAX = 512;
/** Longest request principal: ours, `<issuer>/<subject>` with each up to 2048 characters. */
export const REQUEST_PRINCIPAL_MAX = 4097;

/** C0 controls and DEL: no host, method or value of a request carries one. */
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** Why `s` is not a policy host (`hosts`, `notHosts`), or undefined: no controls or spaces, at most `POLICY_HOST_MAX`. */
export function policyHostProblem(s: string): string | undefined {
  if (s.length > POLICY_HOST_MAX) return `${quote(s)} is too long for a host; at most ${POLICY_HOST_MAX} characters (253 and a :port)`;
  if (/[\u0000-\u0020\u007f]/.test(s) || INVISIBLE_RE.test(s)) return `${quote(s)} is not a host: control, space, bidi and zero-width characters are not allowed`;
  return undefined;
}

/** Why `s` is not a policy method, or undefined: an RFC 9110 token (or `*` at an edge), at most `POLICY_METHOD_MAX`. */
export function policyMethodProblem(s: string): string | undefined {
  if (s.length > POLICY_METHOD_MAX) return `${quote(s)} is too long for a method; at most ${POLICY_METHOD_MAX} characters`;
  return /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(s) ? undefined : `${quote(s)} is not an HTTP method; expected a token such as GET`;
}

/** Why `s` is not a `when` value, or undefined: at most `CONDITION_VALUE_MAX`, no control character but HTAB. */
export function conditionValueProblem(s: string): string | undefined {
  if (s.length > CONDITION_VALUE_MAX) return `${quote(s)} is too long for a condition value; at most ${CONDITION_VALUE_MAX} characters`;
  return /[\u0000-\u0008\u000a-\u001f\u007f]/.test(s) ? `${quote(s)} is not a condition value: control characters are not allowed` : undefined;
}

/** Why `s` is not a `when` key of an acceptable size, or undefined (which keys exist is the parsers' business). */
export function conditionKeyProblem(s: string): string | undefined {
  if (s.length > CONDITION_KEY_MAX) return `${quote(s)} is too long for a condition key; at most ${CONDITION_KEY_MAX} characters`;
  return CONTROL_RE.test(s) ? `${quote(s)} is not a condition key: control characters are not allowed` : undefined;
}

/** Name and namespace of the resource whose spec is parsed; undefined when they were invalid (already reported). */
export interface PolicyMeta {
  readonly name?: string | undefined;
  readonly namespace?: string | undefined;
}

/**
 * Parses policy specs into model objects, recording problems in `p`.
 *
 * @example
 * const p = new Problems();
 * const specs = new PolicySpecParser(p, 'istio-system');
 * const policy = specs.authorizationPolicy({ name: 'deny', namespace: 'default' }, spec, 'spec');
 * if (p.size > 0) console.error(p.list);
 */
export class PolicySpecParser {
  constructor(
    readonly p: Problems,
    private readonly rootNamespace: string,
  ) {}


  private cidr(v: unknown, path: string): string | undefined {
    if (typeof v !== 'string' || parseCidr(v) === undefined) {
      this.p.add(path, `${describe(v)} is not an IP address or CIDR block; expected e.g. 10.0.0.0/8, 10.1.2.3 or fd00::/64`);
      return undefined;
    }
    return v;
  }

  /** An Istio principal (`principalProblem`). */
  private principal(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, `a principal (${PRINCIPAL_EXPECTED})`, principalProblem);
  }

  /** A namespace in a policy (`namespacePatternProblem`). */
  private namespacePattern(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a namespace', namespacePatternProblem);
  }

  /** A workload selector; `{}` and `{matchLabels: {}}` count as no selector, as in Istio. */
  private selector(spec: Record<string, unknown>, specPath: string): Record<string, string> | undefined {
    return field(this.p, specPath, spec, 'selector', (x, q) => {
      const m = mapping(this.p, q, x, SELECTOR_KEYS, 'a mapping {matchLabels: {...}}');
      if (!m) return undefined;
      return field(this.p, q, m, 'matchLabels', (y, r) => checkedLabels(this.p, r, y)) ?? {};
    });
  }

  private scope(namespace: string, selector: Record<string, string> | undefined): 'mesh' | 'namespace' | 'workload' {
    if (selector && Object.keys(selector).length > 0) return 'workload';
    return namespace === this.rootNamespace ? 'mesh' : 'namespace';
  }

  /** An AuthorizationPolicy `spec` (at `specPath`) of the resource `r`. */
  authorizationPolicy(r: PolicyMeta, spec: Record<string, unknown>, specPath: string): AuthorizationPolicy | undefined {
    const before = this.p.size;
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
    const istioAction = (spec.action as (typeof ISTIO_ACTIONS)[number] | null | undefined) ?? 'ALLOW';
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
    if (this.p.size > before || action === undefined || r.name === undefined || r.namespace === undefined) return undefined;
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
    const from = wrappedListField(this.p, path, m, 'from', 'source', (s, sq) => this.source(s, sq, policyNamespace), {
      nonEmpty: 'omit `from` to match any source',
      listExpected: 'a list of {source: {...}}',
      innerExpected: 'a mapping of principals, namespaces, ipBlocks ...',
    });
    const to = wrappedListField(this.p, path, m, 'to', 'operation', (o, oq) => this.operation(o, oq), {
      nonEmpty: 'omit `to` to match any destination',
      listExpected: 'a list of {operation: {...}}',
      innerExpected: 'a mapping of ports, notPorts ...',
    });
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

  /** A `source` or `operation`: a mapping of `keys` with at least one of them set; returns it with the keys set. */
  private someOf(v: unknown, path: string, keys: readonly string[]): { m: Record<string, unknown>; present: string[] } | undefined {
    const m = mapping(this.p, path, v, keys);
    if (!m) return undefined;
    const present = Object.keys(m).filter((k) => m[k] !== null && m[k] !== undefined);
    if (present.length === 0) {
      this.p.add(path, `must not be empty; set at least one of ${keys.join(', ')}`);
      return undefined;
    }
    return { m, present };
  }

  private source(v: unknown, path: string, policyNamespace: string | undefined): PolicySource | undefined {
    const entry = this.someOf(v, path, [...SOURCE_L4_KEYS, ...SOURCE_L7_KEYS]);
    if (!entry) return undefined;
    const { m, present } = entry;
    const before = this.p.size;
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
    this.values(m, path, 'requestPrincipals', (x, q) => string(this.p, q, x, 'a request principal', requestPrincipalProblem));
    this.values(m, path, 'notRequestPrincipals', (x, q) => string(this.p, q, x, 'a request principal', requestPrincipalProblem));
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
      this.p.add(path, `${quote(s)} is not a service account; expected "<namespace>/<name>" or "<name>"`);
      return undefined;
    }
    return ns === undefined ? undefined : `*/ns/${ns}/sa/${sa}`;
  }

  private operation(v: unknown, path: string): PolicyOperation | undefined {
    const entry = this.someOf(v, path, [...OPERATION_L4_KEYS, ...OPERATION_L7_KEYS]);
    if (!entry) return undefined;
    const { m, present } = entry;
    const before = this.p.size;
    const portList = (k: string) =>
      field(this.p, path, m, k, (x, q) =>
        list(this.p, q, x, (e, eq) => port(this.p, eq, e, true), { nonEmpty: `omit ${k} instead`, expected: 'a list of ports ("8080")' }),
      );
    const ports = portList('ports');
    const notPorts = portList('notPorts');
    // HTTP fields ztunnel cannot enforce (httpAttributesWarning) are still checked as the waypoint
    // checks them, so a policy moved between the layers meets the same rules.
    for (const k of OPERATION_L7_KEYS) {
      const check = k === 'paths' || k === 'notPaths' ? policyPathProblem : k === 'hosts' || k === 'notHosts' ? policyHostProblem : policyMethodProblem;
      this.values(m, path, k, (x, q) => string(this.p, q, x, 'a non-empty string', check));
    }
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
    const keyTooLong = typeof m.key === 'string' ? conditionKeyProblem(m.key) : undefined;
    if (keyTooLong) {
      this.p.add(keyPath(path, 'key'), keyTooLong);
      return undefined;
    }
    const key = conditionKeyField(
      this.p,
      path,
      m,
      (s) => L4_CONDITION_KEYS.has(s) || L7_CONDITION_KEYS.includes(s) || /^request\.\S+$/.test(s),
      `one of ${allowedKeys}`,
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
        case 'request.auth.principal':
          return string(this.p, q, x, 'a request principal', requestPrincipalProblem);
        default:
          return string(this.p, q, x, 'a non-empty string', conditionValueProblem);
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

  /** A PeerAuthentication `spec` (at `specPath`) of the resource `r`. */
  peerAuthentication(r: PolicyMeta, spec: Record<string, unknown>, specPath: string): PeerAuthentication | undefined {
    const before = this.p.size;
    mapping(this.p, specPath, spec, PEER_AUTH_SPEC_KEYS);
    const selector = this.selector(spec, specPath) ?? {};
    const mode = (m: unknown, q: string): MtlsMode | undefined => {
      const mm = mapping(this.p, q, m, MTLS_KEYS, 'a mapping {mode: STRICT|PERMISSIVE|DISABLE|UNSET}');
      if (!mm) return undefined;
      return (mm.mode as MtlsMode | null | undefined) ?? 'UNSET';
    };
    const topMode = field(this.p, specPath, spec, 'mtls', mode) ?? 'UNSET';
    const portLevel = field(this.p, specPath, spec, 'portLevelMtls', (v, q) => {
      const x = v as Record<string, unknown>;
      if (Object.keys(selector).length === 0) {
        this.p.add(q, 'only a policy with a selector may set portLevelMtls (as in Istio); add spec.selector.matchLabels');
      }
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
    if (this.p.size > before || r.name === undefined || r.namespace === undefined) return undefined;
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

/**
 * What an L4 policy (ztunnel's) does with HTTP attributes it cannot see, in the words operators
 * read in a status or a log; undefined when the policy uses none. Istio writes the same as a
 * `ZtunnelAccepted` condition with reason `UnsupportedValue`.
 */
export function httpAttributesWarning(p: AuthorizationPolicy): string | undefined {
  const http = p.rules.some((r) => r.from.some((s) => s.hasL7Fields) || r.to.some((o) => o.hasL7Fields) || r.when.some((w) => !L4_CONDITION_KEYS.has(w.key)));
  if (!http) return undefined;
  return p.action === 'ALLOW'
    ? 'uses HTTP attributes: its rules that use them match nothing at L4 (stricter than written); use a waypoint to enforce HTTP rules'
    : 'uses HTTP attributes: ztunnel enforces its rules without them, denying more than written; use a waypoint to enforce HTTP rules';
}
