/**
 * The worst case of one Kubernetes object (issue 19, item 3): `node dist/bench/kube-object.js
 * [--runs N] [--json]`.
 *
 * Builds, for each shape, the largest object that stays under the API server's object limit
 * (1.5 MiB, `YAML_LIMITS.maxDocumentBytes`) and times it through what the lab and the control
 * plane run: `parseManifests` (YAML, the upstream schema, the hand checks) → `ManifestStore.apply`
 * → `ManifestConverter.convert`. Shapes:
 *
 * - an AuthorizationPolicy with as many principals as fit;
 * - a Service with as many ports as fit (each its own port number, 1-65535);
 * - a Pod with as many labels as fit, selected by a Service (the converter indexes every label);
 * - an AuthorizationPolicy with as many empty principals as fit (every one a problem).
 *
 * Prints, per shape, the text size, the element count and the median and worst of `--runs`
 * (default 5) runs per stage. The baseline, measured in the same run, is `JSON.parse` of the same
 * object as JSON: the least any reader of that object pays. Docs: docs/kubernetes.md.
 */
import { performance } from 'node:perf_hooks';
import * as yaml from 'js-yaml';
import { ManifestConverter } from '../core/kube/convert.js';
import { parseManifests } from '../core/kube/parse.js';
import { ManifestStore } from '../core/kube/store.js';
import type { NodeInfo } from '../core/model/types.js';
import { YAML_LIMITS, loadYamlDocuments } from '../core/validation/yaml.js';

const NODES: NodeInfo[] = [{ name: 'node-a', ztunnelAddress: '10.0.0.2', hbonePort: 15008 }];
const BUDGET = YAML_LIMITS.maxDocumentBytes;

interface Shape {
  readonly name: string;
  /** The object with `n` elements. */
  readonly make: (n: number) => object;
  /** Objects it needs beside it (a namespace, a selecting Service). */
  readonly extra: object[];
  /** Most elements the shape can have at all (Service ports: 65535). */
  readonly max: number;
}

const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'istio.io/dataplane-mode': 'ambient' } } };
const meta = (name: string, extra: object = {}) => ({ name, namespace: 'apps', ...extra });

const SHAPES: Shape[] = [
  {
    name: 'AuthorizationPolicy, principals',
    make: (n) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: meta('p'), spec: { rules: [{ from: [{ source: { principals: Array.from({ length: n }, (_, i) => `cluster.local/ns/apps/sa/sa-${i}`) } }] }] } }),
    extra: [ns],
    max: Infinity,
  },
  {
    name: 'Service, ports',
    make: (n) => ({ apiVersion: 'v1', kind: 'Service', metadata: meta('s'), spec: { selector: { app: 'web' }, clusterIP: '10.96.0.1', ports: Array.from({ length: n }, (_, i) => ({ name: `p-${i}`, port: i + 1, targetPort: i + 1 })) } }),
    extra: [ns, { apiVersion: 'v1', kind: 'Pod', metadata: meta('web', { labels: { app: 'web' } }), spec: { nodeName: 'node-a', containers: [{ name: 'c' }] }, status: { podIP: '10.1.0.1' } }],
    max: 65535,
  },
  {
    name: 'Pod, labels',
    make: (n) => ({ apiVersion: 'v1', kind: 'Pod', metadata: meta('web', { labels: Object.fromEntries(Array.from({ length: n }, (_, i) => [`k-${i}`, `v-${i}`])) }), spec: { nodeName: 'node-a', containers: [{ name: 'c' }] }, status: { podIP: '10.1.0.1' } }),
    extra: [ns, { apiVersion: 'v1', kind: 'Service', metadata: meta('s'), spec: { selector: { 'k-0': 'v-0' }, clusterIP: '10.96.0.1', ports: [{ port: 80 }] } }],
    max: Infinity,
  },
  {
    name: 'AuthorizationPolicy, empty principals (refused)',
    make: (n) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: meta('p'), spec: { rules: [{ from: [{ source: { principals: new Array<string>(n).fill('') } }] }] } }),
    extra: [ns],
    max: Infinity,
  },
];

/**
 * The most elements (within 2%) whose object the YAML loader accepts: first the most whose JSON
 * stays within the limit (binary search), then fewer until the loader, which counts the expanded
 * size its own way (string lengths plus a few bytes per node), does not refuse it as too large.
 */
