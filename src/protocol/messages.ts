// The logging channel's message table: type codes, payload layouts, and a strict encoder and decoder per
// message. Pure functions over bytes: no sockets, no keys. Decoders accept exactly one encoding of each
// value and throw ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED') on anything else.
import { ProtocolError } from './errors.js';

/*
 * Message table (type code = the frame header's type byte). Integers are big-endian.
 *
 *   code  message       payload                                                      size
 *   ----  ------------  -----------------------------------------------------------  ---------------
 *   0x01  HELLO         u16 minVersion, u16 maxVersion, u8 role, u8 vmIdLength,      46 + vmIdLength
 *                       f64 epoch, 32 B nonce, vmId (UTF-8)            [handshake; layout frozen]
 *   0x02  AUTH          32 B proof                                     [handshake]   32
 *   0x10  LOG           log batches, opaque (never parsed here)                      ≥ 1
 *   0x11  ACK           u64 lsn, u64 instret, u64 bytes                              24
 *   0x12  HEARTBEAT     f64 sentAtMs, u64 instret, u64 releasedLsn                   24
 *   0x13  RELEASE       u64 lsn                                                      8
 *   0x20  CLONE_BEGIN   JSON object (UTF-8)                                          2 … 64 KiB
 *   0x21  CLONE_PAGES   u32 pageSize, u32 count, count × (u32 index, pageSize B)     8 + count·(4+pageSize)
 *   0x22  CLONE_FINAL   u32 metaLength, meta JSON object, state (opaque, the rest)   ≥ 6
 *   0x23  CLONE_DONE    (empty)                                                      0
 *   0x24  CLONE_DISK    u64 offset (a multiple of 512), data (a multiple of 512 B)   8 + 512 … 8 + 1 MiB
 *   0x30  CONTROL       JSON object with a string "op" and no "type"                ≤ 64 KiB
 *   0x31  GO_LIVE       u64 epoch, reason (UTF-8, the rest)                          8 … 8 + 1 KiB
 *   0x3F  BYE           reason (UTF-8)                                               0 … 1 KiB
 */

/** Type codes of every message (the frame header's type byte). */
export const MessageType = Object.freeze({
  HELLO: 0x01,
  AUTH: 0x02,
  LOG: 0x10,
  ACK: 0x11,
  HEARTBEAT: 0x12,
  RELEASE: 0x13,
  CLONE_BEGIN: 0x20,
  CLONE_PAGES: 0x21,
  CLONE_FINAL: 0x22,
  CLONE_DONE: 0x23,
  CLONE_DISK: 0x24,
  CONTROL: 0x30,
  GO_LIVE: 0x31,
  BYE: 0x3f,
} as const);

/** Largest CLONE_DISK data. */
export const MAX_DISK_CHUNK = 1 << 20;

/** Size of a HELLO nonce. */
export const NONCE_BYTES = 32;
/** Size of an AUTH proof (HMAC-SHA-256). */
export const PROOF_BYTES = 32;
/** Longest VM id, in UTF-8 bytes. */
export const MAX_VM_ID_BYTES = 255;
/** Longest JSON body of CLONE_BEGIN, CONTROL and CLONE_FINAL's meta, in UTF-8 bytes. */
export const MAX_JSON_BYTES = 64 << 10;
/** Longest reason of GO_LIVE and BYE, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 1024;
/** Largest CLONE_PAGES page size (a power of two). */
export const MAX_PAGE_SIZE = 64 << 10;
/** Fixed part of a HELLO payload (everything but the VM id). */
export const HELLO_FIXED_BYTES = 46;

const U64_MAX = (1n << 64n) - 1n;

/** A JSON object as carried by CLONE_BEGIN, CLONE_FINAL and CONTROL. */
export type JsonObject = { [key: string]: unknown };

/** A CONTROL message: `op` plus application-defined JSON fields. */
export type ControlMessage = { type: 'control'; op: string; [key: string]: unknown };

/** Which end of the lockstep pair a side is. */
export type Role = 'primary' | 'secondary';

/** One guest page in a CLONE_PAGES message. */
export interface ClonePage {
  /** Page number (address / pageSize). */
  index: number;
  /** Exactly pageSize bytes. */
  data: Uint8Array;
}

/**
 * Every application message of the channel, discriminated by `type`. Handshake messages (HELLO, AUTH)
 * are not in it: they never leave the channel.
 */
