// Framing of the logging channel: frame layout, an encoder that never copies the payload, and an
// incremental decoder that checks each header (size, sequence) before it buffers a single payload byte.
// Knows nothing about message contents or sockets.
import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import { crc32c } from '../log/crc32c.js';
import { ProtocolError } from './errors.js';

/*
 * One frame on the wire (all integers big-endian, "network order"):
 *
 *   byte 0         4      5       6         8                12                               20
 *        +---------+------+-------+---------+----------------+--------------------------------+
 *        |  magic  | type | flags | reserved| payload length |     sequence number (u64)      |
 *        | "LKSP"  |  u8  |  u8=0 |  u16=0  |      u32       | per direction, +1 every frame  |
 *        +---------+------+-------+---------+----------------+--------------------------------+
 *        |                        payload (payload length bytes)                              |
 *        +------------------------------------------------------------------------------------+
 *        | trailer over header + payload:                                                     |
 *        |   CRC32C, u32 (4 bytes)            HELLO and AUTH frames, before authentication    |
 *        |   HMAC-SHA-256 (32 bytes)          every frame after, keyed with the direction key |
 *        +------------------------------------------------------------------------------------+
 *
 * The header and the HELLO frame are frozen for every protocol version: they are what two sides of
 * different versions read before they have agreed on anything.
 */

/** The four bytes every frame starts with: ASCII "LKSP". */
export const FRAME_MAGIC = 0x4c4b5350;
/** Byte offset of the magic (u32). */
export const OFF_MAGIC = 0;
/** Byte offset of the message type (u8). */
export const OFF_TYPE = 4;
/** Byte offset of the flags (u8; no flag is defined in version 1, so it must be 0). */
export const OFF_FLAGS = 5;
/** Byte offset of the reserved field (u16, must be 0). */
export const OFF_RESERVED = 6;
/** Byte offset of the payload length (u32). */
export const OFF_LENGTH = 8;
/** Byte offset of the sequence number (u64). */
export const OFF_SEQUENCE = 12;
/** Size of the frame header. */
export const HEADER_BYTES = 20;
/** Size of the CRC32C trailer of the pre-authentication frames. */
export const CRC_TRAILER_BYTES = 4;
/** Size of the HMAC-SHA-256 trailer of authenticated frames. */
export const HMAC_TRAILER_BYTES = 32;
/** Default largest payload a channel accepts (16 MiB). */
export const DEFAULT_MAX_FRAME_BYTES = 16 << 20;
/**
 * Largest payload accepted before authentication: a HELLO is about 300 bytes, so an unauthenticated
 * peer can never make a receiver hold more than this much.
 */
export const PREAUTH_MAX_PAYLOAD_BYTES = 1024;

const TWO_32 = 2 ** 32;

// The layout above, checked once at load: the offsets tile the header with no gap or overlap.
if (OFF_TYPE !== OFF_MAGIC + 4 || OFF_FLAGS !== OFF_TYPE + 1 || OFF_RESERVED !== OFF_FLAGS + 1 ||
    OFF_LENGTH !== OFF_RESERVED + 2 || OFF_SEQUENCE !== OFF_LENGTH + 4 || HEADER_BYTES !== OFF_SEQUENCE + 8) {
  throw new Error('lockstep: frame header offsets are inconsistent');
}

/** How frames are sealed: CRC32C before authentication, HMAC-SHA-256 with a key after. */
export type FrameTrailer = { readonly kind: 'crc32c' } | { readonly kind: 'hmac'; readonly key: KeyObject };

/** The CRC32C trailer mode (pre-authentication). */
export const CRC32C_TRAILER: FrameTrailer = Object.freeze({ kind: 'crc32c' });

/** Trailer size of a mode. */
export function trailerBytes(trailer: FrameTrailer): number {
  return trailer.kind === 'crc32c' ? CRC_TRAILER_BYTES : HMAC_TRAILER_BYTES;
}

/** A decoded, verified frame. */
export interface Frame {
  /** Message type code (see `messages.ts`). */
  type: number;
  /** Flags byte (always 0 in version 1). */
  flags: number;
  /** Sequence number; a safe integer. */
  sequence: number;
  /**
   * The payload: a view into the received bytes when it arrived in one chunk (no copy), else a buffer
   * of its own. Valid for as long as the caller keeps it; never reused by the decoder.
   */
  payload: Uint8Array;
}

/** The three pieces of an encoded frame, written to a socket in order without joining them. */
export interface FramePieces {
  header: Buffer;
  /** The caller's payload, untouched. */
  payload: Uint8Array;
  trailer: Buffer;
}

