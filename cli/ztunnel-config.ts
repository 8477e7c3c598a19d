/**
 * `ambientctl ztunnel-config workloads|services|policies|certificates`: what one ztunnel holds, read
 * from its admin `/config_dump` (in the lab directly inside the node's network namespace, in a
 * cluster through a port-forward via the API server, see port-forward.ts), printed the way istioctl
 * prints it.
 *
 * `parseDump` is the one place the dump's wire shape (`ztunnel/ztunnel.ts` configDump +
 * `core/model/state.ts` toJSON) is read.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { MeshBackend, ZtunnelRef } from './backend.js';
import type { CliContext } from './context.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { parseOutput, render, type Row } from './output.js';

type Raw = Record<string, unknown>;

export interface DumpWorkload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  readonly ips: readonly string[];
  readonly protocol: string;
  readonly healthy: boolean;
  readonly waypoint?: string;
  readonly raw: Raw;
}

export interface DumpService {
  readonly name: string;
  readonly namespace: string;
  readonly vips: readonly string[];
  readonly endpoints: readonly string[];
  readonly waypoint?: string;
  readonly raw: Raw;
}

export interface DumpPolicy {
  readonly name: string;
  readonly namespace: string;
  /** ALLOW / DENY, or `mTLS <MODE>` for a PeerAuthentication. */
  readonly action: string;
  /** Istio's names: Global, Namespace, WorkloadSelector. */
  readonly scope: string;
  readonly raw: Raw;
}

export interface DumpCertificate {
  readonly identity: string;
  readonly notBefore?: string;
  readonly notAfter?: string;
  readonly rotations: number;
  readonly raw: Raw;
}

/** A ztunnel's config dump, in the CLI's terms. */
export interface ZtunnelDump {
  readonly node: string;
  readonly workloads: readonly DumpWorkload[];
  readonly services: readonly DumpService[];
  readonly policies: readonly DumpPolicy[];
  readonly certificates: readonly DumpCertificate[];
}

const SCOPES: Record<string, string> = { mesh: 'Global', namespace: 'Namespace', workload: 'WorkloadSelector' };

const isObj = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.map(str) : []);
const waypointOf = (v: unknown): string | undefined => (isObj(v) && typeof v.address === 'string' ? v.address : undefined);

/**
 * Reads a `/config_dump` body; `source` names where it came from in errors.
 *
 * @example
 * const dump = parseDump(JSON.parse(text), 'ztunnel/node-1');
 * dump.workloads.map((w) => w.name);
 */
export function parseDump(raw: unknown, source: string): ZtunnelDump {
  if (!isObj(raw)) throw new CliError(CLI_ERROR_CODES.BAD_DUMP, `${source}: the config dump is not a JSON object`);
  const missing = ['workloads', 'services', 'authorizationPolicies'].filter((k) => !Array.isArray(raw[k]));
  if (missing.length > 0) throw new CliError(CLI_ERROR_CODES.BAD_DUMP, `${source}: not a ztunnel config dump (no ${missing.join(', ')} list)`);
  const workloads = (raw.workloads as unknown[]).filter(isObj).map((w) => ({
    uid: str(w.uid),
    name: str(w.name),
    namespace: str(w.namespace),
    node: str(w.node),
    ips: strs(w.ips),
    protocol: str(w.protocol),
    healthy: w.healthy !== false,
    ...(waypointOf(w.waypoint) ? { waypoint: waypointOf(w.waypoint)! } : {}),
    raw: w,
  }));
  const services = (raw.services as unknown[]).filter(isObj).map((s) => ({
    name: str(s.name),
    namespace: str(s.namespace),
    vips: strs(s.vips),
    endpoints: strs(s.endpoints),
    ...(waypointOf(s.waypoint) ? { waypoint: waypointOf(s.waypoint)! } : {}),
    raw: s,
  }));
  const policies: DumpPolicy[] = [
    ...(raw.authorizationPolicies as unknown[]).filter(isObj).map((p) => ({ name: str(p.name), namespace: str(p.namespace), action: str(p.action), scope: SCOPES[str(p.scope)] ?? str(p.scope), raw: p })),
    ...(Array.isArray(raw.peerAuthentications) ? raw.peerAuthentications : []).filter(isObj).map((p) => ({ name: str(p.name), namespace: str(p.namespace), action: `mTLS ${str(p.mode)}`, scope: SCOPES[str(p.scope)] ?? str(p.scope), raw: p })),
  ];
  const certificates = Object.entries(isObj(raw.certificates) ? raw.certificates : {}).map(([identity, c]) => {
    const cert = isObj(c) ? c : {};
    return {
      identity,
      ...(typeof cert.notBefore === 'string' ? { notBefore: cert.notBefore } : {}),
      ...(typeof cert.notAfter === 'string' ? { notAfter: cert.notAfter } : {}),
      rotations: typeof cert.rotations === 'number' ? cert.rotations : 0,
      raw: { identity, ...cert },
    };
  });
  return { node: str(raw.node), workloads, services, policies, certificates };
}

