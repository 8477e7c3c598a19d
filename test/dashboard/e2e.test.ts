/**
 * Issue 16 end to end: `ambientctl dashboard --lab` against a real lab (`lab up --nodes 2 --demo`
 * plus a second namespace `shop` with its own service), with traffic running, opened in headless
 * Chromium (Debian's package, driven by playwright-core). The page shows both namespaces'
 * services, edges with non-zero rates, the waypoint's 90/10 split with its observed share, mTLS
 * edges; a DENY AuthorizationPolicy applied meanwhile turns its edge red (waited on in the DOM's
 * graph state); a click on that edge shows its details and access-log lines; the table view
 * works from the keyboard. Screenshots go to $TMPDIR/ambient-dashboard-e2e/ (artifacts,
 * overwritten each run) and docs/dashboard.png (the docs' picture).
 *
 * Skips, saying why, without /usr/bin/chromium (apt-get install chromium), without root, or when
 * the lab's prerequisites are missing. Everything is named amb-ld<pid>-*; teardown stops the
 * traffic, the dashboard, the browser, and takes the lab down.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import * as yaml from 'js-yaml';
import { labRunner, CLI } from '../lab/cli.js';
import { checkPrerequisites } from '../../lab/prereq.js';
import { leftovers } from '../../lab/cluster.js';
import { defaultPaths } from '../../lab/state.js';

const CHROMIUM = '/usr/bin/chromium';
const prefix = `amb-ld${process.pid}`;
const paths = defaultPaths(prefix);
const lab = labRunner(prefix);
const ARTIFACTS = join(tmpdir(), 'ambient-dashboard-e2e');
const DOCS_PICTURE = fileURLToPath(new URL('../../docs/dashboard.png', import.meta.url));

const missing = !existsSync(CHROMIUM) ? [`${CHROMIUM} (apt-get install chromium)`] : process.getuid?.() !== 0 ? ['root'] : (await checkPrerequisites()).map((m) => m.what);
const skip = missing.length > 0 ? `the dashboard's end-to-end test needs: ${missing.join('; ')}` : false;

/** The second namespace: an ambient `shop` with its own service, called from the demo's client. */
const SHOP = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'catalog', namespace: 'shop' } },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'catalog', namespace: 'shop' },
    spec: { replicas: 1, selector: { matchLabels: { app: 'catalog' } }, template: { metadata: { labels: { app: 'catalog' } }, spec: { serviceAccountName: 'catalog', containers: [{ name: 'catalog', image: 'lab/http-echo', ports: [{ containerPort: 8080 }] }] } } },
  },
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'catalog', namespace: 'shop' }, spec: { selector: { app: 'catalog' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
];
/** Enforced by the demo's waypoint (targetRefs the Service): the frontend's requests to ratings get 403 RBAC. */
const DENY = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'deny-frontend-to-ratings', namespace: 'demo' },
  spec: { targetRefs: [{ kind: 'Service', group: '', name: 'ratings' }], action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/frontend'] } }] }] },
};

