/**
 * A bounded reader of the Prometheus text exposition format (version 0.0.4), for the samples the
 * dashboard uses. Why not a library: `parse-prometheus-text-format` (the one npm package for this)
 * has had no release since 2019, keeps every family (the nodejs_* ones included) and has no
 * limits; the dashboard needs a few `istio_*` families out of possibly hostile text, so this
 * reader keeps only names with one of `prefixes`, and holds every input to the limits below.
 *
 * Limits (PromTextLimits): lines of at most `maxLineLength` characters, `maxLabels` labels per
 * sample, `maxSamples` kept samples. A body with no valid sample line and at least one invalid
 * one is refused (ERR_DASHBOARD_BAD_METRICS); otherwise bad lines are counted and skipped, as
 * Prometheus itself does per target only in the strict sense: one bad exporter line should not
 * blank a whole node's edges.
 */
import { DASHBOARD_ERROR_CODES, DashboardError } from './errors.js';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The label block as printed (`{a="b",...}`), a stable key of the series within one exporter. */
  readonly key: string;
  /** `name` + `key`: the series' id within one exporter (one shared string per series when a LabelCache is given). */
  readonly id: string;
  readonly value: number;
}

export interface PromTextLimits {
  readonly maxLineLength: number;
  readonly maxLabels: number;
  readonly maxSamples: number;
}

/** Istio's series carry 19-21 labels and lines of ~1 KB; these leave room without letting one body hold the heap. */
export const DEFAULT_PROM_LIMITS: PromTextLimits = { maxLineLength: 16 * 1024, maxLabels: 64, maxSamples: 100_000 };

/**
 * Parsed label blocks by `name{...}` text, kept by the caller from one scrape of a source to the
 * next: an exporter prints the same series the same way each time, so labels are parsed once per
 * series, not once per scrape, and every scrape's sample shares the same key string and labels
 * object (what the aggregator's history holds). Cleared when it passes twice `maxSamples`.
 */
export type LabelCache = Map<string, { readonly id: string; readonly key: string; readonly labels: Readonly<Record<string, string>> }>;

export interface ParsedMetrics {
  readonly samples: Sample[];
  /** Lines that were neither comments, blank, nor valid samples. */
  readonly invalidLines: number;
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** Parses `{a="b",c="d"}` from `i` (at `{`); returns the labels and the index after `}`, or undefined. */
function parseLabels(line: string, i: number, maxLabels: number): { labels: Record<string, string>; end: number } | undefined {
  const labels: Record<string, string> = {};
  let n = 0;
  i++;
  for (;;) {
    while (line[i] === ' ') i++;
    if (line[i] === '}') return { labels, end: i + 1 };
    const m = LABEL_NAME_RE.exec(line.slice(i, i + 256));
    if (!m) return undefined;
    const name = m[0];
    i += name.length;
    if (line[i] !== '=' || line[i + 1] !== '"') return undefined;
    i += 2;
    let value = '';
    for (;;) {
      const c = line[i];
      if (c === undefined) return undefined;
      if (c === '"') break;
      if (c === '\\') {
        const e = line[i + 1];
        value += e === 'n' ? '\n' : e === '\\' ? '\\' : e === '"' ? '"' : `\\${e ?? ''}`;
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++;
    if (++n > maxLabels) return undefined;
    labels[name] = value;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') return undefined;
  }
}

function parseValue(text: string): number | undefined {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/**
 * Reads the samples whose metric name starts with one of `prefixes`.
 *
 * @example
 * parsePromText('istio_requests_total{reporter="waypoint"} 3\n', ['istio_']).samples[0].value; // 3
 */
export function parsePromText(text: string, prefixes: readonly string[], limits: PromTextLimits = DEFAULT_PROM_LIMITS, cache?: LabelCache): ParsedMetrics {
  const samples: Sample[] = [];
  let invalid = 0;
  let valid = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const lineLength = end - start;
    const line = lineLength > limits.maxLineLength ? undefined : text.slice(start, end).replace(/\r$/, '');
    start = end + 1;
    if (line === undefined) {
      invalid++;
      continue;
    }
    if (line === '' || line.startsWith('#') || /^\s*$/.test(line)) continue;
    const nm = NAME_RE.exec(line);
    if (!nm) {
      invalid++;
      continue;
    }
    const name = nm[0];
    let i = name.length;
    let labels: Readonly<Record<string, string>> = {};
    let key = '';
    let id: string | undefined;
    if (line[i] === '{') {
      // The label block ends at the line's last '}': neither the value nor a timestamp holds one.
      const end = line.lastIndexOf('}') + 1;
      const known = end > i ? cache?.get(`${name}${line.slice(i, end)}`) : undefined;
      if (known) {
        key = known.key;
        id = known.id;
        labels = known.labels;
        i = end;
      } else {
        const l = parseLabels(line, i, limits.maxLabels);
        if (!l) {
          invalid++;
          continue;
        }
        key = line.slice(i, l.end);
        labels = l.labels;
        i = l.end;
        if (cache && l.end === end && prefixes.some((p) => name.startsWith(p))) {
          if (cache.size >= 2 * limits.maxSamples) cache.clear();
          id = `${name}${key}`;
          cache.set(id, { id, key, labels });
        }
      }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const value = rest.length === 1 || (rest.length === 2 && /^-?\d+$/.test(rest[1]!)) ? parseValue(rest[0]!) : undefined;
    if (value === undefined) {
      invalid++;
      continue;
    }
    valid++;
    if (!prefixes.some((p) => name.startsWith(p))) continue;
    if (samples.length >= limits.maxSamples) {
      throw new DashboardError(DASHBOARD_ERROR_CODES.BAD_METRICS, `more than ${limits.maxSamples} samples of ${prefixes.join(', ')}; check the exporter's label cardinality`);
    }
    samples.push({ name, labels, key, id: id ?? `${name}${key}`, value });
  }
  if (valid === 0 && invalid > 0) {
    throw new DashboardError(DASHBOARD_ERROR_CODES.BAD_METRICS, `not prometheus text: none of ${invalid} lines is a sample; check that the address is a /metrics endpoint`);
  }
  return { samples, invalidLines: invalid };
}
