/**
 * JWT validation for the waypoint (Istio's RequestAuthentication, which Envoy's `jwt_authn` filter
 * enforces): where tokens are found, the key sets they are verified with, and what a verified
 * token tells AuthorizationPolicy (`RequestAuth`). Signatures and claims are checked by `jose`;
 * nothing here reads a signature itself.
 *
 * Semantics (Istio, Envoy `requires_any` with `allow_missing`):
 * - a request without a token in any location of the rules that apply passes, without identity;
 * - every token found must verify, or the request gets 401 (the body says why, as Envoy's does);
 * - a token is verified by the rule whose `issuer` is its `iss` and whose locations hold it; a
 *   token of an issuer no rule names is refused (`Jwt issuer is not configured`).
 *
 * Keys: an inline `jwks` is read once per rule; a `jwksUri` is fetched by the waypoint
 * (`JwksFetcher`) when it first appears in the configuration, again every refresh interval, and
 * retried sooner after a failure. A key set is used for two refresh intervals after it was fetched;
 * after that (the endpoint stayed unreachable), and before the first fetch succeeds, tokens of the
 * issuer are refused with 401: a missing key set never lets a token through.
 */
import http from 'node:http';
import https from 'node:https';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { MeshError } from '../core/errors.js';
import type { Logger } from '../core/telemetry/log.js';
import type { RequestAuth } from '../core/authz/evaluate.js';
import type { JwtRule, RequestAuthentication } from '../core/model/types.js';
import { DEFAULT_JWT_HEADER, DEFAULT_JWT_PARAM, JWKS_MAX_BYTES, JWT_ALGORITHMS, checkJwks, type CheckedJwks } from '../core/kube/request-authentication.js';

/** Longest token the waypoint reads: ours (Envoy has only its 60 KiB header limit, which Node applies too). */
export const JWT_MAX_BYTES = 16 * 1024;
/** Clock skew allowed on `exp` and `nbf`: Envoy's default `clock_skew_seconds`. */
export const JWT_CLOCK_SKEW_SECONDS = 60;
/** The longest pause before a failed JWKS fetch is tried again. */
export const JWKS_RETRY_MAX_MS = 5000;
/** Claims Istio matches as space-separated lists whatever the rule says (`scope`, `permission`). */
const DEFAULT_SPACE_DELIMITED = ['scope', 'permission'];

/**
 * A token refused: 401 with Envoy's body text (`reason`), the issuer when known.
 * Code `ERR_WAYPOINT_JWT`.
 */
export class JwtRejectedError extends MeshError {
  constructor(
    readonly reason: string,
    readonly issuer?: string,
  ) {
    super('ERR_WAYPOINT_JWT', `jwt refused: ${reason.toLowerCase()}${issuer === undefined ? '' : ` (issuer ${JSON.stringify(issuer)})`}; check the token and the RequestAuthentication's jwtRules`);
  }
}

// ---- JWKS -------------------------------------------------------------------------------------

/** The state of one `jwksUri`, as `/config_dump` shows it. */
export interface JwksStatus {
  readonly uri: string;
  /** `ok`: keys usable; `pending`: first fetch running; `failed`: no usable keys (tokens get 401). */
  readonly state: 'ok' | 'pending' | 'failed';
  readonly keys: number;
  /** Keys of the last good set that were refused, and why. */
  readonly refusedKeys: readonly string[];
  /** The last fetch's error, when it failed. */
  readonly error?: string;
  /** ISO time of the last successful fetch. */
  readonly fetchedAt?: string;
}

interface UriEntry {
  readonly uri: string;
  timeoutMs: number;
  keys?: { readonly getKey: JWTVerifyGetKey; readonly count: number; readonly refused: readonly string[]; readonly at: number };
  error?: string;
  inflight?: Promise<void>;
  timer?: NodeJS.Timeout;
  readonly abort: AbortController;
}

/** Inputs of a `JwksFetcher`. */
export interface JwksFetcherInputs {
  readonly refreshMs: number;
  readonly fetchTimeoutMs: number;
  readonly logger: Logger;
  /** The clock (ms), injectable for tests of expiry; `Date.now` by default. */
  readonly now?: () => number;
}

