/**
 * Writes what the control plane made of each object back to its `status` (the leader only), so
 * `kubectl get -o yaml` answers "was my policy taken, and if not, why" as it does with Istio:
 *
 * | kind | where | conditions |
 * |---|---|---|
 * | AuthorizationPolicy | `status.conditions` | `ZtunnelAccepted` (selector or namespace policies) or `WaypointAccepted` (`targetRefs`), as istiod writes them |
 * | PeerAuthentication | `status.conditions` | `Accepted` |
 * | VirtualService | `status.conditions` | `Accepted` (False, `Conflicted`, when an HTTPRoute routes the same service), `ResolvedRefs` (backends, subsets) |
 * | DestinationRule | `status.conditions` | `Accepted` (fields waypoints do not apply), `ResolvedRefs` (unknown host, subsets with no healthy endpoint) |
 * | HTTPRoute, GRPCRoute, TCPRoute | `status.parents[]`, one per parentRef, `controllerName` ours | `Accepted`, `ResolvedRefs` |
 * | Gateway (`istio-waypoint` class) | `status.conditions` | `Accepted`, `Programmed` |
 * | Service using a waypoint (`istio.io/use-waypoint` on it or its namespace) | `status.conditions` (others' kept) | `istio.io/WaypointBound` (core/model/waypoint-status.ts), as istiod 1.24+ writes it |
 *
 * An object with errors is `status: "False"`, reason `Invalid` (Gateway API kinds: their spec's
 * reasons), the message listing every problem with its field; one that applies but not entirely
 * as written is `"True"`, reason `UnsupportedValue`, the message saying what was dropped.
 *
 * Only what changed is written (a merge patch of the status subresource, carrying the
 * resourceVersion it was computed from, so a concurrent writer's change is never overwritten blind); `lastTransitionTime`
 * moves only when a condition's status does. Other controllers' `status.parents` entries are kept.
 * Writing a status produces a watch event, which converts to the same document (to-manifest.ts
 * drops these statuses), so a write never triggers another.
 */
import type { Logger } from '../../core/telemetry/log.js';
import { formatRef, type ObjectProblem } from '../../core/kube/objects.js';
import { CONTROLLER_NAME, WAYPOINT_CLASS } from '../../core/labels.js';
import type { RouteCondition } from '../../core/model/routes.js';
import type { RouteStatusEntry } from '../../core/model/route-status.js';
import { KubeApiError, type KubeApi, type KubeObject } from '../../core/kube/api.js';
import { objectPath, WATCHED_RESOURCES, type KubeResource } from './kinds.js';
import type { GatewayState } from './waypoints.js';
import { DebouncedTask } from './debounced.js';
import { WAYPOINT_BOUND, waypointBound, waypointForOf, type WaypointGateway } from '../../core/model/waypoint-status.js';

/** A status condition as written. */
export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration?: number;
  readonly lastTransitionTime: string;
}

export interface StatusWriterInputs {
  readonly api: KubeApi;
  /** Objects as last received (the Kubernetes source). */
  readonly objects: (kind: string) => Iterable<KubeObject>;
  /** Problems of every object, as read and as converted (`ControlPlane.problems()`). */
  readonly problems: () => readonly ObjectProblem[];
  /** Route conditions of the current snapshot (`routeStatuses(state)`). */
  readonly routes: () => readonly RouteStatusEntry[];
  /**
   * Whether the mesh's Service `namespace/name` carries a waypoint (the converter resolved it):
   * the `istio.io/WaypointBound` condition. Absent: Services get no status.
   */
  readonly serviceBound?: (namespace: string, name: string) => boolean;
  /** A waypoint Gateway's deployment state (the waypoint controller): `Programmed` and `addresses`. */
  readonly gatewayState?: (namespace: string, name: string) => GatewayState;
  readonly logger: Logger;
  /** Quiet time before a burst of changes is written (default 200 ms). */
  readonly debounceMs?: number;
  readonly now?: () => number;
}

type Status = Record<string, unknown>;

