// The compiled plugin, run as a runtime runs it: through bin/ambient-cni, with the CNI_* environment
// and the config on stdin; a fake node agent on a Unix socket. No root needed.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { AGENT_PATHS } from '../../cni-plugin/api.js';
import { REPO, WRAPPER } from './lab.js';

const built = existsSync(join(REPO, 'dist/cni-plugin/plugin.js'));
const skip = built ? false : 'dist/cni-plugin/plugin.js is not built (npm run build)';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly json: Record<string, unknown> | undefined;
  readonly ms: number;
}

function run(env: Record<string, string>, stdin: string): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(WRAPPER, [], { env: { PATH: process.env['PATH'] ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    child.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json, ms: Date.now() - started });
    });
  });
}

const dir = await mkdtemp('/tmp/amb-cni-plugin-test-');
t.teardown(() => rm(dir, { recursive: true, force: true }));
const NETNS = '/proc/self/ns/net'; // exists everywhere

/** A fake agent: answers each path with what `reply` returns, and records the bodies. */
async function fakeAgent(t: Test, reply: (path: string, body: Record<string, unknown>) => { status: number; body: unknown } | 'hang'): Promise<{ socket: string; calls: Array<{ path: string; body: Record<string, unknown> }> }> {
  const socket = join(dir, `agent-${Math.random().toString(36).slice(2, 8)}.sock`);
  const calls: Array<{ path: string; body: Record<string, unknown> }> = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      calls.push({ path: req.url ?? '', body });
      const r = reply(req.url ?? '', body);
      if (r === 'hang') return;
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { socket, calls };
}

const PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'cni0', mac: '2a:00:00:00:00:01' }, { name: 'veth1', mac: '2a:00:00:00:00:02' }, { name: 'eth0', mac: '2a:00:00:00:00:03', sandbox: NETNS }],
  ips: [{ interface: 2, address: '10.251.1.7/24', gateway: '10.251.1.1' }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

function conf(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion: '1.0.0', name: 'amb-lab', type: 'ambient-cni', agentSocket: join(dir, 'none.sock'), prevResult: PREV, ...extra });
}

function env(command: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'c0ffee',
    CNI_NETNS: NETNS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/usr/lib/cni',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;K8S_POD_UID=1234-5678;K8S_POD_INFRA_CONTAINER_ID=c0ffee',
    ...extra,
  };
}

const enrolled = () => ({ status: 200, body: { mode: 'enrolled', reason: 'namespace apps is ambient', pod: {} } });

