/**
 * Gateway API `GRPCRoute` specs → the route model (`core/model/routes.ts`), as Istio converts
 * them (pilot/pkg/config/kube/gateway/conversion.go, `convertGRPCRoute`): a gRPC call is an
 * HTTP/2 POST to `/<service>/<method>`, so a GRPCRoute is an HTTPRoute whose method matches are
 * path matches, and the waypoint executes it with the HTTP route machinery it already has (one
 * matcher, one set of filters, one weighted choice).
 *
 * The GRPCRoute spec is translated field by field into the HTTPRoute spec of the same shape
 * (`parentRefs`, `hostnames`, `rules[i].filters`, `rules[i].backendRefs` and
 * `rules[i].matches[j].headers` are the same types in both), keeping every list index, so the
 * HTTPRoute converter's problems name the GRPCRoute's own fields. What only GRPCRoute has is
 * checked here: the keys of a GRPCRoute, and the method match (`rules[i].matches[j].method`):
 *
 * | method match | path match |
 * |---|---|
 * | Exact, service and method | Exact `/<service>/<method>` |
 * | Exact, service only | PathPrefix `/<service>/` |
 * | Exact, method only | RegularExpression `/[^/]+/<method>` |
 * | RegularExpression, service and/or method | RegularExpression `/(?:<service>)/(?:<method>)` (`[^/]+` or `.+` for the absent one) |
 *
 * Unlike Istio's plain concatenation, a user pattern is wrapped in a group, so an alternation
 * (`a|b`) cannot escape its place in the path; each pattern is also checked as RE2 on its own,
 * so a bad one is reported on its own field. The original method match is kept on the model
 * (`RequestMatch.grpcMethod`) for GRPCRoute's precedence (`orderHttpRouteMatches`).
 */
import { indexPath, isMapping, keyPath, mapping, quote, type Problems } from '../../validation/check.js';
import { regexProblem } from '../../model/regex.js';
import type { GrpcMethodMatch, HttpRoute, PathMatch } from '../../model/routes.js';
import { HttpRouteConverter } from './http-route.js';

const GRPCROUTE_SPEC_KEYS = ['parentRefs', 'hostnames', 'rules'];
const RULE_KEYS = ['name', 'matches', 'filters', 'backendRefs'];
/** Upstream GRPCRoute fields a waypoint does not implement: refused as not supported. */
const RULE_UNSUPPORTED = ['sessionPersistence'];
const MATCH_KEYS = ['method', 'headers'];
const METHOD_KEYS = ['type', 'service', 'method'];

/** Gateway API's CEL rule for an Exact service name (GRPCMethodMatch). */
export const GRPC_SERVICE_RE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
/** Gateway API's CEL rule for an Exact method name (GRPCMethodMatch). */
export const GRPC_METHOD_RE = /^[A-Za-z_][A-Za-z_0-9]*$/;

/** Converts GRPCRoute specs, recording problems in `p` under each entry's path. */
export class GrpcRouteConverter {
  constructor(readonly p: Problems) {}

  /**
   * Converts a GRPCRoute (`gateway.networking.k8s.io/v1`) spec whose structure the upstream
   * schema has judged. Parents must be Services (GAMMA), as for HTTPRoute.
   *
   * @example
   * new GrpcRouteConverter(problems).grpcRoute('echo', 'default', {
   *   parentRefs: [{kind: 'Service', name: 'echo', port: 50051}],
   *   rules: [{matches: [{method: {service: 'echo.Echo', method: 'Say'}}], backendRefs: [{name: 'echo-v2', port: 50051}]}],
   * }, 'spec');
   */
  grpcRoute(name: string, namespace: string, spec: Record<string, unknown>, path: string): HttpRoute | undefined {
    const before = this.p.size;
    mapping(this.p, path, spec, GRPCROUTE_SPEC_KEYS);
    // methods[i][j]: the method match of rules[i].matches[j], kept for precedence.
    const methods: (GrpcMethodMatch | undefined)[][] = [];
    const http: Record<string, unknown> = {};
    for (const k of GRPCROUTE_SPEC_KEYS) if (Object.hasOwn(spec, k)) http[k] = spec[k];
    if (Array.isArray(spec.rules)) {
      const rulesPath = keyPath(path, 'rules');
      http.rules = spec.rules.map((r, i) => this.rule(r, indexPath(rulesPath, i), (methods[i] = [])));
    }
    const route = new HttpRouteConverter(this.p).httpRoute(name, namespace, http, path);
    if (this.p.size > before || !route) return undefined;
    return {
      ...route,
      kind: 'GRPCRoute',
      rules: route.rules.map((rule, i) => ({
        ...rule,
        matches: rule.matches.map((m, j) => {
          const g = methods[i]?.[j];
          return g ? { ...m, grpcMethod: g } : m;
        }),
      })),
    };
  }