export type Message =
  /** Log batches, concatenated, as the native ring produced them. Never parsed by the channel. */
  | { type: 'log'; batches: Uint8Array }
  /** The receiver's progress: highest batch lsn received, its replay position, log bytes received. */
  | { type: 'ack'; lsn: bigint; instret: bigint; bytes: bigint }
  /** Liveness, with the sender's monotonic clock (ms), its instret, and the highest released lsn. */
  | { type: 'heartbeat'; sentAtMs: number; instret: bigint; releasedLsn: bigint }
  /** The primary has released outputs through `lsn`. */
  | { type: 'release'; lsn: bigint }
  /** Start of a clone: application-defined metadata. */
  | { type: 'clone-begin'; meta: JsonObject }
  /** A round of pre-copied pages; indices strictly increasing. */
  | { type: 'clone-pages'; pageSize: number; pages: ClonePage[] }
  /** The stop-and-copy state (opaque snapshot) and metadata. */
  | { type: 'clone-final'; state: Uint8Array; meta: JsonObject }
  /** The clone is complete. */
  | { type: 'clone-done' }
  /** Disk pre-copy (separate disks): `data` belongs at byte `offset` of the receiver's image. */
  | { type: 'clone-disk'; offset: bigint; data: Uint8Array }
  /**
   * An application-defined control operation: `op` and any other JSON fields, flat beside `type`
   * (`{ type: 'control', op: 'hello', listen: '10.0.0.2:7000' }`). A field named `type` cannot be sent.
   */
  | ControlMessage
  /** The sender has gone live at `epoch`. */
  | { type: 'go-live'; epoch: bigint; reason: string }
  /** The sender is closing the channel. */
  | { type: 'bye'; reason: string };

/** The `type` strings of {@link Message}. */
export type MessageName = Message['type'];

/** Contents of a HELLO (handshake, internal to the channel). */
export interface Hello {
  role: Role;
  vmId: string;
  minVersion: number;
  maxVersion: number;
  /** Free-form number the application passes (the arbiter epoch, typically); any finite value. */
  epoch: number;
  /** Fresh random bytes, NONCE_BYTES long. */
  nonce: Uint8Array;
}

const utf8 = new TextEncoder();
// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a BOM stays in the text (and then fails
// JSON.parse), so no two byte strings decode to the same value.
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(message: string): ProtocolError {
  return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', message);
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

function expectLength(name: string, payload: Uint8Array, want: number): void {
  if (payload.length !== want) throw malformed(`${name} payload is ${payload.length} bytes; it must be exactly ${want}`);
}

function checkU64(name: string, field: string, value: unknown): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw malformed(`cannot encode ${name}: ${field} must be a bigint in [0, 2^64), got ${typeof value === 'bigint' ? value : typeof value}`);
  }
  return value;
}

function decodeText(name: string, field: string, bytes: Uint8Array): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw malformed(`${name} ${field} is not valid UTF-8`);
  }
}

function encodeReason(name: string, reason: unknown): Uint8Array {
  if (typeof reason !== 'string') throw malformed(`cannot encode ${name}: reason must be a string`);
  const bytes = utf8.encode(reason);
  if (bytes.length > MAX_REASON_BYTES) {
    throw malformed(`cannot encode ${name}: reason is ${bytes.length} UTF-8 bytes, over ${MAX_REASON_BYTES}`);
  }
  return bytes;
}

function decodeReason(name: string, bytes: Uint8Array): string {
  if (bytes.length > MAX_REASON_BYTES) throw malformed(`${name} reason is ${bytes.length} bytes, over ${MAX_REASON_BYTES}`);
  return decodeText(name, 'reason', bytes);
}

function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function encodeJson(name: string, value: unknown): Uint8Array {
  if (!isPlainObject(value)) throw malformed(`cannot encode ${name}: the body must be a JSON object`);
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `cannot encode ${name}: ${(err as Error).message}`, { cause: err });
  }
  const bytes = utf8.encode(text);
  if (bytes.length > MAX_JSON_BYTES) {
    throw malformed(`cannot encode ${name}: the JSON body is ${bytes.length} bytes, over ${MAX_JSON_BYTES}`);
  }
  return bytes;
}

function decodeJson(name: string, bytes: Uint8Array): JsonObject {
  if (bytes.length > MAX_JSON_BYTES) throw malformed(`${name} JSON body is ${bytes.length} bytes, over ${MAX_JSON_BYTES}`);
  const text = decodeText(name, 'JSON body', bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw malformed(`${name} body is not valid JSON`);
  }
  if (!isPlainObject(value)) throw malformed(`${name} body is JSON but not an object`);
  return value;
}

