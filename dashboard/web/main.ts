/**
 * The dashboard page: a cytoscape.js graph of the latest snapshot (server-sent events from
 * /events, one per tick), a table of the same edges (the accessible view: rows are focusable,
 * Enter opens the details), the policies view, and the details of an edge with its recent
 * access-log lines (/api/edge-logs). Node positions stay put between ticks; a layout runs only
 * when nodes appear or go.
 */
import cytoscape from 'cytoscape';
import type { GraphEdge, GraphNode, Snapshot } from '../aggregate.js';

const $ = <T extends HTMLElement>(sel: string): T => document.querySelector(sel) as T;
const css = (name: string): string => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const fmt = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined || Number.isNaN(x) ? '–' : x.toFixed(digits));
const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

let last: Snapshot | undefined;
let selected: string | undefined;
let nodeSet = '';

function edgeLabel(e: GraphEdge): string {
  const parts: string[] = [];
  if (e.mtls) parts.push('mTLS');
  if (e.kind === 'split') parts.push(`${e.weight} % (obs ${e.observedShare === null || e.observedShare === undefined ? '–' : e.observedShare.toFixed(0)} %)`);
  else if (e.rps > 0) parts.push(`${fmt(e.rps)} rps`);
  else if (e.connectionsPerSec > 0) parts.push(`${fmt(e.connectionsPerSec)} conn/s`);
  if (e.errorRate > 0) parts.push(`${pct(e.errorRate)} err`);
  return parts.join(' ');
}

function style(): cytoscape.StylesheetJson {
  return [
    { selector: 'node', style: { label: 'data(label)', color: css('--fg'), 'font-size': 11, 'text-valign': 'center', 'text-wrap': 'wrap', 'background-color': css('--node'), 'border-width': 2, 'border-color': css('--edge'), width: (n: cytoscape.NodeSingular) => Math.max(40, 7 * String(n.data('label')).split('\n').reduce((a, l) => Math.max(a, l.length), 0)), height: 28, padding: '8px', shape: 'ellipse' } },
    { selector: 'node[kind="workload"][enrolment="none"]', style: { 'border-style': 'dashed' } },
    { selector: 'node[kind="service"]', style: { shape: 'round-rectangle', 'background-color': css('--service') } },
    { selector: 'node[kind="waypoint"]', style: { shape: 'diamond', 'background-color': css('--waypoint'), height: 44, padding: '14px' } },
    { selector: 'node[kind="namespace"]', style: { shape: 'round-rectangle', 'background-color': css('--ns'), 'background-opacity': 0.6, 'border-style': 'dotted', 'text-valign': 'top', 'font-weight': 'bold', 'font-size': 13 } },
    { selector: 'edge', style: { width: 'data(width)', 'line-color': css('--edge'), 'target-arrow-color': css('--edge'), 'target-arrow-shape': 'triangle', 'curve-style': 'bezier', label: 'data(label)', 'font-size': 10, color: css('--fg'), 'text-background-color': css('--bg'), 'text-background-opacity': 0.85, 'text-background-padding': '2px' } },
    { selector: 'edge[kind="split"]', style: { 'line-style': 'dashed' } },
    { selector: 'edge[?alert]', style: { 'line-color': css('--alert'), 'target-arrow-color': css('--alert'), color: css('--alert') } },
    { selector: 'edge:selected', style: { 'overlay-opacity': 0.15, 'overlay-color': css('--focus') } },
  ];
}

const cy = cytoscape({ container: $('#graph'), style: style(), minZoom: 0.2, maxZoom: 3 });
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => cy.style(style()));
// For scripts and the end-to-end test: the live graph.
(window as unknown as { dashboardGraph: cytoscape.Core }).dashboardGraph = cy;

function nodeData(n: GraphNode): cytoscape.ElementDefinition {
  return { group: 'nodes', data: { id: n.id, label: n.kind === 'waypoint' ? `waypoint\n${n.label}` : n.label, kind: n.kind, enrolment: n.ambient === true ? 'ambient' : n.ambient === false ? 'none' : 'unknown', ...(n.parent ? { parent: n.parent } : {}) } };
}
function edgeData(e: GraphEdge): cytoscape.ElementDefinition['data'] {
  const rate = e.rps > 0 ? e.rps : e.connectionsPerSec;
  return { id: e.id, source: e.source, target: e.target, kind: e.kind, alert: e.alert, mtls: e.mtls === true, rps: e.rps, label: edgeLabel(e), width: Math.min(14, 1.5 + 2 * Math.log2(1 + rate)) };
}

