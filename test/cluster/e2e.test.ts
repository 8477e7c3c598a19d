/**
 * The mesh on a real Kubernetes: a two-node 1.20.2 cluster from cluster/ (real etcd, API server,
 * kubelets, containerd + runc, kube-proxy, Debian's CNI plugins; docs/real-cluster.md), the image
 * without Docker, and README.md's "Install in a cluster" blocks run verbatim. Then what a user does
 * and expects: running pods enrolled by a namespace label without a restart, HBONE mTLS between the
 * nodes seen on the wire, a pod started later enrolled by the CNI ADD the kubelet drives, a waypoint
 * with an HTTPRoute split, a VirtualService fault and a DENY policy, statuses on the objects,
 * ztunnel-config through a real port-forward, a ztunnel rollout under load, and an uninstall that
 * leaves the pods talking in plaintext with nothing attached.
 *
 * Root only (network and mount namespaces, cgroups, containerd). The first run on a machine builds
 * Kubernetes from source (7-9 minutes, cached in /var/cache/ambient-mesh); later runs start the
 * cluster in about 30 s. The cluster is removed at the end, even on failure (AMC_KEEP=1 keeps it
 * for inspection; `cluster/down` removes it).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { agentState, BridgeCapture, CLUSTER, clusterEnv, commandsOf, LOAD_SCRIPT, readmeBlocks, REQUESTS_SCRIPT, ROOT, sh, until } from './real-cluster.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root: it runs a real Kubernetes cluster (network and mount namespaces, cgroups, containerd)' : false;

// Building Kubernetes on a fresh machine takes most of this; the rest is minutes.
t.setTimeout(40 * 60_000);

interface Reply {
  status?: number;
  body?: string;
  error?: string;
}

t.test('the mesh on a real two-node Kubernetes, installed as README.md says', { skip: notRoot }, async (t) => {
  const blocks = readmeBlocks('## Install in a cluster');
  t.equal(blocks.length, 4, 'README.md: cluster, install, application, uninstall blocks');
  const [clusterBlock, installBlock, appBlock, uninstallBlock] = blocks as [string, string, string, string];

  t.teardown(async () => {
    if (process.env['AMC_KEEP'] === '1') return;
    await sh(`${CLUSTER} down`, { timeoutMs: 180_000, allowFail: true });
  });
  const t0 = Date.now();
  await sh(clusterBlock, { timeoutMs: 35 * 60_000 });
  t.pass(`README block 1: the cluster is up and the image imported (${Math.round((Date.now() - t0) / 1000)} s)`);
  const env = await clusterEnv();
  const run = (script: string, timeoutMs = 180_000) => sh(script, { env, timeoutMs });
  const kubectl = async (args: string) => (await run(`kubectl ${args}`)).stdout;
  const json = async <T>(args: string): Promise<T> => JSON.parse(await kubectl(`${args} -o json`)) as T;
  const state = join(env['KUBECONFIG']!, '..');

  await t.test('install: README block 2 with real Helm', async (t) => {
    await run(installBlock, 600_000);
    t.pass('every command of the block succeeded');
    const lease = await until('the control plane to hold its Lease', async () => {
      const l = await json<{ spec: { holderIdentity?: string } }>('-n istio-system get lease ambient-control-plane');
      return l.spec.holderIdentity || undefined;
    });
    const cp = await json<{ items: { metadata: { name: string } }[] }>('-n istio-system get pods -l app=istiod');
    t.ok(cp.items.some((p) => p.metadata.name === lease), `the Lease is held by a control-plane pod (${lease})`);
    for (const ds of ['ztunnel', 'ambient-cni-node']) {
      const d = await json<{ status: { numberReady: number; desiredNumberScheduled: number } }>(`-n istio-system get daemonset ${ds}`);
      t.equal(d.status.numberReady, 2, `DaemonSet ${ds}: ready on both nodes`);
    }
    for (const node of [1, 2]) {
      const conf = JSON.parse(readFileSync(join(state, 'nodes', `node-${node}`, 'root', 'etc', 'cni', 'net.d', '10-amc.conflist'), 'utf8')) as { plugins: { type: string }[] };
      t.same(conf.plugins.map((p) => p.type), ['bridge', 'portmap', 'ambient-cni'], `node-${node}: the agent chained the plugin last into containerd's CNI config`);
    }
    const crds = await json<{ items: { metadata: { name: string }; status: { conditions?: { type: string; status: string }[] } }[] }>('get crd');
    const established = crds.items.filter((c) => c.status.conditions?.some((x) => x.type === 'Established' && x.status === 'True')).map((c) => c.metadata.name);
    t.ok(established.includes('httproutes.gateway.networking.k8s.io') && established.includes('authorizationpolicies.security.istio.io'), `the base chart's CRDs are Established on 1.20 (${established.length})`);
  });

  // The application, before the label: plaintext on the wire (the check below can fail).
  await kubectl(`apply -f ${join(ROOT, 'test', 'cluster', 'fixtures', 'shop.yaml')}`);
  await run('kubectl -n shop rollout status deployment/echo-v1 deployment/echo-v2 deployment/client --timeout=180s', 200_000);
  const requests = async (reqs: { url: string; headers?: Record<string, string> }[]): Promise<Reply[]> => {
    const out = await kubectl(`-n shop exec deploy/client -- node -e ${shellQuote(REQUESTS_SCRIPT)} ${shellQuote(JSON.stringify(reqs))}`);
    return JSON.parse(out) as Reply[];
  };
  /** A request from the client (node-1) to echo-v1 (node-2), with a marker, captured on the bridge. */
  const captured = async () => {
    const marker = `marker-${randomBytes(6).toString('hex')}`;
    const cap = new BridgeCapture();
    t.teardown(() => cap.dispose());
    await cap.start();
    const [reply] = await requests([{ url: `http://echo-v1/${marker}` }]);
    const seen = await cap.stop();
    cap.dispose();
    // The exec itself crosses the bridge (API server -> kubelet): a capture that saw nothing saw
    // nothing at all, and would pass the "never in clear" checks for the wrong reason.
    if (seen.packets === 0) throw new Error('the bridge capture recorded no packet at all (not even the kubectl exec): the capture is broken');
    return { reply: reply!, inClear: seen.text.includes(marker), hbone: seen.ports.get(15008) ?? 0, seenTo8080: seen.ports.get(8080) ?? 0, packets: seen.packets, tls: seen.tlsTo15008, plainHbone: seen.plainTo15008 };
  };
  const podsBefore = await json<{ items: Pod[] }>('-n shop get pods');

  // A Deployment is available before every node's kube-proxy has programmed its Service and the
  // DNS has its name: wait for the client to reach all three Services, as a user would.
  await until('the client to reach echo, echo-v1 and echo-v2', async () => {
    const r = await requests([{ url: 'http://echo/' }, { url: 'http://echo-v1/' }, { url: 'http://echo-v2/' }]);
    return r.every((x) => x.status === 200) ? true : undefined;
  }, 120_000, 1000);

  await t.test('before the label: plaintext between the nodes', async (t) => {
    const c = await captured();
    t.equal(c.reply.status, 200, `client on node-1 reaches echo-v1 on node-2${c.reply.error ? ` (${c.reply.error})` : ''}`);
    t.ok(c.inClear, 'the marker crosses the bridge in clear (the capture sees the traffic)');
    t.equal(c.hbone, 0, 'nothing to 15008');
  });

  const [labelCmd, waypointCmd] = commandsOf(appBlock) as [string, string];
  await t.test('`kubectl label namespace shop istio.io/dataplane-mode=ambient` enrols the running pods', async (t) => {
    await run(labelCmd);
    for (const [node, names] of [[1, ['client', 'echo-v2']], [2, ['echo-v1']]] as const) {
      const pods = await until(`node-${node}'s agent to enrol ${names.join(', ')}`, async () => {
        const s = await agentState(node);
        const mine = s.pods.filter((p) => p.namespace === 'shop' && names.some((n) => p.name.startsWith(`${n}-`)));
        return mine.length === names.length && mine.every((p) => p.mode === 'enrolled' && p.attached?.redirect) ? mine : undefined;
      });
      t.equal(pods.length, names.length, `node-${node}: ${pods.map((p) => p.name).join(', ')} enrolled, redirect attached`);
    }
    const podsAfter = await json<{ items: Pod[] }>('-n shop get pods');
    t.same(podsAfter.items.map(podKey).sort(), podsBefore.items.map(podKey).sort(), 'the same pods, no container restarted');
    const c = await captured();
    t.equal(c.reply.status, 200, 'client reaches echo-v1 through the mesh');
    t.notOk(c.inClear, 'the marker never crosses between the nodes in clear');
    t.ok(c.hbone > 0, `HBONE: to port 15008 between the nodes (${c.hbone} packets)`);
    t.ok(c.tls > 0 && c.plainHbone === 0, `TLS records on 15008 (${c.tls} segments start one), never a clear-text CONNECT`);
    t.equal(c.seenTo8080, 0, 'nothing to the application port on the wire');
  });

  await t.test('a pod created after the label is enrolled by its CNI ADD', async (t) => {
    await kubectl(`-n shop run late --image=localhost/ambient-mesh:0.1.0 --image-pull-policy=IfNotPresent --labels=app=late --overrides=${shellQuote(JSON.stringify({ spec: { nodeName: 'node-2' } }))} --command -- node dist/lab/images/http-echo.js`);
    await run('kubectl -n shop wait --for=condition=Ready pod/late --timeout=120s', 150_000);
    const late = await until('node-2 to report pod late', async () => (await agentState(2)).pods.find((p) => p.namespace === 'shop' && p.name === 'late'));
    t.equal(late.mode, 'enrolled', `enrolled: ${late.reason}`);
    t.equal(late.origin, 'cni', 'from the CNI ADD the kubelet drove');
    // No addWait: the control plane had listed the pod (scheduled, no IP yet) before the ADD came;
    // 'listed': the ADD waited for it. Never 'timed-out' (decided without the pod's labels).
    t.ok(late.addWait === undefined || late.addWait.outcome === 'listed', `the control plane listed the pod for the ADD's decision (${late.addWait ? `waited ${late.addWait.waitedMs} ms` : 'already listed at ADD'})`);
    const ip = (await json<Pod>('-n shop get pod late')).status.podIP;
    const [r] = await requests([{ url: `http://${ip}:8080/` }]);
    t.equal(r!.status, 200, 'the client reaches it');
  });

  await t.test('`ambientctl waypoint apply -n shop --enroll-namespace --wait`, then L7 through it', async (t) => {
    await run(waypointCmd, 240_000);
    const ns = await json<{ metadata: { labels: Record<string, string> } }>('get namespace shop');
    t.equal(ns.metadata.labels['istio.io/use-waypoint'], 'waypoint', 'the namespace uses the waypoint');
    const wp = await json<{ items: (Pod & { metadata: { labels: Record<string, string> } })[] }>('-n shop get pods -l gateway.istio.io/managed=istio.io-mesh-controller');
    t.equal(wp.items.length, 1, 'one waypoint pod, made by the control plane\'s controller');
    const wpNode = Number(wp.items[0]!.spec.nodeName.replace('node-', ''));
    const wpState = (await agentState(wpNode)).pods.find((p) => p.name === wp.items[0]!.metadata.name);
    t.equal(wpState?.mode, 'exempt', `the waypoint pod is never enrolled (${wpState?.reason})`);

    await kubectl(`apply -f ${join(ROOT, 'test', 'cluster', 'fixtures', 'shop-l7.yaml')}`);
    await until('the HTTPRoute to be Accepted', async () => {
      const r = await json<{ status?: { parents?: { conditions: { type: string; status: string }[] }[] } }>('-n shop get httproute echo-split');
      return r.status?.parents?.[0]?.conditions.some((c) => c.type === 'Accepted' && c.status === 'True') ? true : undefined;
    });
    // 3:1 between v1 and v2 (kube-proxy alone would give about 1:1).
    const split = await until('the split to reach the waypoint', async () => {
      const replies = await requests(Array.from({ length: 200 }, () => ({ url: 'http://echo/' })));
      const v = { v1: 0, v2: 0, other: 0 };
      for (const r of replies) {
        const version = r.status === 200 ? (JSON.parse(r.body!) as { version?: string }).version : undefined;
        if (version === 'v1') v.v1++;
        else if (version === 'v2') v.v2++;
        else v.other++;
      }
      return v.v1 >= 120 && v.v1 <= 180 && v.other === 0 ? v : undefined;
    }, 60_000, 1000);
    t.ok(split.v2 >= 20, `HTTPRoute 3:1 split: v1 ${split.v1}, v2 ${split.v2} of 200`);

    const [fault, plain, denied, allowed] = await until('the fault and the policy to apply', async () => {
      const r = await requests([
        { url: 'http://echo-v2/', headers: { 'x-fault': 'yes' } },
        { url: 'http://echo-v2/' },
        { url: 'http://echo-v1/admin' },
        { url: 'http://echo-v1/' },
      ]);
      return r[0]!.status === 418 && r[2]!.status === 403 ? r : undefined;
    });
    t.equal(fault!.status, 418, 'VirtualService fault: x-fault: yes is aborted with 418');
    t.equal(plain!.status, 200, 'without the header: 200');
    t.equal(denied!.status, 403, 'DENY AuthorizationPolicy: /admin from the client is refused (403)');
    t.equal(allowed!.status, 200, 'other paths: 200');

    const ap = await json<{ status?: { conditions?: { type: string; status: string; reason: string }[] } }>('-n shop get authorizationpolicy echo-v1-deny-admin');
    t.ok(ap.status?.conditions?.some((c) => c.type === 'WaypointAccepted' && c.status === 'True'), 'kubectl shows the AuthorizationPolicy\'s status: WaypointAccepted');
    const vs = await json<{ status?: { conditions?: { type: string; status: string }[] } }>('-n shop get virtualservice echo-v2-fault');
    t.ok(vs.status?.conditions?.some((c) => c.type === 'Accepted' && c.status === 'True'), 'and the VirtualService\'s: Accepted');
    const gw = await json<{ status?: { conditions?: { type: string; status: string }[] } }>('-n shop get gateway waypoint');
    t.ok(gw.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True'), 'and the Gateway\'s: Programmed');
  });

  await t.test('`ambientctl ztunnel-config workloads` through a real port-forward', async (t) => {
    for (const node of ['node-1', 'node-2']) {
      const { stdout } = await run(`node dist/cli/ambientctl.js ztunnel-config workloads --node ${node} -o json`);
      const list = JSON.parse(stdout) as { name?: string; namespace?: string; protocol?: string }[];
      const shop = list.filter((w) => w.namespace === 'shop' && /^(client|echo-v1|echo-v2)-/.test(w.name ?? ''));
      t.equal(shop.length, 3, `${node}'s ztunnel lists the three application pods`);
      t.ok(shop.every((w) => w.protocol === 'HBONE'), 'each as HBONE');
    }
  });

  await t.test('`kubectl rollout restart daemonset/ztunnel` under load', async (t) => {
    const before = (await json<{ items: Pod[] }>('-n istio-system get pods -l app=ztunnel')).items.map((p) => p.metadata.name);
    const load = run(`kubectl -n shop exec deploy/client -- node -e ${shellQuote(LOAD_SCRIPT)} ${shellQuote(JSON.stringify(['http://echo-v1/', 'http://echo-v2/']))}`, 600_000);
    await run('kubectl -n istio-system rollout restart daemonset/ztunnel');
    await run('kubectl -n istio-system rollout status daemonset/ztunnel --timeout=300s', 320_000);
    await kubectl(`-n shop exec deploy/client -- node -e "require('fs').writeFileSync('/tmp/stop-load', '')"`);
    const summary = JSON.parse((await load).stdout) as { requests: number; firstAttemptFailures: number; failed: number; longestRecoveryMs: number; errors: Record<string, number> };
    const after = (await json<{ items: Pod[] }>('-n istio-system get pods -l app=ztunnel')).items.map((p) => p.metadata.name);
    t.notOk(after.some((n) => before.includes(n)), 'both ztunnels were replaced');
    t.ok(summary.requests > 0, `${summary.requests} requests during the rollout`);
    t.equal(summary.failed, 0, `none failed for good: ${summary.firstAttemptFailures} first attempts failed (${JSON.stringify(summary.errors)}), recovered within ${summary.longestRecoveryMs} ms (1.20: no maxSurge, docs/install.md "Kubernetes versions")`);
    const c = await captured();
    t.equal(c.reply.status, 200, 'after the rollout: client reaches echo-v1');
    t.ok(c.hbone > 0 && !c.inClear, 'still HBONE, never in clear');
  });

  await t.test('uninstall: README block 4', async (t) => {
    await run(uninstallBlock, 600_000);
    t.pass('every command of the block succeeded');
    for (const node of [1, 2]) {
      const conf = JSON.parse(readFileSync(join(state, 'nodes', `node-${node}`, 'root', 'etc', 'cni', 'net.d', '10-amc.conflist'), 'utf8')) as { plugins: { type: string }[] };
      t.same(conf.plugins.map((p) => p.type), ['bridge', 'portmap'], `node-${node}: the plugin is out of the CNI config`);
      const { stdout } = await sh(`bpftool cgroup tree /sys/fs/cgroup/unified/amc-node-${node}`);
      // Program lines are "    <id>    <attach type> ...", under their cgroup's path.
      const attached = stdout.split('\n').filter((l) => /^\s+\d+\s+\S+/.test(l));
      t.same(attached, [], `node-${node}: no eBPF program attached to any of its cgroups`);
      // progs.debug and maps.debug are the kernel's own, in every bpffs.
      const pins = await sh(`nsenter --mount=${join(state, 'nodes', `node-${node}`, 'ns', 'mnt')} -- ls -A /sys/fs/bpf`);
      t.same(pins.stdout.split('\n').filter((f) => f && !/^(progs|maps)\.debug$/.test(f)), [], `node-${node}: nothing pinned in its bpffs (the agent's /sys/fs/bpf/ambient is gone)`);
    }
    const c = await captured();
    t.equal(c.reply.status, 200, 'client still reaches echo-v1');
    t.ok(c.inClear, 'in plaintext again');
    t.equal(c.hbone, 0, 'nothing to 15008');
  });
});

interface Pod {
  metadata: { name: string; uid: string };
  spec: { nodeName: string };
  status: { podIP: string; containerStatuses?: { restartCount: number }[] };
}
const podKey = (p: Pod) => `${p.metadata.name}/${p.metadata.uid}/${(p.status.containerStatuses ?? []).map((c) => c.restartCount).join(',')}`;
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
