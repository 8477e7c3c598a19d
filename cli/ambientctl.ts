#!/usr/bin/env node
/**
 * ambientctl: the operator's command line (docs/ambientctl.md): `waypoint`, `ztunnel-config`,
 * `precheck`, `version`, `dashboard` against a cluster or the lab (target.ts), `ca init`, and `lab ...` (docs/lab.md).
 */
import { Command } from 'commander';
import { PORTS } from '../core/hbone/constants.js';
import { CertificateAuthority } from '../core/identity/ca.js';
import { processContext } from './context.js';
import { addDashboardCommand } from './dashboard.js';
import { addLabCommands } from './lab.js';
import { addPrecheckCommand } from './precheck.js';
import { addVersionCommand, clientVersion } from './version.js';
import { addWaypointCommands } from './waypoint.js';
import { addZtunnelConfigCommands } from './ztunnel-config.js';

const ctx = processContext({ clientVersion: clientVersion(), env: process.env });
const program = new Command();
program
  .name('ambientctl')
  .description('operate the ambient mesh')
  .version(ctx.clientVersion, '--client-version', 'print the client version')
  .showHelpAfterError()
  // The target (cli/target.ts): the lab with --lab*, else the cluster of the kubeconfig.
  .option('--lab', 'act on the lab on this machine (ambientctl lab up) instead of a cluster')
  .option('--lab-prefix <prefix>', 'the lab with this prefix (implies --lab; default amb-lab)')
  .option('--lab-dir <dir>', "the lab's state directory (implies --lab; default /run/<prefix>)")
  .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)')
  .option('--context <name>', 'kubeconfig context (default: its current context)')
  .option('-i, --istio-namespace <ns>', 'namespace of ztunnel and the control plane', 'istio-system')
  .option('--ztunnel-selector <labels>', 'label selector of ztunnel pods', 'app=ztunnel')
  .option('--control-plane-selector <labels>', 'label selector of control-plane pods', 'app=istiod')
  .option('--proxy-admin-port <port>', "ztunnel's admin port (reached through a port-forward)", String(PORTS.admin));

const ca = program.command('ca').description('the mesh certificate authority');
ca.command('init')
  .description('create a self-signed ECDSA P-256 mesh root (root-cert.pem, root-key.pem) in DIR')
  .requiredOption('--out <dir>', 'directory to write root-cert.pem and root-key.pem into')
  .option('--trust-domain <domain>', 'SPIFFE trust domain', 'cluster.local')
  .action(async (opts: { out: string; trustDomain: string }) => {
    const root = await CertificateAuthority.create({ trustDomain: opts.trustDomain });
    await root.save(opts.out);
    process.stdout.write(`wrote ${opts.out}/root-cert.pem and ${opts.out}/root-key.pem (trust domain ${opts.trustDomain})\n`);
  });

addLabCommands(program);
addWaypointCommands(program, ctx);
addZtunnelConfigCommands(program, ctx);
addPrecheckCommand(program, ctx);
addVersionCommand(program, ctx);
addDashboardCommand(program, ctx);

// One line on stderr and exit 1 for every failure, including unexpected ones: no stack traces.
program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`ambientctl: ${err.message}\n`);
  process.exit(1);
});
