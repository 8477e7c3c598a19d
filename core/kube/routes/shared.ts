/**
 * What the routing specs share (`http-route.ts`, `virtual-service.ts`, `destination-rule.ts`):
 * durations, the retry policy and its conditions, the match-all match, header names and hosts,
 * and the value checks every converter runs over its own `Problems`.
 *
 * Gateway API `HTTPRoute`, Istio `VirtualService` and `DestinationRule` specs → the frozen internal
 * route model (`core/model/routes.ts`). These files are the only place that reads their wire
 * shapes; the file source and the control plane both call them. Validation collects every problem
 * with its path, like `core/node-config/file.ts`: a regex that is not RE2 (`core/model/regex.ts`),
 * a weight that is not an integer, a duration Envoy could not express are all reported here, never
 * discovered per request.
 *
 * Callers pass specs whose structure the upstream schema has judged (`core/kube/schema.ts`:
 * `parseObject`, and `specProblems` for the standalone file and the discovery wire): types,
 * required fields and enums are not checked again here; the values (durations, regexes, names,
 * hosts, port ranges Istio's schema lacks), what waypoints support and unknown keys are.
 */
import { describe, quote, string, type Problems } from '../../validation/check.js';
import { regexProblem } from '../../model/regex.js';
import { isFieldValue, type PathMatch, type RequestMatch, type RetryPolicy, type ValueMatch } from '../../model/routes.js';

/** Keys of a header modifier, in HTTPRoute filters and VirtualService `headers` alike. */
export const MODIFIER_KEYS = ['set', 'add', 'remove'];
/** A DestinationRule subset name, as a subset defines it and a VirtualService destination names it. */
export const SUBSET_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
/** The redirect status codes both specs accept. */
export const REDIRECT_CODES = [301, 302, 303, 307, 308] as const;
/** Envoy's retry conditions that a waypoint honours (docs/waypoint.md). */
export const RETRY_ON = ['5xx', 'gateway-error', 'connect-failure', 'reset', 'reset-before-request', 'retriable-status-codes', 'refused-stream'] as const;
/** gRPC status names Istio accepts for `fault.abort.grpcStatus`, with their codes. */
export const GRPC_STATUS: Readonly<Record<string, number>> = Object.freeze({
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
});

/** Retries of a route that sets none: Istio's default (2 retries on these conditions). */
export const ISTIO_DEFAULT_RETRY: RetryPolicy = Object.freeze({
  attempts: 2,
  // Istio's outbound default plus `reset-before-request`, which Istio's inbound default has
  // (istio/istio#52055): a request the backend provably did not get, or an idempotent one lost
  // to a keep-alive stream the backend was closing, is sent again; nothing else is.
  retryOn: Object.freeze(['connect-failure', 'refused-stream', 'reset-before-request', 'retriable-status-codes']),
  codes: Object.freeze([503]),
  backoffMs: 25,
});
/** Envoy's base retry back-off interval; retries wait a jittered multiple of it. */
export const DEFAULT_RETRY_BACKOFF_MS = 25;

// RFC 9110 §5.6.2 token for header names; Gateway API's own pattern is the same character set.
export const HEADER_NAME_RE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
/** A host name, optionally starting with `*.` (lowercase it first). */
export const HOST_RE = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

// Limits of the Istio fields that have none upstream, taken from Gateway API's equivalents so both
// kinds accept the same sizes (docs/kubernetes.md lists them). Each check is one linear pass.
/** Longest header name: Gateway API's `HTTPHeaderName` (maxLength 256). */
export const HEADER_NAME_MAX = 256;
/** Longest header value: Gateway API's `HTTPHeader.value` (maxLength 4096). */
export const HEADER_VALUE_MAX = 4096;
/** Longest path (match, rewrite, redirect): Gateway API's `HTTPPathMatch.value` (maxLength 1024). */
export const PATH_MAX = 1024;
/** Longest host name: a DNS name (RFC 1123), as Istio's `ValidateWildcardDomain` allows. */
export const HOST_MAX = 253;

/** Why `s` is not a VirtualService/DestinationRule host (any case), or undefined when it is one. */
export function checkHost(s: string): string | undefined {
  // Istio's ValidateWildcardDomain: a DNS name of at most 253 characters, each label at most 63,
  // optionally starting with `*.`.
  if (s.length > HOST_MAX || s.split('.').some((l) => l.length > 63)) {
    return `${quote(s)} is too long for a host name; at most ${HOST_MAX} characters, 63 per label`;
  }
  return HOST_RE.test(s.toLowerCase()) ? undefined : `${quote(s)} is not a host name (service short name or FQDN)`;
}

