#!/usr/bin/env node
/**
 * `node dist/tools/crds/cli.js [CHART_DIR]` (default charts/base): writes the chart's crds/*.yaml
 * from tools/crds/table.ts (tools/crds/generate.ts; charts/base/crds/README.md says when).
 */
import { writeCrds } from './generate.js';

writeCrds(process.argv[2] ?? 'charts/base', (line) => process.stdout.write(`${line}\n`)).catch((err: Error) => {
  process.stderr.write(`crds: ${err.message}\n`);
  process.exit(1);
});
