/**
 * `ambientctl precheck`: can this node (and, with a kubeconfig, this cluster) run the mesh? Each
 * check prints OK, WARN or FAIL with a fix; any FAIL makes the exit code 1. Every path and the
 * command runner are inputs, so the checks run against fixture files in tests and against the
 * host's files from a container (`--proc-dir /host/proc`, ...).
 */
import { access, readdir, readFile } from 'node:fs/promises';
import { release as osRelease } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { execFileRunner, type CommandRunner } from '../bpf/command.js';
import { cgroup2Root, MIN_KERNEL } from '../bpf/kernel.js';
import { DATAPLANE_MODE, DATAPLANE_MODE_LABEL } from '../core/labels.js';
import type { CliContext } from './context.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { KubeClient, loadKubeconfig, type LoadedKubeconfig } from './kube.js';
import { parseOutput, render } from './output.js';
import { wantsLab } from './target.js';

export type CheckStatus = 'OK' | 'WARN' | 'FAIL';

export interface CheckResult {
  readonly check: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to do about a WARN or FAIL. */
  readonly fix?: string;
}

export interface PrecheckInputs {
  /** `uname -r`. */
  readonly release: string;
  readonly procDir: string;
  readonly btfPath: string;
  /** CNI config directories, in order of preference (the first that exists is used). */
  readonly cniConfDirs: readonly string[];
  /** bpftool's name or path. */
  readonly bpftool: string;
  readonly run: CommandRunner;
  /** Set: the cluster checks run against it. */
  readonly kube?: KubeClient;
}

/** Plugin types that mean another mesh already captures pod traffic on this node. */
const CONFLICTING_PLUGINS: Record<string, { status: CheckStatus; why: string; fix: string }> = {
  'istio-cni': {
    status: 'FAIL',
    why: "Istio's CNI plugin is chained: Istio's ztunnel would capture the same pods",
    fix: 'uninstall Istio (istioctl uninstall --purge) or keep this node out of one of the meshes',
  },
  'linkerd-cni': {
    status: 'FAIL',
    why: "Linkerd's CNI plugin is chained: its iptables rules send pod traffic to linkerd-proxy before our eBPF hooks see it",
    fix: 'remove Linkerd (linkerd uninstall | kubectl delete -f -) from this cluster first',
  },
  'cilium-cni': {
    status: 'WARN',
    why: 'Cilium is the primary CNI: fine, as long as its socket-level load balancing stays in the host namespace',
    fix: 'set socketLB.hostNamespaceOnly=true and cni.exclusive=false in Cilium\'s Helm values (as Istio ambient requires)',
  },
};

/** Cilium's socket-LB programs, as bpftool names them (`cil_sock4_connect`, ...). */
const CILIUM_SOCK_PROG = /\bcil_sock[46]?_\w+/;

