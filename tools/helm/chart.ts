/**
 * Renders a Helm 3 chart directory the way `helm template` does, for machines without helm:
 * Chart.yaml checked, values merged (values.yaml, then `-f` files, then `--set`) and validated
 * against values.schema.json, every file of templates/ parsed into one namespace, each
 * non-partial template executed with .Values/.Release/.Chart/.Capabilities/.Template/.Files,
 * the output split into YAML documents (empty ones dropped), each checked to parse, and sorted
 * in Helm's install order. CRDs in crds/ are returned apart, unrendered, as Helm installs them.
 * Subcharts (charts/) are not supported and are refused.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { load, loadAll, YAML11_SCHEMA } from 'js-yaml';
import { Engine } from './engine.js';
import { ChartError, ValuesSchemaError } from './errors.js';
import { helmFuncs } from './funcs.js';
import { parseTemplate } from './parse.js';
import { ValuesSchema } from './schema.js';
import { coalesce, parseSetArg, parseValuesYaml } from './values.js';
import { GoMethod, isMap, type GoMap } from './values-model.js';

export interface RenderInputs {
  readonly chartDir: string;
  readonly releaseName: string;
  readonly namespace: string;
  /** Values files (`-f`), in order; each is a path. */
  readonly valueFiles?: readonly string[];
  /** Values given inline, as if from a file, after the files. */
  readonly values?: readonly GoMap[];
  /** `--set` arguments, in order, after the files. */
  readonly set?: readonly string[];
  /** `--set-string` arguments, after `--set`. */
  readonly setString?: readonly string[];
  /** `.Capabilities.KubeVersion.Version` (default v1.31.0). */
  readonly kubeVersion?: string;
  /** Extra API versions `.Capabilities.APIVersions.Has` knows besides the built-in ones. */
  readonly apiVersions?: readonly string[];
  readonly isUpgrade?: boolean;
}

/** One rendered document. */
export interface Manifest {
  /** `chart/templates/file.yaml` (or `chart/crds/file.yaml`). */
  readonly source: string;
  readonly text: string;
  /** The parsed document. */
  readonly object: GoMap;
}

export interface Rendered {
  readonly chart: ChartMeta;
  readonly values: GoMap;
  readonly crds: readonly Manifest[];
  readonly manifests: readonly Manifest[];
}

export interface ChartMeta {
  readonly name: string;
  readonly version: string;
  readonly appVersion?: string;
  readonly kubeVersion?: string;
  readonly raw: GoMap;
}

/** Helm's install order (pkg/releaseutil/kind_sorter.go); unknown kinds go last. */
export const INSTALL_ORDER = [
  'PriorityClass', 'Namespace', 'NetworkPolicy', 'ResourceQuota', 'LimitRange', 'PodSecurityPolicy', 'PodDisruptionBudget',
  'ServiceAccount', 'Secret', 'SecretList', 'ConfigMap', 'StorageClass', 'PersistentVolume', 'PersistentVolumeClaim',
  'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleList', 'ClusterRoleBinding', 'ClusterRoleBindingList', 'Role',
  'RoleList', 'RoleBinding', 'RoleBindingList', 'Service', 'DaemonSet', 'Pod', 'ReplicationController', 'ReplicaSet',
  'Deployment', 'HorizontalPodAutoscaler', 'StatefulSet', 'Job', 'CronJob', 'IngressClass', 'Ingress', 'APIService',
  'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration',
];

/** API versions a 1.31 cluster serves, for `.Capabilities.APIVersions.Has`. */
const BUILTIN_API_VERSIONS = [
  'v1', 'apps/v1', 'batch/v1', 'policy/v1', 'rbac.authorization.k8s.io/v1', 'networking.k8s.io/v1', 'discovery.k8s.io/v1',
  'coordination.k8s.io/v1', 'apiextensions.k8s.io/v1', 'admissionregistration.k8s.io/v1', 'authentication.k8s.io/v1',
  'scheduling.k8s.io/v1', 'storage.k8s.io/v1', 'autoscaling/v2',
];

