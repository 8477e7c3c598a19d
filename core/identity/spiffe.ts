import { InvalidSpiffeIdError } from '../errors.js';

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

/**
 * Parses a SPIFFE ID in Istio's form.
 *
 * @example
 * parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep')
 * // => { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' }
 */
export function parseSpiffeId(input: string): SpiffeId {
  if (!input.startsWith(SCHEME)) throw new InvalidSpiffeIdError(input, 'expected the scheme spiffe://');
  const rest = input.slice(SCHEME.length);
  const parts = rest.split('/');
  if (parts.length !== 5 || parts[1] !== 'ns' || parts[3] !== 'sa') {
    throw new InvalidSpiffeIdError(input, 'expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>');
  }
  const [trustDomain, , namespace, , serviceAccount] = parts as [string, string, string, string, string];
  if (!TRUST_DOMAIN_RE.test(trustDomain)) {
    throw new InvalidSpiffeIdError(input, `trust domain ${JSON.stringify(trustDomain)} may only hold lowercase letters, digits, '.', '-' and '_'`);
  }
  if (!NAMESPACE_RE.test(namespace)) {
    throw new InvalidSpiffeIdError(input, `namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
  }
  if (!SA_RE.test(serviceAccount)) {
    throw new InvalidSpiffeIdError(input, `service account ${JSON.stringify(serviceAccount)} is not a DNS-1123 subdomain`);
  }
  return { trustDomain, namespace, serviceAccount };
}

/** Formats a SPIFFE ID; validates its parts the same way `parseSpiffeId` does. */
export function formatSpiffeId(id: SpiffeId): string {
  const s = `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  parseSpiffeId(s);
  return s;
}

/** Like `parseSpiffeId` but returns undefined instead of throwing. */
export function tryParseSpiffeId(input: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(input);
  } catch {
    return undefined;
  }
}
