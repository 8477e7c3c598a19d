/**
 * `lab up --demo`: a frontend calling two versions of a backend and a ratings service, in a
 * namespace labelled for ambient; traffic from a client pod; then, from the ztunnels' own
 * metrics, every edge with its SPIFFE identities, connections, bytes and security policy.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { LabError, METRICS_PORT, netnsPath, requireLab, table, type Progress } from './cluster.js';
import { DEFAULT_PREFIX, type LabPaths, type LabState, type PodRecord } from './state.js';
import { PORTS } from '../core/hbone/constants.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, GATEWAY_NAME_LABEL, USE_WAYPOINT_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL } from '../core/labels.js';
import { getInNetns } from './sys.js';
import { apply } from './apply.js';
import { exec } from './get.js';

export const DEMO_NAMESPACE = 'demo';

const deployment = (name: string, app: string, env: Record<string, string>, replicas = 1, version?: string) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: DEMO_NAMESPACE },
  spec: {
    replicas,
    selector: { matchLabels: { app, ...(version ? { version } : {}) } },
    template: {
      metadata: { labels: { app, ...(version ? { version } : {}) } },
      spec: {
        serviceAccountName: app,
        containers: [{ name: app, image: 'lab/http-echo', ports: [{ containerPort: 8080 }], env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })) }],
      },
    },
  },
});
const service = (name: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: DEMO_NAMESPACE }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
const sa = (name: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: DEMO_NAMESPACE } });

const versionService = (version: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: `backend-${version}`, namespace: DEMO_NAMESPACE },
  spec: { selector: { app: 'backend', version }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
});

/** The demo's canary: 90 % of the backend's requests to v1, 10 % to v2, decided per request by the waypoint. */
export const DEMO_SPLIT = { v1: 90, v2: 10 } as const;

/** The demo's manifests. */
export function demoManifests(): object[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEMO_NAMESPACE, labels: { [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE.ambient, [USE_WAYPOINT_LABEL]: 'waypoint' } } },
    // What `ambientctl waypoint apply -n demo` creates; the lab's controller runs it.
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'waypoint', namespace: DEMO_NAMESPACE, labels: { [WAYPOINT_FOR_LABEL]: 'service' } },
      spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: PORTS.hbone, protocol: 'HBONE' }] },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'backend-canary', namespace: DEMO_NAMESPACE },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'backend', port: 80 }],
        rules: [{ backendRefs: [{ name: 'backend-v1', port: 80, weight: DEMO_SPLIT.v1 }, { name: 'backend-v2', port: 80, weight: DEMO_SPLIT.v2 }] }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'ratings-faults', namespace: DEMO_NAMESPACE },
      spec: {
        hosts: ['ratings'],
        http: [
          { match: [{ uri: { prefix: '/fault' } }], fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: [{ destination: { host: 'ratings' } }] },
          { route: [{ destination: { host: 'ratings' } }] },
        ],
      },
    },
    ...['client', 'frontend', 'backend', 'ratings'].map(sa),
    deployment('frontend', 'frontend', { UPSTREAMS: 'http://backend/,http://ratings.demo/' }),
    deployment('backend-v1', 'backend', { VERSION: 'v1' }, 1, 'v1'),
    deployment('backend-v2', 'backend', { VERSION: 'v2' }, 1, 'v2'),
    deployment('ratings', 'ratings', {}),
    service('frontend'),
    service('backend'),
    service('ratings'),
    versionService('v1'),
    versionService('v2'),
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: DEMO_NAMESPACE, labels: { app: 'client' } }, spec: { serviceAccountName: 'client', containers: [{ name: 'client', image: 'lab/sleep' }] } },
  ];
}

export interface Edge {
  readonly source: string;
  readonly destination: string;
  readonly security: string;
  connections: number;
  sent: number;
  received: number;
}