function writeHeader(header: Buffer, type: number, flags: number, length: number, sequence: number): void {
  header.writeUInt32BE(FRAME_MAGIC, OFF_MAGIC);
  header.writeUInt8(type, OFF_TYPE);
  header.writeUInt8(flags, OFF_FLAGS);
  header.writeUInt16BE(0, OFF_RESERVED);
  header.writeUInt32BE(length, OFF_LENGTH);
  header.writeUInt32BE(Math.floor(sequence / TWO_32), OFF_SEQUENCE);
  header.writeUInt32BE(sequence % TWO_32, OFF_SEQUENCE + 4);
}

function seal(trailer: FrameTrailer, header: Uint8Array, payload: Uint8Array): Buffer {
  if (trailer.kind === 'hmac') return createHmac('sha256', trailer.key).update(header).update(payload).digest();
  const out = Buffer.allocUnsafe(CRC_TRAILER_BYTES);
  out.writeUInt32BE(crc32c(payload, crc32c(header)), 0);
  return out;
}

/**
 * Encodes one frame with an explicit sequence number, as one buffer (handshake frames, tests, and
 * hostile peers in tests). The channel's data path uses {@link FrameEncoder} instead.
 */
export function encodeFrame(type: number, sequence: number, payload: Uint8Array, trailer: FrameTrailer, flags = 0): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(header, type, flags, payload.length, sequence);
  return Buffer.concat([header, payload, seal(trailer, header, payload)]);
}

/**
 * Encodes the frames of one direction: numbers them 0, 1, 2, … and seals each with the current trailer
 * mode. The payload is hashed in place and handed back as it is, so sending costs no copy of it.
 */
export class FrameEncoder {
  #trailer: FrameTrailer;
  #sequence = 0;
  #maxPayloadBytes: number;

