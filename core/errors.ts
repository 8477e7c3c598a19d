/**
 * One error class per failure, each with a stable `code`. Messages are lowercase and say what to
 * check. Mapping errors to HBONE/HTTP statuses and `response_flags` happens in one place:
 * `core/hbone/status.ts`.
 */
export class MeshError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A SPIFFE ID that does not have the form spiffe://<trust-domain>/ns/<ns>/sa/<sa>. */
export class InvalidSpiffeIdError extends MeshError {
  constructor(input: string, why: string) {
    super('ERR_INVALID_SPIFFE_ID', `invalid spiffe id ${JSON.stringify(input)}: ${why}`);
  }
}

/** A CSR the CA refuses to sign. */
export class CsrRejectedError extends MeshError {
  constructor(why: string, options?: { cause?: unknown }) {
    super('ERR_CSR_REJECTED', `certificate signing request rejected: ${why}`, options);
  }
}

/** Problems a ConfigError's message lists; `problems` keeps them all. */
export const CONFIG_ERROR_MESSAGE_PROBLEMS = 50;

/**
 * A configuration file or record that failed validation; `problems` lists every error found, the
 * message the first CONFIG_ERROR_MESSAGE_PROBLEMS of them (a file of 18,000 bad entries made a
 * message of megabytes, logged whole).
 */
export class ConfigError extends MeshError {
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    const shown = problems.slice(0, CONFIG_ERROR_MESSAGE_PROBLEMS);
    const more = problems.length - shown.length;
    super(
      'ERR_CONFIG_INVALID',
      `invalid configuration in ${source}:\n  - ${shown.join('\n  - ')}${more > 0 ? `\n  … and ${more} more problems (${problems.length} in all)` : ''}`,
    );
    this.problems = problems;
  }
}

/** The certificate for an identity could not be obtained. */
export class CertificateUnavailableError extends MeshError {
  constructor(identity: string, options?: { cause?: unknown }) {
    super(
      'ERR_CERT_UNAVAILABLE',
      `no valid certificate for ${identity}; check that the ca is reachable and allows this identity`,
      options,
    );
  }
}

/** Bytes that are not the DER (or PEM) structure a parser expected; `offset` is where it gave up. */
export class DerDecodeError extends MeshError {
  readonly offset: number;
  constructor(what: string, offset: number) {
    super('ERR_DER_DECODE', `malformed der at byte ${offset}: ${what}`);
    this.offset = offset;
  }
}

/** An operator-supplied (or generated) CA root that cannot be used to sign workload certificates. */
export class InvalidCaRootError extends MeshError {
  constructor(why: string, options?: { cause?: unknown }) {
    super('ERR_CA_ROOT_INVALID', `ca root certificate unusable: ${why}`, options);
  }
}
