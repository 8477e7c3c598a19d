/**
 * Workload certificates for the identities a node proxy serves: obtained the first time an
 * identity is asked for (ztunnel asks as soon as a workload with it is scheduled on its node, not
 * when a connection first needs it: ztunnel/identities.ts), shared by concurrent callers, renewed
 * in the background, retried with backoff until forgotten. The design follows ztunnel's
 * `identity/manager`: a caller that finds no usable certificate waits for the request in flight,
 * or fails fast while the manager is backing off, instead of piling more requests on a CA that is
 * failing; a caller that finds a valid certificate never waits on the CA, even while its renewal
 * is failing.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { CertificateUnavailableError, MeshError } from '../errors.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import type { CertificateAuthority } from './ca.js';
import { peerSpiffeId, type WorkloadCertificate } from './certificate.js';
import { generateKeyAndCsr } from './csr.js';
import { parseSpiffeId } from './spiffe.js';
import { parseCertificate } from './x509.js';

/** What a CA returns for a CSR. */
export interface CaSignResult {
  /** Leaf first, then any intermediates. */
  readonly certChainPem: string[];
  /** The roots peers of this identity are verified against. */
  readonly rootsPem: string[];
}

/**
 * The CA as the secret manager sees it. `identity` is the SPIFFE ID the caller asks for, which the
 * CA must check against the CSR and against what the caller may obtain.
 */
export interface CaClient {
  sign(csrPem: string, identity: string): Promise<CaSignResult>;
}

/**
 * A `CaClient` over an in-process `CertificateAuthority`: the standalone mode (a ztunnel holding
 * the mesh root itself, e.g. in the lab without a control plane) and the mode tests use. The
 * remote client, which talks to the control plane's CA, implements the same interface.
 */
export class LocalCaClient implements CaClient {
  constructor(private readonly ca: CertificateAuthority) {}

  /** Signs with the local CA, requiring the CSR to hold exactly `identity`. */
  async sign(csrPem: string, identity: string): Promise<CaSignResult> {
    const signed = this.ca.sign(csrPem, { expectedIdentity: identity });
    return { certChainPem: signed.certChainPem, rootsPem: this.ca.trustBundlePem };
  }
}

/** Called with every certificate the manager obtains for an identity, the first one included. */
export type RotationListener = (cert: WorkloadCertificate) => void;

/**
 * How renewals and retries are scheduled: real (unref'd) timers unless injected. Tests inject a
 * fake clock's, together with its `now`, to count retries over hours without waiting.
 */
export interface Timers {
  /** Calls `fn` once after `ms` (on the injected clock); the handle is truthy. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's timers, unref'd: a pending renewal or retry never keeps a process alive. */
export const realTimers: Timers = {
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return handle;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout | undefined);
  },
};

/** Inputs of a `SecretManager`. */
export interface SecretManagerInputs {
  readonly caClient: CaClient;
  readonly logger?: Logger;
  /** Clock in ms since the epoch; tests inject one (with `timers` to match, or timers run on real time). */
  readonly now?: () => number;
  /** Renewal and retry timers; `realTimers` unless set. */
  readonly timers?: Timers;
  /** Jitter source in [0, 1); Math.random unless set (tests pin it). */
  readonly random?: () => number;
  /** Renew at notBefore + renewFraction × lifetime; 0.5 (half-life, as Istio) unless set. */
  readonly renewFraction?: number;
  /** First retry delay after a failure; doubles on each further failure. 200 ms unless set. */
  readonly initialBackoffMs?: number;
  /** Upper bound of the retry delay. 30 s unless set. */
  readonly maxBackoffMs?: number;
}

/** Default renewal point: half the lifetime, as Istio and ztunnel renew. */
export const DEFAULT_RENEW_FRACTION = 0.5;
/** Default first retry delay: short, because most CA failures are brief (a restart, a leader move). */
export const DEFAULT_INITIAL_BACKOFF_MS = 200;
/** Default cap on retry delays: a CA that is down for long is retried twice a minute per identity. */
export const DEFAULT_MAX_BACKOFF_MS = 30_000;
/**
 * Renewals are never scheduled sooner than this after a certificate arrived, so a CA that issues
 * (nearly) expired certificates cannot drive the manager into a request loop.
 */
