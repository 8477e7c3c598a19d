import { NATIVE } from '../client.js';
import type { PathDriver } from './types.js';

/** client → server, no proxy: the floor every other path is compared with. */
export const direct: PathDriver = {
  name: 'direct',
  description: 'client -> server',
  start: async (ctx) => ({
    launcher: NATIVE,
    iperf: ctx.origin.iperf,
    http: ctx.origin.http,
    proxies: [],
    stop: async () => {},
  }),
};
