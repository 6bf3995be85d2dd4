// The native data path (native/channel) against the TypeScript protocol it must interoperate with:
// SHA-256/HMAC byte for byte against node:crypto on both implementations, frames crossing between the
// native codec and src/protocol/frame.ts both ways, native sender to native receiver over real sockets,
// and every kind of bad stream ending the channel with its code.
import { createHash, createHmac, createSecretKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';
import { FrameDecoder, HEADER_BYTES, OFF_SEQUENCE, encodeFrame, type Frame, type FrameTrailer } from '../../src/protocol/frame.js';
import { MessageType, decodeMessage, encodeMessage } from '../../src/protocol/messages.js';
import { prng } from '../cpu/prng.js';
import { ChannelCode, PORTABLE, SHA_NI, batch, channelAddon } from '../helpers/channel-addon.js';

const native = channelAddon();
const IMPLS = [PORTABLE, SHA_NI].filter((i) => native.implAvailable(i));
const hmacOf = (key: Uint8Array): FrameTrailer => ({ kind: 'hmac', key: createSecretKey(Buffer.from(key)) });
const toSecondary = hmacOf(native.primaryKey);
const toPrimary = hmacOf(native.secondaryKey);
/** The harnesses start both directions at sequence 2, as after HELLO and AUTH. */
const FIRST = 2;

function bytes(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function cuts(rnd: () => number, n: number): number[] {
  const out: number[] = [];
  let at = 0;
  while (at < n && rnd() < 0.7) {
    at += Math.floor(rnd() * (n - at + 1));
    out.push(at);
  }
  return out;
}

/** Every frame in `wire`, decoded by src/protocol/frame.ts as the first frames of a direction after two of its own. */
function tsDecode(trailer: FrameTrailer, wire: Uint8Array): Frame[] {
  const dec = new FrameDecoder({ trailer });
  for (let s = 0; s < FIRST; s++) dec.push(encodeFrame(MessageType.HEARTBEAT, s, new Uint8Array(24), trailer));
  dec.push(wire);
  const frames: Frame[] = [];
  for (let f = dec.next(); f; f = dec.next()) frames.push(f);
  expect(dec.buffered).toBe(0);
  return frames.slice(FIRST);
}

function batches(rnd: () => number, count: number, maxRecords: number, firstLsn = 0): Buffer[] {
  return Array.from({ length: count }, (_, i) => batch(firstLsn + i, bytes(rnd, Math.floor(rnd() * (maxRecords + 1)))));
}

function tsFrame(type: number, seq: number, payload: Uint8Array, trailer = toSecondary): Buffer {
  return encodeFrame(type, seq, payload, trailer);
}

function bye(seq: number, reason = 'done', trailer = toSecondary): Buffer {
  return tsFrame(MessageType.BYE, seq, encodeMessage({ type: 'bye', reason }).payload, trailer);
}

function ack(seq: number, lsn: number, instret = 0, logBytes = 0, trailer = toPrimary): Buffer {
  const m = encodeMessage({ type: 'ack', lsn: BigInt(lsn), instret: BigInt(instret), bytes: BigInt(logBytes) });
  return tsFrame(m.code, seq, m.payload, trailer);
}

describe('SHA-256 and HMAC-SHA-256', () => {
  it('uses SHA-NI when the CPU reports it', () => {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    const hasShaNi = /^flags\s*:.*\bsha_ni\b/m.test(cpuinfo);
    expect(native.implAvailable(SHA_NI)).toBe(hasShaNi);
    expect(native.defaultImpl()).toBe(hasShaNi ? SHA_NI : PORTABLE);
    expect(native.implAvailable(PORTABLE)).toBe(true);
  });

  for (const impl of [PORTABLE, SHA_NI]) {
    const name = impl === SHA_NI ? 'SHA-NI' : 'portable';
    it.skipIf(!native.implAvailable(impl))(`${name}: digests equal node:crypto's on random inputs, fed in random pieces`, () => {
      const rnd = prng(0x5ea + impl);
      const lengths = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65_537];
      for (let i = 0; i < 200; i++) lengths.push(Math.floor(rnd() * 3000));
      for (const n of lengths) {
        const data = bytes(rnd, n);
        expect(native.sha256(impl, data, cuts(rnd, n)).toString('hex'), `sha256 of ${n} bytes`).toBe(createHash('sha256').update(data).digest('hex'));
        const key = bytes(rnd, [0, 1, 16, 32, 63, 64, 65, 200][Math.floor(rnd() * 8)]!);
        expect(native.hmac(impl, key, data, cuts(rnd, n)).toString('hex'), `hmac of ${n} bytes, ${key.length}-byte key`)
          .toBe(createHmac('sha256', key).update(data).digest('hex'));
      }
    });
  }
  for (const impl of [PORTABLE, SHA_NI]) {
    it.skipIf(!native.implAvailable(impl))(`${impl === SHA_NI ? 'SHA-NI' : 'portable'}: two MACs computed together equal node:crypto's`, () => {
      const rnd = prng(0x2a + impl);
      for (let i = 0; i < 300; i++) {
        const key = bytes(rnd, 32);
        const a = bytes(rnd, Math.floor(rnd() * 2000)), b = bytes(rnd, i % 10 === 0 ? a.length : Math.floor(rnd() * 2000));
        const cutA = Math.floor(rnd() * Math.min(a.length + 1, 130)), cutB = Math.floor(rnd() * Math.min(b.length + 1, 130));
        const [ma, mb] = native.hmacPair(impl, key, a, b, cutA, cutB);
        const what = `${a.length} and ${b.length} bytes, cut at ${cutA} and ${cutB}`;
        expect(ma.toString('hex'), what).toBe(createHmac('sha256', key).update(a).digest('hex'));
        expect(mb.toString('hex'), what).toBe(createHmac('sha256', key).update(b).digest('hex'));
      }
    });
  }
});

describe('frames between the native codec and src/protocol/frame.ts', () => {
  const key = native.primaryKey;

  it('native frames decode with the TypeScript decoder, TypeScript frames with the native one', () => {
    const rnd = prng(77);
    const payloads = Array.from({ length: 60 }, () => bytes(rnd, Math.floor(rnd() * 5000)));
    const types = [MessageType.LOG, MessageType.HEARTBEAT, MessageType.CONTROL, MessageType.CLONE_PAGES];
    const nativeWire = Buffer.concat(payloads.map((p, i) => native.encodeFrame(key, types[i % 4]!, FIRST + i, p)));
    const viaTs = tsDecode(toSecondary, nativeWire);
    expect(viaTs.map((f) => [f.type, f.sequence, Buffer.from(f.payload).toString('hex')]))
      .toEqual(payloads.map((p, i) => [types[i % 4], FIRST + i, p.toString('hex')]));

    const tsWire = Buffer.concat(payloads.map((p, i) => tsFrame(types[i % 4]!, FIRST + i, p)));
    expect(tsWire.equals(nativeWire)).toBe(true);
    const viaNative = native.decodeFrames(key, FIRST, 16 << 20, tsWire);
    expect(viaNative.error).toBeUndefined();
    expect(viaNative.consumed).toBe(tsWire.length);
    expect(viaNative.frames.map((f) => [f.type, f.sequence, f.payload.toString('hex')]))
      .toEqual(payloads.map((p, i) => [types[i % 4], FIRST + i, p.toString('hex')]));
  });

  it('a cut stream asks for the rest of the frame, header first', () => {
    const wire = native.encodeFrame(key, MessageType.LOG, FIRST, Buffer.alloc(100, 1));
    expect(native.decodeFrames(key, FIRST, 1 << 20, wire.subarray(0, 7))).toMatchObject({ frames: [], need: HEADER_BYTES });
    expect(native.decodeFrames(key, FIRST, 1 << 20, wire.subarray(0, 40))).toMatchObject({ frames: [], need: wire.length });
  });

  /** The TypeScript decoder's verdict on the same bytes, as a native name. */
  function tsVerdict(wire: Uint8Array, max = 16 << 20): string {
    const dec = new FrameDecoder({ trailer: toSecondary, maxPayloadBytes: max });
    for (let s = 0; s < FIRST; s++) dec.push(encodeFrame(MessageType.HEARTBEAT, s, new Uint8Array(24), toSecondary));
    dec.push(wire);
    try {
      while (dec.next());
      return 'NONE';
    } catch (err) {
      expect(err).toBeInstanceOf(ProtocolError);
      return (err as ProtocolError).code.replace('ERR_LOCKSTEP_PROTOCOL_', '');
    }
  }

  it('tampered, reordered, replayed and oversized frames get the code the TypeScript decoder gives them', () => {
    const frames = [0, 1, 2].map((i) => native.encodeFrame(key, MessageType.LOG, FIRST + i, Buffer.alloc(300, i + 1)));
    const cases: [string, Buffer, string, number][] = [];
    const flipped = (at: number) => {
      const w = Buffer.concat(frames);
      w[at]! ^= 0x01;
      return w;
    };
    cases.push(['a payload bit flipped', flipped(frames[0]!.length + HEADER_BYTES + 10), 'AUTH', 1]);
    cases.push(['a trailer bit flipped', flipped(frames[0]!.length * 2 - 1), 'AUTH', 1]);
    cases.push(['frames 1 and 2 swapped', Buffer.concat([frames[0]!, frames[2]!, frames[1]!]), 'SEQUENCE', 1]);
    cases.push(['frame 0 replayed', Buffer.concat([frames[0]!, frames[0]!]), 'SEQUENCE', 1]);
    cases.push(['frame 1 dropped', Buffer.concat([frames[0]!, frames[2]!]), 'SEQUENCE', 1]);
    cases.push(['the magic damaged', flipped(frames[0]!.length), 'MALFORMED', 1]);
    cases.push(['a flag set', flipped(frames[0]!.length + 5), 'MALFORMED', 1]);
    const wrongKey = encodeFrame(MessageType.LOG, FIRST, Buffer.alloc(10), toPrimary);
    cases.push(['sealed with the other direction key', wrongKey, 'AUTH', 0]);
    const big = Buffer.from(frames[0]!);
    big.writeUInt32BE(2_000_000, 8);
    cases.push(['a header over the limit', big, 'OVERSIZED', 0]);
    for (const [what, wire, code, good] of cases) {
      const r = native.decodeFrames(key, FIRST, 1 << 20, wire);
      expect(r.error?.name, what).toBe(code);
      expect(r.error?.code, what).toBe(ChannelCode[code as keyof typeof ChannelCode]);
      expect(r.frames.length, `${what}: frames before the bad one`).toBe(good);
      expect(tsVerdict(wire, 1 << 20), `${what}: TypeScript`).toBe(code);
    }
    // The sequence is checked from the header alone: a frame's number is judged before its payload arrives.
    const renumbered = Buffer.from(frames[1]!.subarray(0, HEADER_BYTES));
    renumbered.writeBigUInt64BE(BigInt(FIRST + 5), OFF_SEQUENCE);
    expect(native.decodeFrames(key, FIRST + 1, 1 << 20, renumbered).error?.name).toBe('SEQUENCE');
  });
});

describe('native sender to native receiver over a socket', () => {
  for (const [tcp, impl] of IMPLS.flatMap((i) => [[false, i], [true, i]] as const)) {
    it(`${tcp ? 'TCP loopback' : 'socketpair'}, ${impl === SHA_NI ? 'SHA-NI' : 'portable'}: every batch arrives in order, byte for byte, and is acknowledged`, () => {
      const n = impl === SHA_NI ? 3000 : 600;
      // Small frames (maxLogFrame 64 KiB) so that batches are coalesced, split across frames, and the
      // replay ring (256 KiB) fills and pushes back on the reader.
      const r = native.loopback({ batches: n, maxRecords: 20_000, tcp, impl, maxLogFrame: 64 << 10, sinkBytes: 256 << 10, seed: n + impl });
      expect(r.consumerError).toBeUndefined();
      expect(r.timedOut).toBe(false);
      expect(r.batches).toBe(n);
      expect(r.ackedLsn1).toBe(n);
      // The BYE may leave before finish() is called, and the peer's close come back before it too.
      expect(r.senderEnd).toMatchObject({ name: 'NONE', message: expect.stringMatching(/^closed after (finish\(\)|this side's BYE)$/) });
      expect(r.receiverEnd).toMatchObject({ name: 'NONE', message: 'the peer said BYE: loopback done' });
      expect(r.sender.logBatches).toBe(n);
      expect(r.receiver.logBatches).toBe(n);
      expect(r.receiver.logBytes).toBe(r.bytes);
      expect(r.sender.logFrames).toBeLessThan(n);  // coalesced
      expect(r.sender.acks).toBeGreaterThan(0);
      expect(r.sender.acks).toBe(r.receiver.acks);
      // ACKs carry the consumer's position when they are sent, which may trail what arrived.
      expect(r.sender.ackInstret).toBeGreaterThan(0);
      expect(r.sender.ackInstret).toBeLessThanOrEqual(n);
    });
  }

  it('messages queued with send() arrive after the log published before them, in order', () => {
    const r = native.loopback({ batches: 2000, maxRecords: 3000, releaseEvery: 7, maxLogFrame: 32 << 10, sinkBytes: 128 << 10 });
    expect(r).toMatchObject({ batches: 2000, ackedLsn1: 2000, timedOut: false, releases: Math.floor(2000 / 7), releaseFaults: 0 });
  });

  it('a message queued while a batch is published in part goes after that whole batch (a fence inside a batch never blocks the log)', () => {
    const r = native.loopback({ batches: 400, maxRecords: 3000, splitEvery: 3, maxLogFrame: 32 << 10, sinkBytes: 128 << 10, timeoutMs: 20_000 });
    expect(r).toMatchObject({ batches: 400, ackedLsn1: 400, timedOut: false, releases: Math.floor(399 / 3), releaseFaults: 0 });
  });

  it('batches as large as a batch may be (1 MiB of records) go one to a frame', () => {
    const r = native.loopback({ batches: 12, minRecords: (1 << 20) - 5, maxRecords: 1 << 20, sinkBytes: 4 << 20 });
    expect(r).toMatchObject({ batches: 12, ackedLsn1: 12, timedOut: false });
    expect(r.sender.logFrames).toBe(12);
  });
});

describe('the native receiver with a TypeScript sender', () => {
  it('publishes LOG frames sealed by src/protocol/frame.ts and answers with ACKs the TypeScript decoder accepts', () => {
    const rnd = prng(5);
    const bs = batches(rnd, 40, 3000, 7);
    // Several batches a frame, as the TypeScript primary sends them.
    const frames = [bs.slice(0, 1), bs.slice(1, 10), bs.slice(10, 11), bs.slice(11, 40)].map((g, i) => tsFrame(MessageType.LOG, FIRST + i, Buffer.concat(g)));
    const r = native.receiverFeed({ wire: Buffer.concat([...frames, bye(FIRST + 4)]), firstLsn: 7 });
    expect(r.end).toMatchObject({ name: 'NONE', message: 'the peer said BYE: done' });
    expect(r.sink.equals(Buffer.concat(bs))).toBe(true);
    expect(r.logLsn1).toBe(47);
    const acks = tsDecode(toPrimary, r.reply).map((f) => decodeMessage(f.type, f.payload));
    expect(acks.length).toBeGreaterThan(0);
    expect(acks.every((m) => m.type === 'ack')).toBe(true);
    expect(acks.at(-1)).toEqual({ type: 'ack', lsn: 46n, instret: 0n, bytes: BigInt(Buffer.concat(bs).length) });
  });

  it('acknowledges a LOG frame before it wakes the replayer: its ACK is written by the time the ring\'s consumer is woken for it', () => {
    const bs = batches(prng(6), 12, 2000, 3);
    const frames = [bs.slice(0, 5), bs.slice(5, 12)].map((g, i) => tsFrame(MessageType.LOG, FIRST + i, Buffer.concat(g)));
    const r = native.receiverFeed({ wire: Buffer.concat([...frames, bye(FIRST + 2)]), firstLsn: 3 });
    expect(r.end.name, r.end.message).toBe('NONE');
    expect(r.sink.equals(Buffer.concat(bs))).toBe(true);
    // Every wake-up that followed a whole frame found the ACK of that frame (at least) already written.
    const afterFrames = r.woke.filter((w) => w.logLsn1 > 3);
    expect(afterFrames.length).toBeGreaterThan(0);
    for (const w of afterFrames) expect(w.bytesSent, JSON.stringify(r.woke)).toBeGreaterThan(0);
    const acks = tsDecode(toPrimary, r.reply).map((f) => decodeMessage(f.type, f.payload));
    expect(acks.at(-1)).toMatchObject({ type: 'ack', lsn: 14n });
  });

  type Case = { what: string; wire: (f: Buffer[]) => Buffer; close?: boolean; code: keyof typeof ChannelCode; published: number };
  const bs = batches(prng(9), 6, 500);
  const good = bs.map((b, i) => tsFrame(MessageType.LOG, FIRST + i, b));
  const flip = (b: Buffer, at: number) => {
    const c = Buffer.from(b);
    c[at]! ^= 0x80;
    return c;
  };
  const cases: Case[] = [
    { what: 'a tampered LOG payload', wire: (f) => Buffer.concat([f[0]!, f[1]!, flip(f[2]!, HEADER_BYTES + 60), f[3]!]), code: 'AUTH', published: 2 },
    { what: 'a tampered trailer', wire: (f) => Buffer.concat([f[0]!, flip(f[1]!, f[1]!.length - 1)]), code: 'AUTH', published: 1 },
    { what: 'reordered frames', wire: (f) => Buffer.concat([f[0]!, f[2]!, f[1]!]), code: 'SEQUENCE', published: 1 },
    { what: 'a replayed frame', wire: (f) => Buffer.concat([f[0]!, f[1]!, f[1]!]), code: 'SEQUENCE', published: 2 },
    { what: 'a frame cut short, then the connection closed', wire: (f) => Buffer.concat([f[0]!, f[1]!.subarray(0, 100)]), close: true, code: 'TRUNCATED', published: 1 },
    { what: 'a header cut short, then the connection closed', wire: (f) => Buffer.concat([f[0]!, f[1]!.subarray(0, 9)]), close: true, code: 'TRUNCATED', published: 1 },
    { what: 'whole frames, then closed without BYE', wire: (f) => Buffer.concat([f[0]!, f[1]!]), close: true, code: 'CLOSED', published: 2 },
    { what: 'a batch out of lsn order', wire: (f) => Buffer.concat([f[0]!, tsFrame(MessageType.LOG, FIRST + 1, bs[2]!)]), code: 'MALFORMED', published: 1 },
    { what: 'a LOG frame ending inside a batch', wire: (f) => Buffer.concat([f[0]!, tsFrame(MessageType.LOG, FIRST + 1, bs[1]!.subarray(0, bs[1]!.length - 1))]), code: 'MALFORMED', published: 1 },
    { what: 'a LOG frame ending inside a batch header', wire: (f) => Buffer.concat([f[0]!, tsFrame(MessageType.LOG, FIRST + 1, bs[1]!.subarray(0, 20))]), code: 'MALFORMED', published: 1 },
    { what: 'an ACK sent to the secondary', wire: (f) => Buffer.concat([f[0]!, ack(FIRST + 1, 0, 0, 0, toSecondary)]), code: 'MALFORMED', published: 1 },
    { what: 'a message the data path has no handler for', wire: (f) => Buffer.concat([f[0]!, tsFrame(MessageType.RELEASE, FIRST + 1, Buffer.alloc(8))]), code: 'MALFORMED', published: 1 },
    { what: 'an empty LOG frame', wire: () => tsFrame(MessageType.LOG, FIRST, Buffer.alloc(0)), code: 'MALFORMED', published: 0 },
    { what: 'a HELLO after the handshake', wire: () => tsFrame(MessageType.HELLO, FIRST, Buffer.alloc(10)), code: 'MALFORMED', published: 0 },
    { what: 'a header announcing 20 MiB', wire: (f) => { const h = Buffer.from(f[0]!.subarray(0, HEADER_BYTES)); h.writeUInt32BE(20 << 20, 8); return h; }, code: 'OVERSIZED', published: 0 },
    { what: 'garbage', wire: () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), code: 'MALFORMED', published: 0 },
  ];
  for (const c of cases) {
    it(`${c.what}: ends with ${c.code}, and only the frames before it take effect`, () => {
      const r = native.receiverFeed({ wire: c.wire(good), close: c.close ?? false });
      expect(r.ended).toBe(true);
      expect(r.end.name, r.end.message).toBe(c.code);
      expect(r.end.code).toBe(ChannelCode[c.code]);
      expect(r.sink.equals(Buffer.concat(bs.slice(0, c.published)))).toBe(true);
      expect(r.logLsn1).toBe(c.published);
    });
  }
});

describe('the native receiver with a randomly damaged stream', () => {
  it('ends with a code, publishes only whole frames before the damage, and agrees with the TypeScript decoder', () => {
    const rnd = prng(0xbad);
    const bs = batches(rnd, 12, 700);
    const frames = bs.map((b, i) => tsFrame(MessageType.LOG, FIRST + i, b));
    const clean = Buffer.concat([...frames, bye(FIRST + frames.length)]);
    // Where each frame starts, the BYE's included.
    const starts = [...frames, null].map((_, i) => frames.slice(0, i).reduce((n, f) => n + f.length, 0));
    for (let round = 0; round < 120; round++) {
      const wire = Buffer.from(clean);
      const at = Math.floor(rnd() * wire.length);
      let damaged: Buffer;
      const kind = round % 3;
      if (kind === 0) {
        wire[at]! ^= 1 << Math.floor(rnd() * 8);
        damaged = wire;
      } else if (kind === 1) {
        damaged = wire.subarray(0, at);
      } else {
        damaged = Buffer.concat([wire.subarray(0, at), bytes(rnd, 1 + Math.floor(rnd() * 40)), wire.subarray(at)]);
      }
      const what = `round ${round}: ${['flip', 'cut', 'insert'][kind]} at byte ${at}`;
      const r = native.receiverFeed({ wire: damaged, close: true });
      expect(r.ended, what).toBe(true);
      // The frame the damage is in, and every later one, never reach the ring.
      const hit = starts.filter((s) => s <= at).length - 1;
      const published = Math.round(r.logLsn1);
      expect(published, what).toBeLessThanOrEqual(Math.max(0, hit));
      expect(r.sink.equals(Buffer.concat(bs.slice(0, published))), what).toBe(true);
      if (r.end.name === 'NONE') {
        // Only damage to the BYE's reason text can leave the stream whole, and then its HMAC fails: so never.
        throw new Error(`${what}: a damaged stream ended orderly (${r.end.message})`);
      }
      expect(['AUTH', 'MALFORMED', 'SEQUENCE', 'OVERSIZED', 'TRUNCATED', 'CLOSED'], what).toContain(r.end.name);
      const dec = new FrameDecoder({ trailer: toSecondary });
      for (let q = 0; q < FIRST; q++) dec.push(encodeFrame(MessageType.HEARTBEAT, q, new Uint8Array(24), toSecondary));
      dec.push(damaged);
      let tsCode = 'NONE';
      try {
        while (dec.next());
      } catch (err) {
        tsCode = (err as ProtocolError).code.replace('ERR_LOCKSTEP_PROTOCOL_', '');
      }
      if (tsCode !== 'NONE') expect(r.end.name, what).toBe(tsCode);
    }
  });
});

describe('the native sender with a TypeScript receiver', () => {
  const rnd = prng(11);
  const bs = batches(rnd, 30, 40_000);
  const all = Buffer.concat(bs);

  it('its LOG frames decode with src/protocol/frame.ts into the batches, whole and in order; TypeScript ACKs move the acked position', () => {
    const r = native.senderFeed({ batches: all, reply: Buffer.concat([ack(FIRST, 9), ack(FIRST + 1, 29, 1234, all.length)]), maxLogFrame: 100_000, expectAcked: 30 });
    const frames = tsDecode(toSecondary, r.wire);
    expect(frames.length).toBeGreaterThan(1);
    expect(frames.every((f) => f.type === MessageType.LOG && f.payload.length <= 100_000 + 48 + 40_000)).toBe(true);
    expect(Buffer.concat(frames.map((f) => f.payload)).equals(all)).toBe(true);
    expect(r.ackedLsn1).toBe(30);
    expect(r.stats).toMatchObject({ acks: 2, ackInstret: 1234, logBatches: 30, logBytes: all.length });
  });

  const cases: [string, (sent: number) => Buffer, keyof typeof ChannelCode, number][] = [
    ['an ACK with a bad HMAC', () => flipLast(ack(FIRST, 3)), 'AUTH', 0],
    ['an ACK out of sequence', () => Buffer.concat([ack(FIRST, 3), ack(FIRST + 2, 5)]), 'SEQUENCE', 4],
    ['an ACK of a batch never sent', () => ack(FIRST, 30), 'MALFORMED', 0],
    ['an ACK of the wrong length', () => tsFrame(MessageType.ACK, FIRST, Buffer.alloc(16), toPrimary), 'MALFORMED', 0],
    ['a LOG frame sent to the primary', () => tsFrame(MessageType.LOG, FIRST, bs[0]!, toPrimary), 'MALFORMED', 0],
    ['a cut ACK, then close', () => ack(FIRST, 3).subarray(0, 30), 'TRUNCATED', 0],
    ['close without BYE', () => ack(FIRST, 3), 'CLOSED', 4],
  ];
  function flipLast(b: Buffer): Buffer {
    const c = Buffer.from(b);
    c[c.length - 1]! ^= 1;
    return c;
  }
  for (const [what, reply, code, acked] of cases) {
    it(`${what}: ends with ${code}`, () => {
      const r = native.senderFeed({ batches: all, reply: reply(30), close: true });
      expect(r.ended).toBe(true);
      expect(r.end.name, r.end.message).toBe(code);
      expect(r.ackedLsn1).toBe(acked);
    });
  }

  it('group commit: batches published while a LOG frame is unacknowledged wait for its ACK, then leave together; a large backlog does not wait', () => {
    const rnd2 = prng(12);
    const [first, ...later] = batches(rnd2, 6, 500);
    const r = native.senderCoalesce({ first: first!, later, ack: ack(FIRST, 0) });
    expect(r.framesInFlight).toBe(1);
    const frames = tsDecode(toSecondary, r.wire);
    // The five that waited go as one pair of frames (sealed together), not one frame each.
    expect(frames.map((f) => f.type)).toEqual([MessageType.LOG, MessageType.LOG, MessageType.LOG]);
    expect(Buffer.concat(frames.map((f) => f.payload)).equals(Buffer.concat([first!, ...later]))).toBe(true);
    expect(r.stats).toMatchObject({ logFrames: 3, logBatches: 6 });
    // 24 batches of 1 000 record bytes and no ACK: past 16 KiB of backlog they go without waiting for it.
    const big = Array.from({ length: 24 }, (_, i) => batch(i + 1, bytes(rnd2, 1000)));
    const b = native.senderCoalesce({ first: first!, later: big });
    expect(b.framesInFlight).toBeGreaterThan(1);
    const sent = Buffer.concat(tsDecode(toSecondary, b.wire).map((f) => f.payload));
    expect(sent.length).toBeGreaterThan(first!.length + (16 << 10));
    expect(sent.equals(Buffer.concat([first!, ...big]).subarray(0, sent.length))).toBe(true);
  });

  it('a RELEASE notice set with ride() costs no write of its own: it leaves once, in the round of the next LOG frames', () => {
    const [first, ...later] = batches(prng(13), 4, 300);
    const release = encodeMessage({ type: 'release', lsn: 0n });
    const r = native.senderCoalesce({ first: first!, later, ack: ack(FIRST, 0), rider: release.payload });
    // After a whole round of the sender's thread, only the first LOG frame had been written.
    expect(r.framesAfterRide).toBe(1);
    const frames = tsDecode(toSecondary, r.wire);
    expect(frames.map((f) => f.type)).toEqual([MessageType.LOG, MessageType.LOG, MessageType.LOG, MessageType.RELEASE]);
    expect(decodeMessage(frames[3]!.type, frames[3]!.payload)).toEqual({ type: 'release', lsn: 0n });
    expect(Buffer.concat(frames.slice(0, 3).map((f) => f.payload)).equals(Buffer.concat([first!, ...later]))).toBe(true);
    expect(r.stats).toMatchObject({ framesSent: 4, logFrames: 3 });
  });

  it("the peer's BYE ends it orderly", () => {
    const r = native.senderFeed({ batches: all, reply: bye(FIRST, 'going away', toPrimary) });
    expect(r.end).toMatchObject({ name: 'NONE', message: 'the peer said BYE: going away' });
  });
});
