/**
 * Typed calls to Debian's `bpftool` (JSON output), over a {@link CommandRunner}. Nothing here
 * decides anything; the loader does.
 */
import { CommandError, type CommandRunner } from './command.js';
import { BpfCommandError } from './errors.js';
import type { MapBytes } from './config.js';
import { hexBytes } from './config.js';

/** A program attached to one cgroup, as `bpftool cgroup show -j` reports it. */
export interface CgroupProgram {
  readonly id: number;
  /** bpftool's attach type name (`cgroup_inet4_connect` in bpftool 7, `connect4` in older ones). */
  readonly attachType: string;
  readonly name: string;
}

export interface MapEntry {
  readonly key: MapBytes;
  /** Per-CPU maps: one value per CPU; other maps: one value. */
  readonly values: readonly MapBytes[];
}

/** `map update` / `map delete` lines for one `bpftool batch` run. */
export type BatchLine = readonly ['update', string, MapBytes, MapBytes] | readonly ['delete', string, MapBytes];

function parseBytes(v: unknown): MapBytes {
  return Array.isArray(v) ? v.map((x) => parseInt(String(x), 16)) : [];
}

function parseJson(stdout: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch {
    return undefined;
  }
}

/** bpftool -j prints `{"error": "..."}` on stdout when it fails; that is the useful part. */
function errorText(err: CommandError): string {
  const j = parseJson(err.stdout) as { error?: unknown } | undefined;
  const fromJson = j && typeof j === 'object' && 'error' in j ? String(j.error) : '';
  return [fromJson, err.stderr].filter((s) => s.trim() !== '').join('\n');
}

export class Bpftool {
  constructor(
    private readonly run: CommandRunner,
    private readonly bin = 'bpftool',
  ) {}

  /** Runs bpftool; a failure becomes a BpfCommandError saying what was being done and what to check. */
  async exec(what: string, args: readonly string[], hint: string, input?: string): Promise<string> {
    try {
      const res = await this.run.run(this.bin, args, input === undefined ? undefined : { input });
      return res.stdout;
    } catch (err) {
      if (err instanceof CommandError) {
        const text = err.notFound
          ? `${this.bin} not found in PATH`
          : errorText(err);
        throw new BpfCommandError(what, `${this.bin} ${args.join(' ')}`, err.exitCode, text, err.notFound ? 'install the bpftool package' : hint, { cause: err });
      }
      throw err;
    }
  }

  async json(what: string, args: readonly string[], hint: string): Promise<unknown> {
    const out = await this.exec(what, ['-j', ...args], hint);
    // Some listings (cgroup show of a cgroup without programs) print nothing at all.
    if (out.trim() === '') return null;
    const j = parseJson(out);
    if (j === undefined) throw new BpfCommandError(what, `${this.bin} -j ${args.join(' ')}`, 0, `unparseable output: ${out.slice(0, 200)}`, 'check the bpftool version (7.x is tested)');
    return j;
  }

  /** `bpftool prog loadall`: loads every program of `object`, pins programs under `progDir`, maps under `mapDir`. */
  async loadAll(object: string, progDir: string, opts: { reuseMaps: ReadonlyMap<string, string>; mapDir: string }): Promise<void> {
    const args = ['prog', 'loadall', object, progDir];
    for (const [name, path] of opts.reuseMaps) args.push('map', 'name', name, 'pinned', path);
    args.push('pinmaps', opts.mapDir);
    await this.exec(
      `loading ${object}`,
      args,
      'the verifier log above says why; check the kernel version (5.8+) and that the pinned maps were created by compatible objects (unload, then load again)',
    );
  }

  /** The names of the maps an object declares (its `.maps` BTF section). */
  async objectMapNames(object: string): Promise<string[]> {
    const j = (await this.json(`reading the btf of ${object}`, ['btf', 'dump', 'file', object], 'check that the object was built with -g (it needs .BTF)')) as {
      types?: Array<{ id: number; kind: string; name?: string; vars?: Array<{ type_id: number }> }>;
    } | null;
    const types = j?.types ?? [];
    const byId = new Map(types.map((t) => [t.id, t]));
    const sec = types.find((t) => t.kind === 'DATASEC' && t.name === '.maps');
    return (sec?.vars ?? []).map((v) => byId.get(v.type_id)?.name).filter((n): n is string => typeof n === 'string');
  }

