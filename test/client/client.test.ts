// KvClient under loss, garbage and dead endpoints, against the in-test fake server: retries keep
// the request id and source port, the reply cache applies a write once, bad datagrams are ignored.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientError, KvClient, encodeFrame, type KvClientOptions } from '../../src/client/index.js';
import { LockstepError } from '../../src/errors.js';
import { FakeMemcached, type FakeServerOptions } from './fake-server.js';
import { until } from '../helpers/wait.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake(options?: FakeServerOptions): Promise<FakeMemcached> {
  const s = await FakeMemcached.start(options);
  cleanups.push(() => s.close());
  return s;
}

function client(endpoints: { host: string; port: number }[], options: Partial<KvClientOptions> = {}): KvClient {
  // Time-outs long enough that a loaded machine does not add retries the exact counts below exclude.
  const c = new KvClient({ endpoints, timeoutMs: 150, retries: 3, backoff: { initialMs: 1, maxMs: 5, factor: 2 }, ...options });
  cleanups.push(() => c.close());
  return c;
}

/** A socket that receives and never answers: a hung server. */
async function blackhole(): Promise<{ endpoint: { host: string; port: number }; seen: { id: number; from: number }[] }> {
  const s = dgram.createSocket('udp4');
  const seen: { id: number; from: number }[] = [];
  s.on('message', (m, r) => seen.push({ id: m.readUInt16BE(0), from: r.port }));
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  cleanups.push(() => new Promise((resolve) => s.close(() => resolve())));
  return { endpoint: { host: '127.0.0.1', port: s.address().port }, seen };
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  expect(err).toBeInstanceOf(LockstepError);
  return err as ClientError;
}

describe('request validation', () => {
  it('refuses bad keys, values and options before sending, naming the field', async () => {
    const s = await fake();
    const c = client([s.endpoint]);
    const cases: [Promise<unknown>, string, RegExp][] = [
      [c.get('has space'), 'key', /space/],
      [c.get('tab\there'), 'key', /control character 0x09/],
      [c.get(''), 'key', /empty/],
      [c.get('k'.repeat(251)), 'key', /251 bytes.*250/],
      [c.set('k', 'v', { flags: -1 }), 'flags', /0 to 4294967295/],
      [c.set('k', 'v', { exptime: 1.5 }), 'exptime', /integer/],
      [c.set('k', Buffer.alloc(1400)), 'value', /1400-byte single-datagram limit/],
      [c.incr('k', -1), 'delta', /unsigned 64-bit/],
      [c.gets([]), 'keys', /non-empty/],
      [c.gets(['ok', 'bad key']), 'keys[1]', /space/],
      [c.gets(Array.from({ length: 20 }, (_, i) => `${'k'.repeat(240)}${i}`)), 'keys', /1400-byte/],
    ];
    for (const [p, field, message] of cases) {
      const err = await rejection(p);
      expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID');
      expect(err.field).toBe(field);
      expect(err.message).toMatch(message);
      expect(err.message.startsWith(`${field}: `)).toBe(true);
    }
    expect(s.received).toHaveLength(0);
    expect(await c.get('k'.repeat(250))).toBeNull(); // exactly 250 bytes is allowed
  });

  it('refuses bad constructor options with ERR_LOCKSTEP_OPTION_INVALID', () => {
    const bad: [unknown, string][] = [
      [{ endpoints: [] }, 'endpoints'],
      [{ endpoints: [{ host: '127.0.0.1', port: 0 }] }, 'endpoints[0].port'],
      [{ endpoints: [{ host: '', port: 1 }] }, 'endpoints[0].host'],
      [{ endpoints: [{ host: '::1', port: 1 }, { host: '127.0.0.1', port: 1 }] }, 'endpoints'],
      [{ endpoints: [{ host: '127.0.0.1', port: 1 }], timeoutMs: 0 }, 'timeoutMs'],
      [{ endpoints: [{ host: '127.0.0.1', port: 1 }], backoff: { factor: 0.5 } }, 'backoff.factor'],
    ];
    for (const [options, field] of bad) {
      let err: unknown;
      try {
        new KvClient(options as KvClientOptions);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'ERR_LOCKSTEP_OPTION_INVALID', field });
    }
  });
});

