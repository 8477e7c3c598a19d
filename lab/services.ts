/**
 * Services in the lab: ClusterIPs (from `SERVICE_CIDR_PREFIX`.0/24) and the nft table that does
 * kube-proxy's job for pods outside the mesh. Meshed pods never use it: ztunnel routes their
 * connections to a ClusterIP itself.
 */
import { LabError } from './cluster.js';
import { podLabels, type LabState, type PodRecord } from './state.js';
import { sh } from './sys.js';

export const SERVICE_CIDR_PREFIX = '10.96.0';

type Raw = Record<string, unknown>;

/** The lowest ClusterIP no applied object holds. */
export function freeClusterIp(s: LabState): string {
  const used = new Set(Object.values(s.objects).map((o) => (o.spec as Raw | undefined)?.clusterIP));
  for (let i = 10; i < 255; i++) if (!used.has(`${SERVICE_CIDR_PREFIX}.${i}`)) return `${SERVICE_CIDR_PREFIX}.${i}`;
  throw new LabError(`no free ClusterIP left in ${SERVICE_CIDR_PREFIX}.0/24`, 'ERR_LAB_NO_CLUSTER_IP');
}

/** The nft table in each node namespace that does kube-proxy's job for pods outside the mesh. */
export const SERVICE_TABLE = 'lab_services';

/**
 * ClusterIP → endpoints as DNAT rules in every node namespace (round-robin with numgen), replacing
 * the whole table in one `nft -f` transaction. Meshed pods never reach these rules: their
 * connect() is redirected to ztunnel, which balances on its own. DNATed connections are
 * masqueraded so a reply from an endpoint on the client's own bridge still passes the node's
 * conntrack.
 */
export function serviceRules(s: LabState): string {
  const lines = [`table ip ${SERVICE_TABLE}`, `delete table ip ${SERVICE_TABLE}`, `table ip ${SERVICE_TABLE} {`, '  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;'];
  for (const svc of Object.values(s.objects)) {
    if (svc.kind !== 'Service') continue;
    const spec = svc.spec as Raw;
    const vip = spec.clusterIP;
    const selector = spec.selector as Record<string, string> | undefined;
    if (typeof vip !== 'string' || !/^\d+\.\d+\.\d+\.\d+$/.test(vip) || !selector) continue;
    const ns = ((svc.metadata as Raw).namespace as string) ?? 'default';
    const endpoints = Object.values(s.pods).filter((p) => p.namespace === ns && Object.entries(selector).every(([k, v]) => podLabels(p)[k] === v));
    for (const port of (spec.ports as Raw[]) ?? []) {
      const targets = endpoints.flatMap((p) => {
        const t = targetPort(p, port.targetPort ?? port.port);
        return t === undefined ? [] : [{ ip: p.ip, port: t }];
      });
      if (targets.length === 0) continue;
      // One rule per distinct target port (a named targetPort may differ per pod).
      for (const tp of new Set(targets.map((x) => x.port))) {
        const ips = targets.filter((x) => x.port === tp).map((x) => x.ip);
        lines.push(`    ip daddr ${vip} tcp dport ${Number(port.port)} dnat to numgen inc mod ${ips.length} map { ${ips.map((ip, i) => `${i} : ${ip}`).join(', ')} } : ${tp}`);
      }
    }
  }
  lines.push('  }', '  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;', '    ct status dnat masquerade', '  }', '}');
  return `${lines.join('\n')}\n`;
}

function targetPort(p: PodRecord, target: unknown): number | undefined {
  if (typeof target === 'number') return target;
  if (typeof target === 'string' && /^\d+$/.test(target)) return Number(target);
  for (const c of ((p.raw.spec as Raw).containers as Raw[]) ?? []) {
    for (const port of (c.ports as Raw[]) ?? []) if (port.name === target) return Number(port.containerPort);
  }
  return undefined;
}

/** Loads `serviceRules` into every node namespace. */
export async function writeServiceRules(s: LabState): Promise<void> {
  const rules = serviceRules(s);
  for (const n of s.nodes) await sh('ip', ['netns', 'exec', n.netns, 'nft', '-f', '-'], { input: rules });
}
