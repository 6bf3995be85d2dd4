// The kvserver request script and a small memcached-over-UDP client, shared by every test that talks
// to guest/bin/kvserver.elf (QEMU in devices.test.ts; lockstep's own devices can run the same script):
// each step is one datagram and the exact reply text a correct kvserver sends on a fresh disk.
import { createSocket, type Socket } from 'node:dgram';

/** Bit 15 of the frame header's reserved field: kvserver's exactly-once mark (see kvserver.c). */
export const KV_MARK = 0x8000;

/** One request datagram and its expected reply. */
export interface KvStep {
  /** What the step checks, for failure messages. */
  name: string;
  /** Protocol text after the 8-byte frame header (may hold several commands). */
  request: string;
  /** Exact reply text after the frame header; null when the request must get no reply (noreply). */
  reply: string | null;
  /**
   * Resend the datagram of the earlier step with this name, with the same request id: a retry,
   * which must be answered again from the reply cache (the same reply) and not applied twice.
   */
  retryOf?: string;
  /**
   * Send it as a stock memcached client does: the reserved header field 0 (no exactly-once mark),
   * so the server must execute it whatever came before, exactly as memcached.
   */
  stock?: boolean;
  /** Use this 16-bit request id (default: a fresh one). */
  requestId?: number;
  /**
   * The reply is a `stats` answer whose `reply_cache_hits` may exceed the scripted value by the
   * number of datagrams this client resent after a timeout (each resend that reaches the server
   * while its first copy was only slow is, correctly, a cache hit).
   */
  stats?: boolean;
}

const V1000 = 'x'.repeat(1000);
const V1025 = 'y'.repeat(1025);
const KEY251 = 'k'.repeat(251);

/** The stats answer, from the counters a script leaves behind. */
export function statsReply(c: Record<string, number>): string {
  const order = [
    'pid', 'version', 'pointer_size', 'curr_items', 'total_items', 'bytes', 'cmd_get', 'cmd_set', 'cmd_flush',
    'cmd_touch', 'get_hits', 'get_misses', 'delete_hits', 'delete_misses', 'incr_hits', 'incr_misses',
    'decr_hits', 'decr_misses', 'cas_hits', 'cas_misses', 'cas_badval', 'touch_hits', 'touch_misses',
    'evictions', 'limit_maxbytes', 'limit_items', 'reply_cache_hits', 'reply_cache_full', 'reply_cache_mismatch',
    'requests_too_large', 'storage', 'wal_records', 'wal_compactions', 'wal_errors', 'wal_refused', 'wal_lost_records',
  ];
  const fixed: Record<string, number | string> = {
    pid: 1, version: '1.6.0-lockstep', pointer_size: 32, evictions: 0, limit_maxbytes: 262144, limit_items: 256, storage: 'disk',
  };
  return order.map((k) => `STAT ${k} ${String(fixed[k] ?? c[k] ?? 0)}\r\n`).join('') + 'END\r\n';
}

/**
 * The main script, for a freshly booted kvserver on a blank disk image. CAS values are exact: the
 * server numbers modifications 1, 2, 3, ... from a blank disk.
 */
