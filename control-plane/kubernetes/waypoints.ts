/**
 * The waypoint controller in a cluster: what istiod's gateway controller does for Gateways of
 * class `istio-waypoint` (the lab's `lab/waypoints.ts` is the same for the lab). For each one, in
 * the Gateway's namespace, it keeps:
 *
 * - a ServiceAccount named after the Gateway (the waypoint's SPIFFE identity),
 * - a Service of the same name (`mesh` port, 15008 by default) selecting the waypoint's pods by
 *   `gateway.networking.k8s.io/gateway-name`: its cluster IP is the waypoint's address,
 * - a Deployment running the waypoint (`node dist/waypoint/main.js`, `WAYPOINT_IMAGE`) in
 *   control-plane mode: a projected token (audience `TOKEN_AUDIENCE`) gets it its own identity
 *   from the CA, discovery gets it its routes and policies; requests and limits from
 *   `WAYPOINT_RESOURCES`, non-root with a read-only root filesystem and no capabilities, ready on
 *   `/healthz/ready`, and a grace period longer than its drain,
 * - the ConfigMap `istio-ca-root-cert` holding the mesh roots (istiod publishes it in every
 *   namespace; this does it where waypoints run), which the waypoint trusts the control plane with.
 *
 * Derived objects carry a controller ownerReference to the Gateway, so Kubernetes' garbage
 * collector deletes them with it; they are labelled `gateway.istio.io/managed`. A derived object
 * deleted by someone else is put back, and one whose desired form changed (the Gateway, the
 * control plane's settings) is patched: a hash of what was written, in an annotation, tells that
 * apart from the API server's defaults. A hand edit that keeps the annotation (`kubectl scale`,
 * `set image`) is left alone, as istiod leaves it until the Gateway changes. Only the leader writes.
 *
 * The Gateway's `Programmed` condition and `status.addresses` follow the Deployment's ready
 * replicas and the Service's cluster IP (`gatewayState`, which the status writer asks).
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../core/telemetry/log.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, GATEWAY_NAME_LABEL, WAYPOINT_CLASS, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../../core/labels.js';
import { PORTS } from '../../core/hbone/constants.js';
import { KubeApiError, type KubeApi, type KubeObject } from '../../core/kube/api.js';
import { Informer, type InformerTimings } from './informer.js';
import { collectionPath, objectPath } from './kinds.js';
import { DebouncedTask } from './debounced.js';
import type { ContainerResources } from './resources.js';

/** Label Istio puts on the waypoints its controller manages. */
/** Istio's name for the per-namespace root certificate ConfigMap. */
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
const HASH_ANNOTATION = 'ambient.mesh/derived-hash';

/**
 * The waypoint's drain after SIGTERM (its `DRAIN_TIMEOUT_SECONDS`; docs/waypoint.md: readiness 503,
 * GOAWAY to HBONE peers, requests in flight get this long). Written into the Deployment so that the
 * grace period below is measured against the drain the pod really runs, not the waypoint's default.
 */
export const WAYPOINT_DRAIN_SECONDS = 25;
/**
 * Kubernetes sends SIGKILL this long after SIGTERM: the drain plus time for the last responses
 * and the process exit; a grace period at or below the drain would cut requests the drain promised
 * to finish.
 */
export const WAYPOINT_TERMINATION_GRACE_SECONDS = WAYPOINT_DRAIN_SECONDS + 5;

const DEPLOYMENTS = { group: 'apps', version: 'v1', plural: 'deployments' } as const;
const SERVICES = { group: '', version: 'v1', plural: 'services' } as const;
const SERVICE_ACCOUNTS = { group: '', version: 'v1', plural: 'serviceaccounts' } as const;
const CONFIG_MAPS = { group: '', version: 'v1', plural: 'configmaps' } as const;

/** What every waypoint Deployment is built with (the control plane's own settings). */
export interface WaypointDeploymentSettings {
  /** The image (the one image every component runs from); unset: the controller creates nothing and says why. */
  readonly image?: string;
  readonly imagePullPolicy?: string;
  /** Requests and limits of the waypoint container; absent or empty: none (BestEffort). */
  readonly resources?: ContainerResources;
  /** `host:port` of the control plane, as pods reach it (`istiod.istio-system.svc:15012`). */
  readonly controlPlaneAddress: string;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly tokenAudience: string;
}

