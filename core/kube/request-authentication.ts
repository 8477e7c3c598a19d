/**
 * The `spec` of Istio's RequestAuthentication → `RequestAuthentication` (core/model/types.ts), and
 * the JWKS check the waypoint applies to the key sets it fetches (`checkJwks`), so an inline JWKS
 * and a fetched one are judged by the same rules.
 *
 * Istio's rules (pilot/pkg/config/validation `ValidateRequestAuthentication`, `validateJwtRule`):
 * `selector` and `targetRefs` exclude each other; audiences, header names and parameter names are
 * non-empty; `jwksUri` is an http(s) URL; an inline `jwks` parses as a JWK set; `timeout` is a
 * duration. What the mesh adds, each with a documented limit (docs/waypoint.md, "JWT"): an
 * `issuer` is required, and so is `jwks` or `jwksUri` (no OpenID discovery); keys are public
 * signature keys of a type the waypoint verifies (RSA, EC P-256/384/521, OKP Ed25519/Ed448), and
 * symmetric (`oct`) or private keys are refused.
 *
 * Callers pass specs whose structure the upstream schema has judged (`schema.ts`); types are not
 * checked again here.
 */
import { createPublicKey } from 'node:crypto';
import { Problems, describe, field, keyPath, list, listField, mapping, quote, string } from '../validation/check.js';
import { checkedLabels } from './names.js';
import { policyTargetRef } from './waypoint-policy.js';
import { headerNameProblem, headerValueProblem, parseDurationMs } from './routes/shared.js';
import type { JwtHeaderLocation, JwtRule, PolicyTargetRef, RequestAuthentication } from '../model/types.js';

const SPEC_KEYS = ['selector', 'targetRefs', 'jwtRules'];
const RULE_KEYS = [
  'issuer', 'audiences', 'jwks', 'jwksUri', 'fromHeaders', 'fromParams', 'forwardOriginalToken',
  'outputPayloadToHeader', 'outputClaimToHeaders', 'spaceDelimitedClaims', 'timeout', 'jwks_uri',
];
/** Upstream fields the mesh does not implement: refused with "is not supported by the mesh". */
const UNSUPPORTED_RULE_KEYS = ['fromCookies'];
/** Headers a rule may not write (framing, routing and hop-by-hop headers). */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'upgrade', 'proxy-connection', 'trailer']);

/** Longest JWKS, inline or fetched: ours (Istio and Envoy set none); real sets are a few KiB. */
export const JWKS_MAX_BYTES = 64 * 1024;
/** Most keys in one JWKS: ours (verification tries each key without a `kid` match). */
export const JWKS_MAX_KEYS = 100;
/** Longest issuer, audience, claim name, parameter name and `jwksUri`: ours (Istio sets none). */
export const JWT_FIELD_MAX = 2048;
/** Longest list of audiences, locations or claim headers in one rule: ours. */
export const JWT_LIST_MAX = 64;
/** Longest JWKS fetch timeout a rule may ask for: a request may wait this long for keys. */
export const JWKS_TIMEOUT_MAX_MS = 30_000;

/** Signature algorithms the waypoint verifies (Envoy's list without the HMAC ones). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
const EC_CURVES = ['P-256', 'P-384', 'P-521'];
const OKP_CURVES = ['Ed25519', 'Ed448'];
/** Istio's default token locations, used when a rule names none. */
export const DEFAULT_JWT_HEADER: JwtHeaderLocation = Object.freeze({ name: 'authorization', prefix: 'Bearer ' });
export const DEFAULT_JWT_PARAM = 'access_token';

/** C0 controls and DEL (no issuer, claim or parameter name has them; they disguise log lines). */
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** One key of a JWK set as `checkJwks` accepts it: a public JWK (plain JSON). */
export type PublicJwk = Readonly<Record<string, unknown>>;

/** What `checkJwks` makes of a JWK set: the usable keys, and why each other key was refused. */
export interface CheckedJwks {
  readonly keys: readonly PublicJwk[];
  /** `key N: why`, one per refused key. */
  readonly refused: readonly string[];
}

