// Log target: recorded logs mutated at every level (bytes with and without resealed CRCs, records
// decoded, changed and re-encoded, batches dropped, repeated, swapped or cut) go through the log reader,
// checkLog and a replay. Only LogFormatError may come out of the reader; the replay always ends; and a
// replay that claims to have verified its log (end record consumed, final hash matched) must be in the
// state the original recording ended in.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventKind, LogFormatError, LogReader, Machine, Replayer, checkLog, decodeRecords, encodeBatch, type BatchView, type LogEvent, type MachineOptions } from '../../../src/index.js';
import { encodeLogHeader, sealBatch, BATCH_HEADER } from '../../../src/log/format.js';
import { check, runWithPatience, type FuzzTarget } from '../harness.js';
import { concat, havoc, int, interesting32, pick, type Rnd } from '../mutate.js';

/** A corpus log and what is needed to replay it (corpus/log/manifest.json). */
export interface LogSeed {
  file: string;
  guest: string;
  devices: { rng?: boolean; net?: boolean; diskBytes?: number };
  /** The recording's final state hash (hex) and instret. */
  finalHash: string;
  finalInstret: string;
}

const corpus = new URL('../corpus/log/', import.meta.url);
/** A replay of at most a few million instructions ends in milliseconds; this only catches one that never does. */
const HANG_MS = 60_000;
const guests = new URL('../../../guest/bin/', import.meta.url);
let seeds: { seed: LogSeed; bytes: Uint8Array; elf: Uint8Array }[] = [];
let scratch = '';

/** Splits a log's bytes into header and batch byte strings by their length fields, without checking them. */
function split(bytes: Uint8Array, headerLength: number): { header: Uint8Array; batches: Uint8Array[] } {
  const batches: Uint8Array[] = [];
  let at = headerLength;
  while (at + BATCH_HEADER <= bytes.length) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(0, true);
    const end = Math.min(bytes.length, at + BATCH_HEADER + len);
    batches.push(bytes.slice(at, end));
    at = end;
  }
  return { header: bytes.subarray(0, headerLength), batches };
}

/** Changes one field of one decoded event, or removes, repeats or invents one. */
function mutateEvents(events: LogEvent[], rnd: Rnd): LogEvent[] {
  const out = events.map((e) => ({ ...e }));
  if (out.length === 0) return out;
  const k = int(rnd, out.length);
  const e = out[k]!;
  switch (int(rnd, 10)) {
    case 0:
      out.splice(k, 1);
      break;
    case 1:
      out.splice(k, 0, { ...e });
      break;
    case 2: {
      // Move this and every later event forward (positions must not go back inside a batch).
      const d = BigInt(pick(rnd, [1, 2, 100, 5000, interesting32(rnd)]));
      for (const x of out.slice(k)) x.instret += d;
      break;
    }
    case 3:
      // A compact record keeps only a check of its branch count and pc: change that.
      if (e.check !== undefined) e.check = (e.check ^ (1 + int(rnd, 255))) & 0xff;
      else if (e.branches !== undefined) e.branches = e.branches > 0n && rnd() < 0.5 ? e.branches - 1n : e.branches + 1n <= e.instret ? e.branches + 1n : e.branches;
      break;
    case 4:
      if (e.check !== undefined) e.check ^= 1 << int(rnd, 8);
      else if (e.pc !== undefined) e.pc = (e.pc + pick(rnd, [2, 4, -4, 0x1000])) >>> 0 & ~1;
      break;
    case 5:
      if (e.value !== undefined) e.value = BigInt(interesting32(rnd));
      break;
    case 6:
      if (e.data) {
        e.data = Uint8Array.from(e.data);
        e.data[int(rnd, e.data.length)]! ^= 1 + int(rnd, 255);
      }
      break;
    case 7:
      // Another kind at the same position (its payload fields made up).
      out[k] = {
        kind: pick(rnd, Object.values(EventKind)),
        instret: e.instret,
        branches: e.branches,
        pc: e.pc,
        check: e.check,
        value: BigInt(interesting32(rnd)),
        data: Uint8Array.from({ length: 1 + int(rnd, 16) }, () => int(rnd, 256)),
        reason: pick(rnd, [0, 1, 2, 3, 4] as const),
        code: 0n,
        head: int(rnd, 8),
        status: int(rnd, 3),
      };
      break;
    case 8:
      if (e.kind === EventKind.End) e.code = BigInt(interesting32(rnd));
      else out.push({ ...out[out.length - 1]!, kind: EventKind.End, reason: 0, code: 0n });
      break;
    default:
      if (e.kind === EventKind.BlockDone) {
        e.head = int(rnd, 300);
        e.status = int(rnd, 256);
      } else if (e.kind === EventKind.UartRx && e.data) {
        e.data = e.data.subarray(0, Math.max(1, int(rnd, e.data.length)));
      }
      break;
  }
  return out;
}

