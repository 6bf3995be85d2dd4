// KvClient: a memcached ASCII-over-UDP client with per-attempt time-outs, retries that reuse the
// request id, exponential back-off and fail-over across endpoints. Never throws on server input.
import dgram from 'node:dgram';
import diagnostics from 'node:diagnostics_channel';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { OptionError } from '../errors.js';
import { ClientError } from './errors.js';
import {
  EXACTLY_ONCE_MARK,
  MAX_DATAGRAM_SIZE,
  MAX_REPLY_DATAGRAMS,
  MAX_RETRY_WINDOW_MS,
  UDP_HEADER_SIZE,
  decodeFrameHeader,
  encodeFrame,
  isValuesFragment,
  keyProblem,
  parseReply,
  type Reply,
  type ReplyExpectation,
} from './protocol.js';

/** A server address. */
export interface Endpoint {
  host: string;
  port: number;
}

/** Exponential back-off between attempts: the n-th retry waits `min(maxMs, initialMs * factor^(n-1))`. */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

/** Options of {@link KvClient}. */
export interface KvClientOptions {
  /** Servers to try, in fail-over order. At least one. */
  endpoints: readonly Endpoint[];
  /** How long one attempt waits for a reply before it is retried. Default 250. */
  timeoutMs?: number;
  /** Attempts after the first one. Default 3. */
  retries?: number;
  /** Back-off between attempts. Default `{ initialMs: 20, maxMs: 1000, factor: 2 }`. */
  backoff?: Partial<BackoffOptions>;
  /** Local address and port to bind the socket to. Default: any address, a port the OS picks. */
  bind?: { address?: string; port?: number };
  /**
   * Mark every request for kvserver's exactly-once reply cache (default true): 31-bit request ids
   * (the high bits in the reserved header field), never reused by this client, and no retry later
   * than `retryWindowMs` after the first send, so a retried write is answered from the cache rather
   * than applied twice. memcached ignores the mark. `false` sends exactly what a stock client sends.
   */
  exactlyOnce?: boolean;
  /**
   * No attempt of a request is sent later than this after its first send; the request then fails as
   * timed out. Default (and, with `exactlyOnce`, maximum) {@link MAX_RETRY_WINDOW_MS}: 10 000.
   */
  retryWindowMs?: number;
}

/** One stored value. */
export interface KvItem {
  key: string;
  /** The bytes as stored (a Buffer, so `.toString()` gives text). */
  value: Buffer;
  flags: number;
}

/** A stored value with its cas unique, as `gets` returns it. */
export interface KvCasItem extends KvItem {
  cas: bigint;
}

/** Options of the storage commands. */
export interface StoreOptions {
  /** Opaque 32-bit number stored with the value. Default 0. */
  flags?: number;
  /** Expiry: 0 never, seconds from now up to 30 days, or a Unix time. Default 0. */
  exptime?: number;
  /**
   * Ask the server not to answer. The promise settles once the datagram is handed to the OS and the
   * request is never retried: nothing says it arrived.
   */
  noreply?: boolean;
}

/** The server's answer to a storage command; `sent` for a `noreply` request. */
export type StoreResult = 'stored' | 'not_stored' | 'exists' | 'not_found' | 'sent';
/** The server's answer to `delete`; `sent` for a `noreply` request. */
export type DeleteResult = 'deleted' | 'not_found' | 'sent';

/** Counters of one client since it was made; every field only grows. */
export interface KvClientCounters {
  /** Requests started (including `noreply` ones). */
  requests: number;
  /** Request datagrams handed to the socket (first attempts and retries). */
  datagramsSent: number;
  /** Attempts after the first, over all requests. */
  retries: number;
  /** Attempts that ended without a valid reply in time. */
  timeouts: number;
  /** Requests that failed over to another endpoint at least once. */
  failovers: number;
  /** Reply datagrams that completed a request. */
  replies: number;
  /** Datagrams ignored because they were not a valid reply (too short, bad header, bad protocol). */
  malformed: number;
  /** Datagrams ignored because no outstanding request had their request id (late or foreign). */
  unexpected: number;
  /** Sends the OS refused (unreachable, unresolvable host); the attempt then times out. */
  sendErrors: number;
  /** `error` events of the socket, which the client survives. */
  socketErrors: number;
}

