import type { Registry } from 'prom-client';

/**
 * Istio's standard HTTP metrics, as a waypoint reports them (`reporter="waypoint"`). Names,
 * labels and bucket boundaries follow Istio's so existing dashboards work. `response_flags`
 * values are Envoy's (docs/metrics.md).
 */
export const HTTP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

export type HttpLabelName = (typeof HTTP_LABELS)[number];
export type HttpLabels = Record<HttpLabelName, string>;

/** Istio's duration buckets, in milliseconds. */
export const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's size buckets, in bytes (1 to 10^9 in powers of ten). */
export const SIZE_BUCKETS_BYTES = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

/** The four metrics of one label set: record into it once per request. */
export interface HttpSeries {
  record(durationMs: number, requestBytes: number, responseBytes: number): void;
}

/** One exported sample, in prom-client's shape (`registry.getSingleMetric(name).get()`). */
interface Sample {
  readonly labels: Record<string, string | number>;
  readonly value: number;
  readonly metricName?: string;
  /** prom-client's scrape path: labels common to many samples, formatted once per object. */
  readonly sharedLabels?: Readonly<Record<string, string>>;
  readonly exemplar?: null | undefined;
}

type Snapshot = { name: string; help: string; type: string; values: Sample[]; aggregator: 'sum' };

/** The registry's view of a metric (prom-client calls these at scrape and reset time). */
interface Exported {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  /** `getSingleMetric(...).get()` and `getMetricsAsJSON()`: every sample with all its labels. */
  get(): Promise<Snapshot>;
  /** `metrics()`: the same samples, the series labels shared (prom-client's Histogram does this). */
  getForPromString(): Promise<Snapshot>;
  reset(): void;
}

interface Cell {
  readonly key: string;
  /** Frozen, in HTTP_LABELS order: shared by every sample of the series, never mutated. */
  readonly labels: Readonly<HttpLabels>;
  requests: number;
  readonly duration: Float64Array;
  readonly requestBytes: Float64Array;
  readonly responseBytes: Float64Array;
  /** Dropped from the registry's map by a reset; the next record puts the series back. */
  detached: boolean;
}

/** Histogram storage: one count per bucket, then `+Inf` (above the last bound), then sum and count. */
function histogramArray(buckets: readonly number[]): Float64Array {
  return new Float64Array(buckets.length + 3);
}

function observe(h: Float64Array, buckets: readonly number[], v: number): void {
  const n = buckets.length;
  let i = 0;
  while (i < n && v > buckets[i]!) i++; // bounds are inclusive (`le`), as prom-client's findBound
  h[i]!++;
  h[n + 1]! += v;
  h[n + 2]!++;
}

const EMPTY: Readonly<Record<string, never>> = Object.freeze({});

/**
 * prom-client's histogram output, sample for sample: cumulative `_bucket{le}`, `+Inf` (= the
 * count), `_sum`, `_count`. `shared`: labels `{le}` + `sharedLabels`, as its `getForPromString`
 * (the text puts `le` first); otherwise every sample gets its own full label object, `le`
 * first, as its `get()`.
 */
function histogramSamples(name: string, buckets: readonly number[], c: Cell, h: Float64Array, shared: boolean, out: Sample[]): void {
  const n = buckets.length;
  const count = h[n + 2]!;
  // prom-client's samples carry `exemplar`: null on buckets (no exemplars configured), undefined
  // on sum and count; kept so that get() deep-equals its output.
  const sample = (labels: Record<string, string | number>, value: number, metricName: string, bucket: boolean): Sample => {
    const exemplar = bucket ? null : undefined;
    return shared ? { labels, sharedLabels: c.labels, value, metricName, exemplar } : { labels: { ...labels, ...c.labels }, value, metricName, exemplar };
  };
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += h[i]!;
    out.push(sample({ le: buckets[i]! }, acc, `${name}_bucket`, true));
  }
  out.push(sample({ le: '+Inf' }, count, `${name}_bucket`, true));
  out.push(sample(shared ? EMPTY : {}, h[n + 1]!, `${name}_sum`, false));
  out.push(sample(shared ? EMPTY : {}, count, `${name}_count`, false));
}

export interface HttpMetrics {
  /**
   * The series of one label set. Looking it up costs a key of all label values; callers that
   * see the same labels again (a proxy does, constantly) keep the series and record into it.
   */
  series(labels: HttpLabels): HttpSeries;
  /** Records one finished request (`series(labels).record(...)`). */
  record(labels: HttpLabels, durationMs: number, requestBytes: number, responseBytes: number): void;
}

