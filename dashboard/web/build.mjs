// `npm run build`'s second step: bundles the page (dashboard/web/main.ts with cytoscape.js) with
// esbuild into dist/dashboard/web/, beside index.html and app.css, so nothing is fetched from a CDN
// at run time (clusters are often offline).
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const out = fileURLToPath(new URL('../../dist/dashboard/web/', import.meta.url));
await mkdir(out, { recursive: true });
await build({
  entryPoints: [`${here}main.ts`],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome110', 'firefox110', 'safari16'],
  outfile: `${out}app.js`,
  logLevel: 'warning',
});
for (const f of ['index.html', 'app.css']) await copyFile(`${here}${f}`, `${out}${f}`);
