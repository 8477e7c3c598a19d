/**
 * RequestAuthentication (core/kube/request-authentication.ts): every field as Istio defines it,
 * every refusal with the object, field and limit, the JWKS check the waypoint shares, and the
 * kind through manifests, the converter and the discovery wire. Keys are generated here with jose.
 */
import t from 'tap';
import { exportJWK, generateKeyPair } from 'jose';
import { Problems } from '../../../core/validation/check.js';
import {
  JWKS_MAX_BYTES,
  JWKS_MAX_KEYS,
  JWT_FIELD_MAX,
  JWT_LIST_MAX,
  RequestAuthenticationConverter,
  checkJwks,
  jwksUriProblem,
} from '../../../core/kube/request-authentication.js';
import { formatProblem } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { convertManifests } from '../../../core/kube/convert.js';
import { decodeResource, encodeResource } from '../../../core/discovery/wire.js';
import { docs, ns } from './documents.js';

const rsa = await generateKeyPair('RS256', { extractable: true });
const ec = await generateKeyPair('ES256', { extractable: true });
const rsaJwk = { ...(await exportJWK(rsa.publicKey)), kid: 'r1', alg: 'RS256', use: 'sig' };
const ecJwk = { ...(await exportJWK(ec.publicKey)), kid: 'e1' };
const JWKS = JSON.stringify({ keys: [rsaJwk, ecJwk] });

const convert = (spec: Record<string, unknown>, namespace = 'apps') => {
  const p = new Problems();
  const ra = new RequestAuthenticationConverter(p, 'istio-system').requestAuthentication('jwt', namespace, spec, 'spec');
  return { ra, problems: p.list };
};
const target = [{ kind: 'Service', group: '', name: 'echo' }];

t.test('every field of a jwtRule becomes the model', async (t) => {
  const { ra, problems } = convert({
    targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }, ...target],
    jwtRules: [
      {
        issuer: 'https://issuer.example',
        audiences: ['api', 'web'],
        jwksUri: 'https://issuer.example/jwks.json',
        fromHeaders: [{ name: 'X-Jwt', prefix: 'Token ' }, { name: 'x-other' }],
        fromParams: ['token'],
        forwardOriginalToken: true,
        outputPayloadToHeader: 'X-Jwt-Payload',
        outputClaimToHeaders: [{ header: 'X-Sub', claim: 'sub' }, { header: 'x-team', claim: 'org.team' }],
        spaceDelimitedClaims: ['roles'],
        timeout: '2s',
      },
      { issuer: 'inline', jwks: JWKS },
    ],
  });
  t.same(problems, []);
  t.same(ra, {
    name: 'jwt',
    namespace: 'apps',
    targetRefs: [{ kind: 'Gateway', name: 'waypoint' }, { kind: 'Service', name: 'echo' }],
    selector: {},
    jwtRules: [
      {
        issuer: 'https://issuer.example',
        audiences: ['api', 'web'],
        jwksUri: 'https://issuer.example/jwks.json',
        fromHeaders: [{ name: 'x-jwt', prefix: 'Token ' }, { name: 'x-other', prefix: '' }],
        fromParams: ['token'],
        forwardOriginalToken: true,
        outputPayloadToHeader: 'x-jwt-payload',
        outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }, { header: 'x-team', claim: 'org.team' }],
        spaceDelimitedClaims: ['roles'],
        timeoutMs: 2000,
      },
      { issuer: 'inline', audiences: [], jwks: JWKS, fromHeaders: [], fromParams: [], forwardOriginalToken: false, outputClaimToHeaders: [], spaceDelimitedClaims: [] },
    ],
  });
  const both = convert({ targetRefs: target, jwtRules: [{ issuer: 'i', jwks: JWKS, jwks_uri: 'http://10.0.0.1/keys' }] });
  t.same(both.problems, []);
  t.equal(both.ra?.jwtRules[0]?.jwks, JWKS, 'the inline set wins over the URL, as in Istio');
  t.equal(both.ra?.jwtRules[0]?.jwksUri, undefined);
  t.equal(convert({ targetRefs: target, jwtRules: [{ issuer: 'i', jwks_uri: 'http://10.0.0.1/keys' }] }).ra?.jwtRules[0]?.jwksUri, 'http://10.0.0.1/keys', 'jwks_uri is jwksUri under its protobuf name');
  const sel = convert({ selector: { matchLabels: { app: 'web' } }, jwtRules: [{ issuer: 'i', jwks: JWKS }] });
  t.same(sel.problems, []);
  t.same([sel.ra?.selector, sel.ra?.targetRefs], [{ app: 'web' }, []], 'a selector policy is kept, with no targets');
});

