import t from 'tap';
import { CniError } from '../../../cni-plugin/cni/errors.js';
import { expandCgroupPath, parseArgs, parseEnv, parseNetConf, resultIps, versionAtLeast } from '../../../cni-plugin/cni/spec.js';

t.test('CNI_ARGS', async (t) => {
  t.same(parseArgs(''), {});
  t.same(parseArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;X=a=b;'), { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'apps', K8S_POD_NAME: 'web-0', X: 'a=b' });
  t.throws(() => parseArgs('=x'), /"=x" is not KEY=VALUE/);
});

t.test('environment', async (t) => {
  const env = parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni', CNI_ARGS: 'K8S_POD_NAME=x' });
  t.match(env, { command: 'DEL', containerId: 'abc', netns: '', path: ['/opt/cni/bin', '/usr/lib/cni'], args: { K8S_POD_NAME: 'x' } });
  t.ok(Object.isFrozen(env));
  const err = (() => {
    try {
      parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a b', CNI_NETNS: 'relative', CNI_IFNAME: 'eth0', CNI_PATH: '/x' });
    } catch (e) {
      return e as CniError;
    }
  })();
  t.ok(err instanceof CniError);
  t.equal(err?.cniCode, 4);
  t.match(err?.details, /CNI_CONTAINERID="a b" is not a valid container id .*; CNI_NETNS="relative" is not an absolute path/, 'every problem in details');
});

t.test('network config defaults', async (t) => {
  const c = parseNetConf('{"cniVersion":"0.4.0","name":"k8s-pod-network","type":"ambient-cni","ipam":{},"dns":{}}');
  t.same(c.plugin, { agentSocket: '/var/run/ambient/cni.sock', agentConnectTimeoutMs: 1000, agentRequestTimeoutMs: 20000, exemptNamespaces: [] });
  t.notOk(c.prevResult);
  t.throws(() => parseNetConf('{"cniVersion":"1.0.0","name":"bad name","type":"x"}'), { cniCode: 7, message: /not a valid network name/ });
});

t.test('prevResult addresses', async (t) => {
  t.same(resultIps({ ips: [{ address: '10.1.0.5/24' }, { address: 'fd00::5/64', version: '6' }] }), ['10.1.0.5', 'fd00::5']);
  t.same(resultIps({}), []);
  t.throws(() => resultIps({ ips: 'x' }), { cniCode: 7, message: /prevResult.ips: expected a list/ });
});

t.test('cgroup templates and versions', async (t) => {
  t.equal(expandCgroupPath('kubepods/pod{podUid}/{containerId}', { containerId: 'c1', podUid: 'u-1' }), 'kubepods/podu-1/c1');
  t.equal(expandCgroupPath('lab/{podName}', { containerId: 'c1' }), undefined, 'a value the runtime did not pass');
  t.ok(versionAtLeast('1.0.0', '0.4.0'));
  t.ok(versionAtLeast('0.4.0', '0.4.0'));
  t.notOk(versionAtLeast('0.3.1', '0.4.0'));
});