/**
 * Parses Prometheus text: `name{labels} value` lines of the TCP metrics reported by the
 * destination, and, for connections into a waypoint (`waypoints`: their SPIFFE IDs), which end in
 * the waypoint rather than at a destination ztunnel, those reported by the source.
 */
export function edgesFromMetrics(texts: readonly string[], waypoints: ReadonlySet<string> = new Set()): Edge[] {
  const edges = new Map<string, Edge>();
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const m = /^(istio_tcp_connections_opened_total|istio_tcp_sent_bytes_total|istio_tcp_received_bytes_total)\{(.*)\} ([0-9.e+]+)$/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
      const intoWaypoint = waypoints.has(labels['destination_principal'] ?? '');
      if (labels['reporter'] !== (intoWaypoint ? 'source' : 'destination')) continue;
      const key = `${labels['source_principal']}|${labels['destination_principal']}|${labels['connection_security_policy']}`;
      const e = edges.get(key) ?? { source: labels['source_principal'] ?? 'unknown', destination: labels['destination_principal'] ?? 'unknown', security: labels['connection_security_policy'] ?? 'unknown', connections: 0, sent: 0, received: 0 };
      const v = Number(m[3]);
      if (m[1] === 'istio_tcp_connections_opened_total') e.connections += v;
      else if (m[1] === 'istio_tcp_sent_bytes_total') e.sent += v;
      else e.received += v;
      edges.set(key, e);
    }
  }
  return [...edges.values()].sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
}

/** Every ztunnel's /metrics. */
export async function ztunnelMetrics(s: LabState): Promise<string[]> {
  return Promise.all(s.nodes.map((n) => getInNetns(netnsPath(n.netns), `http://${n.ip}:${METRICS_PORT}/metrics`)));
}

/** One row of the waypoint's `istio_requests_total`. */
export interface RequestRow {
  readonly source: string;
  readonly service: string;
  readonly code: string;
  readonly flags: string;
  count: number;
}

/** Parses the waypoint's `istio_requests_total` (reporter="waypoint") by source, service, code and flags. */
export function requestsFromMetrics(texts: readonly string[]): RequestRow[] {
  const rows = new Map<string, RequestRow>();
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const m = /^istio_requests_total\{(.*)\} ([0-9.e+]+)$/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
      if (labels['reporter'] !== 'waypoint') continue;
      const row = { source: labels['source_workload'] ?? 'unknown', service: labels['destination_service_name'] ?? 'unknown', code: labels['response_code'] ?? '', flags: labels['response_flags'] ?? '-' };
      const key = `${row.source}|${row.service}|${row.code}|${row.flags}`;
      const r = rows.get(key) ?? { ...row, count: 0 };
      r.count += Number(m[2]);
      rows.set(key, r);
    }
  }
  return [...rows.values()].sort((a, b) => a.source.localeCompare(b.source) || a.service.localeCompare(b.service) || a.code.localeCompare(b.code));
}

const isWaypointPod = (p: PodRecord): boolean => ((p.raw.metadata as Record<string, unknown>).labels as Record<string, string> | undefined)?.[GATEWAY_NAME_LABEL] !== undefined;

/** /metrics of every waypoint pod of the lab (the pods of waypoint Gateways). */
export async function waypointMetrics(s: LabState): Promise<string[]> {
  const pods = Object.values(s.pods).filter(isWaypointPod);
  return Promise.all(pods.map((p) => getInNetns(netnsPath(s.nodes.find((n) => n.name === p.node)!.netns), `http://${p.ip}:${METRICS_PORT}/metrics`)));
}

