/**
 * DestinationRule `trafficPolicy` (top level, per subset, per port) → the model's
 * `TrafficPolicy` (`core/model/traffic-policy.ts`), with Istio's validation
 * (`pilot/pkg/config/validation`: non-negative limits, durations of at least 1 ms, percentages
 * from 0 to 100, exactly one hash key) plus what the waypoint needs to refuse instead of
 * guessing: a consistent hash without a key, `PASSTHROUGH`, duplicate port-level settings.
 *
 * Fields Istio has and the waypoint does not apply (TLS, locality and zone-aware balancing,
 * warm-up, keep-alive probes ...) are accepted and recorded in `ignored` as spec paths: the
 * DestinationRule's `Accepted` condition lists them ("... accepted but not applied by waypoints").
 */
import { boolean, describe, field, list, mapping, oneOf, quote, string, stringField, type Problems } from '../../validation/check.js';
import type { ConnectionPool, HashKey, LoadBalancer, OutlierDetection, PolicySettings, SimpleLb, TrafficPolicy } from '../../model/traffic-policy.js';
import { parseDurationMs } from './shared.js';

const POLICY_KEYS = ['loadBalancer', 'connectionPool', 'outlierDetection', 'portLevelSettings', 'tls', 'tunnel', 'proxyProtocol', 'retryBudget'];
const POLICY_IGNORED = ['tls', 'tunnel', 'proxyProtocol', 'retryBudget'];
const PORT_KEYS = ['port', 'loadBalancer', 'connectionPool', 'outlierDetection', 'tls'];
const LB_KEYS = ['simple', 'consistentHash', 'localityLbSetting', 'warmupDurationSecs', 'warmup', 'zoneAwareLbSetting', 'backendUtilization'];
const LB_IGNORED = ['localityLbSetting', 'warmupDurationSecs', 'warmup', 'zoneAwareLbSetting', 'backendUtilization'];
const HASH_KEYS = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName', 'ringHash', 'maglev', 'minimumRingSize'];
const COOKIE_KEYS = ['name', 'path', 'ttl', 'attributes'];
const POOL_KEYS = ['tcp', 'http'];
const TCP_KEYS = ['maxConnections', 'connectTimeout', 'tcpKeepalive', 'maxConnectionDuration', 'idleTimeout'];
const TCP_IGNORED = ['tcpKeepalive', 'maxConnectionDuration', 'idleTimeout'];
const HTTP_KEYS = [
  'http1MaxPendingRequests',
  'http2MaxRequests',
  'maxRequestsPerConnection',
  'maxRetries',
  'idleTimeout',
  'h2UpgradePolicy',
  'useClientProtocol',
  'maxConcurrentStreams',
  'http2KeepAlive',
];
const HTTP_IGNORED = ['h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams', 'http2KeepAlive'];
const OUTLIER_KEYS = [
  'consecutive5xxErrors',
  'consecutiveGatewayErrors',
  'interval',
  'baseEjectionTime',
  'maxEjectionPercent',
  'minHealthPercent',
  'consecutiveErrors',
  'consecutiveLocalOriginFailures',
  'splitExternalLocalOriginErrors',
  'outlierDetectionHttpErrorCodes',
];
const OUTLIER_IGNORED = ['consecutiveErrors', 'consecutiveLocalOriginFailures', 'splitExternalLocalOriginErrors', 'outlierDetectionHttpErrorCodes'];

/** `loadBalancer.simple` values: `UNSPECIFIED` is the default; `LEAST_CONN` is Istio's deprecated alias of `LEAST_REQUEST`. */
const SIMPLE = ['UNSPECIFIED', 'ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH'] as const;

/** Istio's int32 limits (`connectionPool`): 0 means Istio's default (unlimited). */
const INT32_MAX = 2_147_483_647;
/** Istio's uint32 counts (`consecutive5xxErrors`, `consecutiveGatewayErrors`). */
const UINT32_MAX = 4_294_967_295;
/** Largest ring the waypoint builds (Envoy's ring-hash maximum is 8M; see `ringSize`). */
export const MAX_RING_SIZE = 65_537;

/** A cookie name: an RFC 6265 token (as a header name, since it travels in `Cookie`/`Set-Cookie`). */
const COOKIE_NAME_RE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$/;
/** A cookie path: printable ASCII without `;` (RFC 6265 `path-value`). */
const COOKIE_PATH_RE = /^\/[\x21-\x3a\x3c-\x7e]{0,1023}$/;
/** A header or query-parameter name to hash on. */
const TOKEN_RE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$/;

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

