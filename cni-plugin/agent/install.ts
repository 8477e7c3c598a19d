/**
 * Installs the CNI plugin on a Kubernetes node from inside the node agent's container, the way
 * Istio's install-cni does: the plugin binary goes into the host's CNI bin dir, and our entry is
 * appended to the `plugins` of the node's primary network config (the one kubelet's runtime uses:
 * the lexically first `*.conf`, `*.conflist` or `*.json` of the conf dir). Another agent (the
 * primary CNI's own daemon) may rewrite that file at any time, so the dir is watched and the entry
 * put back. Uninstall takes it out again, restoring a single-plugin `.conf` we had converted.
 *
 * What lands in the bin dir (`<bin>` is the host's `/opt/cni/bin`):
 *
 *     <bin>/ambient-cni                      a shell launcher, replaced atomically
 *     <bin>/ambient-cni.d/<digest>/node      the agent's own Node.js binary
 *     <bin>/ambient-cni.d/<digest>/lib/…     the shared libraries it was linked with (from ldd) and
 *                                            their loader, so the host needs neither Node nor libstdc++
 *     <bin>/ambient-cni.d/<digest>/js/…      the plugin's compiled modules (it imports only node:*)
 *
 * The launcher finds its payload next to itself (`dirname "$0"`), so it works wherever the
 * container mounted the host's bin dir. A new version is a new `<digest>` dir; the launcher is
 * switched by rename and only then are older dirs removed, so a plugin running during an upgrade
 * never sees half a payload.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MeshError } from '../../core/errors.js';
import type { Logger } from '../../core/telemetry/log.js';
import { SUPPORTED_VERSIONS } from '../cni/spec.js';

/** The plugin's `type`, and the launcher's file name in the bin dir. */
export const PLUGIN_TYPE = 'ambient-cni';
/** Extensions a CNI runtime reads from its conf dir (libcni's ConfFiles). */
export const CONF_EXTENSIONS: readonly string[] = Object.freeze(['.conf', '.conflist', '.json']);
/**
 * Suffix of the copy of a single-plugin config we converted to a `.conflist`. Not a CNI
 * extension, so no runtime ever reads it; uninstall puts it back.
 */
export const BACKUP_SUFFIX = '.ambient-backup';
const PAYLOAD_DIR = `${PLUGIN_TYPE}.d`;

/** A CNI config we cannot safely change: it names the file and what is wrong with it. */
export class CniConfigError extends MeshError {
  readonly file: string;
  constructor(file: string, why: string) {
    super('ERR_CNI_CONFIG', `cni config ${file} ${why}; fix or replace it (the node agent did not write to it)`);
    this.file = file;
  }
}

/** The plugin could not be copied into the bin dir. */
export class CniBinaryInstallError extends MeshError {
  constructor(dir: string, why: string, options?: { cause?: unknown }) {
    super('ERR_CNI_BINARY_INSTALL', `installing the cni plugin into ${dir} failed: ${why}; check that the host's CNI bin dir is mounted read-write`, options);
  }
}

/** Our entry in the conflist: `type` is added here; the rest is the plugin's config (docs/cni.md). */
export type PluginEntry = Readonly<Record<string, unknown>>;

export interface CniInstallInputs {
  /** The host's CNI bin dir as mounted in this container (host `/opt/cni/bin`). */
  readonly binDir: string;
  /** The host's CNI conf dir as mounted (host `/etc/cni/net.d`). */
  readonly confDir: string;
  /** The plugin's config keys (agentSocket, exemptNamespaces, ...), without `type`. */
  readonly entry: PluginEntry;
  readonly logger: Logger;
  /** The compiled plugin's entry module; default: dist/cni-plugin/plugin.js beside this file. */
  readonly pluginJs?: string;
  /** The Node.js binary to copy; default: the one running the agent. */
  readonly nodeBinary?: string;
  /** How often the conf dir is checked besides fs.watch (which misses changes on some mounts). */
  readonly checkIntervalMs?: number;
}

const execFileP = promisify(execFile);

/** `file` is a CNI network config by its name (libcni's rule; the name decides, not the content). */
export function isConfFile(name: string): boolean {
  return CONF_EXTENSIONS.some((e) => name.endsWith(e)) && !name.startsWith('.');
}

/**
 * The config the runtime uses: the lexically first CNI config file of `confDir`, or undefined
 * when there is none yet (the primary CNI has not written it).
 *
 * @example
 * await primaryConfFile('/host/etc/cni/net.d') // '/host/etc/cni/net.d/10-flannel.conflist'
 */
