#!/usr/bin/env node
/**
 * `node dist/tools/helm/cli.js template RELEASE CHART [-n NS] [-f values.yaml]... [--set k=v]...
 * [--include-crds]`: what `helm template` prints, for machines without helm (docs/install.md).
 * Exit 1 with the error's file:line and reason when a chart, its values or a template is wrong.
 */
import { Command } from 'commander';
import { formatRendered, renderChart } from './chart.js';

const collect = (v: string, acc: string[]): string[] => [...acc, v];

const program = new Command();
program.name('chart-render').description('render Helm charts without helm (the subset of Go templates and Sprig our charts use)').showHelpAfterError();
program
  .command('template')
  .description('render a chart as `helm template` does')
  .argument('<release>', 'release name')
  .argument('<chart>', 'chart directory')
  .option('-n, --namespace <ns>', 'release namespace', 'default')
  .option('-f, --values <file>', 'values file (repeatable; later wins)', collect, [])
  .option('--set <k=v>', 'set a value (repeatable; a.b=c,d[0]=e)', collect, [])
  .option('--set-string <k=v>', 'set a value as a string (repeatable)', collect, [])
  .option('--include-crds', 'print the crds/ files first, as helm template --include-crds')
  .option('--kube-version <v>', 'Kubernetes version for .Capabilities', 'v1.31.0')
  .action((release: string, chart: string, opts: { namespace: string; values: string[]; set: string[]; setString: string[]; includeCrds?: boolean; kubeVersion: string }) => {
    try {
      const r = renderChart({
        chartDir: chart,
        releaseName: release,
        namespace: opts.namespace,
        valueFiles: opts.values,
        set: opts.set,
        setString: opts.setString,
        kubeVersion: opts.kubeVersion,
      });
      process.stdout.write(formatRendered(r, { includeCrds: Boolean(opts.includeCrds) }));
    } catch (e) {
      const err = e as Error & { code?: string };
      process.stderr.write(`Error: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
      process.exitCode = 1;
    }
  });
program.parse();
