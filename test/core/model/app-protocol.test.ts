/**
 * A Service port's `appProtocol` (core/model/app-protocol.ts): which values make the waypoint speak
 * HTTP/2 upstream, what is refused (a Kubernetes qualified name or nothing), and that the three
 * sources carry it: a Service manifest (through the converter), the standalone file and the wire.
 */
import t from 'tap';
import { appProtocolProblem, http2Upstream } from '../../../core/model/app-protocol.js';
import { parseObject } from '../../../core/kube/parse.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import { decodeResource, WireFormatError } from '../../../core/discovery/wire.js';

t.test('HTTP/2 upstream for kubernetes.io/h2c, http2 and grpc only', async (t) => {
  for (const p of ['kubernetes.io/h2c', 'http2', 'grpc']) t.ok(http2Upstream({ appProtocol: p }), p);
  for (const p of ['kubernetes.io/ws', 'kubernetes.io/wss', 'http', 'HTTP2', 'example.com/h2c']) t.notOk(http2Upstream({ appProtocol: p }), p);
  t.notOk(http2Upstream({}), 'none');
  t.notOk(http2Upstream(undefined), 'no port');
});

t.test('appProtocol is a qualified name (the API server rule)', async (t) => {
  for (const ok of ['kubernetes.io/h2c', 'http2', 'grpc', 'my.example.com/Proto_1', 'a']) t.equal(appProtocolProblem(ok), undefined, ok);
  for (const bad of ['', 'kubernetes.io/', '/h2c', 'Kube.io/h2c', 'h2c\r\nx', 'a b', 'x'.repeat(64), `${'a'.repeat(254)}/h2c`, 'h\u200b2c', 'a/b/c']) {
    t.match(appProtocolProblem(bad), /is not an appProtocol; expected a qualified name/, JSON.stringify(bad.slice(0, 20)));
  }
});

t.test('a Service manifest, the standalone file and the wire carry it', async (t) => {
  const svc = (appProtocol: unknown) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'apps' }, spec: { selector: { app: 's' }, ports: [{ name: 'http', port: 80, appProtocol }] } });
  const ok = parseObject(svc('kubernetes.io/h2c'), 'svc.yaml');
  t.match(ok.object, { kind: 'Service', ports: [{ port: 80, appProtocol: 'kubernetes.io/h2c' }] });
  const bad = parseObject(svc('h2c\u001b[31m'), 'svc.yaml');
  t.equal(bad.object, undefined, 'a control character: refused');
  t.match(bad.problems.map((p) => `${p.field}: ${p.message}`).join('\n'), /spec\.ports\[0\]\.appProtocol: .* is not an appProtocol/);
  const file = (appProtocol: unknown) => JSON.stringify({ services: [{ name: 's', namespace: 'apps', vips: ['10.0.0.9'], selector: { app: 's' }, ports: [{ port: 80, appProtocol }] }] });
  t.match(parseMeshConfig(file('kubernetes.io/h2c'), 'mesh.yaml').services[0]?.ports, [{ port: 80, targetPort: 80, appProtocol: 'kubernetes.io/h2c' }]);
  t.throws(() => parseMeshConfig(file('bad proto'), 'mesh.yaml'), /services\[0\]\.ports\[0\]\.appProtocol/);
  const wire = (appProtocol: string) => ({ name: 's', namespace: 'apps', hostname: 's.apps.svc.cluster.local', vips: [], ports: [{ port: 80, targetPort: 8080, appProtocol }], endpoints: [], subjectAltNames: [] });
  t.match(decodeResource('services', wire('kubernetes.io/h2c')).ports, [{ appProtocol: 'kubernetes.io/h2c' }]);
  t.throws(() => decodeResource('services', wire('x\u0000')), WireFormatError);
});
