// The agent's API over a real Unix socket (and the read-only state port), with a fake kernel.
import t, { type Test } from 'tap';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../../../core/telemetry/log.js';
import { AgentClient, AgentRequestError } from '../../../cni-plugin/agent-client.js';
import { NodeAgent } from '../../../cni-plugin/agent/agent.js';
import { TemplateCgroupResolver } from '../../../cni-plugin/agent/cgroup.js';
import { loadConfig } from '../../../cni-plugin/agent/config.js';
import { parseDesiredState } from '../../../cni-plugin/agent/desired-file.js';
import { FakeRedirector, PushDesiredSource } from '../fakes.js';

const desired = (ambient: boolean) =>
  parseDesiredState(`namespaces: [{name: apps, labels: {istio.io/dataplane-mode: ${ambient ? 'ambient' : 'none'}}}]`, 'test');

let starts = 0;

async function start(t: Test) {
  const root = t.testdir({ zt: {}, 'pod-apps-web': {} });
  const sockDir = await mkdtemp('/tmp/amb-cni-agent-test-');
  t.teardown(() => rm(sockDir, { recursive: true, force: true }));
  const config = loadConfig({
    NODE_NAME: 'node-a',
    ZTUNNEL_IP: '10.0.0.1',
    ZTUNNEL_CGROUP: join(root, 'zt'),
    DESIRED_STATE_FILE: '/unused',
    AGENT_SOCKET: join(sockDir, 'cni.sock'),
    STATE_FILE: join(root, 'state.json'),
    CGROUP_DRIVER: 'template',
    CGROUP_TEMPLATE: 'pod-{podNamespace}-{podName}',
    // Loopback range reserved for these tests; a fresh address per agent so ports never clash.
    STATE_ADDRESS: `127.0.10.${++starts}`,
    STATE_PORT: '15099',
    EXCLUDE_PORTS: '22',
    // The desired state here lists namespaces only; the ADD's wait for a pod is reconciler.test.ts's.
    ADD_WAIT_SECONDS: '0',
  });
  const kernel = new FakeRedirector();
  const source = new PushDesiredSource(desired(true));
  const inputs = {
    config,
    logger: silentLogger,
    redirector: kernel,
    desiredSource: source,
    resolver: new TemplateCgroupResolver(root, config.cgroupTemplate!),
    cgroupRoot: root,
    nodeIps: ['10.0.0.1', '192.168.1.10'],
  };
  const agent = await NodeAgent.start(inputs);
  t.teardown(() => agent.stop());
  const client = new AgentClient({ socketPath: config.socket, connectTimeoutMs: 500, requestTimeoutMs: 5000 });
  return { root, config, kernel, source, agent, client, inputs };
}

t.test('the plugin API and the state over the Unix socket', async (t) => {
  const { root, config, kernel, client, source, agent } = await start(t);
  t.match(kernel.loadedWith, { ztunnelIp: '10.0.0.1', outboundPort: 15001, nodeIps: ['10.0.0.1', '192.168.1.10'], excludePorts: [22] }, 'programs loaded with the node config');
  t.equal((await stat(config.socket)).mode & 0o777, 0o600, 'the socket is root only');
  const added = await client.add({ containerId: 'c1', podNamespace: 'apps', podName: 'web', ips: ['10.1.0.5'] });
  t.match(added, { mode: 'enrolled', pod: { cgroup: join(root, 'pod-apps-web'), ips: ['10.1.0.5'] } });
  t.match(await client.check({ containerId: 'c1', podNamespace: 'apps', podName: 'web' }), { mode: 'enrolled' });
  const st = await client.state();
  t.match(st, { node: 'node-a', ready: true, bpf: { loaded: true, redirect: { ztunnelIp: '10.0.0.1' } }, ztunnel: { attached: true }, desired: { source: 'test', namespaces: 1 } });
  t.equal(st.pods.length, 1);

  await t.rejects(client.add({ containerId: 'c2' }), AgentRequestError, 'a request without pod names is refused');
  const port = `http://${config.stateAddress}:${agent.stateAddress()!.port}`;
  const byPort = await fetch(`${port}/state`);
  t.equal(byPort.status, 200, 'the state port serves /state');
  t.match(await byPort.json(), { node: 'node-a' });
  const ro = await fetch(`${port}/v1/cni/add`, { method: 'POST', body: '{}' });
  t.equal(ro.status, 404, 'but never the CNI calls');
  t.equal((await fetch(`${port}/healthz/ready`)).status, 200);

  source.push(desired(false));
  await agent.reconciler.idle();
  t.same([...(kernel.attached.get(join(root, 'pod-apps-web')) ?? [])], [], 'a desired-state change is applied at once');
  t.same(await client.del({ containerId: 'c1' }), { removed: true });
});

t.test('a second agent on the same socket refuses to start; a stale file at the path is replaced', async (t) => {
  const first = await start(t);
  await t.rejects(NodeAgent.start({ ...first.inputs, desiredSource: new PushDesiredSource(desired(true)) }), { message: /another agent is already listening/ });
  t.match(await first.client.state(), { ready: true }, 'the first one is untouched');
  await first.agent.stop();
  await writeFile(first.config.socket, ''); // what a crashed agent leaves, as far as connect() can tell
  const again = await NodeAgent.start({ ...first.inputs, desiredSource: new PushDesiredSource(desired(true)) });
  t.teardown(() => again.stop());
  t.match(await first.client.state(), { ready: true }, 'restarted on the same path');
});

t.test('a start-up failure says why and leaves no socket behind', async (t) => {
  const { inputs } = await start(t);
  const kernel = new FakeRedirector();
  kernel.failNext.load = new Error('the verifier refused amb_connect4');
  const sockDir = await mkdtemp('/tmp/amb-cni-agent-test-');
  t.teardown(() => rm(sockDir, { recursive: true, force: true }));
  const config = { ...inputs.config, socket: join(sockDir, 'cni.sock') };
  await t.rejects(NodeAgent.start({ ...inputs, config, redirector: kernel, desiredSource: new PushDesiredSource(desired(true)) }), { message: /the verifier refused/ });
  await t.rejects(stat(config.socket), { code: 'ENOENT' });
});
