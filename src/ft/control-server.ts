// The operator's handle on a running primary: a small HTTP+JSON API (status, and the FT operations) for
// `lockstep ft <operation>`. Authenticated with a token derived from the pair's pre-shared key, so whoever
// may run the pair may operate it; binds to loopback unless told otherwise.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { describeStatus } from './control.js';
import type { FtPrimary } from './primary.js';

/** The bearer token for a pair's control API: HMAC-SHA-256(key, "lockstep control"), hex. */
export function controlToken(key: Uint8Array): string {
  return createHmac('sha256', key).update('lockstep control').digest('hex');
}

/** Operations the API accepts (`POST /ft/<operation>`). */
export const FT_OPERATIONS = ['test-failover', 'restart-secondary', 'disable', 'enable', 'suspend', 'migrate-secondary'] as const;
export type FtOperation = (typeof FT_OPERATIONS)[number];

export interface ControlServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /ft/status` and `POST /ft/<operation>` for `primary` (which may be replaced, e.g. when a
 * secondary is promoted: pass a getter). Every request needs `Authorization: Bearer <controlToken(key)>`.
 */
export async function startControlServer(primary: () => FtPrimary | undefined, key: Uint8Array, listen: { host?: string; port?: number } = {}): Promise<ControlServer> {
  const token = Buffer.from(controlToken(key));
  const reply = (res: ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
  };
  const authorised = (req: IncomingMessage) => {
    const m = /^Bearer ([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(Buffer.from(m[1]!), token);
  };
  const server: Server = createServer((req, res) => {
    req.resume();
    if (!authorised(req)) return reply(res, 401, { error: 'missing or wrong bearer token (HMAC-SHA-256 of "lockstep control" under the pair key)' });
    const p = primary();
    if (!p) return reply(res, 503, { error: 'this process is not a primary (yet)' });
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/ft/status') {
      const s = p.stats();
      return reply(res, 200, { vm: p.vmId, ...s, status: describeStatus(s.status), protected: s.status.protected });
    }
    const op = url.pathname.startsWith('/ft/') ? (url.pathname.slice(4) as FtOperation) : undefined;
    if (req.method !== 'POST' || op === undefined || !FT_OPERATIONS.includes(op)) {
      return reply(res, 404, { error: `unknown: ${req.method} ${url.pathname}; use GET /ft/status or POST /ft/{${FT_OPERATIONS.join(',')}}` });
    }
    const run = async (): Promise<void> => {
      switch (op) {
        case 'test-failover': return p.testFailover();
        case 'restart-secondary': return p.restartSecondary();
        case 'disable': return p.disable();
        case 'suspend': return p.suspend();
        case 'enable': return p.enable();
        case 'migrate-secondary': return p.migrateSecondary();
      }
    };
    run().then(
      () => reply(res, 200, { ok: true, operation: op, status: describeStatus(p.status) }),
      (err: unknown) => reply(res, 409, { error: (err as Error).message, code: (err as { code?: string }).code }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port ?? 0, listen.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as { address: string; port: number };
  return {
    url: `http://${a.address}:${a.port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
