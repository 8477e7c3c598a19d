/**
 * Errors of the chart renderer. Every message names the file (and line, where there is one) and
 * what failed, the way `helm template` would, so a chart author can go straight to the spot.
 */
import { MeshError } from '../../core/errors.js';

/** A template that does not parse: `file:line: what`. */
export class TemplateParseError extends MeshError {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, what: string) {
    super('ERR_HELM_TEMPLATE_PARSE', `${file}:${line}: ${what}`);
    this.file = file;
    this.line = line;
  }
}

/** A template that parsed but failed while executing: `file:line: at <action>: what`. */
export class TemplateExecError extends MeshError {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, action: string, what: string, options?: { cause?: unknown }) {
    super('ERR_HELM_TEMPLATE_EXEC', `${file}:${line}: executing at <${action}>: ${what}`, options);
    this.file = file;
    this.line = line;
  }
}

/** `required` or `fail` in a template: the chart's own message, with where it was raised. */
export class TemplateFailError extends MeshError {
  constructor(file: string, line: number, message: string) {
    super('ERR_HELM_TEMPLATE_FAIL', `${file}:${line}: ${message}`);
  }
}

/** The merged values break the chart's values.schema.json; `problems` lists every violation. */
export class ValuesSchemaError extends MeshError {
  readonly problems: readonly string[];
  constructor(chart: string, problems: readonly string[]) {
    super('ERR_HELM_VALUES_SCHEMA', `values don't meet the specifications of the schema in chart ${chart}:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** A values.schema.json that uses something this renderer does not implement, or is malformed. */
export class SchemaDefinitionError extends MeshError {
  constructor(file: string, path: string, what: string) {
    super('ERR_HELM_SCHEMA_DEFINITION', `${file}: ${path}: ${what}`);
  }
}

/** A values file or `--set` argument that cannot be read. */
export class ValuesInputError extends MeshError {
  constructor(source: string, what: string) {
    super('ERR_HELM_VALUES_INPUT', `${source}: ${what}`);
  }
}

/** A chart directory that is not a Helm 3 chart, or a rendered document that is not YAML. */
export class ChartError extends MeshError {
  constructor(file: string, what: string) {
    super('ERR_HELM_CHART', `${file}: ${what}`);
  }
}
