/**
 * `npm run fuzz [-- --entry NAME --runs N --seed S --limit-ms MS --out DIR --no-recheck]`: N mutated inputs per
 * entry point (docs/fuzz.md), each in a child process with a time limit, then a table of outcomes
 * (issue 19's) and, per class of hang or exception, the smallest input seen, written to
 * `<out>/<entry>-<n>.json` with how to replay it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { DOCUMENTED, ENTRY_NAMES, type EntryName } from './entries.js';
import { inputSeed, rng } from './mutate.js';
import { DEFAULT_LIMIT_MS, WorkerPool, type RunResult } from './pool.js';
import { REPO, generate } from './seeds.js';

/** The place in our sources (or a package) a stack points at: `core/kube/convert.ts:convertPod`. */
export function frameLocation(frame: string): string | undefined {
  const m = /at (?:(.+?) \()?(?:file:\/\/)?([^()\s]+?):\d+:\d+\)?$/.exec(frame.trim());
  if (!m) return undefined;
  const fn = m[1] ?? '<anonymous>';
  let file = m[2]!;
  if (file.startsWith('node:')) return undefined;
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) file = file.slice(nm + 'node_modules/'.length);
  else file = file.replace(REPO, '').replace(/^dist\//, '').replace(/\.js$/, '.ts');
  return `${file}:${fn.replace(/^new /, '')}`;
}

/** The innermost named frame, and the first in our own code when that one is in a package. */
export function whereOf(frames: readonly string[]): string {
  const locs = frames.map(frameLocation).filter((x): x is string => x !== undefined);
  if (locs.length === 0) return 'unknown (no JavaScript frame: native code, or the stack was not taken in time)';
  const named = locs.find((l) => !l.endsWith(':<anonymous>')) ?? locs[0]!;
  const isOurs = (l: string) => /^(core|ztunnel|cni-plugin|waypoint|control-plane|lab|fuzz)\//.test(l);
  const ours = locs.find((l) => isOurs(l) && !l.endsWith(':<anonymous>'));
  return ours && !isOurs(named) ? `${named} ← ${ours}` : named;
}

/** The class a hang or an exception is reported under. */
export function classOf(r: RunResult): string | undefined {
  if (r.outcome === 'hang') return `hang at ${whereOf(r.frames ?? [])}`;
  if (r.outcome === 'exception') {
    const e = r.error!;
    return `${e.name}${e.code ? ` ${e.code}` : ''} at ${whereOf(e.stack.split('\n').slice(1))}`;
  }
  return undefined;
}

interface Finding {
  readonly entry: EntryName;
  readonly cls: string;
  count: number;
  smallest: { index: number; size: number; input: unknown; applied: readonly string[]; result: RunResult };
}

const sizeOf = (input: unknown) => (typeof input === 'string' ? input.length : JSON.stringify(input).length);

export interface Row {
  readonly entry: EntryName;
  readonly inputs: number;
  readonly hang: number;
  readonly exception: number;
  readonly clean: number;
  readonly accepted: number;
  /** Inputs past the limit once that finished within it when run again in a fresh worker (counted by their second outcome). */
  readonly slowOnce: number;
}

async function fuzzEntry(
  entry: EntryName,
  runs: number,
  seed: number,
  pool: WorkerPool,
  findings: Map<string, Finding>,
  progress: (s: string) => void,
  recheck: boolean,
): Promise<Row> {
  const row = { entry, inputs: 0, hang: 0, exception: 0, clean: 0, accepted: 0, slowOnce: 0 };
  for (let i = 0; i < runs; i++) {
    const { input, applied } = generate(entry, rng(inputSeed(seed, entry, i)));
    let r = await pool.run(entry, input);
    // A machine shared with other work stalls a child now and then (a 149-character input "hung"
    // at a load average of 15): a hang counts only if the input overruns again in a fresh worker.
    if (recheck && r.outcome === 'hang') {
      const again = await pool.run(entry, input);
      if (again.outcome !== 'hang') {
        row.slowOnce++;
        r = again;
      }
    }
    row.inputs++;
    row[r.outcome]++;
    const cls = classOf(r);
    if (cls) {
      const key = `${entry}\u0000${cls}`;
      const size = sizeOf(input);
      const f = findings.get(key);
      if (!f) findings.set(key, { entry, cls, count: 1, smallest: { index: i, size, input, applied, result: r } });
      else {
        f.count++;
        if (size < f.smallest.size) f.smallest = { index: i, size, input, applied, result: r };
      }
    }
    if ((i + 1) % 500 === 0) progress(`${entry}: ${i + 1}/${runs} (hang ${row.hang}, exception ${row.exception})`);
  }
  return row;
}

