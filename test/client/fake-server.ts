// An in-test memcached-UDP server: the subset kvserver speaks (get/gets, set/add/replace/cas,
// delete, incr/decr, version, stats, noreply), with a reply cache keyed by source address, port and
// request id, and knobs to drop, corrupt or falsify traffic. Not for production: exptime is ignored.
import dgram from 'node:dgram';
import { MAX_DATAGRAM_SIZE, UDP_HEADER_SIZE, decodeFrameHeader, encodeFrame } from '../../src/client/protocol.js';

/** One request datagram as the server saw it. */
export interface ReceivedRequest {
  from: string;
  requestId: number;
  command: string;
  dropped: boolean;
  replayed: boolean;
  /** performance.now() when it arrived. */
  at: number;
}

export interface FakeServerOptions {
  /** Drop the first N request datagrams unseen (as if lost on the way in). */
  dropRequests?: number;
  /** Apply the first N requests but drop their replies (as if lost on the way back). */
  dropReplies?: number;
  /** Drop request datagram number n (0-based, counting every datagram received) when this says so. */
  dropRequest?: (n: number) => boolean;
  /** Drop the reply to request datagram number n when this says so (after applying it). */
  dropReply?: (n: number) => boolean;
  /** Answer retries from the reply cache (the kvserver behaviour). Default true. */
  dedup?: boolean;
  /** Injected bug: a get/gets of a key answers with the value it had before the last write, when there is one. */
  staleReads?: (key: string) => boolean;
  /** Datagrams sent before the real reply of a request (garbage, wrong ids, truncated copies). */
  prelude?: (requestId: number, command: string, reply: Buffer) => Buffer[];
  /** Replaces the reply body of a request (`undefined` keeps the real one). */
  rewrite?: (requestId: number, command: string, reply: Buffer) => Buffer | undefined;
  /** Extra STAT lines in `stats`, to force a reply over several datagrams. */
  extraStats?: number;
  version?: string;
}

interface Entry {
  value: Buffer;
  flags: number;
  cas: bigint;
  previous: Buffer | undefined;
}

const CACHE_LIMIT = 4096;
const MAX_U64 = (1n << 64n) - 1n;

export class FakeMemcached {
  readonly #socket: dgram.Socket;
  readonly #options: FakeServerOptions;
  readonly store = new Map<string, Entry>();
  readonly received: ReceivedRequest[] = [];
  /** Mutations applied (set/add/replace/cas that stored, delete that deleted, incr/decr that changed). */
  applied = 0;
  /** Requests answered from the reply cache. */
  replays = 0;
  #dropRequests: number;
  #dropReplies: number;
  #nextCas = 1n;
  readonly #cache = new Map<string, { request: Buffer; reply: Buffer | undefined }>();

  private constructor(socket: dgram.Socket, options: FakeServerOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#dropRequests = options.dropRequests ?? 0;
    this.#dropReplies = options.dropReplies ?? 0;
    socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
  }

