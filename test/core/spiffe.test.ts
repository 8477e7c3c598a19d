import t from 'tap';
import { parseSpiffeId, formatSpiffeId, tryParseSpiffeId } from '../../core/identity/spiffe.js';

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
  }
});