/** Why `s` is not a header name (an RFC 9110 token of at most `HEADER_NAME_MAX` characters), or undefined. */
export function headerNameProblem(s: string): string | undefined {
  if (s.length > HEADER_NAME_MAX) return `${quote(s)} is too long for a header name; at most ${HEADER_NAME_MAX} characters`;
  return HEADER_NAME_RE.test(s) ? undefined : `${quote(s)} is not a valid header name; expected letters, digits and !#$%&'*+-.^_\`|~ (an RFC 9110 token)`;
}

/** Why `s` is not a header value the mesh can send (`isFieldValue`, at most `HEADER_VALUE_MAX`), or undefined. */
export function headerValueProblem(s: string): string | undefined {
  if (s.length > HEADER_VALUE_MAX) return `${quote(s)} is too long for a header value; at most ${HEADER_VALUE_MAX} characters`;
  return isFieldValue(s)
    ? undefined
    : `${quote(s)} is not an HTTP header value: control characters (CR, LF, NUL ...) are not allowed (RFC 9110 §5.5), nor characters past U+00FF`;
}

/**
 * Why `s` is not a path the waypoint can write into a request line or a `Location` (a rewrite or
 * redirect path), or undefined: starting with `/` (unless `leadingSlash` is false), at most `PATH_MAX` characters, printable ASCII
 * only (RFC 3986: anything else is percent-encoded). The `/` matters for a redirect: the path is
 * appended to `scheme://host[:port]`, where `evil.example` would change the host.
 */
export function sentPathProblem(s: string, leadingSlash = true): string | undefined {
  if (leadingSlash && !s.startsWith('/')) return `${quote(s)} does not start with /`;
  if (s.length > PATH_MAX) return `${quote(s)} is too long for a path; at most ${PATH_MAX} characters`;
  return /^[\x21-\x7e]*$/.test(s) ? undefined : `${quote(s)} is not a URL path: spaces, control and non-ASCII characters must be percent-encoded`;
}
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(h|ms|m|s)/g;
const DURATION_RE = /^(\d+(?:\.\d+)?(h|ms|m|s))+$/;

/** Parses `10s`, `1.5s`, `250ms`, `1h30m` into milliseconds. */
export function parseDurationMs(s: string): number | undefined {
  if (!DURATION_RE.test(s)) return undefined;
  let ms = 0;
  for (const [, n, unit] of s.matchAll(DURATION_PART_RE)) {
    const v = Number(n);
    ms += unit === 'h' ? v * 3_600_000 : unit === 'm' ? v * 60_000 : unit === 's' ? v * 1000 : v;
  }
  return Math.round(ms);
}

/** The match every request satisfies (PathPrefix "/"). */
export const MATCH_ALL: RequestMatch = Object.freeze({
  path: Object.freeze({ type: 'PathPrefix', value: '/' }) as PathMatch,
  headers: Object.freeze([]) as readonly ValueMatch[],
  queryParams: Object.freeze([]) as readonly ValueMatch[],
});

/** The value checks of routing specs, recording problems in `p` under each entry's path. */
export class RouteSpecChecks {
  constructor(readonly p: Problems) {}

  protected duration(v: unknown, path: string): number | undefined {
    const ms = typeof v === 'string' ? parseDurationMs(v) : undefined;
    if (ms === undefined) {
      this.p.add(path, `${describe(v)} is not a duration; expected e.g. "10s", "1.5s", "250ms" or "1m"`);
    }
    return ms;
  }

  protected regex(v: unknown, path: string): string | undefined {
    const s = string(this.p, path, v, 'a regular expression');
    if (s === undefined) return undefined;
    const problem = regexProblem(s);
    if (problem !== undefined) {
      this.p.add(path, problem);
      return undefined;
    }
    return s;
  }

  protected headerName(v: unknown, path: string): string | undefined {
    return string(this.p, path, v, 'a header name', headerNameProblem);
  }

  /** A header value a modifier sets or adds (may be empty); undefined (after a problem) when it cannot be sent. */
  protected headerValue(v: unknown, path: string): string | undefined {
    if (typeof v !== 'string') {
      this.p.add(path, `expected a header value, got ${describe(v)}`);
      return undefined;
    }
    const bad = headerValueProblem(v);
    if (bad !== undefined) this.p.add(path, bad);
    return bad === undefined ? v : undefined;
  }

  protected integer(v: unknown, path: string, min: number, max: number, what = 'an integer'): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.p.add(path, `${describe(v)} is not allowed; expected ${what} from ${min} to ${max}`);
      return undefined;
    }
    return v;
  }

  protected percent(v: unknown, path: string): number | undefined {
    if (typeof v !== 'number' || !(v >= 0 && v <= 100)) {
      this.p.add(path, `${describe(v)} is not a percentage; expected a number from 0 to 100`);
      return undefined;
    }
    return v;
  }
}
