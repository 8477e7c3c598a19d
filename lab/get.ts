/**
 * `lab get`, `lab exec` and `lab logs`: what the lab holds, as kubectl shows it (a table, or a
 * List in YAML or JSON), and the way into a pod (a command in its netns, cgroup and hosts file;
 * its containers' logs).
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import * as yaml from 'js-yaml';
import { LabError, netnsPath, requireLab, table } from './cluster.js';
import { builtin } from './manifests.js';
import { podStatuses } from './pods.js';
import { namespaces, objKey, podKey, type LabPaths, type LabState, type PodRecord } from './state.js';
import { alive, podArgv } from './sys.js';

type Raw = Record<string, unknown>;

async function containerStatus(c: PodRecord['containers'][number]): Promise<string> {
  const code = (await readFile(c.exitFile, 'utf8').catch(() => '')).trim();
  if (code !== '') return `Exited(${code})`;
  return (await alive(c.pid, '')) ? 'Running' : 'Unknown';
}

export interface GetOptions {
  readonly namespace?: string;
  readonly output?: 'table' | 'yaml' | 'json';
}

export async function get(paths: LabPaths, what: string, opts: GetOptions = {}): Promise<string> {
  const s = await requireLab(paths);
  const inNs = (ns: string) => opts.namespace === undefined || opts.namespace === ns;
  const out = (items: Raw[], rows: Array<Array<string | number>>) => {
    if (opts.output === 'json') return JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 2);
    if (opts.output === 'yaml') return yaml.dump({ apiVersion: 'v1', kind: 'List', items }, { noRefs: true }).trimEnd();
    return table(rows);
  };
  switch (what) {
    case 'pods':
    case 'pod':
    case 'po': {
      const statuses = await podStatuses(paths, s);
      const rows: Array<Array<string | number>> = [['NAMESPACE', 'NAME', 'STATUS', 'NODE', 'IP', 'MESH', 'AGE']];
      const items: Raw[] = [];
      const failed: string[] = [];
      for (const p of Object.values(s.pods).filter((x) => inNs(x.namespace))) {
        const cs = await Promise.all(p.containers.map(containerStatus));
        const status = cs.find((c) => c !== 'Running') ?? 'Running';
        for (const [i, c] of p.containers.entries()) {
          if (cs[i] === 'Running') continue;
          const tail = (await readFile(c.log, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-5).join('\n    ');
          failed.push(`${p.namespace}/${p.name} container ${c.name}: ${cs[i]}; the end of its log (lab logs ${p.name} -n ${p.namespace}):\n    ${tail || '(empty)'}`);
        }
        const mesh = statuses.get(podKey(p.namespace, p.name))?.mode ?? '?';
        rows.push([p.namespace, p.name, status, p.node, p.ip, mesh, age(p.created)]);
        items.push({ ...p.raw, spec: { ...(p.raw.spec as Raw), nodeName: p.node }, status: { phase: status === 'Running' ? 'Running' : 'Failed', podIP: p.ip, containerStatuses: p.containers.map((c, i) => ({ name: c.name, state: cs[i] })), mesh } });
      }
      const text = out(items, rows);
      return opts.output === undefined && failed.length > 0 ? `${text}\n\n${failed.join('\n')}` : text;
    }
    case 'svc':
    case 'service':
    case 'services': {
      const rows: Array<Array<string | number>> = [['NAMESPACE', 'NAME', 'CLUSTER-IP', 'PORTS', 'SELECTOR']];
      const items = Object.values(s.objects).filter((o) => o.kind === 'Service' && inNs(((o.metadata as Raw).namespace as string) ?? 'default'));
      for (const o of items) {
        const spec = o.spec as Raw;
        const ports = ((spec.ports as Raw[]) ?? []).map((p) => `${p.port}${p.targetPort !== undefined ? `->${p.targetPort}` : ''}/TCP`).join(',');
        const sel = Object.entries((spec.selector as Record<string, string>) ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
        rows.push([((o.metadata as Raw).namespace as string) ?? 'default', (o.metadata as Raw).name as string, (spec.clusterIP as string) ?? 'None', ports, sel || '<none>']);
      }
      return out(items, rows);
    }
    case 'ns':
    case 'namespace':
    case 'namespaces': {
      const rows: Array<Array<string | number>> = [['NAME', 'LABELS']];
      const items: Raw[] = [];
      for (const [name, labels] of namespaces(s)) {
        rows.push([name, Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',') || '<none>']);
        items.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
      }
      return out(items, rows);
    }
    default: {
      // Policy and route kinds, by their kind name (case-insensitive).
      const items = Object.values(s.objects).filter((o) => kindMatches(String(o.kind), what) && inNs(((o.metadata as Raw).namespace as string) ?? ''));
      if (!KNOWN_KINDS.some((k) => kindMatches(k, what))) {
        throw new LabError(`unknown resource ${JSON.stringify(what)}; use pods, svc, ns, or a kind such as authorizationpolicies`, 'ERR_LAB_UNKNOWN_RESOURCE');
      }
      const rows: Array<Array<string | number>> = [['NAMESPACE', 'KIND', 'NAME']];
      for (const o of items) rows.push([((o.metadata as Raw).namespace as string) ?? '', o.kind as string, (o.metadata as Raw).name as string]);
      return out(items, rows);
    }
  }
}

const KNOWN_KINDS = ['Namespace', 'ServiceAccount', 'Deployment', 'AuthorizationPolicy', 'PeerAuthentication', 'Gateway', 'HTTPRoute', 'VirtualService'];

/** `authorizationpolicies`, `authorizationpolicy`, `AuthorizationPolicy` all name the kind. */
function kindMatches(kind: string, what: string): boolean {
  const k = kind.toLowerCase();
  const w = what.toLowerCase();
  return w === k || w === `${k}s` || (k.endsWith('y') && w === `${k.slice(0, -1)}ies`);
}