describe('retries', () => {
  it('retries a lost request with the same request id from the same port, and the write applies once', async () => {
    const s = await fake({ dropRequests: 2 });
    const c = client([s.endpoint]);
    expect(await c.set('k', 'v')).toBe('stored');
    expect(s.received).toHaveLength(3);
    expect(new Set(s.received.map((r) => r.requestId)).size).toBe(1);
    expect(new Set(s.received.map((r) => r.from)).size).toBe(1);
    expect(s.received.map((r) => r.dropped)).toEqual([true, true, false]);
    expect(s.applied).toBe(1);
    expect(c.counters).toMatchObject({ requests: 1, datagramsSent: 3, retries: 2, timeouts: 2, replies: 1 });
  });

  it('a retry after a lost reply is answered from the reply cache: an increment applies once', async () => {
    // Datagram 0 is the set; the replies to datagrams 1 and 2 (the incr and its first retry) vanish.
    const s = await fake({ dropReply: (n) => n === 1 || n === 2 });
    const c = client([s.endpoint]);
    await c.set('n', '10');
    expect(await c.incr('n', 1)).toBe(11n);
    expect(s.applied).toBe(2);
    expect(s.replays).toBe(2);
    expect(s.received.slice(1).map((r) => r.replayed)).toEqual([false, true, true]);
    expect(new Set(s.received.slice(1).map((r) => r.requestId)).size).toBe(1);
    expect((await c.get('n'))?.value.toString()).toBe('11');
  });

  it('every request gets a fresh request id, also when many are outstanding at once', async () => {
    const s = await fake();
    const c = client([s.endpoint]);
    const results = await Promise.all(Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? c.set(`k${i}`, `v${i}`) : c.get(`k${i - 1}`))));
    expect(results.filter((r) => r === 'stored')).toHaveLength(32);
    expect(new Set(s.received.map((r) => r.requestId)).size).toBe(64);
    expect(c.outstanding).toBe(0);
  });

  it('gives up with ERR_LOCKSTEP_CLIENT_TIMEOUT after the last retry, naming attempts and endpoint', async () => {
    const s = await fake({ dropRequests: 1000 });
    const c = client([s.endpoint], { retries: 2 });
    const err = await rejection(c.get('k'));
    expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_TIMEOUT');
    expect(err.message).toContain(`3 attempts (request id ${s.received[0]!.requestId}) to 127.0.0.1:${s.port}`);
    expect(s.received).toHaveLength(3);
    expect(c.outstanding).toBe(0);
  });
});

describe('fail-over', () => {
  it('moves to the next endpoint after the first retry, with the same request id, and stays there', async () => {
    const hung = await blackhole();
    const s = await fake();
    const c = client([hung.endpoint, s.endpoint], { retries: 3 });
    expect(await c.set('k', 'v')).toBe('stored');
    // Attempt 0 and the first retry go to the hung server, the second retry to the live one.
    expect(hung.seen).toHaveLength(2);
    expect(s.received).toHaveLength(1);
    expect(hung.seen[0]!.id).toBe(s.received[0]!.requestId);
    expect(hung.seen[1]!.id).toBe(s.received[0]!.requestId);
    expect(s.received[0]!.from).toBe(`127.0.0.1:${hung.seen[0]!.from}`);
    expect(c.counters.failovers).toBe(1);
    expect(c.preferredEndpoint).toBe(1);
    expect((await c.get('k'))?.value.toString()).toBe('v');
    expect(hung.seen).toHaveLength(2);
    expect(s.received).toHaveLength(2);
  });

  it('fails over from a port nobody listens on', async () => {
    const s = await fake();
    const c = client([{ host: '127.0.0.1', port: await deadPort() }, s.endpoint]);
    expect(await c.version()).toBe('1.6.0-fake');
    expect(c.counters.failovers).toBe(1);
    expect(c.counters.socketErrors + c.counters.sendErrors).toBeGreaterThanOrEqual(0); // ICMP reports, if any, are survived
  });

  it('a timed-out request reports every endpoint it tried', async () => {
    const a = await blackhole();
    const b = await blackhole();
    const c = client([a.endpoint, b.endpoint], { retries: 3 });
    const err = await rejection(c.delete('k'));
    expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_TIMEOUT');
    expect(err.message).toContain(`${a.endpoint.port}`);
    expect(err.message).toContain(`${b.endpoint.port}`);
    expect(a.seen.length + b.seen.length).toBe(4);
  });
});

