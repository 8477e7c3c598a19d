/**
 * Kubernetes and Istio name syntax shared by the config parsers (the standalone file, the
 * manifest store, the discovery wire). One definition, so every source accepts the same names and
 * words its errors the same way.
 */

import { keyPath, quote, type Problems } from '../validation/check.js';

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

/**
 * A container port name (Kubernetes' IANA_SVC_NAME, `validation.IsValidPortName`): 1-15 lowercase
 * letters, digits and "-", with at least one letter, no "-" at either end and no "--".
 */
export const PORT_NAME_RE = /^(?=.{1,15}$)(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const PORT_NAME_EXPECTED = 'a port name (1-15 lowercase letters, digits and "-", at least one letter)';

/**
 * `metadata.uid`: an API server writes a UUID; the lab's files may carry their own. It travels
 * to node agents as a key of their pod table and a log field, so it is held to letters, digits,
 * "-", "_" and "." (at most 128).
 */
export const UID_RE = /^[A-Za-z0-9][-A-Za-z0-9_.]{0,127}$/;
export const UID_EXPECTED = 'a uid (letters, digits, "-", "_" and ".", at most 128, e.g. a UUID)';

/**
 * Total size of an object's annotations, keys and values (Kubernetes'
 * `TotalAnnotationSizeLimitB`, apimachinery's ValidateAnnotations).
 */
export const ANNOTATIONS_MAX_BYTES = 256 * 1024;

const LABEL_KEY_EXPECTED = 'expected [prefix/]name with a name of up to 63 letters, digits, "-", "_" or "."';

/** Why `k` is not a label (or annotation) key (Kubernetes' qualified name), or undefined. */
function checkKey(k: string): string | undefined {
  const slash = k.indexOf('/');
  const prefix = slash === -1 ? undefined : k.slice(0, slash);
  const name = slash === -1 ? k : k.slice(slash + 1);
  if ((prefix !== undefined && !SUBDOMAIN_RE.test(prefix)) || !LABEL_NAME_RE.test(name)) return LABEL_KEY_EXPECTED;
  return undefined;
}

/** Checks one label (or selector) entry; returns why it is invalid, or undefined. */
export function checkLabel(k: string, v: string): string | undefined {
  if (checkKey(k) !== undefined) return `is not a valid label key; ${LABEL_KEY_EXPECTED}`;
  if (!LABEL_VALUE_RE.test(v)) {
    return `${quote(v)} is not a valid label value; expected up to 63 letters, digits, "-", "_" or ".", starting and ending alphanumeric`;
  }
  return undefined;
}

/**
 * `metadata.annotations`, whose types the upstream schema has checked: keys are qualified names
 * as label keys are (Kubernetes lowercases the key first, so upper case letters in the prefix
 * pass), values are free text, and all of them together hold at most `ANNOTATIONS_MAX_BYTES`
 * (apimachinery's ValidateAnnotations). Returns a copy when all are valid, else undefined.
 */
export function checkedAnnotations(p: Problems, path: string, annotations: unknown): Record<string, string> | undefined {
  const m = annotations as Record<string, string>;
  let ok = true;
  let size = 0;
  for (const [k, v] of Object.entries(m)) {
    size += Buffer.byteLength(k) + Buffer.byteLength(v);
    if (checkKey(k.toLowerCase()) !== undefined) {
      p.add(keyPath(path, k), `is not a valid annotation key; ${LABEL_KEY_EXPECTED}`);
      ok = false;
    }
  }
  if (size > ANNOTATIONS_MAX_BYTES) {
    p.add(path, `annotations hold ${size} bytes; at most ${ANNOTATIONS_MAX_BYTES} (256 KiB) in all, as an API server allows`);
    ok = false;
  }
  return ok ? { ...m } : undefined;
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
