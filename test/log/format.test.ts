// Log format v1: round trips of random events through batches, files and the reader; header
// validation; and every corruption class (CRC, truncation, lsn, version, impossible records) reported
// at the right batch and byte offset, with no damaged batch ever yielded.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBatchV2, type FullBase } from '../helpers/log-v2.js';
import {
  positionCheck,
  BATCH_BASE_PC,
  BATCH_COUNT,
  BATCH_CRC,
  BATCH_HEADER,
  BATCH_LENGTH,
  BATCH_LSN,
  BATCH_MAX_LENGTH,
  EndReason,
  EventKind,
  LOG_FORMAT_VERSION,
  LOG_HEADER_METADATA,
  LogFormatError,
  LogReader,
  LogWriter,
  UART_RX_MAX,
  decodeLogHeader,
  decodeRecords,
  encodeBatch,
  encodeLogHeader,
  parseBatch,
  sealBatch,
  type BatchBase,
  type BatchView,
  type LogEvent,
  type LogMetadata,
} from '../../src/log/format.js';

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

const meta: LogMetadata = {
  lockstep: '0.1.0',
  memory: 1 << 20,
  clock: 'real',
  elfSha256: 'a'.repeat(64),
  hashInterval: 1_000_000,
};

const dir = mkdtempSync(join(tmpdir(), 'lockstep-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** mulberry32: a small seeded PRNG so every failure reproduces. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const u64 = (): bigint => (BigInt(int(0x100000000)) << 32n) | BigInt(int(0x100000000));
  return { next, int, u64 };
}

type Rng = ReturnType<typeof prng>;

/** Random events of every kind, positions moving forward by small and occasionally huge steps. */
function randomEvents(rng: Rng, start: BatchBase, n: number): { events: LogEvent[]; end: BatchBase } {
  let { instret, clock } = start;
  let branches = start.branches ?? 0n;
  let pc = start.pc ?? 0;
  const events: LogEvent[] = [];
  for (let i = 0; i < n; i++) {
    const big = rng.int(50) === 0;
    const dI = big ? BigInt(rng.int(2 ** 31)) * 1000n : BigInt(rng.int(5000));
    instret += dI;
    branches += dI === 0n ? 0n : BigInt(rng.int(Number(dI > 1000000n ? 1000000n : dI) + 1));
    pc = rng.int(4) === 0 ? rng.int(0x80000000) * 2 : (pc + (rng.int(512) - 256) * 2) >>> 0;
    const kind = (1 + rng.int(10)) as EventKind;
    const e: LogEvent = { kind, instret, branches, pc };
    switch (kind) {
      case EventKind.ClockRead:
      case EventKind.ClockSample:
        clock = rng.int(10) === 0 ? rng.u64() : BigInt.asUintN(64, clock + BigInt(rng.int(20000) - 1000));
        e.value = clock;
        break;
      case EventKind.UartRx: {
        const len = rng.int(8) === 0 ? 1 + rng.int(UART_RX_MAX) : 1 + rng.int(4);
        e.data = Uint8Array.from({ length: len }, () => rng.int(256));
        break;
      }
      case EventKind.WallTime:
        e.value = rng.int(3) === 0 ? rng.u64() : BigInt(1_700_000_000 + rng.int(1e6));
        break;
      case EventKind.StateHash:
        e.value = rng.u64();
        break;
      case EventKind.End:
        e.reason = rng.int(5) as EndReason;
        e.code = [0n, 1n, -1n, I64_MIN, I64_MAX, BigInt(rng.int(2 ** 31) - 2 ** 30)][rng.int(6)]!;
        break;
      case EventKind.Entropy:
      case EventKind.NetRx:
        e.data = Uint8Array.from({ length: 1 + rng.int(rng.int(8) === 0 ? 1514 : 64) }, () => rng.int(256));
        break;
      case EventKind.BlockDone:
        e.head = rng.int(256);
        e.status = rng.int(3);
        e.data = Uint8Array.from({ length: rng.int(2) === 0 ? 0 : 512 * (1 + rng.int(4)) }, () => rng.int(256));
        break;
    }
    events.push(e);
  }
  return { events, end: { instret, branches, pc, clock } };
}

interface Built {
  file: Uint8Array;
  batches: Uint8Array[];
  events: LogEvent[][];
  offsets: number[];
}

/** A whole log: header, then `count` batches of random events; each batch's base is the previous end. */
function buildLog(seed: number, count: number, perBatch = 20): Built {
  const rng = prng(seed);
  let base: BatchBase = { instret: 0n, branches: 0n, pc: 0x80000000, clock: 0n };
  const header = encodeLogHeader(meta);
  const batches: Uint8Array[] = [];
  const events: LogEvent[][] = [];
  const offsets: number[] = [];
  let offset = header.length;
  for (let lsn = 0; lsn < count; lsn++) {
    const { events: evs, end } = randomEvents(rng, base, rng.int(perBatch + 1));
    const b = encodeBatch(BigInt(lsn), base, evs);
    batches.push(b);
    events.push(evs);
    offsets.push(offset);
    offset += b.length;
    base = end;
  }
  return { file: concat([header, ...batches]), batches, events, offsets };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Comparable form of events (Uint8Array views become plain arrays). */
function plain(events: LogEvent[]): unknown[] {
  return events.map((e) => ({ ...e, data: e.data === undefined ? undefined : Array.from(e.data) }));
}

/** What a compact record keeps of an event: its position check instead of its branch count and pc. */
function logged(e: LogEvent): LogEvent {
  const { branches, pc, ...rest } = e;
  return { ...rest, check: positionCheck(pc!, branches!) };
}

/** Runs `fn`, expecting a LogFormatError; returns it. */
function catchLog(fn: () => unknown): LogFormatError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LogFormatError) return e;
    throw e;
  }
  throw new Error('expected a LogFormatError, nothing was thrown');
}

