/**
 * In-memory stand-ins for the agent's I/O: a kernel that remembers which programs sit on which
 * cgroup (directories must exist, as for the real loader), and a desired-state source the test
 * pushes snapshots into.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../../core/telemetry/log.js';
import { TemplateCgroupResolver } from '../../cni-plugin/agent/cgroup.js';
import type { ReconcilerInputs } from '../../cni-plugin/agent/reconciler.js';
import type { BpfStatus, Redirector, RedirectConfig } from '../../cni-plugin/agent/redirector.js';
import { POD_PROGRAMS, STRICT_PROGRAMS, ZTUNNEL_PROGRAMS } from '../../cni-plugin/agent/redirector.js';
import type { DesiredState, DesiredStateSource } from '../../cni-plugin/agent/desired-state.js';

export class FakeRedirector implements Redirector {
  readonly attached = new Map<string, Set<string>>();
  readonly calls: string[] = [];
  loadedWith: RedirectConfig | undefined;
  /** Makes the next calls of this kind fail (`status`: the agent's kernel read, attachmentsOf). */
  failNext: Partial<Record<'attachPod' | 'status' | 'load', Error>> = {};

  private async requireDir(cgroup: string): Promise<void> {
    const s = await stat(cgroup).catch(() => undefined);
    if (!s?.isDirectory()) throw new Error(`cgroup ${cgroup} does not exist`);
  }

  private take(kind: keyof FakeRedirector['failNext']): void {
    const e = this.failNext[kind];
    if (e) {
      delete this.failNext[kind];
      throw e;
    }
  }

  private set(cgroup: string, names: readonly string[], on: boolean): void {
    const s = this.attached.get(cgroup) ?? new Set<string>();
    for (const n of names) {
      if (on) s.add(n);
      else s.delete(n);
    }
    if (s.size === 0) this.attached.delete(cgroup);
    else this.attached.set(cgroup, s);
  }

  async load(config: RedirectConfig): Promise<void> {
    this.calls.push('load');
    this.take('load');
    this.loadedWith = config;
  }

  async attachPod(cgroup: string, opts: { strict: boolean }): Promise<void> {
    this.calls.push(`attachPod ${cgroup} strict=${opts.strict}`);
    this.take('attachPod');
    await this.requireDir(cgroup);
    this.set(cgroup, POD_PROGRAMS, true);
    this.set(cgroup, STRICT_PROGRAMS, opts.strict);
  }

  async setStrict(cgroup: string, strict: boolean): Promise<void> {
    this.calls.push(`setStrict ${cgroup} ${strict}`);
    await this.requireDir(cgroup);
    this.set(cgroup, STRICT_PROGRAMS, strict);
  }

  async detachPod(cgroup: string): Promise<void> {
    this.calls.push(`detachPod ${cgroup}`);
    this.set(cgroup, [...POD_PROGRAMS, ...STRICT_PROGRAMS], false);
  }

  async attachZtunnel(cgroup: string): Promise<void> {
    this.calls.push(`attachZtunnel ${cgroup}`);
    await this.requireDir(cgroup);
    this.set(cgroup, ZTUNNEL_PROGRAMS, true);
  }

  async detachZtunnel(cgroup: string): Promise<void> {
    this.calls.push(`detachZtunnel ${cgroup}`);
    this.set(cgroup, ZTUNNEL_PROGRAMS, false);
  }

  async status(): Promise<BpfStatus> {
    return {
      loaded: this.loadedWith !== undefined,
      attachments: [...this.attached].map(([cgroup, s]) => ({ cgroup, programs: [...s].sort() })),
    };
  }

  async attachmentsOf(cgroups: readonly string[]): Promise<BpfStatus['attachments']> {
    this.calls.push(`attachmentsOf ${cgroups.length}`);
    this.take('status');
    return (await this.status()).attachments.filter((a) => cgroups.includes(a.cgroup));
  }

  /** Calls of one kind, for assertions. */
  callsOf(prefix: string): string[] {
    return this.calls.filter((c) => c.startsWith(prefix));
  }
}

export class PushDesiredSource implements DesiredStateSource {
  readonly describe = 'test';
  lastError: Error | undefined;
  private listener: ((s: DesiredState) => void) | undefined;

  constructor(private state: DesiredState) {}

  async start(listener: (s: DesiredState) => void): Promise<void> {
    this.listener = listener;
    listener(this.state);
  }

  push(state: DesiredState): void {
    this.state = state;
    this.listener?.(state);
  }

  async close(): Promise<void> {
    this.listener = undefined;
  }
}

/**
 * A Reconciler's inputs as the agent tests use them: node `node-a`, pod cgroups are directories
 * `<root>/pod-<namespace>-<name>`, ztunnel's is `<root>/ztunnel`, exempt kube-system and
 * istio-system, a silent logger. `over` replaces any of them.
 */
export function reconcilerInputs(root: string, over: Partial<ReconcilerInputs> & Pick<ReconcilerInputs, 'redirector' | 'store'>): ReconcilerInputs {
  const zt = join(root, 'ztunnel');
  return {
    nodeName: 'node-a',
    resolver: new TemplateCgroupResolver(root, 'pod-{podNamespace}-{podName}'),
    cgroupRoot: root,
    ztunnelCgroups: [zt],
    ztunnelSource: zt,
    protectedCgroups: [],
    exemptNamespaces: ['istio-system', 'kube-system'],
    rootNamespace: 'istio-system',
    redirectConfig: { ztunnelIp: '10.0.0.1', outboundPort: 15001, nodeIps: ['10.0.0.1'], excludeCidrs: [], excludePorts: [] },
    pinDir: '/sys/fs/bpf/test',
    desiredSource: 'test',
    logger: silentLogger,
    ...over,
  };
}