export async function runDemo(paths: LabPaths, say: Progress, requests = 100): Promise<Edge[]> {
  const started = Date.now();
  const dir = join(paths.stateDir, 'demo');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'demo.yaml');
  await writeFile(file, demoManifests().map((o) => yaml.dump(o)).join('---\n'));
  say(`\ndemo: deploying ${file}`);
  await apply(paths, file, say);
  say(`demo: ${requests} requests client → frontend → backend (v1, v2) and ratings, each hop through the namespace's waypoint`);
  const r = await exec(paths, 'client', DEMO_NAMESPACE, ['lab/get', '--quiet', '--count', String(requests), 'http://frontend/'], 'pipe');
  if (r.code !== 0) throw new LabError(`demo traffic failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}; check ambientctl lab logs ztunnel/NODE and the waypoint's log`, 'ERR_LAB_DEMO_TRAFFIC');
  const answers = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { upstreams?: Array<{ answer?: { version?: string } }> });
  const versions = new Map<string, number>();
  for (const a of answers) for (const u of a.upstreams ?? []) if (u.answer?.version) versions.set(u.answer.version, (versions.get(u.answer.version) ?? 0) + 1);
  say(`demo: all ${answers.length} answered; backend versions seen: ${[...versions].sort(([a], [b]) => a.localeCompare(b)).map(([v, n]) => `${v}×${n}`).join(', ')} (the waypoint splits ${DEMO_SPLIT.v1}/${DEMO_SPLIT.v2} per request: HTTPRoute backend-canary)`);
  const fault = await exec(paths, 'client', DEMO_NAMESPACE, ['lab/get', 'http://ratings/fault'], 'pipe');
  say(`demo: GET http://ratings/fault → ${fault.stderr.trim().split('\n')[0] ?? ''} (VirtualService ratings-faults injects the abort; response_flags FI)`);
  const s = await requireLab(paths);
  say('\nrequests seen by the waypoint (istio_requests_total, reporter="waypoint"):');
  say(table([['SOURCE WORKLOAD', 'DESTINATION SERVICE', 'CODE', 'FLAGS', 'REQUESTS'], ...requestsFromMetrics(await waypointMetrics(s)).map((r) => [r.source, r.service, r.code, r.flags, r.count])]));
  const waypointIds = new Set(Object.values(s.pods).filter(isWaypointPod).map((p) => `spiffe://cluster.local/ns/${p.namespace}/sa/${(p.raw.spec as Record<string, unknown>).serviceAccountName as string}`));
  const edges = edgesFromMetrics(await ztunnelMetrics(s), waypointIds);
  const short = (p: string) => p.replace(/^spiffe:\/\//, '');
  say('\nedges seen by the ztunnels (istio_tcp_* metrics: reporter="destination", or "source" into the waypoint; bytes count when a connection closes):');
  say(table([['SOURCE (spiffe://)', 'DESTINATION (spiffe://)', 'SECURITY', 'CONNECTIONS', 'BYTES src→dst (received)', 'BYTES dst→src (sent)'], ...edges.map((e) => [short(e.source), short(e.destination), e.security, e.connections, e.received, e.sent])]));
  say(`\ndemo done in ${((Date.now() - started) / 1000).toFixed(1)} s; try:
  ambientctl lab get pods -n demo
  ambientctl lab exec client -n demo -- lab/get http://frontend/
  ambientctl lab logs ztunnel/node-1 | tail -n 3
  ambientctl lab label namespace demo istio.io/dataplane-mode-      # out of the mesh: plain TCP
  ambientctl lab apply -f lab/examples/deny-ratings.yaml             # a DENY policy: the frontend answers 502
  ambientctl lab exec client -n demo -- lab/get http://ratings/fault # an injected 503 (VirtualService fault)
  ambientctl lab apply -f lab/examples/outsider.yaml                 # a pod outside the mesh (plain TCP)
  ambientctl lab down                                                # removes everything
  (docs/lab.md has the tour)`);
  say(`\nsee it live: ambientctl dashboard --lab${paths.prefix === DEFAULT_PREFIX ? '' : ` --lab-prefix ${paths.prefix}`}   # a service-graph page on http://127.0.0.1:20001/ (docs/dashboard.md)`);
  return edges;
}