export const KV_SCRIPT: readonly KvStep[] = [
  { name: 'version', request: 'version\r\n', reply: 'VERSION 1.6.0-lockstep\r\n' },
  { name: 'get of a missing key', request: 'get foo\r\n', reply: 'END\r\n' },
  { name: 'set', request: 'set foo 0 0 3\r\nbar\r\n', reply: 'STORED\r\n' }, // cas 1
  { name: 'get after set', request: 'get foo\r\n', reply: 'VALUE foo 0 3\r\nbar\r\nEND\r\n' },
  { name: 'set with flags and exptime', request: 'set k2 42 3600 5\r\nhello\r\n', reply: 'STORED\r\n' }, // cas 2
  { name: 'get of several keys', request: 'get foo missing k2\r\n', reply: 'VALUE foo 0 3\r\nbar\r\nVALUE k2 42 5\r\nhello\r\nEND\r\n' },
  { name: 'gets', request: 'gets foo k2\r\n', reply: 'VALUE foo 0 3 1\r\nbar\r\nVALUE k2 42 5 2\r\nhello\r\nEND\r\n' },
  { name: 'add of an existing key', request: 'add foo 0 0 1\r\nz\r\n', reply: 'NOT_STORED\r\n' },
  { name: 'add of a new key', request: 'add newkey 1 0 1\r\nx\r\n', reply: 'STORED\r\n' }, // cas 3
  { name: 'replace of a missing key', request: 'replace nothere 0 0 1\r\nz\r\n', reply: 'NOT_STORED\r\n' },
  { name: 'replace', request: 'replace foo 7 0 4\r\nbaz!\r\n', reply: 'STORED\r\n' }, // cas 4
  { name: 'gets after replace', request: 'gets foo\r\n', reply: 'VALUE foo 7 4 4\r\nbaz!\r\nEND\r\n' },
  { name: 'cas with a stale value', request: 'cas foo 0 0 3 1\r\nqux\r\n', reply: 'EXISTS\r\n' },
  { name: 'cas', request: 'cas foo 0 0 3 4\r\nqux\r\n', reply: 'STORED\r\n' }, // cas 5
  { name: 'cas of a missing key', request: 'cas nothere 0 0 1 9\r\nz\r\n', reply: 'NOT_FOUND\r\n' },
  { name: 'append', request: 'append foo 9 0 2\r\n++\r\n', reply: 'STORED\r\n' }, // cas 6
  { name: 'prepend', request: 'prepend foo 9 0 2\r\n--\r\n', reply: 'STORED\r\n' }, // cas 7
  { name: 'append/prepend keep flags', request: 'gets foo\r\n', reply: 'VALUE foo 0 7 7\r\n--qux++\r\nEND\r\n' },
  { name: 'delete', request: 'delete foo\r\n', reply: 'DELETED\r\n' },
  { name: 'delete of a missing key', request: 'delete foo\r\n', reply: 'NOT_FOUND\r\n' },
  { name: 'get after delete', request: 'get foo\r\n', reply: 'END\r\n' },
  { name: 'set a counter', request: 'set ctr 0 0 2\r\n10\r\n', reply: 'STORED\r\n' }, // cas 8
  { name: 'incr', request: 'incr ctr 5\r\n', reply: '15\r\n' }, // cas 9
  { name: 'decr below zero stops at 0', request: 'decr ctr 20\r\n', reply: '0\r\n' }, // cas 10
  { name: 'incr of a missing key', request: 'incr nothere 1\r\n', reply: 'NOT_FOUND\r\n' },
  { name: 'decr of a missing key', request: 'decr nothere 1\r\n', reply: 'NOT_FOUND\r\n' },
  { name: 'incr of a non-numeric value', request: 'incr k2 1\r\n', reply: 'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n' },
  { name: 'incr with a bad delta', request: 'incr ctr abc\r\n', reply: 'CLIENT_ERROR invalid numeric delta argument\r\n' },
  { name: 'incr to 2^64-1', request: 'incr ctr 18446744073709551615\r\n', reply: '18446744073709551615\r\n' }, // cas 11
  { name: 'incr wraps at 2^64', request: 'incr ctr 2\r\n', reply: '1\r\n' }, // cas 12
  { name: 'set noreply', request: 'set nr 3 0 2 noreply\r\nok\r\n', reply: null }, // cas 13
  { name: 'delete noreply', request: 'delete k2 noreply\r\n', reply: null },
  { name: 'incr noreply', request: 'incr ctr 1 noreply\r\n', reply: null }, // cas 14
  { name: 'noreply commands took effect', request: 'gets nr k2 ctr\r\n', reply: 'VALUE nr 3 2 13\r\nok\r\nVALUE ctr 0 1 14\r\n2\r\nEND\r\n' },
  { name: 'incr to be retried', request: 'incr ctr 10\r\n', reply: '12\r\n' }, // cas 15
  { name: 'retried incr answered from the reply cache', request: 'incr ctr 10\r\n', reply: '12\r\n', retryOf: 'incr to be retried' },
  { name: 'retried incr applied once', request: 'get ctr\r\n', reply: 'VALUE ctr 0 2\r\n12\r\nEND\r\n' },
  { name: 'set to be retried', request: 'set once 0 0 1\r\na\r\n', reply: 'STORED\r\n' }, // cas 16
  { name: 'retried set answered from the reply cache', request: 'set once 0 0 1\r\na\r\n', reply: 'STORED\r\n', retryOf: 'set to be retried' },
  { name: 'retried set applied once', request: 'gets once\r\n', reply: 'VALUE once 0 1 16\r\na\r\nEND\r\n' },
  {
    name: 'several commands in one datagram',
    request: 'set m1 0 0 1\r\na\r\nset m2 5 0 1\r\nb\r\nget m1 m2\r\n',
    reply: 'STORED\r\nSTORED\r\nVALUE m1 0 1\r\na\r\nVALUE m2 5 1\r\nb\r\nEND\r\n',
  }, // cas 17, 18
  { name: 'a value above 1024 bytes', request: `set big 0 0 1025\r\n${V1025}\r\n`, reply: 'SERVER_ERROR object too large for cache\r\n' },
  { name: 'a 1000-byte value', request: `set v1 0 0 1000\r\n${V1000}\r\n`, reply: 'STORED\r\n' }, // cas 19
  { name: 'another 1000-byte value', request: `set v2 0 0 1000\r\n${V1000}\r\n`, reply: 'STORED\r\n' }, // cas 20
  { name: 'a reply that fits one datagram', request: 'get v1\r\n', reply: `VALUE v1 0 1000\r\n${V1000}\r\nEND\r\n` },
  { name: 'a reply beyond one datagram', request: 'get v1 v2\r\n', reply: 'SERVER_ERROR object too large for cache\r\n' },
  { name: 'an unknown command', request: 'bogus\r\n', reply: 'ERROR\r\n' },
  { name: 'a storage command without bytes', request: 'set x 0 0\r\n', reply: 'CLIENT_ERROR bad command line format\r\n' },
  { name: 'a data block of the wrong length', request: 'set x 0 0 5\r\nabc\r\n', reply: 'CLIENT_ERROR bad data chunk\r\n' },
  { name: 'a key above 250 bytes', request: `get ${KEY251}\r\n`, reply: 'CLIENT_ERROR bad command line format\r\n' },
  { name: 'touch', request: 'touch ctr 100\r\n', reply: 'TOUCHED\r\n' },
  { name: 'touch of a missing key', request: 'touch nothere 100\r\n', reply: 'NOT_FOUND\r\n' },
  { name: 'verbosity', request: 'verbosity 1\r\n', reply: 'OK\r\n' },
  // A stock client (no exactly-once mark) reusing one request id gets memcached's semantics: every
  // datagram runs, however much it looks like an earlier one.
  { name: 'set a counter for a stock client', request: 'set n 0 0 1\r\n5\r\n', reply: 'STORED\r\n' }, // cas 21
  { name: 'stock incr with request id 0', request: 'incr n 1\r\n', reply: '6\r\n', stock: true, requestId: 0 }, // cas 22
  { name: 'the same stock incr again is a new request', request: 'incr n 1\r\n', reply: '7\r\n', stock: true, requestId: 0 }, // cas 23
  { name: 'and again', request: 'incr n 1\r\n', reply: '8\r\n', stock: true, requestId: 0 }, // cas 24
  { name: 'set a key to delete', request: 'set d 0 0 1\r\nx\r\n', reply: 'STORED\r\n' }, // cas 25
  { name: 'stock delete with request id 0', request: 'delete d\r\n', reply: 'DELETED\r\n', stock: true, requestId: 0 },
  { name: 'set it again', request: 'set d 0 0 1\r\nx\r\n', reply: 'STORED\r\n' }, // cas 26
  { name: 'the same stock delete deletes it again', request: 'delete d\r\n', reply: 'DELETED\r\n', stock: true, requestId: 0 },
  { name: 'the key is gone', request: 'get d\r\n', reply: 'END\r\n' },
  // A marked id reused with other text breaks the client's promise: it runs as a new request.
  { name: 'a marked id reused with other text runs', request: 'incr n 1\r\n', reply: '9\r\n', retryOf: 'incr to be retried' }, // cas 27
  // Too large for one frame: only the first fragment reaches the guest, which answers instead of
  // leaving the client to retry forever.
  { name: 'a storage request too large for one datagram', request: `set big2 0 0 1500\r\n${'z'.repeat(1500)}\r\n`, reply: 'SERVER_ERROR object too large for cache\r\n' },
  { name: 'a command line too long for one datagram', request: `get ${Array.from({ length: 8 }, (_, i) => `${i}`.repeat(200)).join(' ')}\r\n`, reply: 'CLIENT_ERROR line too long\r\n' },
  {
    name: 'stats',
    request: 'stats\r\n',
    stats: true,
    reply: statsReply({
      // live: newkey, ctr, nr, once, m1, m2, v1, v2, n
      curr_items: 9,
      // every STORED (including the noreply set; not the retried one)
      total_items: 17,
      bytes: 1 + 2 + 2 + 1 + 1 + 1 + 1000 + 1000 + 1,
      // one per key looked up by get/gets
      cmd_get: 21,
      // every storage command with a well-formed data block (the retried one not again)
      cmd_set: 21,
      cmd_flush: 0,
      cmd_touch: 2,
      get_hits: 16,
      get_misses: 5,
      delete_hits: 4,
      delete_misses: 1,
      incr_hits: 9,
      incr_misses: 1,
      decr_hits: 1,
      decr_misses: 1,
      cas_hits: 1,
      cas_misses: 1,
      cas_badval: 1,
      touch_hits: 1,
      touch_misses: 1,
      reply_cache_hits: 2,
      reply_cache_mismatch: 1,
      requests_too_large: 2,
      // one per applied modification: 17 stores and 10 incr/decr (cas 1..27), 4 deletes
      wal_records: 31,
      wal_compactions: 0,
      wal_errors: 0,
    }),
  },
];