  constructor(options?: { trailer?: FrameTrailer; maxPayloadBytes?: number }) {
    this.#trailer = options?.trailer ?? CRC32C_TRAILER;
    this.#maxPayloadBytes = options?.maxPayloadBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** Sequence number the next frame will carry. */
  get nextSequence(): number {
    return this.#sequence;
  }

  /** Switches the trailer mode for every later frame (after authentication). */
  setTrailer(trailer: FrameTrailer): void {
    this.#trailer = trailer;
  }

  /** The current trailer mode. */
  get trailer(): FrameTrailer {
    return this.#trailer;
  }

  /** Largest payload {@link encode} accepts. */
  setMaxPayloadBytes(max: number): void {
    this.#maxPayloadBytes = max;
  }

  /**
   * Seals the next frame. Throws `ERR_LOCKSTEP_PROTOCOL_OVERSIZED` for a payload over the maximum
   * (the peer would close the channel on it) without consuming a sequence number.
   */
  encode(type: number, payload: Uint8Array, flags = 0): FramePieces {
    if (payload.length > this.#maxPayloadBytes) {
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_OVERSIZED',
        `cannot send a ${payload.length}-byte payload: the limit is ${this.#maxPayloadBytes} bytes (maxFrameBytes); split it`,
      );
    }
    if (this.#sequence > Number.MAX_SAFE_INTEGER) {
      throw new ProtocolError('ERR_LOCKSTEP_PROTOCOL_SEQUENCE', 'sequence numbers exhausted: open a new channel');
    }
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    writeHeader(header, type, flags, payload.length, this.#sequence);
    this.#sequence++;
    return { header, payload, trailer: seal(this.#trailer, header, payload) };
  }
}

/** What {@link FrameDecoder} checks in a header before it waits for the payload. */
export interface FrameDecoderOptions {
  /** Largest payload length accepted; a header over it fails at once. Default 16 MiB. */
  maxPayloadBytes?: number;
  /** Trailer mode of the first frame. Default CRC32C. */
  trailer?: FrameTrailer;
  /**
   * Judges a header's type code before any payload is read: returns the error to fail with, or
   * undefined to accept. Default: accept every type.
   */
  checkType?: (type: number) => ProtocolError | undefined;
}

/**
 * Incremental frame decoder for one direction. Feed it the byte stream in chunks of any size with
 * {@link push}, then call {@link next} until it returns null. Each byte is copied at most once (header
 * bytes into a 20-byte buffer; a payload that spans chunks into one buffer of its exact size), so any
 * split of the stream costs linear time. A header is judged (magic, flags, type, length against the
 * maximum, sequence) as soon as its 20 bytes are in, before its payload is buffered; the trailer is
 * verified before the frame is returned. After the first error the decoder is dead and throws it again.
 *
 * ```
 *   push(chunk) ──► [ chunk queue ] ──► next(): header (20 B) ─judge─► payload+trailer ─verify─► Frame
 * ```
 */
export class FrameDecoder {
  #chunks: Uint8Array[] = [];
  /** Index of the first chunk not fully consumed. */
  #head = 0;
  /** Consumed bytes of chunks[head]. */
  #offset = 0;
  #buffered = 0;

  #header = Buffer.alloc(HEADER_BYTES);
  #headerFill = 0;
  /** Payload + trailer bytes the current frame still needs, or -1 while reading its header. */
  #bodyNeed = -1;
  #body: Buffer | null = null;
  #bodyFill = 0;
  #type = 0;
  #flags = 0;
  #length = 0;

  #expected = 0;
  #maxPayloadBytes: number;
  #trailer: FrameTrailer;
  #checkType: ((type: number) => ProtocolError | undefined) | undefined;
  #failed: ProtocolError | null = null;

  constructor(options?: FrameDecoderOptions) {
    this.#maxPayloadBytes = options?.maxPayloadBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#trailer = options?.trailer ?? CRC32C_TRAILER;
    this.#checkType = options?.checkType;
  }

  /** Bytes pushed and not yet consumed into a header or payload buffer. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Sequence number the next frame must carry. */
  get expectedSequence(): number {
    return this.#expected;
  }

  /** The error that killed this decoder, if one did. */
  get error(): ProtocolError | null {
    return this.#failed;
  }

  /** Trailer mode for frames whose header has not been read yet (switch between frames only). */
  setTrailer(trailer: FrameTrailer): void {
    this.#trailer = trailer;
  }

  /** The current trailer mode. */
  get trailer(): FrameTrailer {
    return this.#trailer;
  }

  /**
   * Everything pushed that is not part of a frame returned yet (a header or payload already read in
   * part included), as one buffer, and forgets it: another decoder takes over the stream from
   * {@link expectedSequence} on.
   */
  takeUnread(): Uint8Array {
    const parts: Uint8Array[] = [];
    if (this.#bodyNeed >= 0) {
      parts.push(this.#header);
      if (this.#body && this.#bodyFill > 0) parts.push(this.#body.subarray(0, this.#bodyFill));
    } else if (this.#headerFill > 0) {
      parts.push(this.#header.subarray(0, this.#headerFill));
    }
    for (let i = this.#head; i < this.#chunks.length; i++) parts.push(i === this.#head ? this.#chunks[i]!.subarray(this.#offset) : this.#chunks[i]!);
    const out = Buffer.concat(parts);
    this.#chunks = [];
    this.#head = this.#offset = this.#buffered = 0;
    this.#headerFill = 0;
    this.#bodyNeed = -1;
    this.#body = null;
    this.#bodyFill = 0;
    return out;
  }

  /** Payload limit for frames whose header has not been read yet. */
  setMaxPayloadBytes(max: number): void {
    this.#maxPayloadBytes = max;
  }

  /** The payload limit. */
  get maxPayloadBytes(): number {
    return this.#maxPayloadBytes;
  }

  /** Type judge for frames whose header has not been read yet. */
  setCheckType(check: ((type: number) => ProtocolError | undefined) | undefined): void {
    this.#checkType = check;
  }

  /** Queues bytes; nothing is parsed until {@link next}. The chunk is referenced, not copied. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** The next complete, verified frame, or null when more bytes are needed. Throws a ProtocolError. */
  next(): Frame | null {
    if (this.#failed) throw this.#failed;
    try {
      return this.#next();
    } catch (err) {
      this.#failed = err instanceof ProtocolError
        ? err
        : new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `frame decoder failed: ${String(err)}`, { cause: err });
      // Drop whatever is queued: nothing after a bad frame is ever looked at.
      this.#chunks = [];
      this.#head = this.#offset = this.#buffered = 0;
      this.#body = null;
      throw this.#failed;
    }
  }

  #next(): Frame | null {
    if (this.#bodyNeed < 0) {
      this.#headerFill += this.#copy(this.#header, this.#headerFill, HEADER_BYTES - this.#headerFill);
      if (this.#headerFill < HEADER_BYTES) return null;
      this.#judgeHeader();
      this.#bodyNeed = this.#length + trailerBytes(this.#trailer);
    }
    let body: Uint8Array;
    if (this.#bodyFill === 0 && this.#head < this.#chunks.length &&
        this.#chunks[this.#head]!.length - this.#offset >= this.#bodyNeed) {
      // Fast path: payload and trailer sit inside one received chunk; hand out a view of it.
      const chunk = this.#chunks[this.#head]!;
      body = chunk.subarray(this.#offset, this.#offset + this.#bodyNeed);
      this.#advance(this.#bodyNeed);
    } else {
      if (this.#buffered === 0) return null;
      // Allocated on the first payload byte, never on the header alone: a header with a large length
      // and no payload costs nothing.
      this.#body ??= Buffer.allocUnsafe(this.#bodyNeed);
      this.#bodyFill += this.#copy(this.#body, this.#bodyFill, this.#bodyNeed - this.#bodyFill);
      if (this.#bodyFill < this.#bodyNeed) return null;
      body = this.#body;
    }
    const payload = body.subarray(0, this.#length);
    this.#verify(payload, body.subarray(this.#length));
    const frame: Frame = { type: this.#type, flags: this.#flags, sequence: this.#expected, payload };
    this.#expected++;
    this.#headerFill = 0;
    this.#bodyNeed = -1;
    this.#body = null;
    this.#bodyFill = 0;
    return frame;
  }

  #judgeHeader(): void {
    const h = this.#header;
    const magic = h.readUInt32BE(OFF_MAGIC);
    if (magic !== FRAME_MAGIC) {
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_MALFORMED',
        `bad frame magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x${FRAME_MAGIC.toString(16)}, "LKSP") in frame ${this.#expected}: not a lockstep peer, or the stream is out of step`,
      );
    }
    this.#type = h.readUInt8(OFF_TYPE);
    this.#flags = h.readUInt8(OFF_FLAGS);
    const reserved = h.readUInt16BE(OFF_RESERVED);
    this.#length = h.readUInt32BE(OFF_LENGTH);
    const seqHi = h.readUInt32BE(OFF_SEQUENCE);
    const seqLo = h.readUInt32BE(OFF_SEQUENCE + 4);
    if (this.#flags !== 0 || reserved !== 0) {
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_MALFORMED',
        `frame ${this.#expected} (type 0x${this.#type.toString(16)}) has flags 0x${this.#flags.toString(16)} and reserved 0x${reserved.toString(16)}; version 1 defines neither`,
      );
    }
    const typeError = this.#checkType?.(this.#type);
    if (typeError) throw typeError;
    if (this.#length > this.#maxPayloadBytes) {
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_OVERSIZED',
        `frame ${this.#expected} (type 0x${this.#type.toString(16)}) announces a ${this.#length}-byte payload, over the limit of ${this.#maxPayloadBytes} bytes; closed before reading it`,
      );
    }
    const expectedHi = Math.floor(this.#expected / TWO_32);
    const expectedLo = this.#expected % TWO_32;
    if (seqHi !== expectedHi || seqLo !== expectedLo) {
      const got = (BigInt(seqHi) << 32n) | BigInt(seqLo);
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_SEQUENCE',
        `frame sequence ${got} where ${this.#expected} was expected: a replayed, dropped or reordered frame`,
      );
    }
  }

  #verify(payload: Uint8Array, trailer: Uint8Array): void {
    if (this.#trailer.kind === 'crc32c') {
      const want = crc32c(payload, crc32c(this.#header));
      const got = ((trailer[0]! << 24) | (trailer[1]! << 16) | (trailer[2]! << 8) | trailer[3]!) >>> 0;
      if (got !== want) {
        throw new ProtocolError(
          'ERR_LOCKSTEP_PROTOCOL_MALFORMED',
          `frame ${this.#expected} (type 0x${this.#type.toString(16)}) fails its CRC32C (0x${got.toString(16)}, computed 0x${want.toString(16)}): corrupted in transit`,
        );
      }
      return;
    }
    const mac = createHmac('sha256', this.#trailer.key).update(this.#header).update(payload).digest();
    if (!timingSafeEqual(mac, trailer)) {
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_AUTH',
        `frame ${this.#expected} (type 0x${this.#type.toString(16)}, ${this.#length} bytes) fails its HMAC: forged, corrupted, or sealed with another session's key`,
      );
    }
  }

  /** Moves up to `n` queued bytes into `dst` at `at`; returns how many it moved. */
  #copy(dst: Uint8Array, at: number, n: number): number {
    let moved = 0;
    while (moved < n && this.#head < this.#chunks.length) {
      const chunk = this.#chunks[this.#head]!;
      const take = Math.min(n - moved, chunk.length - this.#offset);
      dst.set(chunk.subarray(this.#offset, this.#offset + take), at + moved);
      moved += take;
      this.#advance(take);
    }
    return moved;
  }

  #advance(n: number): void {
    this.#offset += n;
    this.#buffered -= n;
    if (this.#offset === this.#chunks[this.#head]!.length) {
      this.#chunks[this.#head] = EMPTY; // release the chunk for GC as soon as it is consumed
      this.#head++;
      this.#offset = 0;
      if (this.#head === this.#chunks.length) {
        this.#chunks.length = 0;
        this.#head = 0;
      } else if (this.#head >= 64 && this.#head * 2 >= this.#chunks.length) {
        // Amortized O(1) per chunk: the consumed prefix is dropped only once it is at least half the queue.
        this.#chunks.splice(0, this.#head);
        this.#head = 0;
      }
    }
  }
}

const EMPTY = new Uint8Array(0);
