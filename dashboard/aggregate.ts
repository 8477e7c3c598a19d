/**
 * From the samples of every source over a window to the graph the page draws: nodes (workloads,
 * services, waypoints, grouped by namespace) and edges with requests/s, error rate, p50/p99,
 * bytes/s, connections/s, mTLS, response flags, and the observed share of a split.
 *
 * Rates are counter increases between a source's newest sample set and its oldest one inside the
 * window (`windowMs`), divided by the time between them; a counter that went down was reset (the
 * process restarted) and counts from zero, as Prometheus' rate() does; a series missing from the
 * older set started meanwhile and counts whole. A source whose last scrape failed is `stale`: its
 * last good samples still give totals, its rates fade as its samples leave the window.
 *
 * Which series make which edge (Istio's metric names, docs/metrics.md, docs/waypoint.md):
 * - `istio_requests_total` / `istio_request_duration_milliseconds_bucket`, reporter="waypoint", read
 *   at waypoint W: client → W, W → service (the parent Service when the service is a backend of a
 *   weighted route: then also parent → backend, the split edge), service → destination workload.
 * - `istio_tcp_*` from ztunnels: reporter="source" into a waypoint: client → W (connections,
 *   bytes, mTLS); reporter="destination" from a waypoint: added to the edges into that workload;
 *   reporter="destination" otherwise (no waypoint): client → service → workload, or client →
 *   workload without a service.
 */
import type { Sample } from './prom-text.js';
import type { Topology } from './topology.js';

export type NodeKind = 'namespace' | 'workload' | 'service' | 'waypoint';

export interface GraphNode {
  readonly id: string;
  readonly kind: NodeKind;
  readonly label: string;
  readonly namespace: string;
  /** The namespace compound node. */
  readonly parent?: string;
  readonly ambient?: boolean;
  readonly node?: string;
}

export interface GraphEdge {
  readonly id: string;
  readonly source: string;
  readonly target: string;
  readonly kind: 'l7' | 'l4' | 'split';
  readonly rps: number;
  readonly errorRate: number;
  readonly denialsPerSec: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly bytesPerSec: number;
  readonly connectionsPerSec: number;
  /** True when every connection seen on it was mutual_tls; false when one was not; null when unknown. */
  readonly mtls: boolean | null;
  readonly totalRequests: number;
  readonly totalConnections: number;
  /** Response flags (`FI`, `DENY`, `RBAC`, `UF` ...) and codes counted inside the window; totals when no window yet. */
  readonly flags: Readonly<Record<string, number>>;
  readonly codes: Readonly<Record<string, number>>;
  /** A split edge: the route, its configured weight (percent of the rule) and the observed share (percent). */
  readonly route?: string;
  readonly weight?: number;
  readonly observedShare?: number | null;
  /** Red on the page: errors or denials above the thresholds (ERROR_RATE_RED) inside the window. */
  readonly alert: boolean;
}

export interface SourceStatus {
  readonly id: string;
  readonly kind: 'ztunnel' | 'waypoint' | 'control-plane';
  readonly url: string;
  readonly stale: boolean;
  readonly error?: string;
  readonly lastOk?: string;
}

export interface Snapshot {
  readonly at: string;
  readonly windowSeconds: number;
  readonly nodes: GraphNode[];
  readonly edges: GraphEdge[];
  readonly sources: SourceStatus[];
  readonly policies: Topology['policies'];
}

/** An edge turns red above 5 % errors (5xx or a local reply) or with any denial inside the window. */
export const ERROR_RATE_RED = 0.05;
/** Response flags that mean a policy refused: ztunnel's DENY, the waypoint's RBAC. */
const DENIAL_FLAGS = new Set(['DENY', 'RBAC']);

/** One scrape of a source: the values by series key; the newest set also keeps its samples (labels). */
interface SampleSet {
  readonly t: number;
  readonly values: Map<string, number>;
  samples?: Sample[];
}

interface SourceHistory {
  readonly id: string;
  readonly kind: 'ztunnel' | 'waypoint';
  readonly url: string;
  /** For a waypoint source: its namespace and Gateway name. */
  readonly waypoint?: { readonly namespace: string; readonly name: string };
  sets: SampleSet[];
  stale: boolean;
  error?: string;
  lastOk?: number;
}

interface EdgeAcc {
  id: string;
  source: string;
  target: string;
  kind: 'l7' | 'l4' | 'split';
  requests: number;
  errors: number;
  denials: number;
  connections: number;
  bytes: number;
  totalRequests: number;
  totalConnections: number;
  flags: Map<string, number>;
  codes: Map<string, number>;
  buckets: Map<number, number>;
  mtls: boolean | null;
  route?: string;
  weight?: number;
}