function meta(o: KubeObject): Record<string, unknown> {
  return typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {};
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A condition's identity for "did it change": everything but the transition time. */
function sameCondition(a: Partial<Condition> | undefined, b: Condition): boolean {
  return a !== undefined && a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}

/**
 * @example
 * const writer = new StatusWriter({ api, objects: (k) => source.objects(k), problems: () => cp.problems(), routes: () => routeStatuses(cp.state.mesh), logger });
 * elector.onChange((leader) => (leader ? writer.start() : writer.stop()));
 * cp.onConfig(() => writer.schedule());
 */
export class StatusWriter {
  readonly #in: StatusWriterInputs;
  readonly #task: DebouncedTask;
  #failures = 0;
  #labelsByNamespace = new Map<string, Record<string, string>>();
  #gateways = new Map<string, WaypointGateway>();
  /** Writes done, for tests and /debug. */
  readonly stats = { writes: 0, failures: 0, passes: 0 };

  constructor(inputs: StatusWriterInputs) {
    this.#in = inputs;
    this.#task = new DebouncedTask(() => this.#flush(), inputs.debounceMs ?? 200, (err) => inputs.logger.error({ err }, 'status pass failed; trying again'));
  }

  /** Begins writing (on becoming the leader): everything is compared once. */
  start(): void {
    this.#task.setActive(true);
  }

  /** Stops writing (on losing leadership, or at shutdown). */
  stop(): void {
    this.#task.setActive(false);
  }

  /** Something changed: compare and write after the debounce. */
  schedule(delayMs?: number): void {
    this.#task.schedule(delayMs);
  }

  /** Compares every object's status with what it should be, and writes the differences. */
  flush(): Promise<void> {
    return this.#task.run();
  }

  async #flush(): Promise<void> {
    const byObject = new Map<string, ObjectProblem[]>();
    for (const p of this.#in.problems()) {
      let l = byObject.get(p.object);
      if (!l) byObject.set(p.object, (l = []));
      l.push(p);
    }
    const routes = new Map(this.#in.routes().map((r) => [`${r.kind} ${r.namespace}/${r.name}`, r.conditions]));
    // What a Service's WaypointBound needs, indexed once per pass (not per Service).
    this.#labelsByNamespace = new Map([...this.#in.objects('Namespace')].map((o) => [String(meta(o).name), labelsOf(o)]));
    this.#gateways = new Map(
      [...this.#in.objects('Gateway')].map((o) => {
        const spec = isMap(o.spec) ? o.spec : {};
        return [`${String(meta(o).namespace)}/${String(meta(o).name)}`, { gatewayClassName: String(spec.gatewayClassName ?? ''), waypointFor: waypointForOf(labelsOf(o)) }];
      }),
    );
    let failed = false;
    for (const r of WATCHED_RESOURCES) {
      if (!r.status) continue;
      for (const o of [...this.#in.objects(r.kind)]) {
        if (!this.#task.active) return;
        const m = meta(o);
        const ref = formatRef({ kind: r.kind, namespace: m.namespace as string | undefined, name: String(m.name) });
        const current = isMap(o.status) ? o.status : {};
        const patch = this.#desired(r, o, current, byObject.get(ref) ?? [], routes.get(ref));
        if (!patch) continue;
        try {
          // With the resourceVersion the status was computed from: a write someone made since (another
          // controller's parents entry, a newer spec) makes this one fail (409) and be recomputed.
          const rv = typeof m.resourceVersion === 'string' ? m.resourceVersion : undefined;
          await this.#in.api.request('PATCH', objectPath(r, m.namespace as string | undefined, String(m.name), 'status'), {
            body: { ...(rv ? { metadata: { resourceVersion: rv } } : {}), status: patch },
            contentType: 'application/merge-patch+json',
          });
          this.stats.writes++;
          this.#in.logger.debug({ object: ref }, 'status written');
        } catch (err) {
          // Deleted meanwhile: nothing to say. Anything else is tried again with backoff.
          if (err instanceof KubeApiError && err.status === 404) continue;
          failed = true;
          this.stats.failures++;
          this.#in.logger.warn({ object: ref, err: (err as Error).message }, 'status write failed; will retry');
        }
      }
    }
    this.stats.passes++;
    if (failed) {
      this.#failures++;
      this.schedule(Math.min(30_000, 500 * 2 ** Math.min(this.#failures, 6)));
    } else {
      this.#failures = 0;
    }
  }

  /** The status fields to patch, or undefined when the current status already says it. */
  #desired(r: KubeResource, o: KubeObject, current: Status, problems: readonly ObjectProblem[], route: RouteCondition[] | undefined): Status | undefined {
    const m = meta(o);
    const generation = typeof m.generation === 'number' ? m.generation : undefined;
    const now = new Date((this.#in.now ?? Date.now)()).toISOString().replace(/\.\d+Z$/, 'Z');
    const errors = problems.filter((p) => p.severity === 'error');
    const warnings = problems.filter((p) => p.severity === 'warning');
    const describe = (ps: readonly ObjectProblem[]) => ps.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; ');
    const prevConditions = (list: unknown): Array<Partial<Condition>> => (Array.isArray(list) ? list.filter(isMap) : []) as Array<Partial<Condition>>;
    const condition = (prev: Array<Partial<Condition>>, type: string, status: Condition['status'], reason: string, message: string): Condition => {
      // Never empty: an API server before 1.22 reads "" as null and refuses the whole patch (422)
      // against the Gateway API CRDs, which require `message` (found on a real 1.20 cluster).
      const base = { type, status, reason, message: message || reason, ...(generation !== undefined ? { observedGeneration: generation } : {}) };
      const old = prev.find((c) => c.type === type);
      const lastTransitionTime = old && old.status === status && typeof old.lastTransitionTime === 'string' ? old.lastTransitionTime : now;
      return { ...base, lastTransitionTime };
    };
    /** Accepted-style condition from the object's own problems. */
    const accepted = (prev: Array<Partial<Condition>>, type: string, ok: string, invalid: string): Condition =>
      errors.length > 0
        ? condition(prev, type, 'False', invalid, describe(errors))
        : warnings.length > 0
          ? condition(prev, type, 'True', 'UnsupportedValue', describe(warnings))
          : condition(prev, type, 'True', ok, ok === 'Accepted' && type === 'ZtunnelAccepted' ? 'attached to ztunnel' : type === 'WaypointAccepted' ? 'bound to the waypoint' : '');
    const fromRoute = (prev: Array<Partial<Condition>>, c: RouteCondition): Condition => condition(prev, c.type, c.status, c.reason, c.message ?? '');
    const differs = (prev: Array<Partial<Condition>>, next: readonly Condition[]) =>
      prev.length !== next.length || next.some((c) => !sameCondition(prev.find((p) => p.type === c.type), c));

    switch (r.kind) {
      case 'AuthorizationPolicy': {
        const spec = isMap(o.spec) ? o.spec : {};
        const type = spec.targetRefs !== undefined || spec.targetRef !== undefined ? 'WaypointAccepted' : 'ZtunnelAccepted';
        const prev = prevConditions(current.conditions);
        const next = [accepted(prev, type, 'Accepted', 'Invalid')];
        return differs(prev, next) ? { conditions: next } : undefined;
      }
      case 'PeerAuthentication': {
        const prev = prevConditions(current.conditions);
        const next = [accepted(prev, 'Accepted', 'Accepted', 'Invalid')];
        return differs(prev, next) ? { conditions: next } : undefined;
      }
      case 'DestinationRule':
      case 'VirtualService': {
        const prev = prevConditions(current.conditions);
        const next = errors.length > 0 || !route ? [accepted(prev, 'Accepted', 'Accepted', 'Invalid')] : route.map((c) => fromRoute(prev, c));
        return differs(prev, next) ? { conditions: next } : undefined;
      }
      case 'Gateway': {
        const spec = isMap(o.spec) ? o.spec : {};
        if (spec.gatewayClassName !== WAYPOINT_CLASS) return undefined;
        const prev = prevConditions(current.conditions);
        const acceptedNow = accepted(prev, 'Accepted', 'Accepted', 'InvalidParameters');
        const state = this.#in.gatewayState?.(String(m.namespace), String(m.name));
        if (!state) {
          // Keep conditions other writers own (Programmed, from whatever runs the waypoint).
          const next = [acceptedNow, ...prev.filter((c) => c.type !== 'Accepted')] as Condition[];
          return differs(prev.filter((c) => c.type === 'Accepted'), [acceptedNow]) ? { conditions: next } : undefined;
        }
        const programmed =
          errors.length > 0
            ? condition(prev, 'Programmed', 'False', 'Invalid', 'the gateway is not accepted')
            : condition(prev, 'Programmed', state.programmed ? 'True' : 'False', state.reason, state.message);
        const next = [acceptedNow, programmed];
        const addresses = state.address !== undefined ? [{ type: 'IPAddress', value: state.address }] : [];
        const addressesNow = Array.isArray(current.addresses) ? current.addresses : [];
        if (!differs(prev, next) && JSON.stringify(addressesNow) === JSON.stringify(addresses)) return undefined;
        return { conditions: next, addresses };
      }
      case 'HTTPRoute':
      case 'GRPCRoute':
      case 'TCPRoute': {
        const spec = isMap(o.spec) ? o.spec : {};
        const refs = Array.isArray(spec.parentRefs) ? spec.parentRefs.filter(isMap) : [];
        const prevParents = (Array.isArray(current.parents) ? current.parents.filter(isMap) : []) as Array<Record<string, unknown>>;
        const others = prevParents.filter((p) => p.controllerName !== CONTROLLER_NAME);
        const ours = prevParents.filter((p) => p.controllerName === CONTROLLER_NAME);
        const key = (ref: unknown) => JSON.stringify(isMap(ref) ? [ref.group ?? '', ref.kind ?? '', ref.namespace ?? '', ref.name ?? '', ref.port ?? '', ref.sectionName ?? ''] : []);
        let changed = ours.length !== refs.length;
        const parents = refs.map((ref) => {
          const prevEntry = ours.find((p) => key(p.parentRef) === key(ref));
          const prev = prevConditions(prevEntry?.conditions);
          const conditions =
            errors.length > 0 || !route
              ? [accepted(prev, 'Accepted', 'Accepted', 'UnsupportedValue'), condition(prev, 'ResolvedRefs', errors.length > 0 ? 'False' : 'True', errors.length > 0 ? 'UnsupportedValue' : 'ResolvedRefs', '')]
              : route.map((c) => fromRoute(prev, c));
          if (!prevEntry || differs(prev, conditions)) changed = true;
          return { parentRef: ref, controllerName: CONTROLLER_NAME, conditions };
        });
        return changed ? { parents: [...others, ...parents] } : undefined;
      }
      case 'Service': {
        if (!this.#in.serviceBound) return undefined;
        const ns = String(m.namespace);
        const name = String(m.name);
        const want = waypointBound({
          namespace: ns,
          name,
          labels: labelsOf(o),
          namespaceLabels: this.#labelsByNamespace.get(ns) ?? {},
          gateway: (gns, gname) => this.#gateways.get(`${gns}/${gname}`),
          bound: this.#in.serviceBound(ns, name),
        });
        const prev = prevConditions(current.conditions);
        const mine = prev.filter((c) => c.type === WAYPOINT_BOUND);
        const next = want ? [condition(prev, want.type, want.status, want.reason, want.message)] : [];
        if (!differs(mine, next)) return undefined;
        // Other writers' conditions on the Service are kept; a merge patch replaces the list whole.
        return { conditions: [...prev.filter((c) => c.type !== WAYPOINT_BOUND), ...next] };
      }
      default:
        return undefined;
    }
  }
}

function labelsOf(o: KubeObject): Record<string, string> {
  const l = meta(o).labels;
  if (!isMap(l)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(l)) if (typeof v === 'string') out[k] = v;
  return out;
}
