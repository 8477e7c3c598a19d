/**
 * The lab as a dashboard source: the metrics addresses of its ztunnels (`<node ip>:15020` in the
 * node's network namespace) and waypoints (`<pod ip>:15020`, reached from the pod's node
 * namespace, as `lab up --demo` reads them: lab/demo.ts), the control plane's `/debug/status` at
 * `127.0.0.1:15000` in the fabric namespace, the topology from the lab's state file
 * (`lab.json`: pods, owners, namespaces, routes, policies), and the access-log files (each
 * ztunnel's log, each waypoint pod's container log: JSON lines with `"scope":"access"`).
 *
 * Addresses inside namespaces are reached through one relay process per namespace
 * (netns-relay.ts), started here and stopped by close().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST, netnsPath, readState, type LabPaths, type LabState } from '../lab/index.js';
import { GATEWAY_NAME_LABEL, DATAPLANE_MODE_LABEL, DATAPLANE_MODE } from '../core/labels.js';
import { PORTS } from '../core/hbone/constants.js';
import { DASHBOARD_ERROR_CODES, DashboardError } from './errors.js';
import type { PolicyRow, RouteSplit, Topology } from './topology.js';
import { fetchBounded, type Route, type ScrapeLimits } from './scrape.js';

export interface ScrapeSource {
  readonly id: string;
  readonly kind: 'ztunnel' | 'waypoint';
  /** What the page shows as its address. */
  readonly url: string;
  /** For a waypoint: its namespace and Gateway name. */
  readonly waypoint?: { readonly namespace: string; readonly name: string };
  /** One scrape within `limits` (scrape.ts fetchBounded, or through a cluster's API server). */
  fetch(limits: ScrapeLimits): Promise<string>;
}

/** What a tick needs from where the mesh runs. */
export interface MeshSource {
  /** Where it is, for the page's title and messages. */
  readonly where: string;
  /** The sources to scrape this tick and the topology, read fresh (pods come and go). */
  refresh(): Promise<{ sources: ScrapeSource[]; topology: Topology; controlPlane?: { url: string; fetch(limits: ScrapeLimits): Promise<string> } }>;
  /** Keeps the control plane's problems (from /debug/status) for the policies view. */
  setProblems?(problems: ReadonlyArray<{ text?: string; severity?: string }>): void;
  close(): Promise<void>;
}

type Obj = Record<string, unknown>;
const meta = (o: Obj): Obj => (o.metadata ?? {}) as Obj;
const labelsOf = (o: Obj): Record<string, string> => ((meta(o).labels ?? {}) as Record<string, string>) ?? {};

const RELAY = join(DIST, 'dashboard/netns-relay.js');

