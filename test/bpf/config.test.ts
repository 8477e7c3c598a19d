import t from 'tap';
import { endianness } from 'node:os';
import { ConfigError } from '../../core/errors.js';
import { decodeStats, encodeRedirectConfig, hexBytes, STAT_NAMES, type RedirectConfig } from '../../bpf/config.js';

const base: RedirectConfig = { ztunnelIp: '10.244.0.1', outboundPort: 15001, nodeIps: [], excludeCidrs: [], excludePorts: [] };
const le = endianness() === 'LE';

t.test('encodes the config as bpf/src/common.h lays it out', async (t) => {
  const e = encodeRedirectConfig({
    ...base,
    nodeIps: ['192.168.1.10', '::ffff:192.168.1.11', 'fd00::1', '192.168.1.10'],
    excludeCidrs: ['10.96.0.1/12', '10.0.0.7', '::/0', '10.96.0.0/12'],
    excludePorts: [22, 15008, 22],
  });
  t.same(e.config.key, [0, 0, 0, 0]);
  t.same(e.config.value, le ? [10, 244, 0, 1, 0x99, 0x3a, 1, 0] : [10, 244, 0, 1, 0x3a, 0x99, 0, 1], 'ip in network order, port and flags in host order');
  t.same(e.nodeIps, [[192, 168, 1, 10], [192, 168, 1, 11]], 'ipv4 (and v4-mapped) only, deduplicated');
  t.same(e.excludeCidrs, [
    [...(le ? [12, 0, 0, 0] : [0, 0, 0, 12]), 10, 96, 0, 0],
    [...(le ? [32, 0, 0, 0] : [0, 0, 0, 32]), 10, 0, 0, 7],
  ], 'host bits cleared, a bare address is a /32, duplicates merged, ipv6 ignored');
  t.same(e.excludePorts, [le ? [22, 0] : [0, 22], le ? [0xa0, 0x3a] : [0x3a, 0xa0]]);
  t.same(hexBytes([10, 0, 255]), ['0a', '00', 'ff']);
});

t.test('reports every problem at once', async (t) => {
  const err = (() => {
    try {
      encodeRedirectConfig({
        ztunnelIp: '127.0.0.1',
        outboundPort: 70000,
        nodeIps: ['10.0.0.1', 'node-1'],
        excludeCidrs: ['10.0.0.0/40'],
        excludePorts: [0, 1.5],
      });
    } catch (e) {
      return e as ConfigError;
    }
    return undefined;
  })();
  t.type(err, ConfigError);
  t.equal(err?.code, 'ERR_CONFIG_INVALID');
  t.same(err?.problems.map((p) => p.split(':')[0]), ['ztunnelIp', 'outboundPort', 'nodeIps[1]', 'excludeCidrs[0]', 'excludePorts[0]', 'excludePorts[1]']);
  const problems = (cfg: RedirectConfig): readonly string[] => {
    try {
      encodeRedirectConfig(cfg);
      return [];
    } catch (e) {
      return (e as ConfigError).problems;
    }
  };
  t.match(problems({ ...base, ztunnelIp: 'fd00::1' }), [/not an ipv4 address/]);
  t.match(problems({ ...base, excludePorts: Array.from({ length: 300 }, (_, i) => i + 1) }), [/at most 256 fit/]);
});

t.test('sums per-cpu counters', async (t) => {
  const cpu = (n: number) => (le ? [n, 0, 0, 0, 0, 0, 0, 0] : [0, 0, 0, 0, 0, 0, 0, n]);
  const stats = decodeStats(new Map([[0, [cpu(2), cpu(3)]], [7, [cpu(1), cpu(0)]]]));
  t.equal(stats.redirected, 5);
  t.equal(stats.strictDropped, 1);
  t.equal(stats.peerMoved, 0);
  t.equal(Object.keys(stats).length, STAT_NAMES.length);
});
