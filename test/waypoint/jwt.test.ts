/**
 * RequestAuthentication through the real waypoint (real HBONE, two real ztunnels, a client going
 * through ztunnel A's SOCKS5): RS256 keys inline, ES256 keys from a JWKS server (a real local HTTP
 * server) that rotates its key and then goes away, and the hostile cases of issue 15 (a JWKS that is
 * not JSON, a key of an unsupported type, a jwksUri that never answers, 20 KiB and 64 KiB tokens,
 * `none`): each gets its documented status and the waypoint keeps serving the rest.
 * Keys and tokens are made here with jose.
 */
import t from 'tap';
import http from 'node:http';
import { once } from 'node:events';
import net from 'node:net';
import { SignJWT, UnsecuredJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { closeServer } from '../helpers/net.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request, startWaypointMesh } from './fixture.js';
import { JWT_MAX_BYTES } from '../../waypoint/jwt.js';
import type { JwksStatus } from '../../waypoint/jwt.js';

// Loopback addresses of this file: 127.0.233.2/.3 = ztunnels, .10 = client, .21 = backend,
// .30 = waypoint, .40 = the JWKS servers, .100 = the service VIP.
const base = '127.0.233';
const CLIENT = `${base}.10`;
const VIP = `${base}.100`;
const WAYPOINT = { address: `${base}.30` };
const RSA_ISS = 'https://rsa.example';
const EC_ISS = 'https://ec.example';

const rsa = await generateKeyPair('RS256', { extractable: true });
const rsaOther = await generateKeyPair('RS256', { extractable: true });
const ec1 = await generateKeyPair('ES256', { extractable: true });
const ec2 = await generateKeyPair('ES256', { extractable: true });
const pub = async (k: CryptoKey, kid: string): Promise<JWK> => ({ ...(await exportJWK(k)), kid, use: 'sig' });
const rsaJwk = await pub(rsa.publicKey, 'rsa-1');
const ecJwks = { one: { keys: [await pub(ec1.publicKey, 'ec-1')] }, two: { keys: [await pub(ec2.publicKey, 'ec-2')] } };

/** The JWKS server: what it serves is switched by the test (rotation, outage). */
let served: 'one' | 'two' | 'down' = 'one';
const jwksServer = http.createServer((req, res) => {
  if (req.url === '/junk') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>keys</html>');
  if (req.url === '/oct') return void res.writeHead(200).end(JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] }));
  if (served === 'down') return void res.writeHead(503).end('down');
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ecJwks[served]));
});
await new Promise<void>((r) => jwksServer.listen(0, `${base}.40`, r));
const jwksPort = (jwksServer.address() as net.AddressInfo).port;
// Accepts connections and never answers: a jwksUri that hangs.
const hanging = new Set<net.Socket>();
const hangServer = net.createServer((s) => {
  hanging.add(s);
  s.on('close', () => hanging.delete(s));
});
await new Promise<void>((r) => hangServer.listen(0, `${base}.40`, r));
const hangPort = (hangServer.address() as net.AddressInfo).port;