/** Reads and checks Chart.yaml. */
export function loadChartMeta(chartDir: string): ChartMeta {
  const file = join(chartDir, 'Chart.yaml');
  if (!existsSync(file)) throw new ChartError(file, 'not found: a chart directory needs a Chart.yaml');
  let raw: unknown;
  try {
    raw = load(readFileSync(file, 'utf8'), { schema: YAML11_SCHEMA, filename: file });
  } catch (e) {
    throw new ChartError(file, `not valid YAML: ${(e as Error).message}`);
  }
  if (!isMap(raw)) throw new ChartError(file, 'must be a YAML map');
  const problems: string[] = [];
  if (raw['apiVersion'] !== 'v2') problems.push(`apiVersion must be v2 (Helm 3), got ${JSON.stringify(raw['apiVersion'])}`);
  if (typeof raw['name'] !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(raw['name'])) problems.push('name must be a lowercase DNS label');
  if (typeof raw['version'] !== 'string' || !/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.test(raw['version'])) problems.push('version must be a SemVer 2 string (quote it)');
  if (raw['appVersion'] !== undefined && typeof raw['appVersion'] !== 'string') problems.push('appVersion must be a string (quote it)');
  if (raw['dependencies'] !== undefined) problems.push('dependencies (subcharts) are not supported by this renderer');
  if (raw['type'] !== undefined && raw['type'] !== 'application') problems.push(`type ${JSON.stringify(raw['type'])}: only application charts are rendered`);
  if (problems.length > 0) throw new ChartError(file, problems.join('; '));
  return {
    name: raw['name'] as string,
    version: raw['version'] as string,
    ...(typeof raw['appVersion'] === 'string' ? { appVersion: raw['appVersion'] } : {}),
    ...(typeof raw['kubeVersion'] === 'string' ? { kubeVersion: raw['kubeVersion'] } : {}),
    raw,
  };
}

/**
 * The values a release would get: values.yaml, the files, inline values, `--set`, `--set-string`,
 * checked against values.schema.json when the chart has one.
 *
 * @throws ValuesSchemaError listing every violation.
 */
export function chartValues(inputs: Pick<RenderInputs, 'chartDir' | 'valueFiles' | 'values' | 'set' | 'setString'>): GoMap {
  const meta = loadChartMeta(inputs.chartDir);
  const defaultsFile = join(inputs.chartDir, 'values.yaml');
  let values: GoMap = existsSync(defaultsFile) ? parseValuesYaml(readFileSync(defaultsFile, 'utf8'), defaultsFile) : {};
  for (const f of inputs.valueFiles ?? []) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new ChartError(f, `cannot read values file: ${(e as Error).message}`);
    }
    values = coalesce(values, parseValuesYaml(text, f));
  }
  for (const v of inputs.values ?? []) values = coalesce(values, v);
  for (const s of inputs.set ?? []) values = coalesce(values, parseSetArg(s));
  for (const s of inputs.setString ?? []) values = coalesce(values, parseSetArg(s, true));
  const schemaFile = join(inputs.chartDir, 'values.schema.json');
  if (existsSync(schemaFile)) {
    let schema: unknown;
    try {
      schema = JSON.parse(readFileSync(schemaFile, 'utf8'));
    } catch (e) {
      throw new ChartError(schemaFile, `not valid JSON: ${(e as Error).message}`);
    }
    const problems = ValuesSchema.load(schema, schemaFile).validate(values);
    if (problems.length > 0) throw new ValuesSchemaError(meta.name, problems);
  }
  return values;
}

/**
 * Renders a chart as `helm template RELEASE CHART -n NAMESPACE -f ... --set ...` would.
 *
 * @example
 * const r = renderChart({ chartDir: 'charts/ztunnel', releaseName: 'ztunnel', namespace: 'istio-system' });
 * r.manifests.map((m) => m.object.kind); // ['ServiceAccount', 'DaemonSet']
 */