export async function primaryConfFile(confDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const confs = names.filter(isConfFile).sort();
  for (const n of confs) {
    // A directory with a conf-like name is skipped, as libcni skips it.
    if ((await stat(join(confDir, n)).catch(() => undefined))?.isFile()) return join(confDir, n);
  }
  return undefined;
}

/** What `withPlugin` decided for a config text. */
export interface ConfChange {
  /** The new file's text (a conflist); equal to the input when nothing had to change. */
  readonly text: string;
  readonly changed: boolean;
  /** The input was a single-plugin config, now turned into a conflist. */
  readonly converted: boolean;
}

function parseConf(file: string, text: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new CniConfigError(file, `is not valid JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new CniConfigError(file, 'is not a JSON object');
  return doc as Record<string, unknown>;
}

function cniVersionOf(file: string, doc: Record<string, unknown>): string {
  const v = doc['cniVersion'];
  if (typeof v !== 'string') throw new CniConfigError(file, 'has no cniVersion string');
  if (!SUPPORTED_VERSIONS.includes(v)) {
    throw new CniConfigError(file, `has cniVersion ${v}, which ${PLUGIN_TYPE} does not speak (it supports ${SUPPORTED_VERSIONS.join(', ')})`);
  }
  return v;
}

const isOurs = (p: unknown): boolean => typeof p === 'object' && p !== null && (p as Record<string, unknown>)['type'] === PLUGIN_TYPE;

const render = (doc: unknown): string => `${JSON.stringify(doc, null, 2)}\n`;

/**
 * The config with our plugin last in its chain: a `.conflist` gets the entry appended (or
 * replaced, and moved last, when an older one is there); a single-plugin config becomes a
 * conflist of that plugin and ours, keeping its `cniVersion` and `name`. Pure: no I/O.
 *
 * @throws CniConfigError naming `file` when the text is not a config we can safely change.
 *
 * @example
 * withPlugin('10-bridge.conf', '{"cniVersion":"1.0.0","name":"k8s","type":"bridge"}', { agentSocket: '/var/run/ambient/cni.sock' })
 * // => { converted: true, changed: true, text: '{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge"},{"type":"ambient-cni",...}]}' }
 */
export function withPlugin(file: string, text: string, entry: PluginEntry): ConfChange {
  const doc = parseConf(file, text);
  cniVersionOf(file, doc);
  const ours = { ...entry, type: PLUGIN_TYPE };
  if ('plugins' in doc) {
    const plugins = doc['plugins'];
    if (!Array.isArray(plugins) || plugins.length === 0) throw new CniConfigError(file, 'has a "plugins" key that is not a non-empty list');
    plugins.forEach((p, i) => {
      if (typeof p !== 'object' || p === null || typeof (p as Record<string, unknown>)['type'] !== 'string') throw new CniConfigError(file, `plugins[${i}] has no "type"`);
    });
    const others = plugins.filter((p) => !isOurs(p));
    if (others.length === 0) throw new CniConfigError(file, `chains only ${PLUGIN_TYPE}, which needs an interface plugin before it`);
    const next = { ...doc, plugins: [...others, ours] };
    const same = JSON.stringify(plugins) === JSON.stringify(next.plugins);
    return { text: same ? text : render(next), changed: !same, converted: false };
  }
  if (typeof doc['type'] !== 'string') throw new CniConfigError(file, 'has neither "plugins" nor "type"');
  if (doc['type'] === PLUGIN_TYPE) throw new CniConfigError(file, `is a single-plugin config of ${PLUGIN_TYPE}, which needs an interface plugin before it`);
  const { cniVersion, name, disableCheck, disableGC, ...plugin } = doc;
  const list = {
    cniVersion,
    ...(name !== undefined ? { name } : {}),
    ...(disableCheck !== undefined ? { disableCheck } : {}),
    ...(disableGC !== undefined ? { disableGC } : {}),
    plugins: [plugin, ours],
  };
  return { text: render(list), changed: true, converted: true };
}

/**
 * The config without our plugin; undefined when it holds no entry of ours. Pure.
 *
 * @throws CniConfigError when the text cannot be read as a config.
 */
export function withoutPlugin(file: string, text: string): string | undefined {
  const doc = parseConf(file, text);
  const plugins = doc['plugins'];
  if (!Array.isArray(plugins) || !plugins.some(isOurs)) return undefined;
  return render({ ...doc, plugins: plugins.filter((p) => !isOurs(p)) });
}

/** The conflist a converted single-plugin config becomes: `10-x.conf` → `10-x.conflist`. */
export function convertedName(file: string): string {
  const ext = CONF_EXTENSIONS.find((e) => file.endsWith(e)) ?? '';
  return `${file.slice(0, file.length - ext.length)}.conflist`;
}

/** Writes `text` to `path` through a temp file in the same dir (fsync, rename): readers see old or new, never half. */
export async function writeFileAtomic(path: string, text: string | Buffer, mode = 0o644): Promise<void> {
  // The temp name has no CNI extension, so a runtime listing the dir never picks it up.
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(text);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The plugin's compiled modules, relative to dist/: the transitive relative imports of `entry`. */
export async function moduleClosure(entry: string): Promise<string[]> {
  const seen = new Set<string>();
  const walk = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) await walk(resolve(dirname(file), m[1]!));
  };
  await walk(resolve(entry));
  return [...seen];
}

/** Shared libraries of `binary` and their loader, as `ldd` lists them (absolute paths). */
export async function sharedLibraries(binary: string): Promise<{ loader?: string; libs: string[] }> {
  let out: string;
  try {
    out = (await execFileP('ldd', [binary])).stdout;
  } catch {
    // A static binary ("not a dynamic executable" exits 1), or no ldd: nothing to bundle.
    return { libs: [] };
  }
  const libs: string[] = [];
  let loader: string | undefined;
  for (const line of out.split('\n')) {
    const arrow = /=>\s+(\/\S+)/.exec(line);
    if (arrow) libs.push(arrow[1]!);
    else if (/^\s*\/\S*ld-linux\S*/.test(line)) loader = /^\s*(\/\S+)/.exec(line)![1]!;
  }
  return { ...(loader ? { loader } : {}), libs };
}

const DEFAULT_PLUGIN_JS = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'plugin.js');
/** fs.watch misses changes on some volume types (and events can coalesce): check this often anyway. */
export const DEFAULT_CHECK_INTERVAL_MS = 10_000;

/** The launcher script: runs the bundled node through the bundled loader when there is one. */
function launcher(digest: string, loader: string | undefined): string {
  const d = `"$(dirname "$0")/${PAYLOAD_DIR}/${digest}"`;
  const run = loader
    ? `exec "$d/lib/${basename(loader)}" --library-path "$d/lib" "$d/node" "$d/js/cni-plugin/plugin.js"`
    : `exec "$d/node" "$d/js/cni-plugin/plugin.js"`;
  return [
    '#!/bin/sh',
    `# ${PLUGIN_TYPE}: installed by the ambient node agent, which rewrites it at every start (docs/cni.md).`,
    `d=${d}`,
    `if [ ! -x "$d/node" ]; then`,
    // ERR_CNI_NODE_MISSING (cni-plugin/cni/errors.ts)
    `  printf '%s\\n' '{"cniVersion":"1.0.0","code":105,"msg":"${PLUGIN_TYPE}: its payload ${PAYLOAD_DIR}/${digest} is missing next to the launcher; restart the node agent to reinstall it","details":""}'`,
    '  exit 1',
    'fi',
    run,
    '',
  ].join('\n');
}

