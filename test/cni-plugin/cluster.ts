/**
 * A small cluster for the root CNI tests, built the way the design's lab builds one: a "fabric"
 * network namespace with a bridge, one namespace per node (its address 10.250.0.<i> on the
 * fabric, its pod range 10.251.<i>.0/24 behind a `cni0` bridge that Debian's bridge plugin
 * creates), a node agent and a ztunnel per node as real processes, and pods (namespace + cgroup +
 * process) wired by running the conflist bridge + host-local → ambient-cni, and loopback.
 *
 * The test plays the control plane: `sync()` writes the agents' desired-state file and the
 * ztunnels' config file from the same facts, as discovery would.
 */
import { randomUUID } from 'node:crypto';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { CertificateAuthority } from '../../core/identity/ca.js';
import { AgentClient } from '../../cni-plugin/agent-client.js';
import type { AgentState, PodStatus } from '../../cni-plugin/api.js';
import { runChain, type CniResult, type NetConfList } from '../../lab/cni-chain.js';
import { AGENT_MAIN, Lab, LAB_POLL, type PodApp, type Proc, sh, ZTUNNEL_MAIN } from './lab.js';
import { until } from '../helpers/until.js';

export const OUTBOUND_PORT = 15001;

export interface ClusterNode {
  readonly name: string;
  readonly index: number;
  /** On the fabric; also the ztunnel's address. */
  readonly ip: string;
  readonly podCidr: string;
  readonly gateway: string;
  readonly netns: { name: string; path: string };
  readonly ztunnelCgroup: string;
  readonly pinDir: string;
  readonly socket: string;
  readonly stateFile: string;
  readonly conflist: NetConfList;
  agent?: Proc;
  ztunnel?: Proc;
}

export interface Pod {
  readonly node: ClusterNode;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly containerId: string;
  readonly netns: { name: string; path: string };
  readonly cgroup: string;
  readonly ip: string;
  readonly result: CniResult;
  readonly explicitCgroup: boolean;
  app: PodApp;
}

export class Cluster {
  readonly nodes = new Map<string, ClusterNode>();
  readonly pods: Pod[] = [];
  /** The control plane's facts. */
  readonly namespaces = new Map<string, Record<string, string>>();
  strictNamespaces = new Set<string>();
  private fabric!: { name: string; path: string };
  cniBin!: string;
  private desiredPath!: string;
  private meshPath!: string;
  private caDir!: string;

  private constructor(readonly lab: Lab) {}