export function table(rows: readonly Row[]): string {
  const fmt = (n: number) => n.toLocaleString('en-US');
  return [
    '| entry point | inputs | hang > limit | uncaught exception | clean error/problem | accepted | over the limit once, within it on a re-run |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.entry} | ${fmt(r.inputs)} | ${fmt(r.hang)} | ${fmt(r.exception)} | ${fmt(r.clean)} | ${fmt(r.accepted)} | ${fmt(r.slowOnce)} |`),
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      entry: { type: 'string', multiple: true },
      runs: { type: 'string', default: '10000' },
      seed: { type: 'string' },
      'limit-ms': { type: 'string', default: String(DEFAULT_LIMIT_MS) },
      out: { type: 'string', default: join(REPO, 'fuzz', 'findings') },
      'no-recheck': { type: 'boolean', default: false },
    },
  });
  const entries = (values.entry ?? ENTRY_NAMES) as EntryName[];
  for (const e of entries) {
    if (!ENTRY_NAMES.includes(e)) {
      process.stderr.write(`unknown entry ${JSON.stringify(e)}; use one of ${ENTRY_NAMES.join(', ')}\n`);
      process.exit(2);
    }
  }
  const runs = Number(values.runs);
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : Math.floor(Math.random() * 2 ** 32);
  const limitMs = Number(values['limit-ms']);
  if (!Number.isInteger(runs) || runs < 1 || !Number.isFinite(seed) || !(limitMs > 0)) {
    process.stderr.write('--runs must be a positive integer, --seed a number, --limit-ms a positive number of milliseconds\n');
    process.exit(2);
  }
  const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');
  process.stdout.write(`fuzz: seed ${seed}, ${runs} inputs per entry, limit ${limitMs} ms; replay with --seed ${seed}; load average ${load()}\n`);
  const pool = new WorkerPool({ limitMs });
  const findings = new Map<string, Finding>();
  const rows: Row[] = [];
  const started = Date.now();
  try {
    for (const entry of entries) {
      const t0 = Date.now();
      rows.push(await fuzzEntry(entry, runs, seed, pool, findings, (s) => process.stderr.write(`${s}\n`), !values['no-recheck']));
      process.stderr.write(`${entry}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    }
  } finally {
    pool.close();
  }
  process.stdout.write(`\n${table(rows)}\n\nload average at the end ${load()}\n\n`);
  if (findings.size === 0) {
    process.stdout.write(`no hangs and no uncaught exceptions (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
    return;
  }
  mkdirSync(values.out!, { recursive: true });
  const perEntry = new Map<EntryName, number>();
  process.stdout.write('findings (smallest input of each class):\n');
  for (const f of [...findings.values()].sort((a, b) => a.entry.localeCompare(b.entry) || b.count - a.count)) {
    const n = (perEntry.get(f.entry) ?? 0) + 1;
    perEntry.set(f.entry, n);
    const file = join(values.out!, `${f.entry}-${n}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          entry: f.entry,
          class: f.cls,
          count: f.count,
          documented: DOCUMENTED[f.entry],
          replay: `npm run fuzz -- --entry ${f.entry} --seed ${seed} --runs ${f.smallest.index + 1} (input #${f.smallest.index})`,
          mutations: f.smallest.applied,
          size: f.smallest.size,
          result: f.smallest.result,
          input: f.smallest.input,
        },
        null,
        1,
      ),
    );
    process.stdout.write(`- ${f.entry}: ${f.cls} ×${f.count}; smallest input #${f.smallest.index} (${f.smallest.size} chars, ${f.smallest.applied.join('+')}) → ${file.replace(REPO, '')}\n`);
  }
  process.stdout.write(`(${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`fuzz: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
