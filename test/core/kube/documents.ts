/**
 * Builders of Kubernetes documents for the tests of core/kube/ (parse, convert, store,
 * deployments): plain objects, as a user would write them, dumped to YAML by `docs`.
 */
import * as yaml from 'js-yaml';

export const docs = (...objs: object[]) => objs.map((o) => yaml.dump(o)).join('---\n');
export const ns = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
export const pod = (name: string, o: { ns?: string; node?: string; ip?: string; labels?: Record<string, string>; sa?: string; ports?: { name: string; containerPort: number }[] } = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: o.ns ?? 'apps', labels: o.labels ?? { app: name } },
  spec: { ...(o.node !== undefined ? { nodeName: o.node } : { nodeName: 'node-a' }), serviceAccountName: o.sa ?? 'default', containers: [{ name: 'c', image: 'x', ...(o.ports ? { ports: o.ports } : {}) }] },
  ...(o.ip === '' ? {} : { status: { phase: 'Running', podIP: o.ip ?? '10.1.0.1' } }),
});
export const svc = (name: string, spec: Record<string, unknown>, nsName = 'apps', labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: nsName, labels }, spec });
