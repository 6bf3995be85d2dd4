// Memcached ASCII protocol over UDP: the 8-byte frame header, request encoding and strict reply
// parsing. Pure functions over bytes: no sockets, no timers, never throws on server input.

/**
 * The memcached UDP frame header, in front of every request and reply datagram:
 *
 * ```
 *  0        2        4        6        8
 *  +--------+--------+--------+--------+---------------------------------
 *  | req id | seq no | total  | rsvd   | ASCII command or reply bytes …
 *  +--------+--------+--------+--------+---------------------------------
 *  every field u16 big-endian; a request is always seq 0 of total 1; a reply
 *  of `total` datagrams numbers them 0 … total-1 and repeats the request id
 * ```
 *
 * The reserved field is 0 for memcached (which ignores it in requests and sends 0). kvserver reads
 * it as the exactly-once mark:
 *
 * ```
 *  rsvd = 1 | id bits 30..16  (15 bits)      request id 31 bits = rsvd & 0x7fff : req id
 * ```
 *
 * A marked request promises kvserver that its 31-bit id is never reused from the same source address
 * and port within {@link REPLY_CACHE_WINDOW_MS}, and that it is retried only within
 * {@link MAX_RETRY_WINDOW_MS} of its first send; kvserver then answers a retry from its reply cache
 * instead of applying it again, and echoes the field in its reply.
 */
export const UDP_HEADER_SIZE = 8;
/** Byte offsets of the header fields. */
export const HEADER_REQUEST_ID = 0;
export const HEADER_SEQUENCE = 2;
export const HEADER_TOTAL = 4;
export const HEADER_RESERVED = 6;
/** Largest request datagram this client sends (header included): one Ethernet frame with room to spare. */
export const MAX_DATAGRAM_SIZE = 1400;
/** memcached's limit on key length, in bytes. */
export const MAX_KEY_LENGTH = 250;
/** The port memcached listens on by default. */
export const MEMCACHED_PORT = 11211;
/** Most datagrams one reply may span before the client calls it malformed. */
export const MAX_REPLY_DATAGRAMS = 64;
/** The exactly-once mark in the reserved header field (see the header diagram). */
export const EXACTLY_ONCE_MARK = 0x8000;
/** How long kvserver keeps the reply of a marked write, on its own clock. */
export const REPLY_CACHE_WINDOW_MS = 20_000;
/** The longest a marked request may be retried after its first send: half the cache's window. */
export const MAX_RETRY_WINDOW_MS = REPLY_CACHE_WINDOW_MS / 2;

const CRLF = Buffer.from('\r\n');
const MAX_U32 = 0xffff_ffff;
const MAX_U64 = (1n << 64n) - 1n;

/** A decoded frame header. */
export interface FrameHeader {
  requestId: number;
  sequence: number;
  total: number;
  reserved: number;
}

/** One datagram: the header followed by `body`. */
export function encodeFrame(requestId: number, body: Uint8Array, sequence = 0, total = 1, reserved = 0): Buffer {
  const frame = Buffer.allocUnsafe(UDP_HEADER_SIZE + body.length);
  frame.writeUInt16BE(requestId, HEADER_REQUEST_ID);
  frame.writeUInt16BE(sequence, HEADER_SEQUENCE);
  frame.writeUInt16BE(total, HEADER_TOTAL);
  frame.writeUInt16BE(reserved, HEADER_RESERVED);
  frame.set(body, UDP_HEADER_SIZE);
  return frame;
}

/** The header of `datagram`, or `undefined` when it is too short to hold one. */
export function decodeFrameHeader(datagram: Uint8Array): FrameHeader | undefined {
  if (datagram.length < UDP_HEADER_SIZE) return undefined;
  const view = new DataView(datagram.buffer, datagram.byteOffset, UDP_HEADER_SIZE);
  return {
    requestId: view.getUint16(HEADER_REQUEST_ID),
    sequence: view.getUint16(HEADER_SEQUENCE),
    total: view.getUint16(HEADER_TOTAL),
    reserved: view.getUint16(HEADER_RESERVED),
  };
}

