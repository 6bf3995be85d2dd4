// Message codecs: each message round-trips, and a truncated, extended or out-of-range payload is refused
// with ERR_LOCKSTEP_PROTOCOL_MALFORMED; a seeded property test over random messages.
import { createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { prng } from '../cpu/prng.js';
import { FrameDecoder, FrameEncoder } from '../../src/protocol/frame.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  HELLO_FIXED_BYTES,
  MAX_JSON_BYTES,
  MAX_REASON_BYTES,
  MESSAGE_NAMES,
  MessageType,
  decodeAuth,
  decodeHello,
  decodeMessage,
  encodeAuth,
  encodeHello,
  encodeMessage,
  type Hello,
  type Message,
} from '../../src/protocol/messages.js';

function malformed(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
    return err as ProtocolError;
  }
  throw new Error('expected ERR_LOCKSTEP_PROTOCOL_MALFORMED, nothing was thrown');
}

function roundTrip(m: Message): Message {
  const { code, payload } = encodeMessage(m);
  return decodeMessage(code, payload);
}

const U64_MAX = (1n << 64n) - 1n;
const page = (fill: number, size = 16) => new Uint8Array(size).fill(fill);

/** One well-formed sample of every message. */
const samples: Message[] = [
  { type: 'log', batches: Uint8Array.of(1, 2, 3, 4, 5) },
  { type: 'ack', lsn: 7n, instret: U64_MAX, bytes: 0n },
  { type: 'heartbeat', sentAtMs: 1234.5678, instret: 99n, releasedLsn: 3n },
  { type: 'release', lsn: U64_MAX },
  { type: 'clone-begin', meta: { vmId: 'vm1', memory: 64 << 20, nested: { a: [1, 'x', null, true] } } },
  { type: 'clone-pages', pageSize: 16, pages: [{ index: 0, data: page(1) }, { index: 5, data: page(2) }, { index: 0xffffffff, data: page(3) }] },
  { type: 'clone-final', state: Uint8Array.of(9, 8, 7), meta: { instret: '123' } },
  { type: 'clone-done' },
  { type: 'clone-disk', offset: 65536n, data: page(5, 1024) },
  { type: 'control', op: 'hello', listen: '127.0.0.1:7000', n: 3 },
  { type: 'go-live', epoch: 42n, reason: 'primary lost: heartbeat timeout — ünïcode' },
  { type: 'bye', reason: 'done' },
];

/** Byte fields decode as views (Buffers); compare contents, whatever the class. */
function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}

