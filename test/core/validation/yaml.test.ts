/**
 * YAML a user wrote is read with an API server's limits (core/validation/yaml.ts): aliases are
 * fine until they amplify, a document expanded past 1.5 MiB is refused on its own, nesting is
 * bounded; and the parsers built on it report these like any other problem.
 */
import t from 'tap';
import { YAMLException } from 'js-yaml';
import { loadYamlDocument, loadYamlDocuments, YAML_LIMITS } from '../../../core/validation/yaml.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import { keyPath, Problems, mapping, quote } from '../../../core/validation/check.js';

/** The "billion laughs": 9 levels of 9 aliases, 431 bytes standing for 9^9 strings. */
function aliasBomb(prefix = ''): string {
  const lines = [`${prefix}a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]`];
  for (let i = 1; i < 9; i++) lines.push(`${prefix}a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(',')}]`);
  return lines.join('\n') + '\n';
}

const namespace = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;

t.test('anchors and aliases a person writes are read; an amplifying document is refused alone', async (t) => {
  const small = loadYamlDocuments('base: &b {x: 1}\nuse: *b\n', 'small.yaml');
  t.same(small.docs, [{ base: { x: 1 }, use: { x: 1 } }], 'an alias is its anchor');
  t.same(small.tooLarge, []);

  const bomb = loadYamlDocuments(`${namespace('first')}---\n${aliasBomb()}---\n${namespace('third')}`, 'bomb.yaml');
  t.equal(bomb.docs.length, 3);
  t.same(bomb.tooLarge.map((x) => x.index), [1], 'only the amplifying document is refused');
  t.match(bomb.tooLarge[0]?.message, /larger than 1572864 bytes once its aliases are expanded/);
  t.match(bomb.docs[0], { metadata: { name: 'first' } });
  t.equal(bomb.docs[1], undefined);
  t.match(bomb.docs[2], { metadata: { name: 'third' } });
});

t.test('a document of plain content past the object limit is refused as well', async (t) => {
  const big = `apiVersion: v1\nkind: ConfigMap\ndata:\n  blob: "${'x'.repeat(YAML_LIMITS.maxDocumentBytes)}"\n`;
  t.same(loadYamlDocuments(big, 'big.yaml').tooLarge.map((x) => x.index), [0]);
  const fits = `apiVersion: v1\nkind: ConfigMap\ndata:\n  blob: "${'x'.repeat(1024 * 1024)}"\n`;
  t.same(loadYamlDocuments(fits, 'fits.yaml').tooLarge, [], 'a 1 MiB value fits');
});

t.test('nesting and alias counts are bounded at parse time, as syntax errors with a position', async (t) => {
  t.throws(() => loadYamlDocuments('['.repeat(YAML_LIMITS.maxDepth + 1) + ']'.repeat(YAML_LIMITS.maxDepth + 1), 'deep.yaml'), { name: 'YAMLException', message: /nesting exceeded maxDepth \(100\)/ });
  const many = ['a: &a 1', ...Array.from({ length: YAML_LIMITS.maxAliases + 1 }, (_, i) => `k${i}: *a`)].join('\n');
  t.throws(() => loadYamlDocuments(many, 'many.yaml'), { name: 'YAMLException', message: /aliases exceeded maxAliases \(1000\)/ });
  t.throws(() => loadYamlDocument('a: 1\n---\nb: 2\n', 'two.yaml'), YAMLException, 'one document where one is expected');
  t.throws(() => loadYamlDocument(aliasBomb(), 'bomb.yaml'), { message: /once its aliases are expanded/ });
});

t.test('parseManifests: the bomb is a problem on its document; the rest of the file applies', async (t) => {
  const text = `${namespace('apps')}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bomb\n  annotations:\n    x: y\nlaughs:\n${aliasBomb('  ')}---\n${namespace('web')}`;
  const r = parseManifests(text, 'apps.yaml');
  t.same(r.objects.map((o) => o.meta.name), ['apps', 'web']);
  t.same(
    r.problems.map((p) => ({ object: p.object, severity: p.severity })),
    [{ object: 'apps.yaml#2', severity: 'error' }],
    'one error, on the second document',
  );
  t.match(r.problems[0]?.message, /once its aliases are expanded/);
});

t.test('parseMeshConfig: the bomb is a ConfigError, as any other bad file', async (t) => {
  t.throws(() => parseMeshConfig(`workloads: []\nx:\n${aliasBomb('  ')}`, 'ztunnel.yaml'), { code: 'ERR_CONFIG', message: /once its aliases are expanded/ });
});

t.test('a 1 MiB key makes a short message, and is compared with no allowed key', async (t) => {
  const key = 'k'.repeat(1 << 20);
  const p = new Problems();
  mapping(p, 'spec', { [key]: 1, acton: 'DENY' }, ['selector', 'action', 'rules']);
  t.equal(p.size, 2);
  t.ok((p.list[0] ?? '').length < 300, `the message is short (${(p.list[0] ?? '').length} characters)`);
  t.match(p.list[0], /^spec\["k{100}"… \(1048576 characters\)\]: unknown key; allowed keys here/);
  t.match(p.list[1], /acton: unknown key; did you mean "action"\?/, 'a near key still gets its suggestion');
  t.equal(keyPath('a', 'x'.repeat(101)).length < 150, true, 'an identifier-like key past the limit is quoted and cut too');
});

t.test('the text of one document past the request limit is refused before it is parsed; a long file of small ones is read', async (t) => {
  const list = (bytes: number) => `items:\n${'- x\n'.repeat(Math.ceil(bytes / 4))}`;
  const blob = (bytes: number) => `data:\n  blob: "${'x'.repeat(bytes)}"\n`;
  const huge = `${namespace('first')}---\n${list(YAML_LIMITS.maxDocumentText + 1024)}---\n${namespace('third')}---\nbad: [`;
  t.throws(() => loadYamlDocuments(huge, 'huge.yaml'), { name: 'YAMLException', mark: { line: huge.split('\n').length - 1 } }, 'a syntax error after the refused piece keeps its line in the whole file');
  const r = loadYamlDocuments(huge.slice(0, huge.lastIndexOf('---')), 'huge.yaml');
  t.same(r.tooLarge.map((x) => x.index), [1]);
  t.match(r.tooLarge[0]?.message, /the document's text is \d+ bytes, over the 3145728 an API server takes in one request/);
  t.match(r.docs[0], { metadata: { name: 'first' } });
  t.match(r.docs[2], { metadata: { name: 'third' } });

  const long = [namespace('a'), blob(1.1 * 1024 * 1024), blob(1.1 * 1024 * 1024), blob(1.1 * 1024 * 1024), namespace('e')].join('---\n');
  t.ok(long.length > YAML_LIMITS.maxDocumentText, 'the file is longer than one request');
  const l = loadYamlDocuments(long, 'long.yaml');
  t.same(l.tooLarge, [], 'no document is too large');
  t.equal(l.docs.length, 5);
  t.match(l.docs[4], { metadata: { name: 'e' } });
});

t.test('quote: what a message repeats of a user string cannot disguise a log line', async (t) => {
  t.equal(quote('ok'), '"ok"');
  t.equal(quote('a\r\nb'), '"a\\r\\nb"', 'CR and LF escaped');
  t.equal(quote('admin\u202egnp.exe'), '"admin\\u202egnp.exe"', 'a bidi override escaped');
  t.equal(quote('a\u200bb\ufeff\u0085'), '"a\\u200bb\\ufeff\\u0085"', 'zero-width space, BOM and a C1 control escaped');
  t.equal(quote('é'), '"é"', 'ordinary letters stay as they are');
});

