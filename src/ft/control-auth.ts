// Authentication of the operations API (`lockstep ft`): every request is signed on its own — method,
// host, path, body, a timestamp and a random nonce under a key derived from the pair's key (as AWS SigV4
// does) — so a captured request cannot be replayed. Pure crypto and bookkeeping: no sockets here.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LockstepError } from '../errors.js';

/** The `Authorization` scheme: `LOCKSTEP-HMAC-SHA256 ts=<ms>,nonce=<32 hex>,sig=<64 hex>`. */
export const CONTROL_AUTH_SCHEME = 'LOCKSTEP-HMAC-SHA256';
/** A request's timestamp may be this far from the server's clock, either way (ms). */
export const CONTROL_AUTH_WINDOW_MS = 30_000;
/** Nonces remembered at most; more live requests than this within a window are refused, never forgotten. */
export const CONTROL_AUTH_MAX_NONCES = 10_000;

/** The key the operations API is signed with: HMAC-SHA-256(pair key, label), never the pair key itself. */
export function controlSigningKey(pairKey: Uint8Array): Buffer {
  return createHmac('sha256', pairKey).update('lockstep operations API signing key v2').digest();
}

/** What is signed of a request. */
export interface ControlRequest {
  method: string;
  /** The Host header as sent (`127.0.0.1:7401`). */
  host: string;
  /** Path and query as sent (`/ft/status`). */
  path: string;
  body?: Uint8Array;
}

function canonical(r: ControlRequest, ts: number, nonce: string): string {
  const bodyHash = createHash('sha256').update(r.body ?? new Uint8Array(0)).digest('hex');
  return [CONTROL_AUTH_SCHEME, r.method.toUpperCase(), r.host.toLowerCase(), r.path, String(ts), nonce, bodyHash].join('\n');
}

function sign(signingKey: Uint8Array, r: ControlRequest, ts: number, nonce: string): Buffer {
  return createHmac('sha256', signingKey).update(canonical(r, ts, nonce)).digest();
}

/**
 * The `Authorization` header for one request, signed with the pair's key. Use each header once: the
 * server refuses a nonce it has seen, and a timestamp more than {@link CONTROL_AUTH_WINDOW_MS} away.
 */
export function signControlRequest(pairKey: Uint8Array, r: ControlRequest, now: number = Date.now()): string {
  const nonce = randomBytes(16).toString('hex');
  const ts = Math.floor(now);
  return `${CONTROL_AUTH_SCHEME} ts=${ts},nonce=${nonce},sig=${sign(controlSigningKey(pairKey), r, ts, nonce).toString('hex')}`;
}

/** Why a request was refused. */
export type ControlAuthProblem = 'missing' | 'malformed' | 'stale' | 'signature' | 'replayed' | 'busy';

/** A request the operations API refuses to act on (HTTP 401, or 503 for `busy`). */
export class ControlAuthError extends LockstepError {
  readonly problem: ControlAuthProblem;
  constructor(problem: ControlAuthProblem, message: string) {
    super('ERR_LOCKSTEP_CONTROL_UNAUTHORIZED', message);
    this.problem = problem;
  }
}

const HEADER = /^LOCKSTEP-HMAC-SHA256 ts=(\d{1,16}),nonce=([0-9a-f]{32}),sig=([0-9a-f]{64})$/;

/**
 * The server side: checks signatures in constant time, the timestamp against its clock, and that no
 * nonce is used twice while its timestamp could still pass. The nonces kept are bounded: expired ones
 * are dropped, and when {@link CONTROL_AUTH_MAX_NONCES} live ones are held new requests are refused
 * (503) rather than any nonce forgotten early.
 */
export class ControlAuthenticator {
  readonly #key: Buffer;
  readonly #windowMs: number;
  readonly #maxNonces: number;
  readonly #wallClock: () => number;
  readonly #monotonic: () => number;
  /** nonce → when it may be forgotten (monotonic ms); insertion order is expiry order. */
  readonly #seen = new Map<string, number>();

  constructor(pairKey: Uint8Array, options: { windowMs?: number; maxNonces?: number; wallClock?: () => number; monotonic?: () => number } = {}) {
    this.#key = controlSigningKey(pairKey);
    this.#windowMs = options.windowMs ?? CONTROL_AUTH_WINDOW_MS;
    this.#maxNonces = options.maxNonces ?? CONTROL_AUTH_MAX_NONCES;
    this.#wallClock = options.wallClock ?? Date.now;
    this.#monotonic = options.monotonic ?? (() => performance.now());
  }

  /** Nonces held now. */
  get nonces(): number {
    return this.#seen.size;
  }

  /** Accepts the request or throws a {@link ControlAuthError} saying why not. */
  verify(header: string | undefined, r: ControlRequest): void {
    if (header === undefined || header === '') {
      throw new ControlAuthError('missing', `no Authorization header: sign every request with ${CONTROL_AUTH_SCHEME} (lockstep ft does)`);
    }
    const m = HEADER.exec(header);
    if (m === null) throw new ControlAuthError('malformed', `the Authorization header is not "${CONTROL_AUTH_SCHEME} ts=<ms>,nonce=<32 hex>,sig=<64 hex>"`);
    const ts = Number(m[1]);
    const nonce = m[2]!;
    const presented = Buffer.from(m[3]!, 'hex');
    // The signature first: an unsigned request must not fill the nonce store or learn about the clock.
    if (!timingSafeEqual(presented, sign(this.#key, r, ts, nonce))) {
      throw new ControlAuthError('signature', 'the signature does not match: a different pair key, or the request was altered');
    }
    const skew = ts - this.#wallClock();
    if (Math.abs(skew) > this.#windowMs) {
      throw new ControlAuthError(
        'stale',
        `the request was signed ${(Math.abs(skew) / 1000).toFixed(1)} s ${skew < 0 ? 'ago' : 'ahead of this clock'} (at most ${this.#windowMs / 1000} s either way): a replay, or clocks out of step (use NTP)`,
      );
    }
    const now = this.#monotonic();
    for (const [n, until] of this.#seen) {
      if (until > now) break;
      this.#seen.delete(n);
    }
    if (this.#seen.has(nonce)) throw new ControlAuthError('replayed', 'this request was seen before (its nonce is used): each signed request is good once');
    if (this.#seen.size >= this.#maxNonces) throw new ControlAuthError('busy', `more than ${this.#maxNonces} signed requests within ${(2 * this.#windowMs) / 1000} s: try again later`);
    // Until its timestamp can no longer pass: at most two windows from now.
    this.#seen.set(nonce, now + 2 * this.#windowMs);
  }
}
