/**
 * `lab apply -f` and `lab delete -f`. Everything is checked before anything is changed; objects
 * are recorded (Services get a ClusterIP), Pods (given, or generated from Deployments) are made
 * through the CNI chain (pods.ts), waypoint Gateways get their waypoint (waypoints.ts), and the
 * files the mesh reads are rewritten (cluster-files.ts). Both return once every ztunnel knows
 * the result.
 */
import { podsForDeployment } from '../core/kube/deployments.js';
import type { DeploymentObject } from '../core/kube/objects.js';
import { PORTS } from '../core/hbone/constants.js';
import { LabError, netnsPath, requireLab, type Progress } from './cluster.js';
import { writeClusterFiles } from './cluster-files.js';
import { loadManifests } from './manifests.js';
import { addPods, removePod, type PodToAdd } from './pods.js';
import { freeClusterIp } from './services.js';
import { namespaces, objKey, podKey, writeState, type LabPaths, type LabState } from './state.js';
import { getInNetns, until } from './sys.js';
import { ownedBy, programWaypoints, withWaypoints } from './waypoints.js';

type Raw = Record<string, unknown>;

/** Applies manifests: checked as a whole first, then objects, then pods, then the files the mesh reads. */
export async function apply(paths: LabPaths, path: string, say: Progress = () => {}): Promise<void> {
  const s = await requireLab(paths);
  const objects = withWaypoints(paths, s, await loadManifests(path));
  const known = new Set([...namespaces(s).keys(), ...objects.filter((o) => o.kind === 'Namespace').map((o) => o.meta.name)]);
  const missingNs = objects.filter((o) => o.meta.namespace !== undefined && !known.has(o.meta.namespace));
  if (missingNs.length > 0) {
    throw new LabError(`rejected; nothing was applied:\n${missingNs.map((o) => `  ${o.source ?? path}: ${o.kind} ${o.meta.namespace}/${o.meta.name}: metadata.namespace: namespace ${o.meta.namespace} does not exist; apply a Namespace first`).join('\n')}`, 'ERR_LAB_NO_NAMESPACE');
  }
  const wantPods: PodToAdd[] = [];
  const owners = new Set<string>();
  for (const o of objects) {
    const key = objKey(o.kind, o.meta.namespace, o.meta.name);
    if (o.kind === 'Pod') {
      wantPods.push({ raw: JSON.parse(o.rawJson) as Raw });
      continue;
    }
    const raw = JSON.parse(o.rawJson) as Raw;
    if (o.kind === 'Service' && !o.headless) {
      const prev = s.objects[key]?.spec as Raw | undefined;
      const spec = (raw.spec ?? {}) as Raw;
      if (typeof spec.clusterIP !== 'string' || spec.clusterIP === '') spec.clusterIP = (prev?.clusterIP as string) ?? freeClusterIp(s);
      raw.spec = spec;
    }
    if (o.kind === 'Deployment') {
      owners.add(key);
      for (const p of podsForDeployment(o as DeploymentObject)) wantPods.push({ raw: p, owner: key });
    }
    // Status is the controller's: re-applying a Gateway keeps it.
    const prevStatus = s.objects[key]?.status;
    if (o.kind === 'Gateway' && raw.status === undefined && prevStatus !== undefined) raw.status = prevStatus;
    const changed = s.objects[key] === undefined ? 'created' : JSON.stringify(s.objects[key]) === JSON.stringify(raw) ? 'unchanged' : 'configured';
    s.objects[key] = raw;
    say(`${o.kind.toLowerCase()}/${o.meta.name}${o.meta.namespace ? ` -n ${o.meta.namespace}` : ''} ${changed}`);
  }
  // Namespaces and labels first: the agent decides enrolment at CNI ADD from them.
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  const wanted = new Set(wantPods.map((w) => podKey(((w.raw.metadata as Raw).namespace as string) ?? 'default', (w.raw.metadata as Raw).name as string)));
  for (const p of Object.values(s.pods)) {
    const stale = (p.owner && owners.has(p.owner) && !wanted.has(podKey(p.namespace, p.name))) || (wanted.has(podKey(p.namespace, p.name)) && !wantPods.some((w) => JSON.stringify(w.raw) === p.rawJson));
    if (stale) await removePod(paths, s, p, say);
  }
  const todo = wantPods.filter((w) => !s.pods[podKey(((w.raw.metadata as Raw).namespace as string) ?? 'default', (w.raw.metadata as Raw).name as string)]);
  try {
    await addPods(paths, s, todo, say);
  } finally {
    // Whatever was made is recorded, so delete and down find it even when one pod failed.
    await writeState(paths, s);
  }
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  await waitForMesh(paths, s);
  await programWaypoints(paths, s, objects, say);
}

/** Deletes what the manifests name (a Deployment with its pods, a Namespace with everything in it). */
export async function remove(paths: LabPaths, path: string, say: Progress = () => {}): Promise<void> {
  const s = await requireLab(paths);
  const objects = await loadManifests(path);
  for (const o of objects) {
    const key = objKey(o.kind, o.meta.namespace, o.meta.name);
    if (o.kind === 'Pod') {
      const p = s.pods[podKey(o.meta.namespace ?? 'default', o.meta.name)];
      if (p) await removePod(paths, s, p, say);
      continue;
    }
    if (o.kind === 'Namespace') {
      for (const p of Object.values(s.pods)) if (p.namespace === o.meta.name) await removePod(paths, s, p, say);
      for (const [k, v] of Object.entries(s.objects)) if ((v.metadata as Raw).namespace === o.meta.name) delete s.objects[k];
    }
    if (o.kind === 'Deployment') for (const p of Object.values(s.pods)) if (p.owner === key) await removePod(paths, s, p, say);
    if (o.kind === 'Gateway') {
      // The waypoint's Deployment (and its pods), Service and ServiceAccount go with it.
      const ns = o.meta.namespace ?? 'default';
      for (const p of Object.values(s.pods)) if (p.owner === objKey('Deployment', o.meta.namespace, o.meta.name) && ownedBy(s.objects[p.owner] ?? {}, ns, o.meta.name)) await removePod(paths, s, p, say);
      for (const [k, v] of Object.entries(s.objects)) if (ownedBy(v, ns, o.meta.name)) delete s.objects[k];
    }
    if (s.objects[key]) {
      delete s.objects[key];
      say(`${o.kind.toLowerCase()}/${o.meta.name} deleted`);
    }
  }
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  await waitForMesh(paths, s);
}

/** Waits until every node's ztunnel knows every pod and ClusterIP (its admin config dump lists them). */
export async function waitForMesh(paths: LabPaths, s: LabState, timeoutMs = 20_000): Promise<void> {
  const ips = [...Object.values(s.pods).map((p) => p.ip), ...Object.values(s.objects).flatMap((o) => (o.kind === 'Service' && typeof (o.spec as Raw)?.clusterIP === 'string' ? [(o.spec as Raw).clusterIP as string] : []))];
  await Promise.all(
    s.nodes.map((n) =>
      until(
        `ztunnel on ${n.name} to learn the lab's pods and services from the control plane`,
        async () => {
          const dump = await getInNetns(netnsPath(n.netns), `http://127.0.0.1:${PORTS.admin}/config_dump`);
          return ips.every((ip) => dump.includes(`"${ip}"`));
        },
        timeoutMs,
        200,
      ),
    ),
  );
  void paths;
}