export function renderChart(inputs: RenderInputs): Rendered {
  const chart = loadChartMeta(inputs.chartDir);
  if (existsSync(join(inputs.chartDir, 'charts')) && listFiles(join(inputs.chartDir, 'charts')).length > 0) {
    throw new ChartError(join(inputs.chartDir, 'charts'), 'subcharts are not supported by this renderer');
  }
  const values = chartValues(inputs);
  const engine = new Engine({ funcs: helmFuncs() });
  const templatesDir = join(inputs.chartDir, 'templates');
  const templateFiles = existsSync(templatesDir) ? listFiles(templatesDir).sort() : [];
  const names = new Map<string, string>();
  for (const f of templateFiles) {
    const name = `${chart.name}/${relative(inputs.chartDir, f).split('\\').join('/')}`;
    names.set(name, f);
    engine.add(parseTemplate(name, readFileSync(f, 'utf8')));
  }
  const apiVersions = new Set([...BUILTIN_API_VERSIONS, ...(inputs.apiVersions ?? [])]);
  const kubeVersion = inputs.kubeVersion ?? 'v1.31.0';
  const kv = /^v?(\d+)\.(\d+)/.exec(kubeVersion);
  if (!kv) throw new ChartError('kubeVersion', `${JSON.stringify(kubeVersion)} is not vMAJOR.MINOR.PATCH`);
  const files = chartFiles(inputs.chartDir);
  const top: GoMap = {
    Values: values,
    Release: {
      Name: inputs.releaseName,
      Namespace: inputs.namespace,
      Service: 'Helm',
      IsInstall: !inputs.isUpgrade,
      IsUpgrade: Boolean(inputs.isUpgrade),
      Revision: 1,
    },
    Chart: {
      Name: chart.name,
      Version: chart.version,
      AppVersion: chart.appVersion ?? '',
      Description: chart.raw['description'] ?? '',
      Type: 'application',
    },
    Capabilities: {
      KubeVersion: { Version: kubeVersion, Major: kv[1], Minor: kv[2], GitVersion: kubeVersion },
      APIVersions: { Has: new GoMethod('Capabilities.APIVersions.Has', (v) => apiVersions.has(String(v))) },
      HelmVersion: { Version: 'v3.16.0' },
    },
    Files: {
      Get: new GoMethod('Files.Get', (p) => files.get(String(p)) ?? ''),
    },
  };
  const manifests: Manifest[] = [];
  for (const [name] of names) {
    const base = basename(name);
    if (base.startsWith('_') || base === 'NOTES.txt') continue;
    const data = { ...top, Template: { Name: name, BasePath: `${chart.name}/templates` } };
    const out = engine.execute(name, data).replaceAll('<no value>', '');
    manifests.push(...splitDocuments(name, out));
  }
  manifests.sort((a, b) => kindRank(a.object) - kindRank(b.object) || kindName(a.object).localeCompare(kindName(b.object)) * (kindRank(a.object) === INSTALL_ORDER.length ? 1 : 0));
  const crdsDir = join(inputs.chartDir, 'crds');
  const crds: Manifest[] = [];
  if (existsSync(crdsDir)) {
    for (const f of listFiles(crdsDir).filter((p) => /\.(ya?ml|json)$/.test(p)).sort()) {
      crds.push(...splitDocuments(`${chart.name}/${relative(inputs.chartDir, f)}`, readFileSync(f, 'utf8')));
    }
  }
  return { chart, values, crds, manifests };
}

/** Output in `helm template` form: every document after `---` and a `# Source:` line. */
export function formatRendered(r: Rendered, opts: { includeCrds?: boolean } = {}): string {
  const docs = [...(opts.includeCrds ? r.crds : []), ...r.manifests];
  return docs.map((d) => `---\n# Source: ${d.source}\n${d.text.replace(/\n*$/, '')}\n`).join('');
}

/** Splits a template's output on `---` lines, as Helm does, dropping documents with no content. */
export function splitDocuments(source: string, text: string): Manifest[] {
  const out: Manifest[] = [];
  const parts = text.split(/(?:^|\r?\n)---[^\n]*(?=\r?\n|$)/);
  for (const part of parts) {
    const body = part.replace(/^\r?\n/, '');
    if (body.trim() === '') continue;
    let docs: unknown[];
    try {
      docs = loadAll(body, { schema: YAML11_SCHEMA, filename: source });
    } catch (e) {
      throw new ChartError(source, `YAML parse error in rendered output: ${(e as Error).message}\n--- rendered document ---\n${numbered(body)}`);
    }
    const doc = docs.find((d) => d !== null && d !== undefined);
    if (doc === undefined) continue;
    if (!isMap(doc)) throw new ChartError(source, `rendered document is not a YAML map:\n${numbered(body)}`);
    if (typeof doc['apiVersion'] !== 'string' || typeof doc['kind'] !== 'string') {
      throw new ChartError(source, `rendered document lacks apiVersion or kind:\n${numbered(body)}`);
    }
    out.push({ source, text: body, object: doc });
  }
  return out;
}

function numbered(text: string): string {
  return text
    .split('\n')
    .map((l, i) => `${String(i + 1).padStart(4)} | ${l}`)
    .join('\n');
}

function kindName(o: GoMap): string {
  return String(o['kind']);
}

function kindRank(o: GoMap): number {
  const i = INSTALL_ORDER.indexOf(kindName(o));
  return i === -1 ? INSTALL_ORDER.length : i;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

/** Files a template may read with `.Files.Get`: everything in the chart except templates/ and Chart.yaml/values. */
function chartFiles(chartDir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of listFiles(chartDir)) {
    const rel = relative(chartDir, f).split('\\').join('/');
    if (rel.startsWith('templates/') || rel === 'Chart.yaml' || rel === 'values.yaml' || rel === 'values.schema.json') continue;
    out.set(rel, readFileSync(f, 'utf8'));
  }
  return out;
}
