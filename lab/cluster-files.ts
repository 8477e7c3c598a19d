/**
 * What the lab's record turns into for the rest of the mesh, rewritten whole after every change:
 * the control plane's manifests (pods with their node and IP, services with their ClusterIP,
 * policies as given), the node agents' desired state, each pod's hosts file (hosts.ts) and the
 * Service rules of every node (services.ts).
 */
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { desiredFile, manifestsDir } from './cluster.js';
import { writeHostsFiles } from './hosts.js';
import { writeServiceRules } from './services.js';
import { namespaces, objKey, podLabels, writeAtomic, type LabPaths, type LabState } from './state.js';

type Raw = Record<string, unknown>;

/** Writes the control plane's manifests and the agents' desired state from the lab's record. */
export async function writeClusterFiles(paths: LabPaths, s: LabState): Promise<void> {
  const nss = namespaces(s);
  const docs: Raw[] = [];
  for (const [name, labels] of nss) {
    const applied = s.objects[objKey('Namespace', undefined, name)];
    docs.push(applied ?? { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  }
  for (const o of Object.values(s.objects)) if (o.kind !== 'Namespace' && o.kind !== 'Deployment') docs.push(o);
  for (const p of Object.values(s.pods)) {
    docs.push({ ...p.raw, spec: { ...(p.raw.spec as Raw), nodeName: p.node }, status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] } });
  }
  await writeAtomic(join(manifestsDir(paths), 'lab.yaml'), docs.map((d) => yaml.dump(d, { noRefs: true })).join('---\n'));
  const peerAuthentications = Object.values(s.objects)
    .filter((o) => o.kind === 'PeerAuthentication')
    .map((o) => ({ name: (o.metadata as Raw).name, namespace: (o.metadata as Raw).namespace ?? 'default', spec: o.spec ?? {} }));
  const desired = {
    namespaces: [...nss].map(([name, labels]) => ({ name, labels })),
    pods: Object.values(s.pods).map((p) => ({ namespace: p.namespace, name: p.name, uid: p.uid, node: p.node, labels: podLabels(p), ips: [p.ip] })),
    peerAuthentications,
  };
  await writeAtomic(desiredFile(paths), yaml.dump(desired));
  await writeHostsFiles(s);
  await writeServiceRules(s);
}
