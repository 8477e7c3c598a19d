#!/usr/bin/env node
/** ambientctl: the operator's command line: `ca init`, `lab ...` (docs/lab.md). */
import { Command } from 'commander';
import { CertificateAuthority } from '../core/identity/ca.js';
import { MeshError } from '../core/errors.js';
import { addLabCommands } from './lab.js';

const program = new Command();
program.name('ambientctl').description('operate the ambient mesh').showHelpAfterError();

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

program.parseAsync(process.argv).catch((err: MeshError) => {
  process.stderr.write(`ambientctl: ${err.message}\n`);
  process.exit(1);
});
