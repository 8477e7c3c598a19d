/**
 * `ambientctl dashboard`'s HTTP server: the page (dist/dashboard/web: index.html, app.js, app.css,
 * built by `npm run build`), `GET /events` (server-sent events: one `snapshot` event per tick),
 * `GET /api/snapshot` (the latest snapshot as JSON), `GET /api/edge-logs?source=ID&target=ID`
 * (an edge's recent access-log lines).
 *
 * Every `tickMs` one tick scrapes all sources in parallel (each within its ScrapeLimits), then
 * aggregates and pushes. A tick never overlaps the previous one; a failing source is marked stale
 * in the snapshot and never fails the tick, the page, or the process.
 */
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import type { Logger } from '../core/telemetry/log.js';
import { Aggregator, type Snapshot, type SourceStatus } from './aggregate.js';
import { edgeLogLines } from './access-log.js';
import type { MeshSource } from './lab-source.js';
import { DEFAULT_PROM_LIMITS, parsePromText, type LabelCache } from './prom-text.js';
import type { ScrapeLimits } from './scrape.js';
import type { Topology } from './topology.js';
import { NO_TOPOLOGY } from './topology.js';

export interface DashboardInputs {
  readonly source: MeshSource;
  readonly host: string;
  readonly port: number;
  /** How often to scrape and push: 2 s by default (docs/dashboard.md). */
  readonly tickMs: number;
  /** Rates are over this window: 10 s by default, five ticks, so one slow scrape does not zero an edge. */
  readonly windowMs: number;
  readonly limits: ScrapeLimits;
  /** The built page. */
  readonly webDir: string;
  readonly logger: Logger;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.png': 'image/png' };
const METRIC_PREFIXES = ['istio_requests_total', 'istio_request_duration_milliseconds_bucket', 'istio_tcp_'];

/**
 * @example
 * const d = new DashboardServer({ source, host: '127.0.0.1', port: 20001, tickMs: 2000, windowMs: 10_000, limits: DEFAULT_SCRAPE_LIMITS, webDir, logger });
 * const url = await d.start();
 */
export class DashboardServer {
  readonly #in: DashboardInputs;
  readonly #agg: Aggregator;
  readonly #clients = new Set<http.ServerResponse>();
  readonly #server: http.Server;
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #topology: Topology = NO_TOPOLOGY;
  #last: Snapshot | undefined;
  #stopped = false;
  /** Per source: its label blocks parsed once (prom-text.ts LabelCache). */
  readonly #labelCaches = new Map<string, LabelCache>();

  constructor(inputs: DashboardInputs) {
    this.#in = inputs;
    this.#agg = new Aggregator({ windowMs: inputs.windowMs });
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: Error) => {
        inputs.logger.warn({ err: err.message, url: req.url }, 'dashboard request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error; see the dashboard log\n');
      });
    });
  }

  /** Listens, runs the first tick, and returns the page's URL. */
  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#in.port, this.#in.host, () => resolve());
    });
    await this.tick();
    this.#timer = setInterval(() => void this.tick(), this.#in.tickMs);
    const a = this.#server.address() as { port: number };
    const host = this.#in.host.includes(':') ? `[${this.#in.host}]` : this.#in.host;
    return `http://${host}:${a.port}/`;
  }

  get snapshot(): Snapshot | undefined {
    return this.#last;
  }

  /** One scrape of every source, then a push. Skipped while the previous one runs. */
  async tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return;
    this.#ticking = true;
    try {
      const extra: SourceStatus[] = [];
      let refreshed;
      try {
        refreshed = await this.#in.source.refresh();
        this.#topology = refreshed.topology;
      } catch (err) {
        extra.push({ id: 'topology', kind: 'control-plane', url: this.#in.source.where, stale: true, error: (err as Error).message });
      }
      const sources = refreshed?.sources ?? [];
      await Promise.all(
        sources.map(async (s) => {
          let result;
          try {
            let cache = this.#labelCaches.get(s.id);
            if (!cache) this.#labelCaches.set(s.id, (cache = new Map()));
            result = parsePromText(await s.fetch(this.#in.limits), METRIC_PREFIXES, DEFAULT_PROM_LIMITS, cache).samples;
          } catch (err) {
            result = err as Error;
          }
          this.#agg.record(s, Date.now(), result);
        }),
      );
      if (refreshed) {
        const ids = new Set(sources.map((s) => s.id));
        this.#agg.retain(ids);
        for (const id of [...this.#labelCaches.keys()]) if (!ids.has(id)) this.#labelCaches.delete(id);
      }
      const cp = refreshed?.controlPlane;
      if (cp) {
        try {
          const status = JSON.parse(await cp.fetch(this.#in.limits)) as { problems?: Array<{ text?: string; severity?: string }> };
          const problems = Array.isArray(status.problems) ? status.problems : [];
          this.#in.source.setProblems?.(problems);
          extra.push({ id: 'control-plane', kind: 'control-plane', url: cp.url, stale: false, lastOk: new Date().toISOString() });
        } catch (err) {
          extra.push({ id: 'control-plane', kind: 'control-plane', url: cp.url, stale: true, error: (err as Error).message });
        }
      }
      this.#last = this.#agg.snapshot(Date.now(), this.#topology, extra);
      const data = `event: snapshot\ndata: ${JSON.stringify(this.#last)}\n\n`;
      for (const c of this.#clients) c.write(data);
    } catch (err) {
      this.#in.logger.warn({ err: (err as Error).message }, 'dashboard tick failed');
    } finally {
      this.#ticking = false;
    }
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (req.method !== 'GET') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET' });
      return void res.end('only GET\n');
    }
    if (url.pathname === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`retry: ${this.#in.tickMs}\n\n`);
      if (this.#last) res.write(`event: snapshot\ndata: ${JSON.stringify(this.#last)}\n\n`);
      this.#clients.add(res);
      req.on('close', () => this.#clients.delete(res));
      return;
    }
    if (url.pathname === '/api/snapshot') return json(res, this.#last ?? null);
    if (url.pathname === '/api/edge-logs') {
      const source = url.searchParams.get('source') ?? '';
      const target = url.searchParams.get('target') ?? '';
      return json(res, { source, target, lines: await edgeLogLines(this.#topology, source, target) });
    }
    const file = url.pathname === '/' ? 'index.html' : normalize(url.pathname).replace(/^\/+/, '');
    const ext = /\.[a-z]+$/.exec(file)?.[0] ?? '';
    if (file.includes('..') || !TYPES[ext]) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('not found\n');
    }
    const body = await readFile(join(this.#in.webDir, file)).catch(() => undefined);
    if (!body) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end(file === 'index.html' ? 'the page is not built: run npm run build\n' : 'not found\n');
    }
    res.writeHead(200, { 'content-type': TYPES[ext]!, 'content-length': body.length, 'cache-control': 'no-cache' });
    res.end(body);
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const c of this.#clients) c.end();
    this.#clients.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.#in.source.close();
  }
}

function json(res: http.ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