  /** A rule as the HTTPRoute converter reads it; what is not a mapping goes on for it to report. */
  private rule(v: unknown, path: string, methods: (GrpcMethodMatch | undefined)[]): unknown {
    if (!isMapping(v)) return v;
    mapping(this.p, path, v, RULE_KEYS, 'a mapping {name, matches, filters, backendRefs}', RULE_UNSUPPORTED);
    const out: Record<string, unknown> = {};
    for (const k of RULE_KEYS) if (Object.hasOwn(v, k)) out[k] = v[k];
    if (Array.isArray(v.matches)) {
      const matchesPath = keyPath(path, 'matches');
      out.matches = v.matches.map((m, j) => this.match(m, indexPath(matchesPath, j), methods, j));
    }
    return out;
  }

  private match(v: unknown, path: string, methods: (GrpcMethodMatch | undefined)[], j: number): unknown {
    if (!isMapping(v)) return v;
    mapping(this.p, path, v, MATCH_KEYS, 'a mapping {method, headers}');
    const out: Record<string, unknown> = {};
    if (Object.hasOwn(v, 'headers')) out.headers = v.headers;
    if (v.method !== undefined && v.method !== null) {
      const m = this.method(v.method, keyPath(path, 'method'));
      if (m) {
        methods[j] = m;
        out.path = toPath(m);
      }
    }
    return out;
  }

  private method(v: unknown, path: string): GrpcMethodMatch | undefined {
    const m = mapping(this.p, path, v, METHOD_KEYS, 'a mapping {type, service, method}');
    if (!m) return undefined;
    const before = this.p.size;
    const type = (m.type as GrpcMethodMatch['type'] | null | undefined) ?? 'Exact'; // the schema's enum
    const value = (k: 'service' | 'method', re: RegExp, pattern: string, what: string): string | undefined => {
      const s = m[k];
      if (s === undefined || s === null) return undefined;
      if (typeof s !== 'string' || s === '') {
        this.p.add(keyPath(path, k), `expected a ${what}, got ${quote(String(s))}`);
        return undefined;
      }
      const problem =
        type === 'RegularExpression'
          ? regexProblem(s)
          : re.test(s)
            ? undefined
            : `${quote(s)} is not a gRPC ${what}; expected ${pattern} (Gateway API)`;
      if (problem !== undefined) this.p.add(keyPath(path, k), problem);
      return problem === undefined ? s : undefined;
    };
    const service = value('service', GRPC_SERVICE_RE, '^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$', 'service name');
    const method = value('method', GRPC_METHOD_RE, GRPC_METHOD_RE.source, 'method name');
    if ((m.service === undefined || m.service === null) && (m.method === undefined || m.method === null)) {
      this.p.add(path, 'set service, method or both: a method match needs one of them (Gateway API)');
    }
    if (this.p.size > before) return undefined;
    return { type, ...(service !== undefined ? { service } : {}), ...(method !== undefined ? { method } : {}) };
  }
}

/** The path match of a gRPC method match (the table above). */
function toPath(m: GrpcMethodMatch): PathMatch {
  if (m.type === 'Exact') {
    if (m.service !== undefined && m.method !== undefined) return { type: 'Exact', value: `/${m.service}/${m.method}` };
    if (m.service !== undefined) return { type: 'PathPrefix', value: `/${m.service}/` };
    // The method name is [A-Za-z_][A-Za-z_0-9]*: nothing in it is special to RE2.
    return { type: 'RegularExpression', value: `/[^/]+/${m.method}` };
  }
  const service = m.service !== undefined ? `(?:${m.service})` : '[^/]+';
  const method = m.method !== undefined ? `(?:${m.method})` : '.+';
  return { type: 'RegularExpression', value: `/${service}/${method}` };
}
