import t from 'tap';
import { ConfigError } from '../../../core/errors.js';
import {
  Problems,
  Uniq,
  boolean,
  describe,
  field,
  indexPath,
  keyPath,
  list,
  mapping,
  oneOf,
  port,
  string,
  stringMap,
} from '../../../core/validation/check.js';

t.test('paths', async (t) => {
  t.equal(keyPath('', 'nodes'), 'nodes');
  t.equal(keyPath('workloads[0]', 'labels'), 'workloads[0].labels');
  t.equal(keyPath('labels', 'app.kubernetes.io/name'), 'labels["app.kubernetes.io/name"]');
  t.equal(keyPath('portLevelMtls', '8080'), 'portLevelMtls["8080"]');
  t.equal(indexPath('ips', 2), 'ips[2]');
});

t.test('describe', async (t) => {
  t.same([undefined, null, 'x', 1, true, [], {}].map(describe), ['nothing', 'null', '"x"', '1', 'true', 'a list', 'a mapping']);
});

t.test('checkers record problems and keep going', async (t) => {
  const p = new Problems();
  t.equal(port(p, 'a', 80), 80);
  t.equal(port(p, 'b', '80'), undefined, 'strings only when allowed');
  t.equal(port(p, 'c', '80', true), 80);
  t.equal(port(p, 'd', 65536), undefined);
  t.equal(boolean(p, 'e', false), false);
  t.equal(oneOf(p, 'f', 'B', ['A', 'B'] as const), 'B');
  t.equal(oneOf(p, 'g', 'b', ['A', 'B'] as const), undefined);
  t.equal(string(p, 'h', '', 'a name'), undefined);
  t.equal(string(p, 'i', 'x', 'a name', (s) => (s === 'x' ? 'no x' : undefined)), undefined);
  t.same(list(p, 'j', [1, 'x', 2], (v, q) => port(p, q, v)), [1, 2], 'good elements kept');
  t.equal(list(p, 'k', [], () => 1, { nonEmpty: 'add one' }), undefined);
  t.same(stringMap(p, 'l', { a: 'b' }), { a: 'b' });
  t.equal(stringMap(p, 'm', { a: true }), undefined);
  t.same(p.list, [
    'b: "80" is not a port; expected an integer from 1 to 65535',
    'd: 65536 is not a port; expected an integer from 1 to 65535',
    'g: "b" is not allowed; expected one of A, B',
    'h: expected a name, got ""',
    'i: no x',
    'j[1]: "x" is not a port; expected an integer from 1 to 65535',
    'k: must not be empty; add one',
    'm.a: expected a string value, got true (quote it: "true")',
  ]);
  t.equal(p.size, 8);
});

t.test('mapping: unknown keys with suggestions; field: required and absent', async (t) => {
  const p = new Problems();
  const m = mapping(p, 'x', { nmae: 1, zzz: 2, name: 'a' }, ['name', 'namespace']);
  t.ok(m, 'mapping returned despite unknown keys');
  t.equal(mapping(p, 'y', [1], ['a']), undefined);
  t.equal(field(p, 'x', { a: null }, 'a', () => 1, { required: true, expected: 'a thing' }), undefined);
  t.equal(field(p, 'x', {}, 'b', () => 1), undefined, 'optional and absent: no problem');
  t.equal(field(p, 'x', { c: 0 }, 'c', (v) => v), 0);
  t.same(p.list, [
    'x.nmae: unknown key; did you mean "name"? allowed keys here: name, namespace',
    'x.zzz: unknown key; allowed keys here: name, namespace',
    'y: expected a mapping, got a list',
    'x.a: required field is missing; expected a thing',
  ]);
});

t.test('issue 19: mapping suggests a key for the first 20 unknown keys of a mapping only, so 100,000 unknown keys cost no edit distance each', async (t) => {
  const many: Record<string, number> = {};
  for (let i = 0; i < 100_000; i++) many[`k${i}`] = i;
  const p = new Problems();
  mapping(p, 'm', { nmae: 1, ...many, nmaespace: 2 }, ['name', 'namespace']);
  t.equal(p.size, 100_002, 'every unknown key is still reported');
  t.equal(p.list[0], 'm.nmae: unknown key; did you mean "name"? allowed keys here: name, namespace', 'the first unknown keys get their suggestion');
  t.equal(p.list.at(-1), 'm.nmaespace: unknown key; allowed keys here: name, namespace', 'past the 20th, a typo is reported without one');
  t.equal(p.list.filter((x) => x.includes('did you mean')).length, 1, 'no suggestion among the rest');
});

t.test('issue 19: the 20 suggestions are per collector, so 18,000 mappings with a typo each cost 20 edit distances', async (t) => {
  const p = new Problems();
  for (let i = 0; i < 18_000; i++) mapping(p, `m[${i}]`, { nmae: 1 }, ['name', 'namespace']);
  t.equal(p.size, 18_000, 'every unknown key is still reported');
  t.equal(p.list.filter((x) => x.includes('did you mean')).length, 20, 'the first 20 get a suggestion');
  t.equal(p.list.at(-1), 'm[17999].nmae: unknown key; allowed keys here: name, namespace');
  const other = new Problems();
  mapping(other, 'x', { nmae: 1 }, ['name', 'namespace']);
  t.match(other.list[0], /did you mean "name"/, 'another collector has its own 20');
});

t.test('issue 19: a ConfigError lists 50 problems in its message and keeps them all', async (t) => {
  const problems = Array.from({ length: 18_000 }, (_, i) => `entries[${i}]: expected a mapping, got a list`);
  const e = new ConfigError('mesh.yaml', problems);
  t.equal(e.problems.length, 18_000);
  t.equal(e.message.split('\n').length, 1 + 50 + 1, 'the heading, 50 problems and the count of the rest');
  t.match(e.message, /… and 17950 more problems \(18000 in all\)$/);
  t.equal(new ConfigError('mesh.yaml', ['a: bad']).message, 'invalid configuration in mesh.yaml:\n  - a: bad', 'a short list is shown whole');
});

t.test('Uniq names the first holder', async (t) => {
  const p = new Problems();
  const u = new Uniq(p, 'address');
  t.ok(u.check('1.1.1.1', 'a[0]'));
  t.notOk(u.check('1.1.1.1', 'b[0]'));
  t.equal(u.where('1.1.1.1'), 'a[0]');
  t.same(p.list, ['b[0]: duplicate address "1.1.1.1"; first used at a[0]']);
});
