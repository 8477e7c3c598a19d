/**
 * Loads the prebuilt eBPF objects, pins them, writes their config maps and attaches them to pod
 * and ztunnel cgroups, through Debian's `bpftool` (see docs/ebpf.md for why not a native addon).
 *
 * Pin layout under `pinDir` (`/sys/fs/bpf/<mesh>/<node>`):
 *
 *     maps/<map>                    shared by every program (bpf/src/common.h)
 *     progs/<object>-<digest>/<prog>  one directory per object version (sha256 of the .o)
 *
 * The kernel is the state: which programs are attached where is read back from
 * `bpftool cgroup show/tree`, never remembered in memory, so a restarted agent picks up where the
 * last one stopped and every operation is idempotent. "Ours" means a program pinned under
 * `pinDir`; programs of anyone else on the same cgroup are left alone.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../core/telemetry/log.js';
import { silentLogger } from '../core/telemetry/log.js';
import { Bpftool, type BatchLine } from './bpftool.js';
import { CommandError, execFileRunner, type CommandRunner } from './command.js';
import { decodeStats, encodeRedirectConfig, hostU32, PRESENT, type EncodedConfig, type MapBytes, type RedirectConfig, type StatName } from './config.js';
import { BpfCommandError, BpfNotLoadedError, BpfObjectError, BpfUnavailableError, CgroupNotFoundError } from './errors.js';
import { BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, DEFAULT_BPFFS, cgroup2Root, checkKernel, fsType, type KernelCheckInputs } from './kernel.js';

export type { RedirectConfig } from './config.js';
export type { CommandRunner } from './command.js';

type ObjectName = 'redirect' | 'strict' | 'ztunnel';
type Role = 'pod' | 'strict' | 'ztunnel';

interface ProgramSpec {
  readonly name: string;
  readonly object: ObjectName;
  /** bpftool's name for the attach type. */
  readonly attachType: string;
  readonly role: Role;
}

/** Every program, the object holding it, and where it goes. Names match the C functions. */
export const PROGRAMS: readonly ProgramSpec[] = Object.freeze([
  { name: 'amb_connect4', object: 'redirect', attachType: 'connect4', role: 'pod' },
  { name: 'amb_connect6', object: 'redirect', attachType: 'connect6', role: 'pod' },
  { name: 'amb_pod_sockops', object: 'redirect', attachType: 'sock_ops', role: 'pod' },
  { name: 'amb_getpeer4', object: 'redirect', attachType: 'getpeername4', role: 'pod' },
  { name: 'amb_getpeer6', object: 'redirect', attachType: 'getpeername6', role: 'pod' },
  { name: 'amb_strict_in', object: 'strict', attachType: 'ingress', role: 'strict' },
  { name: 'amb_getsock4', object: 'ztunnel', attachType: 'getsockname4', role: 'ztunnel' },
  { name: 'amb_getsock6', object: 'ztunnel', attachType: 'getsockname6', role: 'ztunnel' },
  { name: 'amb_zt_sockops', object: 'ztunnel', attachType: 'sock_ops', role: 'ztunnel' },
] satisfies ProgramSpec[]);

const OBJECTS: readonly ObjectName[] = ['redirect', 'strict', 'ztunnel'];
const SPEC_BY_NAME = new Map(PROGRAMS.map((p) => [p.name, p]));

const MAP_CONFIG = 'amb_config';
const MAP_NODE_IPS = 'amb_node_ips';
const MAP_EXCL_CIDRS = 'amb_excl_cidrs';
const MAP_EXCL_PORTS = 'amb_excl_ports';
const MAP_STATS = 'amb_stats';

/** The committed objects: beside this file in the source tree (bpf/prebuilt), two levels up from dist/bpf/. */
export const DEFAULT_OBJECTS_DIR = ((): string => {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'prebuilt'), resolve(here, '..', '..', 'bpf', 'prebuilt')];
  return candidates.find((c) => existsSync(c)) ?? candidates[0]!;
})();

/** Object directories are named `<object>-<first 16 hex of sha256>`. */
const DIGEST_CHARS = 16;
/** How often a cgroup tree walk is tried; see cgroupTree(). */
const TREE_ATTEMPTS = 5;
/** Serializes load/unload/upgrade against each other. */
const LOAD_LOCK = '\0load';