describe('message codecs', () => {
  it('every message type is in the table with a distinct code and name', () => {
    const codes = samples.map((m) => encodeMessage(m).code);
    expect(new Set(codes).size).toBe(samples.length);
    expect(MESSAGE_NAMES.get(MessageType.ACK)).toBe('ACK');
    expect(MESSAGE_NAMES.get(MessageType.HELLO)).toBe('HELLO');
    expect(MESSAGE_NAMES.size).toBe(samples.length + 2);
  });

  for (const m of samples) {
    it(`${m.type} round-trips`, () => {
      expect(normalize(roundTrip(m))).toEqual(normalize(m));
    });
  }

  it('LOG is neither copied on encode nor on decode', () => {
    const batches = Uint8Array.of(1, 2, 3);
    const { payload } = encodeMessage({ type: 'log', batches });
    expect(payload).toBe(batches);
    const m = decodeMessage(MessageType.LOG, payload);
    expect(m.type === 'log' && m.batches).toBe(batches);
  });

  it('refuses a payload one byte short or one byte long for every fixed-size message', () => {
    for (const m of samples.filter((s) => ['ack', 'heartbeat', 'release', 'clone-done'].includes(s.type))) {
      const { code, payload } = encodeMessage(m);
      const longer = new Uint8Array(payload.length + 1);
      longer.set(payload);
      expect(malformed(() => decodeMessage(code, longer)).message).toMatch(/exactly/);
      if (payload.length > 0) malformed(() => decodeMessage(code, payload.subarray(0, payload.length - 1)));
    }
  });

  it('refuses every truncation of the variable-size messages that changes their meaning', () => {
    const pages = encodeMessage(samples.find((s) => s.type === 'clone-pages')!);
    for (let n = 0; n < pages.payload.length; n++) malformed(() => decodeMessage(pages.code, pages.payload.subarray(0, n)));
    const extended = new Uint8Array(pages.payload.length + 1);
    extended.set(pages.payload);
    malformed(() => decodeMessage(pages.code, extended));
    const final = encodeMessage(samples.find((s) => s.type === 'clone-final')!);
    // Shorter than the meta it announces (the state part may legitimately shrink).
    const metaEnd = 4 + Buffer.from(final.payload).readUInt32BE(0);
    for (let n = 0; n < metaEnd; n++) malformed(() => decodeMessage(final.code, final.payload.subarray(0, n)));
    const disk = encodeMessage(samples.find((s) => s.type === 'clone-disk')!);
    for (const n of [0, 7, 8, 9, 8 + 511, 8 + 513, disk.payload.length - 1]) malformed(() => decodeMessage(disk.code, disk.payload.subarray(0, n)));
    const oddOffset = Buffer.from(disk.payload);
    oddOffset.writeBigUInt64BE(100n, 0);
    expect(malformed(() => decodeMessage(disk.code, oddOffset)).message).toMatch(/multiple of 512/);
    const goLive = encodeMessage(samples.find((s) => s.type === 'go-live')!);
    for (let n = 0; n < 8; n++) malformed(() => decodeMessage(goLive.code, goLive.payload.subarray(0, n)));
  });

  it('refuses an empty LOG and unknown type codes', () => {
    malformed(() => decodeMessage(MessageType.LOG, new Uint8Array(0)));
    malformed(() => encodeMessage({ type: 'log', batches: new Uint8Array(0) }));
    malformed(() => decodeMessage(0x7f, new Uint8Array(1)));
    malformed(() => decodeMessage(MessageType.HELLO, new Uint8Array(60))); // handshake codes are not application messages
    malformed(() => encodeMessage({ type: 'nope' } as unknown as Message));
  });

  it('refuses u64 fields out of range and non-bigint values on encode', () => {
    malformed(() => encodeMessage({ type: 'ack', lsn: -1n, instret: 0n, bytes: 0n }));
    malformed(() => encodeMessage({ type: 'ack', lsn: 0n, instret: U64_MAX + 1n, bytes: 0n }));
    malformed(() => encodeMessage({ type: 'release', lsn: 5 as unknown as bigint }));
    malformed(() => encodeMessage({ type: 'go-live', epoch: -3n, reason: '' }));
  });

  it('refuses a heartbeat time that is negative, -0, NaN or infinite', () => {
    for (const bad of [-1, NaN, Infinity]) {
      malformed(() => encodeMessage({ type: 'heartbeat', sentAtMs: bad, instret: 0n, releasedLsn: 0n }));
    }
    const { code, payload } = encodeMessage({ type: 'heartbeat', sentAtMs: 1, instret: 0n, releasedLsn: 0n });
    for (const bad of [-1, -0, NaN, Infinity]) {
      const p = Buffer.from(payload);
      p.writeDoubleBE(bad, 0);
      malformed(() => decodeMessage(code, p));
    }
  });

  it('refuses bad clone pages: size not a power of two or over 64 KiB, wrong data size, indices not increasing', () => {
    for (const pageSize of [0, 3, 4095, 128 << 10]) {
      malformed(() => encodeMessage({ type: 'clone-pages', pageSize, pages: [] }));
      const p = Buffer.alloc(8);
      p.writeUInt32BE(pageSize, 0);
      malformed(() => decodeMessage(MessageType.CLONE_PAGES, p));
    }
    malformed(() => encodeMessage({ type: 'clone-pages', pageSize: 16, pages: [{ index: 0, data: page(0, 15) }] }));
    malformed(() => encodeMessage({ type: 'clone-pages', pageSize: 16, pages: [{ index: 2, data: page(0) }, { index: 2, data: page(0) }] }));
    malformed(() => encodeMessage({ type: 'clone-pages', pageSize: 16, pages: [{ index: 2, data: page(0) }, { index: 1, data: page(0) }] }));
    malformed(() => encodeMessage({ type: 'clone-pages', pageSize: 16, pages: [{ index: -1, data: page(0) }] }));
    const ok = encodeMessage({ type: 'clone-pages', pageSize: 16, pages: [{ index: 1, data: page(0) }, { index: 2, data: page(0) }] });
    const swapped = Buffer.from(ok.payload);
    swapped.writeUInt32BE(3, 8); // first index now above the second
    expect(malformed(() => decodeMessage(ok.code, swapped)).message).toMatch(/does not increase/);
    // A count that does not match the length.
    const count = Buffer.from(ok.payload);
    count.writeUInt32BE(3, 4);
    malformed(() => decodeMessage(ok.code, count));
    expect(roundTrip({ type: 'clone-pages', pageSize: 65536, pages: [] })).toEqual({ type: 'clone-pages', pageSize: 65536, pages: [] });
  });

  it('refuses JSON bodies that are not objects, not JSON, not UTF-8, carry a BOM, or are over the cap', () => {
    const enc = (text: string | Uint8Array) => (typeof text === 'string' ? Buffer.from(text) : text);
    for (const body of ['[1,2]', 'null', '"op"', '42', '{"op":', '', '\uFEFF{"op":"x"}']) {
      malformed(() => decodeMessage(MessageType.CLONE_BEGIN, enc(body)));
      malformed(() => decodeMessage(MessageType.CONTROL, enc(body)));
    }
    malformed(() => decodeMessage(MessageType.CONTROL, Uint8Array.of(0x7b, 0xff, 0x7d)));
    malformed(() => decodeMessage(MessageType.CONTROL, enc('{"noop":1}')));
    malformed(() => decodeMessage(MessageType.CONTROL, enc('{"op":7}')));
    malformed(() => decodeMessage(MessageType.CONTROL, enc('{"op":"x","type":"ack"}')));
    const big = { pad: 'x'.repeat(MAX_JSON_BYTES) };
    malformed(() => encodeMessage({ type: 'clone-begin', meta: big }));
    malformed(() => decodeMessage(MessageType.CLONE_BEGIN, enc(JSON.stringify(big))));
    malformed(() => encodeMessage({ type: 'clone-begin', meta: [] as unknown as Record<string, unknown> }));
    malformed(() => encodeMessage({ type: 'clone-begin', meta: { n: 1n } }));
    malformed(() => encodeMessage({ type: 'control', op: 3 } as unknown as Message));
    // A CLONE_FINAL meta length pointing past the end, or over the cap.
    const p = Buffer.alloc(8);
    p.writeUInt32BE(100, 0);
    malformed(() => decodeMessage(MessageType.CLONE_FINAL, p));
  });

  it('CONTROL drops its type field on the wire and gets it back on decode', () => {
    const { payload } = encodeMessage({ type: 'control', op: 'restart' });
    expect(Buffer.from(payload).toString()).toBe('{"op":"restart"}');
    expect(decodeMessage(MessageType.CONTROL, payload)).toEqual({ type: 'control', op: 'restart' });
  });

  it('refuses reasons over 1 KiB and invalid UTF-8', () => {
    malformed(() => encodeMessage({ type: 'bye', reason: 'x'.repeat(MAX_REASON_BYTES + 1) }));
    malformed(() => decodeMessage(MessageType.BYE, Buffer.alloc(MAX_REASON_BYTES + 1, 0x41)));
    malformed(() => decodeMessage(MessageType.BYE, Uint8Array.of(0xc3)));
    expect(roundTrip({ type: 'bye', reason: '' })).toEqual({ type: 'bye', reason: '' });
    const goLive = Buffer.alloc(9);
    goLive[8] = 0xff;
    malformed(() => decodeMessage(MessageType.GO_LIVE, goLive));
  });
});