  static async start(options: FakeServerOptions = {}): Promise<FakeMemcached> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => resolve());
    });
    return new FakeMemcached(socket, options);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  get endpoint(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.port };
  }

  /** Sends a raw datagram to `port` on 127.0.0.1 from the server's socket. */
  sendRaw(datagram: Buffer, port: number): void {
    this.#socket.send(datagram, port, '127.0.0.1');
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const header = decodeFrameHeader(msg);
    if (header === undefined || header.total !== 1 || header.sequence !== 0) return; // memcached drops these too
    const body = msg.subarray(UDP_HEADER_SIZE);
    const command = body.toString('latin1', 0, Math.max(0, body.indexOf('\r\n')));
    const from = `${rinfo.address}:${rinfo.port}`;
    const record: ReceivedRequest = { from, requestId: header.requestId, command, dropped: false, replayed: false, at: performance.now() };
    const n = this.received.push(record) - 1;
    if (this.#dropRequests > 0 || this.#options.dropRequest?.(n) === true) {
      if (this.#dropRequests > 0) this.#dropRequests--;
      record.dropped = true;
      return;
    }
    const cacheKey = `${from}#${header.requestId}`;
    const cached = this.#options.dedup === false ? undefined : this.#cache.get(cacheKey);
    let reply: Buffer | undefined;
    // Same source and id but a different body is a new request that reuses an old id, not a retry.
    if (cached !== undefined && cached.request.equals(body)) {
      record.replayed = true;
      this.replays++;
      reply = cached.reply;
    } else {
      reply = this.#execute(body);
      if (reply !== undefined) reply = this.#options.rewrite?.(header.requestId, command, reply) ?? reply;
      this.#cache.set(cacheKey, { request: Buffer.from(body), reply });
      if (this.#cache.size > CACHE_LIMIT) this.#cache.delete(this.#cache.keys().next().value as string);
    }
    if (reply === undefined) return; // noreply
    if (this.#dropReplies > 0) {
      this.#dropReplies--;
      return;
    }
    if (this.#options.dropReply?.(n) === true) return;
    for (const d of this.#options.prelude?.(header.requestId, command, reply) ?? []) this.#socket.send(d, rinfo.port, rinfo.address);
    const chunk = MAX_DATAGRAM_SIZE - UDP_HEADER_SIZE;
    const total = Math.max(1, Math.ceil(reply.length / chunk));
    for (let seq = 0; seq < total; seq++) {
      this.#socket.send(encodeFrame(header.requestId, reply.subarray(seq * chunk, (seq + 1) * chunk), seq, total), rinfo.port, rinfo.address);
    }
  }

  /** Runs one command; `undefined` for noreply. */
  #execute(body: Buffer): Buffer | undefined {
    const lineEnd = body.indexOf('\r\n');
    if (lineEnd < 0) return Buffer.from('ERROR\r\n');
    const words = body.toString('utf8', 0, lineEnd).split(' ');
    const noreply = words[words.length - 1] === 'noreply';
    if (noreply) words.pop();
    const answer = (text: string | Buffer): Buffer | undefined => (noreply ? undefined : typeof text === 'string' ? Buffer.from(text) : text);
    const cmd = words[0];
    switch (cmd) {
      case 'get':
      case 'gets': {
        if (words.length < 2) return answer('ERROR\r\n');
        const parts: Buffer[] = [];
        for (const key of words.slice(1)) {
          const e = this.store.get(key);
          if (e === undefined) continue;
          const value = e.previous !== undefined && this.#options.staleReads?.(key) === true ? e.previous : e.value;
          parts.push(Buffer.from(`VALUE ${key} ${e.flags} ${value.length}${cmd === 'gets' ? ` ${e.cas}` : ''}\r\n`), value, Buffer.from('\r\n'));
        }
        parts.push(Buffer.from('END\r\n'));
        return answer(Buffer.concat(parts));
      }
      case 'set':
      case 'add':
      case 'replace':
      case 'cas': {
        const want = cmd === 'cas' ? 6 : 5;
        if (words.length !== want) return answer('ERROR\r\n');
        const [, key, flagsText, , bytesText] = words as [string, string, string, string, string];
        const bytes = Number(bytesText);
        const flags = Number(flagsText);
        if (!Number.isInteger(bytes) || bytes < 0 || !Number.isInteger(flags)) return answer('CLIENT_ERROR bad command line format\r\n');
        const start = lineEnd + 2;
        if (body.length !== start + bytes + 2 || body[start + bytes] !== 0x0d || body[start + bytes + 1] !== 0x0a) {
          return answer('CLIENT_ERROR bad data chunk\r\n');
        }
        const value = Buffer.from(body.subarray(start, start + bytes));
        const e = this.store.get(key);
        if (cmd === 'add' && e !== undefined) return answer('NOT_STORED\r\n');
        if (cmd === 'replace' && e === undefined) return answer('NOT_STORED\r\n');
        if (cmd === 'cas') {
          if (e === undefined) return answer('NOT_FOUND\r\n');
          if (e.cas !== BigInt(words[5]!)) return answer('EXISTS\r\n');
        }
        this.store.set(key, { value, flags, cas: this.#nextCas++, previous: e?.value });
        this.applied++;
        return answer('STORED\r\n');
      }
      case 'delete': {
        if (words.length !== 2) return answer('ERROR\r\n');
        if (!this.store.delete(words[1]!)) return answer('NOT_FOUND\r\n');
        this.applied++;
        return answer('DELETED\r\n');
      }
      case 'incr':
      case 'decr': {
        if (words.length !== 3 || !/^[0-9]+$/.test(words[2]!)) return answer('CLIENT_ERROR invalid numeric delta argument\r\n');
        const e = this.store.get(words[1]!);
        if (e === undefined) return answer('NOT_FOUND\r\n');
        const text = e.value.toString('latin1');
        if (!/^[0-9]+$/.test(text)) return answer('CLIENT_ERROR cannot increment or decrement non-numeric value\r\n');
        const old = BigInt(text);
        const delta = BigInt(words[2]!);
        const next = cmd === 'incr' ? (old + delta) & MAX_U64 : old > delta ? old - delta : 0n;
        this.store.set(words[1]!, { value: Buffer.from(`${next}`), flags: e.flags, cas: this.#nextCas++, previous: e.value });
        this.applied++;
        return answer(`${next}\r\n`);
      }
      case 'version':
        return answer(`VERSION ${this.#options.version ?? '1.6.0-fake'}\r\n`);
      case 'stats': {
        const lines = [`STAT pid ${process.pid}`, `STAT curr_items ${this.store.size}`, `STAT version ${this.#options.version ?? '1.6.0-fake'}`];
        for (let i = 0; i < (this.#options.extraStats ?? 0); i++) lines.push(`STAT extra_${i} ${i}`);
        return answer(`${lines.join('\r\n')}\r\nEND\r\n`);
      }
      default:
        return answer('ERROR\r\n');
    }
  }
}