export interface BpfLoaderInputs {
  /** Where programs and maps are pinned: `/sys/fs/bpf/<mesh>/<node>`. Must be on bpffs (mounted at /sys/fs/bpf if missing). */
  readonly pinDir: string;
  /** The `.bpf.o` files; default: the committed `bpf/prebuilt`. Only load() reads them. */
  readonly objectsDir?: string;
  /** The cgroup v2 root searched by status() and unload(); default: the first cgroup2 mount. */
  readonly cgroupRoot?: string;
  readonly logger?: Logger;
  /** Runs bpftool and mount; swap it to record or fake kernel access. */
  readonly run?: CommandRunner;
  /** bpftool binary; default `bpftool` from PATH. */
  readonly bpftool?: string;
}

export interface BpfStatus {
  /** Maps and one version of every program are pinned. */
  readonly loaded: boolean;
  /** Cgroups holding at least one of our programs, with the names of ours attached there. */
  readonly attachments: Array<{ cgroup: string; programs: string[] }>;
}

interface PinnedProgram {
  readonly id: number;
  readonly name: string;
  readonly object: ObjectName;
  readonly digest: string;
  readonly path: string;
}

/**
 * The node's eBPF redirection: one instance per pin dir, no module state.
 *
 * @example
 * await BpfLoader.checkKernel();
 * const bpf = new BpfLoader({ pinDir: '/sys/fs/bpf/ambient/node-1' });
 * await bpf.load({ ztunnelIp: '10.244.0.1', outboundPort: 15001, nodeIps: ['192.168.1.10'], excludeCidrs: [], excludePorts: [] });
 * await bpf.attachZtunnel('/sys/fs/cgroup/ztunnel.slice');
 * await bpf.attachPod('/sys/fs/cgroup/kubepods.slice/.../cri-containerd-abc.scope', { strict: false });
 */
export class BpfLoader {
  readonly pinDir: string;
  readonly objectsDir: string;
  private readonly logger: Logger;
  private readonly run: CommandRunner;
  private readonly tool: Bpftool;
  private readonly cgroupRootInput: string | undefined;
  private readonly locks = new Map<string, Promise<void>>();
  /** pin path → (inode, program id): a pin's inode changes whenever it is re-pinned. */
  private readonly idCache = new Map<string, { ino: number; id: number; name: string }>();

  constructor(inputs: BpfLoaderInputs) {
    if (!inputs.pinDir || !isAbsolute(inputs.pinDir)) throw new TypeError(`pinDir must be an absolute path under a bpf filesystem, got ${JSON.stringify(inputs.pinDir)}`);
    this.pinDir = resolve(inputs.pinDir);
    this.objectsDir = resolve(inputs.objectsDir ?? DEFAULT_OBJECTS_DIR);
    this.logger = inputs.logger ?? silentLogger;
    this.run = inputs.run ?? execFileRunner();
    this.tool = new Bpftool(this.run, inputs.bpftool ?? 'bpftool');
    this.cgroupRootInput = inputs.cgroupRoot;
  }

  /** Throws a {@link BpfUnavailableError} listing everything this node lacks. */
  static async checkKernel(inputs?: KernelCheckInputs): Promise<void> {
    await checkKernel(inputs);
  }

  private get mapsDir(): string {
    return join(this.pinDir, 'maps');
  }

  private get progsDir(): string {
    return join(this.pinDir, 'progs');
  }

  private mapPath(name: string): string {
    return join(this.mapsDir, name);
  }

  /**
   * Loads every object (when not loaded already, or when the objects changed), pins programs and
   * maps, and writes `config` into the maps. Idempotent: a second call only updates the config.
   * After an upgrade of the objects, cgroups running the previous programs are switched to the
   * new ones and the old pins removed; the maps (and connections in flight) are kept.
   */
  async load(config: RedirectConfig): Promise<void> {
    const encoded = encodeRedirectConfig(config); // a bad config must not touch the kernel
    await this.serial(LOAD_LOCK, async () => {
      await this.ensureBpffs();
      await mkdir(this.mapsDir, { recursive: true });
      await mkdir(this.progsDir, { recursive: true });
      const digests = new Map<ObjectName, string>();
      for (const object of OBJECTS) digests.set(object, await this.loadObject(object));
      await this.writeConfig(encoded);
      await this.retireOldVersions(digests);
      this.logger.info({ pinDir: this.pinDir, ztunnelIp: config.ztunnelIp, outboundPort: config.outboundPort }, 'ebpf redirection loaded');
    });
  }