describe('handshake codecs', () => {
  const hello: Hello = { role: 'primary', vmId: 'vm-1', minVersion: 1, maxVersion: 3, epoch: 17.5, nonce: new Uint8Array(32).fill(9) };

  it('HELLO round-trips and is exactly 46 + vmId bytes', () => {
    const p = encodeHello(hello);
    expect(p.length).toBe(HELLO_FIXED_BYTES + 4);
    expect({ ...decodeHello(p), nonce: [...decodeHello(p).nonce] }).toEqual({ ...hello, nonce: [...hello.nonce] });
  });

  it('HELLO refuses truncation, extension, bad role, empty range, version 0, bad vmId, non-finite epoch', () => {
    const p = Buffer.from(encodeHello(hello));
    for (let n = 0; n < p.length; n++) malformed(() => decodeHello(p.subarray(0, n)));
    malformed(() => decodeHello(Buffer.concat([p, Buffer.of(0)])));
    const mutate = (f: (b: Buffer) => void) => {
      const b = Buffer.from(p);
      f(b);
      return b;
    };
    malformed(() => decodeHello(mutate((b) => b.writeUInt8(3, 4))));
    malformed(() => decodeHello(mutate((b) => b.writeUInt16BE(4, 0))));
    malformed(() => decodeHello(mutate((b) => b.writeUInt16BE(0, 0))));
    malformed(() => decodeHello(mutate((b) => b.writeDoubleBE(NaN, 6))));
    malformed(() => decodeHello(mutate((b) => (b[HELLO_FIXED_BYTES] = 0x0a))));
    malformed(() => decodeHello(mutate((b) => (b[HELLO_FIXED_BYTES] = 0xff))));
    malformed(() => encodeHello({ ...hello, vmId: '' }));
    malformed(() => encodeHello({ ...hello, vmId: 'x'.repeat(256) }));
    malformed(() => encodeHello({ ...hello, vmId: 'a\nb' }));
    malformed(() => encodeHello({ ...hello, vmId: '\ud800' }));
    malformed(() => encodeHello({ ...hello, nonce: new Uint8Array(31) }));
    malformed(() => encodeHello({ ...hello, minVersion: 2, maxVersion: 1 }));
  });

  it('AUTH is exactly 32 bytes', () => {
    const proof = new Uint8Array(32).fill(1);
    expect(decodeAuth(encodeAuth(proof))).toEqual(proof);
    malformed(() => decodeAuth(new Uint8Array(31)));
    malformed(() => decodeAuth(new Uint8Array(33)));
    malformed(() => encodeAuth(new Uint8Array(16)));
  });
});


