// The full-header batch layout of log format versions 1 and 2, as their recorder wrote it: lockstep
// writes only compact (version 3) batches now but still reads these, so tests build them here.
import {
  BATCH_BASE_BRANCHES,
  BATCH_BASE_CLOCK,
  BATCH_BASE_INSTRET,
  BATCH_BASE_PC,
  BATCH_COUNT,
  BATCH_HEADER,
  BATCH_LENGTH,
  BATCH_LSN,
  BATCH_MAX_LENGTH,
  EVENT_DATA_MAX,
  EndReason,
  EventKind,
  UART_RX_MAX,
  sealBatch,
  type LogEvent,
} from '../../src/log/format.js';
import { ByteWriter } from '../../src/log/varint.js';

const KIND_NAMES = new Map<number, string>(Object.entries(EventKind).map(([k, v]) => [v, k]));
const END_REASONS = new Set<number>(Object.values(EndReason));
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** The base of a full-header batch: all four fields. */
export interface FullBase {
  instret: bigint;
  branches: bigint;
  pc: number;
  clock: bigint;
}

function checkU64(name: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw new RangeError(`${name} must be a bigint in [0, 2^64), got ${String(v)}`);
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Encodes events into one version-2 batch (48-byte header, records with d_branches and d_pc). */
export function encodeBatchV2(lsn: bigint, base: FullBase, events: readonly LogEvent[]): Uint8Array {
  checkU64('lsn', lsn);
  checkU64('base.instret', base.instret);
  checkU64('base.branches', base.branches);
  checkU64('base.clock', base.clock);
  if (!Number.isInteger(base.pc) || base.pc < 0 || base.pc > 0xffffffff) throw new RangeError(`base.pc must be a u32, got ${base.pc}`);
  const w = new ByteWriter(BATCH_HEADER + events.length * 8);
  for (let i = 0; i < BATCH_HEADER; i++) w.u8(0);
  let { instret, branches, pc, clock } = base;
  events.forEach((logged, i) => {
    const what = `event ${i}`;
    if (logged.branches === undefined || logged.pc === undefined) throw new TypeError(`${what}: a full-header record needs branches and pc`);
    const e = logged as LogEvent & { branches: bigint; pc: number };
    if (!KIND_NAMES.has(e.kind)) throw new RangeError(`${what}: unknown kind ${String(e.kind)}`);
    checkU64(`${what}: instret`, e.instret);
    checkU64(`${what}: branches`, e.branches);
    if (e.instret < instret) throw new RangeError(`${what}: instret ${e.instret} is before the previous position ${instret}`);
    if (e.branches < branches) throw new RangeError(`${what}: branches ${e.branches} is before the previous count ${branches}`);
    if (e.branches > e.instret) throw new RangeError(`${what}: branches ${e.branches} exceeds instret ${e.instret}`);
    if (!Number.isInteger(e.pc) || e.pc < 0 || e.pc > 0xffffffff) throw new RangeError(`${what}: pc must be a u32, got ${e.pc}`);
    w.u8(e.kind);
    w.varint(e.instret - instret);
    w.varint(e.branches - branches);
    // The 32-bit wrapped difference: never more than 5 bytes, and the decoder resolves it mod 2^32.
    w.zigzag(BigInt((e.pc - pc) | 0));
    instret = e.instret;
    branches = e.branches;
    pc = e.pc;
    const value = (): bigint => {
      if (e.value === undefined) throw new TypeError(`${what}: ${KIND_NAMES.get(e.kind)} needs a value`);
      checkU64(`${what}: value`, e.value);
      return e.value;
    };
    switch (e.kind) {
      case EventKind.ClockRead:
      case EventKind.ClockSample: {
        const v = value();
        w.zigzag(BigInt.asIntN(64, v - clock));
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
          w.u8(status);
        }
        w.varint(BigInt(data.length));
        w.bytes(data);
        break;
      }
    }
  });
  const out = w.finish();
  const length = out.length - BATCH_HEADER;
  if (length > BATCH_MAX_LENGTH) throw new RangeError(`batch records take ${length} bytes; a batch holds at most ${BATCH_MAX_LENGTH}`);
  const dv = view(out);
  dv.setUint32(BATCH_LENGTH, length, true);
  dv.setBigUint64(BATCH_LSN, lsn, true);
  dv.setBigUint64(BATCH_BASE_INSTRET, base.instret, true);
  dv.setBigUint64(BATCH_BASE_BRANCHES, base.branches, true);
  dv.setUint32(BATCH_BASE_PC, base.pc, true);
  dv.setUint32(BATCH_COUNT, events.length, true);
  dv.setBigUint64(BATCH_BASE_CLOCK, base.clock, true);
  return sealBatch(out);
}