export interface WaypointControllerInputs {
  readonly api: KubeApi;
  readonly logger: Logger;
  readonly settings: WaypointDeploymentSettings;
  /** Gateways, Services and ServiceAccounts as the Kubernetes source last saw them. */
  readonly objects: (kind: 'Gateway' | 'Service' | 'ServiceAccount') => Iterable<KubeObject>;
  readonly object: (kind: 'Service' | 'ServiceAccount', namespace: string, name: string) => KubeObject | undefined;
  /** The mesh roots (PEM) the waypoints must trust. */
  readonly roots: () => readonly string[];
  /** Called when a Deployment's readiness changed (the status writer re-checks Gateways). */
  readonly onChange?: () => void;
  readonly timings?: Partial<InformerTimings>;
  readonly debounceMs?: number;
}

/** What the status writer reports of a waypoint Gateway. */
export interface GatewayState {
  readonly programmed: boolean;
  readonly reason: string;
  readonly message: string;
  readonly address?: string;
}

type Obj = Record<string, unknown>;

function meta(o: KubeObject | undefined): Obj {
  return (o?.metadata ?? {}) as Obj;
}

function isWaypoint(gw: KubeObject): boolean {
  return (gw.spec as Obj | undefined)?.gatewayClassName === WAYPOINT_CLASS && meta(gw).deletionTimestamp === undefined;
}

function hashOf(v: unknown): string {
  return createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
}

function hasResources(r: ContainerResources | undefined): r is ContainerResources {
  return Object.keys(r?.requests ?? {}).length > 0 || Object.keys(r?.limits ?? {}).length > 0;
}

/** The HBONE listener's port of a waypoint Gateway. */
function hbonePort(gw: KubeObject): number {
  const listeners = Array.isArray((gw.spec as Obj | undefined)?.listeners) ? ((gw.spec as Obj).listeners as Obj[]) : [];
  const p = Number(listeners.find((l) => l.protocol === 'HBONE')?.port);
  return Number.isInteger(p) && p > 0 ? p : PORTS.hbone;
}

/**
 * The objects kept for a waypoint Gateway (ConfigMap aside), each with its hash annotation.
 *
 * @example
 * derivedObjects(gateway, settings) // [ServiceAccount wp, Service wp, Deployment wp]
 */
export function derivedObjects(gw: KubeObject, s: WaypointDeploymentSettings): KubeObject[] {
  const m = meta(gw);
  const name = String(m.name);
  const namespace = String(m.namespace);
  const port = hbonePort(gw);
  const labels = { [GATEWAY_NAME_LABEL]: name, [WAYPOINT_MANAGED_LABEL]: WAYPOINT_MANAGED_VALUE };
  const owner = { apiVersion: gw.apiVersion ?? 'gateway.networking.k8s.io/v1', kind: 'Gateway', name, uid: m.uid, controller: true, blockOwnerDeletion: true };
  const metadata = { name, namespace, labels, ownerReferences: [owner] };
  const env = (name: string, value: string) => ({ name, value });
  const field = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });
  const objects: KubeObject[] = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata,
      spec: { selector: { [GATEWAY_NAME_LABEL]: name }, ports: [{ name: 'mesh', port, targetPort: port, protocol: 'TCP', appProtocol: 'all' }] },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata,
      spec: {
        replicas: 1,
        selector: { matchLabels: { [GATEWAY_NAME_LABEL]: name } },
        template: {
          metadata: {
            // A waypoint speaks HBONE itself: its own traffic is never redirected to ztunnel.
            labels: { ...labels, [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE.none },
            annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(PORTS.metrics), 'prometheus.io/path': '/metrics' },
          },
          spec: {
            serviceAccountName: name,
            terminationGracePeriodSeconds: WAYPOINT_TERMINATION_GRACE_SECONDS,
            // Its only credential is the projected token below (audience TOKEN_AUDIENCE); it never
            // calls the Kubernetes API, so it gets no API token.
            automountServiceAccountToken: false,
            securityContext: { runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, fsGroup: 1337, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'istio-proxy',
                image: s.image ?? '',
                ...(s.imagePullPolicy ? { imagePullPolicy: s.imagePullPolicy } : {}),
                command: ['node', 'dist/waypoint/main.js'],
                ports: [
                  { name: 'mesh', containerPort: port, protocol: 'TCP' },
                  { name: 'http-metrics', containerPort: PORTS.metrics, protocol: 'TCP' },
                  { name: 'http-ready', containerPort: PORTS.readiness, protocol: 'TCP' },
                ],
                env: [
                  env('WAYPOINT_NAME', name),
                  env('SERVICE_ACCOUNT', name),
                  field('POD_NAMESPACE', 'metadata.namespace'),
                  field('NODE_NAME', 'spec.nodeName'),
                  field('WAYPOINT_ADDRESS', 'status.podIP'),
                  env('HBONE_PORT', String(port)),
                  env('CONTROL_PLANE_ADDRESS', s.controlPlaneAddress),
                  env('CONTROL_PLANE_ROOT_CERT_FILE', '/var/run/secrets/istio/root-cert.pem'),
                  env('NODE_TOKEN_FILE', '/var/run/secrets/tokens/istio-token'),
                  env('TRUST_DOMAIN', s.trustDomain),
                  env('ROOT_NAMESPACE', s.rootNamespace),
                  env('DRAIN_TIMEOUT_SECONDS', String(WAYPOINT_DRAIN_SECONDS)),
                ],
                ...(hasResources(s.resources) ? { resources: s.resources } : {}),
                readinessProbe: { httpGet: { path: '/healthz/ready', port: PORTS.readiness }, periodSeconds: 5, failureThreshold: 3 },
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } },
                volumeMounts: [
                  { name: 'istio-token', mountPath: '/var/run/secrets/tokens', readOnly: true },
                  { name: 'istiod-ca-cert', mountPath: '/var/run/secrets/istio', readOnly: true },
                ],
              },
            ],
            volumes: [
              { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: s.tokenAudience, expirationSeconds: 43200, path: 'istio-token' } }] } },
              { name: 'istiod-ca-cert', configMap: { name: ROOT_CERT_CONFIGMAP } },
            ],
          },
        },
      },
    },
  ];
  for (const o of objects) (o.metadata as Obj).annotations = { [HASH_ANNOTATION]: hashOf(o) };
  return objects;
}

