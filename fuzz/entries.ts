/**
 * The entry points the fuzz suite drives, each with its documented failure: what may leave the
 * boundary when an input is bad. `run` returns `accepted` or `clean` (the documented error or
 * problem); anything else it throws is, by definition, an uncaught exception (issue 19, item 2).
 *
 * Every entry does what its real caller does with the input, no more: the lab and the control
 * plane parse a file, store the objects and convert them (and the lab expands Deployments); ztunnel
 * parses its standalone file; a node proxy decodes one discovery line; ztunnel's SOCKS5 listener
 * reads one handshake from a socket; the CNI plugin parses its stdin; the waypoint matches requests
 * against the routes and policies the parser accepted.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { ConfigError } from '../core/errors.js';
import { parseManifests, parseObject } from '../core/kube/parse.js';
import { ManifestStore } from '../core/kube/store.js';
import { ManifestConverter } from '../core/kube/convert.js';
import { podsForDeployment } from '../core/kube/deployments.js';
import type { DeploymentObject, ObjectProblem } from '../core/kube/objects.js';
import { parseMeshConfig } from '../core/node-config/file.js';
import { decodeMessage, WireFormatError } from '../core/discovery/wire.js';
import { requestMatches, type MatchInput, type RequestMatch } from '../core/model/routes.js';
import { pathMatches } from '../core/authz/match.js';
import { readSocks5Request, Socks5Error } from '../ztunnel/socks5.js';
import { parseNetConf } from '../cni-plugin/cni/spec.js';
import { CniError } from '../cni-plugin/cni/errors.js';

/** What an input did at the boundary (a hang or an exception is decided by the runner). */
export interface EntryResult {
  readonly outcome: 'accepted' | 'clean';
  /** The first problem or the error message, for the findings file. */
  readonly detail?: string;
}

/** A request the waypoint matches (the `matchers` entry). */
export interface FuzzRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly query: string;
}

/** The input of each entry, as it travels to the worker (JSON-serialisable). */
export interface EntryInputs {
  manifests: string;
  meshConfig: string;
  discovery: string;
  /** Base64 of the bytes a SOCKS5 client sends, then it half-closes. */
  socks5: string;
  cni: string;
  matchers: { readonly manifest: string; readonly requests: readonly FuzzRequest[] };
}
export type EntryName = keyof EntryInputs;
export const ENTRY_NAMES: readonly EntryName[] = ['manifests', 'meshConfig', 'discovery', 'socks5', 'cni', 'matchers'];

/** Where each entry's documented failure comes from (docs/fuzz.md repeats it). */
export const DOCUMENTED: Readonly<Record<EntryName, string>> = {
  manifests: 'ObjectProblem entries returned by parseManifests / ManifestStore.apply / ManifestConverter.convert',
  meshConfig: 'ConfigError (ERR_CONFIG_INVALID)',
  discovery: 'WireFormatError (ERR_DISCOVERY_WIRE); an unknown message type decodes to undefined',
  socks5: 'Socks5Error (ERR_SOCKS5)',
  cni: 'CniError (ERR_CNI_*)',
  matchers: 'ObjectProblem entries for the config; the matchers themselves return a boolean and never throw',
};

/** The nodes the conversion schedules pods on (the lab's two-node layout). */
const NODES = [
  { name: 'node-a', ztunnelAddress: '127.0.0.2', hbonePort: 15008 },
  { name: 'node-b', ztunnelAddress: '127.0.0.3', hbonePort: 15008 },
];

const errors = (ps: readonly ObjectProblem[]) => ps.filter((p) => p.severity === 'error');
const first = (ps: readonly ObjectProblem[]) => (ps[0] ? `${ps[0].object}: ${ps[0].field}: ${ps[0].message}` : undefined);

function withDetail(outcome: EntryResult['outcome'], detail: string | undefined): EntryResult {
  return detail === undefined ? { outcome } : { outcome, detail: detail.slice(0, 300) };
}

/** The lab / control plane: parse, store, expand Deployments (lab), convert. */
function runManifests(text: string): EntryResult {
  const parsed = parseManifests(text, 'fuzz.yaml');
  const store = new ManifestStore();
  const change = store.apply(parsed.objects);
  const problems = [...parsed.problems, ...change.problems];
  // The lab turns each Deployment into its pods and parses them like any applied Pod.
  for (const o of store.sortedObjects()) {
    if (o.kind !== 'Deployment') continue;
    for (const pod of podsForDeployment(o as DeploymentObject)) problems.push(...parseObject(pod, 'fuzz.yaml#deployment').problems);
  }
  const result = new ManifestConverter().convert({ objects: store.sortedObjects(), sorted: true, nodes: NODES, trustDomain: 'cluster.local' });
  problems.push(...result.problems);
  const bad = errors(problems);
  return bad.length > 0 ? withDetail('clean', first(bad)) : { outcome: 'accepted' };
}

function runMeshConfig(text: string): EntryResult {
  try {
    parseMeshConfig(text, 'fuzz.yaml');
    return { outcome: 'accepted' };
  } catch (e) {
    if (e instanceof ConfigError) return withDetail('clean', e.problems[0]);
    throw e;
  }
}

