/**
 * The lab's public surface: what `ambientctl` (cli/lab.ts, cli/lab-backend.ts, cli/target.ts) may
 * use. The boundary check (.dependency-cruiser.cjs) holds the cli to this file, so the lab's
 * modules can be reorganised without touching the cli, and what the cli depends on is listed here.
 */
export { apply, remove } from './apply.js';
export { down, ensureProcesses, leftovers, netnsPath, requireLab, statusTable, table, up } from './cluster.js';
export { DIST } from './components.js';
export { runDemo } from './demo.js';
export { exec, get, logs } from './get.js';
export { labelNamespace } from './label.js';
export { defaultPaths, DEFAULT_PREFIX, readState, type LabPaths, type LabState } from './state.js';
export { alive, getInNetns } from './sys.js';
