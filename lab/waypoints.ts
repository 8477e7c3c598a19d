/**
 * The lab's waypoint controller: what Istio's gateway controller does in a cluster. For each
 * Gateway of class `istio-waypoint` it derives a ServiceAccount, a Service (`mesh` port 15008,
 * selecting the Gateway's pods by `gateway.networking.k8s.io/gateway-name`) and a Deployment
 * whose pod runs the waypoint (`lab/waypoint`) in control-plane mode: its certificate (the
 * identity of the Gateway's service account) from the CA, its routes and policies from discovery.
 * Once the waypoint answers its readiness probe, the Gateway's status gets the Service's address
 * and `Accepted`/`Programmed` conditions, as in a cluster.
 *
 * Derived objects carry an ownerReference to their Gateway and are deleted with it. `apply`
 * (apply.ts) adds them to what it applies (`withWaypoints`) and, once the pods run, waits for
 * each waypoint and writes its Gateway's status (`programWaypoints`).
 */
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, GATEWAY_NAME_LABEL, WAYPOINT_CLASS, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../core/labels.js';
import { PORTS } from '../core/hbone/constants.js';
import { formatProblem, type ManifestObject } from '../core/kube/objects.js';
import { parseManifests } from '../core/kube/parse.js';
import { ownerReference } from '../core/kube/deployments.js';
import { CONTROL_PLANE_PORT, LabError, netnsPath, type Progress } from './cluster.js';
import { writeClusterFiles } from './cluster-files.js';
import { objKey, writeState, type LabPaths, type LabState } from './state.js';
import { getInNetns, until } from './sys.js';

type Raw = Record<string, unknown>;

/** Whether `o` is a waypoint Gateway (a raw object as applied). */
export function isWaypointGateway(o: Raw): boolean {
  return o.kind === 'Gateway' && (o.spec as Raw | undefined)?.gatewayClassName === WAYPOINT_CLASS;
}

/** The ownerReference derived objects carry. */
function ownerRef(gw: Raw): Raw {
  // With the uid the upstream schema requires (the parser refuses an ownerReference without one).
  return ownerReference(gw);
}

/** Whether `o` was derived from the Gateway `namespace/name`. */
export function ownedBy(o: Raw, namespace: string, name: string): boolean {
  const m = o.metadata as Raw | undefined;
  if (!m || ((m.namespace as string | undefined) ?? 'default') !== namespace) return false;
  const refs = Array.isArray(m.ownerReferences) ? (m.ownerReferences as Raw[]) : [];
  return refs.some((r) => r.kind === 'Gateway' && r.name === name);
}

/**
 * The objects the controller keeps for a waypoint Gateway.
 *
 * @example
 * derivedObjects(paths, state, gateway) // => [ServiceAccount waypoint, Service waypoint, Deployment waypoint]
 */
