/**
 * Used by `node dist/tools/crds/cli.js [CHART_DIR]` (default charts/base): downloads the upstream CRDs the mesh
 * reads, at the versions pinned below, and writes them into the base chart verbatim (byte for
 * byte as upstream publishes them; an Istio CRD is cut out of crd-all.gen.yaml at its `---`
 * lines, nothing else changes). It also writes crd-sources.json beside crds/: each file's URL, version and
 * SHA-256, which test/charts/charts.test.ts checks, so a hand edit of a CRD cannot pass unseen.
 * Needs access to raw.githubusercontent.com (this repository's own build machine has none).
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';

/** Gateway API standard channel release whose CRDs the base chart ships. */
export const GATEWAY_API_VERSION = 'v1.2.1';
/** Istio release whose CRDs the base chart ships. */
export const ISTIO_VERSION = '1.24.2';

export interface CrdSource {
  /** File name in charts/base/crds/. */
  readonly file: string;
  readonly url: string;
  readonly version: string;
  /** metadata.name of the CRD(s) taken from the download; all of them when it holds one CRD. */
  readonly names: readonly string[];
}

const gw = (plural: string): CrdSource => ({
  file: `gateway.networking.k8s.io_${plural}.yaml`,
  url: `https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/${GATEWAY_API_VERSION}/config/crd/standard/gateway.networking.k8s.io_${plural}.yaml`,
  version: `gateway-api ${GATEWAY_API_VERSION} (standard channel)`,
  names: [`${plural}.gateway.networking.k8s.io`],
});
const ISTIO_ALL = `https://raw.githubusercontent.com/istio/istio/${ISTIO_VERSION}/manifests/charts/base/files/crd-all.gen.yaml`;
const istio = (name: string): CrdSource => ({ file: `istio_${name}.yaml`, url: ISTIO_ALL, version: `istio ${ISTIO_VERSION}`, names: [name] });

/** Every CRD the control plane reads (docs/kubernetes.md), plus GatewayClass. */
export const CRD_SOURCES: readonly CrdSource[] = Object.freeze([
  gw('gatewayclasses'),
  gw('gateways'),
  gw('httproutes'),
  istio('authorizationpolicies.security.istio.io'),
  istio('peerauthentications.security.istio.io'),
  istio('virtualservices.networking.istio.io'),
  istio('destinationrules.networking.istio.io'),
]);

/** The CRD names the base chart must hold. */
export const REQUIRED_CRDS: readonly string[] = Object.freeze(CRD_SOURCES.flatMap((s) => s.names));

/**
 * The documents of a multi-document YAML text whose metadata.name is in `names`, each as its
 * exact text (split at `---` lines, as kubectl and Helm split), in the order of `names`.
 *
 * @throws Error naming each CRD the text does not hold.
 * @example
 * pickDocuments('---\nkind: A\nmetadata: {name: a}\n---\nkind: B\nmetadata: {name: b}\n', ['b']) // ['kind: B\nmetadata: {name: b}\n']
 */
export function pickDocuments(text: string, names: readonly string[]): string[] {
  const found = new Map<string, string>();
  for (const part of text.split(/^---[ \t]*\r?\n/m)) {
    const docs = loadAll(part).filter((d) => d !== null && d !== undefined) as Array<{ metadata?: { name?: unknown } }>;
    const name = docs[0]?.metadata?.name;
    if (typeof name === 'string' && names.includes(name)) found.set(name, part);
  }
  const missing = names.filter((n) => !found.has(n));
  if (missing.length > 0) throw new Error(`the download holds no CustomResourceDefinition named ${missing.join(', ')}`);
  return names.map((n) => found.get(n)!);
}

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** Where fetchCrds records each file's URL, version and SHA-256 (outside crds/: Helm would load a .json there as a manifest). */
export const SOURCES_FILE = 'crd-sources.json';

export interface RecordedSource {
  readonly url: string;
  readonly version: string;
  readonly sha256: string;
}

/**
 * Downloads every CRD of CRD_SOURCES into `chartDir`/crds and records them in `chartDir`/crd-sources.json.
 *
 * @example
 * await fetchCrds('charts/base');
 */
export async function fetchCrds(chartDir: string, log: (line: string) => void = () => undefined): Promise<void> {
  const out = join(chartDir, 'crds');
  await mkdir(out, { recursive: true });
  const downloads = new Map<string, string>();
  const sources: Record<string, RecordedSource> = {};
  for (const s of CRD_SOURCES) {
    let text = downloads.get(s.url);
    if (text === undefined) {
      const res = await fetch(s.url);
      if (!res.ok) throw new Error(`GET ${s.url}: ${res.status} ${res.statusText}; check the pinned version exists`);
      text = await res.text();
      downloads.set(s.url, text);
    }
    const body = s.url === ISTIO_ALL ? pickDocuments(text, s.names).join('---\n') : text;
    await writeFile(join(out, s.file), body);
    sources[s.file] = { url: s.url, version: s.version, sha256: sha256(body) };
    log(`${s.file}  ${sha256(body)}  ${s.version}`);
  }
  await writeFile(join(chartDir, SOURCES_FILE), `${JSON.stringify(sources, null, 2)}\n`);
}