const add = (m: Map<string, number>, k: string, v: number): void => void m.set(k, (m.get(k) ?? 0) + v);

/**
 * The `q` quantile of a cumulative histogram (`le` → count), as Prometheus' histogram_quantile:
 * linear inside the bucket; above the last finite bound, that bound.
 */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  if (les.length === 0) return null;
  const total = buckets.get(Infinity) ?? buckets.get(les[les.length - 1]!)!;
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const c = buckets.get(le)!;
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      if (c === prevCount) return le;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / (c - prevCount);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

export interface AggregatorInputs {
  /** The window rates are computed over. */
  readonly windowMs: number;
}

/**
 * Keeps each source's recent sample sets and turns them into snapshots.
 *
 * @example
 * const agg = new Aggregator({ windowMs: 10_000 });
 * agg.record({ id: 'ztunnel/node-1', kind: 'ztunnel', url }, Date.now(), samples);
 * const snap = agg.snapshot(Date.now(), NO_TOPOLOGY);
 */
export class Aggregator {
  readonly #in: AggregatorInputs;
  readonly #sources = new Map<string, SourceHistory>();

  constructor(inputs: AggregatorInputs) {
    this.#in = inputs;
  }

  /** Records one scrape: its samples, or the error that made the source stale. */
  record(src: Pick<SourceHistory, 'id' | 'kind' | 'url' | 'waypoint'>, t: number, result: Sample[] | Error): void {
    let h = this.#sources.get(src.id);
    if (!h) {
      h = { ...src, sets: [], stale: false };
      this.#sources.set(src.id, h);
    }
    if (result instanceof Error) {
      h.stale = true;
      h.error = result.message;
      return;
    }
    h.stale = false;
    delete h.error;
    h.lastOk = t;
    // Only the newest set keeps its labels; older ones are the bases of rates and need values only.
    const prev = h.sets[h.sets.length - 1];
    if (prev) delete prev.samples;
    h.sets.push({ t, values: new Map(result.map((s) => [s.id, s.value])), samples: result });
    // Keep the newest set and those inside the window (plus one older, the base of the rate).
    while (h.sets.length > 2 && h.sets[1]!.t <= t - this.#in.windowMs) h.sets.shift();
  }

