import t from 'tap';
import { parseSpiffeId, formatSpiffeId, spiffeIdProblem, tryParseSpiffeId } from '../../core/identity/spiffe.js';

t.test('parses and formats istio spiffe ids', async (t) => {
  const id = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
  t.same(id, { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' });
  t.equal(formatSpiffeId(id), 'spiffe://cluster.local/ns/default/sa/sleep');
});

t.test('rejects malformed ids with a message saying what is wrong', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['http://cluster.local/ns/a/sa/b', /scheme spiffe/],
    ['spiffe://cluster.local/ns/a', /expected spiffe:\/\//],
    ['spiffe://cluster.local/ns/a/sa/b/extra', /expected spiffe:\/\//],
    ['spiffe://cluster.local/ns/A/sa/b', /namespace "A"/],
    ['spiffe://cluster.local/ns/a/sa/-b', /service account "-b"/],
    ['spiffe://Bad Domain/ns/a/sa/b', /trust domain/],
    ['spiffe:///ns/a/sa/b', /trust domain/],
  ];
  for (const [input, msg] of cases) {
    t.throws(() => parseSpiffeId(input), { code: 'ERR_INVALID_SPIFFE_ID', message: msg }, input);
    t.equal(tryParseSpiffeId(input), undefined);
    t.match(spiffeIdProblem(input), msg, `${input}: the reason without an error`);
  }
  t.equal(spiffeIdProblem('spiffe://cluster.local/ns/default/sa/sleep'), undefined);
});

t.test('a long or disguised part is quoted short and escaped in the reason (issue 19)', async (t) => {
  const why = spiffeIdProblem(`spiffe://cluster.local/ns/${'a'.repeat(1_000_000)}/sa/b`) ?? '';
  t.ok(why.length < 300, `a 1 MB namespace makes a short reason (${why.length} characters)`);
  t.match(why, /namespace "a+"… \(1000000 characters\) is not a DNS-1123 label/);
  t.match(spiffeIdProblem('spiffe://cluster.local/ns/a\u202eb/sa/b'), /namespace "a\\u202eb"/, 'a bidi override is shown escaped');
});
