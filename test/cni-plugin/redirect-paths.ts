/**
 * The four pod → pod paths on one node of the lab, with and without the eBPF redirection, set up
 * in one cluster. Shared by the correctness test (test/cni-plugin/redirect-paths.test.ts: each path
 * goes where it should) and the benchmark (bench/cni-redirect.ts: what each path costs, against
 * `direct` in the same run). Root only.
 *
 *   direct              a pod outside the mesh → the destination pod
 *   redirect → proxy    an enrolled pod, redirected to a 20-line Node passthrough in the ztunnel
 *                       cgroup (fixtures/passthrough.mjs): the cost of the redirect itself
 *   redirect → ztunnel  the same, with the real ztunnel passing plain TCP through (destination
 *                       outside the mesh)
 *   ztunnel HBONE       enrolled pod → meshed pod on the same node: ztunnel → HBONE (TLS, HTTP/2)
 *                       → ztunnel → pod
 *
 * Each destination pod listens on 8080 (hello, echo) and 9000 (a sink for throughput).
 */
import { fileURLToPath } from 'node:url';
import type { PodStatus } from '../../cni-plugin/api.js';
import { Cluster, OUTBOUND_PORT } from './cluster.js';
import type { Lab, PodApp } from './lab.js';

const PASSTHROUGH = fileURLToPath(new URL('./fixtures/passthrough.mjs', import.meta.url));
const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };

export const HELLO_PORT = 8080;
export const SINK_PORT = 9000;

export interface RedirectPath {
  readonly name: 'direct' | 'redirect → proxy' | 'redirect → ztunnel' | 'ztunnel HBONE';
  /** The client pod's app. */
  readonly from: PodApp;
  /** The destination pod's address. */
  readonly host: string;
  /** The address the destination must see as its peer on this path. */
  readonly expectedPeer: string;
}

export interface RedirectPathsHooks {
  /** Once the pods exist: the enrolled client's and the plain client's status. */
  ready(status: { meshed: PodStatus | undefined; plain: PodStatus | undefined }): void;
  /** Each path in turn, while it is set up (the passthrough runs only during its own path). */
  path(p: RedirectPath): Promise<void>;
}

/** Builds the one-node cluster in `lab` and walks the four paths in order. */
export async function walkRedirectPaths(lab: Lab, hooks: RedirectPathsHooks): Promise<void> {
  const cluster = await Cluster.create(lab, ['node-a'], { meshed: AMBIENT, plain: {}, dst: {}, 'dst-mesh': AMBIENT });
  const n = cluster.node('node-a');
  await cluster.startAgent(n);
  const meshed = await cluster.addPod('node-a', 'meshed', 'client');
  const plain = await cluster.addPod('node-a', 'plain', 'client');
  const dst = await cluster.addPod('node-a', 'dst', 'server');
  const dstMesh = await cluster.addPod('node-a', 'dst-mesh', 'server');
  await cluster.sync();
  for (const d of [dst, dstMesh]) {
    await d.app.listen(HELLO_PORT);
    await d.app.listen(SINK_PORT, 'sink');
  }
  hooks.ready({ meshed: await cluster.podStatus(meshed), plain: await cluster.podStatus(plain) });

  await hooks.path({ name: 'direct', from: plain.app, host: dst.ip, expectedPeer: plain.ip });

  const proxy = lab.spawn('passthrough', [process.execPath, PASSTHROUGH, n.ip, String(OUTBOUND_PORT)], { cgroup: n.ztunnelCgroup, netns: n.netns.path });
  await proxy.waitFor(/passthrough ready/);
  await hooks.path({ name: 'redirect → proxy', from: meshed.app, host: dst.ip, expectedPeer: n.gateway });
  await proxy.stop();

  await cluster.startZtunnel(n);
  await hooks.path({ name: 'redirect → ztunnel', from: meshed.app, host: dst.ip, expectedPeer: n.ip });
  await hooks.path({ name: 'ztunnel HBONE', from: meshed.app, host: dstMesh.ip, expectedPeer: n.ip });
}

/** The destination's view of a connection from `from` to `host`: the peer address it saw. */
export async function peerSeen(from: PodApp, host: string): Promise<string> {
  const probe = await from.connect(host, HELLO_PORT);
  return probe.hello?.split(' ')[1]?.split(':')[0] ?? '';
}
