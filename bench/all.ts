/**
 * `npm run bench`: every benchmark in one run, each against its own baseline measured in the
 * same run: the L4 data path (run.ts: direct, stunnel, haproxy, ztunnel), CA signing (ca-sign.ts),
 * the control plane at scale (control-plane.ts), the waypoint (waypoint.ts) and, as root, the cost of
 * the CNI redirect (cni-redirect.ts: pod → pod on one node of the lab, against direct).
 *
 * `npm run bench -- --json` prints one JSON object with a key per benchmark; other arguments go to
 * the L4 benchmark (`--quick`, `--duration S`, `--only a,b`). `--skip l4,ca,control-plane,waypoint,cni`
 * leaves benchmarks out.
 *
 * `npm run bench -- --soak` runs only the soak (soak.ts: 10,000 idle-then-active users through a
 * ztunnel pair for 5 minutes); it is long, so it is never part of the default run. Other arguments
 * go to it (`--connections N`, `--duration S`, ...); with `--json` its object is under `soak`.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Bench {
  readonly key: string;
  readonly title: string;
  readonly script: string;
  /** Arguments besides --json. */
  readonly args: (rest: readonly string[]) => string[];
  readonly json: boolean;
  /** Node options before the script. */
  readonly nodeArgs?: readonly string[];
}

/**
 * tap's TypeScript loader: the CNI benchmark runs the root lab of the CNI tests from its sources
 * (test code, kept out of dist/).
 */
const TS_LOADER = import.meta.resolve('@tapjs/typescript/import');

const BENCHES: readonly Bench[] = [
  { key: 'l4', title: 'ztunnel L4 data path vs direct, stunnel and haproxy', script: 'run.js', args: (rest) => [...rest], json: true },
  { key: 'ca', title: 'CA signing on one core', script: 'ca-sign.js', args: () => [], json: true },
  { key: 'control-plane', title: 'control plane at scale', script: 'control-plane.js', args: () => [], json: true },
  { key: 'waypoint', title: 'waypoint (L7) vs ztunnel only and haproxy in http mode', script: 'waypoint.js', args: () => [], json: false },
  {
    key: 'cni',
    title: 'the cost of the CNI redirect, pod → pod vs direct (root; skipped otherwise)',
    script: 'cni-redirect.js',
    args: (rest) => (rest.includes('--quick') ? ['--quick'] : []),
    json: true,
    nodeArgs: [`--import=${TS_LOADER}`],
  },
];

/** Only with `--soak`, and then alone. */
const SOAK: Bench = { key: 'soak', title: 'soak: idle-then-active users through a ztunnel pair', script: 'soak.js', args: (rest) => [...rest], json: true };

function runOne(script: string, args: readonly string[], capture: boolean, nodeArgs: readonly string[] = []): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeArgs, fileURLToPath(new URL(script, import.meta.url)), ...args], {
      stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    // Ctrl-C reaches the child through the process group; wait for it to clean up.
    child.on('exit', (code, signal) => resolve({ code: code ?? (signal ? 130 : 1), out }));
  });
}

async function main(argv: readonly string[]): Promise<number> {
  const json = argv.includes('--json');
  const soak = argv.includes('--soak');
  const skipAt = argv.indexOf('--skip');
  const skip = new Set(skipAt >= 0 ? (argv[skipAt + 1] ?? '').split(',') : []);
  const rest = argv.filter((a, i) => a !== '--json' && a !== '--soak' && i !== skipAt && i !== skipAt + 1);
  const results: Record<string, unknown> = {};
  let worst = 0;
  for (const b of soak ? [SOAK] : BENCHES) {
    if (skip.has(b.key)) continue;
    process.stderr.write(`\n[bench] ${b.title}\n`);
    const args = [...b.args(rest), ...(json && b.json ? ['--json'] : [])];
    const { code, out } = await runOne(b.script, args, json, b.nodeArgs);
    worst = Math.max(worst, code);
    if (json) {
      try {
        results[b.key] = b.json ? JSON.parse(out) : { text: out };
      } catch {
        results[b.key] = { error: `exit ${code}`, output: out };
      }
    }
    if (code === 130) break;
  }
  if (json) process.stdout.write(JSON.stringify(results) + '\n');
  return worst;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
