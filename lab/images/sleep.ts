#!/usr/bin/env node
/** `lab/sleep`: does nothing until stopped; a pod to `lab exec` into. */
setInterval(() => {}, 1 << 30);
process.once('SIGTERM', () => process.exit(0));
