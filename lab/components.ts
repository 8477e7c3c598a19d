/**
 * The components the lab runs, by the path of their built entry point. The lab never imports a
 * component's modules (ARCHITECTURE.md, "Import boundaries"): it starts each one as a process, as
 * a node or a pod in a cluster would, so what the lab exercises is what an image runs. This is
 * the one place those paths are spelled.
 */
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whether this runs compiled (dist/lab/) or from source (lab/, in tests). */
export const REPO = ((): string => {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(dirname(here)) === 'dist' ? resolve(here, '..', '..') : resolve(here, '..');
})();
/** What the lab runs: this checkout's build (`npm run build`). */
export const DIST = join(REPO, 'dist');

/** `node <path>` runs the component; each reads its configuration from its environment. */
export const CONTROL_PLANE_MAIN = join(DIST, 'control-plane/main.js');
export const AGENT_MAIN = join(DIST, 'cni-plugin/agent/main.js');
export const ZTUNNEL_MAIN = join(DIST, 'ztunnel/main.js');
export const WAYPOINT_MAIN = join(DIST, 'waypoint/main.js');
/** The CNI plugin as the runtime execs it (a shell wrapper around dist/cni-plugin/plugin.js). */
export const CNI_WRAPPER = join(REPO, 'cni-plugin/bin/ambient-cni');
