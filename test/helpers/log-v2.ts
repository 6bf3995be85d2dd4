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
  EventKind,
  encodePayload,
  sealBatch,
  type LogEvent,
} from '../../src/log/format.js';
import { ByteWriter } from '../../src/log/varint.js';

const KIND_NAMES = new Map<number, string>(Object.entries(EventKind).map(([k, v]) => [v, k]));
const U64_MAX = (1n << 64n) - 1n;

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
    clock = encodePayload(w, e, what, clock);
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
