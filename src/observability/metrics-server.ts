// An HTTP endpoint for Prometheus to scrape: GET /metrics renders a prom-client registry, anything else
// is 404. For when lockstep serves its metrics itself (the CLI's metrics.listen); an application with
// its own /metrics registers lockstep's metrics there instead. Opt-in, bound to 127.0.0.1 by default.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { LockstepError } from '../errors.js';
import { createLimitedServer, type HttpLimits } from './http-server.js';

/** Where {@link startMetricsServer} listens. */
export interface MetricsServerOptions {
  /** Address to bind (default `127.0.0.1`; `0.0.0.0` or `::` to let other hosts scrape). */
  host?: string;
  /** TCP port (default 9464; 0 for any free port, then read {@link MetricsServer.port}). */
  port?: number;
  /** Deadlines and connection cap (defaults: HTTP_LIMITS of http-server.ts): an idle or parked connection is closed. */
  limits?: Partial<HttpLimits>;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://host:port/metrics`, with the port actually bound. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops listening and closes open connections (keep-alive scrapers included). */
  close(): Promise<void>;
}

async function handle(registry: Registry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'GET, HEAD' }).end('method not allowed: use GET\n');
    return;
  }
  let body: string;
  try {
    body = await registry.metrics();
  } catch (err) {
    // A failing collector must not take the process down; the scrape fails visibly instead.
    if (!res.destroyed) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`collecting metrics failed: ${(err as Error).message}\n`);
    return;
  }
  // The scraper may have gone (or the server closed) while the collectors ran.
  if (res.destroyed) return;
  res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * Serves `registry` (a prom-client `Registry`) at `GET /metrics` in its exposition format (the text
 * format 0.0.4 unless the registry was made for OpenMetrics).
 *
 * ```ts
 * const server = await startMetricsServer(registry, { port: 0 });
 * console.log(server.url); // http://127.0.0.1:40123/metrics
 * await server.close();
 * ```
 *
 * @throws {LockstepError} `ERR_LOCKSTEP_METRICS_LISTEN` when the address cannot be bound (in use, not local)
 */
export async function startMetricsServer(registry: Registry, options: MetricsServerOptions = {}): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 9464;
  const server = createLimitedServer((req, res) => void handle(registry, req, res).catch(() => res.destroy()), options.limits);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new LockstepError(
          'ERR_LOCKSTEP_METRICS_LISTEN',
          `metrics: cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port}: ${err.code ?? err.message}` +
            (err.code === 'EADDRINUSE' ? ' (the port is taken: choose another metrics.listen)' : ''),
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${bound}/metrics`,
    host,
    port: bound,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
