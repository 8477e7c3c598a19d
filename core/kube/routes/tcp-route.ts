/**
 * Gateway API `TCPRoute` (`gateway.networking.k8s.io/v1alpha2`, as Istio 1.26 reads it) specs on
 * Service parents → the model's `TcpRoute`: the weighted backends a waypoint splits the TCP
 * connections of the Service between (waypoint/inbound.ts). One rule, as Istio requires
 * (`convertTCPRoute`: a TCPRoute has nothing to choose between rules by).
 *
 * `parentRefs` and `backendRefs` are the same types as HTTPRoute's, so they go through the
 * HTTPRoute converter (one rule with the same `backendRefs`, index for index): the problems name
 * the TCPRoute's own fields, and a backend of an unknown kind is kept as HTTPRoute's is
 * (`ResolvedRefs=False, InvalidKind`; the connections sent to it are closed).
 */
import { isMapping, keyPath, mapping, type Problems } from '../../validation/check.js';
import type { TcpRoute } from '../../model/routes.js';
import { HttpRouteConverter } from './http-route.js';

const TCPROUTE_SPEC_KEYS = ['parentRefs', 'rules'];
const RULE_KEYS = ['name', 'backendRefs'];

/** Converts TCPRoute specs, recording problems in `p` under each entry's path. */
export class TcpRouteConverter {
  constructor(readonly p: Problems) {}

  /**
   * @example
   * new TcpRouteConverter(problems).tcpRoute('db', 'default', {
   *   parentRefs: [{kind: 'Service', name: 'db', port: 5432}],
   *   rules: [{backendRefs: [{name: 'db-v1', port: 5432, weight: 80}, {name: 'db-v2', port: 5432, weight: 20}]}],
   * }, 'spec');
   */
  tcpRoute(name: string, namespace: string, spec: Record<string, unknown>, path: string): TcpRoute | undefined {
    const before = this.p.size;
    // `hostnames` is not a TCPRoute field: refused here as unknown, not by the HTTPRoute converter.
    mapping(this.p, path, spec, TCPROUTE_SPEC_KEYS);
    const rules = spec.rules;
    const rulesPath = keyPath(path, 'rules');
    if (!Array.isArray(rules) || rules.length !== 1) {
      this.p.add(rulesPath, 'a TCPRoute on a waypoint has exactly one rule (Istio): put every backend in it, weighted');
      return undefined;
    }
    const rule = rules[0];
    if (isMapping(rule)) mapping(this.p, `${rulesPath}[0]`, rule, RULE_KEYS, 'a mapping {name, backendRefs}');
    const http = {
      ...(Object.hasOwn(spec, 'parentRefs') ? { parentRefs: spec.parentRefs } : {}),
      rules: [isMapping(rule) ? { ...(Object.hasOwn(rule, 'backendRefs') ? { backendRefs: rule.backendRefs } : {}) } : rule],
    };
    const route = new HttpRouteConverter(this.p).httpRoute(name, namespace, http, path);
    if (this.p.size > before || !route) return undefined;
    const backends = route.rules[0]!.backends;
    if (backends.length === 0) {
      this.p.add(`${rulesPath}[0].backendRefs`, 'required: the Services the connections go to');
      return undefined;
    }
    return { kind: 'TCPRoute', name, namespace, parents: route.parents, backends };
  }
}