/**
 * Registers Istio's HTTP metrics in `registry` (a proxy's registry, shared with its TCP metrics).
 *
 * Recording is a few array increments: prom-client's own Counter/Histogram validate and hash
 * the 19 labels on every observation (a large share of a waypoint's per-request CPU), so these
 * four metrics keep their counts per label set and give prom-client the samples, in the shape
 * its own Counter and Histogram give them, when the registry is scraped. The text and JSON
 * output are the same as theirs line for line (test/waypoint/http-metrics.test.ts).
 *
 * Memory: one cell per distinct label set, the exported series themselves, as prom-client keeps
 * one hashMap entry per label set (the 10,000 cap the earlier code had was on a cache of bound
 * children, never on prom-client's storage). Label values come from the config (workloads,
 * services, principals) and a few codes and flags, so the set is as bounded as the mesh; a
 * cap that dropped series would silently lose counts. `registry.resetMetrics()` frees them.
 *
 * @example
 * const tcp = createTcpMetrics();
 * const http = createHttpMetrics(tcp.registry);
 * const s = http.series(labels);
 * s.record(12.5, 0, 1024);
 */
export function createHttpMetrics(registry: Registry): HttpMetrics {
  const cells = new Map<string, Cell>();
  const attach = (key: string, labels: Readonly<HttpLabels>): Cell => {
    let c = cells.get(key);
    if (!c) {
      c = {
        key,
        labels,
        requests: 0,
        duration: histogramArray(DURATION_BUCKETS_MS),
        requestBytes: histogramArray(SIZE_BUCKETS_BYTES),
        responseBytes: histogramArray(SIZE_BUCKETS_BYTES),
        detached: false,
      };
      cells.set(key, c);
    }
    return c;
  };
  // After a reset, series nothing recorded into since are dropped, so that (as with prom-client,
  // whose reset empties its map) they are not exported and their memory goes.
  const sweep = () => {
    for (const c of cells.values()) {
      const idle = c.requests === 0 && c.duration[DURATION_BUCKETS_MS.length + 2] === 0 && c.requestBytes[SIZE_BUCKETS_BYTES.length + 2] === 0 && c.responseBytes[SIZE_BUCKETS_BYTES.length + 2] === 0;
      if (idle) {
        c.detached = true;
        cells.delete(c.key);
      }
    }
  };
  const counter = (name: string, help: string): Exported => {
    const snapshot = async (): Promise<Snapshot> => {
      const values: Sample[] = [];
      // A series whose count was reset is absent until it counts again (prom-client's Counter).
      for (const c of cells.values()) if (c.requests > 0) values.push({ value: c.requests, labels: { ...c.labels } });
      return { name, help, type: 'counter', values, aggregator: 'sum' };
    };
    return {
      name,
      help,
      type: 'counter',
      aggregator: 'sum',
      get: snapshot,
      getForPromString: snapshot,
      reset() {
        for (const c of cells.values()) c.requests = 0;
        sweep();
      },
    };
  };
  const histogram = (name: string, help: string, buckets: readonly number[], of: (c: Cell) => Float64Array): Exported => {
    const snapshot = (shared: boolean) => async (): Promise<Snapshot> => {
      const values: Sample[] = [];
      for (const c of cells.values()) {
        const h = of(c);
        if (h[buckets.length + 2]! > 0) histogramSamples(name, buckets, c, h, shared, values);
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    };
    return {
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      get: snapshot(false),
      getForPromString: snapshot(true),
      reset() {
        for (const c of cells.values()) of(c).fill(0);
        sweep();
      },
    };
  };
  const metrics: Exported[] = [
    counter('istio_requests_total', 'requests processed'),
    histogram('istio_request_duration_milliseconds', 'request duration, first byte in to last byte out', DURATION_BUCKETS_MS, (c) => c.duration),
    histogram('istio_request_bytes', 'request size: headers and body', SIZE_BUCKETS_BYTES, (c) => c.requestBytes),
    histogram('istio_response_bytes', 'response size: headers and body', SIZE_BUCKETS_BYTES, (c) => c.responseBytes),
  ];
  // The registry reads name/help/type/aggregator and calls get/getForPromString/reset.
  for (const m of metrics) registry.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);

  const series = (labels: HttpLabels): HttpSeries => {
    let key = '';
    for (const name of HTTP_LABELS) key += `${labels[name]}\u0000`;
    let cell = cells.get(key);
    if (!cell) {
      // A copy in label order: the caller's object may be reused or changed.
      const own = {} as HttpLabels;
      for (const name of HTTP_LABELS) own[name] = String(labels[name]);
      cell = attach(key, Object.freeze(own));
    }
    let c = cell;
    return {
      record(durationMs, reqBytes, resBytes) {
        if (c.detached) c = attach(c.key, c.labels);
        c.requests++;
        observe(c.duration, DURATION_BUCKETS_MS, durationMs);
        observe(c.requestBytes, SIZE_BUCKETS_BYTES, reqBytes);
        observe(c.responseBytes, SIZE_BUCKETS_BYTES, resBytes);
      },
    };
  };
  return {
    series,
    record: (labels, durationMs, reqBytes, resBytes) => series(labels).record(durationMs, reqBytes, resBytes),
  };
}