/**
 * Keeps the plugin installed on the node: binary, and our entry in the primary CNI config.
 *
 * @example
 * const cni = new CniInstaller({ binDir: '/host/opt/cni/bin', confDir: '/host/etc/cni/net.d', entry: { agentSocket: '/var/run/ambient/cni.sock' }, logger });
 * await cni.installBinary();
 * await cni.start();            // insert now (or when the primary config appears), then keep it there
 * // on uninstall:
 * await cni.stop(); await cni.uninstall();
 */
export class CniInstaller {
  private readonly in: CniInstallInputs;
  private readonly log: Logger;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private pending = false;
  /** The last problem with the primary config, while it lasts (shown in logs once per change). */
  lastError: Error | undefined;
  /** The file that carries our entry, once inserted. */
  configured: string | undefined;

  constructor(inputs: CniInstallInputs) {
    this.in = inputs;
    this.log = inputs.logger;
  }

  get launcherPath(): string {
    return join(this.in.binDir, PLUGIN_TYPE);
  }

  /** Copies node, its libraries and the plugin's modules into a new payload dir, then switches the launcher. */
  async installBinary(): Promise<{ digest: string }> {
    const binDir = this.in.binDir;
    const pluginJs = resolve(this.in.pluginJs ?? DEFAULT_PLUGIN_JS);
    const nodeBinary = this.in.nodeBinary ?? process.execPath;
    const binDirStat = await stat(binDir).catch((err: Error) => {
      throw new CniBinaryInstallError(binDir, `the bin dir is not there (${err.message})`);
    });
    if (!binDirStat.isDirectory()) throw new CniBinaryInstallError(binDir, 'the bin dir is not there (not a directory)');
    const distRoot = resolve(dirname(pluginJs), '..');
    const modules = await moduleClosure(pluginJs).catch((err: Error) => {
      throw new CniBinaryInstallError(binDir, `cannot read the compiled plugin ${pluginJs} (${err.message}); run npm run build`);
    });
    const { loader, libs } = await sharedLibraries(nodeBinary);
    const hash = createHash('sha256');
    for (const m of modules.sort()) hash.update(relative(distRoot, m)).update(await readFile(m));
    const nodeStat = await stat(nodeBinary);
    hash.update(`${nodeBinary}:${nodeStat.size}:${nodeStat.mtimeMs}:${process.version}:${libs.join(',')}`);
    const digest = hash.digest('hex').slice(0, 16);
    const payloads = join(binDir, PAYLOAD_DIR);
    const dir = join(payloads, digest);
    try {
      if (!(await stat(join(dir, '.complete')).catch(() => undefined))) {
        const staging = `${dir}.staging-${process.pid}`;
        await rm(staging, { recursive: true, force: true });
        await mkdir(join(staging, 'lib'), { recursive: true });
        for (const m of modules) {
          const to = join(staging, 'js', relative(distRoot, m));
          await mkdir(dirname(to), { recursive: true });
          await copyFile(m, to);
        }
        await copyFile(nodeBinary, join(staging, 'node'));
        await chmod(join(staging, 'node'), 0o755);
        for (const lib of [...libs, ...(loader ? [loader] : [])]) {
          await copyFile(lib, join(staging, 'lib', basename(lib)));
          await chmod(join(staging, 'lib', basename(lib)), 0o755);
        }
        await writeFileAtomic(join(staging, '.complete'), `${new Date().toISOString()}\n`);
        await rm(dir, { recursive: true, force: true });
        await rename(staging, dir);
      }
      await writeFileAtomic(this.launcherPath, launcher(digest, loader), 0o755);
      for (const old of await readdir(payloads)) if (old !== digest) await rm(join(payloads, old), { recursive: true, force: true });
    } catch (err) {
      if (err instanceof MeshError) throw err;
      throw new CniBinaryInstallError(binDir, (err as Error).message, { cause: err });
    }
    this.log.info({ launcher: this.launcherPath, payload: dir, modules: modules.length, bundledLibs: libs.length }, 'cni plugin installed');
    return { digest };
  }