// ---- handshake -------------------------------------------------------------------------------------

/** Encodes a HELLO payload. Throws ProtocolError (MALFORMED) on a field out of range. */
export function encodeHello(hello: Hello): Uint8Array {
  const vmId = typeof hello.vmId === 'string' ? utf8.encode(hello.vmId) : null;
  if (!vmId || !validVmId(hello.vmId)) {
    throw malformed(`cannot encode HELLO: vmId must be 1–${MAX_VM_ID_BYTES} UTF-8 bytes without control characters`);
  }
  if (!Number.isInteger(hello.minVersion) || !Number.isInteger(hello.maxVersion) ||
      hello.minVersion < 1 || hello.maxVersion > 0xffff || hello.minVersion > hello.maxVersion) {
    throw malformed(`cannot encode HELLO: version range ${hello.minVersion}..${hello.maxVersion} is not 1 ≤ min ≤ max ≤ 65535`);
  }
  if (hello.role !== 'primary' && hello.role !== 'secondary') throw malformed(`cannot encode HELLO: role ${String(hello.role)}`);
  if (typeof hello.epoch !== 'number' || !Number.isFinite(hello.epoch)) throw malformed('cannot encode HELLO: epoch must be a finite number');
  if (!(hello.nonce instanceof Uint8Array) || hello.nonce.length !== NONCE_BYTES) {
    throw malformed(`cannot encode HELLO: nonce must be ${NONCE_BYTES} bytes`);
  }
  const out = Buffer.allocUnsafe(HELLO_FIXED_BYTES + vmId.length);
  out.writeUInt16BE(hello.minVersion, 0);
  out.writeUInt16BE(hello.maxVersion, 2);
  out.writeUInt8(hello.role === 'primary' ? 1 : 2, 4);
  out.writeUInt8(vmId.length, 5);
  out.writeDoubleBE(hello.epoch, 6);
  out.set(hello.nonce, 14);
  out.set(vmId, HELLO_FIXED_BYTES);
  return out;
}

/** Decodes a HELLO payload strictly. */
export function decodeHello(payload: Uint8Array): Hello {
  if (payload.length < HELLO_FIXED_BYTES + 1) throw malformed(`HELLO payload is ${payload.length} bytes, shorter than ${HELLO_FIXED_BYTES + 1}`);
  const b = view(payload);
  const minVersion = b.readUInt16BE(0);
  const maxVersion = b.readUInt16BE(2);
  const roleCode = b.readUInt8(4);
  const vmIdLength = b.readUInt8(5);
  const epoch = b.readDoubleBE(6);
  expectLength('HELLO', payload, HELLO_FIXED_BYTES + vmIdLength);
  if (minVersion < 1 || minVersion > maxVersion) throw malformed(`HELLO version range ${minVersion}..${maxVersion} is empty or starts at 0`);
  if (roleCode !== 1 && roleCode !== 2) throw malformed(`HELLO role ${roleCode} is neither 1 (primary) nor 2 (secondary)`);
  if (!Number.isFinite(epoch)) throw malformed('HELLO epoch is not a finite number');
  const vmId = decodeText('HELLO', 'vmId', payload.subarray(HELLO_FIXED_BYTES));
  if (!validVmId(vmId)) throw malformed('HELLO vmId is empty or contains control characters');
  return {
    role: roleCode === 1 ? 'primary' : 'secondary',
    vmId,
    minVersion,
    maxVersion,
    epoch,
    nonce: payload.subarray(14, 14 + NONCE_BYTES),
  };
}

/** True for a VM id the HELLO can carry: 1–255 UTF-8 bytes, no control characters. */
export function validVmId(vmId: string): boolean {
  if (typeof vmId !== 'string' || vmId.length === 0) return false;
  if (/[\u0000-\u001f\u007f-\u009f]/.test(vmId)) return false;
  const bytes = utf8.encode(vmId);
  // A lone surrogate encodes as U+FFFD and would not survive the round trip.
  return bytes.length <= MAX_VM_ID_BYTES && utf8Strict.decode(bytes) === vmId;
}

/** Encodes an AUTH payload (the proof itself). */
export function encodeAuth(proof: Uint8Array): Uint8Array {
  if (!(proof instanceof Uint8Array) || proof.length !== PROOF_BYTES) throw malformed(`cannot encode AUTH: proof must be ${PROOF_BYTES} bytes`);
  return proof;
}

