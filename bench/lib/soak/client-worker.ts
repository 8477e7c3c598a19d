/**
 * Worker-thread entry of the soak's users (workload.ts). The users get an event loop of their
 * own, so the harness's /proc sampling and metrics scrapes are not delayed by 10,000 sockets, and
 * the worker shares the harness's file-descriptor limit, which only the users use much of.
 *
 * Messages to the parent: `{ type: 'progress', progress }` every second, then `{ type: 'done',
 * stats }` once every connection is closed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runWorkload, type WorkloadConfig, type WorkloadProgress, type WorkloadStats } from './workload.js';

/** What the worker posts to its parent. */
export type WorkerMessage =
  | { readonly type: 'progress'; readonly progress: WorkloadProgress }
  | { readonly type: 'done'; readonly stats: WorkloadStats };

const port = parentPort;
if (port) {
  const post = (m: WorkerMessage): void => port.postMessage(m);
  void runWorkload(workerData as WorkloadConfig, (progress) => post({ type: 'progress', progress })).then((stats) =>
    post({ type: 'done', stats }),
  );
}