function runDiscovery(line: string): EntryResult {
  try {
    const m = decodeMessage(line);
    return m === undefined ? { outcome: 'clean', detail: 'unknown message type (ignored)' } : { outcome: 'accepted' };
  } catch (e) {
    if (e instanceof WireFormatError) return withDetail('clean', e.message);
    throw e;
  }
}

function runCni(stdin: string): EntryResult {
  try {
    parseNetConf(stdin);
    return { outcome: 'accepted' };
  } catch (e) {
    if (e instanceof CniError) return withDetail('clean', e.message);
    throw e;
  }
}

/**
 * A real loopback TCP pair per input: the client writes the bytes and half-closes, the server side
 * runs the parser. The listener is made once per process.
 */
let socksServer: Promise<{ server: Server; next: () => Promise<Socket> }> | undefined;
function socksListener(host: string): Promise<{ server: Server; next: () => Promise<Socket> }> {
  socksServer ??= (async () => {
    const waiting: ((s: Socket) => void)[] = [];
    const ready: Socket[] = [];
    const server = createServer({ pauseOnConnect: false }, (s) => {
      const w = waiting.shift();
      if (w) w(s);
      else ready.push(s);
    });
    server.listen(0, host);
    await once(server, 'listening');
    server.unref();
    const next = () => new Promise<Socket>((resolve) => (ready.length > 0 ? resolve(ready.shift()!) : waiting.push(resolve)));
    return { server, next };
  })();
  return socksServer;
}

async function runSocks5(b64: string, host: string): Promise<EntryResult> {
  const { server, next } = await socksListener(host);
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('invariant: the socks5 listener has a TCP address');
  const accepted = next();
  const client = connect(addr.port, addr.address);
  client.on('error', () => {}); // the parser may reset the connection; that is its answer
  client.on('data', () => {}); // replies are read and dropped
  await once(client, 'connect');
  const server_ = await accepted;
  server_.on('error', () => {});
  const parsed = readSocks5Request(server_, 1500);
  client.end(Buffer.from(b64, 'base64'));
  try {
    const target = await parsed;
    return { outcome: 'accepted', detail: `${JSON.stringify(target.host)}:${target.port}` };
  } catch (e) {
    if (e instanceof Socks5Error) return withDetail('clean', e.message);
    throw e;
  } finally {
    client.destroy();
    server_.destroy();
  }
}

/** Every object under `v` shaped like a `RequestMatch` (routes of every kind share it). */
function requestMatchesIn(v: unknown, out: RequestMatch[] = [], seen = new Set<unknown>()): RequestMatch[] {
  if (v === null || typeof v !== 'object' || seen.has(v)) return out;
  seen.add(v);
  if (v instanceof Map) {
    for (const x of v.values()) requestMatchesIn(x, out, seen);
    return out;
  }
  const o = v as Record<string, unknown>;
  if (Array.isArray(o.headers) && Array.isArray(o.queryParams)) out.push(o as unknown as RequestMatch);
  for (const x of Object.values(o)) requestMatchesIn(x, out, seen);
  return out;
}

/** Every AuthorizationPolicy path pattern (`paths`, `notPaths`) under `v`. */
function pathPatternsIn(v: unknown, out: string[] = [], seen = new Set<unknown>()): string[] {
  if (v === null || typeof v !== 'object' || seen.has(v)) return out;
  seen.add(v);
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if ((k === 'paths' || k === 'notPaths') && Array.isArray(x)) out.push(...x.filter((s): s is string => typeof s === 'string'));
    else pathPatternsIn(x, out, seen);
  }
  return out;
}

/** The waypoint's request-time matchers over whatever route/policy config the parser accepted. */
function runMatchers(input: EntryInputs['matchers']): EntryResult {
  const parsed = parseManifests(input.manifest, 'fuzz.yaml');
  const bad = errors(parsed.problems);
  const matches: RequestMatch[] = [];
  const patterns: string[] = [];
  for (const o of parsed.objects) {
    if (o.kind === 'HTTPRoute') requestMatchesIn(o.route, matches);
    else if (o.kind === 'VirtualService') requestMatchesIn(o.virtualService, matches);
    else if (o.kind === 'AuthorizationPolicy' && o.waypointPolicy) pathPatternsIn(o.waypointPolicy, patterns);
  }
  let hits = 0;
  for (const r of input.requests) {
    const req: MatchInput = { method: r.method, path: r.path, headers: r.headers, query: new URLSearchParams(r.query) };
    for (const m of matches) if (requestMatches(m, req)) hits++;
    for (const p of patterns) if (pathMatches(p, r.path)) hits++;
  }
  if (bad.length > 0) return withDetail('clean', first(bad));
  return { outcome: 'accepted', detail: `${matches.length} matches, ${patterns.length} path patterns, ${hits} hits` };
}

/** Runs one input through `entry`. Throws whatever escapes the boundary. */
export async function runEntry(entry: EntryName, input: unknown, opts: { socksHost?: string } = {}): Promise<EntryResult> {
  switch (entry) {
    case 'manifests':
      return runManifests(input as string);
    case 'meshConfig':
      return runMeshConfig(input as string);
    case 'discovery':
      return runDiscovery(input as string);
    case 'socks5':
      return runSocks5(input as string, opts.socksHost ?? '127.0.0.1');
    case 'cni':
      return runCni(input as string);
    case 'matchers':
      return runMatchers(input as EntryInputs['matchers']);
  }
}
