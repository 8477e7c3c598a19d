/**
 * Kubernetes and Istio name syntax shared by the config parsers (the standalone file, the
 * manifest store, the discovery wire). One definition, so every source accepts the same names and
 * words its errors the same way.
 */

import { keyPath, type Problems } from '../validation/check.js';

// Namespaces are DNS-1123 labels; object names and service accounts are DNS-1123 subdomains (the
// service-account rule matches core/identity/spiffe.ts).
export const LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const SUBDOMAIN_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const SA_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
export const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Label keys: optional DNS-subdomain prefix and '/', then a name of up to 63 characters.
const LABEL_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export const NAME_EXPECTED = 'a DNS-1123 name (lowercase letters, digits, "-" and ".")';
export const NAMESPACE_EXPECTED = 'a DNS-1123 label (lowercase letters, digits and "-", at most 63)';
export const PRINCIPAL_EXPECTED =
  '<trust-domain>/ns/<namespace>/sa/<service-account>, without spiffe://, optionally with one * at the start or the end';

/** Checks one label (or selector) entry; returns why it is invalid, or undefined. */
export function checkLabel(k: string, v: string): string | undefined {
  const slash = k.indexOf('/');
  const prefix = slash === -1 ? undefined : k.slice(0, slash);
  const name = slash === -1 ? k : k.slice(slash + 1);
  if ((prefix !== undefined && !SUBDOMAIN_RE.test(prefix)) || !LABEL_NAME_RE.test(name)) {
    return 'is not a valid label key; expected [prefix/]name with a name of up to 63 letters, digits, "-", "_" or "."';
  }
  if (!LABEL_VALUE_RE.test(v)) {
    return `${JSON.stringify(v)} is not a valid label value; expected up to 63 letters, digits, "-", "_" or ".", starting and ending alphanumeric`;
  }
  return undefined;
}

/**
 * A map of labels (or selector entries) from a Kubernetes object, whose types the upstream schema
 * has checked (string keys to string values): each entry's syntax (`checkLabel`), every bad one
 * recorded in `p` under `path`. Returns the labels when all are valid, else undefined.
 */
export function checkedLabels(p: Problems, path: string, labels: unknown): Record<string, string> | undefined {
  const m = labels as Record<string, string>;
  let ok = true;
  for (const [k, v] of Object.entries(m)) {
    const bad = checkLabel(k, v);
    if (bad !== undefined) {
      p.add(keyPath(path, k), bad);
      ok = false;
    }
  }
  return ok ? { ...m } : undefined;
}
