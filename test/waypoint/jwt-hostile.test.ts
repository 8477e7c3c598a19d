/**
 * Issue 19, item 2, for the JWT boundaries (issue 15, item 3): hostile JWKS texts, RequestAuthentication
 * specs and tokens, generated with fast-check (fixed seed, bounded runs). What may leave each
 * boundary is exactly what is documented: `checkJwks` returns a reason or the keys and never
 * throws; the converter records problems and never throws; `authenticate` resolves (no token) or
 * rejects with JwtRejectedError, nothing else, and never lets a token through that the keys did
 * not sign. In-process: these are pure functions over strings (the waypoint's use of them is
 * test/waypoint/jwt.test.ts).
 */
import t from 'tap';
import fc from 'fast-check';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { Problems } from '../../core/validation/check.js';
import { RequestAuthenticationConverter, checkJwks } from '../../core/kube/request-authentication.js';
import { JwksFetcher, JwtRejectedError, authenticate } from '../../waypoint/jwt.js';
import { silentLogger } from '../../core/telemetry/log.js';
import type { RequestAuthentication } from '../../core/model/types.js';

const SEED = 15;
const RUNS = 300;

const key = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(key.publicKey)), kid: 'k' };
const ISS = 'https://issuer.example';
const policy: RequestAuthentication = {
  name: 'jwt',
  namespace: 'apps',
  targetRefs: [{ kind: 'Service', name: 'echo' }],
  selector: {},
  jwtRules: [
    {
      issuer: ISS,
      audiences: ['echo'],
      jwks: JSON.stringify({ keys: [jwk] }),
      fromHeaders: [],
      fromParams: [],
      forwardOriginalToken: false,
      outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }],
      spaceDelimitedClaims: [],
    },
  ],
};
const valid = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer(ISS).setAudience('echo').setExpirationTime('10m').sign(key.privateKey);
// Never fetches: the policy's keys are inline.
const jwks = new JwksFetcher({ refreshMs: 60_000, fetchTimeoutMs: 100, logger: silentLogger });
t.teardown(() => jwks.close());

/** What `authenticate` did: 'none' (no token), 'ok' (verified), or the JwtRejectedError's reason; anything else is 'escaped: ...'. */
async function outcome(headers: Record<string, string>, path = '/'): Promise<string> {
  try {
    const auth = await authenticate([policy], { headers: { ...headers }, path }, jwks);
    return auth ? 'ok' : 'none';
  } catch (e) {
    return e instanceof JwtRejectedError ? e.reason : `escaped: ${(e as Error)?.constructor?.name} ${String(e)}`;
  }
}

const jsonish = fc.oneof(
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.array(fc.dictionary(fc.constantFrom('kty', 'crv', 'n', 'e', 'x', 'y', 'd', 'k', 'alg', 'use', 'kid'), fc.oneof(fc.string(), fc.integer(), fc.constant(null))), { maxLength: 4 }).map((keys) => JSON.stringify({ keys })),
  fc.constantFrom('', 'null', '[]', '{"keys":null}', '{"keys":{}}', '{"keys":[null]}', '{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}'),
);

t.test('checkJwks: a reason or the keys, never an exception', async (t) => {
  let n = 0;
  fc.assert(
    fc.property(jsonish, (text) => {
      n++;
      const r = checkJwks(text);
      return typeof r === 'string' || (Array.isArray(r.keys) && Array.isArray(r.refused) && r.keys.length + r.refused.length > 0);
    }),
    { seed: SEED, numRuns: RUNS },
  );
  t.equal(n, RUNS, `${n} JWKS texts`);
});

t.test('the converter: problems on the object, never an exception', async (t) => {
  let refused = 0;
  fc.assert(
    fc.property(
      fc.record({
        targetRefs: fc.constant([{ kind: 'Service', group: '', name: 'echo' }]),
        jwtRules: fc.array(
          fc.dictionary(
            fc.constantFrom('issuer', 'audiences', 'jwks', 'jwksUri', 'fromHeaders', 'fromParams', 'outputPayloadToHeader', 'outputClaimToHeaders', 'timeout', 'forwardOriginalToken'),
            fc.oneof(fc.string(), jsonish, fc.array(fc.string(), { maxLength: 3 }), fc.array(fc.record({ name: fc.string(), prefix: fc.string(), header: fc.string(), claim: fc.string() }), { maxLength: 2 }), fc.boolean()),
          ),
          { maxLength: 3 },
        ),
      }),
      (spec) => {
        const p = new Problems();
        const r = new RequestAuthenticationConverter(p, 'istio-system').requestAuthentication('x', 'apps', spec, 'spec');
        if (r === undefined) refused++;
        return (r === undefined) === (p.size > 0);
      },
    ),
    { seed: SEED, numRuns: RUNS },
  );
  t.ok(refused > 0, `${refused} of ${RUNS} hostile specs refused with problems`);
});

t.test('authenticate: no token, a verified one, or JwtRejectedError; a changed token never verifies', async (t) => {
  t.equal(await outcome({ authorization: `Bearer ${valid}` }), 'ok', 'the valid token verifies (the property below can fail)');
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 200 }),
        // The valid token with one character changed, cut, or a part swapped: must not verify.
        fc.tuple(fc.nat({ max: valid.length - 1 }), fc.constantFrom(...'AZaz09-_.=+/ ')).map(([i, c]) => valid.slice(0, i) + c + valid.slice(i + 1)),
        fc.nat({ max: valid.length - 1 }).map((i) => valid.slice(0, i)),
        fc.constantFrom(valid.split('.').reverse().join('.'), `${valid}.x`, `..`, `.${valid}`, 'x'.repeat(20_000)),
      ),
      fc.constantFrom('authorization', 'x-other'),
      async (token, where) => {
        const r = await outcome(where === 'authorization' ? { authorization: `Bearer ${token}` } : { [where]: token }, `/?access_token=${encodeURIComponent(token)}`);
        seen.set(r, (seen.get(r) ?? 0) + 1);
        if (r.startsWith('escaped')) return false;
        // A changed token may equal the valid one (a character replaced by itself).
        return r !== 'ok' || token === valid;
      },
    ),
    { seed: SEED, numRuns: RUNS },
  );
  t.notOk([...seen.keys()].some((k) => k.startsWith('escaped')), 'nothing but JwtRejectedError left authenticate');
  t.ok([...seen.keys()].filter((k) => k !== 'ok' && k !== 'none').length >= 3, `reasons seen: ${[...seen.keys()].join(' | ')}`);
});
