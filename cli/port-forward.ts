/**
 * One TCP connection to a pod's port through the API server's `pods/<name>/portforward`
 * subresource, over WebSocket (`@kubernetes/client-node`'s `PortForward`, subprotocol
 * `v4.channel.k8s.io`), as `kubectl port-forward` and istioctl reach a proxy's admin port.
 *
 * Why a port-forward and not the pod proxy (`pods/<name>:<port>/proxy/...`): the pod proxy dials
 * `podIP:port`, and ztunnel's admin listener binds 127.0.0.1 (it can stop the proxy) in a
 * hostNetwork pod, so nothing answers there. For a port-forward the kubelet connects to
 * `localhost:<port>` inside the pod's network namespace, which is where the admin listener is.
 *
 * The wire, per Kubernetes (kubelet `portforward/websocket.go`): for the i-th port, channel 2i
 * carries data and channel 2i+1 errors; every WebSocket message starts with its channel byte; the
 * first message of each channel carries the port, 2 bytes little-endian (PortForward strips it).
 * The connection ends when the pod side closes (the kubelet then closes the WebSocket) or when we
 * close it; an error (nothing listening) arrives as text on the error channel, then the close.
 */
import http from 'node:http';
import type net from 'node:net';
import { Duplex, PassThrough, Writable } from 'node:stream';
import { PortForward, type KubeConfig } from '@kubernetes/client-node';
import { CLI_ERROR_CODES, CliError } from './errors.js';

export interface PortForwardTarget {
  readonly namespace: string;
  readonly pod: string;
  readonly port: number;
}

/** What this module needs of the WebSocket PortForward hands back (a `ws` WebSocket). */
interface ForwardSocket {
  on(event: 'close', listener: () => void): void;
  close(): void;
  terminate(): void;
}

/** The handshake's HTTP status when the API server refused the upgrade (`ws`: "Unexpected server response: 403"). */
function refusedStatus(err: unknown): number | undefined {
  const m = /Unexpected server response: (\d{3})/.exec(String((err as { message?: unknown } | undefined)?.message ?? ''));
  return m ? Number(m[1]) : undefined;
}

const HINTS: Record<number, string> = {
  401: 'check the kubeconfig credentials',
  403: 'check your RBAC permissions: a port-forward needs get and create on pods/portforward',
  404: 'the pod is gone (restarted?); run the command again',
};

/**
 * Opens the connection; the stream's readable side is what the pod's port sends, its writable side
 * goes to the pod. Ending or destroying the stream closes the WebSocket. An error on the error
 * channel destroys the stream with that text as the error.
 *
 * @example
 * const conn = await openPortForward(kc, 'https://10.0.0.1:6443', { namespace: 'istio-system', pod: 'ztunnel-x7k2p', port: 15000 });
 */
export async function openPortForward(kc: KubeConfig, server: string, t: PortForwardTarget): Promise<Duplex> {
  const what = `port-forward to ${t.namespace}/${t.pod}:${t.port}`;
  const input = new PassThrough();
  const errors: Buffer[] = [];
  let ws: ForwardSocket | undefined;
  const conn = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      input.write(chunk);
      cb();
    },
    final(cb) {
      // v4 has no half-close: the request is sent in full, so the answer can still come back.
      cb();
    },
    destroy(err, cb) {
      if (ws) {
        ws.close();
        // The close handshake should be quick; never let a silent server keep the process alive.
        const s = ws;
        setTimeout(() => s.terminate(), 1000).unref();
      }
      cb(err);
    },
  });
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      conn.push(chunk);
      cb();
    },
  });
  const errOut = new Writable({
    write(chunk: Buffer, _enc, cb) {
      errors.push(chunk);
      cb();
    },
  });
  try {
    ws = (await new PortForward(kc).portForward(t.namespace, t.pod, [t.port], output, errOut, input)) as unknown as ForwardSocket;
  } catch (err) {
    const status = refusedStatus(err);
    if (status !== undefined) {
      throw new CliError(CLI_ERROR_CODES.API, `${what}: the API server ${server} refused the WebSocket upgrade with ${status}${HINTS[status] ? `; ${HINTS[status]}` : ''}`, { cause: err });
    }
    const e: NodeJS.ErrnoException = (err as { error?: NodeJS.ErrnoException }).error ?? (err as NodeJS.ErrnoException);
    throw new CliError(
      CLI_ERROR_CODES.UNREACHABLE,
      `${what}: cannot reach the API server ${server}: ${e.code ? `${e.code} ` : ''}${e.message ?? String(err)}; check the kubeconfig's server address and that the cluster is up`,
      { cause: err },
    );
  }
  ws.on('close', () => {
    const text = Buffer.concat(errors).toString('utf8').trim();
    if (text) conn.destroy(new CliError(CLI_ERROR_CODES.UNREACHABLE, `${what}: ${text}`));
    else conn.push(null);
  });
  return conn;
}

/**
 * `GET path` on a pod's port through a port-forward: the status and the body.
 *
 * @example
 * const { status, body } = await getThroughPortForward(kc, server, { namespace: 'istio-system', pod: 'ztunnel-x7k2p', port: 15000 }, '/config_dump', 15_000);
 */
export async function getThroughPortForward(kc: KubeConfig, server: string, t: PortForwardTarget, path: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  let conn: Duplex | undefined;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      conn?.destroy();
      reject(new CliError(CLI_ERROR_CODES.UNREACHABLE, `port-forward to ${t.namespace}/${t.pod}:${t.port}: no answer to GET ${path} in ${timeoutMs / 1000} s`));
    }, timeoutMs);
  });
  const get = async () => {
    conn = await openPortForward(kc, server, t);
    const c = conn;
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      // One request per connection (no agent, `connection: close`), as the kubelet's stream is one TCP connection.
      const req = http.request(
        { method: 'GET', path, headers: { host: `localhost:${t.port}`, accept: 'application/json' }, createConnection: () => c as unknown as net.Socket },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
            c.destroy();
          });
          res.on('error', reject);
        },
      );
      req.on('error', (err) => {
        c.destroy();
        reject(err instanceof CliError ? err : new CliError(CLI_ERROR_CODES.UNREACHABLE, `port-forward to ${t.namespace}/${t.pod}:${t.port}: GET ${path}: ${err.message}`, { cause: err }));
      });
      req.end();
    });
  };
  try {
    return await Promise.race([get(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