/** Policies and routes from the lab's applied objects, with the control plane's problems for each. */
export function labPolicies(s: LabState, problems: ReadonlyArray<{ text?: string; severity?: string }>): PolicyRow[] {
  const rows: PolicyRow[] = [];
  const kinds = new Set(['AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication', 'HTTPRoute', 'GRPCRoute', 'VirtualService', 'DestinationRule']);
  for (const o of Object.values(s.objects)) {
    const kind = String(o.kind);
    if (!kinds.has(kind)) continue;
    const m = meta(o);
    const ns = String(m.namespace ?? '');
    const name = String(m.name ?? '');
    const spec = (o.spec ?? {}) as Obj;
    const sel = ((spec.selector as Obj | undefined)?.matchLabels ?? undefined) as Record<string, string> | undefined;
    const targets = (spec.targetRefs ?? spec.parentRefs ?? (spec.targetRef ? [spec.targetRef] : undefined)) as Obj[] | undefined;
    const selects = sel
      ? Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',')
      : targets
        ? targets.map((t) => `${String(t.kind ?? 'Service')} ${String(t.name)}`).join(', ')
        : Array.isArray(spec.hosts)
          ? `hosts ${(spec.hosts as string[]).join(', ')}`
          : spec.host
            ? `host ${String(spec.host)}`
            : `namespace ${ns}`;
    const summary =
      kind === 'AuthorizationPolicy'
        ? `action ${String(spec.action ?? 'ALLOW')}, ${Array.isArray(spec.rules) ? spec.rules.length : 0} rule(s)`
        : kind === 'PeerAuthentication'
          ? `mode ${String((spec.mtls as Obj | undefined)?.mode ?? 'UNSET')}`
          : kind === 'HTTPRoute' || kind === 'GRPCRoute'
            ? (spec.rules as Obj[] | undefined ?? []).map((r) => ((r.backendRefs as Obj[] | undefined) ?? []).map((b) => `${String(b.name)}${b.weight !== undefined ? ` ${String(b.weight)}` : ''}`).join(' / ')).join('; ')
            : `${Array.isArray(spec.http) ? spec.http.length : 0} http rule(s)`;
    const mineP = problems.filter((p) => (p.text ?? '').includes(name) && ((p.text ?? '').includes(kind) || (p.text ?? '').includes(ns)));
    const mine = mineP.map((p) => `${p.severity ?? 'problem'}: ${p.text ?? ''}`);
    const conds = ((((o.status as Obj | undefined)?.parents as Obj[] | undefined)?.[0]?.conditions ?? (o.status as Obj | undefined)?.conditions) ?? []) as Obj[];
    const status = mineP.some((p) => p.severity === 'error') ? 'rejected' : mine.length > 0 ? 'accepted with notes' : conds.length > 0 ? conds.map((c) => `${String(c.type)}=${String(c.status)}`).join(', ') : 'accepted (no problem at /debug/status)';
    rows.push({ kind, namespace: ns, name, summary, selects, status, problems: mine.slice(0, 10) });
  }
  return rows.sort((a, b) => a.kind.localeCompare(b.kind) || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

/** The lab's routes whose rules split across weighted backends. */
export function labSplits(s: LabState): RouteSplit[] {
  const out: RouteSplit[] = [];
  for (const o of Object.values(s.objects)) {
    if (o.kind !== 'HTTPRoute' && o.kind !== 'GRPCRoute') continue;
    const spec = (o.spec ?? {}) as Obj;
    const ns = String(meta(o).namespace ?? 'default');
    for (const p of (spec.parentRefs as Obj[] | undefined) ?? []) {
      if (p.kind !== 'Service') continue;
      for (const r of (spec.rules as Obj[] | undefined) ?? []) {
        const backends = ((r.backendRefs as Obj[] | undefined) ?? []).map((b) => ({ service: String(b.name), weight: b.weight === undefined ? 1 : Number(b.weight) }));
        if (backends.length > 1) out.push({ route: `${String(o.kind)}/${ns}/${String(meta(o).name)}`, namespace: ns, parent: String(p.name), backends });
      }
    }
  }
  return out;
}

/** The topology the lab's state gives. */
export function labTopology(s: LabState, problems: ReadonlyArray<{ text?: string; severity?: string }>): Topology {
  const pods = Object.values(s.pods);
  const byKey = new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  const nsLabels = new Map<string, Record<string, string>>([['default', {}]]);
  for (const o of Object.values(s.objects)) if (o.kind === 'Namespace') nsLabels.set(String(meta(o).name), labelsOf(o));
  const workloadOf = (ns: string, pod: string): string => {
    const p = byKey.get(`${ns}/${pod}`);
    return p?.owner ? p.owner.split('/')[2]! : pod;
  };
  const podsOf = (ns: string, wl: string) => pods.filter((p) => p.namespace === ns && (p.owner ? p.owner.split('/')[2] === wl : p.name === wl));
  return {
    workloadOf,
    waypointOf: (ns, pod) => {
      const p = byKey.get(`${ns}/${pod}`);
      return p ? labelsOf(p.raw)[GATEWAY_NAME_LABEL] : undefined;
    },
    ambient: (ns, wl) => {
      const ps = podsOf(ns, wl);
      if (ps.length === 0) return undefined;
      const podMode = labelsOf(ps[0]!.raw)[DATAPLANE_MODE_LABEL];
      if (podMode !== undefined) return podMode === DATAPLANE_MODE.ambient;
      return nsLabels.get(ns)?.[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE.ambient;
    },
    nodesOf: (ns, wl) => [...new Set(podsOf(ns, wl).map((p) => p.node))].join(','),
    splits: labSplits(s),
    policies: labPolicies(s, problems),
    accessLogs: [
      ...Object.entries(s.procs).filter(([k]) => k.startsWith('ztunnel/')).map(([, r]) => ({ file: r.log })),
      ...pods.filter((p) => labelsOf(p.raw)[GATEWAY_NAME_LABEL] !== undefined).flatMap((p) => p.containers.map((c) => ({ file: c.log, waypoint: `wp:${p.namespace}/${labelsOf(p.raw)[GATEWAY_NAME_LABEL]!}` }))),
    ],
  };
}

/**
 * The lab in `paths` as a MeshSource.
 *
 * @example
 * const src = await LabSource.open(defaultPaths());
 * const { sources } = await src.refresh();
 */
export class LabSource implements MeshSource {
  readonly where: string;
  readonly #paths: LabPaths;
  readonly #dir: string;
  readonly #relays = new Map<string, { child: ChildProcess; socket: string; ready: Promise<void> }>();
  #problems: ReadonlyArray<{ text?: string; severity?: string }> = [];

  private constructor(paths: LabPaths, dir: string) {
    this.#paths = paths;
    this.#dir = dir;
    this.where = `lab ${paths.prefix}`;
  }

  static async open(paths: LabPaths): Promise<LabSource> {
    return new LabSource(paths, await mkdtemp(join(tmpdir(), 'ambient-dashboard-')));
  }

  /** The relay of a namespace, started on first use; restarted when it died. */
  #relay(netns: string): Route {
    let r = this.#relays.get(netns);
    if (!r || r.child.exitCode !== null || r.child.signalCode !== null) {
      const socket = join(this.#dir, `${this.#relays.size}-${netns.replace(/[^a-z0-9-]/gi, '_')}.sock`);
      const child = spawn('nsenter', [`--net=${netnsPath(netns)}`, '--', process.execPath, RELAY, socket], { stdio: ['pipe', 'pipe', 'ignore'] });
      const ready = new Promise<void>((resolve) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', () => resolve());
      });
      child.on('error', () => undefined);
      r = { child, socket, ready };
      this.#relays.set(netns, r);
    }
    return { relaySocket: r.socket };
  }

  setProblems(problems: ReadonlyArray<{ text?: string; severity?: string }>): void {
    this.#problems = problems;
  }

  async refresh(): Promise<{ sources: ScrapeSource[]; topology: Topology; controlPlane?: { url: string; fetch(limits: ScrapeLimits): Promise<string> } }> {
    const s = await readState(this.#paths);
    if (!s) throw new DashboardError(DASHBOARD_ERROR_CODES.UNREACHABLE, `no lab state in ${this.#paths.stateDir}/lab.json; is the lab up (ambientctl lab up)?`);
    const via = (url: string, route: Route) => ({ url, fetch: (limits: ScrapeLimits) => fetchBounded(url, route, limits) });
    const sources: ScrapeSource[] = s.nodes.map((n) => ({ id: `ztunnel/${n.name}`, kind: 'ztunnel', ...via(`http://${n.ip}:${PORTS.metrics}/metrics`, this.#relay(n.netns)) }));
    for (const p of Object.values(s.pods)) {
      const gw = labelsOf(p.raw)[GATEWAY_NAME_LABEL];
      const node = s.nodes.find((n) => n.name === p.node);
      if (gw === undefined || !node) continue;
      sources.push({ id: `waypoint/${p.namespace}/${p.name}`, kind: 'waypoint', ...via(`http://${p.ip}:${PORTS.metrics}/metrics`, this.#relay(node.netns)), waypoint: { namespace: p.namespace, name: gw } });
    }
    const controlPlane = via(`http://127.0.0.1:${PORTS.admin}/debug/status`, this.#relay(s.fabricNetns));
    await Promise.all([...this.#relays.values()].map((r) => r.ready));
    return { sources, topology: labTopology(s, this.#problems), controlPlane };
  }

  async close(): Promise<void> {
    for (const r of this.#relays.values()) r.child.kill('SIGTERM');
    this.#relays.clear();
    await rm(this.#dir, { recursive: true, force: true });
  }
}
