import t from 'tap';
import { canonicalIp, cidrContains, formatIp, parseCidr, parseIp } from '../../../core/model/ip.js';
import { Problems } from '../../../core/validation/check.js';
import { PolicySpecParser } from '../../../core/kube/authorization-policy.js';

t.test('canonical text of IPv4 and IPv6 addresses', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['::', '::'],
    ['::1', '::1'],
    ['FD00:0:0::1', 'fd00::1'],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1'],
    ['1:0:0:0:1:0:0:0', '1::1:0:0:0'], // first of two equal zero runs is compressed
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'], // a single zero group is not compressed
    ['::ffff:10.1.2.3', '10.1.2.3'], // IPv4-mapped becomes IPv4
    ['2001:db8::1.2.3.4', '2001:db8::102:304'],
    ['fe80::1%eth0', 'fe80::1'],
    ['10.0.0.300', undefined],
    ['010.0.0.1', undefined],
    ['x', undefined],
    ['', undefined],
  ];
  for (const [input, want] of cases) t.equal(canonicalIp(input), want, input);
  t.equal(formatIp({ family: 4, value: 0xffffffffn }), '255.255.255.255');
});

t.test('CIDR parsing and containment', async (t) => {
  t.same(parseCidr('10.0.0.1/24'), { family: 4, network: 0x0a000000n, prefixLength: 24 }, 'host bits are cleared');
  t.same(parseCidr('10.0.0.1'), { family: 4, network: 0x0a000001n, prefixLength: 32 }, 'single address is a /32');
  t.equal(parseCidr('fd00::1')?.prefixLength, 128);
  t.same(parseCidr('::ffff:10.0.0.0/104'), { family: 4, network: 0x0a000000n, prefixLength: 8 }, 'v4-mapped block');
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/x', 'fd00::/129', 'nope/8', 'fe80::%eth0/64', '10.0.0.0/-1']) {
    t.equal(parseCidr(bad), undefined, bad);
  }
  const has = (c: string, ip: string) => cidrContains(parseCidr(c)!, parseIp(ip)!);
  t.ok(has('10.0.0.0/8', '10.200.1.1'));
  t.notOk(has('10.0.0.0/8', '11.0.0.1'));
  t.ok(has('10.0.0.0/8', '::ffff:10.1.1.1'), 'IPv4-mapped source matches an IPv4 block');
  t.ok(has('0.0.0.0/0', '1.2.3.4'));
  t.ok(has('fd00::/16', 'fd00:1::1'));
  t.notOk(has('fd00::/16', 'fd01::1'));
  t.notOk(has('::/0', '10.0.0.1'), 'families never mix');
  t.ok(has('::/0', 'fd00::1'));
});

t.test('issue 19: leading zeros are refused in a prefix length and in IPv4 octets, as Go net/netip refuses them', async (t) => {
  for (const bad of ['10.0.0.0/024', '10.0.0.0/08', '10.0.0.0/00', 'fd00::/064', '010.0.0.1', '10.0.0.01/8', '10.0.0.0/+8']) {
    t.equal(parseCidr(bad), undefined, `${bad} is refused`);
  }
  t.equal(parseCidr('0.0.0.0/0')?.prefixLength, 0, '/0 is one zero, accepted');
  t.equal(parseCidr('10.0.0.0/8')?.prefixLength, 8);
  // The policy parsers use parseCidr: the user sees the field and what is allowed.
  const p = new Problems();
  new PolicySpecParser(p, 'istio-system').authorizationPolicy({ name: 'x', namespace: 'default' }, { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/024'] } }] }] }, 'spec');
  t.same(p.list, ['spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.0/024" is not an IP address or CIDR block; expected e.g. 10.0.0.0/8, 10.1.2.3 or fd00::/64']);
});