  /** Attaches the redirect programs (and the strict ingress filter when `strict`) to a pod's cgroup. */
  async attachPod(cgroupPath: string, opts: { strict: boolean }): Promise<void> {
    const cgroup = await this.requireCgroup(cgroupPath);
    await this.serial(cgroup, () => this.converge(cgroup, ['pod', 'strict'], opts.strict ? ['pod', 'strict'] : ['pod']));
    this.logger.info({ cgroup, strict: opts.strict }, 'pod enrolled in ebpf redirection');
  }

  /** Turns the strict ingress filter on or off for a pod; leaves the redirect programs as they are. */
  async setStrict(cgroupPath: string, strict: boolean): Promise<void> {
    const cgroup = await this.requireCgroup(cgroupPath);
    await this.serial(cgroup, () => this.converge(cgroup, ['strict'], strict ? ['strict'] : []));
    this.logger.info({ cgroup, strict }, 'pod strict ingress set');
  }

  /** Removes our pod programs from a cgroup; a cgroup that is gone counts as detached. */
  async detachPod(cgroupPath: string): Promise<void> {
    await this.detachRoles(cgroupPath, ['pod', 'strict']);
  }

  /** Attaches the getsockname hooks and the accept-side sockops to the ztunnel's cgroup. */
  async attachZtunnel(cgroupPath: string): Promise<void> {
    const cgroup = await this.requireCgroup(cgroupPath);
    await this.serial(cgroup, () => this.converge(cgroup, ['ztunnel'], ['ztunnel']));
    this.logger.info({ cgroup }, 'ztunnel attached to ebpf redirection');
  }

  async detachZtunnel(cgroupPath: string): Promise<void> {
    await this.detachRoles(cgroupPath, ['ztunnel']);
  }

  /** What is pinned and where our programs are attached, as the kernel reports it. */
  async status(): Promise<BpfStatus> {
    const pinned = await this.pinnedPrograms();
    const hasConfig = await exists(this.mapPath(MAP_CONFIG));
    const names = new Set(pinned.map((p) => p.name));
    const loaded = hasConfig && PROGRAMS.every((p) => names.has(p.name));
    const byId = new Map(pinned.map((p) => [p.id, p]));
    const attachments: BpfStatus['attachments'] = [];
    const root = await this.cgroupRoot();
    if (root && byId.size > 0) {
      for (const entry of await this.cgroupTree(root)) {
        const ours = entry.programs.filter((p) => byId.has(p.id)).map((p) => byId.get(p.id)!.name);
        if (ours.length > 0) attachments.push({ cgroup: entry.cgroup, programs: ours.sort() });
      }
    }
    return { loaded, attachments };
  }

