/**
 * `ambientctl waypoint apply|generate|list|status|delete`: waypoints as Gateway API Gateways of
 * class `istio-waypoint`, with istioctl's flags and output.
 */
import type { Command } from 'commander';
import * as yaml from 'js-yaml';
import { PORTS } from '../core/hbone/constants.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL, USE_WAYPOINT_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL } from '../core/labels.js';
import type { Condition, KubeObject, MeshBackend } from './backend.js';
import type { CliContext } from './context.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { parseOutput, render, type Row } from './output.js';

/** `--name` when none is given, as in istioctl. */
export const DEFAULT_WAYPOINT_NAME = 'waypoint';
/** Which traffic a waypoint takes (`istio.io/waypoint-for`); absent means `service`. */
export const WAYPOINT_FOR = ['service', 'workload', 'all', 'none'] as const;
export type WaypointFor = (typeof WAYPOINT_FOR)[number];
/** Label naming the control-plane revision a waypoint belongs to. */
export const REVISION_LABEL = 'istio.io/rev';
/** How long `--wait` waits by default (istioctl's 90 s: a cluster pulls the proxy image first). */
export const DEFAULT_WAIT = '90s';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export interface WaypointSpec {
  readonly name: string;
  readonly namespace?: string;
  readonly for?: string;
  readonly revision?: string;
}

/**
 * The Gateway of a waypoint. `istio.io/waypoint-for` is set only when `for` is given, so the
 * default (`service`) stays the control plane's choice, as istioctl does.
 *
 * @example
 * makeWaypoint({ name: 'waypoint', namespace: 'shop', for: 'all' })
 * // { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'all' } }, spec: ... }
 */
export function makeWaypoint(w: WaypointSpec): KubeObject {
  checkName('--name', w.name);
  if (w.name === 'none') throw new CliError(CLI_ERROR_CODES.BAD_FLAG, "--name none: 'none' is a reserved value (istio.io/use-waypoint=none opts out of waypoints)");
  if (w.namespace !== undefined) checkName('--namespace', w.namespace);
  if (w.for !== undefined && !(WAYPOINT_FOR as readonly string[]).includes(w.for)) {
    throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `--for ${w.for}: use one of ${WAYPOINT_FOR.join(', ')}`);
  }
  const labels: Record<string, string> = {};
  if (w.for !== undefined) labels[WAYPOINT_FOR_LABEL] = w.for;
  if (w.revision !== undefined) labels[REVISION_LABEL] = w.revision;
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: w.name, ...(w.namespace !== undefined ? { namespace: w.namespace } : {}), ...(Object.keys(labels).length ? { labels } : {}) },
    spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: PORTS.hbone, protocol: 'HBONE' }] },
  };
}

function checkName(flag: string, v: string): void {
  if (v.length > 63 || !DNS_LABEL.test(v)) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `${flag} ${JSON.stringify(v)}: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`);
}

const meta = (o: KubeObject): Record<string, unknown> => (o.metadata ?? {}) as Record<string, unknown>;
const labelsOf = (o: KubeObject): Record<string, string> => (meta(o).labels ?? {}) as Record<string, string>;
const nameOf = (o: KubeObject): string => String(meta(o).name ?? '');
const nsOf = (o: KubeObject): string => String(meta(o).namespace ?? '');

/** True for a Gateway of class istio-waypoint. */
export function isWaypoint(o: KubeObject): boolean {
  return (o.spec as Record<string, unknown> | undefined)?.gatewayClassName === WAYPOINT_CLASS;
}

/** `90s`, `2m`, `1m30s`, or plain seconds. */
export function parseDuration(flag: string, v: string): number {
  const m = /^(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$/.exec(v.trim());
  const ms = m && (m[1] || m[2]) ? (Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 1000 : NaN;
  if (!Number.isFinite(ms) || ms <= 0) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `${flag} ${v}: use a duration such as 90s, 2m or 1m30s`);
  return ms;
}

async function waypoints(t: MeshBackend, namespace: string | undefined): Promise<KubeObject[]> {
  return (await t.gateways(namespace)).filter(isWaypoint).sort((a, b) => nsOf(a).localeCompare(nsOf(b)) || nameOf(a).localeCompare(nameOf(b)));
}

async function requireNamespace(t: MeshBackend, ns: string) {
  const info = await t.namespace(ns);
  if (!info) throw new CliError(CLI_ERROR_CODES.NO_NAMESPACE, `namespace ${ns} not found in the ${t.where}`);
  return info;
}

/** Polls the Programmed condition until it is True; the last condition when the deadline passes. */
async function waitProgrammed(t: MeshBackend, gw: KubeObject, timeoutMs: number): Promise<{ ok: boolean; cond: Condition }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cond = await t.programmed(gw);
    if (cond.status === 'True') return { ok: true, cond };
    if (Date.now() >= deadline) return { ok: false, cond };
    await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
  }
}