/** Iterates a reader, keeping what was yielded before any error. */
function drain(reader: LogReader): { got: BatchView[]; error?: LogFormatError } {
  const got: BatchView[] = [];
  try {
    for (const b of reader) got.push(b);
  } catch (e) {
    if (e instanceof LogFormatError) return { got, error: e };
    throw e;
  }
  return { got };
}

describe('record codec', () => {
  it('round-trips random events of every kind through many batches', () => {
    const log = buildLog(1, 200);
    const kinds = new Set(log.events.flat().map((e) => e.kind));
    expect(kinds.size).toBe(Object.keys(EventKind).length);
    const reader = LogReader.fromBytes(log.file);
    expect(reader.meta).toEqual(meta);
    let i = 0;
    for (const batch of reader) {
      expect(batch.lsn).toBe(BigInt(i));
      expect(batch.offset).toBe(log.offsets[i]);
      expect(plain(decodeRecords(batch))).toEqual(plain(log.events[i]!.map(logged)));
      i++;
    }
    expect(i).toBe(200);
  });

  it('re-encodes decoded events to the identical bytes', () => {
    const log = buildLog(2, 50);
    for (const batch of LogReader.fromBytes(log.file)) {
      const base = { instret: batch.baseInstret, branches: batch.baseBranches, pc: batch.basePc, clock: batch.baseClock };
      expect(encodeBatch(batch.lsn, base, decodeRecords(batch))).toEqual(batch.bytes);
    }
  });

  it('round-trips the extremes: 64-bit limits, pc wrap-around, clock wrap-around, 10-byte varints', () => {
    const base: BatchBase = { instret: U64_MAX - 10n, branches: 0n, pc: 0xfffffffe, clock: U64_MAX };
    const events: LogEvent[] = [
      { kind: EventKind.ClockRead, instret: U64_MAX - 10n, branches: 0n, pc: 0, value: 0n },
      { kind: EventKind.ClockSample, instret: U64_MAX - 5n, branches: U64_MAX - 6n, pc: 0xfffffffe, value: U64_MAX },
      { kind: EventKind.Mark, instret: U64_MAX - 5n, branches: U64_MAX - 5n, pc: 0xfffffffe },
      { kind: EventKind.WallTime, instret: U64_MAX, branches: U64_MAX, pc: 0x80000000, value: U64_MAX },
      { kind: EventKind.StateHash, instret: U64_MAX, branches: U64_MAX, pc: 0x2, value: U64_MAX },
      { kind: EventKind.UartRx, instret: U64_MAX, branches: U64_MAX, pc: 0x2, data: new Uint8Array(UART_RX_MAX).fill(0xa5) },
      { kind: EventKind.End, instret: U64_MAX, branches: U64_MAX, pc: 0x7ffffffe, reason: EndReason.Trap, code: I64_MIN },
      { kind: EventKind.End, instret: U64_MAX, branches: U64_MAX, pc: 0x7ffffffe, reason: EndReason.Stopped, code: I64_MAX },
    ];
    const bytes = encodeBatch(U64_MAX, base, events);
    const { batch, next } = parseBatch(bytes, 0, U64_MAX);
    expect(next).toBe(bytes.length);
    expect(plain(decodeRecords(batch))).toEqual(plain(events.map(logged)));
  });

  it('reads from a view that does not start at the beginning of its buffer', () => {
    const log = buildLog(11, 3, 3);
    // Odd start: also catches any reliance on aligned typed-array views.
    const holder = new Uint8Array(log.file.length + 3);
    holder.set(log.file, 3);
    const batches = [...LogReader.fromBytes(holder.subarray(3))];
    expect(plain(batches.flatMap((b) => decodeRecords(b)))).toEqual(plain(log.events.flat().map(logged)));
  });

  it('decodes an empty batch to no events', () => {
    const bytes = encodeBatch(0n, { instret: 5n, branches: 1n, pc: 0x80000000, clock: 9n }, []);
    // 16 fixed bytes, then count<<1|full, instret, clock, branches (a byte each) and the pc (5 bytes).
    expect(bytes.length).toBe(25);
    const { batch } = parseBatch(bytes, 0, 0n);
    expect(batch).toMatchObject({ compact: true, recordsAt: 25, length: 0, count: 0, baseInstret: 5n, baseBranches: 1n, basePc: 0x80000000, baseClock: 9n });
    expect(decodeRecords(batch)).toEqual([]);
    // A batch that continues a recording carries no branch count or pc: 19 bytes.
    const next = encodeBatch(1n, { instret: 5n, clock: 9n }, []);
    expect(next.length).toBe(19);
    expect(parseBatch(next, 0, 1n).batch).toMatchObject({ compact: true, baseBranches: undefined, basePc: undefined });
  });

  it('refuses to encode what it could not decode', () => {
    const base: BatchBase = { instret: 100n, branches: 10n, pc: 0, clock: 0n };
    const at = { instret: 100n, branches: 10n, pc: 0 };
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.ClockRead, ...at, instret: 99n, value: 0n }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.ClockRead, ...at, branches: 9n, value: 0n }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.ClockRead, ...at }])).toThrow(TypeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.UartRx, ...at, data: new Uint8Array(0) }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.UartRx, ...at, data: new Uint8Array(UART_RX_MAX + 1) }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.End, ...at, reason: 9 as EndReason }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: 8 as EventKind, ...at }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.Mark, ...at, branches: 101n }])).toThrow(RangeError);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.WallTime, ...at, value: -1n }])).toThrow(RangeError);
  });
});

