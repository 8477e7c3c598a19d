/**
 * The seeds of each entry point, taken from the project's own examples so that mutations start from
 * inputs that get past the first checks: the lab's examples, the manifests of the tests and the
 * cluster suite, and the YAML and JSON blocks of the docs. Discovery messages are what the control plane's encoder makes of those
 * manifests, so they have the shape the decoder expects.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAll } from 'js-yaml';
import { parseManifests } from '../core/kube/parse.js';
import { convertManifests } from '../core/kube/convert.js';
import { RESOURCE_KINDS, SPEC_KINDS, encodeResource, type ResourceKind } from '../core/discovery/wire.js';
import type { EntryInputs, EntryName, FuzzRequest } from './entries.js';
import { HOSTILE_REQUEST_PATHS, HOSTILE_STRINGS, mutateBytes, mutateValue, pick, render, type Rand } from './mutate.js';

/** The checkout: this file is fuzz/seeds.ts (tests) or dist/fuzz/seeds.js. */
export const REPO = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '..' : '../..', import.meta.url));

const MANIFEST_FILES = ['lab/examples', 'test/cluster/fixtures', 'test/core/kube/fixtures'];
const DOC_FILES = ['README.md', 'docs'];

function filesIn(rel: string, ext: RegExp): string[] {
  const p = join(REPO, rel);
  const names = readdirSafe(p);
  if (names) return names.filter((f) => ext.test(f)).sort().map((f) => join(p, f));
  return existsSync(p) ? [p] : [];
}
function readdirSafe(p: string): string[] | undefined {
  try {
    return readdirSync(p);
  } catch {
    return undefined;
  }
}

/** Fenced blocks of one language in the docs. */
function docBlocks(lang: string): string[] {
  const out: string[] = [];
  for (const f of DOC_FILES.flatMap((d) => filesIn(d, /\.md$/))) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))) out.push(m[1]!);
  }
  return out;
}

function yamlDocs(text: string): unknown[] {
  try {
    return loadAll(text).filter((d) => d !== null && typeof d === 'object');
  } catch {
    return [];
  }
}

/** The regression corpus cases of an entry (test/fuzz/corpus/<entry>/*.json), as inputs. */
export function corpusCases(entry: EntryName): { file: string; case: CorpusCase }[] {
  const dir = join(REPO, 'test', 'fuzz', 'corpus', entry);
  return (readdirSafe(dir) ?? [])
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: join(dir, f), case: JSON.parse(readFileSync(join(dir, f), 'utf8')) as CorpusCase }));
}

/**
 * A regression case. `input` is the entry's input; a string may hold `@@NAME@@` placeholders that
 * `expand` fills from `repeat` (`NAME: [text, times]`), so a 1 MiB case is a few bytes on disk.
 */
export interface CorpusCase {
  readonly issue: string;
  readonly what: string;
  readonly input: unknown;
  readonly repeat?: Readonly<Record<string, readonly [string, number]>>;
  /** What a user should see. */
  readonly expect: { readonly outcome: 'accepted' | 'clean'; readonly detail?: string };
  /** Set while the tree does not give `expect` yet: the finding, in a few words. */
  readonly todo?: string;
}

export function expand(c: CorpusCase): unknown {
  const fill = (s: string) => s.replace(/@@([A-Z0-9_]+)@@/g, (_, k: string) => {
    const [text, n] = c.repeat?.[k] ?? ['', 0];
    return text.repeat(n);
  });
  const walk = (v: unknown): unknown =>
    typeof v === 'string' ? fill(v) : Array.isArray(v) ? v.map(walk) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [fill(k), walk(x)])) : v;
  return walk(c.input);
}

export interface Seeds {
  readonly manifests: readonly Record<string, unknown>[];
  readonly meshConfig: readonly unknown[];
  readonly discovery: readonly unknown[];
  readonly cni: readonly unknown[];
  readonly socks5: readonly Uint8Array[];
  readonly routes: readonly Record<string, unknown>[];
}

let cached: Seeds | undefined;

