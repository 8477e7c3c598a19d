/**
 * The mesh in the lab on this machine. Objects go through the lab's own `apply`/`delete`/`label`
 * (`lab/apply.ts`, `lab/label.ts`), so a waypoint applied here is checked by the control plane's manifest
 * parser, written to the store the lab's control plane reads, and run by the lab's gateway
 * controller (`lab/waypoints.ts`), exactly like `lab apply -f`.
 * ztunnels are read on their admin port inside their node's network namespace.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { PORTS } from '../core/hbone/constants.js';
import { GATEWAY_NAME_LABEL, WAYPOINT_CLASS } from '../core/labels.js';
import { alive, apply, DIST, get, getInNetns, labelNamespace, netnsPath, readState, remove, type LabPaths, type LabState } from '../lab/index.js';
import type { ApplyResult, ComponentVersion, Condition, KubeObject, MeshBackend, NamespaceInfo, ZtunnelRef } from './backend.js';
import { programmedCondition } from './backend.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';

/** ztunnel's admin inside its node namespace (the lab leaves ADMIN_ADDRESS/ADMIN_PORT at their defaults). */
const ZTUNNEL_ADMIN = `http://127.0.0.1:${PORTS.admin}`;

export interface LabInputs {
  readonly paths: LabPaths;
  /** This CLI's version: the lab's processes run this checkout's `dist/`. */
  readonly clientVersion: string;
}

const meta = (o: KubeObject): Record<string, unknown> => (o.metadata ?? {}) as Record<string, unknown>;

/**
 * The lab whose state is in `paths.stateDir`.
 *
 * @example
 * const lab = await LabBackend.open({ paths: defaultPaths(), clientVersion: '0.1.0' });
 * await lab.gateways('demo');
 */
export class LabBackend implements MeshBackend {
  readonly kind = 'lab';
  readonly where: string;
  readonly defaultNamespace = 'default';
  readonly #in: LabInputs;

  private constructor(inputs: LabInputs) {
    this.#in = inputs;
    this.where = `lab ${inputs.paths.prefix} (${inputs.paths.stateDir})`;
  }

  /** Fails with `ERR_CLI_NO_LAB` when no lab state is there. */
  static async open(inputs: LabInputs): Promise<LabBackend> {
    const s = await readState(inputs.paths).catch((err: Error) => {
      throw new CliError(CLI_ERROR_CODES.NO_LAB, `the lab state ${inputs.paths.stateDir}/lab.json cannot be read: ${err.message}`);
    });
    if (!s) throw new CliError(CLI_ERROR_CODES.NO_LAB, `no lab is up in ${inputs.paths.stateDir} (no lab.json); start one with ambientctl lab up, or drop --lab to use a cluster`);
    return new LabBackend(inputs);
  }

  async #state(): Promise<LabState> {
    const s = await readState(this.#in.paths);
    if (!s) throw new CliError(CLI_ERROR_CODES.NO_LAB, `the lab in ${this.#in.paths.stateDir} went away (no lab.json)`);
    return s;
  }

  async #list(resource: string, namespace?: string): Promise<KubeObject[]> {
    const text = await get(this.#in.paths, resource, { output: 'json', ...(namespace !== undefined ? { namespace } : {}) });
    return ((JSON.parse(text) as { items?: KubeObject[] }).items ?? []) as KubeObject[];
  }