/**
 * @example
 * const waypoints = new WaypointController({ api, logger, settings, objects: (k) => source.objects(k), object: (k, ns, n) => source.object(k, ns, n), roots: () => cp.ca.rootsPem });
 * await waypoints.start();
 * elector.onChange((leader) => waypoints.setActive(leader));
 */
export class WaypointController {
  readonly #in: WaypointControllerInputs;
  readonly #deployments = new Map<string, KubeObject>();
  readonly #configMaps = new Map<string, KubeObject>();
  readonly #informers: Informer[];
  readonly #task: DebouncedTask;
  #warnedNoImage = false;
  /** Objects whose create answered 409 (logged once each). */
  readonly #conflicts = new Set<string>();
  /** Writes done, for tests. */
  readonly stats = { writes: 0, failures: 0 };

  constructor(inputs: WaypointControllerInputs) {
    this.#in = inputs;
    this.#task = new DebouncedTask(() => this.#reconcile(), inputs.debounceMs ?? 200, (err) => inputs.logger.error({ err }, 'waypoint reconcile failed; trying again'));
    const mirror = (into: Map<string, KubeObject>) => ({
      replace: (items: readonly KubeObject[]) => {
        into.clear();
        for (const o of items) into.set(`${meta(o).namespace}/${meta(o).name}`, o);
        this.#changed();
      },
      upsert: (o: KubeObject) => {
        into.set(`${meta(o).namespace}/${meta(o).name}`, o);
        this.#changed();
      },
      remove: (o: KubeObject) => {
        into.delete(`${meta(o).namespace}/${meta(o).name}`);
        this.#changed();
      },
    });
    const common = { api: inputs.api, ...(inputs.timings ? { timings: inputs.timings } : {}) };
    this.#informers = [
      new Informer({ ...common, path: collectionPath(DEPLOYMENTS), selectors: { labelSelector: `${WAYPOINT_MANAGED_LABEL}=${WAYPOINT_MANAGED_VALUE}` }, handler: mirror(this.#deployments), logger: inputs.logger.child({ resource: 'deployments' }) }),
      new Informer({ ...common, path: collectionPath(CONFIG_MAPS), selectors: { fieldSelector: `metadata.name=${ROOT_CERT_CONFIGMAP}` }, handler: mirror(this.#configMaps), logger: inputs.logger.child({ resource: 'configmaps' }) }),
    ];
  }

  /** Lists and watches the derived Deployments and root-certificate ConfigMaps. */
  async start(): Promise<void> {
    await Promise.all(this.#informers.map((i) => i.start()));
  }

  close(): void {
    this.setActive(false);
    for (const i of this.#informers) i.close();
  }

  /** Only the leader writes. */
  setActive(active: boolean): void {
    this.#task.setActive(active);
  }

  /** Something changed (a Gateway, a Service, the roots): reconcile after the debounce. */
  schedule(): void {
    this.#task.schedule();
  }

  /** The state the Gateway's status reports. */
  gatewayState(namespace: string, name: string): GatewayState {
    if (!this.#in.settings.image) {
      return { programmed: false, reason: 'Invalid', message: 'the control plane has no WAYPOINT_IMAGE, so it deploys no waypoints; set it (the charts do)' };
    }
    const d = this.#deployments.get(`${namespace}/${name}`);
    const svc = this.#in.object('Service', namespace, name);
    const ip = (svc?.spec as Obj | undefined)?.clusterIP;
    const address = typeof ip === 'string' && ip !== '' && ip !== 'None' ? ip : undefined;
    const ready = Number((d?.status as Obj | undefined)?.readyReplicas ?? 0);
    if (!d) return { programmed: false, reason: 'Pending', message: `deployment ${namespace}/${name} is being created`, ...(address ? { address } : {}) };
    if (ready < 1) return { programmed: false, reason: 'Pending', message: `deployment ${namespace}/${name} has no ready replica yet`, ...(address ? { address } : {}) };
    if (!address) return { programmed: false, reason: 'AddressNotAssigned', message: `service ${namespace}/${name} has no cluster IP yet` };
    return { programmed: true, reason: 'Programmed', message: 'Resource programmed, assigned to service(s)', address };
  }

  #changed(): void {
    this.#in.onChange?.();
    this.schedule();
  }

  /** Creates or repairs the derived objects of every waypoint Gateway. */
  reconcile(): Promise<void> {
    return this.#task.run();
  }

  async #reconcile(): Promise<void> {
    const s = this.#in.settings;
    const gateways = [...this.#in.objects('Gateway')].filter(isWaypoint);
    if (!s.image) {
      if (gateways.length > 0 && !this.#warnedNoImage) this.#in.logger.warn('waypoint gateways exist but WAYPOINT_IMAGE is not set: no waypoint is deployed');
      this.#warnedNoImage = true;
      return;
    }
    const namespaces = new Set<string>();
    for (const gw of gateways) {
      namespaces.add(String(meta(gw).namespace));
      for (const want of derivedObjects(gw, s)) await this.#ensure(want);
    }
    const rootsPem = `${this.#in.roots().join('\n').trim()}\n`;
    for (const ns of namespaces) {
      await this.#ensure({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: ROOT_CERT_CONFIGMAP, namespace: ns }, data: { 'root-cert.pem': rootsPem } });
    }
  }

  /** Creates `want`, or patches it when the stored one was not written from the same desired object. */
  async #ensure(want: KubeObject): Promise<void> {
    const m = meta(want);
    const ns = String(m.namespace);
    const name = String(m.name);
    const r = want.kind === 'Deployment' ? DEPLOYMENTS : want.kind === 'Service' ? SERVICES : want.kind === 'ServiceAccount' ? SERVICE_ACCOUNTS : CONFIG_MAPS;
    const current =
      want.kind === 'Deployment'
        ? this.#deployments.get(`${ns}/${name}`)
        : want.kind === 'ConfigMap'
          ? this.#configMaps.get(`${ns}/${name}`)
          : this.#in.object(want.kind as 'Service' | 'ServiceAccount', ns, name);
    const same =
      want.kind === 'ConfigMap'
        ? JSON.stringify((current as Obj | undefined)?.data) === JSON.stringify(want.data)
        : ((meta(current).annotations ?? {}) as Record<string, string>)[HASH_ANNOTATION] === ((m.annotations ?? {}) as Record<string, string>)[HASH_ANNOTATION];
    if (current && same) return;
    const what = `${want.kind} ${ns}/${name}`;
    try {
      if (!current) {
        await this.#in.api.request('POST', collectionPath(r, ns), { body: want });
        this.#in.logger.info({ object: what }, 'waypoint object created');
      } else {
        // A merge patch of what we own; the API server's defaults and allocations (cluster IP) stay.
        await this.#in.api.request('PATCH', objectPath(r, ns, name), { body: want, contentType: 'application/merge-patch+json' });
        this.#in.logger.info({ object: what }, 'waypoint object updated');
      }
      this.stats.writes++;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) {
        // Created meanwhile by an earlier pass whose event is not here yet, or an object of the same
        // name that is not ours (no managed label, so the informer does not show it): say so once.
        if (!this.#conflicts.has(what)) this.#in.logger.warn({ object: what }, 'an object of this name already exists and is not managed by the control plane; rename it or delete it to let the waypoint deploy');
        this.#conflicts.add(what);
        return;
      }
      this.stats.failures++;
      this.#in.logger.warn({ object: what, err: (err as Error).message }, 'could not write a waypoint object; will retry');
      setTimeout(() => this.schedule(), 2_000).unref();
    }
  }
}