describe('record sizes', () => {
  const base: BatchBase = { instret: 1_000_000n, branches: 200_000n, pc: 0x80001000, clock: 50_000_000n };
  const recordSize = (e: LogEvent): number => encodeBatch(0n, base, [e]).length - encodeBatch(0n, base, []).length;

  it('a clock read a few thousand instructions after the previous event takes 5 bytes on the step grid, 6 off it', () => {
    const e: LogEvent = { kind: EventKind.ClockRead, instret: 1_005_000n, branches: 200_700n, pc: 0x80000fc0, value: 50_003_000n };
    expect(recordSize(e)).toBe(5); // kind, 2-byte d_instret, check, 1-byte delta of 3 clock units
    expect(recordSize({ ...e, value: 50_003_001n })).toBe(6); // 2-byte delta in ticks
    const bytes = encodeBatch(0n, base, [e]);
    expect(bytes[parseBatch(bytes, 0, 0n).batch.recordsAt]).toBe(EventKind.ClockRead | 0x10); // the kind byte says "in units"
  });

  it('a timer interrupt (clock sample) with small deltas takes 6 bytes', () => {
    const e: LogEvent = { kind: EventKind.ClockSample, instret: 1_003_000n, branches: 200_500n, pc: 0x80001008, value: 50_001_234n };
    expect(recordSize(e)).toBe(6);
  });

  it('an interrupting event carries the clock in one more byte, and later deltas start from it', () => {
    const frame = new Uint8Array(60).fill(7);
    const rx: LogEvent = { kind: EventKind.NetRx, instret: 1_000_200n, branches: 200_030n, pc: 0x80001010, data: frame };
    expect(recordSize({ ...rx, clock: 50_002_000n }) - recordSize(rx)).toBe(1);
    const read: LogEvent = { kind: EventKind.ClockRead, instret: 1_000_900n, branches: 200_100n, pc: 0x80001020, value: 50_003_000n };
    const bytes = encodeBatch(0n, base, [{ ...rx, clock: 50_002_000n }, read]);
    const decoded = decodeRecords(parseBatch(bytes, 0, 0n).batch);
    expect(decoded.map((e) => [e.kind, e.clock, e.value])).toEqual([
      [EventKind.NetRx, 50_002_000n, undefined],
      [EventKind.ClockRead, undefined, 50_003_000n],
    ]);
    expect(() => encodeBatch(0n, base, [{ ...read, clock: 1n }])).toThrow(/cannot carry a clock/);
  });

  it('a clock read may set the rate the clock keeps between logged values, in one to five more bytes', () => {
    const read: LogEvent = { kind: EventKind.ClockRead, instret: 1_005_000n, branches: 200_700n, pc: 0x80000fc0, value: 50_003_000n };
    expect(recordSize({ ...read, rate: 4369 }) - recordSize(read)).toBe(2);
    const bytes = encodeBatch(0n, base, [{ ...read, rate: 4369 }, { ...read, instret: 1_006_000n, value: 50_004_000n }]);
    expect(decodeRecords(parseBatch(bytes, 0, 0n).batch).map((e) => [e.value, e.rate])).toEqual([
      [50_003_000n, 4369],
      [50_004_000n, undefined],
    ]);
    expect(() => encodeBatch(0n, base, [{ kind: EventKind.Mark, instret: 1_000_300n, branches: 200_050n, pc: 0x80001010, rate: 1 }])).toThrow(/only a ClockRead has a rate/);
  });

  it('a disk completion without data or error takes its head only: no status byte, no length', () => {
    const done: LogEvent = { kind: EventKind.BlockDone, instret: 1_000_200n, branches: 200_030n, pc: 0x80001010, head: 3, status: 0 };
    expect(recordSize(done)).toBe(5); // kind, 2-byte d_instret, check, head
    expect(recordSize({ ...done, status: 1 })).toBe(7);
    const bytes = encodeBatch(0n, base, [done]);
    expect(decodeRecords(parseBatch(bytes, 0, 0n).batch)).toMatchObject([{ kind: EventKind.BlockDone, head: 3, status: 0 }]);
  });

  it('refuses a kind byte with a flag its kind cannot have, naming the record', () => {
    const mark = encodeBatch(0n, base, [{ kind: EventKind.Mark, instret: 1_000_300n, branches: 200_050n, pc: 0x80001010 }]);
    for (const flag of [0x80, 0x10, 0x20, 0x40]) {
      const c = mark.slice();
      c[parseBatch(mark, 0, 0n).batch.recordsAt] = EventKind.Mark | flag;
      expect(() => decodeRecords(parseBatch(sealBatch(c), 0, 0n).batch)).toThrow(/record 0 at offset \d+: kind byte 0x[0-9a-f]{2} has flags Mark cannot have/);
    }
  });

  it('one UART byte takes 6 bytes, and a mark a few hundred instructions on 4', () => {
    const e: LogEvent = { kind: EventKind.UartRx, instret: 1_005_000n, branches: 200_700n, pc: 0x80001010, data: Uint8Array.of(0x41) };
    expect(recordSize(e)).toBe(6);
    expect(recordSize({ kind: EventKind.Mark, instret: 1_000_300n, branches: 200_050n, pc: 0x80001010 })).toBe(4);
  });
});