/** istioctl's WAYPOINT column: the name of the service (or workload) at the waypoint address, `None` without one. */
function waypointName(address: string | undefined, d: ZtunnelDump): string {
  if (address === undefined) return 'None';
  return d.services.find((s) => s.vips.includes(address))?.name ?? d.workloads.find((w) => w.ips.includes(address))?.name ?? address;
}

const byNsName = <T extends { namespace: string; name: string }>(a: T, b: T) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);

export interface WorkloadFilter {
  readonly namespace?: string;
  readonly node?: string;
  readonly address?: string;
}

export function workloadRows(d: ZtunnelDump, f: WorkloadFilter): { header: Row; rows: Row[]; data: Raw[] } {
  const ws = d.workloads
    .filter((w) => (f.namespace === undefined || w.namespace === f.namespace) && (f.node === undefined || w.node === f.node) && (f.address === undefined || w.ips.includes(f.address)))
    .sort((a, b) => byNsName(a, b) || a.node.localeCompare(b.node));
  return {
    header: ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'],
    rows: ws.map((w) => [w.namespace, w.name, w.ips[0] ?? '', w.node, waypointName(w.waypoint, d), w.protocol]),
    data: ws.map((w) => w.raw),
  };
}

export function serviceRows(d: ZtunnelDump, namespace: string | undefined): { header: Row; rows: Row[]; data: Raw[] } {
  const healthy = new Set(d.workloads.filter((w) => w.healthy).map((w) => w.uid));
  const ss = d.services.filter((s) => namespace === undefined || s.namespace === namespace).sort(byNsName);
  return {
    header: ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'],
    rows: ss.map((s) => [s.namespace, s.name, s.vips[0] ?? '', waypointName(s.waypoint, d), `${s.endpoints.filter((e) => healthy.has(e)).length}/${s.endpoints.length}`]),
    data: ss.map((s) => s.raw),
  };
}

export function policyRows(d: ZtunnelDump, namespace: string | undefined): { header: Row; rows: Row[]; data: Raw[] } {
  const ps = d.policies.filter((p) => namespace === undefined || p.namespace === namespace).sort(byNsName);
  return { header: ['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'], rows: ps.map((p) => [p.namespace, p.name, p.action, p.scope]), data: ps.map((p) => p.raw) };
}

export function certificateRows(d: ZtunnelDump, now: number): { header: Row; rows: Row[]; data: Raw[] } {
  const cs = [...d.certificates].sort((a, b) => a.identity.localeCompare(b.identity));
  const valid = (c: DumpCertificate) => c.notBefore !== undefined && c.notAfter !== undefined && Date.parse(c.notBefore) <= now && now < Date.parse(c.notAfter);
  return {
    header: ['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'],
    // The dump records validity and rotations, not serial numbers or the chain: NA, as istioctl prints missing values.
    rows: cs.map((c) => [c.identity, 'Leaf', c.notAfter ? 'Available' : 'Initializing', String(valid(c)), 'NA', c.notAfter ?? 'NA', c.notBefore ?? 'NA']),
    data: cs.map((c) => c.raw),
  };
}

interface ZcOpts {
  node?: string;
  file?: string;
  output?: string;
}

