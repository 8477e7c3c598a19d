/**
 * The one boundary between Kubernetes API objects and the manifest store: an object as the API
 * server returns it → the document `parseObject` (core/kube/parse.ts, shared with the file
 * source) takes. Nothing else in the Kubernetes source reads object fields for the store.
 *
 * What changes on the way:
 * - `apiVersion` and `kind` are filled in from the resource when missing (the API server omits
 *   them on the items of lists of built-in kinds);
 * - server-managed metadata (resourceVersion, generation, managedFields, timestamps, owner
 *   references, finalizers) and kubectl's `last-applied-configuration` annotation are dropped:
 *   they change on every write and mean nothing to the mesh, and the store tells a real change
 *   from a no-op by comparing documents. A Pod's `uid` is kept: it never changes for the life of
 *   the pod, and node agents match a CNI ADD (K8S_POD_UID) against it;
 * - `status` is kept only where the mesh reads it: a Pod's phase, IPs and Ready condition (not
 *   timestamps), a Gateway's addresses. The status of the kinds the control plane writes status to
 *   is dropped, so writing a status never triggers a new conversion.
 */
import type { KubeObject } from '../../core/kube/api.js';
import { apiVersionOf, type KubeResource } from './kinds.js';

const DROPPED_ANNOTATIONS = new Set(['kubectl.kubernetes.io/last-applied-configuration']);

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The document for `parseObject`.
 *
 * @example
 * const doc = toManifestDocument(resourceOf('Pod')!, podFromTheApi);
 * const { object, problems } = parseObject(doc, 'kubernetes:pods', rootNamespace);
 */
export function toManifestDocument(r: KubeResource, obj: KubeObject): Record<string, unknown> {
  const meta = isMap(obj.metadata) ? obj.metadata : {};
  const metadata: Record<string, unknown> = {};
  for (const k of ['name', 'namespace', 'labels', 'deletionTimestamp'] as const) if (meta[k] !== undefined && meta[k] !== null) metadata[k] = meta[k];
  if (r.kind === 'Pod' && typeof meta.uid === 'string') metadata.uid = meta.uid;
  if (isMap(meta.annotations)) {
    const annotations = Object.fromEntries(Object.entries(meta.annotations).filter(([k]) => !DROPPED_ANNOTATIONS.has(k)));
    if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
  }
  const doc: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'metadata' || k === 'status' || k === 'apiVersion' || k === 'kind') continue;
    doc[k] = v;
  }
  const status = statusFor(r, obj.status);
  return {
    apiVersion: typeof obj.apiVersion === 'string' ? obj.apiVersion : apiVersionOf(r),
    kind: typeof obj.kind === 'string' ? obj.kind : r.kind,
    metadata,
    ...doc,
    ...(status !== undefined ? { status } : {}),
  };
}

function statusFor(r: KubeResource, status: unknown): Record<string, unknown> | undefined {
  if (!isMap(status)) return undefined;
  switch (r.kind) {
    case 'Pod': {
      const out: Record<string, unknown> = {};
      if (status.phase !== undefined) out.phase = status.phase;
      if (status.podIP !== undefined) out.podIP = status.podIP;
      if (status.podIPs !== undefined) out.podIPs = status.podIPs;
      if (Array.isArray(status.conditions)) {
        const ready = status.conditions.filter((c) => isMap(c) && c.type === 'Ready').map((c) => ({ type: 'Ready', status: (c as Record<string, unknown>).status }));
        if (ready.length > 0) out.conditions = ready;
      }
      return out;
    }
    case 'Gateway':
      return status.addresses !== undefined ? { addresses: status.addresses } : undefined;
    default:
      return undefined;
  }
}

/** `namespace/name` of an API object (`/name` when cluster-scoped). */
export function objectKey(obj: KubeObject): string {
  const meta = isMap(obj.metadata) ? obj.metadata : {};
  return `${typeof meta.namespace === 'string' ? meta.namespace : ''}/${typeof meta.name === 'string' ? meta.name : ''}`;
}