/** A mutated log file (bytes) from a seed. */
function mutateLog(bytes: Uint8Array, rnd: Rnd): Uint8Array {
  const reader = LogReader.fromBytes(bytes);
  const views = [...reader.batches()];
  switch (int(rnd, 5)) {
    case 0:
      return havoc(bytes, rnd, 4); // CRCs left as they are: almost always a refusal
    case 1: {
      // Bytes changed inside batches, CRCs recomputed: the records' own checks must catch it.
      const { header, batches } = split(havoc(bytes, rnd, 4), reader.headerLength);
      return concat(header, ...batches.map((b) => (b.length >= BATCH_HEADER ? sealBatch(b) : b)));
    }
    case 2:
    case 3: {
      // Records decoded, changed and re-encoded (positions kept consistent where they can be).
      const v = int(rnd, views.length);
      const rebuilt: Uint8Array[] = [];
      for (const [i, b] of views.entries()) {
        if (i !== v) {
          rebuilt.push(b.bytes);
          continue;
        }
        try {
          const events = mutateEvents(decodeRecords(b), rnd);
          rebuilt.push(encodeBatch(b.lsn, { instret: b.baseInstret, branches: b.baseBranches, pc: b.basePc, clock: b.baseClock }, events));
        } catch (err) {
          if (!(err instanceof RangeError || err instanceof TypeError)) throw err;
          rebuilt.push(b.bytes); // not encodable: keep the batch
        }
      }
      return concat(encodeLogHeader(reader.meta), ...rebuilt);
    }
    default: {
      // Whole batches dropped, repeated, swapped or cut off (lsns renumbered so the framing holds).
      const list: BatchView[] = [...views];
      const i = int(rnd, list.length);
      const j = int(rnd, list.length);
      switch (int(rnd, 4)) {
        case 0: list.splice(i, 1); break;
        case 1: list.splice(i, 0, list[i]!); break;
        case 2: [list[i], list[j]] = [list[j]!, list[i]!]; break;
        default: list.length = i; break;
      }
      return concat(encodeLogHeader(reader.meta), ...list.map((b, lsn) => {
        const c = Uint8Array.from(b.bytes);
        new DataView(c.buffer).setBigUint64(8, BigInt(lsn), true);
        return sealBatch(c);
      }));
    }
  }
}

export const logTarget: FuzzTarget = {
  name: 'log',
  about: 'LogReader, checkLog and replay on mutated logs: LogFormatError or a replay that ends, verifying only the recorded state',
  setup() {
    scratch = mkdtempSync(join(tmpdir(), 'lockstep-fuzz-log-'));
    const manifest = JSON.parse(readFileSync(new URL('manifest.json', corpus), 'utf8')) as LogSeed[];
    seeds = manifest.map((seed) => ({ seed, bytes: Uint8Array.from(readFileSync(new URL(seed.file, corpus))), elf: Uint8Array.from(readFileSync(new URL(`${seed.guest}.elf`, guests))) }));
  },
  teardown() {
    rmSync(scratch, { recursive: true, force: true });
  },
  async iterate(rnd, iteration) {
    const { seed, bytes, elf } = pick(rnd, seeds);
    const log = mutateLog(bytes, rnd);
    let views: BatchView[];
    try {
      const reader = LogReader.fromBytes(log);
      views = [...reader.batches()];
      checkLog(reader.meta, views);
    } catch (err) {
      if (!(err instanceof LogFormatError)) throw err;
      // The native feed validates on its own (a live secondary has no LogReader in front of it): hand it
      // the refused log's batches anyway, below, in a fraction of the iterations.
      if (rnd() < 0.7) return;
      views = [];
    }
    const devices: MachineOptions['devices'] = { ...(seed.devices.rng ? { rng: true } : {}), ...(seed.devices.net ? { net: true } : {}) };
    if (seed.devices.diskBytes) {
      const path = join(scratch, `d${iteration}.img`);
      writeFileSync(path, Buffer.alloc(seed.devices.diskBytes));
      devices.disk = { path };
    }
    const original = LogReader.fromBytes(bytes);
    const m = new Machine({ memory: original.meta.memory, clock: original.meta.clock, devices });
    try {
      m.load(elf);
      const replayer = new Replayer(m);
      if (views.length > 0) for (const b of views) replayer.feed(b.bytes);
      else for (const b of split(log, Math.min(log.length, original.headerLength)).batches) replayer.feed(b);
      replayer.end();
      // Bounded: a damaged position may lie far ahead; the budget ends such a replay. A replay never
      // waits for anything once end() was called, so one still running after a generous while is a hang.
      const r = await runWithPatience(m, { maxInstructions: BigInt(seed.finalInstret) * 4n + 1_000_000n }, HANG_MS);
      check(r.kind !== 'stopped', `the replay ends by itself (it was still running after ${HANG_MS / 1000} s: a wait or a spin)`);
      if (r.replay?.ended && r.replay.finalHash) {
        check(r.kind !== 'divergence', 'a verified replay did not diverge');
        check(`0x${m.stateHash().toString(16).padStart(16, '0')}` === seed.finalHash, 'a replay that verified its log ends in the recorded state');
      }
    } finally {
      m.close();
    }
  },
};