/** Why `k` is not a public signature key the waypoint verifies with, or undefined. */
function keyProblem(k: unknown): string | undefined {
  if (k === null || typeof k !== 'object' || Array.isArray(k)) return `expected a JWK (a JSON object), got ${describe(k)}`;
  const jwk = k as Record<string, unknown>;
  const kty = jwk.kty;
  if (kty === 'oct') return 'kty "oct" (a shared secret, HS256 ...) is not supported; publish an RSA, EC or OKP public key';
  if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') return `kty ${describe(kty)} is not supported; expected RSA, EC or OKP`;
  if (kty === 'EC' && !EC_CURVES.includes(jwk.crv as string)) return `EC curve ${describe(jwk.crv)} is not supported; expected ${EC_CURVES.join(', ')}`;
  if (kty === 'OKP' && !OKP_CURVES.includes(jwk.crv as string)) return `OKP curve ${describe(jwk.crv)} is not supported; expected ${OKP_CURVES.join(' or ')}`;
  if (jwk.d !== undefined) return 'holds a private key ("d"); a JWKS must carry public keys only';
  if (jwk.alg !== undefined && !(JWT_ALGORITHMS as readonly unknown[]).includes(jwk.alg)) {
    return `alg ${describe(jwk.alg)} is not supported; expected one of ${JWT_ALGORITHMS.join(', ')}`;
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use ${describe(jwk.use)} is not a signature key; expected "sig" or no use`;
  try {
    createPublicKey({ key: jwk as never, format: 'jwk' });
  } catch (e) {
    return `is not a valid ${kty} key: ${(e as Error).message}`;
  }
  return undefined;
}

/**
 * Reads a JWK set (RFC 7517 §5) from its JSON text: undefined keys and a reason when the text is
 * no JWK set at all (not JSON, over `JWKS_MAX_BYTES`, no `keys` list, over `JWKS_MAX_KEYS`);
 * otherwise the usable keys and one line per refused key (the caller decides whether a refused
 * key refuses the set: the converter does, the waypoint's fetcher keeps the usable ones, as Envoy).
 *
 * @example
 * checkJwks('{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}');
 * // { keys: [], refused: ['key 0: kty "oct" (a shared secret, HS256 ...) is not supported; ...'] }
 */
export function checkJwks(text: string): CheckedJwks | string {
  if (Buffer.byteLength(text) > JWKS_MAX_BYTES) return `is ${Buffer.byteLength(text)} bytes; a JWKS may have at most ${JWKS_MAX_BYTES} bytes`;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `is not JSON: ${(e as Error).message}`;
  }
  if (v === null || typeof v !== 'object' || !Array.isArray((v as { keys?: unknown }).keys)) {
    return `is not a JWK set; expected a JSON object {"keys": [...]}, got ${describe(v)}`;
  }
  const keys = (v as { keys: unknown[] }).keys;
  if (keys.length === 0) return 'has no keys; expected at least one public key';
  if (keys.length > JWKS_MAX_KEYS) return `has ${keys.length} keys; at most ${JWKS_MAX_KEYS}`;
  const ok: PublicJwk[] = [];
  const refused: string[] = [];
  keys.forEach((k, i) => {
    const why = keyProblem(k);
    if (why === undefined) ok.push(Object.freeze({ ...(k as Record<string, unknown>) }));
    else refused.push(`key ${i}${typeof (k as { kid?: unknown })?.kid === 'string' ? ` (kid ${quote((k as { kid: string }).kid)})` : ''}: ${why}`);
  });
  return { keys: ok, refused };
}

/** Why `s` is not a JWKS URL (Istio's `ParseJwksURI`: http or https with a host), or undefined. */
export function jwksUriProblem(s: string): string | undefined {
  if (s.length > JWT_FIELD_MAX) return `${quote(s)} is too long for a URL; at most ${JWT_FIELD_MAX} characters`;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return `${quote(s)} is not a URL; expected http(s)://host[:port]/path`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${quote(s)}: scheme ${quote(u.protocol.slice(0, -1))} is not supported; expected http or https`;
  if (u.hostname === '') return `${quote(s)} has no host`;
  if (u.username !== '' || u.password !== '') return `${quote(s)}: credentials in a URL are not supported`;
  return undefined;
}

/** Why `s` is not a JWT text field (issuer, audience, claim, parameter name), or undefined. */
function textProblem(what: string): (s: string) => string | undefined {
  return (s) => {
    if (s.length > JWT_FIELD_MAX) return `${quote(s)} is too long for ${what}; at most ${JWT_FIELD_MAX} characters`;
    if (CONTROL_RE.test(s)) return `${quote(s)} is not ${what}: control characters are not allowed`;
    return undefined;
  };
}

/** A header the waypoint writes or reads a token from: a token name, not a pseudo header. */
function headerName(s: string): string | undefined {
  return headerNameProblem(s) ?? (RESERVED_HEADERS.has(s.toLowerCase()) ? `${quote(s)} is a header the waypoint manages; choose another name` : undefined);
}

/**
 * Converts RequestAuthentication specs, recording problems in `p`.
 *
 * @example
 * const p = new Problems();
 * const ra = new RequestAuthenticationConverter(p, 'istio-system').requestAuthentication('jwt', 'default', spec, 'spec');
 */
export class RequestAuthenticationConverter {
  constructor(
    readonly p: Problems,
    private readonly rootNamespace: string,
  ) {}

  requestAuthentication(name: string, namespace: string, spec: Record<string, unknown>, specPath: string): RequestAuthentication | undefined {
    const p = this.p;
    const before = p.size;
    if (Object.hasOwn(spec, 'targetRef')) p.add(keyPath(specPath, 'targetRef'), 'is deprecated in Istio; list every target under targetRefs');
    const rest = Object.fromEntries(Object.entries(spec).filter(([k]) => k !== 'targetRef'));
    mapping(p, specPath, rest, SPEC_KEYS);
    const hasSelector = spec.selector !== undefined && spec.selector !== null;
    const hasTargets = spec.targetRefs !== undefined && spec.targetRefs !== null;
    if (hasSelector && hasTargets) p.add(specPath, 'selector and targetRefs cannot both be set (as in Istio): a policy applies to workloads or to waypoints');
    const selector =
      field(p, specPath, spec, 'selector', (x, q) => {
        const m = mapping(p, q, x, ['matchLabels'], 'a mapping {matchLabels: {...}}');
        return m ? (field(p, q, m, 'matchLabels', (y, r) => checkedLabels(p, r, y)) ?? {}) : undefined;
      }) ?? {};
    const targetRefs: PolicyTargetRef[] =
      listField(p, specPath, spec, 'targetRefs', (e, eq) => policyTargetRef(p, e, eq, namespace, this.rootNamespace), {
        nonEmpty: 'name the waypoint Gateway or the Service, or omit targetRefs',
        listExpected: 'a list of {kind, group, name}',
      }) ?? [];
    const jwtRules = listField(p, specPath, spec, 'jwtRules', (r, rq) => this.rule(r, rq)) ?? [];
    if (p.size > before) return undefined;
    return { name, namespace, targetRefs, selector, jwtRules };
  }

  private strings(m: Record<string, unknown>, path: string, k: string, check: (s: string) => string | undefined, what: string): string[] {
    return (
      field(this.p, path, m, k, (x, q) => {
        if (Array.isArray(x) && x.length > JWT_LIST_MAX) {
          this.p.add(q, `has ${x.length} entries; at most ${JWT_LIST_MAX}`);
          return undefined;
        }
        return list(this.p, q, x, (e, eq) => string(this.p, eq, e, what, check));
      }) ?? []
    );
  }

  private rule(v: unknown, path: string): JwtRule | undefined {
    const p = this.p;
    const m = mapping(p, path, v, RULE_KEYS, 'a mapping {issuer, jwksUri, ...}', UNSUPPORTED_RULE_KEYS);
    if (!m) return undefined;
    const before = p.size;
    const issuer = field(p, path, m, 'issuer', (x, q) => string(p, q, x, 'an issuer', textProblem('an issuer')), {
      required: true,
      expected: 'the iss claim of the tokens this rule accepts',
    });
    const audiences = this.strings(m, path, 'audiences', textProblem('an audience'), 'a non-empty audience');
    const jwks = field(p, path, m, 'jwks', (x, q) => {
      const s = string(p, q, x, 'a JWKS (JSON text)');
      if (s === undefined) return undefined;
      const checked = checkJwks(s);
      if (typeof checked === 'string') return (p.add(q, checked), undefined);
      for (const why of checked.refused) p.add(q, why);
      return checked.refused.length > 0 ? undefined : s;
    });
    // `jwks_uri` is the same field under its protobuf name (the CRD lists both).
    const uriKey = Object.hasOwn(m, 'jwksUri') || !Object.hasOwn(m, 'jwks_uri') ? 'jwksUri' : 'jwks_uri';
    const jwksUri = field(p, path, m, uriKey, (x, q) => string(p, q, x, 'a URL', jwksUriProblem));
    if (jwks === undefined && jwksUri === undefined && !['jwks', 'jwksUri', 'jwks_uri'].some((k) => Object.hasOwn(m, k) && m[k] !== null)) {
      p.add(path, 'set jwks or jwksUri: the mesh does not discover keys from the issuer (OpenID discovery)');
    }
    const fromHeaders =
      field(p, path, m, 'fromHeaders', (x, q) => {
        if (Array.isArray(x) && x.length > JWT_LIST_MAX) return (p.add(q, `has ${x.length} entries; at most ${JWT_LIST_MAX}`), undefined);
        return list(p, q, x, (e, eq) => {
          const h = mapping(p, eq, e, ['name', 'prefix'], 'a mapping {name, prefix}');
          if (!h) return undefined;
          const name = field(p, eq, h, 'name', (y, r) => string(p, r, y, 'a header name', headerName), { required: true });
          const prefix = field(p, eq, h, 'prefix', (y, r) => {
            if (typeof y !== 'string') return (p.add(r, `expected a string, got ${describe(y)}`), undefined);
            const why = y === '' ? undefined : headerValueProblem(y);
            return why ? (p.add(r, why), undefined) : y;
          }) ?? '';
          return name === undefined ? undefined : { name: name.toLowerCase(), prefix };
        });
      }) ?? [];
    const fromParams = this.strings(m, path, 'fromParams', textProblem('a query parameter name'), 'a query parameter name');
    const forwardOriginalToken = m.forwardOriginalToken === true;
    const outputPayloadToHeader = field(p, path, m, 'outputPayloadToHeader', (x, q) => string(p, q, x, 'a header name', headerName));
    const outputClaimToHeaders =
      field(p, path, m, 'outputClaimToHeaders', (x, q) => {
        if (Array.isArray(x) && x.length > JWT_LIST_MAX) return (p.add(q, `has ${x.length} entries; at most ${JWT_LIST_MAX}`), undefined);
        return list(p, q, x, (e, eq) => {
          const c = mapping(p, eq, e, ['header', 'claim'], 'a mapping {header, claim}');
          if (!c) return undefined;
          const header = field(p, eq, c, 'header', (y, r) => string(p, r, y, 'a header name', headerName), { required: true });
          const claim = field(p, eq, c, 'claim', (y, r) => string(p, r, y, 'a claim name', textProblem('a claim name')), { required: true });
          return header === undefined || claim === undefined ? undefined : { header: header.toLowerCase(), claim };
        });
      }) ?? [];
    const spaceDelimitedClaims = this.strings(m, path, 'spaceDelimitedClaims', textProblem('a claim name'), 'a claim name');
    const timeoutMs = field(p, path, m, 'timeout', (x, q) => {
      const ms = typeof x === 'string' ? parseDurationMs(x) : undefined;
      if (ms === undefined || ms <= 0) return (p.add(q, `${describe(x)} is not a duration; expected e.g. 5s or 500ms`), undefined);
      if (ms > JWKS_TIMEOUT_MAX_MS) return (p.add(q, `${quote(x as string)} is too long; a request waits at most ${JWKS_TIMEOUT_MAX_MS / 1000}s for keys`), undefined);
      return ms;
    });
    if (p.size > before || issuer === undefined) return undefined;
    return {
      issuer,
      audiences,
      // Istio uses the inline set when both are given.
      ...(jwks !== undefined ? { jwks } : jwksUri !== undefined ? { jwksUri } : {}),
      fromHeaders,
      fromParams,
      forwardOriginalToken,
      ...(outputPayloadToHeader !== undefined ? { outputPayloadToHeader: outputPayloadToHeader.toLowerCase() } : {}),
      outputClaimToHeaders,
      spaceDelimitedClaims,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    };
  }
}
