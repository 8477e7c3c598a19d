#!/usr/bin/env node
/**
 * `lab/waypoint`: the waypoint as the lab's gateway controller runs it (lab/waypoints.ts). Fills
 * in what a cluster's pod spec would: its address from the pod IP, its node's token (a cluster
 * uses the pod's projected service-account token instead), and an admin listener on the pod IP so
 * `ambientctl` can read `/config_dump` from the node; then runs the waypoint's entry point
 * (lab/components.ts) in this process, as a container's command would: the lab never imports a
 * component's modules, only starts its built entry point.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WAYPOINT_MAIN } from '../components.js';

const env = process.env;
const missing = ['POD_IP', 'NODE_NAME', 'LAB_TOKENS_DIR'].filter((k) => !env[k]);
if (missing.length > 0) {
  process.stderr.write(`lab/waypoint: ${missing.join(', ')} not set; this image runs in lab pods only\n`);
  process.exit(2);
}
env['WAYPOINT_ADDRESS'] ??= env['POD_IP'];
env['ADMIN_ADDRESS'] ??= env['POD_IP'];
env['NODE_TOKEN_FILE'] ??= join(env['LAB_TOKENS_DIR']!, `${env['NODE_NAME']}.token`);
await import(pathToFileURL(WAYPOINT_MAIN).href);
