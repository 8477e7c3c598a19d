#!/usr/bin/env node
/**
 * `node dist/tools/crds/cli.js [CHART_DIR]`: refreshes the base chart's CRDs from upstream at the
 * versions pinned in tools/crds/fetch.ts (charts/base/crds/README.md says when and how).
 */
import { fetchCrds } from './fetch.js';

fetchCrds(process.argv[2] ?? 'charts/base', (line) => process.stdout.write(`${line}\n`)).catch((err: Error) => {
  process.stderr.write(`fetch-crds: ${err.message}\n`);
  process.exit(1);
});
