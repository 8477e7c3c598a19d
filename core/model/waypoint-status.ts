/**
 * The `istio.io/WaypointBound` condition istiod (1.24+) writes on a Service that uses a waypoint
 * (`istio.io/use-waypoint` on the Service or its namespace), computed once for the control plane's
 * `/debug/status` (the lab) and the Kubernetes status writer, so both say the same.
 *
 * Istio's own words (pilot/pkg/model `ServiceInfo.GetConditions`, pilot/pkg/serviceregistry/kube/
 * controller/ambient `ReportWaypoint*`):
 *
 * | case | status | reason | message |
 * |---|---|---|---|
 * | bound | True | `WaypointAccepted` | `Successfully attached to waypoint <ns>/<name>` |
 * | no such waypoint, or it has no address yet | False | `WaypointIsNotReady` | `waypoint "<ns>/<name>" is not ready` |
 * | the waypoint is not for service traffic (`istio.io/waypoint-for`) | False | `UnsupportedTrafficType` | `attempting to bind to traffic type "service" which the waypoint "<ns>/<name>" does not support` |
 * | no waypoint asked for (`none`, no label), or the Service is a waypoint's own | – (no condition; one written before is removed) | | |
 *
 * Istio writes the condition only on Services and ServiceEntries, never on Namespaces: a
 * namespace's label shows on each Service of the namespace.
 */
import { GATEWAY_NAME_LABEL, USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL } from '../labels.js';

/** The condition type, as istiod writes it. */
export const WAYPOINT_BOUND = 'istio.io/WaypointBound';

export interface WaypointBoundCondition {
  readonly type: typeof WAYPOINT_BOUND;
  readonly status: 'True' | 'False';
  readonly reason: 'WaypointAccepted' | 'WaypointIsNotReady' | 'UnsupportedTrafficType';
  readonly message: string;
}

/** A Gateway as the binding needs it. */
export interface WaypointGateway {
  readonly gatewayClassName: string;
  /** `istio.io/waypoint-for` (default `service`). */
  readonly waypointFor?: string;
}

export interface WaypointBindingInput {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly namespaceLabels: Readonly<Record<string, string>>;
  readonly gateway: (namespace: string, name: string) => WaypointGateway | undefined;
  /** Whether the mesh's Service carries a waypoint (the converter resolved its address). */
  readonly bound: boolean;
}

/**
 * The condition for one Service, or undefined when it asks for no waypoint.
 *
 * @example
 * waypointBound({ namespace: 'apps', name: 'web', labels: { 'istio.io/use-waypoint': 'waypoint' }, namespaceLabels: {}, gateway: () => undefined, bound: false });
 * // { type: 'istio.io/WaypointBound', status: 'False', reason: 'WaypointIsNotReady', message: 'waypoint "apps/waypoint" is not ready' }
 */
export function waypointBound(i: WaypointBindingInput): WaypointBoundCondition | undefined {
  const own = i.labels[USE_WAYPOINT_LABEL];
  if (own === 'none') return undefined;
  // A waypoint's own Service never uses a waypoint.
  if (i.labels[GATEWAY_NAME_LABEL] !== undefined || i.gateway(i.namespace, i.name)?.gatewayClassName === WAYPOINT_CLASS) return undefined;
  const fromOwn = own !== undefined;
  const name = own ?? i.namespaceLabels[USE_WAYPOINT_LABEL];
  if (name === undefined || name === 'none') return undefined;
  const ns = (fromOwn ? i.labels[USE_WAYPOINT_NAMESPACE_LABEL] : i.namespaceLabels[USE_WAYPOINT_NAMESPACE_LABEL]) ?? i.namespace;
  const key = `${ns}/${name}`;
  if (i.bound) return { type: WAYPOINT_BOUND, status: 'True', reason: 'WaypointAccepted', message: `Successfully attached to waypoint ${key}` };
  const gw = i.gateway(ns, name);
  const forLabel = gw?.waypointFor ?? 'service';
  if (gw && gw.gatewayClassName === WAYPOINT_CLASS && forLabel !== 'service' && forLabel !== 'all') {
    return {
      type: WAYPOINT_BOUND,
      status: 'False',
      reason: 'UnsupportedTrafficType',
      message: `attempting to bind to traffic type "service" which the waypoint ${JSON.stringify(key)} does not support`,
    };
  }
  return { type: WAYPOINT_BOUND, status: 'False', reason: 'WaypointIsNotReady', message: `waypoint ${JSON.stringify(key)} is not ready` };
}

/** `istio.io/waypoint-for` of a Gateway's labels (default `service`). */
export function waypointForOf(labels: Readonly<Record<string, string>> | undefined): string {
  return labels?.[WAYPOINT_FOR_LABEL] ?? 'service';
}
