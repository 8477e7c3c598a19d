/**
 * Istio `DestinationRule` specs → the route model's subsets (`core/model/routes.ts`); what the
 * routing specs share is in `shared.ts`.
 */
import { field, list, mapping, string, stringField } from '../../validation/check.js';
import type { DestinationRule } from '../../model/routes.js';
import { checkedLabels } from '../names.js';
import { RouteSpecChecks, SUBSET_NAME_RE, checkHost } from './shared.js';
import { TrafficPolicyConverter } from './traffic-policy.js';

const DR_SPEC_KEYS = ['host', 'subsets', 'trafficPolicy', 'exportTo', 'workloadSelector'];
const DR_SUBSET_KEYS = ['name', 'labels', 'trafficPolicy'];

/** Converts DestinationRule specs, recording problems in `p` under each entry's path. */
export class DestinationRuleConverter extends RouteSpecChecks {
  /**
   * Converts a DestinationRule (`networking.istio.io/v1`) spec: `host` and `subsets` (name +
   * labels), what VirtualService destinations name with `subset`, and `trafficPolicy` (top level
   * and per subset: `traffic-policy.ts`). `exportTo`, `workloadSelector` and the parts of
   * `trafficPolicy` the waypoint does not apply (TLS, locality, warm-up ...) are accepted and
   * listed in `ignored` (paths relative to the spec), which the waypoint shows in the route status
   * of `/config_dump` (docs/waypoint.md, "Not supported").
   *
   * @example
   * new DestinationRuleConverter(p).destinationRule('reviews', 'default',
   *   { host: 'reviews', subsets: [{ name: 'v2', labels: { version: 'v2' } }] }, 'spec');
   */
  destinationRule(name: string, namespace: string, spec: Record<string, unknown>, path: string): DestinationRule | undefined {
    const before = this.p.size;
    const ignored: string[] = [];
    mapping(this.p, path, spec, DR_SPEC_KEYS);
    const host = stringField(
      this.p,
      path,
      spec,
      'host',
      'a host',
      (s) =>
        s.startsWith('*')
          ? `${JSON.stringify(s)}: wildcard hosts are not supported; name one service (short name, name.namespace or its FQDN)`
          : checkHost(s),
    );
    // Relative to the spec, so the model does not depend on where the spec came from (file, manifest, wire).
    for (const k of ['exportTo', 'workloadSelector']) if (Object.hasOwn(spec, k)) ignored.push(k);
    const policies = new TrafficPolicyConverter(this.p, path, ignored);
    const trafficPolicy = field(this.p, path, spec, 'trafficPolicy', (x, q) => policies.trafficPolicy(x, q));
    const subsets =
      field(this.p, path, spec, 'subsets', (x, q) =>
        list(this.p, q, x, (e, eq) => {
          const m = mapping(this.p, eq, e, DR_SUBSET_KEYS, 'a mapping {name, labels}');
          if (!m) return undefined;
          const subsetPolicy = field(this.p, eq, m, 'trafficPolicy', (y, r) => policies.trafficPolicy(y, r));
          const subsetName = field(
            this.p,
            eq,
            m,
            'name',
            (y, r) => string(this.p, r, y, 'a subset name', (s) => (SUBSET_NAME_RE.test(s) ? undefined : `${JSON.stringify(s)} is not a subset name; expected up to 63 letters, digits, "-", "_" or "."`)),
          );
          // No labels: the subset is every endpoint of the service (as in Istio).
          const labels = Object.freeze(field(this.p, eq, m, 'labels', (y, r) => checkedLabels(this.p, r, y)) ?? {});
          return subsetName === undefined ? undefined : Object.freeze({ name: subsetName, labels, ...(subsetPolicy ? { trafficPolicy: subsetPolicy } : {}) });
        }),
      ) ?? [];
    const seen = new Map<string, number>();
    subsets.forEach((s, i) => {
      const first = seen.get(s.name);
      if (first !== undefined) this.p.add(`${path}.subsets[${i}].name`, `subset ${JSON.stringify(s.name)} is already defined by subsets[${first}]; subset names must be unique`);
      else seen.set(s.name, i);
    });
    if (this.p.size > before || host === undefined) return undefined;
    return Object.freeze({
      kind: 'DestinationRule' as const,
      name,
      namespace,
      host,
      subsets: Object.freeze(subsets),
      ...(trafficPolicy ? { trafficPolicy } : {}),
      ...(ignored.length > 0 ? { ignored: Object.freeze(ignored) } : {}),
    });
  }
}