export const MIN_RENEW_DELAY_MS = 1_000;
// setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); longer waits are chained.
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  /** The newest certificate; may have expired. */
  cert?: WorkloadCertificate;
  /** The request in flight, shared by every caller that waits for it. */
  inflight?: Promise<WorkloadCertificate>;
  /** The renewal or retry timer (a `Timers` handle). */
  timer?: unknown;
  /** Consecutive failures; 0 after a success. */
  failures: number;
  /** Cause of the last failure while `failures > 0`. */
  lastError?: unknown;
}

/**
 * Obtains, caches and renews workload certificates. One instance per process component; no
 * module-level state.
 *
 * @example
 * const secrets = new SecretManager({ caClient: new LocalCaClient(ca), logger });
 * secrets.onRotate((cert) => rebuildTlsContexts(cert));
 * const cert = await secrets.fetch('spiffe://cluster.local/ns/default/sa/sleep');
 */
export class SecretManager {
  private readonly caClient: CaClient;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly renewFraction: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<RotationListener>();
  private closed = false;

  constructor(inputs: SecretManagerInputs) {
    const renewFraction = inputs.renewFraction ?? DEFAULT_RENEW_FRACTION;
    const initialBackoffMs = inputs.initialBackoffMs ?? DEFAULT_INITIAL_BACKOFF_MS;
    const maxBackoffMs = inputs.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    if (!(renewFraction > 0 && renewFraction < 1)) {
      throw new RangeError(`renewFraction must be between 0 and 1 (exclusive), got ${renewFraction}`);
    }
    if (!(initialBackoffMs > 0) || !(maxBackoffMs >= initialBackoffMs)) {
      throw new RangeError(
        `need 0 < initialBackoffMs <= maxBackoffMs, got ${initialBackoffMs} and ${maxBackoffMs}`,
      );
    }
    this.caClient = inputs.caClient;
    this.logger = inputs.logger ?? silentLogger;
    this.now = inputs.now ?? Date.now;
    this.timers = inputs.timers ?? realTimers;
    this.random = inputs.random ?? Math.random;
    this.renewFraction = renewFraction;
    this.initialBackoffMs = initialBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
  }

  /**
   * The current certificate for `identity`, requesting one the first time the identity is asked
   * for. Never resolves to an expired certificate, and never waits on the CA while a valid one is
   * held (its renewal runs in the background). Without a valid certificate: waits for the request
   * in flight if there is one; while backing off after a failure, rejects at once with
   * `CertificateUnavailableError` (whose `cause` is the last failure) rather than adding load on
   * the CA. Idempotent, so it doubles as a prefetch: only an identity with nothing held (no valid
   * certificate, no request in flight, no retry pending) costs a CSR.
   *
   * @throws InvalidSpiffeIdError for a malformed identity; CertificateUnavailableError.
   */
  async fetch(identity: string): Promise<WorkloadCertificate> {
    if (this.closed) {
      throw new CertificateUnavailableError(identity, { cause: new Error('the secret manager is closed') });
    }
    parseSpiffeId(identity);
    let entry = this.entries.get(identity);
    if (!entry) {
      entry = { failures: 0 };
      this.entries.set(identity, entry);
    }
    if (entry.cert && this.now() < entry.cert.notAfter.getTime()) return entry.cert;
    if (entry.inflight) return entry.inflight;
    if (entry.failures > 0 && entry.timer) {
      throw new CertificateUnavailableError(identity, { cause: entry.lastError });
    }
    // No request yet, or the certificate expired before its renewal ran (e.g. the process was
    // suspended, or the clock jumped): request now.
    return this.request(identity, entry);
  }

