// Frame codec: round trips, every split of a byte stream, and each header or trailer check failing
// before the payload is buffered (size, sequence) or before the frame is returned (CRC, HMAC).
import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  CRC32C_TRAILER,
  FRAME_MAGIC,
  FrameDecoder,
  FrameEncoder,
  HEADER_BYTES,
  OFF_FLAGS,
  OFF_LENGTH,
  OFF_MAGIC,
  OFF_RESERVED,
  OFF_SEQUENCE,
  OFF_TYPE,
  encodeFrame,
  type Frame,
  type FrameTrailer,
} from '../../src/protocol/frame.js';

const hmac: FrameTrailer = { kind: 'hmac', key: createSecretKey(Buffer.alloc(32, 7)) };

function join(pieces: { header: Uint8Array; payload: Uint8Array; trailer: Uint8Array }): Buffer {
  return Buffer.concat([pieces.header, pieces.payload, pieces.trailer]);
}

function stream(trailer: FrameTrailer, payloads: Uint8Array[]): Buffer {
  const enc = new FrameEncoder({ trailer });
  return Buffer.concat(payloads.map((p, i) => join(enc.encode(0x10 + (i % 3), p))));
}

function decodeAll(dec: FrameDecoder, chunks: Uint8Array[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) {
    dec.push(c);
    for (let f = dec.next(); f; f = dec.next()) out.push(f);
  }
  return out;
}

function expectCode(fn: () => unknown, code: string): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(code);
    return err as ProtocolError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('frame layout', () => {
  it('places magic, type, flags, reserved, length and sequence at the named offsets', () => {
    const payload = Buffer.from('hello');
    const f = encodeFrame(0x11, 0x0102030405, payload, CRC32C_TRAILER);
    expect(HEADER_BYTES).toBe(20);
    expect(f.readUInt32BE(OFF_MAGIC)).toBe(FRAME_MAGIC);
    expect(f.subarray(0, 4).toString('latin1')).toBe('LKSP');
    expect(f[OFF_TYPE]).toBe(0x11);
    expect(f[OFF_FLAGS]).toBe(0);
    expect(f.readUInt16BE(OFF_RESERVED)).toBe(0);
    expect(f.readUInt32BE(OFF_LENGTH)).toBe(5);
    expect(f.readBigUInt64BE(OFF_SEQUENCE)).toBe(0x0102030405n);
    expect(f.length).toBe(HEADER_BYTES + 5 + 4);
    expect(encodeFrame(0x11, 0, payload, hmac).length).toBe(HEADER_BYTES + 5 + 32);
  });

  it('the encoder numbers frames 0, 1, 2 … and hands back the caller\'s payload object', () => {
    const enc = new FrameEncoder({ trailer: hmac });
    const payload = new Uint8Array([1, 2, 3]);
    for (let i = 0; i < 3; i++) {
      const f = enc.encode(0x10, payload);
      expect(f.payload).toBe(payload);
      expect(f.header.readBigUInt64BE(OFF_SEQUENCE)).toBe(BigInt(i));
    }
    expect(enc.nextSequence).toBe(3);
  });

  it('the encoder refuses a payload over its maximum without using a sequence number', () => {
    const enc = new FrameEncoder({ maxPayloadBytes: 10 });
    expectCode(() => enc.encode(0x10, new Uint8Array(11)), 'ERR_LOCKSTEP_PROTOCOL_OVERSIZED');
    expect(enc.nextSequence).toBe(0);
  });
});

