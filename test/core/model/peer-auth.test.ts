import t from 'tap';
import { effectiveMtlsMode, DEFAULT_MTLS_MODE } from '../../../core/model/peer-auth.js';
import { ImmutableMap } from '../../../core/model/freeze.js';
import type { MtlsMode, PeerAuthentication, Workload } from '../../../core/model/types.js';

const echo: Workload = {
  uid: 'default/echo', name: 'echo', namespace: 'default', serviceAccount: 'echo', trustDomain: 'cluster.local',
  node: 'n', ips: ['10.0.0.1'], protocol: 'HBONE', labels: { app: 'echo' }, healthy: true,
};

const mesh = (mode: MtlsMode, name = 'mesh'): PeerAuthentication => ({
  name, namespace: 'istio-system', scope: 'mesh', selector: {}, mode, portLevel: new ImmutableMap(),
});
const ns = (mode: MtlsMode, namespace = 'default', name = 'ns'): PeerAuthentication => ({
  name, namespace, scope: 'namespace', selector: {}, mode, portLevel: new ImmutableMap(),
});
const wl = (mode: MtlsMode, ports: Array<[number, MtlsMode]> = [], selector = { app: 'echo' }, name = 'wl', namespace = 'default'): PeerAuthentication => ({
  name, namespace, scope: 'workload', selector, mode, portLevel: new ImmutableMap(ports),
});

t.test('default is PERMISSIVE', async (t) => {
  t.equal(DEFAULT_MTLS_MODE, 'PERMISSIVE');
  t.equal(effectiveMtlsMode([], echo, 8080), 'PERMISSIVE');
  t.equal(effectiveMtlsMode([mesh('UNSET'), ns('UNSET'), wl('UNSET')], echo, 8080), 'PERMISSIVE', 'UNSET all the way');
});

t.test('workload > namespace > mesh; UNSET inherits', async (t) => {
  t.equal(effectiveMtlsMode([mesh('STRICT')], echo, 80), 'STRICT');
  t.equal(effectiveMtlsMode([mesh('STRICT'), ns('PERMISSIVE')], echo, 80), 'PERMISSIVE');
  t.equal(effectiveMtlsMode([mesh('STRICT'), ns('UNSET')], echo, 80), 'STRICT', 'namespace UNSET inherits mesh');
  t.equal(effectiveMtlsMode([mesh('PERMISSIVE'), ns('STRICT'), wl('DISABLE')], echo, 80), 'DISABLE');
  t.equal(effectiveMtlsMode([wl('UNSET'), ns('STRICT')], echo, 80), 'STRICT', 'workload UNSET inherits namespace; order irrelevant');
  t.equal(effectiveMtlsMode([ns('STRICT', 'other')], echo, 80), 'PERMISSIVE', 'other namespace ignored');
  t.equal(effectiveMtlsMode([wl('STRICT', [], { app: 'x' })], echo, 80), 'PERMISSIVE', 'non-matching selector ignored');
  t.equal(effectiveMtlsMode([wl('STRICT', [], { app: 'echo' }, 'root', 'istio-system')], echo, 80), 'STRICT', 'root-namespace selector applies everywhere');
  t.equal(
    effectiveMtlsMode([wl('STRICT', [], { app: 'echo' }, 'root', 'istio-system')], echo, 80, { rootNamespace: 'mesh-root' }),
    'PERMISSIVE',
    'only in the configured root namespace',
  );
});

t.test('portLevelMtls of the workload policy', async (t) => {
  const p = wl('STRICT', [[9090, 'PERMISSIVE'], [9091, 'UNSET']]);
  t.equal(effectiveMtlsMode([p], echo, 9090), 'PERMISSIVE', 'port override');
  t.equal(effectiveMtlsMode([p], echo, 8080), 'STRICT', 'other ports use the policy mode');
  t.equal(effectiveMtlsMode([p], echo, 9091), 'STRICT', 'port UNSET inherits the policy mode');
  const q = wl('UNSET', [[9090, 'STRICT']]);
  t.equal(effectiveMtlsMode([ns('PERMISSIVE'), q], echo, 9090), 'STRICT');
  t.equal(effectiveMtlsMode([ns('DISABLE'), q], echo, 8080), 'DISABLE', 'policy UNSET falls through to the namespace');
});

t.test('several policies at one level: the first listed (oldest) wins', async (t) => {
  t.equal(effectiveMtlsMode([wl('STRICT', [], { app: 'echo' }, 'a'), wl('DISABLE', [], { app: 'echo' }, 'b')], echo, 80), 'STRICT');
  t.equal(effectiveMtlsMode([ns('DISABLE', 'default', 'a'), ns('STRICT', 'default', 'b')], echo, 80), 'DISABLE');
  t.equal(effectiveMtlsMode([mesh('STRICT', 'a'), mesh('PERMISSIVE', 'b')], echo, 80), 'STRICT');
});