/** After killing the server and booting it again on the same image: everything acknowledged is back. */
export const KV_AFTER_RESTART: readonly KvStep[] = [
  {
    name: 'data and CAS values survive a restart',
    request: 'gets foo k2 newkey ctr nr once m1 m2\r\n',
    reply:
      'VALUE newkey 1 1 3\r\nx\r\nVALUE ctr 0 2 15\r\n12\r\nVALUE nr 3 2 13\r\nok\r\nVALUE once 0 1 16\r\na\r\n' +
      'VALUE m1 0 1 17\r\na\r\nVALUE m2 5 1 18\r\nb\r\nEND\r\n',
  },
  { name: 'the stock client\'s counter survives a restart', request: 'gets n d\r\n', reply: 'VALUE n 0 1 27\r\n9\r\nEND\r\n' },
  { name: 'large values survive a restart', request: 'gets v2\r\n', reply: `VALUE v2 0 1000 20\r\n${V1000}\r\nEND\r\n` },
  { name: 'CAS numbering continues after a restart', request: 'incr ctr 1\r\n', reply: '13\r\n' }, // cas 28
  { name: 'gets after the restart', request: 'gets ctr\r\n', reply: 'VALUE ctr 0 2 28\r\n13\r\nEND\r\n' },
  { name: 'flush_all', request: 'flush_all\r\n', reply: 'OK\r\n' },
  { name: 'flush_all empties the store', request: 'get ctr v1 m1\r\n', reply: 'END\r\n' },
  { name: 'set after flush_all', request: 'set after 0 0 5\r\nflush\r\n', reply: 'STORED\r\n' }, // cas 29
];

