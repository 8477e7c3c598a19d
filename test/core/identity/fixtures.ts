/**
 * Shared helpers for the identity tests. OpenSSL is used as an independent implementation: to
 * generate requests the CA must refuse (other key types, several SANs) and to check our output.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TD = 'cluster.local';
export const SLEEP = `spiffe://${TD}/ns/default/sa/sleep`;
export const HTTPBIN = `spiffe://${TD}/ns/default/sa/httpbin`;

/** Runs openssl; returns stdout+stderr. Throws (with output) on a non-zero exit. */
export function openssl(args: readonly string[], cwd?: string): string {
  try {
    return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`);
  }
}

export type OpensslKey = 'p256' | 'p384' | 'rsa';

const NEWKEY: Record<OpensslKey, string[]> = {
  p256: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  p384: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  rsa: ['-newkey', 'rsa:2048'],
};

/** A CSR made by `openssl req`, with `san` as in openssl's subjectAltName syntax (or none). */
export function opensslCsr(dir: string, key: OpensslKey, san: string | undefined, name = 'req'): { csrPem: string; keyPem: string } {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  openssl([
    'req', '-new', ...NEWKEY[key], '-nodes', '-keyout', keyPath, '-out', csrPath, '-subj', '/O=test',
    ...(san ? ['-addext', `subjectAltName=${san}`] : []),
  ]);
  return { csrPem: readFileSync(csrPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}

/** A self-signed root made by `openssl req -x509`, with the extensions given. */
export function opensslRoot(
  dir: string,
  key: OpensslKey,
  exts: readonly string[] = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'],
  name = 'root',
): { certPem: string; keyPem: string } {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.pem`);
  openssl([
    'req', '-x509', ...NEWKEY[key], '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', `/O=${name}`,
    '-days', '365', ...exts.flatMap((e) => ['-addext', e]),
  ]);
  return { certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}

/** `openssl verify -CAfile root leaf` (with an optional -purpose); returns its output. */
export function opensslVerify(dir: string, rootPem: string, leafPem: string, purpose?: string): string {
  writeFileSync(join(dir, 'verify-root.pem'), rootPem);
  writeFileSync(join(dir, 'verify-leaf.pem'), leafPem);
  return openssl(['verify', ...(purpose ? ['-purpose', purpose] : []), '-CAfile', 'verify-root.pem', 'verify-leaf.pem'], dir);
}

/** PEM → DER of the single block. */
export function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** DER → PEM. */
export function pem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;
}