/** A JWKS document fetched over http(s): at most `JWKS_MAX_BYTES`, status 200, within `timeoutMs`. */
function fetchText(uri: string, timeoutMs: number, outer: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const signal = AbortSignal.any([outer, AbortSignal.timeout(timeoutMs)]);
    const get = uri.startsWith('https:') ? https.get : http.get;
    const req = get(uri, { signal, headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`status ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > JWKS_MAX_BYTES) {
          req.destroy(new Error(`the document is larger than ${JWKS_MAX_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('error', (e: Error) => reject(signal.aborted && e.name === 'AbortError' ? new Error(outer.aborted ? 'the waypoint is stopping' : `no answer within ${timeoutMs} ms`) : e));
  });
}

/**
 * The key sets of every `jwksUri` in the configuration: fetched, cached, refreshed (module comment).
 *
 * @example
 * const jwks = new JwksFetcher({ refreshMs: 1_200_000, fetchTimeoutMs: 5000, logger });
 * jwks.sync(config.requestAuthentications ?? []);
 * const getKey = await jwks.keysFor('https://issuer.example/jwks.json'); // throws JwtRejectedError without keys
 */
export class JwksFetcher {
  readonly #in: JwksFetcherInputs;
  readonly #entries = new Map<string, UriEntry>();
  #closed = false;

  constructor(inputs: JwksFetcherInputs) {
    this.#in = inputs;
  }

  #now(): number {
    return (this.#in.now ?? Date.now)();
  }

  /** Starts fetching the URIs of `policies` not seen yet; forgets the ones no policy names any more. */
  sync(policies: readonly RequestAuthentication[]): void {
    if (this.#closed) return;
    const wanted = new Map<string, number>();
    for (const ra of policies) {
      for (const r of ra.jwtRules) {
        if (r.jwksUri === undefined) continue;
        const t = r.timeoutMs ?? this.#in.fetchTimeoutMs;
        wanted.set(r.jwksUri, Math.max(wanted.get(r.jwksUri) ?? 0, t));
      }
    }
    for (const [uri, e] of this.#entries) {
      if (wanted.has(uri)) continue;
      e.abort.abort();
      clearTimeout(e.timer);
      this.#entries.delete(uri);
    }
    for (const [uri, timeoutMs] of wanted) {
      const e = this.#entries.get(uri);
      if (e) {
        e.timeoutMs = timeoutMs;
        continue;
      }
      const entry: UriEntry = { uri, timeoutMs, abort: new AbortController() };
      this.#entries.set(uri, entry);
      void this.#fetch(entry);
    }
  }

  #fetch(e: UriEntry): Promise<void> {
    clearTimeout(e.timer);
    e.inflight ??= (async () => {
      let ok = false;
      try {
        const checked: CheckedJwks | string = checkJwks(await fetchText(e.uri, e.timeoutMs, e.abort.signal));
        const why =
          typeof checked === 'string' ? `the JWKS ${checked}` : checked.keys.length === 0 ? `the JWKS has no usable key: ${checked.refused.join('; ')}` : undefined;
        if (why !== undefined || typeof checked === 'string') {
          e.error = why;
        } else {
          e.keys = { getKey: createLocalJWKSet({ keys: checked.keys as never }), count: checked.keys.length, refused: checked.refused, at: this.#now() };
          delete e.error;
          ok = true;
          if (checked.refused.length > 0) this.#in.logger.warn({ uri: e.uri, refused: checked.refused }, 'jwks fetched; some keys are not usable and are ignored');
          else this.#in.logger.debug({ uri: e.uri, keys: checked.keys.length }, 'jwks fetched');
        }
      } catch (err) {
        e.error = (err as Error).message;
      } finally {
        if (!ok) this.#in.logger.warn({ uri: e.uri, error: e.error }, 'jwks fetch failed; tokens of its issuer are refused while no fetched keys are usable');
        delete e.inflight;
        if (!this.#closed && this.#entries.get(e.uri) === e) {
          const next = ok ? this.#in.refreshMs : Math.min(this.#in.refreshMs, JWKS_RETRY_MAX_MS);
          e.timer = setTimeout(() => void this.#fetch(e), next);
          e.timer.unref();
        }
      }
    })();
    return e.inflight;
  }

  /** Keys fetched at most two refresh intervals ago (one refresh may fail without effect). */
  #usable(e: UriEntry): UriEntry['keys'] {
    return e.keys && this.#now() - e.keys.at <= 2 * this.#in.refreshMs ? e.keys : undefined;
  }

  /**
   * The key set of `uri`, waiting for a fetch in flight when there is none yet (bounded by the
   * fetch timeout). Throws JwtRejectedError when no usable keys exist: a token is never accepted
   * without them.
   */
  async keysFor(uri: string, issuer: string): Promise<JWTVerifyGetKey> {
    const e = this.#entries.get(uri);
    if (!e) throw new JwtRejectedError('Jwks remote fetch is failed', issuer);
    let keys = this.#usable(e);
    if (!keys && e.inflight) {
      await e.inflight;
      keys = this.#usable(e);
    }
    if (!keys) throw new JwtRejectedError('Jwks remote fetch is failed', issuer);
    return keys.getKey;
  }

  dump(): JwksStatus[] {
    return [...this.#entries.values()].map((e) => {
      const keys = this.#usable(e);
      return {
        uri: e.uri,
        state: keys ? 'ok' : e.keys === undefined && e.error === undefined ? 'pending' : 'failed',
        keys: keys?.count ?? 0,
        refusedKeys: e.keys?.refused ?? [],
        ...(e.error !== undefined ? { error: e.error } : {}),
        ...(e.keys ? { fetchedAt: new Date(e.keys.at).toISOString() } : {}),
      };
    });
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) {
      e.abort.abort();
      clearTimeout(e.timer);
    }
    this.#entries.clear();
  }
}

