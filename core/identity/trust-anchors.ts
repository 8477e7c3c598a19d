/**
 * The roots a control-plane client trusts: the bootstrap roots from a file (what the operator
 * installed), plus the current trust bundle the control plane hands out (CA answers and the
 * discovery stream carry it). The bundle is learned only over connections already verified
 * against these anchors, so a rotated root reaches every client before the control plane
 * presents a certificate under it.
 */
import { X509Certificate } from 'node:crypto';
import { MeshError } from '../errors.js';

/** The roots to trust the control plane with are missing, unreadable or not certificates. */
export class ControlPlaneRootError extends MeshError {
  constructor(why: string, options?: { cause?: unknown }) {
    super('ERR_CONTROL_PLANE_ROOT', `${why}; check CONTROL_PLANE_ROOT_CERT_FILE`, options);
  }
}

/**
 * @example
 * const trust = new TrustAnchors(splitPemCertificates(await readFile(rootFile, 'utf8')));
 * tls.connect({ ca: trust.roots(), ... });
 * trust.update(response.roots);
 */
export class TrustAnchors {
  readonly #bootstrap: readonly string[];
  #learned: readonly string[] = [];
  #roots: readonly string[];
  readonly #listeners = new Set<(roots: readonly string[]) => void>();

  /** @throws ControlPlaneRootError when `bootstrapPem` is empty or holds something that is not a certificate. */
  constructor(bootstrapPem: readonly string[]) {
    if (bootstrapPem.length === 0) throw new ControlPlaneRootError('no root certificate to trust the control plane with');
    bootstrapPem.forEach((pem, i) => {
      try {
        new X509Certificate(pem);
      } catch (err) {
        throw new ControlPlaneRootError(`root certificate ${i} is not a valid certificate (${(err as Error).message})`, { cause: err });
      }
    });
    this.#bootstrap = Object.freeze([...bootstrapPem]);
    this.#roots = this.#bootstrap;
  }

  /** Bootstrap roots and the latest bundle, without duplicates. */
  roots(): readonly string[] {
    return this.#roots;
  }

  /** The latest bundle the control plane sent (empty before the first). */
  get bundle(): readonly string[] {
    return this.#learned;
  }

  /** Replaces the learned bundle; listeners run when it changed. Returns whether it changed. */
  update(bundlePem: readonly string[]): boolean {
    const norm = bundlePem.map((p) => p.trim() + '\n');
    if (norm.length === this.#learned.length && norm.every((p, i) => p === this.#learned[i])) return false;
    this.#learned = Object.freeze(norm);
    const seen = new Set<string>();
    const all: string[] = [];
    for (const pem of [...this.#bootstrap, ...norm]) {
      const k = pem.trim();
      if (seen.has(k)) continue;
      seen.add(k);
      all.push(pem);
    }
    this.#roots = Object.freeze(all);
    for (const l of this.#listeners) l(this.#learned);
    return true;
  }

  onChange(listener: (bundle: readonly string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