describe('file header', () => {
  it('round-trips metadata with and without a starting snapshot', () => {
    const plainHeader = encodeLogHeader(meta);
    expect(decodeLogHeader(plainHeader)).toEqual({ meta, headerLength: plainHeader.length });
    const withSnap = { ...meta, clock: 'virtual' as const, hashInterval: 0, snapshot: 'b'.repeat(64) };
    const h = encodeLogHeader(withSnap);
    expect(decodeLogHeader(concat([h, new Uint8Array(100)])).meta).toEqual(withSnap);
    expect(new TextDecoder().decode(h.subarray(0, 8))).toBe('LKSTPLOG');
    expect(new DataView(h.buffer).getUint32(8, true)).toBe(LOG_FORMAT_VERSION);
    const withCmdline = { ...meta, cmdline: 'kvserver.storage=memory' };
    expect(decodeLogHeader(encodeLogHeader(withCmdline)).meta).toEqual(withCmdline);
  });

  it('rejects a file that is not a log', () => {
    const e = catchLog(() => decodeLogHeader(new TextEncoder().encode('\x7fELF and more bytes than a header')));
    expect(e.code).toBe('ERR_LOCKSTEP_LOG_CORRUPT');
    expect(e.offset).toBe(0);
    expect(e.message).toMatch(/not a lockstep log: bad magic at offset 0/);
  });

  it('names the file version and the versions this build reads; reads version 1 logs', () => {
    const v1 = encodeLogHeader(meta);
    new DataView(v1.buffer).setUint32(8, 1, true);
    expect(decodeLogHeader(v1).meta).toEqual(decodeLogHeader(encodeLogHeader(meta)).meta);
    for (const version of [0, LOG_FORMAT_VERSION + 1, 0xffffffff]) {
      const h = encodeLogHeader(meta);
      new DataView(h.buffer).setUint32(8, version, true);
      const e = catchLog(() => decodeLogHeader(h));
      expect(e.code).toBe('ERR_LOCKSTEP_LOG_VERSION');
      expect(e.offset).toBe(8);
      expect(e.message).toContain(`log format version ${version}`);
      expect(e.message).toContain(`reads versions 1 to ${LOG_FORMAT_VERSION}`);
      expect(e.message).toContain('lockstep 0.1.0');
    }
  });

  it('rejects a metadata length over 64 KiB as corruption', () => {
    const h = encodeLogHeader(meta);
    new DataView(h.buffer).setUint32(12, 64 * 1024 + 1, true);
    const e = catchLog(() => decodeLogHeader(h));
    expect([e.code, e.offset]).toEqual(['ERR_LOCKSTEP_LOG_CORRUPT', 12]);
    expect(e.message).toMatch(/metadata length 65537 \(at offset 12\)/);
  });

  it('reports a header cut short as truncation', () => {
    const h = encodeLogHeader(meta);
    for (const cut of [0, 5, 8, 15]) {
      const e = catchLog(() => decodeLogHeader(h.subarray(0, cut)));
      expect([e.code, e.offset]).toEqual(['ERR_LOCKSTEP_LOG_TRUNCATED', 0]);
    }
    const e = catchLog(() => decodeLogHeader(h.subarray(0, h.length - 1)));
    expect([e.code, e.offset]).toEqual(['ERR_LOCKSTEP_LOG_TRUNCATED', LOG_HEADER_METADATA]);
    expect(e.message).toContain(`needs ${h.length - 16} bytes, file has ${h.length - 17}`);
  });

  /** A header around arbitrary metadata bytes. */
  function withMetadata(json: Uint8Array | string): Uint8Array {
    const body = typeof json === 'string' ? new TextEncoder().encode(json) : json;
    const h = new Uint8Array(16 + body.length);
    h.set(new TextEncoder().encode('LKSTPLOG'));
    new DataView(h.buffer).setUint32(8, 1, true);
    new DataView(h.buffer).setUint32(12, body.length, true);
    h.set(body, 16);
    return h;
  }

  it('rejects metadata that is not UTF-8 JSON', () => {
    for (const bad of ['{"lockstep":', '', 'null x', Uint8Array.of(0x7b, 0xff, 0x7d)]) {
      const e = catchLog(() => decodeLogHeader(withMetadata(bad)));
      expect([e.code, e.offset]).toEqual(['ERR_LOCKSTEP_LOG_CORRUPT', 16]);
      expect(e.message).toMatch(/log metadata at offset 16: not valid UTF-8 JSON/);
    }
  });

  it.each([
    ['(root)', []],
    ['(root)', null],
    ['lockstep', { ...meta, lockstep: undefined }],
    ['lockstep', { ...meta, lockstep: 1 }],
    ['memory', { ...meta, memory: undefined }],
    ['memory', { ...meta, memory: '1M' }],
    ['memory', { ...meta, memory: -4096 }],
    ['memory', { ...meta, memory: 1.5 }],
    ['clock', { ...meta, clock: 'wall' }],
    ['clock', { ...meta, clock: undefined }],
    ['elfSha256', { ...meta, elfSha256: 'abc' }],
    ['elfSha256', { ...meta, elfSha256: 'A'.repeat(64) }],
    ['hashInterval', { ...meta, hashInterval: -1 }],
    ['hashInterval', { ...meta, hashInterval: undefined }],
    ['snapshot', { ...meta, snapshot: 42 }],
    ['cmdline', { ...meta, cmdline: '' }],
    ['cmdline', { ...meta, cmdline: 'a\u0000b' }],
  ])('names the bad metadata field %s', (field, value) => {
    const e = catchLog(() => decodeLogHeader(withMetadata(JSON.stringify(value))));
    expect([e.code, e.offset]).toEqual(['ERR_LOCKSTEP_LOG_CORRUPT', 16]);
    expect(e.message).toContain(`field ${field} `);
    if (field !== '(root)') expect(() => encodeLogHeader(value as LogMetadata)).toThrow(TypeError);
  });

  it('ignores unknown metadata fields', () => {
    expect(decodeLogHeader(withMetadata(JSON.stringify({ ...meta, future: true }))).meta).toEqual(meta);
  });
});