export function derivedObjects(paths: LabPaths, s: LabState, gw: Raw): Raw[] {
  const meta = gw.metadata as Raw;
  const name = meta.name as string;
  const namespace = (meta.namespace as string | undefined) ?? 'default';
  const labels = { [GATEWAY_NAME_LABEL]: name, [WAYPOINT_MANAGED_LABEL]: WAYPOINT_MANAGED_VALUE };
  const listeners = Array.isArray((gw.spec as Raw).listeners) ? ((gw.spec as Raw).listeners as Raw[]) : [];
  const hbonePort = Number(listeners.find((l) => l.protocol === 'HBONE')?.port ?? PORTS.hbone);
  const common = (kind: string, apiVersion: string, extraLabels: Record<string, string> = {}) => ({
    apiVersion,
    kind,
    metadata: { name, namespace, labels: { ...labels, ...extraLabels }, ownerReferences: [ownerRef(gw)] },
  });
  const env: Record<string, string> = {
    WAYPOINT_NAME: name,
    SERVICE_ACCOUNT: name,
    CONTROL_PLANE_ADDRESS: `${s.controlPlaneIp}:${CONTROL_PLANE_PORT}`,
    CONTROL_PLANE_ROOT_CERT_FILE: join(paths.stateDir, 'ca', 'root-cert.pem'),
    LAB_TOKENS_DIR: join(paths.stateDir, 'tokens'),
    HBONE_PORT: String(hbonePort),
    DRAIN_TIMEOUT_SECONDS: '1',
  };
  return [
    common('ServiceAccount', 'v1'),
    {
      ...common('Service', 'v1'),
      spec: { selector: { [GATEWAY_NAME_LABEL]: name }, ports: [{ name: 'mesh', port: hbonePort, targetPort: hbonePort, protocol: 'TCP' }] },
    },
    {
      ...common('Deployment', 'apps/v1'),
      spec: {
        replicas: 1,
        selector: { matchLabels: { [GATEWAY_NAME_LABEL]: name } },
        template: {
          // A waypoint speaks HBONE itself: its own traffic is never redirected to ztunnel.
          metadata: { labels: { ...labels, [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE.none } },
          spec: {
            serviceAccountName: name,
            containers: [
              {
                name: 'istio-proxy',
                image: 'lab/waypoint',
                ports: [{ name: 'mesh', containerPort: hbonePort }, { name: 'metrics', containerPort: PORTS.metrics }],
                env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
              },
            ],
          },
        },
      },
    },
  ];
}

/** The status a Gateway gets once its waypoint is ready (or not). */
export function gatewayStatus(address: string | undefined, ready: boolean, generation: number): Raw {
  const now = new Date().toISOString();
  const cond = (type: string, ok: boolean, reason: string, message: string) => ({ type, status: ok ? 'True' : 'False', reason, message, lastTransitionTime: now, observedGeneration: generation });
  return {
    ...(address ? { addresses: [{ type: 'IPAddress', value: address }] } : {}),
    conditions: [
      cond('Accepted', true, 'Accepted', 'Resource accepted'),
      cond('Programmed', ready, ready ? 'Programmed' : 'Pending', ready ? 'Resource programmed, assigned to service(s)' : 'the waypoint pod is not ready yet'),
    ],
  };
}

/** `objects` plus, for each waypoint Gateway among them, what the lab's waypoint controller derives. */
export function withWaypoints(paths: LabPaths, s: LabState, objects: ManifestObject[]): ManifestObject[] {
  const out = [...objects];
  for (const o of objects) {
    const raw = JSON.parse(o.rawJson) as Raw;
    if (!isWaypointGateway(raw)) continue;
    const where = `${o.source ?? 'manifest'} (the waypoint of Gateway ${o.meta.namespace ?? 'default'}/${o.meta.name})`;
    const r = parseManifests(derivedObjects(paths, s, raw).map((d) => yaml.dump(d, { noRefs: true })).join('---\n'), where);
    const errors = r.problems.filter((p) => p.severity === 'error');
    if (errors.length > 0) throw new LabError(`rejected; nothing was applied:\n${errors.map((p) => `  ${formatProblem(p)}`).join('\n')}`, 'ERR_LAB_BAD_MANIFEST');
    // What the user applied under the same name wins (a Service or ServiceAccount of their own).
    for (const d of r.objects) if (!objects.some((x) => x.kind === d.kind && x.meta.name === d.meta.name && x.meta.namespace === d.meta.namespace)) out.push(d);
  }
  return out;
}

/** Waits for each applied waypoint Gateway's pod to be ready, then writes the Gateway's status (address, Programmed). */
export async function programWaypoints(paths: LabPaths, s: LabState, applied: readonly ManifestObject[], say: Progress): Promise<void> {
  const gateways = applied.filter((o) => o.kind === 'Gateway' && isWaypointGateway(s.objects[objKey('Gateway', o.meta.namespace, o.meta.name)] ?? {}));
  if (gateways.length === 0) return;
  for (const o of gateways) {
    const ns = o.meta.namespace ?? 'default';
    const key = objKey('Gateway', o.meta.namespace, o.meta.name);
    const pods = Object.values(s.pods).filter((p) => p.owner === objKey('Deployment', o.meta.namespace, o.meta.name));
    const svc = s.objects[objKey('Service', o.meta.namespace, o.meta.name)]?.spec as Raw | undefined;
    let ready = false;
    try {
      await until(
        `the waypoint of Gateway ${ns}/${o.meta.name} to be ready`,
        async () => {
          for (const p of pods) {
            const n = s.nodes.find((x) => x.name === p.node)!;
            const ok = await getInNetns(netnsPath(n.netns), `http://${p.ip}:${PORTS.readiness}/healthz/ready`).then(() => true, () => false);
            if (ok) return true;
          }
          return false;
        },
        20_000,
        200,
      );
      ready = true;
    } catch (err) {
      say(`gateway/${o.meta.name} -n ${ns}: ${(err as Error).message}; see ambientctl lab logs ${pods[0]?.name ?? o.meta.name} -n ${ns}`);
    }
    const gw = s.objects[key]!;
    s.objects[key] = { ...gw, status: gatewayStatus(svc?.clusterIP as string | undefined, ready, Number((gw.metadata as Raw).generation ?? 1)) };
    if (ready) say(`gateway/${o.meta.name} -n ${ns} programmed: waypoint ${pods.map((p) => `${p.name} (${p.ip})`).join(', ')} behind ${svc?.clusterIP as string}:${PORTS.hbone}`);
  }
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
}