// Inline key sets, read once per rule object (rules are frozen per config snapshot).
const inlineKeys = new WeakMap<JwtRule, JWTVerifyGetKey | string>();

function inlineKeySet(rule: JwtRule): JWTVerifyGetKey {
  let k = inlineKeys.get(rule);
  if (k === undefined) {
    const checked = checkJwks(rule.jwks as string);
    // The converters refuse a set with a bad key; one from elsewhere keeps its usable keys.
    k = typeof checked === 'string' || checked.keys.length === 0 ? 'the inline JWKS has no usable key' : createLocalJWKSet({ keys: checked.keys as never });
    inlineKeys.set(rule, k);
  }
  if (typeof k === 'string') throw new JwtRejectedError('Jwks is invalid', rule.issuer);
  return k;
}

// ---- tokens -----------------------------------------------------------------------------------

/** Where a token was found: a header (lowercase name, with the prefix it had) or a query parameter. */
type Location = { readonly header: string; readonly prefix: string } | { readonly param: string };

const locationKey = (l: Location) => ('header' in l ? `h:${l.header}:${l.prefix}` : `p:${l.param}`);

function locationsOf(rule: JwtRule): Location[] {
  if (rule.fromHeaders.length === 0 && rule.fromParams.length === 0) {
    return [{ header: DEFAULT_JWT_HEADER.name, prefix: DEFAULT_JWT_HEADER.prefix }, { param: DEFAULT_JWT_PARAM }];
  }
  return [...rule.fromHeaders.map((h) => ({ header: h.name, prefix: h.prefix })), ...rule.fromParams.map((param) => ({ param }))];
}

/** A request as the JWT check sees it; `headers` is edited in place (token removal, outputs). */
export interface JwtRequest {
  readonly headers: Record<string, string | string[] | undefined>;
  /** Path with the query. */
  readonly path: string;
}

interface Found {
  readonly location: Location;
  readonly token: string;
}

/** The tokens at the locations of `rules`, each location once. */
function findTokens(rules: readonly JwtRule[], req: JwtRequest): Found[] {
  const seen = new Set<string>();
  const out: Found[] = [];
  let query: URLSearchParams | undefined;
  for (const rule of rules) {
    for (const loc of locationsOf(rule)) {
      const key = locationKey(loc);
      if (seen.has(key)) continue;
      seen.add(key);
      let token: string | undefined;
      if ('header' in loc) {
        const raw = req.headers[loc.header];
        const v = Array.isArray(raw) ? raw[0] : raw;
        // The prefix is an auth scheme (`Bearer `), which RFC 9110 §11.1 makes case-insensitive.
        if (v !== undefined && v.length >= loc.prefix.length && v.slice(0, loc.prefix.length).toLowerCase() === loc.prefix.toLowerCase()) {
          token = v.slice(loc.prefix.length).trim();
        }
      } else {
        const q = req.path.indexOf('?');
        if (q !== -1) {
          query ??= new URLSearchParams(req.path.slice(q + 1));
          token = query.get(loc.param) ?? undefined;
        }
      }
      if (token) out.push({ location: loc, token });
    }
  }
  return out;
}

/** Envoy's texts for a token that does not verify. */
function reasonOf(err: unknown): string {
  if (err instanceof JwtRejectedError) return err.reason;
  if (err instanceof joseErrors.JWTExpired) return 'Jwt is expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return 'Jwt not yet valid';
    if (err.claim === 'aud') return 'Audiences in Jwt are not allowed';
    if (err.claim === 'iss') return 'Jwt issuer is not configured';
    return 'Jwt verification fails';
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) return 'Jwt header [alg] is not supported';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "Jwks doesn't have key to match kid or alg from Jwt";
  return 'Jwt verification fails';
}

