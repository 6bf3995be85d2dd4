// The event log's file format and batch codec in TypeScript: validates every byte it reads and never
// hands out a damaged batch. Records and batches follow native/log/event.h exactly; the file header
// below is defined here. Replay itself decodes in native code; this decoder is for checking and tools.
//
// File (little-endian):
//
//   0          8            12             16              16+M
//   +----------+------------+--------------+---------------+---------+---------+-----
//   | magic    | version    | metadata     | metadata      | batch 0 | batch 1 | ... until end of file
//   | LKSTPLOG | u32 (= 1)  | length M u32 | UTF-8 JSON    |         |         |
//   +----------+------------+--------------+---------------+---------+---------+-----
//                                             M <= 64 KiB
//
// Batch, full header (versions 1 and 2; event.h BatchLayout; the CRC32C covers bytes [8, 48 + length)):
//
//   0        4        8        16             24              32       36       40          48
//   +--------+--------+--------+--------------+---------------+--------+--------+-----------+-----------+
//   | length | crc32c | lsn    | base instret | base branches | base pc| count  | base clock| records   |
//   | u32    | u32    | u64    | u64          | u64           | u32    | u32    | u64       | length B  |
//   +--------+--------+--------+--------------+---------------+--------+--------+-----------+-----------+
//
// Record: kind u8, varint d_instret, varint d_branches, zigzag d_pc, payload by kind (see EventKind).
// Deltas are from the previous record of the batch, or from the header's bases for the first one.
//
// Compact batch (version 3, what this build writes; bit 31 of the first word set; the CRC covers [8, end)):
//
//   0                      4        8        16
//   +----------------------+--------+--------+----------------------+--------------+------------+-----------------------+---------+
//   | body length | 1<<31  | crc32c | lsn    | varint count<<1|full | varint base  | varint base| full only: varint base | records |
//   | u32                  | u32    | u64    |                      | instret      | clock      | branches, varint pc    |         |
//   +----------------------+--------+--------+----------------------+--------------+------------+-----------------------+---------+
//
// Compact record: kind u8, varint d_instret, u8 position check (positionCheck(pc, branches)), payload.
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { LockstepError } from '../errors.js';
import type { LinuxIdentity } from '../machine/linux.js';
import type { ClockMode } from '../machine/types.js';
import { crc32c } from './crc32c.js';
import { ByteReader, ByteReadError, ByteWriter } from './varint.js';

/** The first 8 bytes of every log file. */
export const LOG_MAGIC = 'LKSTPLOG';
/**
 * Version of the file header and of the record and batch encoding (kLogFormatVersion in event.h) this
 * build writes. 2: a clock read may have no record (the clock advances in steps). 3: compact batches
 * (varint header, a one-byte position check per record instead of the branch count and pc). Version 1
 * and 2 logs replay the same way, so all three are read.
 */
export const LOG_FORMAT_VERSION = 4;
/** The oldest log format version this build reads. */
export const MIN_LOG_FORMAT_VERSION = 1;

/** File header offsets. */
export const LOG_HEADER_MAGIC = 0;
export const LOG_HEADER_VERSION = 8;
export const LOG_HEADER_METADATA_LENGTH = 12;
export const LOG_HEADER_METADATA = 16;
/** Largest metadata JSON accepted; anything larger is a damaged length field, not a real header. */
export const LOG_MAX_METADATA_LENGTH = 64 * 1024;

/** Batch header offsets; must match BatchLayout in native/log/event.h. */
export const BATCH_LENGTH = 0;
export const BATCH_CRC = 4;
export const BATCH_LSN = 8;
export const BATCH_BASE_INSTRET = 16;
export const BATCH_BASE_BRANCHES = 24;
export const BATCH_BASE_PC = 32;
export const BATCH_COUNT = 36;
export const BATCH_BASE_CLOCK = 40;
export const BATCH_HEADER = 48;
/** Largest record payload of one batch (BatchLayout::kMaxLength). */
export const BATCH_MAX_LENGTH = 1 << 20;
/** The bytes every batch layout starts with (length word, CRC, lsn): enough to delimit a batch. */
export const BATCH_FIXED = 16;
/** Bit 31 of a batch's first word: the compact (version 3) layout. */
export const BATCH_COMPACT_FLAG = 0x80000000;
/** Version 4 compact records: flags in the kind byte's high bits (event.h kKindClock, kKindClockUnits). */
const KIND_MASK = 0x0f;
const KIND_CLOCK_UNITS = 0x10;
const KIND_CLOCK = 0x80;
const KIND_CLOCK_RATE = 0x20;
const KIND_BLOCK_OK = 0x40;
/** Ticks in one clock unit (100 µs at 10 MHz, the default clock step): event.h kClockUnit. */
export const CLOCK_UNIT = 1000n;
/** The kinds that may carry the clock (an asynchronous event that moves it as it takes effect). */
const CARRIES_CLOCK = new Set<number>([3, 9, 10]);
/** Most bytes a compact header's varint fields take (count, instret, clock, branches, pc). */
const COMPACT_FIELDS_MAX = 50;
/** The CRC covers from here to the end of the records: the length and the CRC itself are outside. */
export const BATCH_CRC_START = BATCH_LSN;
/** Bounds of a kUartRx payload. */
export const UART_RX_MAX = 4096;

/**
 * What an event is (EventKind in event.h). Synchronous events answer a read the guest made at exactly
 * their position; asynchronous ones are applied by the replayer at exactly the recorded boundary.
 */
export const EventKind = {
  /** sync: the guest read mtime (CLINT, `time` CSR, semihosting clock); `value` = clock. */
  ClockRead: 1,
  /** async: the recorder advanced the clock so a timer interrupt became due; `value` = clock. */
  ClockSample: 2,
  /** async: bytes entered the UART receiver; `data` = 1..4096 bytes. */
  UartRx: 3,
  /** sync: semihosting SYS_TIME; `value` = seconds since the epoch. */
  WallTime: 4,
  /** async check: the state hash (registers + RAM) here; `value` = hash. */
  StateHash: 5,
  /** async: the recording ended here; `reason` and `code`. */
  End: 6,
  /**
   * async: the recording reached this position (no payload); sent at each flush so a live replayer
   * knows it may run this far: nothing else happens before it.
   */
  Mark: 7,
  /** sync: bytes virtio-rng handed the guest at a queue notify; `data` = 1..65536 bytes. */
  Entropy: 8,
  /** async: a virtio-blk request completed; `head` (chain), `status`, `data` = read data (0..65536 bytes). */
  BlockDone: 9,
  /** async: a frame entered virtio-net's receive queue; `data` = 1..65536 bytes. */
  NetRx: 10,
} as const;