  /**
   * Puts our entry into the primary config if it is not there. Resolves with the file changed,
   * or undefined when nothing was needed (or there is no config yet).
   *
   * @throws CniConfigError when the primary config cannot be changed safely (nothing is written).
   */
  async ensureConfig(): Promise<string | undefined> {
    const file = await primaryConfFile(this.in.confDir);
    if (!file) {
      if (this.configured !== undefined || this.lastError === undefined) this.log.info({ confDir: this.in.confDir }, 'no CNI config yet; waiting for the primary CNI to write one');
      this.configured = undefined;
      this.lastError = new CniConfigError(this.in.confDir, 'holds no *.conf, *.conflist or *.json yet');
      return undefined;
    }
    const text = await readFile(file, 'utf8');
    const change = withPlugin(file, text, this.in.entry);
    this.lastError = undefined;
    if (!change.changed) {
      this.configured = file;
      return undefined;
    }
    const mode = (await stat(file)).mode & 0o777;
    if (change.converted) {
      // The .conf would still win the lexical order over our .conflist: keep its text aside for
      // uninstall, write the conflist, then remove the .conf.
      const target = convertedName(file);
      await writeFileAtomic(`${file}${BACKUP_SUFFIX}`, text, mode);
      await writeFileAtomic(target, change.text, mode);
      if (target !== file) await rm(file, { force: true });
      this.configured = target;
      this.log.info({ from: file, to: target }, 'converted the primary CNI config to a conflist with ambient-cni chained last');
      return target;
    }
    await writeFileAtomic(file, change.text, mode);
    this.configured = file;
    this.log.info({ file }, 'ambient-cni chained last in the primary CNI config');
    return file;
  }