type EdgeState = { id: string; rps: number; alert: boolean; mtls: boolean; kind: string; label: string; weight?: number };
/** The graph's state in the page (window.dashboardGraph is the page's cytoscape instance). */
const graphState = (page: Page) =>
  page.evaluate(() => {
    const cy = (window as unknown as { dashboardGraph: { nodes(): { map<T>(f: (n: { id(): string }) => T): T[] }; edges(): { map<T>(f: (e: { id(): string; data(k: string): unknown }) => T): T[] } } }).dashboardGraph;
    return {
      nodes: cy.nodes().map((n) => n.id()),
      edges: cy.edges().map((e) => ({ id: e.id(), rps: Number(e.data('rps')), alert: e.data('alert') === true, mtls: e.data('mtls') === true, kind: String(e.data('kind')), label: String(e.data('label')) })),
    };
  });

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat; clock ticks are 100 Hz on Linux. */
async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
async function rssMiB(pid: number): Promise<number> {
  return Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

t.test('the dashboard shows the lab live, a DENY turns its edge red, a click shows the edge', { skip, timeout: 240_000 }, async (t) => {
  let traffic = true;
  let trafficDone: Promise<void> = Promise.resolve();
  let browser: Browser | undefined;
  let dashboard: ReturnType<typeof spawn> | undefined;
  t.teardown(async () => {
    traffic = false;
    await trafficDone;
    await browser?.close();
    if (dashboard && dashboard.exitCode === null) {
      const exited = new Promise((r) => dashboard!.once('exit', r));
      dashboard.kill('SIGTERM');
      await exited;
    }
    await lab('down');
  });
  await mkdir(ARTIFACTS, { recursive: true });
  const dir = t.testdir({ 'shop.yaml': SHOP.map((o) => yaml.dump(o)).join('---\n'), 'deny.yaml': yaml.dump(DENY) });

  const up = await lab('up', '--nodes', '2', '--demo');
  t.equal(up.code, 0, up.err);
  t.match(up.out, /ambientctl dashboard --lab/, 'lab up --demo ends with the dashboard command');
  const shop = await lab('apply', '-f', join(dir, 'shop.yaml'));
  t.equal(shop.code, 0, shop.err);

  // Traffic for the whole test: the demo's chain (client → frontend → backend split, ratings) and shop's catalog.
  trafficDone = (async () => {
    while (traffic) {
      await lab('exec', 'client', '-n', 'demo', '--', 'lab/get', '--quiet', '--count', '10', 'http://frontend/');
      await lab('exec', 'client', '-n', 'demo', '--', 'lab/get', '--quiet', '--count', '3', 'http://catalog.shop/');
    }
  })();

  // Without tap's environment (NODE_OPTIONS loader hooks, NODE_V8_COVERAGE add ~200 MiB to a process), so the RSS below is the dashboard's.
  const env = { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  dashboard = spawn(process.execPath, [CLI, '--lab-prefix', prefix, 'dashboard', '--port', '0', '--open'], { stdio: ['ignore', 'pipe', 'inherit'], env });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    dashboard!.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^(http:\/\/\S+)$/m.exec(out);
      if (m) resolve(m[1]!);
    });
    dashboard!.once('exit', (code) => reject(new Error(`the dashboard exited ${code} before printing its URL: ${out}`)));
  });
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, '--open prints the URL');

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(url);

  // Live: both namespaces' services, rates on the edges, the split's weights and observed share, mTLS.
  await page.waitForFunction(
    () => {
      const cy = (window as unknown as { dashboardGraph?: { getElementById(id: string): { empty(): boolean; data(k: string): unknown } } }).dashboardGraph;
      if (!cy) return false;
      const rps = (id: string) => (cy.getElementById(id).empty() ? 0 : Number(cy.getElementById(id).data('rps')));
      const intoCatalog = ['wl:demo/client->svc:shop/catalog', 'wl:demo/client->wl:shop/catalog'].some((id) => !cy.getElementById(id).empty());
      return rps('wl:demo/client->wp:demo/waypoint') > 0 && rps('svc:demo/backend->svc:demo/backend-v1') > 0 && rps('wp:demo/waypoint->svc:demo/ratings') > 0 && intoCatalog;
    },
    undefined,
    { timeout: 60_000 },
  );
  const g = await graphState(page);
  for (const id of ['svc:demo/frontend', 'svc:demo/backend', 'svc:demo/ratings', 'wp:demo/waypoint', 'wl:demo/client', 'ns:demo', 'ns:shop']) t.ok(g.nodes.includes(id), `node ${id}`);
  t.ok(g.nodes.includes('svc:shop/catalog') || g.nodes.includes('wl:shop/catalog'), 'the second namespace\'s service');
  const e = (id: string): EdgeState => g.edges.find((x) => x.id === id) ?? t.fail(`edge ${id}`) as never;
  t.ok(e('wl:demo/client->wp:demo/waypoint').rps > 0, 'client → waypoint has a rate');
  t.ok(e('wl:demo/client->wp:demo/waypoint').mtls, 'and carries the mTLS mark');
  t.match(e('wl:demo/client->wp:demo/waypoint').label, /mTLS/, 'the lock label is drawn');
  const v1 = e('svc:demo/backend->svc:demo/backend-v1');
  const v2 = e('svc:demo/backend->svc:demo/backend-v2');
  t.equal(v1.kind, 'split');
  t.match(v1.label, /^mTLS 90 % \(obs \d+ %\)/, 'the split edge shows its weight and the observed share');
  t.match(v2.label, /10 % \(obs \d+ %\)/);
  t.equal(e('wp:demo/waypoint->svc:demo/ratings').alert, false, 'ratings is not red before the policy');
  await page.screenshot({ path: join(ARTIFACTS, '1-live.png') });
  await page.screenshot({ path: DOCS_PICTURE });

  // The figure for the notes: the dashboard's CPU and RSS over ~10 s with the page open (5 ticks).
  // The relays are the dashboard's children (nsenter execs node in place); they count too.
  const pid = dashboard.pid!;
  const relays = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  const all = [pid, ...relays];
  const cpu = async () => (await Promise.all(all.map(cpuSeconds))).reduce((a, b) => a + b, 0);
  const cpu0 = await cpu();
  const server0 = await cpuSeconds(pid);
  const wall0 = Date.now();
  const until = new Date(Date.now() + 10_000).toISOString();
  await page.waitForFunction((after) => (document.body.dataset.updated ?? '') > after, until, { timeout: 30_000 });
  const wall = (Date.now() - wall0) / 1000;
  const share = (x: number) => `${((100 * x) / wall).toFixed(1)} %`;
  const relayRss = (await Promise.all(relays.map(rssMiB))).reduce((a, b) => a + b, 0);
  t.comment(
    `dashboard with the page open, over ${wall.toFixed(1)} s: server ${share((await cpuSeconds(pid)) - server0)} of one core, RSS ${(await rssMiB(pid)).toFixed(0)} MiB; ` +
      `with its ${relays.length} relays ${share((await cpu()) - cpu0)}, RSS +${relayRss.toFixed(0)} MiB (lab: 2 nodes; graph: ${g.nodes.length} nodes, ${g.edges.length} edges)`,
  );

  // A DENY applied now turns its edge red: waited on in the page's graph state.
  const deny = await lab('apply', '-f', join(dir, 'deny.yaml'));
  t.equal(deny.code, 0, deny.err);
  await page.waitForFunction(() => {
    const cy = (window as unknown as { dashboardGraph: { getElementById(id: string): { empty(): boolean; data(k: string): unknown } } }).dashboardGraph;
    const el = cy.getElementById('wp:demo/waypoint->svc:demo/ratings');
    return !el.empty() && el.data('alert') === true;
  }, undefined, { timeout: 30_000 });
  t.pass('the denied edge waypoint → ratings turned red');
  await page.getByRole('tab', { name: 'Policies' }).click();
  await page.locator('#policies tbody tr', { hasText: 'deny-frontend-to-ratings' }).waitFor();
  t.match(await page.locator('#policies tbody tr', { hasText: 'deny-frontend-to-ratings' }).innerText(), /AuthorizationPolicy\s+demo\s+deny-frontend-to-ratings\s+action DENY/, 'the policies view lists it');
  await page.getByRole('tab', { name: 'Graph' }).click();
  await page.screenshot({ path: join(ARTIFACTS, '2-denied.png') });

  // A real click on the edge's midpoint in the canvas opens its details with access-log lines.
  const at = await page.evaluate(() => {
    const cy = (window as unknown as { dashboardGraph: { getElementById(id: string): { renderedMidpoint(): { x: number; y: number } } } }).dashboardGraph;
    return cy.getElementById('wp:demo/waypoint->svc:demo/ratings').renderedMidpoint();
  });
  const box = (await page.locator('#graph').boundingBox())!;
  await page.mouse.click(box.x + at.x, box.y + at.y);
  await page.locator('#details-logs[data-lines]').waitFor({ timeout: 15_000 });
  t.match(await page.locator('#details-title').innerText(), /waypoint → ratings/, 'the clicked edge\'s details');
  t.match(await page.locator('#details-stats').innerText(), /RBAC×\d+/, 'its response flags count the denials');
  t.match(await page.locator('#details-logs').innerText(), /"response_flags":"RBAC"/, 'its recent access-log lines show the denials');
  await page.screenshot({ path: join(ARTIFACTS, '3-details.png') });

  // The table: the same edges, reachable and opened from the keyboard.
  await page.getByRole('tab', { name: 'Table' }).click();
  const red = page.locator('#edges tbody tr[data-alert="true"]').first();
  await red.focus();
  await page.keyboard.press('Enter');
  await page.locator('#details:not([hidden])').waitFor();
  t.ok((await page.locator('#edges tbody tr').count()) >= 8, 'the table lists the edges');
  await page.screenshot({ path: join(ARTIFACTS, '4-table.png') });
  t.same(pageErrors, [], 'no error in the page');
  t.comment(`screenshots in ${ARTIFACTS}`);

  traffic = false;
  await trafficDone;
  const down = await lab('down');
  t.equal(down.code, 0, down.err);
  t.same(await leftovers(paths), [], 'nothing left behind');
});