/** Largest data payload of Entropy, BlockDone and NetRx (kMaxEventData in event.h). */
export const EVENT_DATA_MAX = 64 * 1024;
/** One of the {@link EventKind} values. */
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

/** Why a recording ended (EndReason in event.h). */
export const EndReason = { Exit: 0, Trap: 1, Halted: 2, Budget: 3, Stopped: 4 } as const;
/** One of the {@link EndReason} values. */
export type EndReason = (typeof EndReason)[keyof typeof EndReason];

const KIND_NAMES = new Map<number, string>(Object.entries(EventKind).map(([k, v]) => [v, k]));
const END_REASONS = new Set<number>(Object.values(EndReason));
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const PC_SPAN = 1n << 32n;
const MAGIC_BYTES = new TextEncoder().encode(LOG_MAGIC);

/** Stable codes a {@link LogFormatError} carries. */
export type LogErrorCode =
  /** The bytes are not a valid log (bad magic, bad CRC, impossible record, bad metadata). */
  | 'ERR_LOCKSTEP_LOG_CORRUPT'
  /** The log ends inside the header or a batch: the recorder stopped mid-write or the copy is short. */
  | 'ERR_LOCKSTEP_LOG_TRUNCATED'
  /** The log was written in a format version this build does not read. */
  | 'ERR_LOCKSTEP_LOG_VERSION';

/** A log (file or stream) is damaged, truncated or of another version; says which batch and where. */
export class LogFormatError extends LockstepError {
  /** The batch's lsn (its index from the first batch of the file), when the problem is in a batch. */
  readonly batch: number | undefined;
  /** Byte offset in the file (or in the bytes given) of the damaged structure or byte. */
  readonly offset: number | undefined;
  /** Path of the log file, when it was read from one. */
  readonly file: string | undefined;
  constructor(code: LogErrorCode, message: string, where: { batch?: number | bigint; offset?: number; file?: string } = {}) {
    super(code, where.file === undefined ? message : `${where.file}: ${message}`);
    this.batch = where.batch === undefined ? undefined : Number(where.batch);
    this.offset = where.offset;
    this.file = where.file;
  }
}

/** What a log file says about the run that produced it (the header's JSON). */
export interface LogMetadata {
  /** Version of the lockstep package that recorded the log. */
  lockstep: string;
  /** Guest RAM size in bytes. */
  memory: number;
  /** Clock mode of the recording; a `virtual` log holds no clock events. */
  clock: ClockMode;
  /** SHA-256 (lowercase hex) of the guest ELF file (of a Linux boot: the firmware's), so replay refuses a different program. */
  elfSha256: string;
  /** Instructions between StateHash events; 0 when the recording logged none. */
  hashInterval: number;
  /** SHA-256 (lowercase hex) of the snapshot the recording started from, when it did not start at reset. */
  snapshot?: string;
  /** The guest's command line of the recording (Machine's `cmdline`), when it had one: a replay needs the same. */
  cmdline?: string;
  /**
   * A Linux boot (`Machine.loadLinux`): the SHA-256 of the firmware, kernel, initrd and device tree, and
   * the kernel command line, so a replay boots the same images or is refused before it runs.
   */
  linux?: LinuxIdentity;
}

/** A batch whose framing, CRC and lsn have been checked; records are not decoded yet. */
export interface BatchView {
  readonly lsn: bigint;
  /** Offset of the batch's first byte in the file (or in the bytes parsed). */
  readonly offset: number;
  /** Record bytes (after the header). */
  readonly length: number;
  readonly crc: number;
  /** The compact layout (version 3): records carry a position check instead of the branch count and pc. */
  readonly compact: boolean;
  /** Offset of the first record in {@link bytes} (48 for a full header). */
  readonly recordsAt: number;
  readonly baseInstret: bigint;
  /** The branch count and pc the deltas start from; a compact batch has them only when it starts a recording. */
  readonly baseBranches: bigint | undefined;
  readonly basePc: number | undefined;
  /** Number of records the header declares. */
  readonly count: number;
  readonly baseClock: bigint;
  /** The whole batch, header included: a view, to be handed to native replay unchanged. */
  readonly bytes: Uint8Array;
}

/**
 * One decoded record with its position resolved to absolute counters. Payload fields by kind:
 * ClockRead/ClockSample/WallTime/StateHash → `value`; UartRx → `data`; End → `reason`, `code`; Mark → none.
 */
export interface LogEvent {
  kind: EventKind;
  /** Position: instructions retired before the event takes effect. */
  instret: bigint;
  /** Cross-check: branches retired at that position (decoded from version 1-2 records; needed to encode). */
  branches?: bigint;
  /** Cross-check: pc at that position (as `branches`). */
  pc?: number;
  /** Decoded from a compact record: {@link positionCheck} of the pc and branch count there. */
  check?: number;
  value?: bigint;
  /** UartRx bytes; when decoded, a view into the batch. */
  data?: Uint8Array;
  reason?: EndReason;
  /** End: the exit code (signed 64-bit). */
  code?: bigint;
  /** BlockDone: the virtqueue chain head and the virtio-blk status byte. */
  head?: number;
  status?: number;
  /** UartRx, NetRx, BlockDone (version 4): the guest clock moves to this value as the event takes effect. */
  clock?: bigint;
  /** ClockRead (version 4): the clock's rate from here on between logged values, ticks per 2^16 instructions. */
  rate?: number;
}

/** The starting point a batch's deltas are taken from (without `branches` and `pc`: a compact batch that continues a recording). */
export interface BatchBase {
  instret: bigint;
  branches?: bigint;
  pc?: number;
  /** The clock value the first ClockRead/ClockSample delta is from. */
  clock: bigint;
}

const hex32 = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

/**
 * The one-byte digest of a pc and branch count that a compact record keeps of its position (event.h
 * position_check): a replay that took another path shows a different one 255 times in 256.
 */
