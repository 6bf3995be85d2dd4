// A memcached-text-over-TCP client load for `lockstep demo --linux`: each client keeps ONE TCP
// connection for the whole run (never reopened: a reset or close is counted and ends that client),
// writes unique values and increments its own counter, and at the end reads everything back over the
// same connection: lost writes, increments applied twice, connections reset.
import { connect, type Socket } from 'node:net';

export interface TcpLoadOptions {
  host: string;
  port: number;
  clients: number;
  /** Bound on one reply; far above a failover's outage (default 120 s). */
  replyTimeoutMs?: number;
}

export interface TcpLoadSummary {
  requests: number;
  acknowledged: number;
  writes: number;
  lost: number;
  incrs: number;
  appliedTwice: number;
  /** Connections that were reset, closed or timed out (none should be). */
  reset: number;
  /** Per kill time given to {@link TcpLoad.finish}: the longest gap between acknowledged requests of any client around it (ms). */
  outagesMs: number[];
  /** Connection errors, and incr results out of the sequence 1, 2, … n (the first 20). */
  errors: string[];
}

const CRLF = Buffer.from('\r\n');

/** CLOCK_MONOTONIC in ms: the same clock in every process of the machine (kill times come from another). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** One persistent connection, one request at a time. */
class Connection {
  #buf = Buffer.alloc(0);
  #pending: { parse: (b: Buffer) => number | undefined; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  failure: string | undefined;
  readonly #socket: Socket;

  readonly #timeoutMs: number;

  constructor(host: string, port: number, timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    this.#socket = connect({ host, port, noDelay: true });
    this.#socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#drain();
    });
    this.#socket.on('error', (e) => this.#fail(`connection error: ${e.message}`));
    this.#socket.on('close', () => this.#fail('connection closed'));
  }

  #fail(why: string): void {
    this.failure ??= why;
    const p = this.#pending;
    this.#pending = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.reject(new Error(why));
    }
  }

  #drain(): void {
    const p = this.#pending;
    if (!p) return;
    let used: number | undefined;
    try {
      used = p.parse(this.#buf);
    } catch (e) {
      // A reply that is not memcached's ends this connection, counted like a reset.
      this.#fail(`bad reply: ${(e as Error).message}`);
      this.#socket.destroy();
      return;
    }
    if (used === undefined) return;
    this.#buf = this.#buf.subarray(used);
    this.#pending = undefined;
    clearTimeout(p.timer);
    p.resolve();
  }

  /** Sends `request` and waits until `parse` accepts a whole reply (returns the bytes it used). */
  request(request: Buffer, parse: (b: Buffer) => number | undefined): Promise<void> {
    if (this.failure) return Promise.reject(new Error(this.failure));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(`no reply within ${this.#timeoutMs} ms`);
        this.#socket.destroy();
      }, this.#timeoutMs);
      this.#pending = { parse, resolve, reject, timer };
      this.#socket.write(request);
      this.#drain();
    });
  }

  /** A one-line reply: its text. */
  async line(request: string): Promise<string> {
    let text = '';
    await this.request(Buffer.from(request, 'latin1'), (b) => {
      const end = b.indexOf(CRLF);
      if (end < 0) return undefined;
      text = b.subarray(0, end).toString('latin1');
      return end + 2;
    });
    return text;
  }

  /** `get k1 k2 …`: the values found. */
  async get(keys: string[]): Promise<Map<string, Buffer>> {
    let found = new Map<string, Buffer>();
    await this.request(Buffer.from(`get ${keys.join(' ')}\r\n`, 'latin1'), (b) => {
      const items = new Map<string, Buffer>();
      for (let at = 0; ; ) {
        const end = b.indexOf(CRLF, at);
        if (end < 0) return undefined;
        const line = b.subarray(at, end).toString('latin1');
        if (line === 'END') {
          found = items;
          return end + 2;
        }
        const m = /^VALUE (\S+) \d+ (\d+)$/.exec(line);
        if (!m) throw new Error(`unexpected reply to get: ${JSON.stringify(line)}`);
        const size = Number(m[2]);
        if (b.length < end + 2 + size + 2) return undefined;
        items.set(m[1]!, Buffer.from(b.subarray(end + 2, end + 2 + size)));
        at = end + 2 + size + 2;
      }
    });
    return found;
  }

  close(): void {
    this.#socket.removeAllListeners('close');
    this.#socket.on('error', () => {});
    this.#socket.destroy();
  }
}

interface ClientState {
  id: number;
  conn: Connection;
  writes: Map<string, Buffer>;
  incrs: number[];
  acks: number[];
  requests: number;
  errors: string[];
}

