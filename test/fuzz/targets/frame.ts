// Channel frame target: mutated byte streams of frames (CRC-sealed handshake, then HMAC-sealed
// messages) through FrameDecoder in random chunks and on to the message decoders. Only ProtocolError may
// come out; the result does not depend on how the stream was split; a decoded message re-encodes to the
// same message.
import { createSecretKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { FrameDecoder, encodeFrame, CRC32C_TRAILER, type FrameTrailer } from '../../../src/protocol/frame.js';
import { ProtocolError } from '../../../src/protocol/errors.js';
import { MessageType, decodeAuth, decodeHello, decodeMessage, encodeAuth, encodeHello, encodeMessage, isApplicationType, type Message } from '../../../src/protocol/messages.js';
import { check, type FuzzTarget } from '../harness.js';
import { concat, havoc, int, pick, type Rnd } from '../mutate.js';

/** The key the corpus streams' HMAC frames are sealed with (a fixed test key, not a secret). */
export const FRAME_CORPUS_KEY = Buffer.from('6c6f636b737465702066757a7a206b6579206e6f7420612073656372657421', 'hex');
/** Frames at the start of every corpus stream that carry the CRC trailer (HELLO and AUTH). */
const CRC_FRAMES = 2;
const corpus = new URL('../corpus/frame/', import.meta.url);
const STREAMS = ['handshake-and-log.bin', 'every-message.bin'];
let seeds: Uint8Array[] = [];

/** Writes the corpus streams: HELLO and AUTH under CRC32C, then application messages under HMAC. */
export function frameCorpus(): Map<string, Uint8Array> {
  const hmac: FrameTrailer = { kind: 'hmac', key: createSecretKey(FRAME_CORPUS_KEY) };
  const hello = encodeHello({ role: 'primary', vmId: 'kv1', minVersion: 1, maxVersion: 1, epoch: 3, nonce: new Uint8Array(32).fill(7) });
  const start = [encodeFrame(MessageType.HELLO, 0, hello, CRC32C_TRAILER), encodeFrame(MessageType.AUTH, 1, encodeAuth(new Uint8Array(32).fill(9)), CRC32C_TRAILER)];
  const stream = (messages: Message[]) =>
    concat(...start, ...messages.map((m, i) => {
      const { code, payload } = encodeMessage(m);
      return encodeFrame(code, CRC_FRAMES + i, payload, hmac);
    }));
  return new Map([
    [STREAMS[0]!, stream([
      { type: 'log', batches: new Uint8Array(96).fill(0x5a) },
      { type: 'ack', lsn: 4n, instret: 123_456n, bytes: 9_000n },
      { type: 'heartbeat', sentAtMs: 1234.5, instret: 99n, releasedLsn: 3n },
    ])],
    [STREAMS[1]!, stream([
      { type: 'release', lsn: 7n },
      { type: 'clone-begin', meta: { memory: 1048576, clock: 'real', devices: { net: true } } },
      { type: 'clone-pages', pageSize: 4096, pages: [{ index: 1, data: new Uint8Array(4096).fill(1) }, { index: 5, data: new Uint8Array(4096).fill(2) }] },
      { type: 'clone-final', state: new Uint8Array(64).fill(3), meta: { instret: '42' } },
      { type: 'clone-disk', offset: 512n, data: new Uint8Array(512).fill(4) },
      { type: 'clone-done' },
      { type: 'control', op: 'status', verbose: true },
      { type: 'go-live', epoch: 4n, reason: 'primary silent for 3000 ms' },
      { type: 'bye', reason: 'done' },
    ])],
  ]);
}

type Outcome = { frames: { type: number; sequence: number; payload: Uint8Array }[]; error: string | undefined };

/** Decodes `stream` pushed in the given chunk sizes, switching to HMAC after the handshake frames. */
function decode(stream: Uint8Array, chunks: number[]): Outcome {
  const decoder = new FrameDecoder({ maxPayloadBytes: 1 << 20 });
  const hmac: FrameTrailer = { kind: 'hmac', key: createSecretKey(FRAME_CORPUS_KEY) };
  const frames: Outcome['frames'] = [];
  let at = 0;
  let k = 0;
  try {
    while (at < stream.length || k === 0) {
      const n = Math.max(1, chunks[k++ % chunks.length]!);
      decoder.push(stream.subarray(at, at + n));
      at += n;
      for (let f = decoder.next(); f !== null; f = decoder.next()) {
        frames.push({ type: f.type, sequence: f.sequence, payload: Uint8Array.from(f.payload) });
        if (frames.length === CRC_FRAMES) decoder.setTrailer(hmac);
      }
      if (at >= stream.length) break;
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    // A dead decoder keeps failing with the same error.
    let again: unknown;
    try {
      decoder.next();
    } catch (e) {
      again = e;
    }
    check(again === err, 'a failed decoder throws its first error again');
    return { frames, error: err.code };
  }
  return { frames, error: undefined };
}

/** `value` with every byte array (Buffer or view) as a plain Uint8Array: compared by content only. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Uint8Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

function same(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(plain(a), plain(b));
}

/** Decodes one frame's payload as the channel would; only ProtocolError may come out. */
function decodePayload(type: number, payload: Uint8Array): void {
  try {
    if (type === MessageType.HELLO) {
      const h = decodeHello(payload);
      check(same(decodeHello(encodeHello(h)), h), 'HELLO re-encodes to the same HELLO');
    } else if (type === MessageType.AUTH) {
      decodeAuth(payload);
    } else if (isApplicationType(type)) {
      const m = decodeMessage(type, payload);
      const again = encodeMessage(m);
      check(again.code === type, 'a message re-encodes under its own type code');
      check(same(decodeMessage(again.code, again.payload), m), `message type 0x${type.toString(16)} re-encodes to the same message`);
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
  }
}

function randomChunks(rnd: Rnd): number[] {
  return Array.from({ length: 1 + int(rnd, 8) }, () => (rnd() < 0.3 ? 1 + int(rnd, 4) : 1 + int(rnd, 4096)));
}

export const frameTarget: FuzzTarget = {
  name: 'frame',
  about: 'FrameDecoder (random chunking) and the message decoders on mutated frame streams: ProtocolError only, split-invariant, re-encodable',
  setup() {
    seeds = STREAMS.map((f) => Uint8Array.from(readFileSync(new URL(f, corpus))));
  },
  iterate(rnd) {
    const seed = pick(rnd, seeds);
    let stream: Uint8Array;
    if (rnd() < 0.5) {
      stream = havoc(seed, rnd, 6);
    } else {
      // Behind valid trailers: one frame's payload (and sometimes its type) changed, every frame resealed.
      const frames = decode(seed, [seed.length]).frames;
      const victim = int(rnd, frames.length);
      const hmac: FrameTrailer = { kind: 'hmac', key: createSecretKey(FRAME_CORPUS_KEY) };
      stream = concat(...frames.map((f, k) => {
        const type = k === victim && rnd() < 0.3 ? pick(rnd, Object.values(MessageType)) : f.type;
        const payload = k === victim ? havoc(f.payload, rnd, 6) : f.payload;
        return encodeFrame(type, k, payload, k < CRC_FRAMES ? CRC32C_TRAILER : hmac);
      }));
    }
    const a = decode(stream, randomChunks(rnd));
    const b = decode(stream, [stream.length]);
    check(a.error === b.error && a.frames.length === b.frames.length, `the same frames and error however the stream is split (${a.frames.length}/${a.error} vs ${b.frames.length}/${b.error})`);
    a.frames.forEach((f, i) => {
      check(f.sequence === i, 'frames come out in sequence');
      check(same(f.payload, b.frames[i]!.payload), 'the same payload however the stream is split');
      decodePayload(f.type, f.payload);
    });
  },
};