export function positionCheck(pc: number, branches: bigint): number {
  let h = Math.imul((pc ^ 0x9e3779b9) >>> 0, 0x85ebca6b) >>> 0;
  h = (h ^ Number(branches & 0xffffffffn)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h = (h ^ Number((branches >> 32n) & 0xffffffffn)) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  return h >>> 24;
}

/** Whole size of a batch from its first word, either layout. */
function totalSize(word0: number): number {
  return word0 & BATCH_COMPACT_FLAG ? BATCH_FIXED + (word0 & ~BATCH_COMPACT_FLAG) : BATCH_HEADER + word0;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---------------------------------------------------------------------------------------------
// File header

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Checks a metadata object field by field; `fail` names the first bad field. */
function checkMetadata(value: unknown, fail: (field: string, problem: string) => never): LogMetadata {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('(root)', 'must be a JSON object');
  const o = value as Record<string, unknown>;
  const show = (v: unknown): string => (v === undefined ? 'missing' : `found ${JSON.stringify(v)}`);
  if (typeof o.lockstep !== 'string' || o.lockstep === '') fail('lockstep', `must be a non-empty string (package version), ${show(o.lockstep)}`);
  if (typeof o.memory !== 'number' || !Number.isSafeInteger(o.memory) || o.memory <= 0) fail('memory', `must be a positive integer (bytes), ${show(o.memory)}`);
  if (o.clock !== 'virtual' && o.clock !== 'real') fail('clock', `must be "virtual" or "real", ${show(o.clock)}`);
  if (typeof o.elfSha256 !== 'string' || !SHA256_HEX.test(o.elfSha256)) fail('elfSha256', `must be 64 lowercase hex digits, ${show(o.elfSha256)}`);
  if (typeof o.hashInterval !== 'number' || !Number.isSafeInteger(o.hashInterval) || o.hashInterval < 0) {
    fail('hashInterval', `must be a non-negative integer (instructions), ${show(o.hashInterval)}`);
  }
  if (o.snapshot !== undefined && (typeof o.snapshot !== 'string' || !SHA256_HEX.test(o.snapshot))) fail('snapshot', `must be 64 lowercase hex digits when present, ${show(o.snapshot)}`);
  if (o.cmdline !== undefined && (typeof o.cmdline !== 'string' || o.cmdline === '' || o.cmdline.includes('\0') || o.cmdline.length > 4096)) {
    fail('cmdline', `must be a non-empty string of at most 4096 characters without NUL when present, ${show(o.cmdline)}`);
  }
  let linux: LinuxIdentity | undefined;
  if (o.linux !== undefined) {
    const l = o.linux as Record<string, unknown>;
    if (typeof l !== 'object' || l === null || Array.isArray(l)) fail('linux', `must be an object when present, ${show(o.linux)}`);
    for (const k of ['biosSha256', 'kernelSha256', 'dtbSha256'] as const) {
      if (typeof l[k] !== 'string' || !SHA256_HEX.test(l[k])) fail(`linux.${k}`, `must be 64 lowercase hex digits, ${show(l[k])}`);
    }
    if (l.initrdSha256 !== undefined && (typeof l.initrdSha256 !== 'string' || !SHA256_HEX.test(l.initrdSha256))) {
      fail('linux.initrdSha256', `must be 64 lowercase hex digits when present, ${show(l.initrdSha256)}`);
    }
    if (l.append !== undefined && (typeof l.append !== 'string' || l.append === '' || l.append.includes('\0') || l.append.length > 4096)) {
      fail('linux.append', `must be a non-empty string of at most 4096 characters without NUL when present, ${show(l.append)}`);
    }
    linux = { biosSha256: l.biosSha256 as string, kernelSha256: l.kernelSha256 as string, dtbSha256: l.dtbSha256 as string };
    if (l.initrdSha256 !== undefined) linux.initrdSha256 = l.initrdSha256 as string;
    if (l.append !== undefined) linux.append = l.append as string;
  }
  // Only known fields, in a fixed order, so equal metadata always encodes to equal bytes.
  const meta: LogMetadata = {
    lockstep: o.lockstep as string,
    memory: o.memory as number,
    clock: o.clock as ClockMode,
    elfSha256: o.elfSha256 as string,
    hashInterval: o.hashInterval as number,
  };
  if (o.snapshot !== undefined) meta.snapshot = o.snapshot as string;
  if (o.cmdline !== undefined) meta.cmdline = o.cmdline as string;
  if (linux !== undefined) meta.linux = linux;
  return meta;
}

/**
 * Encodes the file header (magic, version, metadata). Throws TypeError for metadata that
 * {@link decodeLogHeader} would refuse, so no writer can produce an unreadable file.
 */
export function encodeLogHeader(meta: LogMetadata): Uint8Array {
  const checked = checkMetadata(meta, (field, problem) => {
    throw new TypeError(`log metadata: ${field} ${problem}`);
  });
  const json = new TextEncoder().encode(JSON.stringify(checked));
  if (json.length > LOG_MAX_METADATA_LENGTH) throw new RangeError(`log metadata is ${json.length} bytes; at most ${LOG_MAX_METADATA_LENGTH} fit in the header`);
  const out = new Uint8Array(LOG_HEADER_METADATA + json.length);
  out.set(MAGIC_BYTES, LOG_HEADER_MAGIC);
  const dv = view(out);
  dv.setUint32(LOG_HEADER_VERSION, LOG_FORMAT_VERSION, true);
  dv.setUint32(LOG_HEADER_METADATA_LENGTH, json.length, true);
  out.set(json, LOG_HEADER_METADATA);
  return out;
}

/**
 * Decodes and validates the file header at the start of `bytes` (which may hold more: the batches).
 * @returns the metadata and the header's length, i.e. the offset of batch 0.
 * @throws LogFormatError — bad magic, metadata too large, invalid UTF-8/JSON or a bad field
 *   (`ERR_LOCKSTEP_LOG_CORRUPT`), another format version (`ERR_LOCKSTEP_LOG_VERSION`), or fewer bytes than
 *   the header needs (`ERR_LOCKSTEP_LOG_TRUNCATED`).
 */
export function decodeLogHeader(bytes: Uint8Array): { meta: LogMetadata; headerLength: number } {
  const magicSeen = Math.min(bytes.length, MAGIC_BYTES.length);
  for (let i = 0; i < magicSeen; i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) {
      throw new LogFormatError('ERR_LOCKSTEP_LOG_CORRUPT', `not a lockstep log: bad magic at offset ${i} (expected "${LOG_MAGIC}" at offset 0)`, { offset: i });
    }
  }
  if (bytes.length < LOG_HEADER_METADATA) {
    throw new LogFormatError('ERR_LOCKSTEP_LOG_TRUNCATED', `truncated log header at offset 0: needs ${LOG_HEADER_METADATA} bytes, file has ${bytes.length}`, { offset: 0 });
  }
  const dv = view(bytes);
  const version = dv.getUint32(LOG_HEADER_VERSION, true);
  const length = dv.getUint32(LOG_HEADER_METADATA_LENGTH, true);
  if (version < MIN_LOG_FORMAT_VERSION || version > LOG_FORMAT_VERSION) {
    const recordedBy = peekRecorder(bytes, length);
    throw new LogFormatError(
      'ERR_LOCKSTEP_LOG_VERSION',
      `log format version ${version} (at offset ${LOG_HEADER_VERSION}); this build of lockstep reads versions ${MIN_LOG_FORMAT_VERSION} to ${LOG_FORMAT_VERSION}. ` +
        `Replay it with the lockstep version that recorded it${recordedBy === undefined ? '' : ` (${recordedBy})`}.`,
      { offset: LOG_HEADER_VERSION },
    );
  }
  if (length > LOG_MAX_METADATA_LENGTH) {
    throw new LogFormatError(
      'ERR_LOCKSTEP_LOG_CORRUPT',
      `log metadata length ${length} (at offset ${LOG_HEADER_METADATA_LENGTH}) exceeds the ${LOG_MAX_METADATA_LENGTH}-byte limit; the header is damaged`,
      { offset: LOG_HEADER_METADATA_LENGTH },
    );
  }
  const headerLength = LOG_HEADER_METADATA + length;
  if (bytes.length < headerLength) {
    throw new LogFormatError(
      'ERR_LOCKSTEP_LOG_TRUNCATED',
      `truncated log metadata at offset ${LOG_HEADER_METADATA}: needs ${length} bytes, file has ${bytes.length - LOG_HEADER_METADATA}`,
      { offset: LOG_HEADER_METADATA },
    );
  }
  const corrupt = (problem: string): never => {
    throw new LogFormatError('ERR_LOCKSTEP_LOG_CORRUPT', `log metadata at offset ${LOG_HEADER_METADATA}: ${problem}`, { offset: LOG_HEADER_METADATA });
  };
  let parsed: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(LOG_HEADER_METADATA, headerLength));
    parsed = JSON.parse(text);
  } catch (e) {
    corrupt(`not valid UTF-8 JSON (${(e as Error).message})`);
  }
  const meta = checkMetadata(parsed, (field, problem) => corrupt(`field ${field} ${problem}`));
  return { meta, headerLength };
}