function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** Finds a pod by name (or a Deployment's pod by the Deployment's name). */
export function findPod(s: LabState, name: string, namespace = 'default'): PodRecord {
  const exact = s.pods[podKey(namespace, name)];
  if (exact) return exact;
  const owned = Object.values(s.pods).filter((p) => p.owner === objKey('Deployment', namespace, name));
  if (owned.length > 0) return owned[0]!;
  throw new LabError(`pod ${namespace}/${name} not found (lab get pods -n ${namespace})`, 'ERR_LAB_NO_POD');
}

/** Runs a command in a pod (its netns, cgroup and hosts file), with this terminal's stdio; resolves to its exit code. */
export async function exec(paths: LabPaths, pod: string, namespace: string | undefined, argv: readonly string[], stdio: 'inherit' | 'pipe' = 'inherit'): Promise<{ code: number; stdout: string; stderr: string }> {
  const s = await requireLab(paths);
  const p = findPod(s, pod, namespace);
  if (argv.length === 0) throw new LabError('no command given: lab exec POD -- CMD [ARGS...]', 'ERR_LAB_NO_COMMAND');
  const full = podArgv(builtin(argv), { cgroup: p.cgroup, netns: netnsPath(p.netns), hosts: p.hosts });
  const child = spawn(full[0]!, full.slice(1), { stdio: stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'], env: { ...process.env, POD_NAME: p.name, POD_NAMESPACE: p.namespace } });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  return { code, stdout, stderr };
}

/** The log of a pod's containers, of `ztunnel/NODE`, `agent/NODE` or `control-plane`. */
export async function logs(paths: LabPaths, target: string, namespace?: string): Promise<string> {
  const s = await requireLab(paths);
  const proc = s.procs[target];
  if (proc) return readFile(proc.log, 'utf8');
  if (target.includes('/') && !target.startsWith('pod/')) throw new LabError(`unknown log ${target}; use POD, ${Object.keys(s.procs).join(', ')}`, 'ERR_LAB_NO_LOG');
  const p = findPod(s, target.replace(/^pod\//, ''), namespace);
  const parts = await Promise.all(p.containers.map(async (c) => ({ c, text: await readFile(c.log, 'utf8').catch(() => '') })));
  return parts.length === 1 ? parts[0]!.text : parts.map(({ c, text }) => `==> ${c.name} <==\n${text}`).join('\n');
}

