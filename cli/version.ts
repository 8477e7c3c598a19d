/** `ambientctl version`: this client's version and, when a target is reachable, its components'. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { CliContext } from './context.js';
import { parseOutput, render } from './output.js';

/** The package root: the nearest directory above this file (cli/ or dist/cli/) with a package.json. */
const PACKAGE_ROOT = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

/** The `version` of this checkout's package.json. */
export function clientVersion(repo = PACKAGE_ROOT): string {
  try {
    return String((JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

export function addVersionCommand(program: Command, ctx: CliContext): void {
  program
    .command('version')
    .description("this client's version; with --lab or a kubeconfig, the control plane's and ztunnels' too")
    .option('--remote', 'also ask the target (default: only when --lab, --kubeconfig or --context is given, or $KUBECONFIG is set)')
    .option('--short', 'print only the client version')
    .option('-o, --output <format>', 'json | yaml (default: a table)')
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<{ remote?: boolean; short?: boolean; output?: string }>(cmd);
      const format = parseOutput(o.output);
      if (o.short) return ctx.out(ctx.clientVersion);
      const asked = o.remote || o.lab || o.labPrefix !== undefined || o.labDir !== undefined || o.kubeconfig !== undefined || o.context !== undefined || ctx.env['KUBECONFIG'] !== undefined;
      const rows: Array<[string, string, string]> = [['client', 'ambientctl', ctx.clientVersion]];
      if (asked) {
        const t = await ctx.target(cmd);
        for (const v of await t.versions()) rows.push([v.component, v.name, v.version]);
        if (rows.length === 1) ctx.warn(`(no mesh components found in the ${t.where})`);
      }
      ctx.out(render(format, { header: ['COMPONENT', 'NAME', 'VERSION'], rows, data: rows.map(([component, name, version]) => ({ component, name, version })) }));
    });
}