function renderGraph(s: Snapshot): void {
  const ids = s.nodes.map((n) => `${n.id}<${n.parent ?? ''}`).join('|');
  cy.batch(() => {
    const want = new Set([...s.nodes.map((n) => n.id), ...s.edges.map((e) => e.id)]);
    cy.elements().forEach((el) => {
      if (!want.has(el.id())) el.remove();
    });
    for (const n of s.nodes) {
      const el = cy.getElementById(n.id);
      if (el.empty()) cy.add(nodeData(n));
      else el.data(nodeData(n).data);
    }
    for (const e of s.edges) {
      const el = cy.getElementById(e.id);
      if (el.empty()) cy.add({ group: 'edges', data: edgeData(e) });
      else el.data(edgeData(e));
    }
  });
  if (ids !== nodeSet) {
    nodeSet = ids;
    cy.layout({ name: 'breadthfirst', directed: true, spacingFactor: 1.1, padding: 30, animate: false, roots: cy.nodes('[kind="workload"]').filter((n) => n.indegree(false) === 0) } as cytoscape.LayoutOptions).run();
  }
}

function renderTable(s: Snapshot): void {
  const label = (id: string) => s.nodes.find((n) => n.id === id)?.label ?? id;
  const body = $('#edges tbody');
  const focused = (document.activeElement as HTMLElement | null)?.dataset?.edgeId;
  body.replaceChildren(
    ...s.edges.map((e) => {
      const tr = document.createElement('tr');
      tr.tabIndex = 0;
      tr.dataset.edgeId = e.id;
      tr.dataset.alert = String(e.alert);
      if (e.alert) tr.classList.add('alert');
      const cells = [label(e.source), label(e.target), e.kind, fmt(e.rps, 2), pct(e.errorRate), fmt(e.p50Ms), fmt(e.p99Ms), fmt(e.bytesPerSec, 0), fmt(e.connectionsPerSec, 2), e.mtls ? 'mTLS (mutual_tls)' : e.mtls === false ? 'none' : '–', e.kind === 'split' ? `${e.weight} % (observed ${fmt(e.observedShare, 0)} %)` : ''];
      for (const c of cells) tr.append(Object.assign(document.createElement('td'), { textContent: c }));
      tr.addEventListener('click', () => void showDetails(e.id));
      tr.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          void showDetails(e.id);
        } else if (ev.key === 'ArrowDown') (tr.nextElementSibling as HTMLElement | null)?.focus();
        else if (ev.key === 'ArrowUp') (tr.previousElementSibling as HTMLElement | null)?.focus();
      });
      return tr;
    }),
  );
  if (focused) (body.querySelector(`tr[data-edge-id="${CSS.escape(focused)}"]`) as HTMLElement | null)?.focus();
}

function renderPolicies(s: Snapshot): void {
  $('#policies tbody').replaceChildren(
    ...s.policies.map((p) => {
      const tr = document.createElement('tr');
      for (const c of [p.kind, p.namespace, p.name, p.summary, p.selects, p.problems.length ? `${p.status}: ${p.problems.join('; ')}` : p.status]) tr.append(Object.assign(document.createElement('td'), { textContent: c }));
      return tr;
    }),
  );
}

function renderHeader(s: Snapshot): void {
  const stale = s.sources.filter((x) => x.stale);
  $('#status').textContent = `updated ${new Date(s.at).toLocaleTimeString()} · rates over ${s.windowSeconds.toFixed(0)} s · ${s.edges.length} edges${stale.length ? ` · ${stale.length} stale source(s)` : ''}`;
  $('#sources').replaceChildren(
    ...s.sources.map((x) => {
      const li = document.createElement('li');
      li.textContent = `${x.id}${x.stale ? ' (stale)' : ''}`;
      li.title = x.error ?? `${x.url} ok at ${x.lastOk ?? ''}`;
      li.dataset.stale = String(x.stale);
      if (x.stale) li.classList.add('stale');
      return li;
    }),
  );
}