/** Decodes an AUTH payload strictly. */
export function decodeAuth(payload: Uint8Array): Uint8Array {
  expectLength('AUTH', payload, PROOF_BYTES);
  return payload;
}

// ---- application messages --------------------------------------------------------------------------

interface Codec<M extends Message> {
  code: number;
  wire: string;
  encode(m: M): Uint8Array;
  decode(payload: Uint8Array): M;
}

type CodecTable = { [K in MessageName]: Codec<Extract<Message, { type: K }>> };

function u64Triple(name: string, a: [string, unknown], b: [string, unknown], c: [string, unknown]): Buffer {
  const out = Buffer.allocUnsafe(24);
  out.writeBigUInt64BE(checkU64(name, a[0], a[1]), 0);
  out.writeBigUInt64BE(checkU64(name, b[0], b[1]), 8);
  out.writeBigUInt64BE(checkU64(name, c[0], c[1]), 16);
  return out;
}

const CODECS: CodecTable = {
  log: {
    code: MessageType.LOG,
    wire: 'LOG',
    encode(m) {
      if (!(m.batches instanceof Uint8Array) || m.batches.length === 0) throw malformed('cannot encode LOG: batches must be a non-empty Uint8Array');
      return m.batches;
    },
    decode(payload) {
      if (payload.length === 0) throw malformed('LOG payload is empty; a LOG frame carries at least one batch');
      return { type: 'log', batches: payload };
    },
  },
  ack: {
    code: MessageType.ACK,
    wire: 'ACK',
    encode: (m) => u64Triple('ACK', ['lsn', m.lsn], ['instret', m.instret], ['bytes', m.bytes]),
    decode(payload) {
      expectLength('ACK', payload, 24);
      const b = view(payload);
      return { type: 'ack', lsn: b.readBigUInt64BE(0), instret: b.readBigUInt64BE(8), bytes: b.readBigUInt64BE(16) };
    },
  },
  heartbeat: {
    code: MessageType.HEARTBEAT,
    wire: 'HEARTBEAT',
    encode(m) {
      if (typeof m.sentAtMs !== 'number' || !Number.isFinite(m.sentAtMs) || m.sentAtMs < 0) {
        throw malformed('cannot encode HEARTBEAT: sentAtMs must be a finite number ≥ 0');
      }
      const out = u64Triple('HEARTBEAT', ['sentAtMs', 0n], ['instret', m.instret], ['releasedLsn', m.releasedLsn]);
      out.writeDoubleBE(m.sentAtMs, 0);
      return out;
    },
    decode(payload) {
      expectLength('HEARTBEAT', payload, 24);
      const b = view(payload);
      const sentAtMs = b.readDoubleBE(0);
      // -0 is excluded too: it is a second encoding of 0.
      if (!Number.isFinite(sentAtMs) || sentAtMs < 0 || Object.is(sentAtMs, -0)) {
        throw malformed(`HEARTBEAT sentAtMs ${sentAtMs} is not a finite number ≥ 0`);
      }
      return { type: 'heartbeat', sentAtMs, instret: b.readBigUInt64BE(8), releasedLsn: b.readBigUInt64BE(16) };
    },
  },
  release: {
    code: MessageType.RELEASE,
    wire: 'RELEASE',
    encode(m) {
      const out = Buffer.allocUnsafe(8);
      out.writeBigUInt64BE(checkU64('RELEASE', 'lsn', m.lsn), 0);
      return out;
    },
    decode(payload) {
      expectLength('RELEASE', payload, 8);
      return { type: 'release', lsn: view(payload).readBigUInt64BE(0) };
    },
  },
  'clone-begin': {
    code: MessageType.CLONE_BEGIN,
    wire: 'CLONE_BEGIN',
    encode: (m) => encodeJson('CLONE_BEGIN', m.meta),
    decode: (payload) => ({ type: 'clone-begin', meta: decodeJson('CLONE_BEGIN', payload) }),
  },
  'clone-pages': {
    code: MessageType.CLONE_PAGES,
    wire: 'CLONE_PAGES',
    encode(m) {
      const { pageSize, pages } = m;
      if (!isPageSize(pageSize)) throw malformed(`cannot encode CLONE_PAGES: pageSize ${pageSize} is not a power of two ≤ ${MAX_PAGE_SIZE}`);
      if (!Array.isArray(pages)) throw malformed('cannot encode CLONE_PAGES: pages must be an array');
      const out = Buffer.allocUnsafe(8 + pages.length * (4 + pageSize));
      out.writeUInt32BE(pageSize, 0);
      out.writeUInt32BE(pages.length, 4);
      let at = 8;
      let last = -1;
      for (let i = 0; i < pages.length; i++) {
        const p = pages[i]!;
        if (!Number.isInteger(p.index) || p.index < 0 || p.index > 0xffffffff || p.index <= last) {
          throw malformed(`cannot encode CLONE_PAGES: page ${i} index ${p.index} is not a u32 above the previous index ${last} (indices must strictly increase)`);
        }
        if (!(p.data instanceof Uint8Array) || p.data.length !== pageSize) {
          throw malformed(`cannot encode CLONE_PAGES: page ${p.index} has ${p.data?.length} bytes, not pageSize ${pageSize}`);
        }
        last = p.index;
        out.writeUInt32BE(p.index, at);
        out.set(p.data, at + 4);
        at += 4 + pageSize;
      }
      return out;
    },
    decode(payload) {
      if (payload.length < 8) throw malformed(`CLONE_PAGES payload is ${payload.length} bytes, shorter than its 8-byte header`);
      const b = view(payload);
      const pageSize = b.readUInt32BE(0);
      const count = b.readUInt32BE(4);
      if (!isPageSize(pageSize)) throw malformed(`CLONE_PAGES pageSize ${pageSize} is not a power of two ≤ ${MAX_PAGE_SIZE}`);
      expectLength('CLONE_PAGES', payload, 8 + count * (4 + pageSize));
      const pages: ClonePage[] = new Array(count);
      let at = 8;
      let last = -1;
      for (let i = 0; i < count; i++) {
        const index = b.readUInt32BE(at);
        if (index <= last) throw malformed(`CLONE_PAGES page ${i} index ${index} does not increase on ${last}`);
        last = index;
        pages[i] = { index, data: payload.subarray(at + 4, at + 4 + pageSize) };
        at += 4 + pageSize;
      }
      return { type: 'clone-pages', pageSize, pages };
    },
  },
  'clone-final': {
    code: MessageType.CLONE_FINAL,
    wire: 'CLONE_FINAL',
    encode(m) {
      if (!(m.state instanceof Uint8Array)) throw malformed('cannot encode CLONE_FINAL: state must be a Uint8Array');
      const meta = encodeJson('CLONE_FINAL', m.meta);
      const out = Buffer.allocUnsafe(4 + meta.length + m.state.length);
      out.writeUInt32BE(meta.length, 0);
      out.set(meta, 4);
      out.set(m.state, 4 + meta.length);
      return out;
    },
    decode(payload) {
      if (payload.length < 4) throw malformed(`CLONE_FINAL payload is ${payload.length} bytes, shorter than its 4-byte header`);
      const metaLength = view(payload).readUInt32BE(0);
      if (metaLength > MAX_JSON_BYTES || 4 + metaLength > payload.length) {
        throw malformed(`CLONE_FINAL meta length ${metaLength} does not fit the ${payload.length}-byte payload (or is over ${MAX_JSON_BYTES})`);
      }
      const meta = decodeJson('CLONE_FINAL', payload.subarray(4, 4 + metaLength));
      return { type: 'clone-final', state: payload.subarray(4 + metaLength), meta };
    },
  },
  'clone-done': {
    code: MessageType.CLONE_DONE,
    wire: 'CLONE_DONE',
    encode: () => EMPTY,
    decode(payload) {
      expectLength('CLONE_DONE', payload, 0);
      return { type: 'clone-done' };
    },
  },
  'clone-disk': {
    code: MessageType.CLONE_DISK,
    wire: 'CLONE_DISK',
    encode(m) {
      const offset = checkU64('CLONE_DISK', 'offset', m.offset);
      if (offset % 512n !== 0n) throw malformed(`cannot encode CLONE_DISK: offset ${offset} is not a multiple of 512`);
      if (!(m.data instanceof Uint8Array) || m.data.length === 0 || m.data.length % 512 !== 0 || m.data.length > MAX_DISK_CHUNK) {
        throw malformed(`cannot encode CLONE_DISK: ${m.data?.length} bytes of data, not a multiple of 512 from 512 to ${MAX_DISK_CHUNK}`);
      }
      const out = Buffer.allocUnsafe(8 + m.data.length);
      out.writeBigUInt64BE(offset, 0);
      out.set(m.data, 8);
      return out;
    },
    decode(payload) {
      const n = payload.length - 8;
      if (n < 512 || n % 512 !== 0 || n > MAX_DISK_CHUNK) throw malformed(`CLONE_DISK carries ${n} bytes of data, not a multiple of 512 from 512 to ${MAX_DISK_CHUNK}`);
      const offset = view(payload).readBigUInt64BE(0);
      if (offset % 512n !== 0n) throw malformed(`CLONE_DISK offset ${offset} is not a multiple of 512`);
      return { type: 'clone-disk', offset, data: payload.subarray(8) };
    },
  },
  control: {
    code: MessageType.CONTROL,
    wire: 'CONTROL',
    encode(m) {
      if (typeof m.op !== 'string') throw malformed('cannot encode CONTROL: op must be a string');
      const { type: _type, ...body } = m;
      return encodeJson('CONTROL', body);
    },
    decode(payload) {
      const body = decodeJson('CONTROL', payload);
      if (typeof body.op !== 'string') throw malformed('CONTROL body has no string "op"');
      if (Object.prototype.hasOwnProperty.call(body, 'type')) throw malformed('CONTROL body has a "type" field, which would shadow the message type');
      return { ...body, type: 'control', op: body.op };
    },
  },
  'go-live': {
    code: MessageType.GO_LIVE,
    wire: 'GO_LIVE',
    encode(m) {
      const reason = encodeReason('GO_LIVE', m.reason);
      const out = Buffer.allocUnsafe(8 + reason.length);
      out.writeBigUInt64BE(checkU64('GO_LIVE', 'epoch', m.epoch), 0);
      out.set(reason, 8);
      return out;
    },
    decode(payload) {
      if (payload.length < 8) throw malformed(`GO_LIVE payload is ${payload.length} bytes, shorter than 8`);
      return { type: 'go-live', epoch: view(payload).readBigUInt64BE(0), reason: decodeReason('GO_LIVE', payload.subarray(8)) };
    },
  },
  bye: {
    code: MessageType.BYE,
    wire: 'BYE',
    encode: (m) => encodeReason('BYE', m.reason),
    decode: (payload) => ({ type: 'bye', reason: decodeReason('BYE', payload) }),
  },
};