  /** Forgets sources no longer listed (a waypoint deleted, a node gone). */
  retain(ids: ReadonlySet<string>): void {
    for (const id of [...this.#sources.keys()]) if (!ids.has(id)) this.#sources.delete(id);
  }

  snapshot(now: number, topo: Topology, extraSources: SourceStatus[] = []): Snapshot {
    const nodes = new Map<string, GraphNode>();
    const edges = new Map<string, EdgeAcc>();
    const nsNode = (ns: string): string => {
      const id = `ns:${ns}`;
      if (!nodes.has(id)) nodes.set(id, { id, kind: 'namespace', label: ns, namespace: ns });
      return id;
    };
    const workload = (ns: string, pod: string): string => {
      const wp = topo.waypointOf(ns, pod);
      if (wp !== undefined) return waypoint(ns, wp);
      const name = topo.workloadOf(ns, pod);
      const id = `wl:${ns}/${name}`;
      if (!nodes.has(id)) {
        const ambient = topo.ambient(ns, name);
        const node = topo.nodesOf(ns, name);
        nodes.set(id, { id, kind: 'workload', label: name, namespace: ns, parent: nsNode(ns), ...(ambient !== undefined ? { ambient } : {}), ...(node ? { node } : {}) });
      }
      return id;
    };
    const service = (ns: string, name: string): string => {
      const id = `svc:${ns}/${name}`;
      if (!nodes.has(id)) nodes.set(id, { id, kind: 'service', label: name, namespace: ns, parent: nsNode(ns) });
      return id;
    };
    const waypoint = (ns: string, name: string): string => {
      const id = `wp:${ns}/${name}`;
      if (!nodes.has(id)) nodes.set(id, { id, kind: 'waypoint', label: name, namespace: ns, parent: nsNode(ns) });
      return id;
    };
    const edge = (source: string, target: string, kind: EdgeAcc['kind']): EdgeAcc => {
      const id = `${source}->${target}`;
      let e = edges.get(id);
      if (!e) {
        e = { id, source, target, kind, requests: 0, errors: 0, denials: 0, connections: 0, bytes: 0, totalRequests: 0, totalConnections: 0, flags: new Map(), codes: new Map(), buckets: new Map(), mtls: null };
        edges.set(id, e);
      }
      // An edge requests were counted on is an L7 edge, whichever series created it.
      if (kind !== 'l4' && e.kind === 'l4') e.kind = kind;
      return e;
    };
    const security = (e: EdgeAcc, policy: string | undefined): void => {
      if (policy === undefined || policy === 'unknown') return;
      e.mtls = policy === 'mutual_tls' ? e.mtls !== false : false;
    };
    const splitOf = new Map<string, (typeof topo.splits)[number]>();
    for (const s of topo.splits) for (const b of s.backends) splitOf.set(`${s.namespace}/${b.service}`, s);

    let windowSeconds = 0;
    // Waypoints first: a ztunnel's series from a waypoint to a pod joins the L7 edges they made.
    const ordered = [...this.#sources.values()].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'waypoint' ? -1 : 1));
    for (const h of ordered) {
      const cur = h.sets[h.sets.length - 1];
      if (!cur) continue;
      const base = h.sets.length > 1 && !h.stale ? h.sets[0]! : undefined;
      // Rates only from a live source with two sets; the stale one keeps its totals.
      const dt = base ? (cur.t - base.t) / 1000 : 0;
      if (dt > 0) windowSeconds = Math.max(windowSeconds, dt);
      const delta = (key: string, s: Sample): number => {
        if (!base) return 0;
        const old = base.values.get(key);
        if (old === undefined) return s.value;
        return s.value >= old ? s.value - old : s.value;
      };
      const l = (s: Sample, k: string): string => s.labels[k] ?? 'unknown';
      for (const s of cur.samples ?? []) {
        const d = delta(s.id, s);
        const reporter = s.labels['reporter'];
        if (h.kind === 'waypoint' && reporter === 'waypoint' && h.waypoint && (s.name === 'istio_requests_total' || s.name === 'istio_request_duration_milliseconds_bucket')) {
          const wp = waypoint(h.waypoint.namespace, h.waypoint.name);
          const src = workload(l(s, 'source_workload_namespace'), l(s, 'source_workload'));
          const svcNs = l(s, 'destination_service_namespace');
          const svcName = l(s, 'destination_service_name');
          const svc = service(svcNs, svcName);
          const split = splitOf.get(`${svcNs}/${svcName}`);
          const hops: EdgeAcc[] = [edge(src, wp, 'l7')];
          if (split) {
            const parent = service(split.namespace, split.parent);
            hops.push(edge(wp, parent, 'l7'));
            const se = edge(parent, svc, 'split');
            se.route = split.route;
            const sum = split.backends.reduce((a, b) => a + b.weight, 0);
            se.weight = sum > 0 ? Math.round((100 * (split.backends.find((b) => b.service === svcName)?.weight ?? 0)) / sum) : 0;
            hops.push(se);
          } else hops.push(edge(wp, svc, 'l7'));
          const dw = l(s, 'destination_workload');
          if (dw !== 'unknown') hops.push(edge(svc, workload(l(s, 'destination_workload_namespace'), dw), 'l7'));
          for (const e of hops) {
            security(e, s.labels['connection_security_policy']);
            if (s.name === 'istio_request_duration_milliseconds_bucket') {
              const le = s.labels['le'] === '+Inf' ? Infinity : Number(s.labels['le']);
              e.buckets.set(le, (e.buckets.get(le) ?? 0) + d);
              continue;
            }
            const code = l(s, 'response_code');
            const flags = l(s, 'response_flags');
            e.requests += d;
            e.totalRequests += s.value;
            if (code.startsWith('5') || code === '0' || (flags !== '-' && flags !== 'unknown')) e.errors += d;
            const counted = base ? d : s.value;
            add(e.codes, code, counted);
            if (flags !== '-') for (const f of flags.split(',')) add(e.flags, f, counted);
            // One denial per request, whether the flag (RBAC) or only the status (a 403 from upstream) says so.
            if (code === '403' || flags.split(',').some((f) => DENIAL_FLAGS.has(f))) e.denials += d;
          }
          continue;
        }
        if (h.kind !== 'ztunnel' || !s.name.startsWith('istio_tcp_')) continue;
        const srcNs = l(s, 'source_workload_namespace');
        const dstNs = l(s, 'destination_workload_namespace');
        const dstPod = l(s, 'destination_workload');
        const srcPod = l(s, 'source_workload');
        const intoWaypoint = dstPod !== 'unknown' && topo.waypointOf(dstNs, dstPod) !== undefined;
        const fromWaypoint = srcPod !== 'unknown' && topo.waypointOf(srcNs, srcPod) !== undefined;
        let hops: EdgeAcc[];
        if (intoWaypoint) {
          if (reporter !== 'source') continue;
          hops = [edge(workload(srcNs, srcPod), workload(dstNs, dstPod), 'l4')];
        } else {
          if (reporter !== 'destination' || srcPod === 'unknown' && dstPod === 'unknown') continue;
          const dst = workload(dstNs, dstPod);
          if (fromWaypoint) {
            // The waypoint's own hop to a pod: its L7 edges into that workload carry the requests; this adds bytes and mTLS.
            const into = [...edges.values()].filter((e) => e.target === dst && e.kind === 'l7');
            hops = into.length > 0 ? into : [edge(workload(srcNs, srcPod), dst, 'l4')];
          } else {
            const svcFqdn = l(s, 'destination_service');
            const src = workload(srcNs, srcPod);
            if (svcFqdn !== 'unknown') {
              const svc = service(l(s, 'destination_service_namespace'), svcFqdn.split('.')[0]!);
              hops = [edge(src, svc, 'l4'), edge(svc, dst, 'l4')];
            } else hops = [edge(src, dst, 'l4')];
          }
        }
        for (const e of hops) {
          security(e, s.labels['connection_security_policy']);
          if (s.name === 'istio_tcp_connections_opened_total') {
            e.connections += d;
            e.totalConnections += s.value;
            const flags = l(s, 'response_flags');
            if (flags !== '-' && flags !== 'unknown') {
              add(e.flags, flags, base ? d : s.value);
              if (DENIAL_FLAGS.has(flags)) e.denials += d;
              else e.errors += d;
            }
          } else if (s.name === 'istio_tcp_sent_bytes_total' || s.name === 'istio_tcp_received_bytes_total') e.bytes += d;
        }
      }
    }

    const per = (x: number): number => (windowSeconds > 0 ? x / windowSeconds : 0);
    const out: GraphEdge[] = [];
    const splitTotals = new Map<string, number>();
    // The observed share of a split: over the window when it saw requests, else over the counters' whole life.
    const windowSplit = new Map<string, number>();
    for (const e of edges.values()) if (e.kind === 'split') windowSplit.set(`${e.source}|${e.route}`, (windowSplit.get(`${e.source}|${e.route}`) ?? 0) + e.requests);
    const splitCount = (e: EdgeAcc): number => ((windowSplit.get(`${e.source}|${e.route}`) ?? 0) > 0 ? e.requests : e.totalRequests);
    for (const e of edges.values()) if (e.kind === 'split') splitTotals.set(`${e.source}|${e.route}`, (splitTotals.get(`${e.source}|${e.route}`) ?? 0) + splitCount(e));
    for (const e of edges.values()) {
      const basis = e.requests > 0 ? e.requests : e.connections;
      const errorRate = basis > 0 ? Math.min(1, e.errors / basis) : 0;
      const denialsPerSec = per(e.denials);
      const splitTotal = e.kind === 'split' ? splitTotals.get(`${e.source}|${e.route}`) ?? 0 : 0;
      out.push({
        id: e.id,
        source: e.source,
        target: e.target,
        kind: e.kind,
        rps: per(e.requests),
        errorRate,
        denialsPerSec,
        p50Ms: histogramQuantile(0.5, e.buckets),
        p99Ms: histogramQuantile(0.99, e.buckets),
        bytesPerSec: per(e.bytes),
        connectionsPerSec: per(e.connections),
        mtls: e.mtls,
        totalRequests: e.totalRequests,
        totalConnections: e.totalConnections,
        flags: Object.fromEntries([...e.flags].filter(([, n]) => n > 0)),
        codes: Object.fromEntries([...e.codes].filter(([, n]) => n > 0)),
        ...(e.kind === 'split' ? { route: e.route!, weight: e.weight!, observedShare: splitTotal > 0 ? (100 * splitCount(e)) / splitTotal : null } : {}),
        alert: errorRate > ERROR_RATE_RED || e.denials > 0,
      });
    }
    out.sort((a, b) => a.id.localeCompare(b.id));
    const sources: SourceStatus[] = [...this.#sources.values()].map((h) => ({
      id: h.id,
      kind: h.kind,
      url: h.url,
      stale: h.stale,
      ...(h.error !== undefined ? { error: h.error } : {}),
      ...(h.lastOk !== undefined ? { lastOk: new Date(h.lastOk).toISOString() } : {}),
    }));
    return {
      at: new Date(now).toISOString(),
      windowSeconds,
      nodes: [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id)),
      edges: out,
      sources: [...sources, ...extraSources].sort((a, b) => a.id.localeCompare(b.id)),
      policies: topo.policies,
    };
  }
}
