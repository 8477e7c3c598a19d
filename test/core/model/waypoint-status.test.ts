/**
 * `istio.io/WaypointBound` (core/model/waypoint-status.ts), istiod 1.24+'s condition on a Service
 * that uses a waypoint: each case of the table, and the lab's view of it, the control plane's
 * `/debug/status` from a manifests directory (the Kubernetes status writer is tested in
 * test/control-plane/kubernetes/cluster.test.ts). Addresses: 127.0.157.1 = the control plane.
 */
import t from 'tap';
import { join } from 'node:path';
import { waypointBound, type WaypointBindingInput } from '../../../core/model/waypoint-status.js';
import { makeFiles, manifestYaml, namespace, startControlPlane, writeAtomic } from '../../control-plane/helpers.js';
import { until } from '../../helpers/until.js';

const gateways: Record<string, { gatewayClassName: string; waypointFor?: string }> = {
  'apps/waypoint': { gatewayClassName: 'istio-waypoint', waypointFor: 'service' },
  'apps/wl-only': { gatewayClassName: 'istio-waypoint', waypointFor: 'workload' },
  'infra/shared': { gatewayClassName: 'istio-waypoint' },
  'apps/waypoint-svc': { gatewayClassName: 'istio-waypoint' },
};
const input = (over: Partial<WaypointBindingInput>): WaypointBindingInput => ({
  namespace: 'apps',
  name: 'web',
  labels: {},
  namespaceLabels: {},
  gateway: (ns, name) => gateways[`${ns}/${name}`],
  bound: false,
  ...over,
});

t.test("the table of Istio's reasons and messages", async (t) => {
  t.same(waypointBound(input({ labels: { 'istio.io/use-waypoint': 'waypoint' }, bound: true })), {
    type: 'istio.io/WaypointBound', status: 'True', reason: 'WaypointAccepted', message: 'Successfully attached to waypoint apps/waypoint',
  });
  t.same(waypointBound(input({ namespaceLabels: { 'istio.io/use-waypoint': 'shared', 'istio.io/use-waypoint-namespace': 'infra' }, bound: true }))?.message, 'Successfully attached to waypoint infra/shared', "from the namespace's labels, in another namespace");
  t.same(waypointBound(input({ labels: { 'istio.io/use-waypoint': 'missing' } })), {
    type: 'istio.io/WaypointBound', status: 'False', reason: 'WaypointIsNotReady', message: 'waypoint "apps/missing" is not ready',
  });
  t.same(waypointBound(input({ labels: { 'istio.io/use-waypoint': 'waypoint' } }))?.reason, 'WaypointIsNotReady', 'a Gateway without an address yet');
  t.same(waypointBound(input({ labels: { 'istio.io/use-waypoint': 'wl-only' } })), {
    type: 'istio.io/WaypointBound', status: 'False', reason: 'UnsupportedTrafficType', message: 'attempting to bind to traffic type "service" which the waypoint "apps/wl-only" does not support',
  });
  t.equal(waypointBound(input({})), undefined, 'no label: no condition');
  t.equal(waypointBound(input({ labels: { 'istio.io/use-waypoint': 'none' }, namespaceLabels: { 'istio.io/use-waypoint': 'waypoint' } })), undefined, "none on the Service overrides the namespace's");
  t.equal(waypointBound(input({ namespaceLabels: { 'istio.io/use-waypoint': 'none' } })), undefined, 'none on the namespace');
  t.equal(waypointBound(input({ name: 'waypoint-svc', namespaceLabels: { 'istio.io/use-waypoint': 'waypoint' } })), undefined, "a waypoint's own Service (named as its Gateway)");
  t.equal(waypointBound(input({ labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' }, namespaceLabels: { 'istio.io/use-waypoint': 'waypoint' } })), undefined, "a waypoint's own Service (its label)");
});

t.test("the lab's view: /debug/status lists WaypointBound and the route statuses", async (t) => {
  const dir = t.testdir();
  const files = await makeFiles(dir, [{ name: 'node-a', address: '127.0.157.2' }]);
  const gw = (name: string, address?: string) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: 'apps' },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    ...(address ? { status: { addresses: [{ type: 'IPAddress', value: address }] } } : {}),
  });
  const svc = (name: string, labels: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'apps', labels }, spec: { clusterIP: name === 'web' ? '10.96.1.1' : '10.96.1.2', selector: { app: name }, ports: [{ name: 'http', port: 80 }] } });
  await writeAtomic(
    join(files.manifests, 'apps.yaml'),
    manifestYaml([namespace('apps'), gw('waypoint', '10.96.1.9'), svc('web', { 'istio.io/use-waypoint': 'waypoint' }), svc('lonely', { 'istio.io/use-waypoint': 'missing' }), svc('plain', {})]),
  );
  const cp = await startControlPlane(files, '127.0.157.1');
  t.teardown(() => cp.close());
  type Status = { waypointBound: Array<{ namespace: string; name: string; condition: { status: string; reason: string; message: string } }>; routeStatus: unknown[] };
  let status: Status | undefined;
  await until('the bindings in /debug/status', async () => {
    status = (await (await fetch('http://127.0.157.1:15000/debug/status')).json()) as Status;
    return status.waypointBound.length === 2;
  });
  t.same(
    status!.waypointBound.sort((a, b) => a.name.localeCompare(b.name)),
    [
      { namespace: 'apps', name: 'lonely', condition: { type: 'istio.io/WaypointBound', status: 'False', reason: 'WaypointIsNotReady', message: 'waypoint "apps/missing" is not ready' } },
      { namespace: 'apps', name: 'web', condition: { type: 'istio.io/WaypointBound', status: 'True', reason: 'WaypointAccepted', message: 'Successfully attached to waypoint apps/waypoint' } },
    ],
  );
  t.same(status!.routeStatus, [], 'no routes, no route statuses');
});
