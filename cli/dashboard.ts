/**
 * `ambientctl dashboard`: the live service-graph page (docs/dashboard.md). With `--lab` it reads
 * the lab on this machine (dashboard/lab-source.ts). A cluster (kubeconfig) and `--prometheus` are
 * not done yet: they are refused with a message saying so, rather than showing an empty graph.
 */
import type { Command } from 'commander';
import { join } from 'node:path';
import { createLogger } from '../core/telemetry/log.js';
import { DIST } from '../lab/index.js';
import { LabSource } from '../dashboard/lab-source.js';
import { DEFAULT_SCRAPE_LIMITS } from '../dashboard/scrape.js';
import { DashboardServer } from '../dashboard/server.js';
import type { CliContext } from './context.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';
import { labPaths, wantsLab } from './target.js';

/** 20001: Kiali's port is 20001 too; an operator used to `istioctl dashboard kiali` finds it where expected. */
export const DASHBOARD_PORT = 20001;

interface DashboardOpts {
  port: string;
  host: string;
  prometheus?: string;
  open?: boolean;
}

export function addDashboardCommand(program: Command, ctx: CliContext): void {
  program
    .command('dashboard')
    .description('serve a live service-graph page of the mesh (docs/dashboard.md)')
    .option('--port <port>', 'port to listen on (0: any free port)', String(DASHBOARD_PORT))
    .option('--host <address>', 'address to listen on (the page has no login: keep it local)', '127.0.0.1')
    .option('--prometheus <url>', 'read from this Prometheus instead of scraping (not done yet)')
    .option('--open', "print only the page's URL on its own line, for a browser or a script")
    .action(async (_o, cmd: Command) => {
      const o = ctx.options<DashboardOpts>(cmd);
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `--port ${o.port}: use a port number 0-65535`);
      if (o.prometheus !== undefined) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, '--prometheus is not done yet (docs/dashboard.md, "Not done yet"); scrape the lab with --lab');
      if (!wantsLab(o)) throw new CliError(CLI_ERROR_CODES.BAD_FLAG, 'the dashboard reads only the lab so far (a cluster through the API server is not done yet: docs/dashboard.md); use --lab');
      // Fails with ERR_CLI_NO_LAB when no lab is up, before anything listens.
      await ctx.target(cmd);
      const source = await LabSource.open(labPaths(o));
      const server = new DashboardServer({
        source,
        host: o.host,
        port,
        tickMs: 2000,
        windowMs: 10_000,
        limits: DEFAULT_SCRAPE_LIMITS,
        webDir: join(DIST, 'dashboard/web'),
        logger: createLogger({ level: 'warn', component: 'dashboard', destination: process.stderr }),
      });
      const url = await server.start().catch(async (err: Error) => {
        await source.close();
        throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `cannot listen on ${o.host}:${port}: ${err.message}; pick another --port`);
      });
      ctx.out(o.open ? url : `dashboard of ${source.where} on ${url} (ctrl-c stops it)`);
      await new Promise<void>((resolve) => {
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve());
      });
      await server.close();
    });
}