/** Diagnostics channels: subscribe to watch retries and ignored datagrams without a logger. */
export const CLIENT_CHANNELS = {
  /** `{ requestId, attempt, endpoint }` before every retry. */
  retry: diagnostics.channel('lockstep:client:retry'),
  /** `{ reason, requestId?, from, problem? }` for every ignored datagram. */
  ignored: diagnostics.channel('lockstep:client:ignored'),
} as const;

interface Pending {
  /** The 16-bit request id of the header (the key of #pending). */
  id: number;
  /** The whole request id: 31 bits when marked, else equal to `id`. */
  xid: number;
  /** performance.now() of the first attempt, for the retry window. */
  firstSentAt: number;
  frame: Buffer;
  command: string;
  expect: ReplyExpectation;
  attempt: number;
  /** Index into endpoints of the first attempt. */
  start: number;
  /** Index into endpoints of the latest attempt. */
  target: number;
  timer: NodeJS.Timeout | undefined;
  /** Datagrams of a multi-datagram reply gathered so far. */
  parts: (Buffer | undefined)[] | undefined;
  partsLeft: number;
  /** VALUE-only datagrams of a multi-key get from memcached 1.6, waiting for the END datagram. */
  fragments: Buffer[] | undefined;
  lastProblem: string | undefined;
  lastSendError: Error | undefined;
  failedOver: boolean;
  resolve: (reply: Reply) => void;
  reject: (err: Error) => void;
}

const DEFAULT_TIMEOUT_MS = 250;
const DEFAULT_RETRIES = 3;
const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 20, maxMs: 1000, factor: 2 };
const MAX_U32 = 0xffff_ffff;
const MAX_U64 = (1n << 64n) - 1n;

