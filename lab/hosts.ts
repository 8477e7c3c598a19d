/**
 * Service names in the lab: each pod gets its own hosts file, bind-mounted on its /etc/hosts
 * (sys.ts `podArgv`), listing every Service with a ClusterIP. There is no cluster DNS.
 */
import { writeFile } from 'node:fs/promises';
import type { LabState, PodRecord } from './state.js';

const CLUSTER_DOMAIN = 'svc.cluster.local';

type Raw = Record<string, unknown>;

/** Each pod's /etc/hosts: every Service as `svc.ns.svc.cluster.local svc.ns` (and `svc` in the pod's own namespace). */
export async function writeHostsFiles(s: LabState, only?: readonly PodRecord[]): Promise<void> {
  const services = Object.values(s.objects).filter((o) => o.kind === 'Service' && typeof (o.spec as Raw)?.clusterIP === 'string');
  for (const p of only ?? Object.values(s.pods)) {
    const lines = ['127.0.0.1\tlocalhost', `${p.ip}\t${p.name}`];
    for (const svc of services) {
      const m = svc.metadata as Raw;
      const ns = (m.namespace as string) ?? 'default';
      const names = [`${m.name}.${ns}.${CLUSTER_DOMAIN}`, `${m.name}.${ns}`, ...(ns === p.namespace ? [m.name as string] : [])];
      lines.push(`${(svc.spec as Raw).clusterIP}\t${names.join(' ')}`);
    }
    // In place (not by rename): the file is bind-mounted into running pods by inode.
    await writeFile(p.hosts, `${lines.join('\n')}\n`);
  }
}