/** Best effort, for the version error only: which lockstep wrote a header we cannot otherwise read. */
function peekRecorder(bytes: Uint8Array, length: number): string | undefined {
  if (length > LOG_MAX_METADATA_LENGTH || bytes.length < LOG_HEADER_METADATA + length) return undefined;
  try {
    const o: unknown = JSON.parse(new TextDecoder().decode(bytes.subarray(LOG_HEADER_METADATA, LOG_HEADER_METADATA + length)));
    const v = (o as { lockstep?: unknown } | null)?.lockstep;
    return typeof v === 'string' ? `the header says lockstep ${v}` : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Batches

/**
 * Checks the batch starting at `bytes[at]`: framing, CRC (unless `checkCrc` is false) and lsn.
 * `origin` is the file offset of `bytes[0]`, so that errors name file offsets even when the caller
 * holds only part of the file.
 */
function parseBatchAt(bytes: Uint8Array, at: number, expectedLsn: bigint, origin: number, checkCrc: boolean): { batch: BatchView; next: number } {
  const offset = origin + at;
  const have = bytes.length - at;
  const truncatedHeader = (needs: number): never => {
    throw new LogFormatError(
      'ERR_LOCKSTEP_LOG_TRUNCATED',
      `truncated batch header at offset ${offset} (batch ${expectedLsn}): needs ${needs} bytes, file has ${have}`,
      { batch: expectedLsn, offset },
    );
  };
  if (have < BATCH_FIXED) truncatedHeader(BATCH_FIXED);
  const word0 = new DataView(bytes.buffer, bytes.byteOffset + at, BATCH_FIXED).getUint32(BATCH_LENGTH, true);
  const compact = (word0 & BATCH_COMPACT_FLAG) !== 0;
  if (!compact && have < BATCH_HEADER) truncatedHeader(BATCH_HEADER);
  const length = (word0 & ~BATCH_COMPACT_FLAG) >>> 0;
  if (length > BATCH_MAX_LENGTH + (compact ? COMPACT_FIELDS_MAX : 0)) {
    throw new LogFormatError(
      'ERR_LOCKSTEP_LOG_CORRUPT',
      `batch ${expectedLsn} at offset ${offset}: length ${length} exceeds the ${BATCH_MAX_LENGTH}-byte limit; the length field is damaged`,
      { batch: expectedLsn, offset },
    );
  }
  const total = totalSize(word0);
  if (have < total) {
    throw new LogFormatError('ERR_LOCKSTEP_LOG_TRUNCATED', `truncated batch ${expectedLsn} at offset ${offset}: needs ${total} bytes, file has ${have}`, {
      batch: expectedLsn,
      offset,
    });
  }
  const whole = bytes.subarray(at, at + total);
  const dv = new DataView(whole.buffer, whole.byteOffset, total);
  const stored = dv.getUint32(BATCH_CRC, true);
  if (checkCrc) {
    const computed = crc32c(whole.subarray(BATCH_CRC_START));
    if (computed !== stored) {
      throw new LogFormatError(
        'ERR_LOCKSTEP_LOG_CORRUPT',
        `batch ${expectedLsn} at offset ${offset}: CRC32C mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`,
        { batch: expectedLsn, offset },
      );
    }
  }
  const lsn = dv.getBigUint64(BATCH_LSN, true);
  if (lsn !== expectedLsn) {
    throw new LogFormatError('ERR_LOCKSTEP_LOG_CORRUPT', `batch ${expectedLsn} at offset ${offset}: lsn out of sequence (expected ${expectedLsn}, found ${lsn})`, {
      batch: expectedLsn,
      offset,
    });
  }
  let batch: BatchView;
  if (!compact) {
    batch = {
      lsn,
      offset,
      length,
      crc: stored,
      compact,
      recordsAt: BATCH_HEADER,
      baseInstret: dv.getBigUint64(BATCH_BASE_INSTRET, true),
      baseBranches: dv.getBigUint64(BATCH_BASE_BRANCHES, true),
      basePc: dv.getUint32(BATCH_BASE_PC, true),
      count: dv.getUint32(BATCH_COUNT, true),
      baseClock: dv.getBigUint64(BATCH_BASE_CLOCK, true),
      bytes: whole,
    };
  } else {
    const r = new ByteReader(whole, BATCH_FIXED, total);
    let field = 'record count';
    const corrupt = (problem: string, byte: number): never => {
      throw new LogFormatError('ERR_LOCKSTEP_LOG_CORRUPT', `batch ${expectedLsn} at offset ${offset}: header ${field}: ${problem} (byte at offset ${offset + byte})`, {
        batch: expectedLsn,
        offset: offset + byte,
      });
    };
    try {
      const countFull = r.varint();
      if (countFull >> 1n > 0xffffffffn) corrupt(`${countFull >> 1n} is out of range`, BATCH_FIXED);
      field = 'base instret';
      const baseInstret = r.varint();
      field = 'base clock';
      const baseClock = r.varint();
      let baseBranches: bigint | undefined;
      let basePc: number | undefined;
      if (countFull & 1n) {
        field = 'base branches';
        baseBranches = r.varint();
        field = 'base pc';
        const pcAt = r.pos;
        const pc = r.varint();
        if (pc > 0xffffffffn || pc & 1n) corrupt(`${pc} is out of range or odd, which no RISC-V pc can be`, pcAt);
        if (baseBranches > baseInstret) corrupt(`more base branches (${baseBranches}) than instructions (${baseInstret})`, pcAt);
        basePc = Number(pc);
      }
      batch = { lsn, offset, length: total - r.pos, crc: stored, compact, recordsAt: r.pos, baseInstret, baseBranches, basePc, count: Number(countFull >> 1n), baseClock, bytes: whole };
    } catch (e) {
      if (!(e instanceof ByteReadError)) throw e;
      return corrupt(e.message, e.at);
    }
  }
  return { batch, next: at + total };
}

/**
 * Validates the batch at `bytes[offset]`: a whole header, length within the 1 MiB limit, the whole
 * payload present, the CRC32C, and `lsn === expectedLsn`. Records are not decoded (see
 * {@link decodeRecords}); a batch that passes is safe to hand to native replay as `batch.bytes`.
 * @returns the batch and the offset just past it.
 * @throws LogFormatError naming the batch and offset (`ERR_LOCKSTEP_LOG_TRUNCATED` when bytes run out,
 *   `ERR_LOCKSTEP_LOG_CORRUPT` otherwise).
 */
export function parseBatch(bytes: Uint8Array, offset: number, expectedLsn: bigint): { batch: BatchView; next: number } {
  return parseBatchAt(bytes, offset, expectedLsn, 0, true);
}

/**
 * Byte length of the batch (header and records) that starts at `offset` in a stream of batches, once its
 * header is there (undefined before). It only delimits: parseBatch, or the native replayer, validates.
 */
export function batchSizeAt(bytes: Uint8Array, offset: number): number | undefined {
  if (bytes.length - offset < BATCH_FIXED) return undefined;
  return totalSize(new DataView(bytes.buffer, bytes.byteOffset + offset, BATCH_FIXED).getUint32(BATCH_LENGTH, true));
}

/** The lsn in a batch's header. */
export function batchLsn(batch: Uint8Array): bigint {
  return new DataView(batch.buffer, batch.byteOffset, BATCH_FIXED).getBigUint64(BATCH_LSN, true);
}

/** Recomputes and stores the CRC of a whole batch in place, e.g. after deliberately altering records. */
export function sealBatch(batch: Uint8Array): Uint8Array {
  view(batch).setUint32(BATCH_CRC, crc32c(batch.subarray(BATCH_CRC_START)), true);
  return batch;
}

/**
 * Decodes every record of a validated batch into events with absolute positions.
 * @throws LogFormatError (`ERR_LOCKSTEP_LOG_CORRUPT`) at the first impossible record — unknown kind,
 *   varint over 10 bytes or 64 bits, a record running past the batch, a position overflowing 64 bits,
 *   more branches than instructions, an odd pc, a UartRx length outside 1..4096, an unknown end reason, or a record count that differs
 *   from the header's — naming the batch, the record and the byte offset.
 */
export function decodeRecords(batch: BatchView): LogEvent[] {
  const bytes = batch.bytes;
  const r = new ByteReader(bytes, batch.recordsAt, batch.recordsAt + batch.length);
  const events: LogEvent[] = [];
  let index = 0;
  let recordStart = batch.recordsAt;
  const fail = (problem: string, at: number): never => {
    const where = at === recordStart ? '' : ` (byte at offset ${batch.offset + at})`;
    throw new LogFormatError('ERR_LOCKSTEP_LOG_CORRUPT', `batch ${batch.lsn} at offset ${batch.offset}: record ${index} at offset ${batch.offset + recordStart}: ${problem}${where}`, {
      batch: batch.lsn,
      offset: batch.offset + at,
    });
  };
  if (!batch.compact && (batch.basePc ?? 0) & 1) fail(`header base pc ${hex32(batch.basePc ?? 0)} is odd, which no RISC-V pc can be`, BATCH_BASE_PC);
  let instret = batch.baseInstret;
  let branches = batch.baseBranches ?? 0n;
  let pc = batch.basePc ?? 0;
  let clock = batch.baseClock;
  try {
    while (r.remaining > 0) {
      recordStart = r.pos;
      if (index >= batch.count) fail(`${r.remaining} bytes follow the last of the ${batch.count} records the header declares`, recordStart);
      const byte = r.u8();
      const kind = batch.compact ? byte & KIND_MASK : byte;
      const flags = batch.compact ? byte & ~KIND_MASK : 0;
      if (!KIND_NAMES.has(kind)) fail(`unknown event kind ${kind}`, recordStart);
      const syncClock = kind === EventKind.ClockRead || kind === EventKind.ClockSample;
      if (
        flags & ~(KIND_CLOCK | KIND_CLOCK_UNITS | KIND_CLOCK_RATE | KIND_BLOCK_OK) ||
        (flags & KIND_BLOCK_OK && kind !== EventKind.BlockDone) ||
        (flags & KIND_CLOCK && !CARRIES_CLOCK.has(kind)) ||
        (flags & KIND_CLOCK_RATE && kind !== EventKind.ClockRead) ||
        (flags & KIND_CLOCK_UNITS && !syncClock && !(flags & KIND_CLOCK))
      ) {
        fail(`kind byte 0x${byte.toString(16).padStart(2, '0')} has flags ${KIND_NAMES.get(kind)} cannot have`, recordStart);
      }
      const clockAfter = (): bigint => BigInt.asUintN(64, clock + (flags & KIND_CLOCK_UNITS ? r.zigzag() * CLOCK_UNIT : r.zigzag()));
      let at = r.pos;
      const dInstret = r.varint();
      instret += dInstret;
      if (instret > U64_MAX) fail(`instret overflows 64 bits (delta ${dInstret})`, at);
      let event: LogEvent;
      if (batch.compact) {
        event = { kind: kind as EventKind, instret, check: r.u8() };
        if (flags & KIND_CLOCK) {
          clock = clockAfter();
          event.clock = clock;
        }
      } else {
        at = r.pos;
        const dBranches = r.varint();
        branches += dBranches;
        if (branches > U64_MAX) fail(`branches overflows 64 bits (delta ${dBranches})`, at);
        at = r.pos;
        const dPc = r.zigzag();
        if (dPc <= -PC_SPAN || dPc >= PC_SPAN) fail(`pc delta ${dPc} is larger than the 32-bit address space`, at);
        pc = (pc + Number(dPc)) >>> 0;
        if (pc & 1) fail(`pc ${hex32(pc)} is odd, which no RISC-V pc can be`, at);
        // Every branch is an instruction, so this is an impossible position (native rejects it too).
        if (branches > instret) fail(`more branches (${branches}) than instructions (${instret})`, recordStart);
        event = { kind: kind as EventKind, instret, branches, pc };
      }
      switch (kind) {
        case EventKind.ClockRead:
        case EventKind.ClockSample:
          clock = clockAfter();
          event.value = clock;
          if (flags & KIND_CLOCK_RATE) {
            at = r.pos;
            const rate = r.varint();
            if (rate > 0xffffffffn) fail(`clock rate ${rate} is out of range`, at);
            event.rate = Number(rate);
          }
          break;
        case EventKind.UartRx: {
          at = r.pos;
          const n = r.varint();
          if (n < 1n || n > BigInt(UART_RX_MAX)) fail(`UART RX length ${n} is outside 1..${UART_RX_MAX}`, at);
          event.data = r.bytes(Number(n));
          break;
        }
        case EventKind.WallTime:
          event.value = r.varint();
          break;
        case EventKind.StateHash:
          event.value = r.u64le();
          break;
        case EventKind.Mark:
          break;
        case EventKind.Entropy:
        case EventKind.NetRx:
        case EventKind.BlockDone: {
          if (kind === EventKind.BlockDone) {
            at = r.pos;
            const head = r.varint();
            if (head > 0xffffn) fail(`block-done head ${head} is out of range`, at);
            event.head = Number(head);
            if (flags & KIND_BLOCK_OK) {
              event.status = 0;
              event.data = new Uint8Array(0);
              break;
            }
            event.status = r.u8();
          }
          at = r.pos;
          const n = r.varint();
          const min = kind === EventKind.BlockDone ? 0n : 1n;
          if (n < min || n > BigInt(EVENT_DATA_MAX)) fail(`${KIND_NAMES.get(kind)} length ${n} is outside ${min}..${EVENT_DATA_MAX}`, at);
          event.data = r.bytes(Number(n));
          break;
        }
        case EventKind.End: {
          at = r.pos;
          const reason = r.varint();
          if (reason > 255n || !END_REASONS.has(Number(reason))) fail(`unknown end reason ${reason}`, at);
          event.reason = Number(reason) as EndReason;
          event.code = r.zigzag();
          break;
        }
      }
      events.push(event);
      index++;
    }
  } catch (e) {
    if (e instanceof ByteReadError) fail(e.message, e.at);
    throw e;
  }
  if (index !== batch.count) fail(`the header declares ${batch.count} records but the payload ends after ${index}`, batch.recordsAt + batch.length);
  return events;
}

function checkU64(name: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw new RangeError(`${name} must be a bigint in [0, 2^64), got ${String(v)}`);
}

/** A clock delta as a compact (version 4) record writes it: in {@link CLOCK_UNIT}s when it is a whole number of them. */
function clockDelta(value: bigint, from: bigint): { delta: bigint; units: boolean } {
  const d = BigInt.asIntN(64, value - from);
  return d % CLOCK_UNIT === 0n ? { delta: d / CLOCK_UNIT, units: true } : { delta: d, units: false };
}

/**
 * Writes an event's payload (the bytes after its position; a clock delta in {@link CLOCK_UNIT}s when
 * `units`, as version 4 marks in the kind byte) and returns the clock value later deltas are taken from.
 * `what` names the event in errors.
 * @throws RangeError / TypeError for a payload that cannot be encoded.
 */
export function encodePayload(w: ByteWriter, e: LogEvent, what: string, clock: bigint, units = false, blockOk = false): bigint {
  const value = (): bigint => {
    if (e.value === undefined) throw new TypeError(`${what}: ${KIND_NAMES.get(e.kind)} needs a value`);
    checkU64(`${what}: value`, e.value);
    return e.value;
  };
  switch (e.kind) {
    case EventKind.ClockRead:
    case EventKind.ClockSample: {
      const v = value();
      w.zigzag(units ? clockDelta(v, clock).delta : BigInt.asIntN(64, v - clock));
      if (e.rate !== undefined && e.kind === EventKind.ClockRead) w.varint(BigInt(e.rate));
      clock = v;
      break;
    }
    case EventKind.UartRx: {
      const data = e.data;
      if (!(data instanceof Uint8Array) || data.length < 1 || data.length > UART_RX_MAX) {
        throw new RangeError(`${what}: UartRx needs 1..${UART_RX_MAX} data bytes, got ${data instanceof Uint8Array ? data.length : String(data)}`);
      }
      w.varint(BigInt(data.length));
      w.bytes(data);
      break;
    }
    case EventKind.WallTime:
      w.varint(value());
      break;
    case EventKind.StateHash:
      w.u64le(value());
      break;
    case EventKind.End: {
      if (e.reason === undefined || !END_REASONS.has(e.reason)) throw new RangeError(`${what}: End needs a known reason, got ${String(e.reason)}`);
      const code = e.code ?? 0n;
      if (typeof code !== 'bigint' || code < I64_MIN || code > I64_MAX) throw new RangeError(`${what}: code must be a signed 64-bit bigint, got ${String(code)}`);
      w.varint(BigInt(e.reason));
      w.zigzag(code);
      break;
    }
    case EventKind.Mark:
      break;
    case EventKind.Entropy:
    case EventKind.NetRx:
    case EventKind.BlockDone: {
      const data = e.data ?? new Uint8Array(0);
      const min = e.kind === EventKind.BlockDone ? 0 : 1;
      if (!(data instanceof Uint8Array) || data.length < min || data.length > EVENT_DATA_MAX) {
        throw new RangeError(`${what}: ${KIND_NAMES.get(e.kind)} needs ${min}..${EVENT_DATA_MAX} data bytes`);
      }
      if (e.kind === EventKind.BlockDone) {
        const head = e.head ?? -1;
        const status = e.status ?? -1;
        if (!Number.isInteger(head) || head < 0 || head > 0xffff) throw new RangeError(`${what}: BlockDone head must be a u16, got ${head}`);
        if (!Number.isInteger(status) || status < 0 || status > 255) throw new RangeError(`${what}: BlockDone status must be a u8, got ${status}`);
        w.varint(BigInt(head));
        if (blockOk) break;
        w.u8(status);
      }
      w.varint(BigInt(data.length));
      w.bytes(data);
      break;
    }
  }
  return clock;
}

/**
 * Encodes events into one whole compact batch (header, records, CRC): byte for byte what the native
 * recorder writes for the same events, and the inverse of {@link decodeRecords} (a decoded compact event
 * keeps its `check`). The header is marked full, carrying the branch count and pc, when `base` has them,
 * as the first batch of a recording does. Positions must not go backwards (deltas are unsigned). For
 * tests and for crafting logs; recording itself happens in native code.
 * @throws RangeError / TypeError for events that cannot be encoded.
 */
export function encodeBatch(lsn: bigint, base: BatchBase, events: readonly LogEvent[]): Uint8Array {
  checkU64('lsn', lsn);
  checkU64('base.instret', base.instret);
  checkU64('base.clock', base.clock);
  const full = base.branches !== undefined || base.pc !== undefined;
  if (full) {
    checkU64('base.branches', base.branches!);
    if (!Number.isInteger(base.pc) || base.pc! < 0 || base.pc! > 0xffffffff) throw new RangeError(`base.pc must be a u32, got ${base.pc}`);
  }
  const w = new ByteWriter(BATCH_FIXED + 32 + events.length * 8);
  for (let i = 0; i < BATCH_FIXED; i++) w.u8(0);
  w.varint((BigInt(events.length) << 1n) | (full ? 1n : 0n));
  w.varint(base.instret);
  w.varint(base.clock);
  if (full) {
    w.varint(base.branches!);
    w.varint(BigInt(base.pc!));
  }
  const headerLength = w.length;
  let { instret, clock } = base;
  let branches = base.branches;
  events.forEach((e, i) => {
    const what = `event ${i}`;
    if (!KIND_NAMES.has(e.kind)) throw new RangeError(`${what}: unknown kind ${String(e.kind)}`);
    checkU64(`${what}: instret`, e.instret);
    if (e.instret < instret) throw new RangeError(`${what}: instret ${e.instret} is before the previous position ${instret}`);
    let check: number;
    if (e.branches !== undefined || e.pc !== undefined || e.check === undefined) {
      if (e.branches === undefined) throw new TypeError(`${what}: needs branches and pc (or a decoded check)`);
      checkU64(`${what}: branches`, e.branches);
      if (branches !== undefined && e.branches < branches) throw new RangeError(`${what}: branches ${e.branches} is before the previous count ${branches}`);
      if (e.branches > e.instret) throw new RangeError(`${what}: branches ${e.branches} exceeds instret ${e.instret}`);
      if (!Number.isInteger(e.pc) || e.pc! < 0 || e.pc! > 0xffffffff) throw new RangeError(`${what}: pc must be a u32, got ${e.pc}`);
      branches = e.branches;
      check = positionCheck(e.pc!, e.branches);
    } else {
      if (!Number.isInteger(e.check) || e.check < 0 || e.check > 255) throw new RangeError(`${what}: check must be a u8, got ${e.check}`);
      check = e.check;
    }
    if (e.clock !== undefined) {
      if (!CARRIES_CLOCK.has(e.kind)) throw new TypeError(`${what}: ${KIND_NAMES.get(e.kind)} cannot carry a clock`);
      checkU64(`${what}: clock`, e.clock);
    }
    const syncClock = e.kind === EventKind.ClockRead || e.kind === EventKind.ClockSample;
    if (syncClock && e.value !== undefined) checkU64(`${what}: value`, e.value);
    const cd = e.clock !== undefined ? clockDelta(e.clock, clock) : syncClock && e.value !== undefined ? clockDelta(e.value, clock) : undefined;
    if (e.rate !== undefined && (e.kind !== EventKind.ClockRead || !Number.isInteger(e.rate) || e.rate < 0 || e.rate > 0xffffffff)) {
      throw new RangeError(`${what}: only a ClockRead has a rate, a u32; got ${String(e.rate)} on ${KIND_NAMES.get(e.kind)}`);
    }
    const blockOk = e.kind === EventKind.BlockDone && e.status === 0 && (e.data === undefined || e.data.length === 0);
    w.u8(e.kind | (cd?.units ? KIND_CLOCK_UNITS : 0) | (e.clock !== undefined ? KIND_CLOCK : 0) | (e.rate !== undefined ? KIND_CLOCK_RATE : 0) | (blockOk ? KIND_BLOCK_OK : 0));
    w.varint(e.instret - instret);
    w.u8(check);
    instret = e.instret;
    if (e.clock !== undefined) {
      w.zigzag(cd!.delta);
      clock = e.clock;
    }
    clock = encodePayload(w, e, what, clock, cd?.units === true, blockOk);
  });
  const out = w.finish();
  const length = out.length - headerLength;
  if (length > BATCH_MAX_LENGTH) throw new RangeError(`batch records take ${length} bytes; a batch holds at most ${BATCH_MAX_LENGTH}`);
  const dv = view(out);
  dv.setUint32(BATCH_LENGTH, ((out.length - BATCH_FIXED) | BATCH_COMPACT_FLAG) >>> 0, true);
  dv.setBigUint64(BATCH_LSN, lsn, true);
  return sealBatch(out);
}

// ---------------------------------------------------------------------------------------------
// Files

/** Options of {@link LogWriter.create}. */
export interface LogWriterOptions {
  /** Refuse to replace an existing file (default false: an existing file is truncated). */
  exclusive?: boolean;
  /** lsn of the first batch to be written (default 0). */
  firstLsn?: bigint;
}

/**
 * Appends whole batches, as the native recorder produced them, to a log file.
 *
 * Writes are synchronous (`fs.writeSync`): batches arrive on the JS thread from the log ring, a write of
 * at most ~1 MiB into the page cache takes microseconds, and doing it inline keeps batches in order
 * without a queue and makes an I/O error surface at the call that caused it. `close()` fsyncs, so a
 * recording is durable once closed; after a crash the file ends at a batch boundary or with a truncated
 * batch, which {@link LogReader} reports as truncation at that batch's offset.
 */
export class LogWriter {
  /** Path of the file being written. */
  readonly path: string;
  #fd: number | undefined;
  #position: number;
  #nextLsn: bigint;

  private constructor(path: string, fd: number, position: number, firstLsn: bigint) {
    this.path = path;
    this.#fd = fd;
    this.#position = position;
    this.#nextLsn = firstLsn;
  }

  /** Creates (or replaces) the file at `path` and writes the header for `meta`. */
  static create(path: string, meta: LogMetadata, options: LogWriterOptions = {}): LogWriter {
    const header = encodeLogHeader(meta);
    const fd = openSync(path, options.exclusive ? 'wx' : 'w');
    try {
      writeAll(fd, header, 0);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new LogWriter(path, fd, header.length, options.firstLsn ?? 0n);
  }

  /** The lsn the next batch written must carry. */
  get nextLsn(): bigint {
    return this.#nextLsn;
  }

  /** Bytes in the file so far (header included). */
  get size(): number {
    return this.#position;
  }

  /**
   * Appends one or more whole batches lying back to back in `batches`. Their framing and lsn sequence
   * are checked first (the CRC is not recomputed: native just wrote it), and nothing is written unless
   * all of them pass.
   * @throws LogFormatError if a batch is incomplete or out of sequence; the file is unchanged.
   */
  write(batches: Uint8Array): void {
    const fd = this.#fd;
    if (fd === undefined) throw new LockstepError('ERR_LOCKSTEP_LOG_CLOSED', `log ${this.path} is closed; create a new LogWriter to record again`);
    let at = 0;
    let lsn = this.#nextLsn;
    while (at < batches.length) {
      at = parseBatchAt(batches, at, lsn, this.#position, false).next;
      lsn++;
    }
    writeAll(fd, batches, this.#position);
    this.#position += batches.length;
    this.#nextLsn = lsn;
  }

  /** Flushes the file to stable storage and closes it. Idempotent. */
  close(): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    this.#fd = undefined;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/** Reads until `buf` is full or the file ends; returns the number of bytes read. */
function readFully(fd: number, buf: Uint8Array, position: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Options of {@link LogReader}. */
export interface LogReaderOptions {
  /** lsn the first batch must carry (default 0). */
  firstLsn?: bigint;
}

/** Where a reader's bytes come from. */
type Source = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'file'; fd: number | undefined; path: string };

/**
 * Reads a log: the header at once, then validated batches in order. Iteration stops with a
 * {@link LogFormatError} at the first damaged batch and never yields it or anything after it; a log
 * that ends exactly at a batch boundary ends the iteration cleanly, one that ends inside a batch throws
 * `ERR_LOCKSTEP_LOG_TRUNCATED` naming that batch's offset.
 *
 * A file is read batch by batch with positional reads (memory stays at one batch, and a file still
 * being appended to can be read up to what it holds); each yielded batch owns its bytes.
 */
export class LogReader implements Iterable<BatchView> {
  /** The header's metadata. */
  readonly meta: LogMetadata;
  /** Offset of batch 0. */
  readonly headerLength: number;
  readonly #source: Source;
  readonly #firstLsn: bigint;

  private constructor(source: Source, meta: LogMetadata, headerLength: number, firstLsn: bigint) {
    this.#source = source;
    this.meta = meta;
    this.headerLength = headerLength;
    this.#firstLsn = firstLsn;
  }

  /** Reads a log held in memory (a whole file, or a prefix of one). Yielded batches are views of `bytes`. */
  static fromBytes(bytes: Uint8Array, options: LogReaderOptions = {}): LogReader {
    const { meta, headerLength } = decodeLogHeader(bytes);
    return new LogReader({ kind: 'bytes', bytes }, meta, headerLength, options.firstLsn ?? 0n);
  }

  /** Opens a log file and reads its header. Close it with {@link LogReader.close}. */
  static open(path: string, options: LogReaderOptions = {}): LogReader {
    const fd = openSync(path, 'r');
    try {
      const fixed = new Uint8Array(LOG_HEADER_METADATA);
      const got = readFully(fd, fixed, 0);
      let header = fixed.subarray(0, got);
      if (got === LOG_HEADER_METADATA) {
        const length = view(fixed).getUint32(LOG_HEADER_METADATA_LENGTH, true);
        if (length <= LOG_MAX_METADATA_LENGTH) {
          header = new Uint8Array(LOG_HEADER_METADATA + length);
          header.set(fixed);
          header = header.subarray(0, LOG_HEADER_METADATA + readFully(fd, header.subarray(LOG_HEADER_METADATA), LOG_HEADER_METADATA));
        }
      }
      const { meta, headerLength } = withFile(path, () => decodeLogHeader(header));
      return new LogReader({ kind: 'file', fd, path }, meta, headerLength, options.firstLsn ?? 0n);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The validated batches, in order. Each call starts again from batch 0. */
  *batches(): Generator<BatchView, void, undefined> {
    const source = this.#source;
    let lsn = this.#firstLsn;
    let offset = this.headerLength;
    if (source.kind === 'bytes') {
      while (offset < source.bytes.length) {
        const { batch, next } = parseBatchAt(source.bytes, offset, lsn, 0, true);
        yield batch;
        offset = next;
        lsn++;
      }
      return;
    }
    const head = new Uint8Array(BATCH_HEADER);
    for (;;) {
      const fd = this.#openFd(source);
      const got = readFully(fd, head, offset);
      if (got === 0) return;
      let buf = head.subarray(0, got);
      if (got >= BATCH_FIXED) {
        const word0 = view(head).getUint32(BATCH_LENGTH, true);
        const total = totalSize(word0);
        if ((word0 & ~BATCH_COMPACT_FLAG) >>> 0 <= BATCH_MAX_LENGTH + COMPACT_FIELDS_MAX && total > got) {
          buf = new Uint8Array(total);
          buf.set(head.subarray(0, got));
          buf = buf.subarray(0, got + readFully(fd, buf.subarray(got), offset + got));
        } else if (total <= got) {
          buf = head.slice(0, total); // a copy: head is read into again for the next batch
        }
      }
      const { batch } = withFile(source.path, () => parseBatchAt(buf, 0, lsn, offset, true));
      yield batch;
      offset += batch.bytes.length;
      lsn++;
    }
  }

  [Symbol.iterator](): Generator<BatchView, void, undefined> {
    return this.batches();
  }

  /** Every event of every batch, decoded; stops with a LogFormatError at the first damaged batch or record. */
  *events(): Generator<LogEvent, void, undefined> {
    for (const batch of this.batches()) {
      const decoded = this.#source.kind === 'file' ? withFile(this.#source.path, () => decodeRecords(batch)) : decodeRecords(batch);
      yield* decoded;
    }
  }

  /** Releases the file (a no-op for a reader over bytes). Idempotent. */
  close(): void {
    if (this.#source.kind === 'file' && this.#source.fd !== undefined) {
      closeSync(this.#source.fd);
      this.#source.fd = undefined;
    }
  }

  #openFd(source: { fd: number | undefined; path: string }): number {
    if (source.fd === undefined) throw new LockstepError('ERR_LOCKSTEP_LOG_CLOSED', `log ${source.path} is closed; open it again to read`);
    return source.fd;
  }
}

/** Runs `fn`, naming `path` in any LogFormatError it throws. */
function withFile<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof LogFormatError && e.file === undefined) {
      const where: { batch?: number; offset?: number; file: string } = { file: path };
      if (e.batch !== undefined) where.batch = e.batch;
      if (e.offset !== undefined) where.offset = e.offset;
      throw new LogFormatError(e.code as LogErrorCode, e.message, where);
    }
    throw e;
  }
}