/**
 * Converts `trafficPolicy` mappings of one DestinationRule, recording problems in `p` and the
 * paths of fields accepted but not applied in `ignored` (relative to `specPath`).
 */
export class TrafficPolicyConverter {
  constructor(
    private readonly p: Problems,
    private readonly specPath: string,
    private readonly ignored: string[],
  ) {}

  /** A top-level or subset `trafficPolicy`; undefined when it is unusable (after a problem) or sets nothing applied. */
  trafficPolicy(v: unknown, path: string): TrafficPolicy | undefined {
    const m = mapping(this.p, path, v, POLICY_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    this.ignore(path, m, POLICY_IGNORED);
    const settings = this.settings(m, path);
    const seen = new Map<number, number>();
    const ports =
      field(this.p, path, m, 'portLevelSettings', (x, q) =>
        list(this.p, q, x, (e, eq, i) => {
          const pm = mapping(this.p, eq, e, PORT_KEYS);
          if (!pm) return undefined;
          this.ignore(eq, pm, ['tls']);
          const port = field(
            this.p,
            eq,
            pm,
            'port',
            (y, r) => {
              const portMap = mapping(this.p, r, y, ['number'], 'a mapping {number}');
              return portMap ? field(this.p, r, portMap, 'number', (z, zq) => this.int(z, zq, 1, 65535, 'a port number'), { required: true }) : undefined;
            },
            { required: true, expected: '{number: <service port>}' },
          );
          if (port !== undefined) {
            const first = seen.get(port);
            if (first !== undefined) this.p.add(`${eq}.port.number`, `port ${port} is already set by portLevelSettings[${first}]; one entry per port`);
            else seen.set(port, i);
          }
          const s = this.settings(pm, eq);
          return port === undefined ? undefined : Object.freeze({ port, ...s });
        }),
      ) ?? [];
    if (this.p.size > before) return undefined;
    const applied = ports.filter((s) => s.loadBalancer || s.connectionPool || s.outlierDetection);
    const out: TrafficPolicy = { ...settings, ...(applied.length > 0 ? { portLevelSettings: Object.freeze(applied) } : {}) };
    return out.loadBalancer || out.connectionPool || out.outlierDetection || out.portLevelSettings ? Object.freeze(out) : undefined;
  }

  private settings(m: Record<string, unknown>, path: string): PolicySettings {
    const loadBalancer = field(this.p, path, m, 'loadBalancer', (x, q) => this.loadBalancer(x, q));
    const connectionPool = field(this.p, path, m, 'connectionPool', (x, q) => this.connectionPool(x, q));
    const outlierDetection = field(this.p, path, m, 'outlierDetection', (x, q) => this.outlierDetection(x, q));
    return {
      ...(loadBalancer ? { loadBalancer } : {}),
      ...(connectionPool ? { connectionPool } : {}),
      ...(outlierDetection ? { outlierDetection } : {}),
    };
  }

  private loadBalancer(v: unknown, path: string): LoadBalancer | undefined {
    const m = mapping(this.p, path, v, LB_KEYS);
    if (!m) return undefined;
    this.ignore(path, m, LB_IGNORED);
    const hasSimple = m['simple'] !== undefined && m['simple'] !== null;
    const hasHash = m['consistentHash'] !== undefined && m['consistentHash'] !== null;
    if (hasSimple && hasHash) {
      this.p.add(path, 'set either simple or consistentHash, not both');
      return undefined;
    }
    if (hasHash) {
      const consistentHash = field(this.p, path, m, 'consistentHash', (x, q) => this.consistentHash(x, q));
      return consistentHash ? Object.freeze({ consistentHash }) : undefined;
    }
    const simple = field(this.p, path, m, 'simple', (x, q) => oneOf(this.p, q, x, SIMPLE));
    if (simple === 'PASSTHROUGH') {
      this.p.add(
        `${path}.simple`,
        'PASSTHROUGH is not supported by waypoints: it forwards to the address the client dialled, which for a waypoint is the service VIP it balances; use ROUND_ROBIN, LEAST_REQUEST or RANDOM',
      );
      return undefined;
    }
    if (simple === undefined || simple === 'UNSPECIFIED') return undefined;
    return Object.freeze({ simple: (simple === 'LEAST_CONN' ? 'LEAST_REQUEST' : simple) as SimpleLb });
  }

  private consistentHash(v: unknown, path: string): { key: HashKey; ringSize?: number } | undefined {
    const m = mapping(this.p, path, v, HASH_KEYS);
    if (!m) return undefined;
    const before = this.p.size;
    const keys: HashKey[] = [];
    const header = stringField(this.p, path, m, 'httpHeaderName', 'a header name', (s) => (TOKEN_RE.test(s) ? undefined : `${quote(s)} is not a header name; expected an RFC 9110 token of at most 256 characters`));
    if (header !== undefined) keys.push({ kind: 'header', name: header.toLowerCase() });
    const query = stringField(this.p, path, m, 'httpQueryParameterName', 'a query parameter name', (s) =>
      TOKEN_RE.test(s) ? undefined : `${quote(s)} is not a query parameter name; expected at most 256 letters, digits or !#$%&'*+-.^_\`|~`,
    );
    if (query !== undefined) keys.push({ kind: 'queryParameter', name: query });
    const sourceIp = field(this.p, path, m, 'useSourceIp', (x, q) => boolean(this.p, q, x));
    if (sourceIp === true) keys.push({ kind: 'sourceIp' });
    const cookie = field(this.p, path, m, 'httpCookie', (x, q) => this.cookie(x, q));
    if (cookie) keys.push(cookie);
    const hashKeys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter((k) => m[k] !== undefined && m[k] !== null);
    if (hashKeys.length > 1) this.p.add(path, `set exactly one hash key; found ${hashKeys.join(', ')}`);
    else if (hashKeys.length === 0 || (hashKeys[0] === 'useSourceIp' && sourceIp === false)) {
      this.p.add(path, 'no hash key; set one of httpHeaderName, httpCookie, useSourceIp: true or httpQueryParameterName');
    }
    const algorithms = ['ringHash', 'maglev', 'minimumRingSize'].filter((k) => m[k] !== undefined && m[k] !== null);
    if (algorithms.length > 1) this.p.add(path, `set at most one of ringHash, maglev and minimumRingSize; found ${algorithms.join(', ')}`);
    let ringSize: number | undefined;
    if (algorithms[0] === 'minimumRingSize') ringSize = this.int(m['minimumRingSize'], `${path}.minimumRingSize`, 1, MAX_RING_SIZE, 'a ring size');
    else if (algorithms[0] === 'ringHash') {
      const r = mapping(this.p, `${path}.ringHash`, m['ringHash'], ['minimumRingSize']);
      if (r) ringSize = field(this.p, `${path}.ringHash`, r, 'minimumRingSize', (x, q) => this.int(x, q, 1, MAX_RING_SIZE, 'a ring size'));
    } else if (algorithms[0] === 'maglev') {
      const r = mapping(this.p, `${path}.maglev`, m['maglev'], ['tableSize']);
      if (r) {
        ringSize = field(this.p, `${path}.maglev`, r, 'tableSize', (x, q) => {
          const n = this.int(x, q, 2, MAX_RING_SIZE, 'a prime table size');
          if (n !== undefined && !isPrime(n)) {
            this.p.add(q, `${n} is not a prime number; Maglev's table size must be prime (Envoy's default is 65537)`);
            return undefined;
          }
          return n;
        });
      }
    }
    if (this.p.size > before || keys.length !== 1) return undefined;
    return Object.freeze({ key: Object.freeze(keys[0]!), ...(ringSize !== undefined ? { ringSize } : {}) });
  }

  private cookie(v: unknown, path: string): HashKey | undefined {
    const m = mapping(this.p, path, v, COOKIE_KEYS);
    if (!m) return undefined;
    this.ignore(path, m, ['attributes']);
    const name = stringField(
      this.p,
      path,
      m,
      'name',
      'a cookie name',
      (s) => (COOKIE_NAME_RE.test(s) ? undefined : `${quote(s)} is not a cookie name; expected an RFC 6265 token of at most 256 characters`),
      { required: true },
    );
    const cookiePath = stringField(this.p, path, m, 'path', 'a cookie path', (s) =>
      COOKIE_PATH_RE.test(s) ? undefined : `${quote(s)} is not a cookie path; expected / followed by at most 1023 printable ASCII characters other than ;`,
    );
    // ttl 0 is allowed here (a session cookie), unlike the other durations.
    const ttlMs = field(this.p, path, m, 'ttl', (x, q) => this.duration(x, q, 0));
    if (name === undefined) return undefined;
    return { kind: 'cookie', name, ...(cookiePath !== undefined ? { path: cookiePath } : {}), ...(ttlMs !== undefined ? { ttlMs } : {}) };
  }

  private connectionPool(v: unknown, path: string): ConnectionPool | undefined {
    const m = mapping(this.p, path, v, POOL_KEYS);
    if (!m) return undefined;
    if ((m['tcp'] === undefined || m['tcp'] === null) && (m['http'] === undefined || m['http'] === null)) {
      this.p.add(path, 'sets nothing; set tcp, http or both (as Istio requires)');
      return undefined;
    }
    const out: Record<string, number> = {};
    const put = (k: keyof ConnectionPool, n: number | undefined) => {
      if (n !== undefined) out[k] = n;
    };
    field(this.p, path, m, 'tcp', (x, q) => {
      const t = mapping(this.p, q, x, TCP_KEYS);
      if (!t) return undefined;
      this.ignore(q, t, TCP_IGNORED);
      put('maxConnections', field(this.p, q, t, 'maxConnections', (y, r) => this.int(y, r, 0, INT32_MAX)));
      put('connectTimeoutMs', field(this.p, q, t, 'connectTimeout', (y, r) => this.duration(y, r)));
      return t;
    });
    field(this.p, path, m, 'http', (x, q) => {
      const h = mapping(this.p, q, x, HTTP_KEYS);
      if (!h) return undefined;
      this.ignore(q, h, HTTP_IGNORED);
      for (const k of ['http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries'] as const) {
        put(k, field(this.p, q, h, k, (y, r) => this.int(y, r, 0, INT32_MAX)));
      }
      put('idleTimeoutMs', field(this.p, q, h, 'idleTimeout', (y, r) => this.duration(y, r)));
      return h;
    });
    // Istio's 0 is "not set": Envoy's default (unlimited) applies.
    for (const k of Object.keys(out)) if (out[k] === 0 && k !== 'connectTimeoutMs' && k !== 'idleTimeoutMs') delete out[k];
    return Object.freeze(out as ConnectionPool);
  }

  private outlierDetection(v: unknown, path: string): OutlierDetection | undefined {
    const m = mapping(this.p, path, v, OUTLIER_KEYS);
    if (!m) return undefined;
    this.ignore(path, m, OUTLIER_IGNORED);
    const out: Record<string, number> = {};
    const put = (k: keyof OutlierDetection, n: number | undefined) => {
      if (n !== undefined) out[k] = n;
    };
    put('consecutive5xxErrors', field(this.p, path, m, 'consecutive5xxErrors', (x, q) => this.int(x, q, 0, UINT32_MAX)));
    put('consecutiveGatewayErrors', field(this.p, path, m, 'consecutiveGatewayErrors', (x, q) => this.int(x, q, 0, UINT32_MAX)));
    put('intervalMs', field(this.p, path, m, 'interval', (x, q) => this.duration(x, q)));
    put('baseEjectionTimeMs', field(this.p, path, m, 'baseEjectionTime', (x, q) => this.duration(x, q)));
    put('maxEjectionPercent', field(this.p, path, m, 'maxEjectionPercent', (x, q) => this.int(x, q, 0, 100, 'a percentage')));
    put('minHealthPercent', field(this.p, path, m, 'minHealthPercent', (x, q) => this.int(x, q, 0, 100, 'a percentage')));
    return Object.freeze(out as OutlierDetection);
  }

  /** An integer in [min, max] (YAML and JSON give numbers; `"5"` is refused as the API server's schema does). */
  private int(v: unknown, path: string, min: number, max: number, what = 'an integer'): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.p.add(path, `${describe(v)} is not allowed; expected ${what} from ${min} to ${max}`);
      return undefined;
    }
    return v;
  }

  /** A duration of at least `minMs` (Istio: 1 ms), in whole milliseconds as Istio requires. */
  private duration(v: unknown, path: string, minMs = 1): number | undefined {
    const s = string(this.p, path, v, 'a duration');
    if (s === undefined) return undefined;
    const ms = s.length <= 64 ? parseDurationMs(s) : undefined;
    if (ms === undefined || !Number.isFinite(ms)) {
      this.p.add(path, `${quote(s)} is not a duration; expected e.g. "10s", "1.5s", "250ms" or "1m"`);
      return undefined;
    }
    if (ms < minMs) {
      this.p.add(path, `${quote(s)} is too short; expected at least ${minMs === 0 ? '0s' : '1ms'}`);
      return undefined;
    }
    return ms;
  }

  /** Records the keys of `m` in `keys` as accepted but not applied. */
  private ignore(path: string, m: Record<string, unknown>, keys: readonly string[]): void {
    const rel = path === this.specPath ? '' : path.slice(this.specPath.length + 1);
    for (const k of keys) if (Object.hasOwn(m, k) && m[k] !== null && m[k] !== undefined) this.ignored.push(rel === '' ? k : `${rel}.${k}`);
  }
}
