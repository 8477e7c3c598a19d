/**
 * The desired state as a YAML file (docs/cni.md, "The desired-state file"), watched and reloaded.
 * This is the only place that reads its wire shape; PeerAuthentications go through core's config
 * parser, so they mean exactly what they mean to ztunnel.
 */
import { isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import { dump, YAMLException } from 'js-yaml';
import { loadYamlDocument } from '../../core/validation/yaml.js';
import { Problems, Uniq, field, list, mapping, string, stringMap } from '../../core/validation/check.js';
import { parseMeshConfig } from '../../core/node-config/file.js';
import { ConfigError } from '../../core/errors.js';
import { WatchedFile } from '../../core/node-config/watched-file.js';
import { deepFreeze, ImmutableMap } from '../../core/model/freeze.js';
import type { PeerAuthentication } from '../../core/model/types.js';
import type { Logger } from '../../core/telemetry/log.js';
import type { DesiredNamespace, DesiredPod, DesiredState, DesiredStateSource } from './desired-state.js';

const TOP_KEYS = ['namespaces', 'pods', 'peerAuthentications'];
const NAMESPACE_KEYS = ['name', 'labels'];
const POD_KEYS = ['namespace', 'name', 'uid', 'node', 'labels', 'cgroup', 'ips'];
/** Kubernetes object names (DNS-1123 subdomain, loosely): enough to refuse typos like spaces. */
const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/**
 * Parses the desired-state file.
 *
 * @throws ConfigError listing every problem with its path (`pods[1].labels.app: ...`).
 *
 * @example
 * parseDesiredState('namespaces: [{name: apps, labels: {istio.io/dataplane-mode: ambient}}]', 'desired.yaml', {})
 */
export function parseDesiredState(text: string, source: string, opts: { rootNamespace?: string } = {}): DesiredState {
  // An empty file is refused, not read as "nothing is ambient": a truncating editor would
  // otherwise un-enrol every pod of the node.
  const empty = new ConfigError(source, [`the file is empty; expected a mapping with the keys ${TOP_KEYS.join(', ')}`]);
  if (text.trim() === '') throw empty;
  let doc: unknown;
  try {
    doc = loadYamlDocument(text, source);
  } catch (e) {
    const where = e instanceof YAMLException && e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : '';
    throw new ConfigError(source, [`yaml syntax error${where}: ${e instanceof YAMLException ? e.reason : (e as Error).message}`]);
  }
  if (doc === null || doc === undefined) throw empty;
  const p = new Problems();
  const top = mapping(p, '', doc, TOP_KEYS, `a mapping with the keys ${TOP_KEYS.join(', ')}`);
  if (!top) throw new ConfigError(source, p.list);

  const nsNames = new Uniq(p, 'namespace');
  const namespaces =
    field(p, '', top, 'namespaces', (v, path) =>
      list(p, path, v, (item, ip): DesiredNamespace | undefined => {
        const m = mapping(p, ip, item, NAMESPACE_KEYS);
        if (!m) return undefined;
        const name = field(p, ip, m, 'name', (x, xp) => k8sName(p, xp, x), { required: true });
        const labels = field(p, ip, m, 'labels', (x, xp) => stringMap(p, xp, x)) ?? {};
        if (name === undefined || !nsNames.check(name, `${ip}.name`)) return undefined;
        return { name, labels };
      }),
    ) ?? [];

  const podKeys = new Uniq(p, 'pod');
  const pods =
    field(p, '', top, 'pods', (v, path) =>
      list(p, path, v, (item, ip): DesiredPod | undefined => {
        const m = mapping(p, ip, item, POD_KEYS);
        if (!m) return undefined;
        const namespace = field(p, ip, m, 'namespace', (x, xp) => k8sName(p, xp, x), { required: true });
        const name = field(p, ip, m, 'name', (x, xp) => k8sName(p, xp, x), { required: true });
        const uid = field(p, ip, m, 'uid', (x, xp) => string(p, xp, x, 'the pod uid'));
        const node = field(p, ip, m, 'node', (x, xp) => string(p, xp, x, 'a node name'));
        const labels = field(p, ip, m, 'labels', (x, xp) => stringMap(p, xp, x)) ?? {};
        const cgroup = field(p, ip, m, 'cgroup', (x, xp) =>
          string(p, xp, x, 'a cgroup directory', (s) => (isAbsolute(s) || !s.split('/').includes('..') ? undefined : `${JSON.stringify(s)} must not contain ".."`)),
        );
        const ips =
          field(p, ip, m, 'ips', (x, xp) =>
            list(p, xp, x, (a, ap) => string(p, ap, a, 'an IP address', (s) => (isIP(s) ? undefined : `${JSON.stringify(s)} is not an IP address`))),
          ) ?? [];
        if (namespace === undefined || name === undefined || !podKeys.check(`${namespace}/${name}`, ip)) return undefined;
        return {
          namespace,
          name,
          ...(uid !== undefined ? { uid } : {}),
          ...(node !== undefined ? { node } : {}),
          labels,
          ...(cgroup !== undefined ? { cgroup } : {}),
          ips,
        };
      }),
    ) ?? [];

  let peerAuthentications: readonly PeerAuthentication[] = [];
  if (top['peerAuthentications'] !== undefined && top['peerAuthentications'] !== null) {
    try {
      // Through core's parser, the one boundary for PeerAuthentication's wire shape; its problem
      // paths (`peerAuthentications[0].spec.mtls.mode`) are this file's paths too.
      peerAuthentications = parseMeshConfig(dump({ peerAuthentications: top['peerAuthentications'] }), source, opts).peerAuthentications;
    } catch (err) {
      if (err instanceof ConfigError) for (const prob of err.problems) p.add('', prob);
      else throw err;
    }
  }
  if (p.size > 0) throw new ConfigError(source, p.list);
  return deepFreeze({
    namespaces: new ImmutableMap(namespaces.map((n) => [n.name, n] as const)),
    pods,
    peerAuthentications,
  });
}

function k8sName(p: Problems, path: string, v: unknown): string | undefined {
  return string(p, path, v, 'a Kubernetes name', (s) => (NAME_RE.test(s) && s.length <= 253 ? undefined : `${JSON.stringify(s)} is not a Kubernetes name (lowercase letters, digits, "-" and ".")`));
}

/**
 * Quiet time before a change is read: editors and `kubectl` write in several steps. The same
 * reasoning and value as core's FileConfigSource.
 */
export const DEFAULT_DEBOUNCE_MS = 100;

export interface FileDesiredStateSourceOptions {
  readonly path: string;
  readonly logger: Logger;
  readonly rootNamespace?: string;
  readonly debounceMs?: number;
}

/**
 * Reads the file at `start`, then watches its directory (editors rename over the file and
 * ConfigMap mounts swap a symlink, both invisible to a watch on the file itself) and delivers
 * every valid new version; an invalid one is logged and the last good one stays.
 */
export class FileDesiredStateSource implements DesiredStateSource {
  readonly describe: string;
  readonly #path: string;
  readonly #logger: Logger;
  readonly #rootNamespace: string | undefined;
  readonly #debounceMs: number;
  #file: WatchedFile<DesiredState> | undefined;

  constructor(opts: FileDesiredStateSourceOptions) {
    this.#path = resolve(opts.path);
    this.describe = `file:${this.#path}`;
    this.#logger = opts.logger.child({ desired_state_file: this.#path });
    this.#rootNamespace = opts.rootNamespace;
    this.#debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  }

  /** Why the latest read was rejected; undefined once a read succeeds again. */
  get lastError(): Error | undefined {
    return this.#file?.lastError;
  }

  async start(listener: (s: DesiredState) => void): Promise<void> {
    // invariant: the agent starts its one desired-state source once; a second start would register a second listener.
    if (this.#file) throw new Error('FileDesiredStateSource.start was called twice');
    this.#file = new WatchedFile<DesiredState>({
      path: this.#path,
      logger: this.#logger,
      what: 'desired-state file',
      debounceMs: this.#debounceMs,
      parse: (text) => parseDesiredState(text, this.#path, this.#rootNamespace ? { rootNamespace: this.#rootNamespace } : {}),
      readHint: 'check DESIRED_STATE_FILE and its permissions',
      rejected: 'desired-state file rejected; keeping the last good one',
      acceptFailed: 'the desired-state listener threw',
      accept: listener,
    });
    await this.#file.start();
  }

  async close(): Promise<void> {
    await this.#file?.close();
  }
}