  async namespace(name: string): Promise<NamespaceInfo | undefined> {
    const ns = (await this.#list('ns')).find((o) => meta(o).name === name);
    return ns ? { name, labels: { ...((meta(ns).labels as Record<string, string>) ?? {}) } } : undefined;
  }

  async labelNamespace(name: string, key: string, value: string | null): Promise<void> {
    await labelNamespace(this.#in.paths, name, [value === null ? `${key}-` : `${key}=${value}`]);
  }

  async gateways(namespace: string | undefined): Promise<KubeObject[]> {
    return this.#list('gateways', namespace);
  }

  /** Runs the lab's own apply/delete on a one-object manifest, so nothing here re-implements the store. */
  async #withManifest<T>(obj: KubeObject, fn: (file: string, say: (line: string) => void) => Promise<void>, result: (lines: string[]) => T): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'ambientctl-'));
    const lines: string[] = [];
    try {
      const file = join(dir, 'gateway.yaml');
      await writeFile(file, yaml.dump(obj, { noRefs: true }));
      await fn(file, (l) => lines.push(l));
      return result(lines);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The lab's apply replaces the stored object as given, so labels the caller no longer sets go with it. */
  async applyGateway(gateway: KubeObject, _ownedLabels: readonly string[]): Promise<ApplyResult> {
    return this.#withManifest(
      gateway,
      (file, say) => apply(this.#in.paths, file, say),
      (lines) => {
        const m = /\b(created|configured|unchanged)$/.exec(lines.find((l) => l.startsWith('gateway/')) ?? '');
        return (m?.[1] as ApplyResult | undefined) ?? 'configured';
      },
    );
  }

  async deleteGateway(namespace: string, name: string): Promise<boolean> {
    const exists = (await this.gateways(namespace)).some((g) => meta(g).name === name);
    if (!exists) return false;
    const obj = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace }, spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: PORTS.hbone, protocol: 'HBONE' }] } };
    return this.#withManifest(obj, (file, say) => remove(this.#in.paths, file, say), () => true);
  }

  async programmed(gateway: KubeObject): Promise<Condition> {
    // The lab's gateway controller (lab/waypoints.ts) writes the status once the waypoint pod is ready.
    const m = meta(gateway);
    const fresh = (await this.gateways(m.namespace as string)).find((g) => meta(g).name === m.name);
    if (!fresh) return { type: 'Programmed', status: 'False', reason: 'NotFound', message: 'the Gateway is gone' };
    return programmedCondition(fresh);
  }

  async ztunnels(node?: string): Promise<ZtunnelRef[]> {
    const s = await this.#state();
    return s.nodes
      .map((n) => ({ node: n.name, name: `ztunnel/${n.name}` }))
      .filter((z) => node === undefined || z.node === node)
      .sort((a, b) => a.node.localeCompare(b.node, undefined, { numeric: true }));
  }

  async configDump(z: ZtunnelRef): Promise<unknown> {
    const s = await this.#state();
    const n = s.nodes.find((x) => x.name === z.node);
    if (!n) throw new CliError(CLI_ERROR_CODES.NO_ZTUNNEL, `the lab has no node ${z.node}`);
    let text: string;
    try {
      text = await getInNetns(netnsPath(n.netns), `${ZTUNNEL_ADMIN}/config_dump`);
    } catch (err) {
      const proc = s.procs[z.name];
      const running = proc ? await alive(proc.pid, proc.marker) : false;
      const why = running ? (err as Error).message.split('\n')[0] : `${z.name} is not running (ambientctl lab status restarts it; its log: ambientctl lab logs ${z.name})`;
      throw new CliError(CLI_ERROR_CODES.UNREACHABLE, `${z.name}: cannot read ${ZTUNNEL_ADMIN}/config_dump in ${n.netns}: ${why}`, { cause: err });
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new CliError(CLI_ERROR_CODES.BAD_DUMP, `${z.name}: ${ZTUNNEL_ADMIN}/config_dump is not JSON`);
    }
  }

  async versions(): Promise<ComponentVersion[]> {
    const s = await this.#state();
    // The lab runs this checkout's dist/; no admin endpoint reports a version, so that is what is known.
    const version = (running: boolean) => (running ? `${this.#in.clientVersion} (runs ${DIST})` : 'not running');
    const out: ComponentVersion[] = [];
    for (const [key, rec] of Object.entries(s.procs).sort(([a], [b]) => a.localeCompare(b))) {
      const component = key === 'control-plane' ? 'control-plane' : key.startsWith('ztunnel/') ? 'ztunnel' : undefined;
      if (component) out.push({ component, name: key, version: version(await alive(rec.pid, rec.marker)) });
    }
    for (const p of Object.values(s.pods).sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name))) {
      const labels = ((p.raw.metadata as Record<string, unknown> | undefined)?.labels ?? {}) as Record<string, string>;
      if (labels[GATEWAY_NAME_LABEL] === undefined) continue;
      const running = (await Promise.all(p.containers.map((c) => alive(c.pid, '')))).every(Boolean);
      out.push({ component: 'waypoint', name: `${p.namespace}/${p.name}`, version: version(running) });
    }
    return out;
  }

  labelCommand(namespace: string, label: string): string {
    return `ambientctl lab label namespace ${namespace} ${label}`;
  }
}