/** The load: started by the constructor, stopped and verified by {@link finish}. */
export class TcpLoad {
  #stopping = false;
  readonly #clients: ClientState[];
  readonly #loops: Promise<void>[];

  constructor(options: TcpLoadOptions) {
    const timeout = options.replyTimeoutMs ?? 120_000;
    this.#clients = Array.from({ length: options.clients }, (_, id) => ({
      id,
      conn: new Connection(options.host, options.port, timeout),
      writes: new Map(),
      incrs: [],
      acks: [],
      requests: 0,
      errors: [],
    }));
    this.#loops = this.#clients.map((c) => this.#loop(c));
  }

  /** Acknowledged requests per client so far. */
  progress(): number[] {
    return this.#clients.map((c) => c.acks.length);
  }

  /** Connections lost so far. */
  resets(): number {
    return this.#clients.filter((c) => c.conn.failure !== undefined).length;
  }

  async #call<T>(c: ClientState, what: string, fn: () => Promise<T>): Promise<T> {
    c.requests++;
    try {
      const r = await fn();
      c.acks.push(monotonicMs());
      return r;
    } catch (e) {
      c.errors.push(`client ${c.id}: ${what}: ${(e as Error).message}`);
      throw e;
    }
  }

  async #loop(c: ClientState): Promise<void> {
    const counter = `c:${c.id}`;
    try {
      const set = await this.#call(c, 'set counter', () => c.conn.line(`set ${counter} 0 0 1\r\n0\r\n`));
      if (set !== 'STORED') throw new Error(`set ${counter}: ${set}`);
      for (let j = 0; !this.#stopping; j++) {
        const key = `k:${c.id}:${j}`;
        const value = Buffer.from(`v:${c.id}:${j}:${'x'.repeat(j % 64)}`);
        const stored = await this.#call(c, `set ${key}`, () => c.conn.line(`set ${key} 0 0 ${value.length}\r\n${value.toString('latin1')}\r\n`));
        if (stored === 'STORED') c.writes.set(key, value);
        const n = await this.#call(c, 'incr', () => c.conn.line(`incr ${counter} 1\r\n`));
        if (!/^\d+$/.test(n)) throw new Error(`incr ${counter}: ${n}`);
        c.incrs.push(Number(n));
      }
    } catch (e) {
      if (c.errors.length === 0) c.errors.push(`client ${c.id}: ${(e as Error).message}`);
    }
  }

  /** Stops the load, reads every acknowledged write and counter back, and closes the connections. */
  async finish(killsAt: number[] = []): Promise<TcpLoadSummary> {
    this.#stopping = true;
    await Promise.all(this.#loops);
    let lost = 0;
    let appliedTwice = 0;
    for (const c of this.#clients) {
      try {
        const keys = [...c.writes.keys()];
        for (let i = 0; i < keys.length; i += 100) {
          const batch = keys.slice(i, i + 100);
          const got = await this.#call(c, 'get', () => c.conn.get(batch));
          lost += batch.filter((k) => !got.get(k)?.equals(c.writes.get(k)!)).length;
        }
        const counter = (await this.#call(c, 'get counter', () => c.conn.get([`c:${c.id}`]))).get(`c:${c.id}`);
        const final = counter === undefined ? 0 : Number(counter.toString('latin1').trim());
        appliedTwice += Math.max(0, final - c.incrs.length);
        if (final < c.incrs.length) lost += c.incrs.length - final;
        // The values incr returned must be 1, 2, … n: a gap or a repeat is an increment applied twice or
        // lost on the way, even where the final count comes out right.
        const broken = c.incrs.findIndex((n, i) => n !== i + 1);
        if (broken >= 0) c.errors.push(`client ${c.id}: incr ${broken + 1} returned ${c.incrs[broken]}`);
      } catch {
        lost += c.writes.size;
      }
      c.conn.close();
    }
    const outagesMs = killsAt.map((k) =>
      Math.max(0, ...this.#clients.map((c) => {
        const after = c.acks.findIndex((t) => t > k);
        return after > 0 ? c.acks[after]! - c.acks[after - 1]! : 0;
      })),
    );
    const sum = (f: (c: ClientState) => number) => this.#clients.reduce((s, c) => s + f(c), 0);
    return {
      requests: sum((c) => c.requests),
      acknowledged: sum((c) => c.acks.length),
      writes: sum((c) => c.writes.size),
      lost,
      incrs: sum((c) => c.incrs.length),
      appliedTwice,
      reset: this.#clients.filter((c) => c.conn.failure !== undefined).length,
      outagesMs,
      errors: this.#clients.flatMap((c) => c.errors).slice(0, 20),
    };
  }
}