t.test('refusals name the field and the rule or limit', async (t) => {
  const long = 'x'.repeat(JWT_FIELD_MAX + 1);
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['selector with targetRefs', { selector: { matchLabels: { a: 'b' } }, targetRefs: target }, /^spec: selector and targetRefs cannot both be set/],
    ['targetRef', { targetRef: target[0], jwtRules: [] }, /^spec.targetRef: is deprecated in Istio; list every target under targetRefs/],
    ['empty targetRefs', { targetRefs: [] }, /^spec.targetRefs: must not be empty/],
    ['unknown target kind', { targetRefs: [{ kind: 'Pod', name: 'x' }] }, /^spec.targetRefs\[0\].kind: "Pod" is not supported by the mesh/],
    ['no issuer', { jwtRules: [{ jwks: JWKS }] }, /^spec.jwtRules\[0\].issuer: required field is missing/],
    ['no keys', { jwtRules: [{ issuer: 'i' }] }, /^spec.jwtRules\[0\]: set jwks or jwksUri: the mesh does not discover keys/],
    ['fromCookies', { jwtRules: [{ issuer: 'i', jwks: JWKS, fromCookies: ['c'] }] }, /^spec.jwtRules\[0\].fromCookies: is not supported by the mesh/],
    ['unknown key', { jwtRules: [{ issuer: 'i', jwks: JWKS, audience: ['a'] }] }, /^spec.jwtRules\[0\].audience: unknown key; did you mean "audiences"\?/],
    ['empty audience', { jwtRules: [{ issuer: 'i', jwks: JWKS, audiences: [''] }] }, /^spec.jwtRules\[0\].audiences\[0\]: expected a non-empty audience/],
    ['long issuer', { jwtRules: [{ issuer: long, jwks: JWKS }] }, new RegExp(`^spec.jwtRules\\[0\\].issuer: .* is too long for an issuer; at most ${JWT_FIELD_MAX} characters`)],
    ['issuer with ESC', { jwtRules: [{ issuer: 'a\u001b[31m', jwks: JWKS }] }, /^spec.jwtRules\[0\].issuer: "a\\u001b\[31m" is not an issuer: control characters are not allowed/],
    ['too many audiences', { jwtRules: [{ issuer: 'i', jwks: JWKS, audiences: Array.from({ length: JWT_LIST_MAX + 1 }, (_, i) => `a${i}`) }] }, new RegExp(`^spec.jwtRules\\[0\\].audiences: has ${JWT_LIST_MAX + 1} entries; at most ${JWT_LIST_MAX}`)],
    ['ftp jwksUri', { jwtRules: [{ issuer: 'i', jwksUri: 'ftp://x/keys' }] }, /^spec.jwtRules\[0\].jwksUri: "ftp:\/\/x\/keys": scheme "ftp" is not supported; expected http or https/],
    ['not a URL', { jwtRules: [{ issuer: 'i', jwksUri: 'keys.json' }] }, /^spec.jwtRules\[0\].jwksUri: "keys.json" is not a URL/],
    ['URL with credentials', { jwtRules: [{ issuer: 'i', jwksUri: 'https://u:p@x/keys' }] }, /credentials in a URL are not supported/],
    ['JWKS not JSON', { jwtRules: [{ issuer: 'i', jwks: '{keys: [' }] }, /^spec.jwtRules\[0\].jwks: is not JSON: /],
    ['JWKS without keys', { jwtRules: [{ issuer: 'i', jwks: '{"kty":"RSA"}' }] }, /^spec.jwtRules\[0\].jwks: is not a JWK set; expected a JSON object \{"keys": \[...\]\}/],
    ['empty JWKS', { jwtRules: [{ issuer: 'i', jwks: '{"keys":[]}' }] }, /^spec.jwtRules\[0\].jwks: has no keys/],
    ['symmetric key', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] }) }] }, /^spec.jwtRules\[0\].jwks: key 0 \(kid "h"\): kty "oct" \(a shared secret, HS256 ...\) is not supported/],
    ['unknown kty', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [rsaJwk, { kty: 'XYZ' }] }) }] }, /^spec.jwtRules\[0\].jwks: key 1: kty "XYZ" is not supported; expected RSA, EC or OKP/],
    ['secp256k1', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ ...ecJwk, crv: 'secp256k1' }] }) }] }, /EC curve "secp256k1" is not supported/],
    ['X25519', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ kty: 'OKP', crv: 'X25519', x: 'AA' }] }) }] }, /OKP curve "X25519" is not supported; expected Ed25519 or Ed448/],
    ['private key', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ ...ecJwk, d: 'AAAA' }] }) }] }, /holds a private key \("d"\); a JWKS must carry public keys only/],
    ['alg none', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ ...rsaJwk, alg: 'none' }] }) }] }, /alg "none" is not supported; expected one of RS256/],
    ['enc key', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ ...rsaJwk, use: 'enc' }] }) }] }, /use "enc" is not a signature key/],
    ['broken RSA', { jwtRules: [{ issuer: 'i', jwks: JSON.stringify({ keys: [{ kty: 'RSA', n: 'AQAB' }] }) }] }, /key 0: is not a valid RSA key: /],
    ['header name', { jwtRules: [{ issuer: 'i', jwks: JWKS, fromHeaders: [{ name: 'x jwt' }] }] }, /^spec.jwtRules\[0\].fromHeaders\[0\].name: "x jwt" is not a valid header name/],
    ['header prefix CRLF', { jwtRules: [{ issuer: 'i', jwks: JWKS, fromHeaders: [{ name: 'x-jwt', prefix: 'a\r\nb' }] }] }, /^spec.jwtRules\[0\].fromHeaders\[0\].prefix: "a\\r\\nb" is not an HTTP header value/],
    ['empty header name', { jwtRules: [{ issuer: 'i', jwks: JWKS, fromHeaders: [{ name: '' }] }] }, /^spec.jwtRules\[0\].fromHeaders\[0\].name: expected a header name/],
    ['empty param', { jwtRules: [{ issuer: 'i', jwks: JWKS, fromParams: [''] }] }, /^spec.jwtRules\[0\].fromParams\[0\]: expected a query parameter name/],
    ['output header host', { jwtRules: [{ issuer: 'i', jwks: JWKS, outputPayloadToHeader: 'Host' }] }, /^spec.jwtRules\[0\].outputPayloadToHeader: "Host" is a header the waypoint manages/],
    ['claim header', { jwtRules: [{ issuer: 'i', jwks: JWKS, outputClaimToHeaders: [{ header: 'x:y', claim: 'sub' }] }] }, /^spec.jwtRules\[0\].outputClaimToHeaders\[0\].header: "x:y" is not a valid header name/],
    ['claim missing', { jwtRules: [{ issuer: 'i', jwks: JWKS, outputClaimToHeaders: [{ header: 'x-sub' }] }] }, /^spec.jwtRules\[0\].outputClaimToHeaders\[0\].claim: required field is missing/],
    ['bad timeout', { jwtRules: [{ issuer: 'i', jwks: JWKS, timeout: 'soon' }] }, /^spec.jwtRules\[0\].timeout: "soon" is not a duration/],
    ['long timeout', { jwtRules: [{ issuer: 'i', jwks: JWKS, timeout: '1h' }] }, /^spec.jwtRules\[0\].timeout: "1h" is too long; a request waits at most 30s for keys/],
    ['GatewayClass outside root', { targetRefs: [{ kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' }] }, /only honoured in the root namespace istio-system/],
  ];
  for (const [name, spec, want] of cases) {
    const { ra, problems } = convert(spec);
    t.equal(ra, undefined, `${name}: refused`);
    t.match(problems, [want], `${name}: ${problems[0]}`);
  }
});

t.test('checkJwks: limits and what the fetcher keeps', async (t) => {
  t.match(checkJwks('x'.repeat(JWKS_MAX_BYTES + 1)), new RegExp(`a JWKS may have at most ${JWKS_MAX_BYTES} bytes`));
  t.match(checkJwks(JSON.stringify({ keys: Array.from({ length: JWKS_MAX_KEYS + 1 }, () => rsaJwk) })), new RegExp(`at most ${JWKS_MAX_KEYS}`));
  t.match(checkJwks('<html>'), /^is not JSON/);
  t.match(checkJwks('null'), /^is not a JWK set/);
  const mixed = checkJwks(JSON.stringify({ keys: [{ kty: 'oct', k: 'AA' }, rsaJwk, 'x'] }));
  t.ok(typeof mixed !== 'string' && mixed.keys.length === 1, 'the usable key is kept');
  t.match(typeof mixed === 'string' ? [] : mixed.refused, [/^key 0: kty "oct"/, /^key 2: expected a JWK \(a JSON object\), got "x"/]);
  t.equal(jwksUriProblem('http://127.0.0.1:8080/keys'), undefined);
  t.match(jwksUriProblem(`https://x/${'a'.repeat(JWT_FIELD_MAX)}`), /too long for a URL/);
});

const ra = (name: string, spec: Record<string, unknown>, apiVersion = 'security.istio.io/v1') => ({
  apiVersion,
  kind: 'RequestAuthentication',
  metadata: { name, namespace: 'apps' },
  spec,
});

t.test('manifests: both apiVersions, problems name the object, targetRefs ones reach the waypoint config', async (t) => {
  const { objects, problems } = parseManifests(
    docs(
      ns('apps'),
      ra('jwt', { targetRefs: target, jwtRules: [{ issuer: 'i', jwksUri: 'http://10.0.0.1/keys' }] }),
      ra('old', { targetRefs: target, jwtRules: [{ issuer: 'j', jwks: JWKS }] }, 'security.istio.io/v1beta1'),
      ra('sidecar', { selector: { matchLabels: { app: 'web' } }, jwtRules: [{ issuer: 'k', jwks: JWKS }] }),
      ra('bad', { targetRefs: target, jwtRules: [{ issuer: 'i', jwks: '{"keys":[{"kty":"oct","k":"AA"}]}' }] }),
      ra('schema', { jwtRules: [{ issuer: 5 }] }),
    ),
    'ra.yaml',
  );
  t.same(objects.map((o) => `${o.kind}/${o.meta.name}`), ['Namespace/apps', 'RequestAuthentication/jwt', 'RequestAuthentication/old', 'RequestAuthentication/sidecar']);
  const shown = problems.map(formatProblem);
  t.match(shown, [
    /^ra.yaml#2: RequestAuthentication apps\/jwt: spec.targetRefs: enforced by the waypoint it targets, not by ztunnel$/,
    /^ra.yaml#3: RequestAuthentication apps\/old: spec.targetRefs: enforced by the waypoint/,
    /^ra.yaml#4: RequestAuthentication apps\/sidecar: spec: validated by no proxy: in ambient mode only a waypoint validates JWTs/,
    /^ra.yaml#5: RequestAuthentication apps\/bad: spec.jwtRules\[0\].jwks: key 0: kty "oct"/,
    /^ra.yaml#6: RequestAuthentication apps\/schema: spec.jwtRules\[0\].issuer: /,
  ]);
  const { config, waypoint } = convertManifests({ objects, nodes: [], trustDomain: 'cluster.local' });
  t.same(config.requestAuthentications?.map((r) => r.name), ['jwt', 'old'], 'the selector policy is not sent to waypoints');
  t.same(waypoint.requestAuthentications.map((o) => o.meta.name), ['jwt', 'old']);

  // The discovery wire carries the spec as written and the receiver converts it again.
  const first = config.requestAuthentications![0]!;
  const wire = JSON.parse(JSON.stringify(encodeResource('requestAuthentications', first, waypoint.requestAuthentications[0]!.raw.spec)));
  t.same(decodeResource('requestAuthentications', wire), first, 'decoded as converted');
  t.throws(
    () => decodeResource('requestAuthentications', { name: 'x', namespace: 'apps', spec: { targetRefs: target, jwtRules: [{ issuer: 'i', jwksUri: 'gopher://x' }] } }),
    { code: 'ERR_DISCOVERY_WIRE', message: /requestAuthentications.spec.jwtRules\[0\].jwksUri: "gopher:\/\/x": scheme "gopher" is not supported/ },
  );
  t.throws(() => decodeResource('requestAuthentications', { name: 'x', namespace: 'apps', spec: { jwtRules: 'x' } }), { code: 'ERR_DISCOVERY_WIRE' }, 'the schema first');
});