  static async create(lab: Lab, nodeNames: readonly string[], namespaces: Record<string, Record<string, string>>): Promise<Cluster> {
    const c = new Cluster(lab);
    for (const [ns, labels] of Object.entries(namespaces)) c.namespaces.set(ns, labels);
    c.cniBin = await lab.cniBinDir();
    c.caDir = join(lab.dir, 'ca');
    const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });
    await ca.save(c.caDir);
    c.desiredPath = join(lab.dir, 'desired', 'desired.yaml');
    c.meshPath = join(lab.dir, 'mesh', 'mesh.yaml');

    c.fabric = await lab.netns('fab');
    await sh('ip', ['-n', c.fabric.name, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', c.fabric.name, 'link', 'set', 'br0', 'up']);
    const sockets = await lab.shortDir();
    let i = 0;
    for (const name of nodeNames) {
      i++;
      const netns = await lab.netns(`n${i}`);
      const ip = `10.250.0.${i}`;
      const port = `v${i}`;
      await sh('ip', ['-n', c.fabric.name, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns.name]);
      await sh('ip', ['-n', c.fabric.name, 'link', 'set', port, 'master', 'br0', 'up']);
      await sh('ip', ['-n', netns.name, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await sh('ip', ['-n', netns.name, 'link', 'set', 'eth0', 'up']);
      await sh('ip', ['netns', 'exec', netns.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      const socket = join(sockets, `agent-${i}.sock`);
      const node: ClusterNode = {
        name,
        index: i,
        ip,
        podCidr: `10.251.${i}.0/24`,
        gateway: `10.251.${i}.1`,
        netns,
        ztunnelCgroup: await lab.cgroup(`zt${i}`),
        pinDir: lab.pinDir(name),
        socket,
        stateFile: join(lab.dir, `agent-${i}`, 'state.json'),
        conflist: {
          cniVersion: '1.0.0',
          name: 'amb-lab',
          plugins: [
            {
              type: 'bridge',
              bridge: 'cni0',
              isGateway: true,
              ipMasq: false,
              ipam: {
                type: 'host-local',
                ranges: [[{ subnet: `10.251.${i}.0/24`, gateway: `10.251.${i}.1` }]],
                routes: [{ dst: '0.0.0.0/0' }],
                dataDir: join(lab.dir, `ipam-${i}`),
              },
            },
            { type: 'ambient-cni', agentSocket: socket, cgroupPath: `${lab.prefix}-pod-{podNamespace}-{podName}`, agentRequestTimeoutMs: 20_000 },
          ],
        },
      };
      c.nodes.set(name, node);
    }
    for (const n of c.nodes.values()) {
      for (const other of c.nodes.values()) {
        if (other !== n) await sh('ip', ['-n', n.netns.name, 'route', 'add', other.podCidr, 'via', other.ip]);
      }
    }
    await c.sync();
    return c;
  }

  node(name: string): ClusterNode {
    return this.nodes.get(name)!;
  }

  /** Writes the desired state (agents) and the mesh config (ztunnels) from the current facts. */
  async sync(): Promise<void> {
    const ambient = (ns: string) => this.namespaces.get(ns)?.['istio.io/dataplane-mode'] === 'ambient';
    const peerAuthentications = [...this.strictNamespaces].map((ns) => ({ name: 'strict', namespace: ns, spec: { mtls: { mode: 'STRICT' } } }));
    const desired = {
      namespaces: [...this.namespaces].map(([name, labels]) => ({ name, labels })),
      pods: this.pods.map((p) => ({ namespace: p.namespace, name: p.name, uid: p.uid, node: p.node.name, labels: { app: p.name }, ips: [p.ip] })),
      peerAuthentications,
    };
    const mesh = {
      nodes: [...this.nodes.values()].map((n) => ({ name: n.name, ztunnelAddress: n.ip })),
      workloads: this.pods.map((p) => ({
        name: p.name,
        namespace: p.namespace,
        serviceAccount: p.name,
        node: p.node.name,
        ips: [p.ip],
        protocol: ambient(p.namespace) ? 'HBONE' : 'TCP',
        labels: { app: p.name },
      })),
      peerAuthentications,
    };
    await this.lab.writeFile('desired/desired.yaml.tmp', yaml.dump(desired));
    await rename(`${this.desiredPath}.tmp`, this.desiredPath);
    await this.lab.writeFile('mesh/mesh.yaml.tmp', yaml.dump(mesh));
    await rename(`${this.meshPath}.tmp`, this.meshPath);
  }

  /** sync(), then waits until every running ztunnel loaded the new file. */
  async syncAndWait(): Promise<void> {
    const before = [...this.nodes.values()].map((n) => [n, n.ztunnel?.count(/"msg":"configuration updated"/) ?? 0] as const);
    await this.sync();
    for (const [n, count] of before) {
      if (n.ztunnel) await until(`ztunnel ${n.name} to reload`, async () => n.ztunnel!.count(/"msg":"configuration updated"/) > count, LAB_POLL);
    }
  }

  agentEnv(n: ClusterNode, extra: Record<string, string> = {}): Record<string, string> {
    return {
      NODE_NAME: n.name,
      AGENT_SOCKET: n.socket,
      STATE_FILE: n.stateFile,
      DESIRED_STATE_FILE: this.desiredPath,
      PIN_DIR: n.pinDir,
      ZTUNNEL_IP: n.ip,
      OUTBOUND_PORT: String(OUTBOUND_PORT),
      ZTUNNEL_CGROUP: n.ztunnelCgroup,
      NODE_IPS: `${n.ip},${n.gateway}`,
      CGROUP_DRIVER: 'template',
      CGROUP_TEMPLATE: `${this.lab.prefix}-pod-{podNamespace}-{podName}`,
      RESYNC_INTERVAL_SECONDS: '1',
      // This harness lists a pod in the desired state only after its ADD (the ADD gives it its IP).
      ADD_WAIT_SECONDS: '0',
      LOG_LEVEL: 'debug',
      ...extra,
    };
  }

  /** The node agent, in the node's network namespace (it needs none, but that is where it runs on a node). */
  async startAgent(n: ClusterNode, extra: Record<string, string> = {}): Promise<Proc> {
    const agent = this.lab.spawn(`agent ${n.name}`, [process.execPath, AGENT_MAIN], { netns: n.netns.path, env: this.agentEnv(n, extra) });
    n.agent = agent;
    await agent.waitFor(/"msg":"node agent ready"/, 30_000);
    return agent;
  }

  async startZtunnel(n: ClusterNode, extra: Record<string, string> = {}): Promise<Proc> {
    const zt = this.lab.spawn(`ztunnel ${n.name}`, [process.execPath, ZTUNNEL_MAIN], {
      cgroup: n.ztunnelCgroup,
      netns: n.netns.path,
      env: {
        NODE_NAME: n.name,
        LOCAL_CONFIG_FILE: this.meshPath,
        CA_ROOT_CERT_FILE: join(this.caDir, 'root-cert.pem'),
        CA_ROOT_KEY_FILE: join(this.caDir, 'root-key.pem'),
        ZTUNNEL_ADDRESS: n.ip,
        OUTBOUND_PORT: String(OUTBOUND_PORT),
        DRAIN_TIMEOUT_SECONDS: '1',
        LOG_LEVEL: 'info',
        ...extra,
      },
    });
    n.ztunnel = zt;
    await zt.waitFor(/"msg":"ztunnel ready"/, 30_000);
    return zt;
  }

  client(n: ClusterNode): AgentClient {
    return new AgentClient({ socketPath: n.socket, connectTimeoutMs: 1000, requestTimeoutMs: 20_000 });
  }

  state(n: ClusterNode): Promise<AgentState> {
    return this.client(n).state();
  }

  async podStatus(p: Pod): Promise<PodStatus | undefined> {
    return (await this.state(p.node)).pods.find((s) => s.namespace === p.namespace && s.name === p.name);
  }

  private chainInputs(p: { node: ClusterNode; namespace: string; name: string; uid: string; containerId: string; netns: string; cgroup: string; explicitCgroup: boolean }) {
    return {
      conflist: p.node.conflist,
      containerId: p.containerId,
      netns: p.netns,
      ifname: 'eth0',
      cniPath: [this.cniBin],
      runInNetns: p.node.netns.path,
      args: {
        K8S_POD_NAMESPACE: p.namespace,
        K8S_POD_NAME: p.name,
        K8S_POD_UID: p.uid,
        ...(p.explicitCgroup ? { AMBIENT_CGROUP: p.cgroup } : {}),
      },
    };
  }

  /**
   * Creates a pod as a runtime does: network namespace and cgroup, then loopback and the conflist
   * (bridge + host-local, then ambient-cni), then the application process in both.
   */
  async addPod(node: string, namespace: string, name: string, opts: { explicitCgroup?: boolean } = {}): Promise<Pod> {
    const n = this.node(node);
    const netns = await this.lab.netns(`p-${namespace}-${name}`, { lo: false });
    // The template names it <prefix>-pod-<ns>-<name>; an explicit one may be anything under the root.
    const cgroup = await this.lab.cgroup(opts.explicitCgroup ? `explicit-${namespace}-${name}` : `pod-${namespace}-${name}`);
    const base = { node: n, namespace, name, uid: randomUUID(), containerId: `${namespace}-${name}-${this.pods.length}`, netns: netns.path, cgroup, explicitCgroup: opts.explicitCgroup ?? false };
    await runChain({
      conflist: { cniVersion: '1.0.0', name: 'lo', plugins: [{ type: 'loopback' }] },
      command: 'ADD',
      containerId: base.containerId,
      netns: netns.path,
      ifname: 'lo',
      cniPath: [this.cniBin],
      runInNetns: n.netns.path,
    });
    const result = (await runChain({ ...this.chainInputs(base), command: 'ADD' }))!;
    const ip = String((result['ips'] as Array<{ address: string }>)[0]!.address).split('/')[0]!;
    const app = await this.lab.podApp(`${namespace}/${name}`, { cgroup, netns: netns.path });
    const pod: Pod = { ...base, netns, ip, result, app };
    this.pods.push(pod);
    return pod;
  }

  async checkPod(p: Pod): Promise<void> {
    await runChain({ ...this.chainInputs({ ...p, netns: p.netns.path }), command: 'CHECK', prevResult: p.result });
  }

  async delPod(p: Pod): Promise<void> {
    await runChain({ ...this.chainInputs({ ...p, netns: p.netns.path }), command: 'DEL', prevResult: p.result });
  }

  /** The fabric's namespace; node i's port on its bridge is `v<i>`: every byte node i exchanges crosses it. */
  get fabricNetns(): { name: string; path: string } {
    return this.fabric;
  }
}
