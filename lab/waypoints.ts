/**
 * The lab's waypoint controller: what Istio's gateway controller does in a cluster. For each
 * Gateway of class `istio-waypoint` it derives a ServiceAccount, a Service (`mesh` port 15008,
 * selecting the Gateway's pods by `gateway.networking.k8s.io/gateway-name`) and a Deployment
 * whose pod runs the waypoint (`lab/waypoint`) in control-plane mode: its certificate (the
 * identity of the Gateway's service account) from the CA, its routes and policies from discovery.
 * Once the waypoint answers its readiness probe, the Gateway's status gets the Service's address
 * and `Accepted`/`Programmed` conditions, as in a cluster.
 *
 * Derived objects carry an ownerReference to their Gateway and are deleted with it.
 */
import { join } from 'node:path';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, GATEWAY_NAME_LABEL, WAYPOINT_CLASS, WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE } from '../core/labels.js';
import { PORTS } from '../core/hbone/constants.js';
import { CONTROL_PLANE_PORT } from './cluster.js';
import type { LabPaths, LabState } from './state.js';

type Raw = Record<string, unknown>;

/** Whether `o` is a waypoint Gateway (a raw object as applied). */
export function isWaypointGateway(o: Raw): boolean {
  return o.kind === 'Gateway' && (o.spec as Raw | undefined)?.gatewayClassName === WAYPOINT_CLASS;
}

/** The ownerReference derived objects carry. */
function ownerRef(gw: Raw): Raw {
  return { apiVersion: gw.apiVersion, kind: 'Gateway', name: (gw.metadata as Raw).name, controller: true };
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