describe('bad replies', () => {
  it('ignores and counts short, foreign, out-of-range and truncated datagrams, then takes the real reply', async () => {
    const s = await fake({
      prelude: (id, _command, reply) => [
        Buffer.from([1, 2, 3]), // shorter than the header
        encodeFrame((id + 1) & 0xffff, Buffer.from('END\r\n')), // another request's id
        encodeFrame(id, reply, 0, 0), // total 0
        encodeFrame(id, reply, 3, 2), // sequence past total
        encodeFrame(id, reply.subarray(0, reply.length - 3)), // truncated
        encodeFrame(id, Buffer.from('VALUE other 0 1\r\nx\r\nEND\r\n')), // a key not asked for
      ],
    });
    const c = client([s.endpoint]);
    await c.set('k', 'value');
    const got = await c.get('k');
    expect(got?.value.toString()).toBe('value');
    const counters = c.counters;
    expect(counters.malformed).toBe(2 * 5); // per request: short, total 0, seq past total, truncated, wrong key or status
    expect(counters.unexpected).toBe(2);
    expect(counters.retries).toBe(0);
  });

  it('counts a duplicate reply that arrives after its request completed as unexpected', async () => {
    const s = await fake({ prelude: (id, _command, reply) => [encodeFrame(id, reply)] });
    const c = client([s.endpoint]);
    expect(await c.version()).toBe('1.6.0-fake');
    await until('the duplicate reply to be counted', () => c.counters.unexpected > 0);
    expect(c.counters.unexpected).toBe(1);
  });

  it('survives unsolicited datagrams on its socket', async () => {
    const s = await fake();
    const c = client([s.endpoint]);
    await c.connect();
    const port = c.address()!.port;
    for (let i = 0; i < 20; i++) s.sendRaw(Buffer.from(`garbage ${i} \x00\xff`), port);
    s.sendRaw(Buffer.alloc(0), port);
    expect(await c.version()).toBe('1.6.0-fake');
    expect(c.counters.malformed + c.counters.unexpected).toBe(21);
  });

  it('an answer that is not valid for the request ends in ERR_LOCKSTEP_CLIENT_PROTOCOL after the retries', async () => {
    const cases: [string, (c: KvClient) => Promise<unknown>, RegExp][] = [
      ['DELETED\r\n', (c) => c.set('k', 'v'), /"DELETED" is not a reply to a storage command/],
      ['STORED\r\nSTORED\r\n', (c) => c.set('k', 'v'), /stray bytes/],
      ['VALUE k 0 5\r\nab\r\nEND\r\n', (c) => c.get('k'), /truncated|not followed/],
      ['VALUE k 0 1\r\nx\r\nEND\r\n', (c) => c.gets(['k']), /no cas unique/],
      ['-5\r\n', (c) => c.incr('k'), /not an unsigned 64-bit number/],
      ['18446744073709551616\r\n', (c) => c.incr('k'), /not an unsigned 64-bit number/],
      ['STAT pid 1\r\n', (c) => c.stats(), /truncated/],
      ['VERSION\r\n', (c) => c.version(), /not a VERSION line/],
      ['no line end', (c) => c.version(), /does not end its first line/],
    ];
    // A bad reply is ignored (counted malformed) and its attempt times out; each attempt must get its
    // bad reply before its timeout, which at 150 ms a loaded machine missed once (the late reply was
    // then unexpected): 1 s each, the cases side by side.
    await Promise.all(cases.map(async ([reply, call, problem]) => {
      const s = await fake({ rewrite: () => Buffer.from(reply) });
      const c = client([s.endpoint], { retries: 1, timeoutMs: 1_000 });
      const err = await rejection(call(c));
      expect(err.code, reply).toBe('ERR_LOCKSTEP_CLIENT_PROTOCOL');
      expect(err.message).toMatch(problem);
      expect(c.counters.malformed, reply).toBe(2);
      expect(s.received).toHaveLength(2);
    }));
  });

  it('a server error is final at once (no retry) and carries the server line', async () => {
    const s = await fake({ rewrite: () => Buffer.from('SERVER_ERROR out of memory storing object\r\n') });
    const c = client([s.endpoint]);
    const err = await rejection(c.set('k', 'v'));
    expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_SERVER');
    expect(err.serverReply).toBe('SERVER_ERROR out of memory storing object');
    expect(s.received).toHaveLength(1);
  });
});

describe('framing', () => {
  it('reassembles a reply that spans several datagrams', async () => {
    const s = await fake({ extraStats: 300 });
    const c = client([s.endpoint]);
    const stats = await c.stats();
    expect(stats.size).toBe(303);
    expect(stats.get('extra_299')).toBe('299');
  });

  it('gathers the one-datagram-per-value answer memcached 1.6 gives to a multi-key get', async () => {
    const s = await fake({
      rewrite: (_id, command, reply) => (command.startsWith('gets a b') ? Buffer.alloc(0) : reply),
      prelude: (id, command) =>
        command.startsWith('gets a b')
          ? [encodeFrame(id, Buffer.from('VALUE a 0 1 7\r\nA\r\n')), encodeFrame(id, Buffer.from('VALUE b 3 2 8\r\nBB\r\n')), encodeFrame(id, Buffer.from('END\r\n'))]
          : [],
    });
    const c = client([s.endpoint]);
    const items = await c.gets(['a', 'b', 'c']);
    expect([...items.values()].map((i) => [i.key, i.value.toString(), i.flags, i.cas])).toEqual([
      ['a', 'A', 0, 7n],
      ['b', 'BB', 3, 8n],
    ]);
  });
});