interface CommonOpts {
  namespace?: string;
  name?: string;
  for?: string;
  revision?: string;
}

export function addWaypointCommands(program: Command, ctx: CliContext): void {
  const wp = program
    .command('waypoint')
    .alias('waypoints')
    .description('manage waypoints (Gateway API Gateways of class istio-waypoint), as istioctl waypoint does')
    .option('-n, --namespace <ns>', 'the namespace (default: the kubeconfig context\'s, else default)')
    .option('--name <name>', `name of the waypoint (default ${DEFAULT_WAYPOINT_NAME})`);

  wp.command('generate')
    .description('print the Gateway of a waypoint as YAML')
    .option('--for <type>', `traffic the waypoint takes: ${WAYPOINT_FOR.join(', ')} (default: service)`)
    .option('-r, --revision <rev>', 'label the waypoint with this control-plane revision')
    .action((_o, cmd: Command) => {
      const o = ctx.options<CommonOpts>(cmd);
      ctx.out(yaml.dump(makeWaypoint(spec(o, o.namespace)), { noRefs: true }).trimEnd());
    });

  wp.command('apply')
    .description('create or update a waypoint; --enroll-namespace sends the namespace\'s traffic through it')
    .option('--for <type>', `traffic the waypoint takes: ${WAYPOINT_FOR.join(', ')} (default: service)`)
    .option('-r, --revision <rev>', 'label the waypoint with this control-plane revision')
    .option('--enroll-namespace', `label the namespace ${USE_WAYPOINT_LABEL}=NAME once the waypoint is applied`)
    .option('--overwrite', 'with --enroll-namespace: replace the waypoint the namespace uses now')
    .option('-w, --wait', 'wait until the waypoint is programmed')
    .option('--waypoint-timeout <duration>', 'how long --wait waits', DEFAULT_WAIT)
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<CommonOpts & { enrollNamespace?: boolean; overwrite?: boolean; wait?: boolean; waypointTimeout: string }>(cmd);
      const timeoutMs = parseDuration('--waypoint-timeout', o.waypointTimeout);
      const t = await ctx.target(cmd);
      const ns = o.namespace ?? t.defaultNamespace;
      const gw = makeWaypoint(spec(o, ns));
      const name = nameOf(gw);
      const info = await requireNamespace(t, ns);
      if (o.enrollNamespace) {
        const current = info.labels[USE_WAYPOINT_LABEL];
        if (current !== undefined && current !== name && !o.overwrite) {
          throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `namespace ${ns} already uses waypoint ${current} (${USE_WAYPOINT_LABEL}=${current}); add --overwrite to switch it to ${name}; nothing was applied`);
        }
        if (info.labels[DATAPLANE_MODE_LABEL] !== DATAPLANE_MODE.ambient) {
          ctx.warn(`⚠️ Warning: namespace is not enrolled in ambient. Consider running \`${t.labelCommand(ns, `${DATAPLANE_MODE_LABEL}=ambient`)}\``);
        }
      }
      await t.applyGateway(gw, [WAYPOINT_FOR_LABEL, REVISION_LABEL]);
      ctx.out(`✅ waypoint ${ns}/${name} applied`);
      if (o.wait) {
        const r = await waitProgrammed(t, gw, timeoutMs);
        if (!r.ok) throw new CliError(CLI_ERROR_CODES.TIMEOUT, `timed out after ${o.waypointTimeout} waiting for waypoint ${ns}/${name} to be programmed (Programmed=${r.cond.status} ${r.cond.reason}: ${r.cond.message})`);
        ctx.out(`✅ waypoint ${ns}/${name} is ready!`);
      }
      if (o.enrollNamespace) {
        await t.labelNamespace(ns, USE_WAYPOINT_LABEL, name);
        ctx.out(`✅ namespace ${ns} labeled with "${USE_WAYPOINT_LABEL}: ${name}"`);
      }
    });

  wp.command('list')
    .description('list waypoints: NAME, REVISION, TRAFFIC TYPE, PROGRAMMED')
    .option('-A, --all-namespaces', 'in every namespace')
    .option('-o, --output <format>', 'json | yaml (default: a table)')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<CommonOpts & { allNamespaces?: boolean; output?: string }>(cmd);
      const format = parseOutput(o.output);
      const t = await ctx.target(cmd);
      const ns = o.allNamespaces ? undefined : (o.namespace ?? t.defaultNamespace);
      if (ns !== undefined) await requireNamespace(t, ns);
      const items = await waypoints(t, ns);
      const rows: Row[] = [];
      for (const gw of items) {
        const l = labelsOf(gw);
        const row = [nameOf(gw), l[REVISION_LABEL] ?? 'default', l[WAYPOINT_FOR_LABEL] ?? 'service', (await t.programmed(gw)).status];
        rows.push(o.allNamespaces ? [nsOf(gw), ...row] : row);
      }
      const header = ['NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'];
      ctx.out(render(format, { header: o.allNamespaces ? ['NAMESPACE', ...header] : header, rows, data: { apiVersion: 'v1', kind: 'List', items }, empty: 'No waypoints found.' }));
    });

  wp.command('status')
    .description("show each waypoint's Programmed condition; --wait waits until all are programmed")
    .option('-A, --all-namespaces', 'in every namespace')
    .option('-w, --wait', 'wait until every waypoint shown is programmed')
    .option('--waypoint-timeout <duration>', 'how long --wait waits', DEFAULT_WAIT)
    .option('-o, --output <format>', 'json | yaml (default: a table)')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<CommonOpts & { allNamespaces?: boolean; wait?: boolean; waypointTimeout: string; output?: string }>(cmd);
      const format = parseOutput(o.output);
      const timeoutMs = parseDuration('--waypoint-timeout', o.waypointTimeout);
      const t = await ctx.target(cmd);
      const ns = o.allNamespaces ? undefined : (o.namespace ?? t.defaultNamespace);
      if (ns !== undefined) await requireNamespace(t, ns);
      let items = await waypoints(t, ns);
      if (o.name !== undefined) {
        items = items.filter((g) => nameOf(g) === o.name);
        if (items.length === 0) throw new CliError(CLI_ERROR_CODES.NO_WAYPOINT, `waypoint ${ns ?? '*'}/${o.name} not found (ambientctl waypoint list${ns ? ` -n ${ns}` : ' -A'})`);
      }
      const conds: Condition[] = [];
      const late: string[] = [];
      for (const gw of items) {
        const r = o.wait ? await waitProgrammed(t, gw, timeoutMs) : { ok: true, cond: await t.programmed(gw) };
        if (!r.ok) late.push(`${nsOf(gw)}/${nameOf(gw)}`);
        conds.push(r.cond);
      }
      const header = ['NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'];
      const rows = items.map((gw, i) => {
        const c = conds[i]!;
        const row = [nameOf(gw), c.status, c.type, c.reason, c.message];
        return o.allNamespaces ? [nsOf(gw), ...row] : row;
      });
      const data = items.map((gw, i) => ({ namespace: nsOf(gw), name: nameOf(gw), conditions: [conds[i]] }));
      ctx.out(render(format, { header: o.allNamespaces ? ['NAMESPACE', ...header] : header, rows, data, empty: 'No waypoints found.' }));
      if (late.length > 0) throw new CliError(CLI_ERROR_CODES.TIMEOUT, `timed out after ${o.waypointTimeout} waiting for ${late.join(', ')} to be programmed`);
    });

  wp.command('delete')
    .description('delete waypoints by name, or all of a namespace with --all')
    .argument('[names...]', 'waypoint names')
    .option('--all', 'every waypoint of the namespace')
    .option('-r, --revision <rev>', 'every waypoint of the namespace labelled with this revision')
    .action(async (names: string[], _o, cmd: Command) => {
      const o = ctx.options<CommonOpts & { all?: boolean }>(cmd);
      if ((o.all || o.revision !== undefined) && names.length > 0) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, 'give waypoint names or --all/--revision, not both');
      if (!o.all && o.revision === undefined && names.length === 0) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, 'name the waypoints to delete, or use --all (or --revision REV)');
      const t = await ctx.target(cmd);
      const ns = o.namespace ?? t.defaultNamespace;
      const info = await requireNamespace(t, ns);
      const existing = await waypoints(t, ns);
      const chosen = names.length > 0 ? names : existing.filter((g) => o.revision === undefined || labelsOf(g)[REVISION_LABEL] === o.revision).map(nameOf);
      const missing: string[] = [];
      for (const name of chosen) {
        if (!existing.some((g) => nameOf(g) === name) || !(await t.deleteGateway(ns, name))) {
          missing.push(name);
          continue;
        }
        ctx.out(`waypoint ${ns}/${name} deleted`);
        if (info.labels[USE_WAYPOINT_LABEL] === name) {
          ctx.warn(`⚠️ Warning: namespace ${ns} still has ${USE_WAYPOINT_LABEL}=${name}; its traffic cannot reach a waypoint until you remove the label: ${t.labelCommand(ns, `${USE_WAYPOINT_LABEL}-`)}`);
        }
      }
      if (chosen.length === 0) ctx.out('No waypoints found.');
      if (missing.length > 0) throw new CliError(CLI_ERROR_CODES.NO_WAYPOINT, `waypoint${missing.length > 1 ? 's' : ''} ${missing.map((m) => `${ns}/${m}`).join(', ')} not found (ambientctl waypoint list -n ${ns})`);
    });
}

function spec(o: CommonOpts, namespace: string | undefined): WaypointSpec {
  return {
    name: o.name ?? DEFAULT_WAYPOINT_NAME,
    ...(namespace !== undefined ? { namespace } : {}),
    ...(o.for !== undefined ? { for: o.for } : {}),
    ...(o.revision !== undefined ? { revision: o.revision } : {}),
  };
}
