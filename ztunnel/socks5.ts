import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { MeshError } from '../core/errors.js';

/** A SOCKS5 request the proxy cannot serve; `reply` is the RFC 1928 reply code to send. */
export class Socks5Error extends MeshError {
  readonly reply: number;
  constructor(message: string, reply: number) {
    super('ERR_SOCKS5', `socks5: ${message}`);
    this.reply = reply;
  }
}

export const SOCKS5_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

// A greeting plus the longest request (domain name of 255 bytes) fits well under this; anything
// longer is not SOCKS5.
const MAX_HANDSHAKE_BYTES = 600;

/** A DNS name as a client may send it (letters, digits, `-`, `_`, dots; a trailing dot allowed); the length byte caps it at 255. */
const HOSTNAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

export interface Socks5Target {
  /** IPv4/IPv6 address, or a hostname when the client sent ATYP=domain. */
  readonly host: string;
  readonly port: number;
}

/**
 * Runs the server side of a SOCKS5 handshake (no authentication, CONNECT only) and resolves with
 * the requested target. The caller sends the final reply with `sendSocks5Reply` once it knows
 * whether the upstream connection succeeded. Bytes the client sent after the request (pipelined
 * data) are unshifted back into the socket.
 */
export function readSocks5Request(socket: Socket, timeoutMs = 10_000): Promise<Socks5Target> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let greeted = false;
    const timer = setTimeout(() => fail(new Socks5Error('handshake timed out', SOCKS5_REPLY.generalFailure)), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      // Stop the flow: bytes after the request must wait for whoever pipes this socket next.
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
    };
    const fail = (err: Socks5Error) => {
      cleanup();
      reject(err);
    };
    const onEnd = () => fail(new Socks5Error('client closed during handshake', SOCKS5_REPLY.generalFailure));
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_HANDSHAKE_BYTES) return fail(new Socks5Error('handshake too long', SOCKS5_REPLY.generalFailure));
      if (!greeted) {
        if (buf.length < 2) return;
        if (buf[0] !== 0x05) return fail(new Socks5Error(`unsupported version ${buf[0]}`, SOCKS5_REPLY.generalFailure));
        const n = buf[1]!;
        if (buf.length < 2 + n) return;
        const methods = buf.subarray(2, 2 + n);
        if (!methods.includes(0x00)) {
          socket.write(Buffer.from([0x05, 0xff]));
          return fail(new Socks5Error('client offers no "no authentication" method', SOCKS5_REPLY.notAllowed));
        }
        socket.write(Buffer.from([0x05, 0x00]));
        greeted = true;
        buf = buf.subarray(2 + n);
      }
      if (buf.length < 5) return;
      if (buf[0] !== 0x05) return fail(new Socks5Error(`unsupported version ${buf[0]} in request`, SOCKS5_REPLY.generalFailure));
      if (buf[1] !== 0x01) return fail(new Socks5Error(`command ${buf[1]} not supported, only CONNECT`, SOCKS5_REPLY.commandNotSupported));
      const atyp = buf[3];
      let host: string;
      let off: number;
      if (atyp === 0x01) {
        if (buf.length < 10) return;
        host = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
        off = 8;
      } else if (atyp === 0x04) {
        if (buf.length < 22) return;
        const parts: string[] = [];
        for (let i = 0; i < 8; i++) parts.push(buf.readUInt16BE(4 + i * 2).toString(16));
        host = parts.join(':');
        off = 20;
      } else if (atyp === 0x03) {
        const len = buf[4]!;
        if (buf.length < 5 + len + 2) return;
        host = buf.subarray(5, 5 + len).toString('latin1');
        off = 5 + len;
      } else {
        return fail(new Socks5Error(`address type ${atyp} not supported`, SOCKS5_REPLY.addressTypeNotSupported));
      }
      const port = buf.readUInt16BE(off);
      // RFC 1928 allows any bytes; a destination no connection can reach is refused here, before
      // it is logged or routed: port 0, and a name that is not a hostname (empty, control characters).
      if (port === 0) return fail(new Socks5Error('destination port 0 cannot be connected to', SOCKS5_REPLY.hostUnreachable));
      if (atyp === 0x03 && !HOSTNAME.test(host)) {
        return fail(new Socks5Error(`destination name ${JSON.stringify(host)} is not a hostname`, SOCKS5_REPLY.hostUnreachable));
      }
      const rest = buf.subarray(off + 2);
      cleanup();
      if (rest.length > 0) socket.unshift(rest);
      resolve({ host, port });
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
  });
}

/** Sends the final SOCKS5 reply; the bound address is reported as 0.0.0.0:0 as ztunnel does. */
export function sendSocks5Reply(socket: Socket, reply: number): void {
  socket.write(Buffer.from([0x05, reply, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
}

export function isIpAddress(host: string): boolean {
  return isIP(host) !== 0;
}