describe('batch validation', () => {
  it('reports a flipped payload byte as a CRC mismatch of that batch, after yielding the batches before it', () => {
    const log = buildLog(3, 10);
    for (const k of [0, 4, 9]) {
      const bad = log.file.slice();
      const at = log.offsets[k]! + BATCH_HEADER + Math.floor(log.batches[k]!.length / 3 - 16);
      bad[Math.max(at, log.offsets[k]! + BATCH_LSN)]! ^= 0x10;
      const { got, error } = drain(LogReader.fromBytes(bad));
      expect(got.map((b) => Number(b.lsn))).toEqual([...Array(k).keys()]);
      expect(error?.code).toBe('ERR_LOCKSTEP_LOG_CORRUPT');
      expect([error?.batch, error?.offset]).toEqual([k, log.offsets[k]]);
      expect(error?.message).toMatch(new RegExp(`^batch ${k} at offset ${log.offsets[k]}: CRC32C mismatch \\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\)$`));
    }
  });

  it('detects damage to every CRC-covered header field and to the CRC itself', () => {
    const log = buildLog(4, 3);
    const recordsAt = parseBatch(log.batches[1]!, 0, 1n).batch.recordsAt;
    for (let field = BATCH_CRC; field < recordsAt; field++) {
      const bad = log.file.slice();
      bad[log.offsets[1]! + field]! ^= 0x01;
      const { got, error } = drain(LogReader.fromBytes(bad));
      expect(got).toHaveLength(1);
      expect([error?.batch, error?.offset]).toEqual([1, log.offsets[1]]);
      expect(error?.message).toContain('CRC32C mismatch');
    }
  });

  it('rejects a batch length over 1 MiB as a damaged length field', () => {
    const log = buildLog(5, 3);
    const bad = log.file.slice();
    new DataView(bad.buffer).setUint32(log.offsets[2]! + BATCH_LENGTH, BATCH_MAX_LENGTH + 1, true);
    const { got, error } = drain(LogReader.fromBytes(bad));
    expect(got).toHaveLength(2);
    expect([error?.code, error?.batch, error?.offset]).toEqual(['ERR_LOCKSTEP_LOG_CORRUPT', 2, log.offsets[2]]);
    expect(error?.message).toContain('exceeds the 1048576-byte limit');
  });

  it('truncation anywhere ends cleanly only at a batch boundary, otherwise names the cut batch and its offset', () => {
    const log = buildLog(6, 6, 6);
    const header = log.offsets[0]!;
    const ends = log.offsets.map((o, i) => o + log.batches[i]!.length);
    for (let cut = header; cut <= log.file.length; cut++) {
      const { got, error } = drain(LogReader.fromBytes(log.file.subarray(0, cut)));
      const whole = ends.filter((e) => e <= cut).length;
      expect(got).toHaveLength(whole);
      if (cut === header || ends.includes(cut)) {
        expect(error).toBeUndefined();
        continue;
      }
      const offset = log.offsets[whole]!;
      expect([error?.code, error?.batch, error?.offset]).toEqual(['ERR_LOCKSTEP_LOG_TRUNCATED', whole, offset]);
      const have = cut - offset;
      expect(error?.message).toBe(
        have < 16
          ? `truncated batch header at offset ${offset} (batch ${whole}): needs 16 bytes, file has ${have}`
          : `truncated batch ${whole} at offset ${offset}: needs ${log.batches[whole]!.length} bytes, file has ${have}`,
      );
    }
  });

  it('reports an lsn out of sequence with the expected and found numbers', () => {
    const log = buildLog(7, 2);
    const stray = encodeBatch(5n, { instret: 0n, branches: 0n, pc: 0, clock: 0n }, []);
    const { got, error } = drain(LogReader.fromBytes(concat([log.file, stray])));
    expect(got).toHaveLength(2);
    expect([error?.code, error?.batch, error?.offset]).toEqual(['ERR_LOCKSTEP_LOG_CORRUPT', 2, log.file.length]);
    expect(error?.message).toBe(`batch 2 at offset ${log.file.length}: lsn out of sequence (expected 2, found 5)`);
  });

  it('parseBatch validates a batch at any offset of a buffer and returns the next offset', () => {
    const a = encodeBatch(7n, { instret: 1n, branches: 0n, pc: 2, clock: 3n }, [{ kind: EventKind.WallTime, instret: 2n, branches: 1n, pc: 4, value: 99n }]);
    const b = encodeBatch(8n, { instret: 2n, branches: 1n, pc: 4, clock: 3n }, []);
    const buf = concat([new Uint8Array(5), a, b]);
    const first = parseBatch(buf, 5, 7n);
    expect(first.next).toBe(5 + a.length);
    expect(first.batch).toMatchObject({ lsn: 7n, offset: 5, baseInstret: 1n, baseBranches: 0n, basePc: 2, count: 1, baseClock: 3n, compact: true, length: a.length - first.batch.recordsAt });
    expect(first.batch.bytes).toEqual(a);
    expect(parseBatch(buf, first.next, 8n).next).toBe(buf.length);
  });

  it('sealBatch restores a valid CRC after an edit', () => {
    const a = encodeBatch(0n, { instret: 0n, branches: 0n, pc: 0, clock: 0n }, [{ kind: EventKind.WallTime, instret: 0n, branches: 0n, pc: 0, value: 1n }]);
    a[a.length - 1] = 2;
    expect(() => parseBatch(a, 0, 0n)).toThrow(/CRC32C mismatch/);
    expect(decodeRecords(parseBatch(sealBatch(a), 0, 0n).batch)[0]?.value).toBe(2n);
  });
});