  async progId(pinPath: string): Promise<{ id: number; name: string }> {
    const j = (await this.json(`reading ${pinPath}`, ['prog', 'show', 'pinned', pinPath], 'check the pin dir')) as { id?: number; name?: string } | null;
    if (typeof j?.id !== 'number') throw new BpfCommandError(`reading ${pinPath}`, `${this.bin} -j prog show pinned ${pinPath}`, 0, 'no program id in the output', 'check the pin dir');
    return { id: j.id, name: String(j.name ?? '') };
  }

  async cgroupShow(cgroup: string): Promise<CgroupProgram[]> {
    const j = await this.json(`listing programs of cgroup ${cgroup}`, ['cgroup', 'show', cgroup], 'check that the cgroup exists on the cgroup v2 hierarchy');
    return toPrograms(j);
  }

  async cgroupTree(root: string): Promise<Array<{ cgroup: string; programs: CgroupProgram[] }>> {
    const j = await this.json(`listing programs under ${root}`, ['cgroup', 'tree', root], 'check the cgroup v2 root');
    return (Array.isArray(j) ? j : []).map((e: { cgroup?: string; programs?: unknown }) => ({ cgroup: String(e.cgroup), programs: toPrograms(e.programs) }));
  }

  async attach(cgroup: string, attachType: string, pinPath: string): Promise<void> {
    await this.exec(
      `attaching ${pinPath} to ${cgroup}`,
      ['cgroup', 'attach', cgroup, attachType, 'pinned', pinPath, 'multi'],
      'check that the cgroup is on the cgroup v2 hierarchy and that nothing attached a program there without the multi flag',
    );
  }

  async detach(cgroup: string, attachType: string, id: number): Promise<void> {
    await this.exec(`detaching program ${id} from ${cgroup}`, ['cgroup', 'detach', cgroup, attachType, 'id', String(id)], 'check `bpftool cgroup show` for that cgroup');
  }

  async mapDump(pinPath: string): Promise<MapEntry[]> {
    const j = await this.json(`reading map ${pinPath}`, ['map', 'dump', 'pinned', pinPath], 'check the pin dir');
    return (Array.isArray(j) ? j : []).map((e: { key?: unknown; value?: unknown; values?: Array<{ value?: unknown }> }) => ({
      key: parseBytes(e.key),
      values: Array.isArray(e.values) ? e.values.map((v) => parseBytes(v.value)) : [parseBytes(e.value)],
    }));
  }

  /** Applies map updates and deletes in one bpftool process (`bpftool batch file -`); stops at the first failure. */
  async batch(lines: readonly BatchLine[]): Promise<void> {
    if (lines.length === 0) return;
    const text = lines
      .map((l) =>
        l[0] === 'update'
          ? `map update pinned ${l[1]} key hex ${hexBytes(l[2]).join(' ')} value hex ${hexBytes(l[3]).join(' ')}`
          : `map delete pinned ${l[1]} key hex ${hexBytes(l[2]).join(' ')}`,
      )
      .join('\n');
    await this.exec('writing the redirect config maps', ['batch', 'file', '-'], 'check the pinned maps (bpftool map show)', `${text}\n`);
  }

  async version(): Promise<string> {
    return (await this.exec('running bpftool', ['version'], 'install the bpftool package')).split('\n')[0] ?? '';
  }

  async featureProbe(): Promise<{ programTypes: Record<string, boolean>; mapTypes: Record<string, boolean> }> {
    const j = (await this.json('probing kernel features', ['feature', 'probe', 'kernel'], 'run as root')) as {
      program_types?: Record<string, boolean>;
      map_types?: Record<string, boolean>;
    } | null;
    return { programTypes: j?.program_types ?? {}, mapTypes: j?.map_types ?? {} };
  }
}

function toPrograms(j: unknown): CgroupProgram[] {
  return (Array.isArray(j) ? j : []).map((p: { id?: unknown; attach_type?: unknown; name?: unknown }) => ({
    id: Number(p.id),
    attachType: String(p.attach_type),
    name: String(p.name ?? ''),
  }));
}