/** After a second restart: flush_all was logged too. */
export const KV_AFTER_FLUSH: readonly KvStep[] = [
  { name: 'flush_all survives a restart', request: 'gets ctr v1 after\r\n', reply: 'VALUE after 0 5 29\r\nflush\r\nEND\r\n' },
];

/** The boot line kvserver prints once it serves, with the number of items its log replay rebuilt. */
export function bootLine(itemsRecovered: number): string {
  return `kvserver: listening on 10.0.2.15:11211, ${itemsRecovered} items recovered\n`;
}

/** Items recovered at each boot of the scripted sequence: blank disk, after KV_SCRIPT, after KV_AFTER_RESTART. */
export const KV_RECOVERED = [0, 9, 1] as const;

export interface KvClientOptions {
  /** Wait this long for a reply before resending (the same request id). */
  timeoutMs?: number;
  /** Give up after this many sends of one request. */
  attempts?: number;
}

export interface KvReply {
  /** Reply text after the frame header, or null when none came (expected for noreply). */
  text: string | null;
  requestId: number;
  /** Datagrams sent for this request (1 unless a reply timed out). */
  sends: number;
}

/**
 * A memcached UDP client: 8-byte frame header, one datagram each way, bounded retries with the same id.
 * Requests carry kvserver's exactly-once mark (bit 15 of the reserved header field, the 31-bit id's
 * high bits 0) unless sent as `stock`, as a plain memcached client sends them.
 */
export class KvUdpClient {
  private readonly socket: Socket;
  private nextId = 1;
  private readonly waiting = new Map<number, (text: string) => void>();
  /** Datagrams resent after a timeout, over the client's life. */
  resends = 0;

  constructor(
    readonly port: number,
    readonly host = '127.0.0.1',
    private readonly options: KvClientOptions = {},
  ) {
    this.socket = createSocket('udp4');
    this.socket.on('message', (m: Buffer) => {
      if (m.length < 8) return;
      const id = m.readUInt16BE(0);
      const w = this.waiting.get(id);
      if (w) {
        this.waiting.delete(id);
        w(m.subarray(8).toString('latin1'));
      }
    });
  }

  /** A fresh request id (1..65535, wrapping). */
  newId(): number {
    const id = this.nextId;
    this.nextId = (this.nextId % 0xffff) + 1;
    return id;
  }

  private datagram(id: number, text: string, stock = false): Buffer {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(id, 0); // request id
    h.writeUInt16BE(0, 2); // sequence number
    h.writeUInt16BE(1, 4); // total datagrams
    h.writeUInt16BE(stock ? 0 : KV_MARK, 6); // reserved: the exactly-once mark
    return Buffer.concat([h, Buffer.from(text, 'latin1')]);
  }