function randomMessage(rand: () => number): Message {
  const int = (n: number) => Math.floor(rand() * n);
  const u64 = () => (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32));
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const text = (n: number) => Array.from({ length: n }, () => String.fromCodePoint([0x41, 0xe9, 0x4e2d, 0x1f600][int(4)]! + int(20))).join('');
  const json = (): Record<string, unknown> => ({ k: text(int(10)), n: int(1000) - 500, f: rand(), l: [true, null, text(3)], o: { deep: int(5) } });
  switch (int(11)) {
    case 0: return { type: 'log', batches: bytes(1 + int(200)) };
    case 1: return { type: 'ack', lsn: u64(), instret: u64(), bytes: u64() };
    case 2: return { type: 'heartbeat', sentAtMs: rand() * 1e9, instret: u64(), releasedLsn: u64() };
    case 3: return { type: 'release', lsn: u64() };
    case 4: return { type: 'clone-begin', meta: json() };
    case 5: {
      const pageSize = 1 << int(9);
      let index = int(10);
      const pages = Array.from({ length: int(5) }, () => ({ index: (index += 1 + int(1000)), data: bytes(pageSize) }));
      return { type: 'clone-pages', pageSize, pages };
    }
    case 6: return { type: 'clone-final', state: bytes(int(100)), meta: json() };
    case 7: return rand() < 0.5 ? { type: 'clone-done' } : { type: 'clone-disk', offset: BigInt(int(1 << 20)) * 512n, data: bytes(512 * (1 + int(4))) };
    case 8: return { type: 'control', op: text(1 + int(8)), arg: json() };
    case 9: return { type: 'go-live', epoch: u64(), reason: text(int(50)) };
    default: return { type: 'bye', reason: text(int(50)) };
  }
}