describe('impossible records in a full-header (version 2) batch with a valid CRC', () => {
  const base = { instret: 1000n, branches: 100n, pc: 0x80000000, clock: 0n };
  const batchOffset = 300;

  /** A sealed batch around raw record bytes, placed at `batchOffset` of a log file, decoded. */
  function decodeRaw(records: number[], count: number, b: Partial<BatchBase> = {}): LogFormatError {
    const bytes = encodeBatchV2(3n, { ...base, ...b } as FullBase, []);
    const full = new Uint8Array(BATCH_HEADER + records.length);
    full.set(bytes);
    full.set(records, BATCH_HEADER);
    const dv = new DataView(full.buffer);
    dv.setUint32(BATCH_LENGTH, records.length, true);
    dv.setUint32(BATCH_COUNT, count, true);
    sealBatch(full);
    const file = concat([new Uint8Array(batchOffset), full]);
    const { batch } = parseBatch(file, batchOffset, 3n);
    return catchLog(() => decodeRecords(batch));
  }

  const start = batchOffset + BATCH_HEADER;
  const clockRead = [EventKind.ClockRead, 1, 1, 0, 2];

  it.each([
    ['an unknown kind', [...clockRead, 11, 0, 0, 0, 0], 2, clockRead.length, /record 1 at offset \d+: unknown event kind 11$/],
    ['kind 0', [0, 0, 0, 0], 1, 0, /unknown event kind 0/],
    ['a varint longer than 10 bytes', [EventKind.ClockRead, ...Array(10).fill(0xff), 0, 0, 0, 0], 1, 10, /longer than 10 bytes/],
    ['a varint over 64 bits', [EventKind.ClockRead, ...Array(9).fill(0xff), 0x02, 0, 0, 0], 1, 10, /exceeds 64 bits/],
    ['a varint running past the batch', [EventKind.ClockRead, 0x80, 0x80], 1, 3, /runs past the end of the batch/],
    ['a record missing its payload', [EventKind.StateHash, 0, 0, 0, 1, 2, 3], 1, 7, /u64 runs past the end of the batch/],
    ['UART data running past the batch', [EventKind.UartRx, 0, 0, 0, 5, 1, 2], 1, 7, /5 payload bytes run past the end of the batch/],
    ['a UART length of 0', [EventKind.UartRx, 0, 0, 0, 0], 1, 4, /UART RX length 0 is outside 1\.\.4096/],
    ['a UART length of 4097', [EventKind.UartRx, 0, 0, 0, 0x81, 0x20, ...Array(4097).fill(0)], 1, 4, /UART RX length 4097/],
    ['more branches than instructions', [...clockRead, EventKind.Mark, 0, 0x85, 0x07, 0], 2, clockRead.length, /more branches \(1002\) than instructions \(1001\)/],
    ['an unknown end reason', [EventKind.End, 0, 0, 0, 5, 0], 1, 4, /unknown end reason 5/],
    ['an odd pc', [EventKind.ClockRead, 0, 0, 2, 0], 1, 3, /pc 0x80000001 is odd/],
    ['more records than declared', [...clockRead, ...clockRead], 1, clockRead.length, /5 bytes follow the last of the 1 records/],
    ['fewer records than declared', [...clockRead], 3, clockRead.length, /declares 3 records but the payload ends after 1/],
  ])('%s is reported at its byte offset', (_what, records, count, at, message) => {
    const e = decodeRaw(records, count);
    expect([e.code, e.batch, e.offset]).toEqual(['ERR_LOCKSTEP_LOG_CORRUPT', 3, start + at]);
    expect(e.message).toMatch(new RegExp(`^batch 3 at offset ${batchOffset}: record \\d+ at offset \\d+: `));
    expect(e.message).toMatch(message);
  });

  it('instret and branches overflowing 64 bits are reported', () => {
    const e1 = decodeRaw([EventKind.ClockRead, 1, 0, 0, 0], 1, { instret: U64_MAX });
    expect([e1.offset, e1.message]).toEqual([start + 1, expect.stringMatching(/instret overflows 64 bits \(delta 1\)/)]);
    const e2 = decodeRaw([EventKind.ClockRead, 0, 2, 0, 0], 1, { branches: U64_MAX - 1n });
    expect([e2.offset, e2.message]).toEqual([start + 2, expect.stringMatching(/branches overflows 64 bits \(delta 2\)/)]);
  });

  it('an odd base pc in the header is reported', () => {
    const e = decodeRaw([], 0, { pc: 0x80000001 });
    expect(e.offset).toBe(batchOffset + BATCH_BASE_PC);
    expect(e.message).toMatch(/base pc 0x80000001 is odd/);
  });
});

