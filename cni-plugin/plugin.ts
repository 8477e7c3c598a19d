#!/usr/bin/env node
/**
 * The `ambient-cni` CNI plugin (CNI spec 1.0), chained after the interface plugin. The runtime
 * runs it through the `bin/ambient-cni` wrapper; see docs/cni.md.
 *
 * Kept to node built-ins and a few small modules: it starts once per pod sandbox.
 */
import { AgentClient } from './agent-client.js';
import { runPlugin } from './cni/commands.js';

async function readStdin(): Promise<string> {
  // VERSION may come with a closed or a terminal stdin; nothing to read then.
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const out = await runPlugin({
  env: process.env,
  stdin: await readStdin(),
  agent: (conf) =>
    new AgentClient({
      socketPath: conf.agentSocket,
      connectTimeoutMs: conf.agentConnectTimeoutMs,
      requestTimeoutMs: conf.agentRequestTimeoutMs,
    }),
});
if (out.log) process.stderr.write(`${out.log}\n`);
process.stdout.write(out.stdout === '' ? '' : `${out.stdout}\n`, () => process.exit(out.exitCode));
