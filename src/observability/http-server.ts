// HTTP servers that cannot be held open: every lockstep endpoint (operations API, metrics, the agent's
// API) is made here, with deadlines for headers, the request and idle connections, and a connection cap.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Socket } from 'node:net';

/** Deadlines and the connection cap of a lockstep HTTP endpoint. */
export interface HttpLimits {
  /** Whole request headers must arrive within this (ms). */
  headersTimeoutMs: number;
  /** The whole request (headers and body) must arrive within this (ms). */
  requestTimeoutMs: number;
  /** A kept-alive connection with no request in flight closes after this (ms). */
  keepAliveTimeoutMs: number;
  /** A connection that sends nothing at all (not even a request line) closes after this (ms). */
  idleTimeoutMs: number;
  /** Connections open at once; more are dropped at accept (and counted). */
  maxConnections: number;
}

/** Defaults: generous for an operator or a scraper, fatal to a connection parked on the port. */
export const HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 15_000,
  maxConnections: 64,
});

/** A certificate chain and its private key (PEM), to serve HTTPS with. */
export interface TlsIdentity {
  cert: string | Buffer;
  key: string | Buffer;
}

/**
 * An `http.Server` with `limits` applied (defaults {@link HTTP_LIMITS}); with `tls`, an `https.Server`
 * (the same deadlines, and the TLS handshake within the header deadline). `onDrop` hears of each
 * connection refused at the cap. While a request is being answered no idle deadline runs (a test
 * failover may take seconds); the handlers themselves are bounded.
 */
export function createLimitedServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  limits: Partial<HttpLimits> = {},
  onDrop?: (remote: string) => void,
  tls?: TlsIdentity,
): Server {
  const l = { ...HTTP_LIMITS, ...limits };
  // Node checks the header and request deadlines on this interval; its default (30 s) would let them slip.
  const options = {
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(l.headersTimeoutMs / 4))),
  };
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    req.socket.setTimeout(0);
    handler(req, res);
  };
  // https.Server is an http.Server as far as its callers go (listen, address, close, the events).
  const server: Server =
    tls === undefined
      ? createServer(options, serve)
      : (createTlsServer({ ...options, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', handshakeTimeout: l.headersTimeoutMs }, serve) as unknown as Server);
  server.maxConnections = l.maxConnections;
  // Node's header deadline starts with a request's first byte; a connection that sends none is ours.
  // Over TLS the request arrives on the TLS socket, so that is the one whose deadline a request lifts.
  server.on(tls === undefined ? 'connection' : 'secureConnection', (socket: Socket) => {
    socket.setTimeout(l.idleTimeoutMs, () => socket.destroy());
  });
  server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => onDrop?.(`${d?.remoteAddress ?? '?'}:${d?.remotePort ?? '?'}`));
  return server;
}