/** The claims as `request.auth.claims[...]` matches them: space-delimited claims split into lists. */
function normalizedClaims(payload: JWTPayload, rule: JwtRule): Record<string, unknown> {
  const out: Record<string, unknown> = { ...payload };
  for (const c of [...DEFAULT_SPACE_DELIMITED, ...rule.spaceDelimitedClaims]) {
    const v = out[c];
    if (typeof v === 'string') out[c] = v.split(' ').filter((x) => x !== '');
  }
  return out;
}

/** A claim at a `.`-separated path, as a header value: strings, numbers and booleans only (as Envoy). */
function claimHeaderValue(payload: JWTPayload, path: string): string | undefined {
  let v: unknown = payload;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  const s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
  // Only what can be sent as a field value (no CR, LF, NUL or other controls but HTAB, nothing past U+00FF).
  return s !== undefined && s.length <= 4096 && /^[\t\u0020-\u007e\u0080-\u00ff]*$/.test(s) ? s : undefined;
}

/**
 * Checks the JWTs of a request against `policies` (the RequestAuthentications that apply to it).
 * Resolves to the identity of the first verified token, or undefined when the request carries
 * none; rejects with JwtRejectedError when a token does not verify. On success the request's
 * headers are edited as the rules say (the token header removed unless `forwardOriginalToken`,
 * `outputPayloadToHeader`, `outputClaimToHeaders`); the output headers of every rule are removed
 * from what the client sent first, so a client cannot forge them.
 *
 * @example
 * const auth = await authenticate(policies, { headers, path: '/api?x=1' }, jwks);
 * authorizeRequest(policies, { ..., http: { ..., auth } });
 */
export async function authenticate(policies: readonly RequestAuthentication[], req: JwtRequest, jwks: JwksFetcher): Promise<RequestAuth | undefined> {
  const rules = policies.flatMap((p) => p.jwtRules);
  if (rules.length === 0) return undefined;
  for (const r of rules) {
    if (r.outputPayloadToHeader !== undefined) delete req.headers[r.outputPayloadToHeader];
    for (const c of r.outputClaimToHeaders) delete req.headers[c.header];
  }
  const found = findTokens(rules, req);
  let first: RequestAuth | undefined;
  const edits: Array<() => void> = [];
  for (const { location, token } of found) {
    if (Buffer.byteLength(token) > JWT_MAX_BYTES) throw new JwtRejectedError(`Jwt is too large (over ${JWT_MAX_BYTES} bytes)`);
    let unverified: JWTPayload;
    try {
      decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw new JwtRejectedError('Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections');
    }
    const iss = unverified.iss;
    const key = locationKey(location);
    const rule = rules.find((r) => r.issuer === iss && locationsOf(r).some((l) => locationKey(l) === key));
    if (!rule) throw new JwtRejectedError('Jwt issuer is not configured', typeof iss === 'string' ? iss : undefined);
    let payload: JWTPayload;
    try {
      const getKey = rule.jwks !== undefined ? inlineKeySet(rule) : await jwks.keysFor(rule.jwksUri as string, rule.issuer);
      ({ payload } = await jwtVerify(token, getKey, {
        issuer: rule.issuer,
        ...(rule.audiences.length > 0 ? { audience: [...rule.audiences] } : {}),
        algorithms: [...JWT_ALGORITHMS],
        clockTolerance: JWT_CLOCK_SKEW_SECONDS,
      }));
    } catch (err) {
      throw new JwtRejectedError(reasonOf(err), rule.issuer);
    }
    const aud = payload.aud;
    first ??= {
      principal: `${payload.iss}/${typeof payload.sub === 'string' ? payload.sub : ''}`,
      audiences: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [],
      ...(typeof payload.azp === 'string' ? { presenter: payload.azp } : {}),
      claims: normalizedClaims(payload, rule),
    };
    edits.push(() => {
      if (!rule.forwardOriginalToken && 'header' in location) delete req.headers[location.header];
      if (rule.outputPayloadToHeader !== undefined) req.headers[rule.outputPayloadToHeader] = token.split('.')[1] as string;
      for (const c of rule.outputClaimToHeaders) {
        const v = claimHeaderValue(payload, c.claim);
        if (v !== undefined) req.headers[c.header] = v;
      }
    });
  }
  // Headers change only once every token verified: a refused request is answered, not forwarded.
  for (const e of edits) e();
  return first;
}