const EMPTY = new Uint8Array(0);

function isPageSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_PAGE_SIZE && (n & (n - 1)) === 0;
}

const BY_CODE = new Map<number, Codec<Message>>(
  Object.values(CODECS).map((c) => [c.code, c as unknown as Codec<Message>]),
);

/** Wire names by type code, handshake included: `0x11 → 'ACK'`. */
export const MESSAGE_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [MessageType.HELLO, 'HELLO'],
  [MessageType.AUTH, 'AUTH'],
  ...Object.values(CODECS).map((c) => [c.code, c.wire] as [number, string]),
]);

/** True when `code` is the type code of an application message (not HELLO or AUTH). */
export function isApplicationType(code: number): boolean {
  return BY_CODE.has(code);
}

/** The type code of a message. */
export function messageTypeCode(message: Message): number {
  const codec = CODECS[message.type] as Codec<Message> | undefined;
  if (!codec) throw malformed(`cannot encode: unknown message type ${JSON.stringify((message as { type: unknown }).type)}`);
  return codec.code;
}

/**
 * Encodes a message's payload; returns its type code and payload. The LOG payload is the caller's
 * `batches` itself (no copy). Throws ProtocolError (MALFORMED) when a field is out of range.
 */
export function encodeMessage(message: Message): { code: number; payload: Uint8Array } {
  const codec = CODECS[message?.type] as Codec<Message> | undefined;
  if (!codec) throw malformed(`cannot encode: unknown message type ${JSON.stringify((message as { type: unknown } | null)?.type)}`);
  return { code: codec.code, payload: codec.encode(message) };
}

/**
 * Decodes an application message strictly. Views into `payload` are returned where a field is bytes
 * (LOG batches, page data, CLONE_FINAL state): no copy. Throws ProtocolError (MALFORMED).
 */
export function decodeMessage(code: number, payload: Uint8Array): Message {
  const codec = BY_CODE.get(code);
  if (!codec) throw malformed(`unknown message type 0x${code.toString(16)}`);
  return codec.decode(payload);
}
