import t from 'tap';
import { loadConfig } from '../../../cni-plugin/agent/config.js';

const base = { NODE_NAME: 'node-a', ZTUNNEL_IP: '10.0.0.1', ZTUNNEL_CGROUP: '/sys/fs/cgroup/ztunnel', DESIRED_STATE_FILE: '/etc/ambient/desired.yaml' };

t.test('defaults', async (t) => {
  const c = loadConfig(base);
  t.match(c, {
    socket: '/var/run/ambient/cni.sock',
    stateFile: '/var/run/ambient/agent-state.json',
    pinDir: '/sys/fs/bpf/ambient/node-a',
    outboundPort: 15001,
    nodeIps: undefined,
    cgroupDriver: 'systemd',
    exemptNamespaces: ['istio-system', 'kube-system'],
    resyncIntervalMs: 30_000,
    statePort: 0,
    stateAddress: '127.0.0.1',
  });
  t.ok(Object.isFrozen(c));
  t.match(loadConfig({ ...base, NODE_IPS: '10.0.0.1, 192.168.1.5', EXCLUDE_CIDRS: '10.96.0.0/12', EXCLUDE_PORTS: '22,10250', CGROUP_DRIVER: 'template', CGROUP_TEMPLATE: 'lab/{podUid}' }), {
    nodeIps: ['10.0.0.1', '192.168.1.5'],
    excludeCidrs: ['10.96.0.0/12'],
    excludePorts: [22, 10250],
    cgroupTemplate: 'lab/{podUid}',
  });
});

t.test('every problem at once, naming the variable', async (t) => {
  const err = (() => {
    try {
      loadConfig({ ZTUNNEL_IP: 'fd00::1', ZTUNNEL_CGROUP: 'relative', OUTBOUND_PORT: '0', NODE_IPS: 'x', EXCLUDE_PORTS: '99999', CGROUP_DRIVER: 'docker', RESYNC_INTERVAL_SECONDS: '-1', AGENT_SOCKET: `/${'s'.repeat(120)}` });
    } catch (e) {
      return e as Error & { problems: string[] };
    }
  })();
  t.ok(err);
  t.match(err!.problems, [
    /NODE_NAME is required/,
    /ZTUNNEL_IP="fd00::1" is not an IPv4 address/,
    /ZTUNNEL_CGROUP="relative" is neither an absolute path nor auto/,
    /DESIRED_STATE_FILE is required/,
    /NODE_IPS: "x" is not an IP address/,
    /EXCLUDE_PORTS: "99999" is not a port/,
    /CGROUP_DRIVER="docker" is not one of systemd, cgroupfs, template/,
    /RESYNC_INTERVAL_SECONDS="-1" is not a positive number/,
    /OUTBOUND_PORT="0" is not a port \(1-65535\)/,
    /AGENT_SOCKET=.* is longer than 107 bytes/,
  ]);
});

t.test('rules across variables', async (t) => {
  t.throws(() => loadConfig({ ...base, CGROUP_DRIVER: 'template' }), { message: /CGROUP_TEMPLATE is required with CGROUP_DRIVER=template/ });
  t.throws(() => loadConfig({ ...base, CGROUP_TEMPLATE: 'x/{podUid}' }), { message: /CGROUP_DRIVER=systemd ignores it/ });
  t.throws(() => loadConfig({ ...base, AGENT_SOCKET: '/x', STATE_FILE: '/x' }), { message: /must differ/ });
});

t.test('ZTUNNEL_CGROUP=auto: found through /proc, with its own settings', async (t) => {
  t.match(loadConfig({ ...base, ZTUNNEL_CGROUP: 'auto' }), { ztunnelCgroup: 'auto', ztunnelInboundPort: 15008, ztunnelCheckIntervalMs: 1000, procRoot: '/proc' });
  t.match(loadConfig({ ...base, ZTUNNEL_CGROUP: 'auto', ZTUNNEL_INBOUND_PORT: '0', ZTUNNEL_CHECK_INTERVAL_SECONDS: '0.25', PROC_ROOT: '/host/proc' }), {
    ztunnelInboundPort: 0,
    ztunnelCheckIntervalMs: 250,
    procRoot: '/host/proc',
  });
  t.throws(() => loadConfig({ ...base, ZTUNNEL_CGROUP: 'auto', ZTUNNEL_CHECK_INTERVAL_SECONDS: '0', PROC_ROOT: 'proc' }), {
    message: /ZTUNNEL_CHECK_INTERVAL_SECONDS="0" is not a positive number[\s\S]*PROC_ROOT="proc" is not an absolute path/,
  });
  t.throws(() => loadConfig({ ...base, ZTUNNEL_CHECK_INTERVAL_SECONDS: '2' }), { message: /ZTUNNEL_CHECK_INTERVAL_SECONDS is set but ZTUNNEL_CGROUP is a path, which ignores it/ });
  t.throws(() => loadConfig({ ...base, ZTUNNEL_CGROUP: 'Auto' }), { message: /ZTUNNEL_CGROUP="Auto" is neither an absolute path nor auto/ });
});

t.test("kubelet's cgroup root and the ADD's wait for the desired state", async (t) => {
  const d = loadConfig(base);
  t.equal(d.kubeletCgroupRoot, 'auto', 'found from the agent\'s own cgroup unless set');
  t.equal(d.addWaitMs, 10_000);
  const c = loadConfig({ ...base, KUBELET_CGROUP_ROOT: '/amc-node-1', ADD_WAIT_SECONDS: '0.5', CGROUP_DRIVER: 'cgroupfs' });
  t.equal(c.kubeletCgroupRoot, '/amc-node-1');
  t.equal(c.addWaitMs, 500);
  t.equal(loadConfig({ ...base, ADD_WAIT_SECONDS: '0' }).addWaitMs, 0, '0: decide at once');
  t.throws(() => loadConfig({ ...base, KUBELET_CGROUP_ROOT: 'amc-node-1', ADD_WAIT_SECONDS: '-1' }), {
    message: /KUBELET_CGROUP_ROOT="amc-node-1" is neither an absolute cgroup path .* nor auto[\s\S]*ADD_WAIT_SECONDS="-1" is not a number of seconds/,
  });
  t.throws(() => loadConfig({ ...base, CGROUP_DRIVER: 'template', CGROUP_TEMPLATE: 'lab/{podUid}', KUBELET_CGROUP_ROOT: '/x' }), { message: /KUBELET_CGROUP_ROOT is set but CGROUP_DRIVER=template ignores it/ });
  t.equal(loadConfig({ ...base, CGROUP_DRIVER: 'template', CGROUP_TEMPLATE: 'lab/{podUid}', KUBELET_CGROUP_ROOT: 'auto' }).kubeletCgroupRoot, 'auto', "the chart's default is fine with any driver");
});