async function showDetails(edgeId: string): Promise<void> {
  selected = edgeId;
  const e = last?.edges.find((x) => x.id === edgeId);
  if (!e) return;
  renderDetails(e);
  const aside = $('#details');
  aside.hidden = false;
  const logs = $('#details-logs');
  logs.textContent = 'loading…';
  try {
    const r = await fetch(`api/edge-logs?source=${encodeURIComponent(e.source)}&target=${encodeURIComponent(e.target)}`);
    const body = (await r.json()) as { lines: string[] };
    if (selected !== edgeId) return;
    logs.textContent = body.lines.length ? body.lines.join('\n') : '(no recent access-log line for this edge)';
    logs.dataset.lines = String(body.lines.length);
  } catch (err) {
    logs.textContent = `cannot read the access logs: ${(err as Error).message}`;
  }
}

function renderDetails(e: GraphEdge): void {
  const label = (id: string) => last?.nodes.find((n) => n.id === id);
  const src = label(e.source);
  const dst = label(e.target);
  $('#details-title').textContent = `${src?.label ?? e.source} → ${dst?.label ?? e.target}`;
  const rows: Array<[string, string]> = [
    ['kind', e.kind],
    ['requests/s', fmt(e.rps, 2)],
    ['error rate', pct(e.errorRate)],
    ['denials/s', fmt(e.denialsPerSec, 2)],
    ['latency p50 / p99', `${fmt(e.p50Ms)} / ${fmt(e.p99Ms)} ms`],
    ['bytes/s', fmt(e.bytesPerSec, 0)],
    ['connections/s', fmt(e.connectionsPerSec, 2)],
    ['security', e.mtls ? 'mTLS (mutual_tls)' : e.mtls === false ? 'none (plaintext)' : 'unknown'],
    ['total requests / connections', `${e.totalRequests} / ${e.totalConnections}`],
    ['response codes', Object.entries(e.codes).map(([k, v]) => `${k}×${v}`).join(', ') || '–'],
    ['response flags', Object.entries(e.flags).map(([k, v]) => `${k}×${v}`).join(', ') || '–'],
  ];
  if (e.kind === 'split') rows.push(['split', `${e.route}: weight ${e.weight} %, observed ${fmt(e.observedShare, 1)} %`]);
  for (const n of [src, dst]) if (n && n.kind === 'workload') rows.push([n.label, `namespace ${n.namespace}${n.node ? `, node ${n.node}` : ''}, ${n.ambient === true ? 'in the ambient mesh' : n.ambient === false ? 'not in the mesh' : 'enrolment unknown'}`]);
  $('#details-stats').replaceChildren(...rows.flatMap(([k, v]) => [Object.assign(document.createElement('dt'), { textContent: k }), Object.assign(document.createElement('dd'), { textContent: v })]));
}

cy.on('tap', 'edge', (ev) => void showDetails(ev.target.id() as string));
$('#close-details').addEventListener('click', () => {
  $('#details').hidden = true;
  selected = undefined;
});

// Tabs: arrow keys move between them (WAI-ARIA tabs pattern).
const tabs = [...document.querySelectorAll<HTMLButtonElement>('[role="tab"]')];
function selectTab(t: HTMLButtonElement): void {
  for (const x of tabs) {
    const on = x === t;
    x.setAttribute('aria-selected', String(on));
    x.tabIndex = on ? 0 : -1;
    $(`#${x.getAttribute('aria-controls')!}`).hidden = !on;
  }
  t.focus();
  if (t.id === 'tab-graph') cy.resize();
}
tabs.forEach((t, i) => {
  t.addEventListener('click', () => selectTab(t));
  t.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowRight') selectTab(tabs[(i + 1) % tabs.length]!);
    if (ev.key === 'ArrowLeft') selectTab(tabs[(i + tabs.length - 1) % tabs.length]!);
  });
});

const events = new EventSource('events');
events.addEventListener('snapshot', (ev) => {
  last = JSON.parse((ev as MessageEvent<string>).data) as Snapshot;
  renderHeader(last);
  renderGraph(last);
  renderTable(last);
  renderPolicies(last);
  const e = selected ? last.edges.find((x) => x.id === selected) : undefined;
  if (e) renderDetails(e);
  document.body.dataset.updated = last.at;
});
events.addEventListener('error', () => {
  $('#status').textContent = 'disconnected from the dashboard server; retrying…';
});
