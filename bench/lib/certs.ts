import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ToolFailedError } from './errors.js';
import type { ProcessTracker } from './procs.js';

/** PEM files of the test PKI, all in one temp dir. */
export interface CertFiles {
  /** Root certificate (self-signed, CA:TRUE critical, keyCertSign+cRLSign). */
  readonly caCert: string;
  /** Root key, PKCS#8 EC P-256: the mesh CA key the ztunnels sign their own certs with. */
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** serverCert + serverKey in one file, as haproxy's `crt` wants. */
  readonly serverPem: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly clientPem: string;
}

/** DNS name in the server certificate; the client-side proxies check it. */
export const SERVER_NAME = 'server.bench';
/** DNS name in the client certificate. */
export const CLIENT_NAME = 'client.bench';

/**
 * Generates a test root plus one server and one client leaf (ECDSA P-256, valid one day) with the
 * `openssl` CLI.
 *
 * @example
 * const certs = await generateCerts(procs, tmpDir);
 */
export async function generateCerts(procs: ProcessTracker, dir: string): Promise<CertFiles> {
  const openssl = (args: readonly string[]): Promise<void> => runOpenssl(procs, args);
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  await newP256Key(openssl, caKey);
  await openssl([
    'req', '-x509', '-new', '-key', caKey, '-sha256', '-days', '1', '-subj', '/O=bench/CN=bench-root',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', caCert,
  ]);
  const issuer = { caCert, caKey };
  const server = await newLeaf(openssl, dir, issuer, SERVER_NAME, 'serverAuth');
  const client = await newLeaf(openssl, dir, issuer, CLIENT_NAME, 'clientAuth');
  return {
    caCert, caKey,
    serverCert: server.cert, serverKey: server.key, serverPem: server.pem,
    clientCert: client.cert, clientKey: client.key, clientPem: client.pem,
  };
}

type Openssl = (args: readonly string[]) => Promise<void>;

/** `genpkey` writes PKCS#8, the same as `ecparam -genkey | pkcs8 -topk8 -nocrypt`. */
async function newP256Key(openssl: Openssl, out: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]);
}

async function newLeaf(
  openssl: Openssl,
  dir: string,
  issuer: { caCert: string; caKey: string },
  name: string,
  usage: 'serverAuth' | 'clientAuth',
): Promise<{ cert: string; key: string; pem: string }> {
  const base = join(dir, name);
  const [key, csr, cert, ext, pem] = ['.key', '.csr', '.crt', '.ext', '.pem'].map((s) => base + s) as [
    string, string, string, string, string,
  ];
  await newP256Key(openssl, key);
  await openssl(['req', '-new', '-key', key, '-subj', `/O=bench/CN=${name}`, '-out', csr]);
  await writeFile(ext, leafExtensions(name, usage));
  await openssl([
    'x509', '-req', '-in', csr, '-CA', issuer.caCert, '-CAkey', issuer.caKey, '-set_serial', randomSerial(),
    '-days', '1', '-sha256', '-extfile', ext, '-out', cert,
  ]);
  await concat(pem, [cert, key]);
  return { cert, key, pem };
}

function leafExtensions(name: string, usage: string): string {
  return [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    `extendedKeyUsage=${usage}`,
    `subjectAltName=DNS:${name}`,
    '',
  ].join('\n');
}

async function concat(out: string, files: readonly string[]): Promise<void> {
  const parts = await Promise.all(files.map((f) => readFile(f, 'utf8')));
  await writeFile(out, parts.join(''));
}

function randomSerial(): string {
  return String(1 + Math.floor(Math.random() * 2 ** 48));
}

async function runOpenssl(procs: ProcessTracker, args: readonly string[]): Promise<void> {
  const res = await procs.run('openssl', 'openssl', args, { timeoutMs: 30_000 });
  if (res.code !== 0) throw new ToolFailedError(`openssl ${args[0]}`, `exit code ${res.code}`, res.stderr);
}