export function loadSeeds(): Seeds {
  if (cached) return cached;
  const manifests: Record<string, unknown>[] = [];
  for (const f of MANIFEST_FILES.flatMap((d) => filesIn(d, /\.ya?ml$/))) manifests.push(...(yamlDocs(readFileSync(f, 'utf8')) as Record<string, unknown>[]));
  const yamlBlocks = docBlocks('yaml').flatMap(yamlDocs) as Record<string, unknown>[];
  manifests.push(...yamlBlocks.filter((d) => typeof d.apiVersion === 'string' && typeof d.kind === 'string'));

  const meshConfig: unknown[] = yamlBlocks.filter((d) => !('apiVersion' in d) && ('workloads' in d || 'nodes' in d || 'services' in d || 'authorizationPolicies' in d));

  // What the control plane sends for those manifests: one snapshot with every kind, then deltas.
  const text = manifests.map((m) => JSON.stringify(m)).join('\n---\n');
  const parsed = parseManifests(text, 'seeds.yaml');
  const result = convertManifests({ objects: parsed.objects, nodes: [{ name: 'node-a', ztunnelAddress: '127.0.0.2', hbonePort: 15008 }], trustDomain: 'cluster.local' });
  const specOf = (kind: ResourceKind, ns: string, name: string): unknown => {
    const objs = kind === 'httpRoutes' ? result.waypoint.httpRoutes : kind === 'virtualServices' ? result.waypoint.virtualServices : kind === 'destinationRules' ? result.waypoint.destinationRules : result.waypoint.authorizationPolicies;
    const o = objs.find((x) => x.meta.name === name && x.meta.namespace === ns);
    return o ? (JSON.parse(o.rawJson) as { spec?: unknown }).spec ?? {} : {};
  };
  const resources: Record<string, unknown[]> = {};
  for (const kind of RESOURCE_KINDS) {
    const list = ((result.config as unknown as Record<string, unknown[] | undefined>)[kind] ?? []) as { name: string; namespace: string }[];
    resources[kind] = list.map((r) => encodeResource(kind, r as never, SPEC_KINDS.has(kind) ? specOf(kind, r.namespace, r.name) : undefined));
  }
  const discovery: unknown[] = [
    { type: 'snapshot', version: 'v1', seq: 1, rootNamespace: 'istio-system', resources },
    ...RESOURCE_KINDS.filter((k) => resources[k]!.length > 0).map((k) => ({ type: 'delta', from: 'v1', version: 'v2', seq: 2, upserts: { [k]: resources[k] }, removes: {}, replace: [] })),
    { type: 'delta', from: 'v1', version: 'v2', seq: 2, upserts: {}, removes: { workloads: ['default/x'] }, replace: ['services'] },
    { type: 'resume', version: 'v1', seq: 3 },
    { type: 'trustBundle', roots: ['-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'], signer: 'spiffe://cluster.local/ns/istio-system/sa/istiod' },
  ];

  // The plugin's entry of the conflist in docs/cni.md, as the runtime hands it over on stdin.
  const cni: unknown[] = [];
  for (const b of docBlocks('json')) {
    try {
      const list = JSON.parse(b) as { cniVersion?: string; name?: string; plugins?: Record<string, unknown>[] };
      for (const p of list.plugins ?? []) {
        if (p.type !== 'ambient-cni') continue;
        cni.push({ cniVersion: list.cniVersion, name: list.name, ...p, prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/x' }], ips: [{ address: '10.244.1.5/24', interface: 0, gateway: '10.244.1.1' }] } });
      }
    } catch {
      // not a conflist
    }
  }
  cni.push({ cniVersion: '0.4.0', name: 'k8s', type: 'ambient-cni', agentSocket: '/run/a.sock', agentConnectTimeoutMs: 500, agentRequestTimeoutMs: 5000, cgroupPath: '/kubepods/pod{podUid}/{containerId}', exemptNamespaces: ['kube-system'] });

  // Greeting (no auth) + CONNECT to an IPv4 address, a domain name and an IPv6 address.
  const socks5 = [
    Uint8Array.from([5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0x1f, 0x90]),
    Uint8Array.from([5, 1, 0, 5, 1, 0, 3, 11, ...Buffer.from('example.com'), 0, 80]),
    Uint8Array.from([5, 2, 0, 2, 5, 1, 0, 4, ...Buffer.alloc(15), 1, 0, 80]),
  ];

  const routes = manifests.filter((m) => m.kind === 'HTTPRoute' || m.kind === 'VirtualService' || (m.kind === 'AuthorizationPolicy' && (m.spec as { targetRefs?: unknown } | undefined)?.targetRefs));
  cached = { manifests, meshConfig, discovery, cni, socks5, routes };
  return cached;
}

/** A generated input and the mutations that made it. */
export interface Generated<E extends EntryName = EntryName> {
  readonly input: EntryInputs[E];
  readonly applied: readonly string[];
}

function hostileRequests(r: Rand): FuzzRequest[] {
  return Array.from({ length: 1 + Math.floor(r() * 3) }, () => ({
    method: pick(r, ['GET', 'POST', 'get', '', 'X\r\nY']),
    path: pick(r, HOSTILE_REQUEST_PATHS),
    headers: { [pick(r, ['x-user', 'host', 'x-version', 'a'.repeat(1000)])]: pick(r, [...HOSTILE_STRINGS, 'x'.repeat(300_000)]) },
    query: pick(r, ['', 'a=1&a=2', 'q=' + 'b'.repeat(10_000), '%zz']),
  }));
}

/**
 * One input for `entry` from `r`. `ops` fixes the mutations (indices into the mutation list) so a
 * property test can choose them; without it the generator picks 1-3.
 */
export function generate(entry: EntryName, r: Rand, ops?: readonly number[]): Generated {
  const s = loadSeeds();
  switch (entry) {
    case 'manifests': {
      const docs = Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, s.manifests));
      const target = Math.floor(r() * docs.length);
      const m = mutateValue(r, docs[target], s.manifests, ops);
      const all = docs.map((d, i) => (i === target ? m.value : d));
      const asList = r() < 0.15;
      const text = asList ? render(r, { apiVersion: 'v1', kind: 'List', items: all }, 'any') : all.map((d) => render(r, d, 'yaml')).join('---\n');
      return { input: text, applied: m.applied };
    }
    case 'meshConfig': {
      const m = mutateValue(r, pick(r, s.meshConfig), s.meshConfig, ops);
      return { input: render(r, m.value, 'any'), applied: m.applied };
    }
    case 'discovery': {
      const m = mutateValue(r, pick(r, s.discovery), s.discovery, ops);
      return { input: render(r, m.value, 'json'), applied: m.applied };
    }
    case 'cni': {
      const m = mutateValue(r, pick(r, s.cni), s.cni, ops);
      return { input: render(r, m.value, 'json'), applied: m.applied };
    }
    case 'socks5': {
      const m = mutateBytes(r, pick(r, s.socks5), ops);
      return { input: m.value.toString('base64'), applied: m.applied };
    }
    case 'matchers': {
      const m = mutateValue(r, pick(r, s.routes), s.routes, ops);
      return { input: { manifest: render(r, m.value, 'yaml'), requests: hostileRequests(r) }, applied: m.applied };
    }
  }
}