  /**
   * Registers a listener for new certificates (the HBONE layer rebuilds TLS contexts from it).
   * Listener errors are logged and do not affect other listeners. Returns an unsubscribe function.
   */
  onRotate(listener: RotationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The identities held: with a certificate, a request in flight, or a retry pending. Each is
   * renewed or retried until `forget`.
   */
  identities(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * Stops renewing `identity` and drops its certificate (its last pod left the node). Callers
   * waiting for a request in flight still get its result, which is then not kept; a later
   * `fetch` requests a new certificate.
   */
  forget(identity: string): void {
    const entry = this.entries.get(identity);
    if (!entry) return;
    this.timers.clearTimeout(entry.timer);
    this.entries.delete(identity);
  }

  /** Stops every timer and drops every certificate; later `fetch` calls reject. */
  close(): void {
    this.closed = true;
    for (const entry of this.entries.values()) this.timers.clearTimeout(entry.timer);
    this.entries.clear();
    this.listeners.clear();
  }

  /** Starts a request for `identity`; the returned promise is shared through `entry.inflight`. */
  private request(identity: string, entry: Entry): Promise<WorkloadCertificate> {
    this.timers.clearTimeout(entry.timer);
    entry.timer = undefined;
    const started = this.now();
    const p = this.obtain(identity).then(
      (cert) => {
        // A forgotten identity or closed manager keeps no state, but the waiting callers still
        // get the certificate they asked for.
        if (this.entries.get(identity) !== entry) return cert;
        entry.inflight = undefined;
        entry.cert = cert;
        entry.failures = 0;
        entry.lastError = undefined;
        const renewAt = this.renewalTime(cert);
        this.scheduleAt(identity, entry, renewAt);
        this.logger.info(
          {
            identity,
            not_before: cert.notBefore.toISOString(),
            not_after: cert.notAfter.toISOString(),
            renew_at: new Date(renewAt).toISOString(),
            duration_ms: this.now() - started,
          },
          'workload certificate issued',
        );
        this.notify(cert);
        return cert;
      },
      (err: unknown) => {
        if (this.entries.get(identity) === entry) {
          entry.inflight = undefined;
          entry.failures++;
          entry.lastError = err;
          const delay = this.retryDelay(entry);
          this.scheduleAt(identity, entry, this.now() + delay);
          const stillValid = entry.cert !== undefined && this.now() < entry.cert.notAfter.getTime();
          this.logger.warn(
            { identity, err, attempt: entry.failures, retry_in_ms: Math.round(delay), serving_previous: stillValid },
            'workload certificate request failed; retrying',
          );
        }
        throw new CertificateUnavailableError(identity, { cause: err });
      },
    );
    // Background renewals have no caller awaiting them; the failure is already recorded above.
    p.catch(() => undefined);
    entry.inflight = p;
    return p;
  }

  /** One attempt: a fresh key and CSR, the CA call, and checks on what the CA returned. */
  private async obtain(identity: string): Promise<WorkloadCertificate> {
    const { keyPem, csrPem } = await generateKeyAndCsr(identity);
    const { certChainPem, rootsPem } = await this.caClient.sign(csrPem, identity);
    return checkIssued(identity, keyPem, certChainPem, rootsPem);
  }

  /**
   * notBefore + renewFraction × lifetime. When that moment has already passed on arrival (a
   * backdated notBefore on a short-lived certificate, or clock skew), the same fraction of the
   * remaining lifetime is used instead, and never less than MIN_RENEW_DELAY_MS from now.
   */
  private renewalTime(cert: WorkloadCertificate): number {
    const now = this.now();
    const nb = cert.notBefore.getTime();
    const na = cert.notAfter.getTime();
    let at = nb + this.renewFraction * (na - nb);
    if (at <= now) at = now + this.renewFraction * (na - now);
    return Math.max(at, now + MIN_RENEW_DELAY_MS);
  }

  /**
   * Exponential backoff with equal jitter: in [d/2, d] where d = min(max, initial × 2^(n-1)). While
   * the certificate being served is still valid, the wait is also at most half of its remaining
   * lifetime (but no less than MIN_RENEW_DELAY_MS): a CA that comes back before the certificate
   * expires is then reached before it expires, however long the outage lasted and however short
   * the lifetime. Near expiry that is one attempt per second at most, a handful in all.
   */
  private retryDelay(entry: Entry): number {
    const d = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(entry.failures - 1, 30));
    const jittered = d / 2 + this.random() * (d / 2);
    const left = entry.cert ? entry.cert.notAfter.getTime() - this.now() : 0;
    return left > 0 ? Math.min(jittered, Math.max(MIN_RENEW_DELAY_MS, left / 2)) : jittered;
  }

  /** Runs a request for `identity` at `at` (ms, injected clock); real timers never keep the process up. */
  private scheduleAt(identity: string, entry: Entry, at: number): void {
    this.timers.clearTimeout(entry.timer);
    const delay = Math.max(0, at - this.now());
    const step = Math.min(delay, MAX_TIMER_MS);
    entry.timer = this.timers.setTimeout(() => {
      entry.timer = undefined;
      if (this.entries.get(identity) !== entry) return;
      if (step < delay) {
        this.scheduleAt(identity, entry, at);
        return;
      }
      if (!entry.inflight) void this.request(identity, entry).catch(() => undefined);
    }, step);
  }

  private notify(cert: WorkloadCertificate): void {
    for (const listener of this.listeners) {
      try {
        listener(cert);
      } catch (err) {
        this.logger.error({ err, identity: cert.identity }, 'certificate rotation listener failed');
      }
    }
  }
}

/**
 * What a CA answered cannot be used: the secret manager refuses it (and retries) rather than
 * present a certificate that is not exactly the identity's, on our key, under the returned roots.
 * It reaches operators as the `cause` of ERR_CERT_UNAVAILABLE and in the retry log lines.
 */
export class CaAnswerInvalidError extends MeshError {
  constructor(why: string) {
    super(
      'ERR_CA_ANSWER_INVALID',
      `${why}; check that the control plane (CONTROL_PLANE_ADDRESS) is the mesh's ca and that its signing certificate chains to the root it hands out`,
    );
  }
}

/**
 * Checks what a CA returned before anyone uses it: the leaf holds exactly `identity`, matches our
 * key, and each certificate is signed by the next (the last by one of the roots). A CA bug or a
 * confused proxy in between must not make us present someone else's identity.
 */
function checkIssued(identity: string, keyPem: string, certChainPem: string[], rootsPem: string[]): WorkloadCertificate {
  if (certChainPem.length === 0) throw new CaAnswerInvalidError('the ca returned an empty certificate chain');
  if (rootsPem.length === 0) throw new CaAnswerInvalidError('the ca returned no roots');
  const chain = certChainPem.map((pem) => new X509Certificate(pem));
  const roots = rootsPem.map((pem) => new X509Certificate(pem));
  const leaf = chain[0]!;
  const got = peerSpiffeId(leaf);
  if (got !== identity) {
    throw new CaAnswerInvalidError(`the ca returned a certificate for ${got ?? leaf.subjectAltName ?? 'no identity'}, not ${identity}`);
  }
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
    throw new CaAnswerInvalidError('the ca returned a certificate for a different key than the csr');
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.verify(chain[i + 1]!.publicKey)) throw new CaAnswerInvalidError(`certificate ${i} of the chain is not signed by certificate ${i + 1}`);
  }
  const last = chain[chain.length - 1]!;
  const anchored = roots.some((r) => r.fingerprint256 === last.fingerprint256 || safeVerify(last, r));
  if (!anchored) throw new CaAnswerInvalidError('the certificate chain does not lead to any of the returned roots');
  // Our own DER reader gives exact Dates (X509Certificate only offers display strings on Node 20).
  const { notBefore, notAfter } = parseCertificate(Buffer.from(leaf.raw));
  return Object.freeze({ identity, keyPem, certChainPem: [...certChainPem], rootsPem: [...rootsPem], notBefore, notAfter });
}

function safeVerify(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}
