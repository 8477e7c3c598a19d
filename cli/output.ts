/** How commands print: a table by default (`-o short` as istioctl says, or `table`), `-o json|yaml` on request. */
import * as yaml from 'js-yaml';
import { table } from '../lab/index.js';
import { CLI_ERROR_CODES, CliError } from './errors.js';

export type OutputFormat = 'table' | 'json' | 'yaml';

/**
 * Reads `-o`: `json`, `yaml`, or the table (`table`, `short`, or absent).
 *
 * @example
 * parseOutput('json') // 'json'
 * parseOutput(undefined) // 'table'
 */
export function parseOutput(value: string | undefined): OutputFormat {
  if (value === undefined || value === 'short' || value === 'table') return 'table';
  if (value === 'json' || value === 'yaml') return value;
  throw new CliError(CLI_ERROR_CODES.BAD_FLAG, `-o ${value}: use json, yaml, or short (the table, the default)`);
}

export type Row = ReadonlyArray<string | number>;

/**
 * The text of a result: `header` + `rows` as a table, or `data` as JSON/YAML. An empty table prints
 * `empty` instead (istioctl's "No waypoints found.").
 *
 * @example
 * render('table', { header: ['NAME'], rows: [['waypoint']], data: [{ name: 'waypoint' }] })
 */
export function render(format: OutputFormat, r: { header: Row; rows: readonly Row[]; data: unknown; empty?: string }): string {
  if (format === 'json') return JSON.stringify(r.data, null, 2);
  if (format === 'yaml') return yaml.dump(r.data, { noRefs: true, lineWidth: -1 }).trimEnd();
  if (r.rows.length === 0 && r.empty !== undefined) return r.empty;
  return table([r.header, ...r.rows]);
}