const JSON_TYPES = new Set(['clone-begin', 'clone-final', 'control']);

describe('property: random messages', () => {
  it('2000 random messages round-trip exactly, and every random corruption either throws MALFORMED or decodes to a message that encodes back to it', () => {
    const seed = 0x5eed1;
    const rand = prng(seed);
    for (let i = 0; i < 2000; i++) {
      const m = randomMessage(rand);
      const { code, payload } = encodeMessage(m);
      const back = decodeMessage(code, payload);
      expect(normalize(back), `seed ${seed} message ${i}`).toEqual(normalize(m));
      // Canonical: re-encoding the decoded message gives the same bytes.
      expect(Buffer.compare(encodeMessage(back).payload, payload), `seed ${seed} message ${i}`).toBe(0);
      // Corrupt: truncate, extend or flip a byte; decode must throw MALFORMED or give a valid message.
      const bad = Buffer.from(payload);
      const mode = Math.floor(rand() * 3);
      const mutated = mode === 0 ? bad.subarray(0, Math.floor(rand() * bad.length))
        : mode === 1 ? Buffer.concat([bad, Buffer.of(Math.floor(rand() * 256))])
        : (bad.length > 0 && (bad[Math.floor(rand() * bad.length)]! ^= 1 << Math.floor(rand() * 8)), bad);
      let d: Message | undefined;
      try {
        d = decodeMessage(code, mutated);
      } catch (err) {
        expect((err as ProtocolError).code, `seed ${seed} message ${i} mode ${mode}: ${String(err)}`).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
      }
      if (d) {
        const again = encodeMessage(d).payload;
        if (JSON_TYPES.has(d.type)) {
          // JSON admits insignificant whitespace: the value, not the bytes, must survive.
          expect(normalize(decodeMessage(code, again)), `seed ${seed} message ${i} mode ${mode}`).toEqual(normalize(d));
        } else {
          expect(Buffer.compare(again, mutated), `seed ${seed} message ${i} mode ${mode}`).toBe(0);
        }
      }
    }
  });

  it('500 random messages through HMAC frames, cut at random points, decode in order and intact', () => {
    const seed = 0xc0ffee;
    const rand = prng(seed);
    const trailer = { kind: 'hmac', key: createSecretKey(Buffer.alloc(32, 3)) } as const;
    const enc = new FrameEncoder({ trailer });
    const sent = Array.from({ length: 500 }, () => randomMessage(rand));
    const wire = Buffer.concat(sent.flatMap((m) => {
      const { code, payload } = encodeMessage(m);
      const f = enc.encode(code, payload);
      return [f.header, f.payload, f.trailer];
    }));
    const dec = new FrameDecoder({ trailer });
    const got: Message[] = [];
    for (let at = 0; at < wire.length;) {
      const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 8 : 4000));
      dec.push(wire.subarray(at, at + n));
      at += n;
      for (let f = dec.next(); f; f = dec.next()) got.push(decodeMessage(f.type, f.payload));
    }
    expect(got.length, `seed ${seed}`).toBe(sent.length);
    expect(normalize(got), `seed ${seed}`).toEqual(normalize(sent));
  });
});