describe('close', () => {
  it('rejects outstanding and later requests with ERR_LOCKSTEP_CLIENT_CLOSED', async () => {
    const hung = await blackhole();
    const c = new KvClient({ endpoints: [hung.endpoint], timeoutMs: 10_000 });
    const pending = c.get('k');
    await until('the request to be outstanding', () => c.outstanding === 1);
    await c.close();
    expect((await rejection(pending)).code).toBe('ERR_LOCKSTEP_CLIENT_CLOSED');
    expect((await rejection(c.get('k'))).code).toBe('ERR_LOCKSTEP_CLIENT_CLOSED');
    await c.close();
  });
});

describe('exactly-once marking', () => {
  /** A server that records every request header and answers through `answer` (undefined: silence). */
  async function recorder(answer: (id: number, reserved: number, n: number) => Buffer[] | undefined) {
    const s = dgram.createSocket('udp4');
    const seen: { id: number; reserved: number; from: number }[] = [];
    s.on('message', (m, r) => {
      const id = m.readUInt16BE(0);
      const reserved = m.readUInt16BE(6);
      seen.push({ id, reserved, from: r.port });
      for (const d of answer(id, reserved, seen.length - 1) ?? []) s.send(d, r.port, r.address);
    });
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise((resolve) => s.close(() => resolve())));
    return { endpoint: { host: '127.0.0.1', port: s.address().port }, seen };
  }
  const xid = (h: { id: number; reserved: number }) => ((h.reserved & 0x7fff) << 16) + h.id;

  it('marks every request (bit 15 of the reserved field) with a 31-bit id it never reuses; a retry repeats both', async () => {
    // Every first datagram of an id is lost; the retry is answered, echoing the reserved field.
    const firsts = new Set<number>();
    const srv = await recorder((id, reserved) => {
      const key = (reserved << 16) | id;
      if (!firsts.has(key)) return void firsts.add(key);
      return [encodeFrame(id, Buffer.from('VERSION 1\r\n'), 0, 1, reserved)];
    });
    const c = client([srv.endpoint]);
    for (let i = 0; i < 3; i++) expect(await c.version()).toBe('1');
    expect(srv.seen).toHaveLength(6);
    for (const h of srv.seen) expect(h.reserved & 0x8000).toBe(0x8000);
    for (let i = 0; i < 6; i += 2) expect(srv.seen[i + 1]).toEqual(srv.seen[i]); // a retry is the same datagram
    const ids = [xid(srv.seen[0]!), xid(srv.seen[2]!), xid(srv.seen[4]!)];
    expect(ids[1]).toBe((ids[0]! + 1) % 2 ** 31);
    expect(ids[2]).toBe((ids[1]! + 1) % 2 ** 31);
  });

  it('sends what a stock memcached client sends with exactlyOnce: false', async () => {
    const srv = await recorder((id) => [encodeFrame(id, Buffer.from('VERSION 1\r\n'))]);
    const c = client([srv.endpoint], { exactlyOnce: false });
    await c.version();
    await c.version();
    expect(srv.seen.map((h) => h.reserved)).toEqual([0, 0]);
  });

  it('ignores a reply that echoes the mark of another request with the same 16-bit id', async () => {
    const srv = await recorder((id, reserved, n) =>
      n === 0
        ? [encodeFrame(id, Buffer.from('VERSION stale\r\n'), 0, 1, 0x8000 | ((reserved + 1) & 0x7fff)), encodeFrame(id, Buffer.from('VERSION right\r\n'), 0, 1, reserved)]
        : undefined,
    );
    const c = client([srv.endpoint]);
    expect(await c.version()).toBe('right');
    expect(c.counters.unexpected).toBe(1);
  });

  it('never sends an attempt later than the retry window after the first, with retries left', async () => {
    const srv = await recorder(() => undefined);
    const c = client([srv.endpoint], { timeoutMs: 50, retries: 1000, backoff: { initialMs: 0, maxMs: 0 }, retryWindowMs: 300 });
    const err = await rejection(c.incr('k'));
    expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_TIMEOUT');
    expect(err.message).toMatch(/300 ms retry window/);
    // Attempts start at 0, 50, 100, ... ms at the earliest (timers only fire late): at most 7 fit.
    expect(srv.seen.length).toBeGreaterThanOrEqual(1);
    expect(srv.seen.length).toBeLessThanOrEqual(7);
    expect(new Set(srv.seen.map(xid)).size).toBe(1);
  });

  it('refuses a retry window longer than half the reply cache\'s window when marking', () => {
    expect(() => new KvClient({ endpoints: [{ host: '127.0.0.1', port: 1 }], retryWindowMs: 10_001 })).toThrow(/retryWindowMs: must be a number from 1 to 10000/);
    expect(() => new KvClient({ endpoints: [{ host: '127.0.0.1', port: 1 }], exactlyOnce: false, retryWindowMs: 60_000 })).not.toThrow();
  });
});
