/**
 * RequestAuthentication end to end through the control plane: a manifest in the control plane's
 * directory is parsed, converted, streamed on the discovery wire (`requestAuthentications`, the
 * spec as written) to a waypoint process that knows only the control plane's address, which then
 * checks the JWTs of requests through real ztunnels. A changed manifest (a rotated inline key)
 * reaches the waypoint as a delta.
 */
import t from 'tap';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { closeServer } from '../helpers/net.js';
import { waitForStatus } from '../helpers/proc.js';
import { makeFiles, manifestYaml, namespace, pod, serviceAccount, startControlPlane, startWaypointProcess, startZtunnel, writeAtomic } from '../control-plane/helpers.js';
import { until } from '../helpers/until.js';
import { backend, meshAgent, request } from './fixture.js';

// Loopback addresses of this file: 127.0.234.1 = control plane, .2/.3 = ztunnels, .10 = client,
// .21 = backend, .30 = waypoint pod, .100 = the backend Service, .110 = the waypoint's Service.
const base = '127.0.234';
const NODES = [
  { name: 'node-a', address: `${base}.2` },
  { name: 'node-b', address: `${base}.3` },
];
const CLIENT = `${base}.10`;
const WAYPOINT_IP = `${base}.30`;
const ISS = 'https://issuer.example';

const k1 = await generateKeyPair('RS256', { extractable: true });
const k2 = await generateKeyPair('ES256', { extractable: true });
const token = (key: CryptoKey, alg: string, exp = '10m') =>
  new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg, kid: alg }).setIssuer(ISS).setAudience('backend').setExpirationTime(exp).sign(key);

const svc = (name: string, vip: string, selector: Record<string, string>, ports = [{ name: 'http', port: 80, targetPort: 8080 }]) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'apps' },
  spec: { selector, clusterIP: vip, ports },
});
const backendRef = [{ kind: 'Service', group: '', name: 'backend' }];
const manifests = async (jwk: object) =>
  manifestYaml([
    namespace('apps', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' }),
    ...['client', 'backend', 'waypoint'].map((n) => serviceAccount(n, 'apps')),
    pod('client', { ns: 'apps', node: 'node-a', ip: CLIENT }),
    pod('backend', { ns: 'apps', node: 'node-b', ip: `${base}.21`, sa: 'backend', labels: { app: 'backend' } }),
    pod('waypoint-0', { ns: 'apps', node: 'node-b', ip: WAYPOINT_IP, sa: 'waypoint', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'istio.io/dataplane-mode': 'none' } }),
    svc('waypoint', `${base}.110`, { 'gateway.networking.k8s.io/gateway-name': 'waypoint' }, [{ name: 'mesh', port: 15008, targetPort: 15008 }]),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'waypoint', namespace: 'apps', labels: { 'istio.io/waypoint-for': 'service' } },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    },
    svc('backend', `${base}.100`, { app: 'backend' }),
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'jwt', namespace: 'apps' },
      spec: { targetRefs: backendRef, jwtRules: [{ issuer: ISS, audiences: ['backend'], jwks: JSON.stringify({ keys: [jwk] }) }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'require-jwt', namespace: 'apps' },
      spec: { targetRefs: backendRef, action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: [`${ISS}/*`] } }] }] },
    },
  ]);

const files = await makeFiles(t.testdir(), NODES);
const manifestPath = join(files.manifests, 'apps.yaml');
await writeAtomic(manifestPath, await manifests({ ...(await exportJWK(k1.publicKey)), kid: 'RS256' }));
const cp = await startControlPlane(files, `${base}.1`);
const cpAddress = `${base}.1:${cp.addresses.server.port}`;
const be = await backend(`${base}.21`, 8080, 'backend');
const a = await startZtunnel({ files, node: NODES[0]!, controlPlane: cpAddress });
const b = await startZtunnel({ files, node: NODES[1]!, controlPlane: cpAddress });
const wp = startWaypointProcess(files, cpAddress, WAYPOINT_IP);
const agent = meshAgent({ host: NODES[0]!.address, port: 15080 }, CLIENT);
t.teardown(async () => {
  agent.destroy();
  await wp.kill('SIGTERM');
  await Promise.all([a.zt.shutdown(), b.zt.shutdown()]);
  await cp.close();
  await closeServer(be.server);
});

const get = (headers: Record<string, string> = {}) => request(agent, `http://${base}.100/`, { headers });
const bearer = async (t: Promise<string>) => ({ authorization: `Bearer ${await t}` });

t.test('the RequestAuthentication the control plane streamed is enforced by the waypoint process', async (t) => {
  await waitForStatus(`http://${WAYPOINT_IP}:15021/healthz/ready`, 200, 15_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${wp.output()}`);
  });
  await until('node-a to learn the service uses the waypoint', () => a.zt.state.serviceByVip(`${base}.100`)?.waypoint?.address === `${base}.110`);
  await until('the waypoint to enforce the policies', async () => (await get()).status === 403, { timeoutMs: 15_000 });
  t.equal((await get()).status, 403, 'no token: left to the ALLOW on requestPrincipals, 403');
  const ok = await get(await bearer(token(k1.privateKey, 'RS256')));
  t.equal(ok.status, 200, 'RS256 from the streamed inline JWKS');
  t.equal(JSON.parse(ok.body).headers.authorization, undefined, 'the token header was removed');
  const expired = await get(await bearer(token(k1.privateKey, 'RS256', '-1h')));
  t.equal(expired.status, 401);
  t.equal(expired.body, 'Jwt is expired');
  t.equal((await get(await bearer(token(k2.privateKey, 'ES256')))).status, 401, 'a key the JWKS does not hold');
});

t.test('a rotated key in the manifest reaches the waypoint as a discovery delta', async (t) => {
  await writeAtomic(manifestPath, await manifests({ ...(await exportJWK(k2.publicKey)), kid: 'ES256' }));
  await until('the new key to be used', async () => (await get(await bearer(token(k2.privateKey, 'ES256')))).status === 200, { timeoutMs: 15_000 });
  const old = await get(await bearer(token(k1.privateKey, 'RS256')));
  t.equal(old.status, 401, 'the retired key is refused');
  t.equal(old.body, "Jwks doesn't have key to match kid or alg from Jwt");
});
