/**
 * Deployments for the lab: the lab has no controller manager, so it makes a Deployment's pods
 * itself from the parsed object.
 */
import { createHash } from 'node:crypto';
import { isMapping } from '../validation/check.js';
import type { DeploymentObject } from './objects.js';

/**
 * The pods a Deployment asks for, as Pod documents without node or IP (the lab schedules them
 * and fills `spec.nodeName` and `status.podIPs`). Names are `<deployment>-<template hash>-<i>`,
 * so a changed template gives new pod names, as a rollout does.
 */
export function podsForDeployment(d: DeploymentObject): Record<string, unknown>[] {
  const spec = d.raw.spec as Record<string, unknown>;
  const template = spec.template as Record<string, unknown>;
  const hash = createHash('sha256').update(JSON.stringify(template)).digest('hex').slice(0, 8);
  const tmeta = isMapping(template.metadata) ? template.metadata : {};
  return Array.from({ length: d.replicas }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...tmeta,
      name: `${d.meta.name}-${hash}-${i}`,
      namespace: d.meta.namespace,
      labels: { ...d.templateLabels },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.meta.name }],
    },
    spec: JSON.parse(JSON.stringify(template.spec)) as unknown,
  }));
}