  /** Inserts now (logging, not throwing, a bad config), then keeps the entry there on every change. */
  async start(): Promise<void> {
    await mkdir(this.in.confDir, { recursive: true });
    await this.check();
    this.watcher = watch(this.in.confDir, () => this.schedule());
    this.watcher.on('error', (err) => this.log.warn({ err, confDir: this.in.confDir }, 'watching the CNI conf dir failed; the periodic check continues'));
    this.timer = setInterval(() => this.schedule(), this.in.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  /** Resolves when every check scheduled so far has run (tests). */
  async settled(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.running;
      await seen;
    } while (seen !== this.running || this.pending);
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    this.running = this.running.then(async () => {
      this.pending = false;
      await this.check();
    });
  }

  private async check(): Promise<void> {
    const before = this.lastError?.message;
    const had = this.configured;
    try {
      const changed = await this.ensureConfig();
      if (changed && had !== undefined) this.log.warn({ file: changed }, 'our CNI entry was missing (another agent rewrote the config?); put it back');
    } catch (err) {
      this.lastError = err as Error;
      if (before !== this.lastError.message) this.log.error({ err, code: (err as MeshError).code }, (err as Error).message);
    }
  }

  /** Stops watching; changes nothing on disk. */
  async stop(): Promise<void> {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    this.watcher = undefined;
    this.timer = undefined;
    await this.settled();
  }

  /**
   * Takes our entry out of every config of the conf dir (restoring a `.conf` we converted when
   * the conflist is otherwise unchanged), then removes the launcher and its payload.
   * A config that cannot be parsed is reported and left as it is; the others are still cleaned.
   */
  async uninstall(): Promise<{ files: string[]; errors: Error[] }> {
    const files: string[] = [];
    const errors: Error[] = [];
    const names = (await readdir(this.in.confDir).catch(() => [] as string[])).sort();
    for (const name of names) {
      const file = join(this.in.confDir, name);
      if (name.endsWith(BACKUP_SUFFIX)) continue;
      if (!isConfFile(name)) continue;
      try {
        const text = await readFile(file, 'utf8');
        const without = withoutPlugin(file, text);
        if (without === undefined) continue;
        const backup = await this.backupFor(file, names);
        const mode = (await stat(file)).mode & 0o777;
        if (backup && (await this.isConversionOf(backup, text))) {
          const original = backup.slice(0, -BACKUP_SUFFIX.length);
          await writeFileAtomic(original, await readFile(backup), mode);
          if (original !== file) await rm(file, { force: true });
          await rm(backup, { force: true });
          files.push(original);
          this.log.info({ restored: original, removed: file }, 'restored the single-plugin CNI config');
        } else {
          await writeFileAtomic(file, without, mode);
          if (backup) await rm(backup, { force: true });
          files.push(file);
          this.log.info({ file }, 'removed ambient-cni from the CNI config');
        }
      } catch (err) {
        errors.push(err as Error);
        this.log.error({ err, file }, 'could not remove ambient-cni from a CNI config; remove its entry by hand');
      }
    }
    await rm(this.launcherPath, { force: true });
    await rm(join(this.in.binDir, PAYLOAD_DIR), { recursive: true, force: true });
    this.configured = undefined;
    this.log.info({ binDir: this.in.binDir }, 'cni plugin removed');
    return { files, errors };
  }

  private async backupFor(conflist: string, names: readonly string[]): Promise<string | undefined> {
    for (const n of names) {
      if (!n.endsWith(BACKUP_SUFFIX)) continue;
      const original = join(this.in.confDir, n.slice(0, -BACKUP_SUFFIX.length));
      if (convertedName(original) === conflist) return join(this.in.confDir, n);
    }
    return undefined;
  }

  /** `conflist` is what converting `backup` gives (with any version of our entry): nobody else edited it since. */
  private async isConversionOf(backup: string, conflist: string): Promise<boolean> {
    try {
      const original = await readFile(backup, 'utf8');
      const a = withoutPlugin(backup, withPlugin(backup, original, {}).text);
      const b = withoutPlugin(backup, conflist);
      return a !== undefined && a === b;
    } catch {
      return false;
    }
  }
}
