import { InvalidSpiffeIdError } from '../errors.js';
import { quote } from '../validation/check.js';

/** A workload identity: spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const SCHEME = 'spiffe://';
// DNS-1123 labels, as Kubernetes allows for namespaces and service accounts; service accounts may
// also contain dots (DNS subdomain).
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SA_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
// Trust domains per the SPIFFE spec: lowercase letters, digits, dots, dashes and underscores.
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;

/** The parts of a SPIFFE ID in Istio's form, or why `input` is not one. Never throws. */
function readSpiffeId(input: string): SpiffeId | string {
  if (!input.startsWith(SCHEME)) return 'expected the scheme spiffe://';
  const parts = input.slice(SCHEME.length).split('/');
  if (parts.length !== 5 || parts[1] !== 'ns' || parts[3] !== 'sa') return 'expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>';
  const [trustDomain, , namespace, , serviceAccount] = parts as [string, string, string, string, string];
  if (!TRUST_DOMAIN_RE.test(trustDomain)) return `trust domain ${quote(trustDomain)} may only hold lowercase letters, digits, '.', '-' and '_'`;
  if (!NAMESPACE_RE.test(namespace)) return `namespace ${quote(namespace)} is not a DNS-1123 label`;
  if (!SA_RE.test(serviceAccount)) return `service account ${quote(serviceAccount)} is not a DNS-1123 subdomain`;
  return { trustDomain, namespace, serviceAccount };
}

/**
 * Parses a SPIFFE ID in Istio's form.
 *
 * @example
 * parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep')
 * // => { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' }
 */
export function parseSpiffeId(input: string): SpiffeId {
  const id = readSpiffeId(input);
  if (typeof id === 'string') throw new InvalidSpiffeIdError(input, id);
  return id;
}

/**
 * Why `input` is not a SPIFFE ID in Istio's form (the reason `parseSpiffeId` would throw with), or
 * undefined. For checking many user strings: no error (and no stack) is built for a bad one.
 */
export function spiffeIdProblem(input: string): string | undefined {
  const id = readSpiffeId(input);
  return typeof id === 'string' ? id : undefined;
}

/** Formats a SPIFFE ID; validates its parts the same way `parseSpiffeId` does. */
export function formatSpiffeId(id: SpiffeId): string {
  const s = `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  parseSpiffeId(s);
  return s;
}

/** Like `parseSpiffeId` but returns undefined instead of throwing. */
export function tryParseSpiffeId(input: string): SpiffeId | undefined {
  const id = readSpiffeId(input);
  return typeof id === 'string' ? undefined : id;
}