/** The dump to show: `--file` (`-` is stdin), else the ztunnel on `--node`, else the first ztunnel (certificates need one). */
async function loadDump(ctx: CliContext, cmd: Command, o: ZcOpts, perNode: boolean): Promise<ZtunnelDump> {
  if (o.file !== undefined) {
    if (o.node !== undefined) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, 'give --file or --node, not both');
    let text: string;
    try {
      text = o.file === '-' ? await readStdin() : await readFile(o.file, 'utf8');
    } catch (err) {
      throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `--file ${o.file}: ${(err as Error).message}`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new CliError(CLI_ERROR_CODES.BAD_DUMP, `--file ${o.file}: not JSON (save it with: curl -s localhost:15000/config_dump)`);
    }
    return parseDump(raw, o.file);
  }
  const t = await ctx.target(cmd);
  const z = await pickZtunnel(t, o.node, perNode);
  if (o.node === undefined) ctx.warn(`(ztunnel ${z.name} on ${z.node}; --node picks another)`);
  return parseDump(await t.configDump(z), `ztunnel ${z.name}`);
}

async function pickZtunnel(t: MeshBackend, node: string | undefined, perNode: boolean): Promise<ZtunnelRef> {
  const all = await t.ztunnels();
  if (node !== undefined) {
    const z = all.find((x) => x.node === node);
    if (!z) throw new CliError(CLI_ERROR_CODES.NO_ZTUNNEL, `no ztunnel runs on node ${node} in the ${t.where}${all.length ? ` (ztunnels run on: ${[...new Set(all.map((x) => x.node))].join(', ')})` : ''}`);
    return z;
  }
  if (all.length === 0) throw new CliError(CLI_ERROR_CODES.NO_ZTUNNEL, `no ztunnel runs in the ${t.where}`);
  if (perNode && all.length > 1) {
    throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `${all.length} ztunnels (on ${all.map((x) => x.node).join(', ')}) hold different certificates; pick one with --node`);
  }
  return all[0]!;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function addZtunnelConfigCommands(program: Command, ctx: CliContext): void {
  const zc = program
    .command('ztunnel-config')
    .alias('zc')
    .description("what a ztunnel holds, from its admin /config_dump, as istioctl ztunnel-config shows it")
    .option('--node <node>', 'the ztunnel on this node (default: the first one)')
    .option('-f, --file <file>', 'read a saved config dump instead (- for stdin)')
    .option('-o, --output <format>', 'json | yaml | short (the table, default)');

  const show = (o: ZcOpts, r: { header: Row; rows: Row[]; data: Raw[] }) => ctx.out(render(parseOutput(o.output), r));

  zc.command('workloads')
    .aliases(['workload', 'w'])
    .description('workloads: NAMESPACE, POD NAME, ADDRESS, NODE, WAYPOINT, PROTOCOL')
    .option('--workload-namespace <ns>', 'only workloads in this namespace')
    .option('--workload-node <node>', 'only workloads on this node')
    .option('--address <ip>', 'only the workload with this address')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<ZcOpts & { workloadNamespace?: string; workloadNode?: string; address?: string }>(cmd);
      parseOutput(o.output);
      const d = await loadDump(ctx, cmd, o, false);
      show(o, workloadRows(d, { ...(o.workloadNamespace !== undefined ? { namespace: o.workloadNamespace } : {}), ...(o.workloadNode !== undefined ? { node: o.workloadNode } : {}), ...(o.address !== undefined ? { address: o.address } : {}) }));
    });

  zc.command('services')
    .aliases(['service', 'svc', 's'])
    .description('services: NAMESPACE, SERVICE NAME, SERVICE VIP, WAYPOINT, ENDPOINTS (healthy/all)')
    .option('--service-namespace <ns>', 'only services in this namespace')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<ZcOpts & { serviceNamespace?: string }>(cmd);
      parseOutput(o.output);
      show(o, serviceRows(await loadDump(ctx, cmd, o, false), o.serviceNamespace));
    });

  zc.command('policies')
    .aliases(['policy', 'pol', 'p'])
    .description('L4 policies ztunnel enforces: NAMESPACE, POLICY NAME, ACTION, SCOPE (PeerAuthentications as ACTION mTLS <MODE>)')
    .option('--policy-namespace <ns>', 'only policies in this namespace')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<ZcOpts & { policyNamespace?: string }>(cmd);
      parseOutput(o.output);
      show(o, policyRows(await loadDump(ctx, cmd, o, false), o.policyNamespace));
    });

  zc.command('certificates')
    .aliases(['certificate', 'certs', 'cert'])
    .description("the ztunnel's certificates: CERTIFICATE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE")
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<ZcOpts>(cmd);
      parseOutput(o.output);
      show(o, certificateRows(await loadDump(ctx, cmd, o, true), Date.now()));
    });
}