describe('FrameDecoder', () => {
  const payloads = [Buffer.from('a'), Buffer.alloc(0), randomBytes(300), Buffer.from('last frame')];

  for (const trailer of [CRC32C_TRAILER, hmac]) {
    it(`decodes every split of a 4-frame stream into the same frames (${trailer.kind})`, () => {
      const bytes = stream(trailer, payloads);
      const check = (frames: Frame[]) => {
        expect(frames.map((f) => Buffer.from(f.payload).toString('hex'))).toEqual(payloads.map((p) => p.toString('hex')));
        expect(frames.map((f) => f.sequence)).toEqual([0, 1, 2, 3]);
        expect(frames.map((f) => f.type)).toEqual([0x10, 0x11, 0x12, 0x10]);
      };
      // Every single cut point, and every pair of cut points, of the whole stream.
      for (let a = 0; a <= bytes.length; a++) {
        check(decodeAll(new FrameDecoder({ trailer }), [bytes.subarray(0, a), bytes.subarray(a)]));
      }
      for (let a = 0; a <= bytes.length; a += 7) {
        for (let b = a; b <= bytes.length; b += 5) {
          check(decodeAll(new FrameDecoder({ trailer }), [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]));
        }
      }
      // One byte at a time.
      check(decodeAll(new FrameDecoder({ trailer }), [...bytes].map((b) => Uint8Array.of(b))));
    });
  }

  it('hands out a view of the received chunk when a payload arrives whole, a buffer of its own otherwise', () => {
    const bytes = stream(hmac, [randomBytes(10_000)]); // over Buffer's pool size: its own ArrayBuffer
    const [whole] = decodeAll(new FrameDecoder({ trailer: hmac }), [bytes]);
    expect(whole!.payload.buffer).toBe(bytes.buffer);
    const [split] = decodeAll(new FrameDecoder({ trailer: hmac }), [bytes.subarray(0, 500), bytes.subarray(500)]);
    expect(split!.payload.buffer).not.toBe(bytes.buffer);
    expect(Buffer.compare(split!.payload, whole!.payload)).toBe(0);
  });

  it('decodes a 1 MiB payload fed one byte at a time, copying each byte once (linear, bounded loop)', () => {
    const payload = randomBytes(1 << 20);
    const bytes = stream(hmac, [payload]);
    const dec = new FrameDecoder({ trailer: hmac });
    let frame: Frame | null = null;
    let maxBuffered = 0;
    for (let i = 0; i < bytes.length; i++) {
      dec.push(bytes.subarray(i, i + 1));
      frame = dec.next() ?? frame;
      maxBuffered = Math.max(maxBuffered, dec.buffered);
    }
    expect(maxBuffered).toBe(0); // nothing piled up in the queue: each byte moved straight to its place
    expect(Buffer.compare(frame!.payload, payload)).toBe(0);
  });

  it('refuses a header over the maximum before a single payload byte arrives, and never buffers it', () => {
    const header = encodeFrame(0x10, 0, Buffer.alloc(0), CRC32C_TRAILER).subarray(0, HEADER_BYTES);
    header.writeUInt32BE(1001, OFF_LENGTH);
    const dec = new FrameDecoder({ maxPayloadBytes: 1000 });
    dec.push(header);
    const err = expectCode(() => dec.next(), 'ERR_LOCKSTEP_PROTOCOL_OVERSIZED');
    expect(err.message).toContain('1001');
    expect(dec.buffered).toBe(0);
    // Dead: later bytes are ignored and the same error comes back.
    dec.push(Buffer.alloc(2000));
    expect(() => dec.next()).toThrow(err);
  });

  it('a header announcing 4 GiB − 1 with no payload costs no allocation of the payload', () => {
    const header = encodeFrame(0x10, 0, Buffer.alloc(0), CRC32C_TRAILER).subarray(0, HEADER_BYTES);
    header.writeUInt32BE(0xffffffff, OFF_LENGTH);
    const dec = new FrameDecoder({ maxPayloadBytes: 0xffffffff });
    dec.push(header);
    expect(dec.next()).toBeNull(); // accepted header, waiting: and nothing was allocated for the body
    expect(dec.buffered).toBe(0);
  });

  it('rejects a duplicated frame (replay) and a skipped sequence number', () => {
    const enc = new FrameEncoder({ trailer: hmac });
    const f0 = join(enc.encode(0x10, Buffer.from('x')));
    const f1 = join(enc.encode(0x10, Buffer.from('y')));
    const f2 = join(enc.encode(0x10, Buffer.from('z')));
    const replay = new FrameDecoder({ trailer: hmac });
    expect(decodeAll(replay, [f0])).toHaveLength(1);
    replay.push(f0);
    expect(expectCode(() => replay.next(), 'ERR_LOCKSTEP_PROTOCOL_SEQUENCE').message).toMatch(/sequence 0 where 1/);
    const skip = new FrameDecoder({ trailer: hmac });
    skip.push(Buffer.concat([f0, f2]));
    expect(skip.next()!.sequence).toBe(0);
    expectCode(() => skip.next(), 'ERR_LOCKSTEP_PROTOCOL_SEQUENCE');
    const reorder = new FrameDecoder({ trailer: hmac });
    reorder.push(Buffer.concat([f1, f0]));
    expectCode(() => reorder.next(), 'ERR_LOCKSTEP_PROTOCOL_SEQUENCE');
  });

  it('never returns a frame with a flipped bit anywhere, and rejects one sealed with another key', () => {
    const frame = stream(hmac, [Buffer.from('payload bytes')]);
    for (let i = 0; i < frame.length; i++) {
      const bad = Buffer.from(frame);
      bad[i]! ^= 0x01;
      // A flipped length bit makes the frame longer than what was sent: the decoder waits for the rest
      // (a peer would hit the handshake or idle timeout); every other flip is refused outright.
      const lengthByte = i >= OFF_LENGTH && i < OFF_LENGTH + 4;
      const dec = new FrameDecoder({ trailer: hmac });
      dec.push(bad);
      let frameOut: Frame | null = null;
      let threw = false;
      try {
        frameOut = dec.next();
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
        threw = true;
      }
      expect(frameOut, `byte ${i}`).toBeNull();
      if (!lengthByte) expect(threw, `byte ${i}`).toBe(true);
    }
    const bad = Buffer.from(frame);
    bad[HEADER_BYTES + 3]! ^= 0x80; // in the payload: only the HMAC can notice
    expectCode(() => decodeAll(new FrameDecoder({ trailer: hmac }), [bad]), 'ERR_LOCKSTEP_PROTOCOL_AUTH');
    const other: FrameTrailer = { kind: 'hmac', key: createSecretKey(Buffer.alloc(32, 8)) };
    expectCode(() => decodeAll(new FrameDecoder({ trailer: other }), [frame]), 'ERR_LOCKSTEP_PROTOCOL_AUTH');
  });

  it('rejects a corrupted CRC32C frame, bad magic, flags and reserved bits', () => {
    const frame = stream(CRC32C_TRAILER, [Buffer.from('hello')]);
    const crc = Buffer.from(frame);
    crc[HEADER_BYTES]! ^= 1;
    expectCode(() => decodeAll(new FrameDecoder(), [crc]), 'ERR_LOCKSTEP_PROTOCOL_MALFORMED');
    for (const [off, what] of [[OFF_MAGIC, 'magic'], [OFF_FLAGS, 'flags'], [OFF_RESERVED + 1, 'reserved']] as const) {
      const bad = Buffer.from(frame);
      bad[off]! ^= 0x40;
      const dec = new FrameDecoder();
      dec.push(bad.subarray(0, HEADER_BYTES)); // the header alone is enough to refuse it
      expect(() => dec.next(), what).toThrow(/magic|flags/);
    }
  });

  it('asks the type judge about each header before reading its payload', () => {
    const dec = new FrameDecoder({ checkType: (t) => (t === 0x10 ? undefined : new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `type ${t}`)) });
    const frame = encodeFrame(0x99, 0, Buffer.alloc(100), CRC32C_TRAILER);
    dec.push(frame.subarray(0, HEADER_BYTES));
    expect(() => dec.next()).toThrow('type 153');
  });

  it('switches from CRC32C to HMAC between two frames of one stream', () => {
    const enc = new FrameEncoder();
    const a = join(enc.encode(0x01, Buffer.from('hello')));
    enc.setTrailer(hmac);
    const b = join(enc.encode(0x10, Buffer.from('sealed')));
    const dec = new FrameDecoder();
    dec.push(Buffer.concat([a, b]));
    expect(Buffer.from(dec.next()!.payload).toString()).toBe('hello');
    dec.setTrailer(hmac);
    expect(Buffer.from(dec.next()!.payload).toString()).toBe('sealed');
    // Without the switch the HMAC frame's 32-byte trailer would be read as a CRC: it must not pass.
    const stale = new FrameDecoder();
    stale.push(Buffer.concat([a, b]));
    stale.next();
    expect(() => stale.next()).toThrow(ProtocolError);
  });
});
