/** `ambientctl lab ...`: the whole mesh on this machine (lab/, docs/lab.md). */
import type { Command } from 'commander';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { apply, defaultPaths, DEFAULT_PREFIX, down, ensureProcesses, exec, get, labelNamespace, leftovers, logs, remove, requireLab, runDemo, statusTable, up, type LabPaths } from '../lab/index.js';

const PREFIX_RE = /^[a-z][a-z0-9-]{1,30}$/;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function addLabCommands(program: Command): void {
  const lab = program
    .command('lab')
    .description('a cluster of network namespaces on this machine: real eBPF redirection, real mTLS, real processes')
    .option('--prefix <prefix>', 'name prefix of everything the lab creates (namespaces, cgroups, pins, state dir /run/PREFIX)', DEFAULT_PREFIX);
  const paths = (): LabPaths => {
    const prefix = (lab.opts() as { prefix: string }).prefix;
    if (!PREFIX_RE.test(prefix)) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `--prefix ${JSON.stringify(prefix)}: use 2-31 lowercase letters, digits and '-', starting with a letter`);
    return defaultPaths(prefix);
  };

  lab
    .command('up')
    .description('build the lab (or restart what died in it); --demo also deploys and drives a demo app')
    .option('--nodes <n>', 'number of nodes', (v) => Number(v))
    .option('--demo', 'deploy the demo application and show what the mesh did')
    .action(async (opts: { nodes?: number; demo?: boolean }) => {
      const started = Date.now();
      const s = await up(paths(), { ...(opts.nodes !== undefined ? { nodes: opts.nodes } : {}), progress: say });
      say(`\n${await statusTable(s)}\nlab up in ${((Date.now() - started) / 1000).toFixed(1)} s (state, logs: ${paths().stateDir})`);
      if (opts.demo) await runDemo(paths(), say);
      else say('\nnext: ambientctl lab up --demo, or ambientctl lab apply -f FILE; ambientctl lab down removes everything');
    });

  lab
    .command('down')
    .description('remove everything the lab made: processes, namespaces, veths, cgroups, bpf pins, state')
    .action(async () => {
      const failures = await down(paths(), say);
      const left = await leftovers(paths());
      if (failures.length > 0 || left.length > 0) {
        if (left.length > 0) say(`still there:\n  ${left.join('\n  ')}`);
        process.exitCode = 1;
      }
    });

  lab
    .command('status')
    .description('the lab components, their pids and memory; restarts any that died')
    .action(async () => {
      const s = await requireLab(paths());
      await ensureProcesses(paths(), s, say);
      say(await statusTable(s));
    });

  lab
    .command('apply')
    .description('create or update objects from manifests (Namespace, ServiceAccount, Pod, Deployment, Service, policies, routes)')
    .requiredOption('-f, --filename <path>', 'a manifest file or a directory of them')
    .action(async (opts: { filename: string }) => apply(paths(), opts.filename, say));

  lab
    .command('delete')
    .description('delete the objects the manifests name')
    .requiredOption('-f, --filename <path>', 'a manifest file or a directory of them')
    .action(async (opts: { filename: string }) => remove(paths(), opts.filename, say));

  lab
    .command('get')
    .description('list pods, svc, ns (or a policy/route kind)')
    .argument('<resource>', 'pods | svc | ns | authorizationpolicies | ...')
    .option('-n, --namespace <ns>', 'only this namespace')
    .option('-o, --output <format>', 'yaml | json')
    .action(async (resource: string, opts: { namespace?: string; output?: string }) => {
      if (opts.output !== undefined && !['yaml', 'json'].includes(opts.output)) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `-o ${opts.output}: use yaml or json`);
      say(await get(paths(), resource, { ...(opts.namespace ? { namespace: opts.namespace } : {}), ...(opts.output ? { output: opts.output as 'yaml' | 'json' } : {}) }));
    });

  lab
    .command('label')
    .description('label a namespace: k=v sets, k- removes (istio.io/dataplane-mode=ambient puts its pods in the mesh)')
    .argument('<kind>', 'namespace')
    .argument('<name>')
    .argument('<labels...>', 'k=v or k-')
    .action(async (kind: string, name: string, labels: string[]) => {
      if (!['namespace', 'ns', 'namespaces'].includes(kind)) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `lab label ${kind}: only namespaces can be labelled in the lab`);
      await labelNamespace(paths(), name, labels, say);
    });

  lab
    .command('exec')
    .description('run a command in a pod (its network namespace, cgroup and /etc/hosts); lab/get URL is a built-in curl')
    .argument('<pod>')
    .argument('<command...>')
    .option('-n, --namespace <ns>', 'the pod namespace', 'default')
    .action(async (pod: string, command: string[], opts: { namespace: string }) => {
      const r = await exec(paths(), pod, opts.namespace, command);
      process.exitCode = r.code;
    });

  lab
    .command('logs')
    .description('a pod log, or ztunnel/NODE, agent/NODE, control-plane')
    .argument('<target>')
    .option('-n, --namespace <ns>', 'the pod namespace', 'default')
    .action(async (target: string, opts: { namespace: string }) => {
      process.stdout.write(await logs(paths(), target, opts.namespace));
    });
}