describe('LogWriter and LogReader on files', () => {
  it('write then read a file gives back every batch and event', () => {
    const log = buildLog(8, 40);
    const path = join(dir, 'roundtrip.log');
    const w = LogWriter.create(path, meta);
    w.write(log.batches[0]!);
    w.write(concat(log.batches.slice(1, 10)));
    for (const b of log.batches.slice(10)) w.write(b);
    expect(w.nextLsn).toBe(40n);
    expect(w.size).toBe(log.file.length);
    w.close();
    w.close();
    expect(new Uint8Array(readFileSync(path))).toEqual(log.file);

    const r = LogReader.open(path);
    try {
      expect(r.meta).toEqual(meta);
      expect(r.headerLength).toBe(log.offsets[0]);
      const batches = [...r];
      expect(batches.map((b) => b.offset)).toEqual(log.offsets);
      expect(batches.map((b) => b.bytes)).toEqual(log.batches);
      expect(plain([...r.events()])).toEqual(plain(log.events.flat().map(logged)));
    } finally {
      r.close();
    }
  });

  it('the file reader reports truncation and corruption like the in-memory reader, naming the file', () => {
    const log = buildLog(9, 5, 8);
    const path = join(dir, 'damaged.log');
    const cuts = [log.offsets[2]! + 10, log.offsets[3]! + BATCH_HEADER + 1, log.file.length - 1, log.offsets[4]!];
    for (const cut of cuts) {
      writeFileSync(path, log.file.subarray(0, cut));
      const r = LogReader.open(path);
      const fromFile = drain(r);
      r.close();
      const fromBytes = drain(LogReader.fromBytes(log.file.subarray(0, cut)));
      expect(fromFile.got.map((b) => b.offset)).toEqual(fromBytes.got.map((b) => b.offset));
      expect(fromFile.error?.code).toBe(fromBytes.error?.code);
      expect([fromFile.error?.batch, fromFile.error?.offset]).toEqual([fromBytes.error?.batch, fromBytes.error?.offset]);
      if (fromBytes.error) expect(fromFile.error?.message).toBe(`${path}: ${fromBytes.error.message}`);
      expect(fromFile.error?.file).toBe(fromBytes.error ? path : undefined);
    }
    const bad = log.file.slice();
    bad[log.offsets[1]! + BATCH_HEADER]! ^= 0xff;
    writeFileSync(path, bad);
    const r = LogReader.open(path);
    const { got, error } = drain(r);
    r.close();
    expect(got).toHaveLength(1);
    expect([error?.batch, error?.offset]).toEqual([1, log.offsets[1]]);
    expect(error?.message).toContain(`${path}: batch 1 at offset ${log.offsets[1]}: CRC32C mismatch`);
  });

  it('opening a file with a damaged header fails with the path in the message', () => {
    const path = join(dir, 'v9.log');
    const h = encodeLogHeader(meta);
    new DataView(h.buffer).setUint32(8, 9, true);
    writeFileSync(path, h);
    const e = catchLog(() => LogReader.open(path));
    expect(e.code).toBe('ERR_LOCKSTEP_LOG_VERSION');
    expect(e.message.startsWith(`${path}: log format version 9`)).toBe(true);
    writeFileSync(path, encodeLogHeader(meta).subarray(0, 20));
    expect(catchLog(() => LogReader.open(path)).code).toBe('ERR_LOCKSTEP_LOG_TRUNCATED');
  });

  it('the writer refuses incomplete or out-of-sequence batches and leaves the file unchanged', () => {
    const log = buildLog(10, 3, 4);
    const path = join(dir, 'refuse.log');
    const w = LogWriter.create(path, meta);
    w.write(log.batches[0]!);
    const size = w.size;
    const e1 = catchLog(() => w.write(log.batches[2]!));
    expect(e1.message).toContain('expected 1, found 2');
    const e2 = catchLog(() => w.write(concat([log.batches[1]!, log.batches[2]!.subarray(0, log.batches[2]!.length - 1)])));
    expect([e2.code, e2.batch, e2.offset]).toEqual(['ERR_LOCKSTEP_LOG_TRUNCATED', 2, log.offsets[2]]);
    expect(w.size).toBe(size);
    expect(w.nextLsn).toBe(1n);
    w.close();
    expect(readFileSync(path).length).toBe(size);
    expect(() => w.write(log.batches[1]!)).toThrow(expect.objectContaining({ code: 'ERR_LOCKSTEP_LOG_CLOSED' }));
  });

  it('an exclusive writer does not replace an existing file', () => {
    const path = join(dir, 'exists.log');
    writeFileSync(path, 'keep');
    expect(() => LogWriter.create(path, meta, { exclusive: true })).toThrow(/EEXIST/);
    expect(readFileSync(path, 'utf8')).toBe('keep');
  });

  it('a log may start at a later lsn when both sides say so', () => {
    const b = encodeBatch(42n, { instret: 0n, branches: 0n, pc: 0, clock: 0n }, []);
    const path = join(dir, 'later.log');
    const w = LogWriter.create(path, meta, { firstLsn: 42n });
    w.write(b);
    w.close();
    const r = LogReader.open(path, { firstLsn: 42n });
    expect([...r].map((x) => x.lsn)).toEqual([42n]);
    r.close();
    expect(drain(LogReader.open(path)).error?.message).toContain('expected 0, found 42');
  });
});