  private sendOnce(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(buf, this.port, this.host, (e) => (e ? reject(e) : resolve())));
  }

  /**
   * Sends `text` and waits for the reply, resending the same datagram (same id) after each timeout.
   * A `stock` request is sent once and waited for over all the attempts' time: resending it would
   * (rightly) run it again. With expectReply false, sends once and resolves with text null after
   * `quietMs` of silence (rejecting if a reply does come).
   */
  async request(text: string, opts: { requestId?: number; expectReply?: boolean; quietMs?: number; stock?: boolean } = {}): Promise<KvReply> {
    const id = opts.requestId ?? this.newId();
    const buf = this.datagram(id, text, opts.stock);
    if (opts.expectReply === false) {
      const got = new Promise<string>((resolve) => this.waiting.set(id, resolve));
      await this.sendOnce(buf);
      const quiet = new Promise<null>((resolve) => setTimeout(() => resolve(null), opts.quietMs ?? 50));
      const r = await Promise.race([got, quiet]);
      this.waiting.delete(id);
      return { text: r, requestId: id, sends: 1 };
    }
    const stock = opts.stock === true;
    const timeoutMs = (this.options.timeoutMs ?? 1000) * (stock ? (this.options.attempts ?? 5) : 1);
    const attempts = stock ? 1 : (this.options.attempts ?? 5);
    const got = new Promise<string>((resolve) => this.waiting.set(id, resolve));
    for (let sends = 1; sends <= attempts; sends++) {
      await this.sendOnce(buf);
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([got, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
      clearTimeout(timer);
      if (r !== null) return { text: r, requestId: id, sends };
      if (sends < attempts) this.resends++;
    }
    this.waiting.delete(id);
    throw new Error(`no reply to ${JSON.stringify(text.slice(0, 60))} (id ${id}) from ${this.host}:${this.port} after ${attempts} sends`);
  }

  /**
   * Waits until the server answers `version` (each attempt with a fresh id, so nothing lands in the
   * reply cache): the first datagrams may be lost while the host side learns the guest's MAC.
   */
  async waitUntilServing(totalMs: number, intervalMs = 200): Promise<void> {
    const deadline = Date.now() + totalMs;
    for (;;) {
      const id = this.newId();
      const got = new Promise<string>((resolve) => this.waiting.set(id, resolve));
      await this.sendOnce(this.datagram(id, 'version\r\n'));
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([got, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), intervalMs)))]);
      clearTimeout(timer);
      this.waiting.delete(id);
      if (r !== null) return;
      if (Date.now() > deadline) throw new Error(`${this.host}:${this.port} did not answer 'version' within ${totalMs} ms`);
    }
  }

  close(): void {
    this.socket.close();
  }
}

export interface KvOutcome {
  step: KvStep;
  /** What came back (null: no reply). */
  got: string | null;
  /** What it is compared with: the step's reply, with the stats tolerance applied. */
  want: string | null;
}

/** Runs the steps in order against `client`; returns each reply next to its expectation. */
export async function runKvSteps(client: KvUdpClient, steps: readonly KvStep[]): Promise<KvOutcome[]> {
  const ids = new Map<string, number>();
  const outcomes: KvOutcome[] = [];
  for (const step of steps) {
    const requestId = step.retryOf !== undefined ? ids.get(step.retryOf) : step.requestId;
    if (step.retryOf !== undefined && requestId === undefined) throw new Error(`step '${step.name}' retries unknown step '${step.retryOf}'`);
    const resendsBefore = client.resends;
    const r = await client.request(step.request, { requestId, expectReply: step.reply !== null, stock: step.stock === true });
    ids.set(step.name, r.requestId);
    let want = step.reply;
    if (step.stats && want !== null && r.text !== null) {
      // Resends after a timeout may legitimately have been answered from the cache.
      const m = /STAT reply_cache_hits (\d+)\r\n/.exec(r.text);
      const scripted = Number(/STAT reply_cache_hits (\d+)\r\n/.exec(want)?.[1] ?? 0);
      const slack = resendsBefore; // every resend so far, plus none for this request (it was answered)
      if (m && Number(m[1]) >= scripted && Number(m[1]) <= scripted + slack + (r.sends - 1)) {
        want = want.replace(/STAT reply_cache_hits \d+\r\n/, `STAT reply_cache_hits ${m[1]}\r\n`);
      }
    }
    outcomes.push({ step, got: r.text, want });
  }
  return outcomes;
}
