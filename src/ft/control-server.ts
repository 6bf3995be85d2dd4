// The operator's handle on a running primary: a small HTTP+JSON API (status, and the FT operations) for
// `lockstep ft <operation>`. Every request is signed on its own with a key derived from the pair's key
// (control-auth.ts), so whoever may run the pair may operate it; binds to loopback unless told otherwise.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ListenError } from '../errors.js';
import { createLimitedServer, type HttpLimits } from '../observability/http-server.js';
import { ControlAuthError, ControlAuthenticator } from './control-auth.js';
import { describeStatus } from './control.js';
import { FtError, type FtPrimary } from './primary.js';

/** Operations the API accepts (`POST /ft/<operation>`). */
export const FT_OPERATIONS = ['test-failover', 'restart-secondary', 'disable', 'enable', 'suspend', 'migrate-secondary', 'migrate'] as const;
export type FtOperation = (typeof FT_OPERATIONS)[number];

/** Largest request body read (only migrate takes one; any body is signed and checked all the same). */
const MAX_BODY = 64 * 1024;

/** Options of {@link startControlServer}. */
export interface ControlServerOptions {
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free one). */
  port?: number;
  /** Deadlines and connection cap (defaults: HTTP_LIMITS of src/observability/http-server.ts). */
  limits?: Partial<HttpLimits>;
  /** Hears of every refused request or connection (for counting; log through a RefusalLog). */
  onRefused?: (remote: string, reason: string) => void;
}

export interface ControlServer {
  readonly url: string;
  /** Requests and connections refused so far (bad or replayed signatures, over the connection cap…). */
  readonly refused: number;
  close(): Promise<void>;
}

function remoteOf(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '?';
  return `${a.includes(':') ? `[${a}]` : a}:${req.socket.remotePort ?? '?'}`;
}

/**
 * The body of `POST /ft/migrate`: empty, or `{"keyHex": "<at least 16 bytes, hex>"}` — a key made for
 * this one migration (FtPrimary.migrate). The body is signed with the request, so only a holder of the
 * pair key can set it.
 */
function migrationKey(body: Buffer): { key?: Uint8Array } {
  if (body.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new FtError('ERR_LOCKSTEP_FT_STATE', 'migrate: the body is not JSON (expected {"keyHex": "…"} or nothing)');
  }
  const hex = (v as { keyHex?: unknown } | null)?.keyHex;
  if (hex === undefined) return {};
  if (typeof hex !== 'string' || !/^(?:[0-9a-f]{2}){16,}$/i.test(hex)) throw new FtError('ERR_LOCKSTEP_FT_STATE', 'migrate: keyHex must be at least 16 bytes as hex');
  return { key: Buffer.from(hex, 'hex') };
}

/**
 * Serves `GET /ft/status` and `POST /ft/<operation>` for `primary` (which may be replaced, e.g. when a
 * secondary is promoted: pass a getter). Every request must carry `Authorization:
 * LOCKSTEP-HMAC-SHA256 …` from {@link signControlRequest} with the pair's key; a request is good once.
 *
 * @throws {ListenError} when the address cannot be bound
 */
export async function startControlServer(primary: () => FtPrimary | undefined, key: Uint8Array, options: ControlServerOptions = {}): Promise<ControlServer> {
  const auth = new ControlAuthenticator(key);
  let refused = 0;
  const refuse = (remote: string, reason: string) => {
    refused++;
    options.onRefused?.(remote, reason);
  };
  const reply = (res: ServerResponse, code: number, body: unknown) => {
    const text = `${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`;
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
  };
  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const remote = remoteOf(req);
    try {
      auth.verify(req.headers.authorization, { method: req.method ?? 'GET', host: req.headers.host ?? '', path: req.url ?? '/', body });
    } catch (err) {
      if (!(err instanceof ControlAuthError)) throw err;
      refuse(remote, `${req.method} ${req.url}: ${err.message}`);
      if (err.problem === 'busy') return reply(res, 503, { error: err.message, code: err.code, problem: err.problem });
      res.setHeader('www-authenticate', 'LOCKSTEP-HMAC-SHA256');
      return reply(res, 401, { error: err.message, code: err.code, problem: err.problem });
    }
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
        case 'migrate': return p.migrate(migrationKey(body));
      }
    };
    run().then(
      () => reply(res, 200, { ok: true, operation: op, status: describeStatus(p.status) }),
      (err: unknown) => reply(res, 409, { error: (err as Error).message, code: (err as { code?: string }).code }),
    );
  };
  const server: Server = createLimitedServer(
    (req, res) => {
      // The body is part of what is signed: read it (bounded) before anything is decided.
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) tooBig = true;
        else chunks.push(c);
      });
      req.on('end', () => {
        if (tooBig) {
          refuse(remoteOf(req), `${req.method} ${req.url}: a body of ${size} bytes`);
          return reply(res, 413, { error: `the body is larger than ${MAX_BODY} bytes` });
        }
        try {
          handle(req, res, Buffer.concat(chunks));
        } catch (err) {
          reply(res, 500, { error: (err as Error).message });
        }
      });
    },
    options.limits,
    (remote) => refuse(remote, `over the connection cap of ${server.maxConnections}`),
  );
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(ListenError.from(err, 'the operations API (--control)', host, port));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const a = server.address() as { address: string; port: number };
  const shown = a.address.includes(':') ? `[${a.address}]` : a.address;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${shown}:${a.port}`,
    get refused() {
      return refused;
    },
    close() {
      closed ??= new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
