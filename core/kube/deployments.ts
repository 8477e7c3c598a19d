/**
 * Deployments for the lab: the lab has no controller manager, so it makes a Deployment's pods
 * itself from the parsed object.
 */
import { createHash } from 'node:crypto';
import { isMapping } from '../validation/check.js';
import type { DeploymentObject } from './objects.js';

/**
 * The most replicas the lab makes for one Deployment. Each pod of the lab is a network namespace,
 * a veth pair, a CNI ADD and a process tree on this machine, so a few dozen are what a lab is for;
 * 100 leaves room. `parseObject` refuses a Deployment asking for more (`spec.replicas`), so the
 * bound holds before anything is made. The control plane makes no pods: it reads Pods.
 */
export const LAB_MAX_REPLICAS = 100;

/**
 * The longest pod name the lab makes, as Kubernetes makes them: the ReplicaSet controller gives its
 * pods `generateName: <replicaset>-` (pkg/controller/controller_utils.go, getPodsPrefix), and the
 * API server cuts that base to 58 characters before adding 5 random ones (apiserver
 * pkg/storage/names/generate.go: maxNameLength 63 - randomLength 5). A Deployment name may be 253
 * characters; its pods' names are never more than 63.
 */
export const MAX_POD_NAME = 63;

/**
 * The pods a Deployment asks for, as Pod documents without node or IP (the lab schedules them
 * and fills `spec.nodeName` and `status.podIPs`). Names are `<deployment>-<template hash>-<i>`,
 * so a changed template gives new pod names, as a rollout does; see {@link podName} for a long
 * Deployment name.
 */
export function podsForDeployment(d: DeploymentObject): Record<string, unknown>[] {
  const spec = d.raw.spec as Record<string, unknown>;
  const template = spec.template as Record<string, unknown>;
  const hash = createHash('sha256').update(JSON.stringify(template)).digest('hex').slice(0, 8);
  const tmeta = isMapping(template.metadata) ? template.metadata : {};
  // invariant: a parsed Deployment asks for at most LAB_MAX_REPLICAS; the min keeps an object
  // built some other way from allocating 2^31 pods (or RangeError for 1e300).
  return Array.from({ length: Math.min(d.replicas, LAB_MAX_REPLICAS) }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...tmeta,
      name: podName(d.meta.name, hash, i),
      namespace: d.meta.namespace,
      labels: { ...d.templateLabels },
      ownerReferences: [ownerReference(d.raw)],
    },
    spec: JSON.parse(JSON.stringify(template.spec)) as unknown,
  }));
}

/**
 * `<deployment>-<hash>-<i>`, at most {@link MAX_POD_NAME} characters. When it would be longer, the
 * `<deployment>-` base is cut to fit, as Kubernetes cuts a generateName base, and the hash also
 * covers the whole Deployment name: two Deployments whose names share the kept part still get
 * different pods (Kubernetes gets that from its random characters; the lab's names stay
 * deterministic). The cut base is a prefix of a DNS-1123 subdomain followed by a hash that starts
 * alphanumeric, so the name is a valid pod name.
 *
 * @example
 * podName('web', 'd7cef3ce', 0) // => 'web-d7cef3ce-0'
 * podName('a'.repeat(253), 'd7cef3ce', 0).length // => 63
 */
export function podName(deployment: string, hash: string, i: number): string {
  const whole = `${deployment}-${hash}-${i}`;
  if (whole.length <= MAX_POD_NAME) return whole;
  const suffix = `${createHash('sha256').update(`${deployment}\n${hash}`).digest('hex').slice(0, hash.length)}-${i}`;
  return `${deployment}-`.slice(0, MAX_POD_NAME - suffix.length) + suffix;
}

/**
 * The ownerReference an object derived from `owner` carries (`controller: true`). The upstream
 * schema requires its `uid`: the owner's `metadata.uid` when it has one (an object read from an
 * API server), otherwise one derived from the owner's kind, namespace and name, stable for as
 * long as the owner exists under that name (the lab has no API server to assign uids).
 *
 * @example
 * ownerReference({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'apps' } })
 * // { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: '…-…', controller: true }
 */
export function ownerReference(owner: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const m = isMapping(owner.metadata) ? owner.metadata : {};
  const name = String(m.name);
  const uid = typeof m.uid === 'string' && m.uid !== '' ? m.uid : nameUid(`${String(owner.kind)}/${String(m.namespace ?? '')}/${name}`);
  return { apiVersion: owner.apiVersion, kind: owner.kind, name, uid, controller: true };
}

/** A UUID-shaped id (version 5 layout, SHA-256 based) determined by `key`. */
function nameUid(key: string): string {
  const h = createHash('sha256').update(key).digest('hex');
  const variant = ((parseInt(h[16] as string, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