t.test('spec conformance', { skip }, async (t) => {
  await t.test('VERSION', async (t) => {
    const r = await run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
    t.equal(r.code, 0);
    t.same(r.json, { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
    t.equal((await run({ CNI_COMMAND: 'VERSION' }, '')).code, 0, 'with nothing on stdin too');
  });

  await t.test('bad environment: code 4, naming the variables', async (t) => {
    const none = await run({}, conf());
    t.not(none.code, 0);
    t.match(none.json, { cniVersion: '1.0.0', code: 4, msg: /CNI_COMMAND is required/, details: '' });
    t.match((await run({ CNI_COMMAND: 'GC' }, conf())).json, { code: 4, msg: /CNI_COMMAND="GC" is not supported/ });
    const missing = await run({ CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0' }, conf());
    t.match(missing.json, { code: 4, msg: 'CNI_CONTAINERID, CNI_NETNS, CNI_PATH are required for ADD' });
    t.match((await run(env('ADD', { CNI_CONTAINERID: '-bad id' }), conf())).json, { code: 4, msg: /CNI_CONTAINERID="-bad id" is not a valid container id/ });
    t.match((await run(env('ADD', { CNI_IFNAME: 'a-very-long-ifname0' }), conf())).json, { code: 4, msg: /CNI_IFNAME=.* longer than 15/ });
    t.match((await run(env('ADD', { CNI_ARGS: 'K8S_POD_NAME=x;garbage' }), conf())).json, { code: 4, msg: /CNI_ARGS: "garbage" is not KEY=VALUE/ });
    t.match((await run(env('DEL', { CNI_NETNS: '' }), conf())).code, 0, 'DEL needs no CNI_NETNS');
  });

  await t.test('bad config: 6 undecodable, 7 invalid (field named), 2 unknown field, 1 version', async (t) => {
    t.match((await run(env('ADD'), '{"cniVersion": "1.0.0",')).json, { code: 6, msg: /cannot decode the network config: stdin is not JSON/ });
    t.match((await run(env('ADD'), '')).json, { code: 6, msg: /stdin is empty/ });
    t.match((await run(env('ADD'), '[1,2]')).json, { code: 6, msg: /expected a JSON object, got a list/ });
    const noName = JSON.parse(conf()) as Record<string, unknown>;
    delete noName['name'];
    t.match((await run(env('ADD'), JSON.stringify(noName))).json, { code: 7, msg: /name: required field is missing/ });
    t.match((await run(env('ADD'), conf({ agentSocket: 42 }))).json, { code: 7, msg: /agentSocket: expected the path of the node agent socket, got 42/ });
    t.match((await run(env('ADD'), conf({ agentSocket: 'relative.sock' }))).json, { code: 7, msg: /agentSocket: "relative.sock" is not an absolute path/ });
    t.match((await run(env('ADD'), conf({ agentSocket: `/${'x'.repeat(120)}` }))).json, { code: 7, msg: /longer than 107 bytes/ });
    t.match((await run(env('ADD'), conf({ exemptNamespaces: 'kube-system' }))).json, { code: 7, msg: /exemptNamespaces: expected a list/ });
    t.match((await run(env('ADD'), conf({ cgroupPath: 'lab/{podIp}' }))).json, { code: 7, msg: /cgroupPath: unknown placeholder \{podIp\}/ });
    t.match((await run(env('ADD'), conf({ agentConnectTimeoutMs: -1 }))).json, { code: 7, msg: /agentConnectTimeoutMs: expected a positive number/ });
    t.match((await run(env('ADD'), conf({ prevResult: { ips: [{ address: 'nonsense' }] } }))).json, { code: 7, msg: /prevResult.ips\[0\].address/ });
    const typo = await run(env('ADD'), conf({ agentSokcet: '/x.sock' }));
    t.match(typo.json, { code: 2, msg: /agentSokcet: unknown key; did you mean "agentSocket"\?/ });
    const both = await run(env('ADD'), conf({ agentSokcet: '/x.sock', agentSocket: 1 }));
    t.match(both.json, { code: 7, details: /agentSocket.*; agentSokcet: unknown key/ }, 'a wrong value wins over an unknown key; details list all');
    t.match((await run(env('ADD'), conf({ cniVersion: '0.2.0' }))).json, { code: 1, msg: /cniVersion "0.2.0" is not supported; this plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0/ });
    t.match((await run(env('CHECK'), conf({ cniVersion: '0.3.1' }))).json, { cniVersion: '0.3.1', code: 1, msg: /CHECK needs cniVersion 0.4.0/ }, 'the error speaks the config version');
    t.match((await run(env('ADD'), conf({ prevResult: undefined }))).json, { code: 7, msg: /prevResult is required: ambient-cni is a chained plugin/ });
    t.match((await run(env('CHECK'), conf({ prevResult: undefined }))).json, { code: 7, msg: /prevResult is required for CHECK/ });
  });

  await t.test('ADD asks the agent and passes prevResult through unchanged', async (t) => {
    const agent = await fakeAgent(t, enrolled);
    const r = await run(env('ADD'), conf({ agentSocket: agent.socket, cgroupPath: 'kubepods/pod{podUid}' }));
    t.equal(r.code, 0, r.stdout);
    t.equal(r.stdout, `${JSON.stringify(PREV)}\n`, 'stdout is the previous result, unchanged');
    t.match(agent.calls, [
      {
        path: AGENT_PATHS.add,
        body: { containerId: 'c0ffee', podNamespace: 'apps', podName: 'web-0', podUid: '1234-5678', netns: NETNS, ifname: 'eth0', ips: ['10.251.1.7'], cgroup: 'kubepods/pod1234-5678' },
      },
    ]);
    const notAmbient = await fakeAgent(t, () => ({ status: 200, body: { mode: 'not-ambient', reason: 'no label', pod: {} } }));
    t.same((await run(env('ADD'), conf({ agentSocket: notAmbient.socket }))).json, PREV);
    const explicit = await fakeAgent(t, enrolled);
    await run(env('ADD', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;AMBIENT_CGROUP=/sys/fs/cgroup/lab/web' }), conf({ agentSocket: explicit.socket, cgroupPath: 'ignored/{containerId}' }));
    t.match(explicit.calls[0]?.body, { cgroup: '/sys/fs/cgroup/lab/web' }, 'AMBIENT_CGROUP wins over the template');
  });

  await t.test('ADD leaves non-pods and exempt namespaces alone without asking the agent', async (t) => {
    // The agent socket does not exist: any call would fail with 11.
    const notPod = await run(env('ADD', { CNI_ARGS: '' }), conf());
    t.equal(notPod.code, 0);
    t.same(notPod.json, PREV);
    t.match(notPod.stderr, /not a pod, left alone/);
    const exempt = await run(env('ADD'), conf({ exemptNamespaces: ['kube-system', 'apps'] }));
    t.equal(exempt.code, 0);
    t.same(exempt.json, PREV);
  });

  await t.test('agent failures map to CNI codes (fail closed)', async (t) => {
    const cases: Array<[number, string, number]> = [
      [500, 'ERR_ENROLMENT_FAILED', 100],
      [422, 'ERR_POD_CGROUP_NOT_FOUND', 103],
      [503, 'ERR_AGENT_NOT_READY', 11],
      [400, 'ERR_BAD_REQUEST', 101],
    ];
    for (const [status, code, cni] of cases) {
      const agent = await fakeAgent(t, () => ({ status, body: { error: { code, message: `the agent says ${code}` } } }));
      const r = await run(env('ADD'), conf({ agentSocket: agent.socket }));
      t.not(r.code, 0);
      t.match(r.json, { code: cni, msg: `enrolling pod apps/web-0: the agent says ${code}`, details: new RegExp(`agent error ${code} \\(http ${status}\\)`) }, code);
    }
    const weird = await fakeAgent(t, () => ({ status: 200, body: { mode: 'maybe' } }));
    t.match((await run(env('ADD'), conf({ agentSocket: weird.socket }))).json, { code: 101, msg: /unknown mode "maybe"/ });
    t.match((await run(env('ADD', { CNI_NETNS: '/var/run/netns/amb-cni-no-such-ns' }), conf())).json, { code: 104, msg: /CNI_NETNS=\/var\/run\/netns\/amb-cni-no-such-ns does not exist/ });
  });

  await t.test('a dead or wedged agent is reported with code 11, fast', async (t) => {
    const gone = await run(env('ADD'), conf());
    t.match(gone.json, { code: 11, msg: /node agent at .* is not there \(no socket file\)/ });
    t.ok(gone.ms < 2000, `no socket: ${gone.ms} ms`);

    // A crashed agent leaves its socket file behind, with nobody listening.
    const stale = join(dir, 'stale.sock');
    const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`]);
    await new Promise((r) => crashed.stdout.once('data', r));
    crashed.kill('SIGKILL');
    await new Promise((r) => crashed.once('exit', r));
    t.ok(existsSync(stale), 'the socket file outlived its agent');
    const refused = await run(env('ADD'), conf({ agentSocket: stale }));
    t.match(refused.json, { code: 11, msg: /node agent at .*stale.sock refused the connection \(nothing listens on the socket\)/ });
    t.ok(refused.ms < 2000, `dead socket: ${refused.ms} ms`);

    const wedged = await fakeAgent(t, () => 'hang');
    const hung = await run(env('ADD'), conf({ agentSocket: wedged.socket, agentRequestTimeoutMs: 300 }));
    t.match(hung.json, { code: 11, msg: /did not answer POST \/v1\/cni\/add within 300 ms/ });
    t.ok(hung.ms < 2500, `wedged agent: ${hung.ms} ms`);
  });

  await t.test('DEL always succeeds', async (t) => {
    const nothing = await run(env('DEL', { CNI_NETNS: '' }), conf({ prevResult: undefined }));
    t.equal(nothing.code, 0, 'no agent, no netns, no prevResult');
    t.equal(nothing.stdout, '');
    t.match(nothing.stderr, /ignored: DEL always succeeds/);
    const failing = await fakeAgent(t, () => ({ status: 500, body: { error: { code: 'ERR_ENROLMENT_FAILED', message: 'boom' } } }));
    t.equal((await run(env('DEL'), conf({ agentSocket: failing.socket }))).code, 0, 'even when the agent fails');
    const agent = await fakeAgent(t, () => ({ status: 200, body: { removed: true } }));
    const ok = await run(env('DEL'), conf({ agentSocket: agent.socket }));
    t.equal(ok.code, 0);
    t.match(agent.calls, [{ path: AGENT_PATHS.del, body: { containerId: 'c0ffee', podNamespace: 'apps', podName: 'web-0' } }]);
  });

  await t.test('CHECK asks the agent', async (t) => {
    const ok = await fakeAgent(t, () => ({ status: 200, body: { mode: 'enrolled', reason: 'fine' } }));
    const r = await run(env('CHECK'), conf({ agentSocket: ok.socket }));
    t.equal(r.code, 0);
    t.equal(r.stdout, '');
    t.match(ok.calls, [{ path: AGENT_PATHS.check, body: { ips: ['10.251.1.7'] } }]);
    const bad = await fakeAgent(t, () => ({ status: 409, body: { error: { code: 'ERR_NOT_ENROLLED', message: 'pod apps/web-0: the redirect programs are not attached' } } }));
    t.match((await run(env('CHECK'), conf({ agentSocket: bad.socket }))).json, { code: 102, msg: /redirect programs are not attached/ });
    t.match((await run(env('CHECK'), conf())).json, { code: 11 }, 'a dead agent cannot vouch for anything');
  });
});