function largest(shape: Shape): number {
  const size = (n: number) => JSON.stringify(shape.make(n)).length;
  let lo = 1;
  let hi = 1;
  while (hi < shape.max && size(hi) <= BUDGET) hi = Math.min(shape.max, hi * 2);
  if (size(hi) <= BUDGET) lo = hi;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (size(mid) <= BUDGET) lo = mid;
    else hi = mid;
  }
  let n = lo;
  while (loadYamlDocuments(yaml.dump(shape.make(n), { flowLevel: 3 }), 'bench.yaml').tooLarge.length > 0) n = Math.floor(n * 0.98);
  return n;
}

interface Row {
  readonly shape: string;
  readonly elements: number;
  readonly textBytes: number;
  readonly accepted: boolean;
  readonly problems: number;
  /** Milliseconds per stage: [median, worst]. */
  readonly ms: Record<'jsonParse' | 'parse' | 'store' | 'convert' | 'total', [number, number]>;
}

function measure(shape: Shape, runs: number): Row {
  const n = largest(shape);
  const obj = shape.make(n);
  const text = [...shape.extra, obj].map((o) => yaml.dump(o, { flowLevel: 3 })).join('---\n');
  const json = JSON.stringify(obj);
  const times: Record<keyof Row['ms'], number[]> = { jsonParse: [], parse: [], store: [], convert: [], total: [] };
  let accepted = false;
  let problems = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    JSON.parse(json);
    const t1 = performance.now();
    const parsed = parseManifests(text, 'bench.yaml');
    const t2 = performance.now();
    const store = new ManifestStore();
    store.apply(parsed.objects);
    const t3 = performance.now();
    const result = new ManifestConverter().convert({ objects: store.sortedObjects(), sorted: true, nodes: NODES, trustDomain: 'cluster.local' });
    const t4 = performance.now();
    times.jsonParse.push(t1 - t0);
    times.parse.push(t2 - t1);
    times.store.push(t3 - t2);
    times.convert.push(t4 - t3);
    times.total.push(t4 - t1);
    accepted = parsed.objects.length === shape.extra.length + 1;
    problems = parsed.problems.filter((p) => p.severity === 'error').length + result.problems.filter((p) => p.severity === 'error').length;
  }
  const stat = (xs: number[]): [number, number] => {
    const s = [...xs].sort((a, b) => a - b);
    return [s[Math.floor(s.length / 2)] as number, s[s.length - 1] as number];
  };
  return {
    shape: shape.name,
    elements: n,
    textBytes: Buffer.byteLength(text),
    accepted,
    problems,
    ms: { jsonParse: stat(times.jsonParse), parse: stat(times.parse), store: stat(times.store), convert: stat(times.convert), total: stat(times.total) },
  };
}

function main(argv: readonly string[]): void {
  const runsAt = argv.indexOf('--runs');
  const runs = runsAt === -1 ? 5 : Number(argv[runsAt + 1]);
  if (!Number.isInteger(runs) || runs < 1) {
    process.stderr.write('usage: node dist/bench/kube-object.js [--runs N] [--json]\n');
    process.exitCode = 2;
    return;
  }
  const rows = SHAPES.map((s) => measure(s, runs));
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ runs, rows })}\n`);
    return;
  }
  const f = ([m, w]: [number, number]) => `${m.toFixed(0)} (${w.toFixed(0)})`;
  process.stdout.write(`one object near the 1.5 MiB limit, ${runs} runs; ms median (worst)\n\n`);
  process.stdout.write('| object | elements | YAML bytes | result | JSON.parse (baseline) | parseManifests | store | convert | total |\n|---|---|---|---|---|---|---|---|---|\n');
  for (const r of rows) {
    const result = r.accepted ? 'accepted' : `refused (${r.problems} problems)`;
    process.stdout.write(`| ${r.shape} | ${r.elements.toLocaleString('en')} | ${r.textBytes.toLocaleString('en')} | ${result} | ${f(r.ms.jsonParse)} | ${f(r.ms.parse)} | ${f(r.ms.store)} | ${f(r.ms.convert)} | ${f(r.ms.total)} |\n`);
  }
}

main(process.argv.slice(2));