function kernelCheck(release: string): CheckResult {
  const m = /^(\d+)\.(\d+)/.exec(release);
  const [maj, min] = MIN_KERNEL;
  const ok = m !== null && (Number(m[1]) > maj || (Number(m[1]) === maj && Number(m[2]) >= min));
  return ok
    ? { check: 'kernel', status: 'OK', detail: `${release} (needs ${maj}.${min}+)` }
    : { check: 'kernel', status: 'FAIL', detail: `${release} is older than ${maj}.${min}: the getsockname hooks ztunnel relies on arrived in ${maj}.${min}`, fix: `upgrade the node's kernel to ${maj}.${min} or later` };
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** The CNI config the runtime uses: the first `*.conflist`/`*.conf`/`*.json` by name, as the CRI runtimes pick it. */
async function primaryCni(dirs: readonly string[]): Promise<{ dir?: string; file?: string; text?: string; error?: string }> {
  for (const dir of dirs) {
    const entries = await readdir(dir).catch(() => undefined);
    if (entries === undefined) continue;
    const file = entries.filter((e) => /\.(conflist|conf|json)$/.test(e)).sort()[0];
    if (!file) return { dir };
    try {
      return { dir, file: join(dir, file), text: await readFile(join(dir, file), 'utf8') };
    } catch (err) {
      return { dir, file: join(dir, file), error: (err as Error).message };
    }
  }
  return {};
}

function pluginTypes(text: string): string[] {
  const conf = JSON.parse(text) as { type?: unknown; plugins?: Array<{ type?: unknown }> };
  const list = Array.isArray(conf.plugins) ? conf.plugins : [conf];
  return list.map((p) => (typeof p?.type === 'string' ? p.type : '')).filter(Boolean);
}

/**
 * Runs every check; never throws for what it finds (a FAIL row says it).
 *
 * @example
 * const results = await precheck({ release: os.release(), procDir: '/proc', btfPath: '/sys/kernel/btf/vmlinux', cniConfDirs: ['/etc/cni/net.d'], bpftool: 'bpftool', run: execFileRunner() });
 */
export async function precheck(i: PrecheckInputs): Promise<CheckResult[]> {
  const out: CheckResult[] = [kernelCheck(i.release)];

  const cg = await cgroup2Root(i.procDir);
  out.push(
    cg
      ? { check: 'cgroup v2', status: 'OK', detail: `mounted at ${cg}` }
      : { check: 'cgroup v2', status: 'FAIL', detail: `no cgroup2 mount in ${i.procDir}/self/mountinfo: the redirect programs attach to pod cgroups`, fix: 'boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup; in a container mount the host\'s /sys/fs/cgroup' },
  );

  out.push(
    (await exists(i.btfPath))
      ? { check: 'kernel BTF', status: 'OK', detail: i.btfPath }
      : { check: 'kernel BTF', status: 'FAIL', detail: `no ${i.btfPath}`, fix: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (distribution kernels 5.8+ are)' },
  );

  let bpftoolOk = false;
  try {
    const v = await i.run.run(i.bpftool, ['version']);
    bpftoolOk = true;
    out.push({ check: 'bpftool', status: 'OK', detail: v.stdout.split('\n')[0]?.trim() || i.bpftool });
  } catch (err) {
    const notFound = (err as { notFound?: boolean }).notFound === true;
    out.push({ check: 'bpftool', status: 'FAIL', detail: notFound ? `${i.bpftool} not found in PATH` : `${i.bpftool} version failed: ${(err as Error).message}`, fix: 'apt-get install bpftool (Ubuntu: linux-tools-common linux-tools-$(uname -r))' });
  }

  const cni = await primaryCni(i.cniConfDirs);
  if (!cni.dir) {
    out.push({ check: 'CNI config', status: 'FAIL', detail: `no CNI config directory (looked in ${i.cniConfDirs.join(', ')})`, fix: 'install the cluster\'s CNI first, or point --cni-conf-dir at its config directory' });
  } else if (!cni.file) {
    out.push({ check: 'CNI config', status: 'FAIL', detail: `${cni.dir} holds no *.conflist, *.conf or *.json`, fix: 'install the cluster\'s CNI first; our plugin chains onto its primary config' });
  } else if (cni.error !== undefined || cni.text === undefined) {
    out.push({ check: 'CNI config', status: 'FAIL', detail: `${cni.file} cannot be read: ${cni.error ?? ''}`, fix: 'run as root (the node agent does)' });
  } else {
    let types: string[] | undefined;
    try {
      types = pluginTypes(cni.text);
    } catch (err) {
      out.push({ check: 'CNI config', status: 'FAIL', detail: `${cni.file} is not JSON: ${(err as Error).message}`, fix: 'repair or remove the file; the runtime cannot use it either' });
    }
    if (types) {
      out.push({ check: 'CNI config', status: 'OK', detail: `${cni.file} (plugins: ${types.join(', ') || 'none'})` });
      const conflicts = types.filter((t) => CONFLICTING_PLUGINS[t]);
      for (const t of conflicts) {
        const c = CONFLICTING_PLUGINS[t]!;
        out.push({ check: 'other meshes', status: c.status, detail: `${t} in ${cni.file}: ${c.why}`, fix: c.fix });
      }
      if (conflicts.length === 0) out.push({ check: 'other meshes', status: 'OK', detail: `no istio-cni, linkerd-cni or cilium-cni in ${cni.file}` });
    }
  }

  if (!bpftoolOk) {
    out.push({ check: 'cilium socket-LB', status: 'WARN', detail: 'not checked: needs bpftool', fix: 'install bpftool and run precheck again' });
  } else if (cg) {
    try {
      const tree = (await i.run.run(i.bpftool, ['cgroup', 'tree', cg])).stdout;
      const hit = tree.split('\n').find((l) => CILIUM_SOCK_PROG.test(l) && /connect[46]/.test(l));
      out.push(
        hit
          ? { check: 'cilium socket-LB', status: 'WARN', detail: `Cilium rewrites connect() in pod cgroups (${hit.trim().replace(/\s+/g, ' ')}): Service addresses are translated before our redirect sees them`, fix: 'set socketLB.hostNamespaceOnly=true in Cilium\'s Helm values' }
          : { check: 'cilium socket-LB', status: 'OK', detail: `no Cilium connect programs under ${cg}` },
      );
    } catch (err) {
      out.push({ check: 'cilium socket-LB', status: 'WARN', detail: `bpftool cgroup tree ${cg} failed: ${(err as Error).message}`, fix: 'run precheck as root' });
    }
  }

  if (i.kube) out.push(...(await clusterChecks(i.kube)));
  return out;
}

interface Webhook {
  readonly metadata?: { readonly name?: string };
  readonly webhooks?: Array<{ readonly clientConfig?: { readonly service?: { readonly namespace?: string; readonly name?: string } } }>;
}

/** Istio's sidecar injector (its webhook, and namespaces asking for sidecars) alongside ambient capture. */
async function clusterChecks(kube: KubeClient): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const hooks = await kube.json<{ items?: Webhook[] }>('GET', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations');
  const injector = (hooks.items ?? []).find((h) => /sidecar-injector/.test(h.metadata?.name ?? '') || (h.webhooks ?? []).some((w) => w.clientConfig?.service?.namespace === 'istio-system' && /istiod|sidecar-injector/.test(w.clientConfig.service.name ?? '')));
  out.push(
    injector
      ? { check: 'sidecar injector', status: 'WARN', detail: `${injector.metadata?.name ?? '?'} is installed: pods in namespaces labelled istio-injection=enabled get Istio sidecars, which capture their traffic before ztunnel`, fix: 'do not label ambient namespaces istio-injection=enabled; remove Istio (istioctl uninstall --purge) if it is not needed' }
      : { check: 'sidecar injector', status: 'OK', detail: 'no Istio sidecar injector webhook' },
  );
  const nss = await kube.json<{ items?: Array<{ metadata?: { name?: string; labels?: Record<string, string> } }> }>('GET', '/api/v1/namespaces');
  const both = (nss.items ?? []).filter((n) => n.metadata?.labels?.['istio-injection'] === 'enabled' && n.metadata.labels[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE.ambient).map((n) => n.metadata?.name ?? '');
  if (both.length > 0) out.push({ check: 'sidecar injector', status: 'FAIL', detail: `namespaces both injected and ambient: ${both.join(', ')}`, fix: `kubectl label namespace ${both[0]} istio-injection-` });
  return out;
}

export function addPrecheckCommand(program: Command, ctx: CliContext): void {
  program
    .command('precheck')
    .description('check this node (and the cluster, when a kubeconfig is found) before installing: kernel, cgroup v2, BTF, bpftool, CNI, other meshes')
    .option('--proc-dir <dir>', 'the /proc to read (from a container: the host\'s)', '/proc')
    .option('--btf-path <path>', 'the kernel BTF file', '/sys/kernel/btf/vmlinux')
    .option('--cni-conf-dir <dir>', 'the CNI config directory (default: /etc/cni/net.d)')
    .option('--kernel-release <release>', 'the kernel release to check (default: uname -r)')
    .option('--bpftool <path>', 'bpftool to run', 'bpftool')
    .option('-o, --output <format>', 'json | yaml (default: a table)')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<{ procDir: string; btfPath: string; cniConfDir?: string; kernelRelease?: string; bpftool: string; output?: string }>(cmd);
      const format = parseOutput(o.output);
      let kube: KubeClient | undefined;
      if (!wantsLab(o)) {
        let kc: LoadedKubeconfig | undefined;
        try {
          kc = loadKubeconfig({ ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}), ...(o.context !== undefined ? { context: o.context } : {}), env: { ...(ctx.env['KUBECONFIG'] !== undefined ? { KUBECONFIG: ctx.env['KUBECONFIG'] } : {}), ...(ctx.env['HOME'] !== undefined ? { HOME: ctx.env['HOME'] } : {}) } });
        } catch (err) {
          // Node checks stand on their own; a kubeconfig asked for by flag must exist.
          if (o.kubeconfig !== undefined || o.context !== undefined) throw err;
          ctx.warn('(no kubeconfig: cluster checks skipped)');
        }
        if (kc) kube = new KubeClient({ kubeconfig: kc });
      }
      const results = await precheck({
        release: o.kernelRelease ?? osRelease(),
        procDir: o.procDir,
        btfPath: o.btfPath,
        cniConfDirs: [o.cniConfDir ?? '/etc/cni/net.d'],
        bpftool: o.bpftool,
        run: execFileRunner(),
        ...(kube ? { kube } : {}),
      });
      ctx.out(render(format, { header: ['STATUS', 'CHECK', 'DETAIL', 'FIX'], rows: results.map((r) => [r.status, r.check, r.detail, r.fix ?? '']), data: results }));
      const failed = results.filter((r) => r.status === 'FAIL').length;
      if (failed > 0) throw new CliError(CLI_ERROR_CODES.PRECHECK_FAILED, `${failed} check${failed > 1 ? 's' : ''} failed`);
    });
}