const workloads = [{ name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', ips: [`${base}.21`], labels: { app: 'echo' } }];
const services = [{ name: 'echo', namespace: 'default', vips: [VIP], ports: [{ port: 80, targetPort: 8080, name: 'http' }], selector: { app: 'echo' }, waypoint: WAYPOINT }];
const echoRef = [{ kind: 'Service', group: '', name: 'echo' }];
const allow = (name: string, rule: Record<string, unknown>) => ({ name, namespace: 'default', spec: { targetRefs: echoRef, action: 'ALLOW', rules: [rule] } });
const uri = (path: string, port = jwksPort) => `http://${base}.40:${port}${path}`;
const config = {
  services,
  requestAuthentications: [
    {
      name: 'jwt',
      namespace: 'default',
      spec: {
        targetRefs: echoRef,
        jwtRules: [
          {
            issuer: RSA_ISS,
            audiences: ['echo'],
            jwks: JSON.stringify({ keys: [rsaJwk] }),
            outputPayloadToHeader: 'x-jwt-payload',
            outputClaimToHeaders: [{ header: 'x-jwt-sub', claim: 'sub' }, { header: 'x-jwt-role', claim: 'org.role' }],
          },
          { issuer: EC_ISS, jwksUri: uri('/keys'), fromHeaders: [{ name: 'x-ec-token' }], fromParams: ['token'], forwardOriginalToken: true },
          { issuer: 'https://junk.example', jwksUri: uri('/junk'), fromHeaders: [{ name: 'x-other' }] },
          { issuer: 'https://oct.example', jwksUri: uri('/oct'), fromHeaders: [{ name: 'x-other' }] },
          { issuer: 'https://hang.example', jwksUri: uri('/keys', hangPort), fromHeaders: [{ name: 'x-other' }], timeout: '300ms' },
        ],
      },
    },
  ],
  authorizationPolicies: [
    allow('public', { to: [{ operation: { paths: ['/public*'] } }] }),
    allow('any-jwt', { from: [{ source: { requestPrincipals: ['*'] } }], to: [{ operation: { paths: ['/private*'] } }] }),
    allow('ec-only', { from: [{ source: { requestPrincipals: [`${EC_ISS}/*`] } }], to: [{ operation: { paths: ['/ec*'] } }] }),
    allow('admins', {
      to: [{ operation: { paths: ['/admin*'] } }],
      when: [
        { key: 'request.auth.claims[org][role]', values: ['admin'] },
        { key: 'request.auth.claims[scope]', values: ['write'] },
        { key: 'request.auth.presenter', values: ['cli'] },
        { key: 'request.auth.audiences', values: ['echo'] },
        { key: 'request.auth.principal', values: [`${RSA_ISS}/alice`] },
      ],
    }),
  ],
};

const echo = await backend(`${base}.21`, 8080, 'echo');
// Upgrade: answers 101 with the authorization header it got (none when the waypoint removed it), then echoes.
echo.server.on('upgrade', (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${req.headers.upgrade}\r\nconnection: Upgrade\r\nx-saw-authorization: ${req.headers.authorization ?? 'none'}\r\nx-saw-sub: ${req.headers['x-jwt-sub'] ?? 'none'}\r\n\r\n`);
  socket.pipe(socket);
});
const wm = await startWaypointMesh({ dir: t.testdir(), base, workloads, config, waypointEnv: { JWKS_REFRESH_SECONDS: '1', JWKS_FETCH_TIMEOUT_SECONDS: '1' } });
const agent = meshAgent({ host: wm.mesh.addr.a, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wm.close();
  for (const s of hanging) s.destroy();
  await Promise.all([closeServer(echo.server as unknown as net.Server), closeServer(jwksServer as unknown as net.Server), closeServer(hangServer)]);
});

const jwksState = (path: string): JwksStatus | undefined =>
  ((wm.waypoint.configDump() as { jwks: JwksStatus[] }).jwks ?? []).find((j) => j.uri.endsWith(path) && !j.uri.includes(`:${hangPort}`));
const hangState = (): JwksStatus | undefined => ((wm.waypoint.configDump() as { jwks: JwksStatus[] }).jwks ?? []).find((j) => j.uri.includes(`:${hangPort}`));

const now = () => Math.floor(Date.now() / 1000);
const rsToken = (claims: Record<string, unknown> = {}, o: { iss?: string; aud?: string; exp?: number; key?: CryptoKey } = {}) =>
  new SignJWT({ sub: 'alice', ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
    .setIssuer(o.iss ?? RSA_ISS)
    .setAudience(o.aud ?? 'echo')
    .setIssuedAt()
    .setExpirationTime(o.exp ?? now() + 600)
    .sign(o.key ?? rsa.privateKey);
const ecToken = (key: CryptoKey, kid: string, iss = EC_ISS) =>
  new SignJWT({ sub: 'bob' }).setProtectedHeader({ alg: 'ES256', kid }).setIssuer(iss).setExpirationTime(now() + 600).sign(key);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const get = (path: string, headers: Record<string, string> = {}) => request(agent, `http://${VIP}${path}`, { headers });
const seen = (body: string) => (JSON.parse(body) as { headers: Record<string, string> }).headers;

t.test('no token: passes RequestAuthentication and is left to AuthorizationPolicy', async (t) => {
  const pub = await get('/public/x');
  t.equal(pub.status, 200, 'a path every request may use');
  const priv = await get('/private/x');
  t.equal(priv.status, 403, 'requestPrincipals ["*"] needs a verified token: 403, not 401');
  t.equal(priv.body, 'RBAC: access denied');
  const basic = await get('/private/x', { authorization: 'Basic YWxpY2U6c2VjcmV0' });
  t.equal(basic.status, 403, 'Authorization without the Bearer prefix holds no token');
  const forged = await get('/public/x', { 'x-jwt-sub': 'root', 'x-jwt-payload': 'e30' });
  t.notOk(seen(forged.body)['x-jwt-sub'], 'a client cannot forge the claim headers');
  t.notOk(seen(forged.body)['x-jwt-payload'], 'nor the payload header');
});

t.test('RS256 from the inline JWKS: the identity reaches the policy, the outputs reach the backend', async (t) => {
  const token = await rsToken({ org: { role: 'admin' }, scope: 'read write', azp: 'cli' });
  const r = await get('/private/x', bearer(token));
  t.equal(r.status, 200);
  const h = seen(r.body);
  t.equal(h['authorization'], undefined, 'forwardOriginalToken false: the token header is removed, as Istio');
  t.equal(h['x-jwt-sub'], 'alice', 'outputClaimToHeaders');
  t.equal(h['x-jwt-role'], 'admin', 'a nested claim (org.role)');
  t.same(JSON.parse(Buffer.from(h['x-jwt-payload']!, 'base64url').toString()).sub, 'alice', 'outputPayloadToHeader: the payload, base64url');
  t.equal((await get('/admin/x', bearer(token))).status, 200, 'claims[org][role], claims[scope] (space-delimited), presenter, audiences and principal all match');
  const user = await rsToken({ org: { role: 'user' }, scope: 'read write', azp: 'cli' });
  t.equal((await get('/admin/x', bearer(user))).status, 403, 'another role: the ALLOW does not match');
  const readOnly = await rsToken({ org: { role: 'admin' }, scope: 'read', azp: 'cli' });
  t.equal((await get('/admin/x', bearer(readOnly))).status, 403, 'scope without write');
  t.equal((await get('/ec/x', bearer(token))).status, 403, 'requestPrincipals of another issuer do not match');
  t.equal((await get('/private/x', { authorization: `bearer ${token}` })).status, 200, 'the Bearer scheme is case-insensitive (RFC 9110)');
  t.equal((await get(`/private/x?access_token=${token}`)).status, 200, 'the default query parameter access_token');
});

t.test('tokens that do not verify get 401 with the reason; the next request is served', async (t) => {
  const cases: [string, Promise<string> | string, string][] = [
    ['expired', rsToken({}, { exp: now() - 3600 }), 'Jwt is expired'],
    ['wrong issuer', rsToken({}, { iss: 'https://evil.example' }), 'Jwt issuer is not configured'],
    ['wrong audience', rsToken({}, { aud: 'other' }), 'Audiences in Jwt are not allowed'],
    ['another key', rsToken({}, { key: rsaOther.privateKey }), 'Jwt verification fails'],
    ['alg none', new UnsecuredJWT({ sub: 'alice' }).setIssuer(RSA_ISS).setAudience('echo').setExpirationTime(now() + 600).encode(), 'Jwt header [alg] is not supported'],
    ['HS256 with a guessed secret', new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).setIssuer(RSA_ISS).setAudience('echo').sign(new TextEncoder().encode('secret')), 'Jwt header [alg] is not supported'],
    ['malformed', 'abc.def', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ['not base64', '!!!.???.###', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ['20 KiB', `eyJhbGciOiJSUzI1NiJ9.${'A'.repeat(20 * 1024)}.x`, `Jwt is too large (over ${JWT_MAX_BYTES} bytes)`],
  ];
  for (const [name, token, reason] of cases) {
    const r = await get('/public/x', bearer(await token));
    t.equal(r.status, 401, `${name}: 401 even on a path every request may use`);
    t.equal(r.body, reason, `${name}: ${reason}`);
    t.match(r.headers['www-authenticate'], /^Bearer .*error="invalid_token"/, `${name}: the RFC 6750 challenge`);
    t.equal((await get('/public/x')).status, 200, `${name}: the next request is served`);
  }
  const valid = await rsToken();
  const mixed = await get('/private/x', { ...bearer(valid), 'x-ec-token': 'abc.def' });
  t.equal(mixed.status, 401, 'every token present must verify, not only one');
});

t.test('a 64 KiB token: 431 (the header limit Envoy and Node share) and the waypoint serves on', async (t) => {
  const r = await get('/public/x', bearer('A'.repeat(64 * 1024)));
  t.equal(r.status, 431);
  t.equal((await get('/public/x')).status, 200);
});

t.test('ES256 from jwksUri: header, query parameter, location and issuer must agree', async (t) => {
  await until('the JWKS to be fetched', () => jwksState('/keys')?.state === 'ok');
  const token = await ecToken(ec1.privateKey, 'ec-1');
  const r = await get('/ec/x', { 'x-ec-token': token });
  t.equal(r.status, 200);
  t.equal(seen(r.body)['x-ec-token'], token, 'forwardOriginalToken: the header is kept');
  t.equal((await get(`/ec/x?token=${token}`)).status, 200, 'fromParams');
  t.equal((await get('/ec/x', bearer(token))).status, 401, 'Authorization is not a location of the EC rule (it names its own): issuer not configured there');
  t.equal((await get('/private/x', { 'x-ec-token': await rsToken() })).status, 401, 'an RS token in the EC location');
});

t.test('the JWKS rotates: the new key works after the refresh, the old one stops', async (t) => {
  served = 'two';
  const newToken = await ecToken(ec2.privateKey, 'ec-2');
  await until('the rotated key to be used', async () => (await get('/ec/x', { 'x-ec-token': newToken })).status === 200, { timeoutMs: 15_000 });
  const old = await get('/ec/x', { 'x-ec-token': await ecToken(ec1.privateKey, 'ec-1') });
  t.equal(old.status, 401, 'a token of the retired key');
  t.equal(old.body, "Jwks doesn't have key to match kid or alg from Jwt");
});

t.test('the JWKS server goes away: its tokens get 401 once the keys are stale, the rest is served, and it recovers', async (t) => {
  served = 'down';
  const token = await ecToken(ec2.privateKey, 'ec-2');
  await until('the keys to be given up', () => jwksState('/keys')?.state === 'failed', { timeoutMs: 15_000 });
  t.match(jwksState('/keys')?.error, /status 503/, 'the fetch error in /config_dump');
  const r = await get('/ec/x', { 'x-ec-token': token });
  t.equal(r.status, 401, 'no keys: never accepted');
  t.equal(r.body, 'Jwks remote fetch is failed');
  t.equal((await get('/private/x', bearer(await rsToken()))).status, 200, 'the inline issuer is unaffected');
  served = 'two';
  await until('the keys to come back', async () => (await get('/ec/x', { 'x-ec-token': token })).status === 200, { timeoutMs: 15_000 });
});

t.test('hostile jwksUri: not JSON, an unsupported key, no answer: a status, 401 for their issuers, nothing else disturbed', async (t) => {
  await until('the bad key sets to be judged', () => jwksState('/junk')?.state === 'failed' && jwksState('/oct')?.state === 'failed' && hangState()?.state === 'failed', { timeoutMs: 15_000 });
  t.match(jwksState('/junk')?.error, /^the JWKS is not JSON/);
  t.match(jwksState('/oct')?.error, /^the JWKS has no usable key: key 0 \(kid "h"\): kty "oct"/);
  t.match(hangState()?.error, /no answer within 300 ms/);
  for (const iss of ['https://junk.example', 'https://oct.example', 'https://hang.example']) {
    const token = await ecToken(ec2.privateKey, 'ec-2', iss);
    const r = await get('/public/x', { 'x-other': token });
    t.equal(r.status, 401, `${iss}: 401`);
    t.equal(r.body, 'Jwks remote fetch is failed');
  }
  t.equal((await get('/private/x', bearer(await rsToken()))).status, 200, 'other issuers are served');
  t.ok(wm.waypoint.ready, 'the waypoint is still ready');
});

t.test('an HTTP/1.1 Upgrade (WebSocket) is checked as any request', async (t) => {
  const upgrade = (headers: Record<string, string>) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; socket?: import('node:stream').Duplex; body: string }>((resolve, reject) => {
      const req = http.request(`http://${VIP}/private/ws`, { agent, headers: { connection: 'Upgrade', upgrade: 'echo', ...headers } });
      req.on('upgrade', (res, socket) => resolve({ status: res.statusCode ?? 0, headers: res.headers, socket, body: '' }));
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  const bad = await upgrade(bearer(await rsToken({}, { exp: now() - 3600 })));
  t.equal(bad.status, 401, 'an expired token: 401, not upgraded');
  t.equal(bad.body, 'Jwt is expired');
  t.match(bad.headers['www-authenticate'], /error="invalid_token"/);
  t.equal((await upgrade({})).status, 403, 'no token: left to the policy, which wants a principal');
  const ok = await upgrade(bearer(await rsToken()));
  t.equal(ok.status, 101, 'a verified token: upgraded');
  t.equal(ok.headers['x-saw-authorization'], 'none', 'the token header was removed on the way');
  t.equal(ok.headers['x-saw-sub'], 'alice', 'the claim header was added');
  ok.socket!.write('ping');
  const [d] = (await once(ok.socket!, 'data')) as [Buffer];
  t.equal(d.toString(), 'ping', 'bytes flow over the upgraded connection');
  ok.socket!.destroy();
});