function checkCount(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new OptionError(field, `must be a number from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/**
 * A memcached ASCII-protocol client over UDP (one socket, so a retry comes from the same source port
 * and a server that deduplicates by source address and request id applies it once).
 *
 * Every request gets a fresh request id; by default it is a 31-bit id marked for kvserver's
 * exactly-once reply cache (see {@link KvClientOptions.exactlyOnce}), which memcached ignores. An
 * attempt that gets no valid reply within `timeoutMs` is retried after back-off with the same id,
 * within the retry window: the first retry to the same endpoint, later ones to the next endpoints in
 * turn. Replies are matched by request id (all 31 bits when the server echoes the mark); datagrams that do not match an
 * outstanding request or are not valid protocol for it are counted and ignored. After a request
 * succeeds on an endpoint, later requests start there. The open socket keeps the process alive:
 * call {@link KvClient.close} when done.
 */
export class KvClient {
  readonly #socket: dgram.Socket;
  readonly #endpoints: readonly Endpoint[];
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #backoff: BackoffOptions;
  readonly #bindOptions: { address?: string; port?: number };
  readonly #exactlyOnce: boolean;
  readonly #retryWindowMs: number;
  readonly #pending = new Map<number, Pending>();
  readonly #counters: KvClientCounters = {
    requests: 0,
    datagramsSent: 0,
    retries: 0,
    timeouts: 0,
    failovers: 0,
    replies: 0,
    malformed: 0,
    unexpected: 0,
    sendErrors: 0,
    socketErrors: 0,
  };
  #bound: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  #preferred = 0;
  #nextId: number;

  constructor(options: KvClientOptions) {
    if (options === null || typeof options !== 'object') throw new OptionError('options', 'must be an object');
    const endpoints = options.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
      throw new OptionError('endpoints', 'must be a non-empty array of { host, port }');
    }
    endpoints.forEach((e: Endpoint, i) => {
      if (e === null || typeof e !== 'object' || typeof e.host !== 'string' || e.host.length === 0) {
        throw new OptionError(`endpoints[${i}].host`, 'must be a non-empty string');
      }
      if (!Number.isInteger(e.port) || e.port < 1 || e.port > 0xffff) {
        throw new OptionError(`endpoints[${i}].port`, `must be an integer from 1 to 65535, got ${String(e.port)}`);
      }
    });
    const v6 = endpoints.map((e: Endpoint) => isIPv6(e.host));
    if (v6.some((x) => x) && !v6.every((x) => x)) {
      throw new OptionError('endpoints', 'mixes IPv6 and IPv4/host-name endpoints; one socket serves one address family');
    }
    this.#endpoints = endpoints.map((e: Endpoint) => ({ host: e.host, port: e.port }));
    this.#timeoutMs = checkCount('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 1, 2 ** 31 - 1);
    this.#retries = checkCount('retries', options.retries ?? DEFAULT_RETRIES, 0, 1000);
    const b = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.#backoff = {
      initialMs: checkCount('backoff.initialMs', b.initialMs, 0, 2 ** 31 - 1),
      maxMs: checkCount('backoff.maxMs', b.maxMs, 0, 2 ** 31 - 1),
      factor: checkCount('backoff.factor', b.factor, 1, 1000),
    };
    this.#bindOptions = { ...options.bind };
    const exactlyOnce = options.exactlyOnce ?? true;
    if (typeof exactlyOnce !== 'boolean') throw new OptionError('exactlyOnce', `must be a boolean, got ${String(exactlyOnce)}`);
    this.#exactlyOnce = exactlyOnce;
    this.#retryWindowMs =
      options.retryWindowMs === undefined
        ? exactlyOnce ? MAX_RETRY_WINDOW_MS : Infinity
        : checkCount('retryWindowMs', options.retryWindowMs, 1, exactlyOnce ? MAX_RETRY_WINDOW_MS : 2 ** 31 - 1);
    // Start ids at a random point of the 31-bit space so a restarted client that gets the same source
    // port back is unlikely to meet its predecessor's recent ids in a server's reply cache (a chance of
    // about n / 2^31 for its predecessor's last n writes within the cache's window).
    this.#nextId = Math.floor(Math.random() * (exactlyOnce ? 0x8000_0000 : 0x10000));
    this.#socket = dgram.createSocket(v6[0] === true ? 'udp6' : 'udp4');
    this.#socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    // Receive errors (ICMP reports on some platforms) must not take the process down.
    this.#socket.on('error', () => {
      this.#counters.socketErrors++;
    });
  }

  /** A copy of the counters. */
  get counters(): KvClientCounters {
    return { ...this.#counters };
  }

  /** The endpoints in fail-over order. */
  get endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  /** Index of the endpoint the next request goes to first. */
  get preferredEndpoint(): number {
    return this.#preferred;
  }

  /** Requests waiting for a reply. */
  get outstanding(): number {
    return this.#pending.size;
  }

  /** The local address of the socket, once the first request has bound it. */
  address(): { address: string; port: number } | undefined {
    try {
      const a = this.#socket.address();
      return { address: a.address, port: a.port };
    } catch {
      return undefined;
    }
  }

  /** Binds the socket now rather than at the first request (to learn the local port early). */
  async connect(): Promise<void> {
    await this.#ensureBound();
  }

  /** The value of `key`, or `null` when it is not stored. */
  async get(key: string): Promise<KvItem | null> {
    this.#checkKey(key, 'key');
    const reply = await this.#request(`get ${key}`, { kind: 'values', keys: [key], cas: false }, Buffer.from(`get ${key}\r\n`));
    const item = (reply as Extract<Reply, { kind: 'values' }>).items.find((i) => i.key === key);
    return item === undefined ? null : { key: item.key, value: item.value, flags: item.flags };
  }

  /** The values and cas uniques of the stored ones among `keys` (missing keys are absent from the map). */
  async gets(keys: readonly string[]): Promise<Map<string, KvCasItem>> {
    if (!Array.isArray(keys) || keys.length === 0) {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', 'must be a non-empty array of keys', { field: 'keys' });
    }
    keys.forEach((k, i) => this.#checkKey(k, `keys[${i}]`));
    const line = `gets ${keys.join(' ')}`;
    const reply = await this.#request('gets', { kind: 'values', keys, cas: true }, Buffer.from(`${line}\r\n`));
    const out = new Map<string, KvCasItem>();
    for (const i of (reply as Extract<Reply, { kind: 'values' }>).items) {
      out.set(i.key, { key: i.key, value: i.value, flags: i.flags, cas: i.cas as bigint });
    }
    return out;
  }

  /** Stores `value` under `key` unconditionally. */
  set(key: string, value: Uint8Array | string, options?: StoreOptions): Promise<StoreResult> {
    return this.#store('set', key, value, options, undefined);
  }

  /** Stores `value` only if `key` is not stored yet (`not_stored` otherwise). */
  add(key: string, value: Uint8Array | string, options?: StoreOptions): Promise<StoreResult> {
    return this.#store('add', key, value, options, undefined);
  }

  /** Stores `value` only if `key` is already stored (`not_stored` otherwise). */
  replace(key: string, value: Uint8Array | string, options?: StoreOptions): Promise<StoreResult> {
    return this.#store('replace', key, value, options, undefined);
  }

  /**
   * Stores `value` only if `key` still has the cas unique `cas` from `gets`: `exists` when it was
   * changed since, `not_found` when it is gone.
   */
  cas(key: string, value: Uint8Array | string, cas: bigint | number, options?: StoreOptions): Promise<StoreResult> {
    return this.#store('cas', key, value, options, cas);
  }

  /** Removes `key`. */
  async delete(key: string, options?: { noreply?: boolean }): Promise<DeleteResult> {
    this.#checkKey(key, 'key');
    const noreply = options?.noreply === true;
    const line = `delete ${key}${noreply ? ' noreply' : ''}\r\n`;
    if (noreply) return this.#sendOnly(Buffer.from(line)).then(() => 'sent');
    const reply = await this.#request(`delete ${key}`, { kind: 'delete' }, Buffer.from(line));
    return (reply as Extract<Reply, { kind: 'status' }>).status === 'DELETED' ? 'deleted' : 'not_found';
  }

  /**
   * Adds `delta` to the decimal number stored under `key` (wrapping at 2^64) and returns the new
   * value, or `null` when the key is not stored. Not idempotent: against a server without a reply
   * cache a retried increment may apply twice.
   */
  incr(key: string, delta: bigint | number = 1): Promise<bigint | null> {
    return this.#arith('incr', key, delta);
  }

  /** Subtracts `delta` (stopping at 0) and returns the new value, or `null` when the key is not stored. */
  decr(key: string, delta: bigint | number = 1): Promise<bigint | null> {
    return this.#arith('decr', key, delta);
  }

  /** The server's version string. */
  async version(): Promise<string> {
    const reply = await this.#request('version', { kind: 'version' }, Buffer.from('version\r\n'));
    return (reply as Extract<Reply, { kind: 'version' }>).version;
  }

  /** The server's statistics (`stats`, or `stats <group>` such as `settings`), as name → text value. */
  async stats(group?: string): Promise<Map<string, string>> {
    if (group !== undefined) this.#checkKey(group, 'group');
    const line = group === undefined ? 'stats' : `stats ${group}`;
    const reply = await this.#request(line, { kind: 'stats' }, Buffer.from(`${line}\r\n`));
    return (reply as Extract<Reply, { kind: 'stats' }>).stats;
  }

  /** Rejects every outstanding request with `ERR_LOCKSTEP_CLIENT_CLOSED` and closes the socket. Idempotent. */
  close(): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ClientError('ERR_LOCKSTEP_CLIENT_CLOSED', `${p.command}: the client was closed while the request was outstanding`));
    }
    this.#pending.clear();
    this.#closed = new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve(); // already closed by a failed bind
      }
    });
    return this.#closed;
  }

  #checkKey(key: string, field: string): void {
    const problem = keyProblem(key);
    if (problem !== undefined) throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', problem, { field });
  }

  async #store(
    command: 'set' | 'add' | 'replace' | 'cas',
    key: string,
    value: Uint8Array | string,
    options: StoreOptions | undefined,
    cas: bigint | number | undefined,
  ): Promise<StoreResult> {
    this.#checkKey(key, 'key');
    const flags = options?.flags ?? 0;
    if (!Number.isInteger(flags) || flags < 0 || flags > MAX_U32) {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', `must be an integer from 0 to ${MAX_U32}, got ${String(flags)}`, { field: 'flags' });
    }
    const exptime = options?.exptime ?? 0;
    if (!Number.isSafeInteger(exptime)) {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', `must be an integer, got ${String(exptime)}`, { field: 'exptime' });
    }
    let casText = '';
    if (cas !== undefined) {
      const c = typeof cas === 'number' && Number.isSafeInteger(cas) ? BigInt(cas) : cas;
      if (typeof c !== 'bigint' || c < 0n || c > MAX_U64) {
        throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', `must be an unsigned 64-bit integer, got ${String(cas)}`, { field: 'cas' });
      }
      casText = ` ${c}`;
    }
    let data: Uint8Array;
    if (typeof value === 'string') data = Buffer.from(value, 'utf8');
    else if (value instanceof Uint8Array) data = value;
    else {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', `must be a Uint8Array or a string, got ${typeof value}`, { field: 'value' });
    }
    const noreply = options?.noreply === true;
    const head = Buffer.from(`${command} ${key} ${flags} ${exptime} ${data.length}${casText}${noreply ? ' noreply' : ''}\r\n`);
    const size = UDP_HEADER_SIZE + head.length + data.length + 2;
    if (size > MAX_DATAGRAM_SIZE) {
      const room = MAX_DATAGRAM_SIZE - (size - data.length);
      throw new ClientError(
        'ERR_LOCKSTEP_CLIENT_REQUEST_INVALID',
        `is ${data.length} bytes; with key '${key}' the request would be ${size} bytes, over the ${MAX_DATAGRAM_SIZE}-byte single-datagram limit (at most ${Math.max(0, room)} value bytes fit)`,
        { field: 'value' },
      );
    }
    const body = Buffer.concat([head, data, Buffer.from('\r\n')]);
    if (noreply) {
      await this.#sendOnly(body);
      return 'sent';
    }
    const reply = await this.#request(`${command} ${key}`, { kind: 'storage' }, body);
    switch ((reply as Extract<Reply, { kind: 'status' }>).status) {
      case 'STORED':
        return 'stored';
      case 'NOT_STORED':
        return 'not_stored';
      case 'EXISTS':
        return 'exists';
      default:
        return 'not_found';
    }
  }

  async #arith(command: 'incr' | 'decr', key: string, delta: bigint | number): Promise<bigint | null> {
    this.#checkKey(key, 'key');
    const d = typeof delta === 'number' && Number.isSafeInteger(delta) ? BigInt(delta) : delta;
    if (typeof d !== 'bigint' || d < 0n || d > MAX_U64) {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', `must be an unsigned 64-bit integer, got ${String(delta)}`, { field: 'delta' });
    }
    const reply = await this.#request(`${command} ${key}`, { kind: 'arith' }, Buffer.from(`${command} ${key} ${d}\r\n`));
    return reply.kind === 'number' ? reply.value : null;
  }

  #ensureBound(): Promise<void> {
    if (this.#closed !== undefined) {
      return Promise.reject(new ClientError('ERR_LOCKSTEP_CLIENT_CLOSED', 'the client is closed; make a new KvClient'));
    }
    this.#bound ??= new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(new ClientError('ERR_LOCKSTEP_CLIENT_SOCKET', `cannot bind the UDP socket to ${this.#bindOptions.address ?? '*'}:${this.#bindOptions.port ?? 0}: ${err.message}`, { cause: err }));
      };
      this.#socket.once('error', onError);
      this.#socket.bind({ port: this.#bindOptions.port ?? 0, address: this.#bindOptions.address }, () => {
        this.#socket.off('error', onError);
        resolve();
      });
    });
    return this.#bound;
  }

  /** A whole request id (31 bits when marked) whose low 16 bits no outstanding request uses. */
  #allocateId(): number {
    const span = this.#exactlyOnce ? 0x8000_0000 : 0x10000;
    for (let i = 0; i < 0x10000; i++) {
      const id = this.#nextId;
      this.#nextId = (this.#nextId + 1) % span;
      if (!this.#pending.has(id & 0xffff)) return id;
    }
    throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', 'all 65536 request ids are outstanding; wait for replies before sending more', { field: 'requestId' });
  }

  #frame(xid: number, body: Buffer): Buffer {
    return encodeFrame(xid & 0xffff, body, 0, 1, this.#exactlyOnce ? EXACTLY_ONCE_MARK | (xid >>> 16) : 0);
  }

  /** Sends a `noreply` request once. */
  async #sendOnly(body: Buffer): Promise<void> {
    this.#counters.requests++;
    await this.#ensureBound();
    const frame = this.#frame(this.#allocateId(), body);
    const e = this.#endpoints[this.#preferred]!;
    this.#counters.datagramsSent++;
    await new Promise<void>((resolve, reject) => {
      this.#socket.send(frame, e.port, e.host, (err) => {
        if (err === null || err === undefined) return resolve();
        this.#counters.sendErrors++;
        reject(new ClientError('ERR_LOCKSTEP_CLIENT_SOCKET', `cannot send a noreply request to ${e.host}:${e.port}: ${err.message}`, { cause: err }));
      });
    });
  }

  async #request(command: string, expect: ReplyExpectation, body: Buffer): Promise<Reply> {
    this.#counters.requests++;
    if (UDP_HEADER_SIZE + body.length > MAX_DATAGRAM_SIZE) {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', `the request would be ${UDP_HEADER_SIZE + body.length} bytes, over the ${MAX_DATAGRAM_SIZE}-byte single-datagram limit`, { field: 'keys' });
    }
    await this.#ensureBound();
    if (this.#closed !== undefined) throw new ClientError('ERR_LOCKSTEP_CLIENT_CLOSED', 'the client is closed; make a new KvClient');
    const xid = this.#allocateId();
    const id = xid & 0xffff;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const p: Pending = {
        id,
        xid,
        firstSentAt: performance.now(),
        frame: this.#frame(xid, body),
        command,
        expect,
        attempt: 0,
        start: this.#preferred,
        target: this.#preferred,
        timer: undefined,
        parts: undefined,
        partsLeft: 0,
        fragments: undefined,
        lastProblem: undefined,
        lastSendError: undefined,
        failedOver: false,
        resolve,
        reject,
      };
      this.#pending.set(id, p);
      this.#attempt(p);
    });
    if (reply.kind === 'error') {
      throw new ClientError('ERR_LOCKSTEP_CLIENT_SERVER', `${command}: the server answered ${JSON.stringify(reply.line)}`, { serverReply: reply.line });
    }
    return reply;
  }

  /** Endpoint of attempt n: the first retry stays on the starting endpoint, later ones move on. */
  #endpointOf(p: Pending): number {
    return (p.start + Math.max(0, p.attempt - 1)) % this.#endpoints.length;
  }

  #attempt(p: Pending): void {
    const target = this.#endpointOf(p);
    if (target !== p.target) {
      if (!p.failedOver) this.#counters.failovers++;
      p.failedOver = true;
      // A partial reply from the previous endpoint must not mix with this one's.
      p.parts = undefined;
      p.fragments = undefined;
    }
    p.target = target;
    const e = this.#endpoints[target]!;
    this.#counters.datagramsSent++;
    this.#socket.send(p.frame, e.port, e.host, (err) => {
      if (err === null || err === undefined) return;
      // The attempt is lost; its time-out moves the request on.
      this.#counters.sendErrors++;
      p.lastSendError = err;
    });
    p.timer = setTimeout(() => this.#onTimeout(p), this.#timeoutMs);
  }

  #onTimeout(p: Pending): void {
    this.#counters.timeouts++;
    const b = this.#backoff;
    const delay = Math.min(b.maxMs, b.initialMs * b.factor ** p.attempt);
    const outOfWindow = performance.now() + delay - p.firstSentAt > this.#retryWindowMs;
    if (p.attempt >= this.#retries || outOfWindow) {
      this.#pending.delete(p.id);
      const tried = [...new Set(Array.from({ length: p.attempt + 1 }, (_, n) => (p.start + Math.max(0, n - 1)) % this.#endpoints.length))]
        .map((i) => `${this.#endpoints[i]!.host}:${this.#endpoints[i]!.port}`)
        .join(', ');
      const attempts = `${p.attempt + 1} attempt${p.attempt === 0 ? '' : 's'} (request id ${p.id}) to ${tried}`;
      if (p.lastProblem !== undefined) {
        p.reject(new ClientError('ERR_LOCKSTEP_CLIENT_PROTOCOL', `${p.command}: no valid reply after ${attempts}; last invalid reply: ${p.lastProblem}`));
      } else {
        const send = p.lastSendError === undefined ? '' : `; last send error: ${p.lastSendError.message}`;
        const within = outOfWindow && p.attempt < this.#retries ? ` (no retry later than the ${this.#retryWindowMs} ms retry window)` : '';
        p.reject(new ClientError('ERR_LOCKSTEP_CLIENT_TIMEOUT', `${p.command}: no reply within ${this.#timeoutMs} ms after each of ${attempts}${within}${send}; check that the server is up and reachable, or raise timeoutMs/retries`, { cause: p.lastSendError }));
      }
      return;
    }
    p.attempt++;
    this.#counters.retries++;
    // The request stays in #pending through the back-off: a late reply still completes it.
    p.timer = setTimeout(() => {
      if (!this.#pending.has(p.id) || this.#closed !== undefined) return;
      if (CLIENT_CHANNELS.retry.hasSubscribers) {
        CLIENT_CHANNELS.retry.publish({ requestId: p.id, attempt: p.attempt, endpoint: this.#endpoints[this.#endpointOf(p)] });
      }
      this.#attempt(p);
    }, delay);
  }

  #ignore(reason: 'malformed' | 'unexpected', from: dgram.RemoteInfo, requestId?: number, problem?: string): void {
    this.#counters[reason]++;
    if (CLIENT_CHANNELS.ignored.hasSubscribers) {
      CLIENT_CHANNELS.ignored.publish({ reason, requestId, from: `${from.address}:${from.port}`, problem });
    }
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const header = decodeFrameHeader(msg);
    if (header === undefined) return this.#ignore('malformed', rinfo, undefined, `${msg.length}-byte datagram is shorter than the frame header`);
    const p = this.#pending.get(header.requestId);
    if (p === undefined) return this.#ignore('unexpected', rinfo, header.requestId);
    // A server that echoes the mark (kvserver) lets all 31 bits be matched: a late reply to an old
    // request whose low 16 bits repeat is not taken for this one's.
    if (header.reserved & EXACTLY_ONCE_MARK && ((header.reserved & 0x7fff) << 16) + header.requestId !== p.xid) {
      return this.#ignore('unexpected', rinfo, header.requestId);
    }
    if (header.total === 0 || header.total > MAX_REPLY_DATAGRAMS || header.sequence >= header.total) {
      const problem = `frame header says datagram ${header.sequence} of ${header.total}`;
      p.lastProblem = problem;
      return this.#ignore('malformed', rinfo, header.requestId, problem);
    }
    let body: Buffer;
    if (header.total === 1) {
      body = msg.subarray(UDP_HEADER_SIZE);
    } else {
      if (p.parts === undefined || p.parts.length !== header.total) {
        p.parts = new Array<Buffer | undefined>(header.total).fill(undefined);
        p.partsLeft = header.total;
      }
      if (p.parts[header.sequence] === undefined) p.partsLeft--;
      // A duplicate part (a retry's reply) replaces the earlier copy; from a deduplicating server it is identical.
      p.parts[header.sequence] = Buffer.from(msg.subarray(UDP_HEADER_SIZE));
      if (p.partsLeft > 0) return;
      body = Buffer.concat(p.parts as Buffer[]);
      p.parts = undefined;
    }
    const multiKey = p.expect.kind === 'values' && p.expect.keys.length > 1;
    const parsed = parseReply(p.expect, multiKey && p.fragments !== undefined ? Buffer.concat([...p.fragments, body]) : body);
    if (!parsed.ok && multiKey && isValuesFragment(p.expect, body)) {
      (p.fragments ??= []).push(Buffer.from(body));
      return;
    }
    if (!parsed.ok) {
      p.lastProblem = parsed.problem;
      return this.#ignore('malformed', rinfo, header.requestId, parsed.problem);
    }
    clearTimeout(p.timer);
    this.#pending.delete(p.id);
    this.#counters.replies++;
    this.#preferred = p.target;
    p.resolve(parsed.reply);
  }
}
