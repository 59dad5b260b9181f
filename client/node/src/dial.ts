// Opening the byte stream under a connection: TCP, or TLS (spec section 1) verified against
// the CA given and the host name dialled, with an optional client certificate.
import * as net from 'net';
import * as tls from 'tls';
import { StockdConnectionError, StockdTlsError } from './errors';

export interface TlsOptions {
  /** CA certificate(s) (PEM) the server's certificate must chain to. */
  ca: string | Buffer | Array<string | Buffer>;
  /** Client certificate and key (PEM), for a server started with --tls-client-ca. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to verify the certificate against; defaults to `host` (an IP is checked as an IP). */
  servername?: string;
}

/**
 * Plain TCP sockets read into this one buffer and hand it to their `onRead` callback (Node's
 * `onread` option): no Buffer and no stream machinery per read. Reads are synchronous on the
 * one JS thread, so every socket can share it; the callback must copy what it keeps.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * A socket to `host:port`; `onOpen` runs once frames may flow (after the TLS handshake). Data
 * goes to `onRead` (a view of a buffer that is reused once it returns) for TCP, and as 'data'
 * events for TLS.
 */
export function dial(
  host: string,
  port: number,
  t: TlsOptions | undefined,
  onOpen: () => void,
  onRead: (chunk: Buffer) => void,
): net.Socket {
  const socket = t
    ? tls.connect({
        host,
        port,
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        servername: t.servername ?? (net.isIP(host) ? undefined : host),
        minVersion: 'TLSv1.2',
      })
    : net.connect({
        host,
        port,
        onread: {
          buffer: READ_BUFFER,
          callback: (n: number, buf: Uint8Array) => {
            onRead((buf as Buffer).subarray(0, n));
            return true;
          },
        },
      });
  if (t) socket.on('data', onRead);
  socket.setNoDelay(true); // requests are small and already batched per turn of the loop
  socket.once(t ? 'secureConnect' : 'connect', onOpen);
  return socket;
}

/**
 * The error for a failed socket. A refused certificate (theirs or ours) is a StockdTlsError:
 * unlike a reset or a refused port, redialling will not cure it.
 */
export function socketError(address: string, e: NodeJS.ErrnoException, isTls: boolean): StockdConnectionError {
  const msg = `connection to ${address} failed: ${e.message}`;
  // The server's alerts too: no certificate or one from another CA, no common protocol.
  const certificate =
    isTls && /CERT|UNABLE_TO_|SELF_SIGNED|UNKNOWN_CA|HANDSHAKE_FAILURE|WRONG_VERSION_NUMBER|PROTOCOL_VERSION/.test(e.code ?? '');
  return certificate ? new StockdTlsError(msg, { cause: e }) : new StockdConnectionError(msg, { cause: e });
}