/** Why a key is not acceptable, or `undefined` when it is. */
export function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string') return `must be a string, got ${typeof key}`;
  if (key.length === 0) return 'must not be empty';
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_LENGTH) return `is ${bytes} bytes long; memcached allows at most ${MAX_KEY_LENGTH}`;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    // Space and control characters would split or end the command line.
    if (c <= 0x20 || c === 0x7f) {
      return `contains ${c === 0x20 ? 'a space' : `control character 0x${c.toString(16).padStart(2, '0')}`} at index ${i}; keys must not contain spaces or control characters`;
    }
  }
  return undefined;
}

/** What a reply must look like for the request that was sent. */
export type ReplyExpectation =
  | { kind: 'values'; keys: readonly string[]; cas: boolean }
  | { kind: 'storage' }
  | { kind: 'delete' }
  | { kind: 'arith' }
  | { kind: 'version' }
  | { kind: 'stats' };

/** A value as the server sent it. */
export interface RawItem {
  key: string;
  flags: number;
  value: Buffer;
  /** Present for `gets`. */
  cas: bigint | undefined;
}

/** A reply that is valid protocol for its request. */
export type Reply =
  | { kind: 'values'; items: RawItem[] }
  | { kind: 'status'; status: 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' }
  | { kind: 'number'; value: bigint }
  | { kind: 'version'; version: string }
  | { kind: 'stats'; stats: Map<string, string> }
  | { kind: 'error'; type: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR'; message: string; line: string };

/** The outcome of parsing: a reply, or why the bytes are not a valid reply to the request. */
export type ParseResult = { ok: true; reply: Reply } | { ok: false; problem: string };

const STORAGE_STATUSES = new Set(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND']);
const DELETE_STATUSES = new Set(['DELETED', 'NOT_FOUND']);
const DECIMAL = /^[0-9]+$/;

function fail(problem: string): ParseResult {
  return { ok: false, problem };
}

/** Shows at most 60 bytes of a line, escaped, for messages. */
function show(line: string): string {
  const cut = line.length > 60 ? `${line.slice(0, 60)}…` : line;
  return JSON.stringify(cut);
}

function parseDecimal(text: string, max: bigint): bigint | undefined {
  if (!DECIMAL.test(text) || text.length > 20) return undefined;
  const n = BigInt(text);
  return n <= max ? n : undefined;
}

/**
 * Parses a whole reply body (the bytes after the frame header, reassembled when the reply spans
 * several datagrams) against what the request expects. Strict: every byte must be accounted for.
 */
export function parseReply(expect: ReplyExpectation, body: Buffer): ParseResult {
  const firstEnd = body.indexOf(CRLF);
  if (firstEnd < 0) return fail(`reply ${show(body.toString('latin1'))} does not end its first line with \\r\\n`);
  const first = body.toString('utf8', 0, firstEnd);

  // Error lines are valid protocol for every request; they are the whole reply.
  if (first === 'ERROR' || first.startsWith('CLIENT_ERROR') || first.startsWith('SERVER_ERROR')) {
    if (firstEnd + 2 !== body.length) return fail(`${body.length - firstEnd - 2} stray bytes after ${show(first)}`);
    const space = first.indexOf(' ');
    const type = (space < 0 ? first : first.slice(0, space)) as 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR';
    if (type !== 'ERROR' && type !== 'CLIENT_ERROR' && type !== 'SERVER_ERROR') {
      return fail(`unknown reply line ${show(first)}`);
    }
    return { ok: true, reply: { kind: 'error', type, message: space < 0 ? '' : first.slice(space + 1), line: first } };
  }

  switch (expect.kind) {
    case 'storage':
    case 'delete': {
      const allowed = expect.kind === 'storage' ? STORAGE_STATUSES : DELETE_STATUSES;
      if (!allowed.has(first)) return fail(`${show(first)} is not a reply to a ${expect.kind === 'storage' ? 'storage' : 'delete'} command`);
      if (firstEnd + 2 !== body.length) return fail(`${body.length - firstEnd - 2} stray bytes after ${show(first)}`);
      return { ok: true, reply: { kind: 'status', status: first as 'STORED' } };
    }
    case 'arith': {
      if (firstEnd + 2 !== body.length) return fail(`${body.length - firstEnd - 2} stray bytes after ${show(first)}`);
      if (first === 'NOT_FOUND') return { ok: true, reply: { kind: 'status', status: 'NOT_FOUND' } };
      const value = parseDecimal(first, MAX_U64);
      if (value === undefined) return fail(`${show(first)} is not an unsigned 64-bit number or NOT_FOUND`);
      return { ok: true, reply: { kind: 'number', value } };
    }
    case 'version': {
      if (firstEnd + 2 !== body.length) return fail(`${body.length - firstEnd - 2} stray bytes after ${show(first)}`);
      if (!first.startsWith('VERSION ') || first.length === 'VERSION '.length) return fail(`${show(first)} is not a VERSION line`);
      return { ok: true, reply: { kind: 'version', version: first.slice('VERSION '.length) } };
    }
    case 'stats':
      return parseStats(body);
    case 'values':
      return parseValues(expect, body);
  }
}

function parseStats(body: Buffer): ParseResult {
  const stats = new Map<string, string>();
  let pos = 0;
  for (;;) {
    const end = body.indexOf(CRLF, pos);
    if (end < 0) return fail(`stats reply is truncated after ${stats.size} STAT lines (no END)`);
    const line = body.toString('utf8', pos, end);
    pos = end + 2;
    if (line === 'END') break;
    const m = /^STAT ([^ ]+) ?(.*)$/.exec(line);
    if (m === null) return fail(`${show(line)} is not a STAT line`);
    stats.set(m[1]!, m[2]!);
  }
  if (pos !== body.length) return fail(`${body.length - pos} stray bytes after END`);
  return { ok: true, reply: { kind: 'stats', stats } };
}

/**
 * Whether `body` is one or more complete VALUE blocks for keys of the request and nothing else (no
 * END). memcached 1.6 answers a multi-key get over UDP with one such datagram per value, each
 * numbered 0 of 1, then a datagram with END; the client gathers them (see KvClient).
 */
export function isValuesFragment(expect: ReplyExpectation, body: Buffer): boolean {
  return expect.kind === 'values' && body.length > 0 && parseValues(expect, body, false).ok;
}

function parseValues(expect: { keys: readonly string[]; cas: boolean }, body: Buffer, requireEnd = true): ParseResult {
  const items: RawItem[] = [];
  const wanted = new Set(expect.keys);
  let pos = 0;
  for (;;) {
    if (!requireEnd && pos === body.length) return { ok: true, reply: { kind: 'values', items } };
    const end = body.indexOf(CRLF, pos);
    if (end < 0) return fail(`value reply is truncated after ${items.length} values (no END)`);
    const line = body.toString('utf8', pos, end);
    pos = end + 2;
    if (line === 'END') {
      if (!requireEnd) return fail('END in a fragment');
      break;
    }
    const parts = line.split(' ');
    if (parts[0] !== 'VALUE' || parts.length < 4 || parts.length > 5) return fail(`${show(line)} is not a VALUE line`);
    const key = parts[1]!;
    if (!wanted.has(key)) return fail(`reply carries key ${show(key)}, which was not asked for`);
    const flags = parseDecimal(parts[2]!, BigInt(MAX_U32));
    if (flags === undefined) return fail(`flags ${show(parts[2]!)} of key ${show(key)} is not an unsigned 32-bit number`);
    const bytes = parseDecimal(parts[3]!, BigInt(body.length));
    if (bytes === undefined) return fail(`length ${show(parts[3]!)} of key ${show(key)} is not a number that fits in the reply`);
    let cas: bigint | undefined;
    if (parts.length === 5) {
      cas = parseDecimal(parts[4]!, MAX_U64);
      if (cas === undefined) return fail(`cas ${show(parts[4]!)} of key ${show(key)} is not an unsigned 64-bit number`);
    } else if (expect.cas) {
      return fail(`VALUE line of key ${show(key)} has no cas unique, which gets must return`);
    }
    const dataEnd = pos + Number(bytes);
    if (dataEnd + 2 > body.length) return fail(`value of key ${show(key)} is truncated: ${bytes} bytes announced, ${Math.max(0, body.length - pos - 2)} present`);
    if (body[dataEnd] !== 0x0d || body[dataEnd + 1] !== 0x0a) return fail(`value of key ${show(key)} is not followed by \\r\\n after ${bytes} bytes`);
    // Copy: the value outlives the datagram and must not pin it.
    items.push({ key, flags: Number(flags), value: Buffer.from(body.subarray(pos, dataEnd)), cas });
    pos = dataEnd + 2;
  }
  if (pos !== body.length) return fail(`${body.length - pos} stray bytes after END`);
  return { ok: true, reply: { kind: 'values', items } };
}