  /**
   * Our programs on these cgroups only: one `bpftool cgroup show` per cgroup (a few at a time),
   * instead of status()'s walk of the whole hierarchy, whose cost grows with every cgroup of the
   * node (on a node with ~860 pods one walk took over 20 s and ~4 GB). A cgroup that does not
   * exist (or vanishes meanwhile) carries nothing.
   */
  async attachmentsOf(cgroups: readonly string[]): Promise<BpfStatus['attachments']> {
    const byId = new Map((await this.pinnedPrograms()).map((p) => [p.id, p]));
    const paths = [...new Set(cgroups.map((c) => resolve(c)))];
    const out: BpfStatus['attachments'] = [];
    if (byId.size === 0) return out;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < paths.length) {
        const cgroup = paths[next++]!;
        if (!(await exists(cgroup))) continue;
        let programs;
        try {
          programs = await this.tool.cgroupShow(cgroup);
        } catch (err) {
          if (err instanceof BpfCommandError && !(await exists(cgroup))) continue;
          throw err;
        }
        const ours = programs.filter((p) => byId.has(p.id)).map((p) => byId.get(p.id)!.name);
        if (ours.length > 0) out.push({ cgroup, programs: ours.sort() });
      }
    };
    // A few bpftool processes at once: enough to hide their start-up, few enough for a shared node.
    await Promise.all(Array.from({ length: Math.min(4, paths.length) }, worker));
    return out.sort((a, b) => a.cgroup.localeCompare(b.cgroup));
  }

  /** The programs' counters (summed over CPUs); see `enum amb_stat` in bpf/src/common.h. */
  async stats(): Promise<Record<StatName, number>> {
    const path = this.mapPath(MAP_STATS);
    if (!(await exists(path))) throw new BpfNotLoadedError(this.pinDir, path);
    const perIndex = new Map<number, readonly MapBytes[]>();
    for (const e of await this.tool.mapDump(path)) perIndex.set(hostU32(e.key), e.values);
    return decodeStats(perIndex);
  }

  /** Detaches every program of ours from every cgroup under the cgroup root, then removes the pin dir. */
  async unload(): Promise<void> {
    await this.serial(LOAD_LOCK, async () => {
      const pinned = await this.pinnedPrograms();
      const byId = new Map(pinned.map((p) => [p.id, p]));
      const root = await this.cgroupRoot();
      if (root && byId.size > 0) {
        for (const entry of await this.cgroupTree(root)) {
          for (const prog of entry.programs) {
            const ours = byId.get(prog.id);
            if (ours) await this.detachOne(entry.cgroup, ours.name, prog.id);
          }
        }
      }
      await rm(this.pinDir, { recursive: true, force: true });
      this.idCache.clear();
      this.logger.info({ pinDir: this.pinDir }, 'ebpf redirection unloaded');
    });
  }

  // --- load -----------------------------------------------------------------------------------

  /** Mounts bpffs at /sys/fs/bpf when the pin dir would live there and it is not mounted. */
  private async ensureBpffs(): Promise<void> {
    let dir = this.pinDir;
    while (!(await exists(dir))) dir = dirname(dir);
    if ((await fsType(dir)) === BPF_FS_MAGIC) return;
    if (dir === DEFAULT_BPFFS) {
      try {
        await this.run.run('mount', ['-t', 'bpf', 'bpf', DEFAULT_BPFFS]);
      } catch (err) {
        const e = err instanceof CommandError ? err : undefined;
        throw new BpfCommandError('mounting the bpf filesystem', `mount -t bpf bpf ${DEFAULT_BPFFS}`, e?.exitCode ?? null, e?.stderr ?? String(err), 'run as root (CAP_SYS_ADMIN), or mount it on the host and share it with the container', { cause: err });
      }
      this.logger.info({ path: DEFAULT_BPFFS }, 'mounted the bpf filesystem');
      return;
    }
    throw new BpfUnavailableError([
      `pin dir ${this.pinDir} is not on a bpf filesystem (${dir} is not bpffs): choose a pin dir under ${DEFAULT_BPFFS} or mount one (mount -t bpf bpf ${dir})`,
    ]);
  }

  /** Loads one object unless this version is already pinned; returns its digest. */
  private async loadObject(object: ObjectName): Promise<string> {
    const file = join(this.objectsDir, `${object}.bpf.o`);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch {
      throw new BpfObjectError(file, 'is missing');
    }
    const digest = createHash('sha256').update(bytes).digest('hex').slice(0, DIGEST_CHARS);
    const dir = join(this.progsDir, `${object}-${digest}`);
    const expected = PROGRAMS.filter((p) => p.object === object).map((p) => p.name);
    if ((await Promise.all(expected.map((n) => exists(join(dir, n))))).every(Boolean)) {
      this.logger.debug({ object, digest }, 'ebpf object already loaded');
      return digest;
    }
    // A partial directory is what an interrupted load leaves: start over.
    await rm(dir, { recursive: true, force: true });
    const reuse = new Map<string, string>();
    for (const name of await this.tool.objectMapNames(file)) {
      if (await exists(this.mapPath(name))) reuse.set(name, this.mapPath(name));
    }
    // bpftool pins every map of the object, reused ones included, and fails on an existing pin;
    // so pin into a scratch dir and keep only the maps that are new.
    // bpffs refuses names with dots.
    const staging = join(this.pinDir, `staging-${object}`);
    await rm(staging, { recursive: true, force: true });
    try {
      await this.tool.loadAll(file, dir, { reuseMaps: reuse, mapDir: staging });
      for (const name of await readdir(staging).catch(() => [] as string[])) {
        if (!(await exists(this.mapPath(name)))) await rename(join(staging, name), this.mapPath(name));
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    for (const name of expected) {
      if (!(await exists(join(dir, name)))) {
        await rm(dir, { recursive: true, force: true });
        throw new BpfObjectError(file, `has no program ${name}`);
      }
    }
    this.logger.info({ object, digest, reusedMaps: [...reuse.keys()] }, 'ebpf object loaded');
    return digest;
  }

  /** Brings the set-like maps to exactly the configured entries, then writes (and enables) the config. */
  private async writeConfig(encoded: EncodedConfig): Promise<void> {
    const lines: BatchLine[] = [];
    const sets: Array<[string, readonly MapBytes[]]> = [
      [MAP_NODE_IPS, encoded.nodeIps],
      [MAP_EXCL_CIDRS, encoded.excludeCidrs],
      [MAP_EXCL_PORTS, encoded.excludePorts],
    ];
    // Additions before removals, and the config last: a reload never opens a window in which a
    // destination that stays excluded would be redirected.
    const removals: BatchLine[] = [];
    for (const [map, desired] of sets) {
      const path = this.mapPath(map);
      const want = new Set(desired.map((k) => k.join(',')));
      for (const key of desired) lines.push(['update', path, key, PRESENT]);
      for (const e of await this.tool.mapDump(path)) if (!want.has(e.key.join(','))) removals.push(['delete', path, e.key]);
    }
    lines.push(...removals, ['update', this.mapPath(MAP_CONFIG), encoded.config.key, encoded.config.value]);
    await this.tool.batch(lines);
  }

  /** Moves every cgroup from an older version of our programs to the current one, then unpins the old. */
  private async retireOldVersions(current: ReadonlyMap<ObjectName, string>): Promise<void> {
    const pinned = await this.pinnedPrograms();
    const old = new Map(pinned.filter((p) => p.digest !== current.get(p.object)).map((p) => [p.id, p]));
    if (old.size === 0) return;
    const now = new Map(pinned.filter((p) => p.digest === current.get(p.object)).map((p) => [p.name, p]));
    const root = await this.cgroupRoot();
    if (root) {
      for (const entry of await this.cgroupTree(root)) {
        const ids = new Set(entry.programs.map((p) => p.id));
        for (const prog of entry.programs) {
          const was = old.get(prog.id);
          if (!was) continue;
          const next = now.get(was.name);
          // Attach the new one first: the cgroup is never without the program.
          if (next && !ids.has(next.id)) await this.tool.attach(entry.cgroup, SPEC_BY_NAME.get(was.name)!.attachType, next.path);
          await this.detachOne(entry.cgroup, was.name, prog.id);
          this.logger.info({ cgroup: entry.cgroup, program: was.name, from: was.digest, to: next?.digest }, 'ebpf program upgraded');
        }
      }
    }
    const oldDirs = new Set([...old.values()].map((p) => dirname(p.path)));
    for (const dir of oldDirs) await rm(dir, { recursive: true, force: true });
  }

  // --- attach ---------------------------------------------------------------------------------

  /**
   * Makes the cgroup hold exactly our programs of `wanted` among the roles in `managed`: attaches
   * what is missing, detaches other versions and roles no longer wanted.
   */
  private async converge(cgroup: string, managed: readonly Role[], wanted: readonly Role[]): Promise<void> {
    const pinned = await this.pinnedPrograms();
    const active = this.activeVersions(pinned);
    const want: Array<[ProgramSpec, PinnedProgram]> = [];
    for (const spec of PROGRAMS) {
      if (!wanted.includes(spec.role)) continue;
      const prog = active.get(spec.name);
      if (!prog) throw new BpfNotLoadedError(this.pinDir, `program ${spec.name}`);
      want.push([spec, prog]);
    }
    const attached = await this.tool.cgroupShow(cgroup);
    const attachedIds = new Set(attached.map((p) => p.id));
    const keep = new Set(want.map(([, prog]) => prog.id));
    for (const [spec, prog] of want) {
      if (attachedIds.has(prog.id)) continue;
      await this.tool.attach(cgroup, spec.attachType, prog.path);
      this.logger.debug({ cgroup, program: spec.name }, 'ebpf program attached');
    }
    const ours = new Map(pinned.map((p) => [p.id, p]));
    for (const prog of attached) {
      const mine = ours.get(prog.id);
      if (!mine || keep.has(prog.id) || !managed.includes(SPEC_BY_NAME.get(mine.name)!.role)) continue;
      await this.detachOne(cgroup, mine.name, prog.id);
    }
  }

  private async detachRoles(cgroupPath: string, roles: readonly Role[]): Promise<void> {
    const cgroup = resolve(cgroupPath);
    await this.serial(cgroup, async () => {
      if (!(await exists(cgroup))) return;
      try {
        await this.converge(cgroup, roles, []);
      } catch (err) {
        // The pod's cgroup went away while we were detaching: its programs went with it.
        if (err instanceof BpfCommandError && !(await exists(cgroup))) return;
        throw err;
      }
    });
    this.logger.info({ cgroup, roles }, 'ebpf programs detached');
  }

  /** Detaches one program; one that is already gone (or whose cgroup is) counts as detached. */
  private async detachOne(cgroup: string, name: string, id: number): Promise<void> {
    try {
      await this.tool.detach(cgroup, SPEC_BY_NAME.get(name)!.attachType, id);
    } catch (err) {
      if (!(err instanceof BpfCommandError)) throw err;
      if (await exists(cgroup)) {
        const still = await this.tool.cgroupShow(cgroup).catch(() => undefined);
        if (!still || still.some((p) => p.id === id)) throw err;
      }
    }
    this.logger.debug({ cgroup, program: name, id }, 'ebpf program detached');
  }

  private async requireCgroup(cgroupPath: string): Promise<string> {
    if (!isAbsolute(cgroupPath)) throw new CgroupNotFoundError(cgroupPath, 'is not an absolute path; pass the directory under the cgroup v2 mount');
    const cgroup = resolve(cgroupPath);
    let isDir = false;
    try {
      isDir = (await stat(cgroup)).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) {
      throw new CgroupNotFoundError(
        cgroup,
        "does not exist; check the pod's cgroup path (the cgroupfs and systemd drivers name it differently) and that the host's cgroup v2 root is mounted where the agent looks",
      );
    }
    const type = await fsType(cgroup);
    if (type !== CGROUP2_SUPER_MAGIC) {
      throw new CgroupNotFoundError(cgroup, `is not on a cgroup v2 filesystem; use the path under the cgroup2 mount (${(await this.cgroupRoot()) ?? 'none is mounted'})`);
    }
    return cgroup;
  }

  // --- pins -----------------------------------------------------------------------------------

  /** Every program pinned under progs/, all versions, with its kernel id. */
  private async pinnedPrograms(): Promise<PinnedProgram[]> {
    const dirs = await readdir(this.progsDir).catch(() => [] as string[]);
    const found: Array<Promise<PinnedProgram | undefined>> = [];
    for (const d of dirs) {
      const m = /^(redirect|strict|ztunnel)-([0-9a-f]+)$/.exec(d);
      if (!m) continue;
      const object = m[1] as ObjectName;
      for (const file of await readdir(join(this.progsDir, d)).catch(() => [] as string[])) {
        if (SPEC_BY_NAME.get(file)?.object !== object) continue;
        const path = join(this.progsDir, d, file);
        found.push(this.programId(path).then((p) => (p ? { ...p, name: file, object, digest: m[2]!, path } : undefined)));
      }
    }
    return (await Promise.all(found)).filter((p): p is PinnedProgram => p !== undefined);
  }

  private async programId(path: string): Promise<{ id: number } | undefined> {
    let ino: number;
    try {
      ino = (await stat(path)).ino;
    } catch {
      return undefined;
    }
    const cached = this.idCache.get(path);
    if (cached && cached.ino === ino) return { id: cached.id };
    const { id, name } = await this.tool.progId(path);
    this.idCache.set(path, { ino, id, name });
    return { id };
  }

  /**
   * The version of each program to attach: normally the only one pinned; during an upgrade the
   * most recently pinned. attach*() work from the pins alone, so the ztunnel can attach with
   * whatever the node agent loaded.
   */
  private activeVersions(pinned: readonly PinnedProgram[]): Map<string, PinnedProgram> {
    const out = new Map<string, PinnedProgram>();
    for (const p of pinned) {
      const prev = out.get(p.name);
      if (!prev || p.id > prev.id) out.set(p.name, p);
    }
    return out;
  }

  /**
   * `bpftool cgroup tree` walks every cgroup and gives up when one disappears under it, which
   * pods do all the time on a busy node: try again a few times.
   */
  private async cgroupTree(root: string): ReturnType<Bpftool['cgroupTree']> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.tool.cgroupTree(root);
      } catch (err) {
        if (attempt >= TREE_ATTEMPTS || !(err instanceof BpfCommandError)) throw err;
        this.logger.debug({ root, attempt, error: err.message }, 'cgroup tree walk failed, retrying');
      }
    }
  }

  private async cgroupRoot(): Promise<string | undefined> {
    return this.cgroupRootInput ?? (await cgroup2Root());
  }

  /** Runs `fn` after every earlier call with the same key has settled. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const result = prev.then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return result;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
