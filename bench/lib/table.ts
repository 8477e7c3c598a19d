/** One column of a text table. */
export interface Column {
  readonly header: string;
  readonly align: 'left' | 'right';
}

/**
 * Formats rows as an aligned text table with a header and a rule under it.
 *
 * @example
 * formatTable([{ header: 'path', align: 'left' }, { header: 'Gbit/s', align: 'right' }], [['direct', '41.2']]);
 */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => pad(cells[i] ?? '', widths[i] as number, c.align))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(columns.map((c) => c.header)), rule, ...rows.map(line)].join('\n');
}

function pad(text: string, width: number, align: Column['align']): string {
  return align === 'left' ? text.padEnd(width) : text.padStart(width);
}
