/**
 * The node list: which nodes exist, where their ztunnel listens, and each node's bearer token.
 * The lab writes this file (one token per node); in a cluster, nodes come from the API server
 * and tokens are service-account tokens checked by TokenReview (another `Authenticator`).
 *
 * ```yaml
 * nodes:
 *   - name: node-a
 *     ztunnelAddress: 10.10.0.2
 *     hbonePort: 15008          # optional
 *     token: 0f3c...            # or tokenSha256: <hex of sha256(token)>
 * ```
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { YAMLException } from 'js-yaml';
import { loadYamlDocument } from '../core/validation/yaml.js';
import { ConfigError } from '../core/errors.js';
import { Problems, Uniq, field, keyPath, list, mapping, port, string } from '../core/validation/check.js';
import { SUBDOMAIN_RE, NAME_EXPECTED } from '../core/kube/names.js';
import { canonicalIp } from '../core/model/ip.js';
import { deepFreeze } from '../core/model/freeze.js';
import type { NodeInfo } from '../core/model/types.js';
import { PORTS } from '../core/hbone/constants.js';

/** The parsed node list. */
export interface NodeList {
  readonly nodes: readonly NodeInfo[];
  /** sha256(token) in hex → node name. */
  readonly tokens: ReadonlyMap<string, string>;
}

const NODE_KEYS = ['name', 'ztunnelAddress', 'hbonePort', 'token', 'tokenSha256'];
/** Tokens shorter than this are guessable; the lab generates 32 random bytes. */
export const MIN_TOKEN_LENGTH = 16;

/** sha256 of a token, hex: how tokens are compared (and may be stored). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Parses the node list; `source` names the file in messages.
 *
 * @throws ConfigError listing every problem.
 */
export function parseNodeList(text: string, source: string): NodeList {
  const p = new Problems();
  let doc: unknown;
  try {
    doc = loadYamlDocument(text, source);
  } catch (e) {
    throw new ConfigError(source, [e instanceof YAMLException ? `yaml syntax error: ${e.reason}` : String(e)]);
  }
  const top = mapping(p, '', doc, ['nodes'], 'a mapping {nodes: [...]}');
  const names = new Uniq(p, 'node name');
  const addrs = new Uniq(p, 'ztunnel address and hbonePort');
  const tokens = new Map<string, string>();
  const nodes =
    (top &&
      field(p, '', top, 'nodes', (v, q) =>
        list(p, q, v, (x, xq) => {
          const m = mapping(p, xq, x, NODE_KEYS);
          if (!m) return undefined;
          const before = p.size;
          const name = field(p, xq, m, 'name', (y, r) => string(p, r, y, NAME_EXPECTED, (s) => (SUBDOMAIN_RE.test(s) ? undefined : `${JSON.stringify(s)} is not ${NAME_EXPECTED}`)), { required: true, expected: NAME_EXPECTED });
          if (name !== undefined) names.check(name, keyPath(xq, 'name'));
          const ztunnelAddress = field(p, xq, m, 'ztunnelAddress', (y, r) => {
            const c = typeof y === 'string' ? canonicalIp(y) : undefined;
            if (c === undefined) p.add(r, `${JSON.stringify(y)} is not an IP address`);
            return c;
          }, { required: true, expected: "the IP address of the node's ztunnel" });
          const hbonePort = field(p, xq, m, 'hbonePort', (y, r) => port(p, r, y)) ?? PORTS.hbone;
          if (ztunnelAddress !== undefined) addrs.check(`${ztunnelAddress}:${hbonePort}`, keyPath(xq, 'ztunnelAddress'));
          const token = field(p, xq, m, 'token', (y, r) => string(p, r, y, 'a token', (s) => (s.length >= MIN_TOKEN_LENGTH ? undefined : `too short; use at least ${MIN_TOKEN_LENGTH} random characters`)));
          const digest = field(p, xq, m, 'tokenSha256', (y, r) => string(p, r, y, 'a sha256 in hex', (s) => (/^[0-9a-f]{64}$/.test(s) ? undefined : 'expected 64 lowercase hex digits')));
          if (token !== undefined && digest !== undefined) p.add(xq, 'set token or tokenSha256, not both');
          const d = token !== undefined ? tokenDigest(token) : digest;
          if (d !== undefined && name !== undefined) {
            if (tokens.has(d)) p.add(keyPath(xq, token !== undefined ? 'token' : 'tokenSha256'), `the same token as node ${tokens.get(d)}; every node needs its own`);
            else tokens.set(d, name);
          }
          if (p.size > before || name === undefined || ztunnelAddress === undefined) return undefined;
          return { name, ztunnelAddress, hbonePort };
        }),
      { required: true, expected: 'a list of nodes' })) ??
    [];
  if (p.size > 0) throw new ConfigError(source, p.list);
  return { nodes: deepFreeze(nodes), tokens };
}

/** Reads and parses the node list file. */
export async function readNodeList(path: string): Promise<NodeList> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(path, [`cannot read the file (${(e as NodeJS.ErrnoException).code ?? 'error'}); check NODES_FILE`]);
  }
  return parseNodeList(text, path);
}
