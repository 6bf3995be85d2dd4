// Record then replay, rr's way: for many guests and random schedules of asynchronous inputs, the
// replay reproduces console output, counters and the final state hash; altered logs are caught.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Machine, Recorder, Replayer, LogReader, decodeRecords, encodeBatch, parseBatch, positionCheck, EventKind, type LogEvent, type MachineOptions } from '../../src/index.js';
import { prng } from '../cpu/prng.js';
import { Asm } from '../helpers/asm.js';
import { replicationPort } from '../../src/machine/replication-port.js';
import { guestElf, record, replay, runLogged, type Schedule } from '../helpers/replay.js';

const REAL = { memory: 1 << 20, clock: 'real' as const };
const VIRTUAL = { memory: 1 << 20, clock: 'virtual' as const };

/** A random schedule of UART input: up to `n` chunks of printable text at random times in [0, spanMs). */
function randomSchedule(seed: number, n: number, spanMs: number): Schedule {
  const rnd = prng(seed);
  const input: { atMs: number; bytes: string }[] = [];
  const count = 1 + Math.floor(rnd() * n);
  for (let i = 0; i < count; i++) {
    let s = '';
    const len = 1 + Math.floor(rnd() * 12);
    for (let j = 0; j < len; j++) s += rnd() < 0.15 ? '\n' : String.fromCharCode(97 + Math.floor(rnd() * 26));
    input.push({ atMs: Math.floor(rnd() * spanMs), bytes: s });
  }
  return { input };
}

/** The lsn a batch claims (parseBatch checks it against the expected one). */
function lsnOf(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(8, true);
}

/**
 * Runs `program` (loaded at the start of RAM) on a new machine: recorded, or replaying `batches` when
 * given. The result, the final state hash, the batches recorded and x12 (the programs' counter).
 */
async function runProgram(program: Uint8Array, options: MachineOptions, batches?: Uint8Array[]) {
  const m = new Machine(options);
  try {
    m.writeMemory(0x8000_0000, program);
    const { result, batches: out } = await runLogged(m, batches);
    return { result, hash: m.stateHash(), batches: out, x12: m.getRegister(12) };
  } finally {
    m.close();
  }
}

function events(batches: Uint8Array[]): LogEvent[] {
  return batches.flatMap((b) => decodeRecords(parseBatch(b, 0, lsnOf(b)).batch));
}

async function roundTrip(guest: string, options: MachineOptions, schedule: Schedule, hashInterval?: number) {
  const elf = guestElf(guest);
  const a = await record(elf, options, schedule, hashInterval === undefined ? {} : { hashInterval });
  const b = await replay(elf, options, a.batches);
  return { a, b };
}

describe('record and replay', () => {
  for (let seed = 1; seed <= 6; seed++) {
    // Odd seeds log every clock read (clockStepUs 0); even seeds the default, where a read is logged only
    // when the host's clock is a step away from what instret predicts — whether any is depends on timing.
    const everyRead = seed % 2 === 1;
    it(`echo with the real clock and random UART input (seed ${seed}${everyRead ? ', every clock read logged' : ''}) replays to the same console, counters and state hash`, async () => {
      const { a, b } = await roundTrip('echo', everyRead ? { ...REAL, clockStepUs: 0 } : REAL, randomSchedule(seed, 6, 150), 2000);
      expect(a.result.kind).toBe('exit');
      expect(b.result).toMatchObject({ kind: 'exit', code: a.result.kind === 'exit' ? a.result.code : -1 });
      expect(b.console).toBe(a.console);
      expect(b.result.instret).toBe(a.result.instret);
      expect(b.result.branches).toBe(a.result.branches);
      expect(b.hash).toBe(a.hash);
      const kinds = new Set(events(a.batches).map((e) => e.kind));
      if (everyRead) expect(kinds.has(EventKind.ClockRead)).toBe(true); // echo reads mtime
      expect(kinds.has(EventKind.StateHash)).toBe(true);
    });
  }

  it('echo with the virtual clock and input logs no clock events and replays identically', async () => {
    const { a, b } = await roundTrip('echo', VIRTUAL, randomSchedule(42, 4, 20));
    expect(b.console).toBe(a.console);
    expect(b.hash).toBe(a.hash);
    const kinds = events(a.batches).map((e) => e.kind);
    expect(kinds).not.toContain(EventKind.ClockRead);
    expect(kinds).not.toContain(EventKind.ClockSample);
  });

  it('timer interrupts at real-time points replay at the same instructions', async () => {
    const { a, b } = await roundTrip('timer', REAL, {});
    expect(a.result.kind).toBe('exit');
    expect(events(a.batches).some((e) => e.kind === EventKind.ClockSample)).toBe(true);
    expect(b.console).toBe(a.console);
    expect(b.result.instret).toBe(a.result.instret);
    expect(b.hash).toBe(a.hash);
  });

  for (const via of ['mtime', 'time CSR'] as const) {
    it(`a timer made due by a clock read (${via}) is taken right after that read, in the recording as in the replay`, async () => {
      // M-mode: arm mtimecmp 2000 ticks (200 µs) ahead, enable the timer interrupt, then poll mtime and
      // count; the handler exits through the finisher. No clock sample is logged (the reads move the clock
      // past mtimecmp), so the interrupt's position follows from the reads alone. The recording used to
      // take it at its next slice boundary, the replay right after the read: a different count, and a
      // divergence (found booting Linux: its udelay loops poll the time CSR under an armed SBI timer).
      const a = new Asm();
      a.la(5, 'handler');
      a.csrrw(0, 0x305, 5); //     csrw mtvec, t0
      a.lui(5, 0x0200c);
      a.addi(5, 5, -8); //         t0 = mtime
      a.lui(6, 0x02004); //        t1 = mtimecmp
      a.lw(10, 0, 5);
      a.li(7, 2000);
      a.add(10, 10, 7);
      a.sw(0, 4, 6);
      a.sw(10, 0, 6);
      a.li(7, 0x80);
      a.csrrs(0, 0x304, 7); //     csrs mie, MTIE
      a.csrrsi(0, 0x300, 8); //    csrsi mstatus, MIE
      a.li(12, 0);
      a.label('poll');
      if (via === 'mtime') a.lw(11, 0, 5);
      else a.csrrs(11, 0xc01, 0); // rdtime a1
      a.addi(12, 12, 1);
      a.j('poll');
      a.label('handler');
      a.lui(28, 0x100); //         the test finisher
      a.li(29, 0x5555);
      a.sw(29, 0, 28);
      const program = a.bytes();
      const run = async (batches?: Uint8Array[]) => {
        const r = await runProgram(program, REAL, batches);
        return { ...r, polls: r.x12 };
      };
      const rec = await run();
      expect(rec.result).toMatchObject({ kind: 'exit', code: 0 });
      expect(events(rec.batches).some((e) => e.kind === EventKind.ClockSample)).toBe(false);
      const rep = await run(rec.batches);
      expect(rep.result).toMatchObject({ kind: 'exit', code: 0 });
      expect(rep.polls).toBe(rec.polls);
      expect(rep.result.instret).toBe(rec.result.instret);
      expect(rep.hash).toBe(rec.hash);
    });
  }

  it('with the real clock a read is logged only when the clock drifts a step from the host: far fewer records than reads, the values a replay sees the same', async () => {
    // Read the time CSR 200 000 times, storing each value's low word over the last: a tight loop that
    // takes milliseconds, so a step of 100 µs gives far fewer records than reads.
    const a = new Asm();
    a.li(12, 200_000);
    a.li(13, 0);
    a.lui(5, 0x80010); //          t0 = a scratch word in RAM
    a.label('loop');
    a.csrrs(11, 0xc01, 0); //       rdtime a1
    a.bltu(11, 13, 'back'); //     a1 < previous: time went backwards
    a.addi(13, 11, 0);
    a.sw(11, 0, 5);
    a.addi(12, 12, -1);
    a.bne(12, 0, 'loop');
    a.lui(28, 0x100); //           the test finisher: pass
    a.li(29, 0x5555);
    a.sw(29, 0, 28);
    a.label('back');
    a.lui(28, 0x100); //           fail with code 1
    a.li(29, 0x13333);
    a.sw(29, 0, 28);
    const program = a.bytes();
    const run = (options: { clockStepUs: number }, batches?: Uint8Array[]) => runProgram(program, { ...REAL, ...options }, batches);
    const stepped = await run({ clockStepUs: 100 });
    const every = await run({ clockStepUs: 0 });
    for (const r of [stepped, every]) expect(r.result).toMatchObject({ kind: 'exit', code: 0 });
    const reads = (r: typeof stepped) => events(r.batches).filter((e) => e.kind === EventKind.ClockRead);
    expect(reads(every).length).toBe(200_000);
    expect(reads(stepped).length).toBeLessThan(reads(every).length / 10);
    // Logged values never go back (the guest's clock between them moves with its instructions).
    const values = reads(stepped).map((e) => e.value!);
    values.slice(1).forEach((v, i) => expect(v, `record ${i + 1}`).toBeGreaterThanOrEqual(values[i]!));
    // Both replay to the recording's state (the stored time included), from the log alone.
    for (const [r, o] of [[stepped, { clockStepUs: 100 }], [every, { clockStepUs: 0 }]] as const) {
      const rep = await run(o, r.batches);
      expect(rep.result).toMatchObject({ kind: 'exit', code: 0 });
      expect(rep.result.instret).toBe(r.result.instret);
      expect(rep.hash).toBe(r.hash);
    }
    // A replay needs no setting: the stepped log replays on a machine told to log every read.
    expect((await run({ clockStepUs: 0 }, stepped.batches)).hash).toBe(stepped.hash);
    expect(() => new Machine({ ...REAL, clockStepUs: -1 })).toThrow(/clockStepUs/);
  });

  it('between logged values the clock moves with the instructions: the guest sees a smooth clock that the replay reproduces from a few records', async () => {
    // Store each of 40 000 reads of the time CSR in its own word. A record only when the instruction
    // count's prediction drifts a step from the host's clock (with the rate it was measured at), so the
    // guest sees many more distinct values than there are records, and the replay sees the same ones.
    const n = 40_000;
    const a = new Asm();
    a.li(12, n);
    a.lui(5, 0x80010); //          t0 = the array
    a.label('loop');
    a.csrrs(11, 0xc01, 0); //       rdtime a1
    a.sw(11, 0, 5);
    a.addi(5, 5, 4);
    a.addi(12, 12, -1);
    a.bne(12, 0, 'loop');
    a.lui(28, 0x100); //           the test finisher: pass
    a.li(29, 0x5555);
    a.sw(29, 0, 28);
    const program = a.bytes();
    const times = (m: Machine) => new Uint32Array(m.readMemory(0x80010000, 4 * n).slice().buffer);
    let seen: Uint32Array | undefined;
    const m = new Machine(REAL);
    let rec: { batches: Uint8Array[]; hash: bigint };
    try {
      m.writeMemory(0x8000_0000, program);
      const batches: Uint8Array[] = [];
      const recorder = new Recorder(m, {});
      recorder.on('batch', (b) => batches.push(b.slice()));
      recorder.finish(await m.run());
      seen = times(m);
      rec = { batches, hash: m.stateHash() };
    } finally {
      m.close();
    }
    const reads = events(rec.batches).filter((e) => e.kind === EventKind.ClockRead);
    expect(reads.some((e) => e.rate !== undefined)).toBe(true);
    const distinct = new Set(seen).size;
    expect(distinct).toBeGreaterThan(2 * reads.length);
    seen.slice(1).forEach((v, i) => {
      if (v < seen![i]!) expect.fail(`read ${i + 1} went back from ${seen![i]} to ${v}`);
    });
    const r = new Machine(REAL);
    try {
      r.writeMemory(0x8000_0000, program);
      const rep = new Replayer(r);
      for (const b of rec.batches) rep.feed(b);
      rep.end();
      expect((await r.run()).kind).toBe('exit');
      expect(times(r)).toEqual(seen);
      expect(r.stateHash()).toBe(rec.hash);
    } finally {
      r.close();
    }
  });

  for (const guest of ['hello', 'semihost', 'umode', 'mixed', 'sort']) {
    it(`${guest} replays to the same state with periodic state hashes checked`, async () => {
      const { a, b } = await roundTrip(guest, REAL, { maxInstructions: 3_000_000 }, 250_000);
      expect(b.console).toBe(a.console);
      expect(b.result.instret).toBe(a.result.instret);
      expect(b.hash).toBe(a.hash);
      if (a.result.kind === 'budget') expect(b.result).toMatchObject({ kind: 'end-of-log', recorded: 'budget' });
    });
  }

  it('a snapshot taken mid-run plus the log recorded after it replays to the same final state', async () => {
    const elf = guestElf('echo');
    const m = new Machine(REAL);
    let snap: Uint8Array;
    let batches: Uint8Array[] = [];
    let consoleAfter = '';
    let hash: bigint;
    try {
      m.load(elf);
      expect((await m.run({ maxInstructions: 5_000 })).kind).toBe('budget');
      snap = m.snapshot();
      const rec = new Recorder(m, { hashInterval: 1000 });
      rec.on('batch', (b) => batches.push(b.slice()));
      const out: Buffer[] = [];
      m.on('console', (c) => out.push(Buffer.from(c)));
      setTimeout(() => m.input('after the snapshot\nq'), 30);
      const r = await m.run();
      rec.finish(r);
      consoleAfter = Buffer.concat(out).toString('latin1');
      hash = m.stateHash();
    } finally {
      m.close();
    }
    const m2 = new Machine(REAL);
    try {
      m2.restore(snap);
      const out: Buffer[] = [];
      m2.on('console', (c) => out.push(Buffer.from(c)));
      const rep = new Replayer(m2);
      for (const b of batches) rep.feed(b);
      rep.end();
      const r = await m2.run();
      expect(r.kind).toBe('exit');
      expect(Buffer.concat(out).toString('latin1')).toBe(consoleAfter);
      expect(m2.stateHash()).toBe(hash);
    } finally {
      m2.close();
    }
    batches = [];
  });

  it('batches fed while the replayer runs (live replay) give the same result', async () => {
    const elf = guestElf('echo');
    const a = await record(elf, REAL, randomSchedule(7, 5, 120), { hashInterval: 5000 });
    const m = new Machine(REAL);
    try {
      m.load(elf);
      const out: Buffer[] = [];
      m.on('console', (c) => out.push(Buffer.from(c)));
      const rep = new Replayer(m);
      const running = m.run();
      let i = 0;
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          for (let k = 0; k < 10 && i < a.batches.length; k++) rep.feed(a.batches[i++]!);
          if (i >= a.batches.length) {
            clearInterval(t);
            rep.end();
            resolve();
          }
        }, 1);
      });
      const r = await running;
      expect(r.kind).toBe('exit');
      expect(Buffer.concat(out).toString('latin1')).toBe(a.console);
      expect(m.stateHash()).toBe(a.hash);
    } finally {
      m.close();
    }
  });
});

describe('when the recorder seals batches', () => {
  it('a guest that goes idle with nothing held has its position sent: the log reaches where it waits without an output or a stop', async () => {
    // Batches are sealed for an output, when large, or once the guest stays idle a moment: not at every
    // WFI (a header and an acknowledgement per wait were most of an I/O-bound guest's log), yet a live
    // secondary must still be able to run up to an idle primary. This guest prints a byte (held: the
    // gate is closed, so its batch is sealed within the output window, about 131 k instructions), counts
    // to 150 k instructions and sleeps in WFI for an external interrupt that never comes, a fraction of a
    // millisecond after that batch: only the idle flush sends the position where it sleeps.
    const a = new Asm();
    a.li(5, 0x800);
    a.csrrs(0, 0x304, 5); // mie.MEIE: a device could wake it (none will)
    a.li(6, 0x1000_0000);
    a.li(7, 0x78);
    a.sb(7, 0, 6); // 'x' to the UART: an output
    a.li(12, 0);
    a.li(13, 75_000); // 2 instructions a round
    a.label('count');
    a.addi(12, 12, 1);
    a.blt(12, 13, 'count');
    a.label('idle');
    a.wfi();
    a.j('idle');
    const m = new Machine(REAL);
    try {
      m.writeMemory(0x8000_0000, a.bytes());
      const rec = new Recorder(m, {});
      replicationPort(m).closeGate();
      const marks: bigint[] = [];
      let idleAt: bigint | undefined;
      let reached: () => void = () => {};
      const sent = new Promise<void>((resolve) => (reached = resolve));
      rec.on('batch', (b) => {
        for (const e of decodeRecords(parseBatch(b, 0, lsnOf(b)).batch)) if (e.kind === EventKind.Mark) marks.push(e.instret);
        if (marks.length > 0 && marks.at(-1)! >= 150_000n) {
          idleAt = marks.at(-1)!;
          reached();
        }
      });
      const running = m.run();
      await sent;
      m.stop();
      const r = await running;
      expect(r.kind).toBe('stopped');
      expect(m.getRegister(12)).toBe(75_000);
      // The last mark is where the guest sleeps: it made no progress after it.
      expect(idleAt).toBe(r.instret);
      rec.finish(r);
    } finally {
      m.close();
    }
  });
});

describe('divergence detection', () => {
  /** Rewrites the batches with `edit` applied to the decoded events (CRCs recomputed: only content changes). */
  function rewrite(batches: Uint8Array[], edit: (e: LogEvent, index: number) => LogEvent): Uint8Array[] {
    let index = 0;
    return batches.map((b) => {
      const { batch } = parseBatch(b, 0, lsnOf(b));
      const evs = decodeRecords(batch).map((e) => edit(e, index++));
      return encodeBatch(batch.lsn, { instret: batch.baseInstret, branches: batch.baseBranches, pc: batch.basePc, clock: batch.baseClock }, evs);
    });
  }

  it('a changed UART byte is caught by the next check after it, not before', async () => {
    const elf = guestElf('echo');
    const a = await record(elf, REAL, { input: [{ atMs: 10, bytes: 'abc\n' }] }, { hashInterval: 500 });
    const all = events(a.batches);
    const rx = all.findIndex((e) => e.kind === EventKind.UartRx);
    expect(rx).toBeGreaterThanOrEqual(0);
    const altered = rewrite(a.batches, (e, i) => (i === rx ? { ...e, data: Uint8Array.from(e.data!, (x, j) => (j === 0 ? x ^ 0x20 : x)) } : e));
    const b = await replay(elf, REAL, altered);
    expect(b.result.kind).toBe('divergence');
    if (b.result.kind !== 'divergence') return;
    const at = BigInt(/instret (\d+)/.exec(b.result.message)![1]!);
    expect(at).toBeGreaterThanOrEqual(all[rx]!.instret);
  });

  it('a moved event is reported at that event, naming its position and where the machine is', async () => {
    // A clock read may have no record (the clock moves in steps), so a record moved one instruction
    // earlier is one that no read takes: the machine runs past it, and that is the divergence.
    const elf = guestElf('echo');
    const a = await record(elf, { ...REAL, clockStepUs: 0 }, { input: [{ atMs: 10, bytes: 'xyz\n' }] });
    const all = events(a.batches);
    const target = all.findIndex((e, i) => e.kind === EventKind.ClockRead && e.instret > 100n && i > 0 && all[i - 1]!.instret < e.instret - 1n);
    expect(target).toBeGreaterThan(0);
    const moved = rewrite(a.batches, (e, i) => (i === target ? { ...e, instret: e.instret - 1n } : e));
    const b = await replay(elf, REAL, moved);
    expect(b.result.kind).toBe('divergence');
    if (b.result.kind === 'divergence') {
      expect(b.result.message).toContain(`clock-read at instret ${all[target]!.instret - 1n}`);
      expect(b.result.message).toContain(`already passed it (instret ${all[target]!.instret}`);
    }
  });

  it('a record whose position check differs is not taken: the replay stops at the next instruction, naming the record', async () => {
    // A compact record keeps a one-byte digest of the branch count and pc instead of the two. A replay
    // that reaches the record's instret by another path (here: a changed digest) does not take it; a
    // clock read may have no record, so the read goes on without and the machine passes the record.
    const elf = guestElf('echo');
    const a = await record(elf, { ...REAL, clockStepUs: 0 }, { input: [{ atMs: 10, bytes: 'xyz\n' }] });
    const all = events(a.batches);
    const target = all.findIndex((e) => e.kind === EventKind.ClockRead && e.instret > 100n);
    expect(target).toBeGreaterThan(0);
    const check = all[target]!.check!;
    const altered = rewrite(a.batches, (e, i) => (i === target ? { ...e, check: check ^ 0x5a } : e));
    const b = await replay(elf, REAL, altered);
    expect(b.result).toMatchObject({ kind: 'divergence', instret: all[target]!.instret + 1n });
    if (b.result.kind === 'divergence') {
      const hex = (v: number) => `0x${v.toString(16).padStart(2, '0')}`;
      expect(b.result.message).toContain(`clock-read at instret ${all[target]!.instret} (position check ${hex(check ^ 0x5a)})`);
      expect(b.result.message).toContain('already passed it');
    }
  });

  it('the recorder writes compact batches: the first with the whole base, every record with positionCheck of its position', async () => {
    const elf = guestElf('echo');
    const a = await record(elf, REAL, { input: [{ atMs: 5, bytes: 'hello\nq' }] });
    const views = a.batches.map((b) => parseBatch(b, 0, lsnOf(b)).batch);
    expect(views.length).toBeGreaterThan(1);
    expect(views.every((v) => v.compact)).toBe(true);
    expect(views[0]).toMatchObject({ baseInstret: 0n, baseBranches: 0n });
    expect(views.slice(1).every((v) => v.baseBranches === undefined && v.basePc === undefined)).toBe(true);
    const all = events(a.batches);
    const end = all.at(-1)!;
    expect(end.kind).toBe(EventKind.End);
    // The end record sits where the run stopped: the native digest of that position is format.ts's.
    expect(end.check).toBe(positionCheck(a.result.pc, a.result.branches));
    expect(end.branches).toBeUndefined();
  });

  it('a version-1 log (full headers, exact branch counts and pcs) still replays and verifies its final state', async () => {
    // Written by the recorder before compact batches (test/fuzz/corpus/log, with the state it ends in).
    const corpus = new URL('../fuzz/corpus/log/', import.meta.url);
    const seed = (JSON.parse(readFileSync(new URL('manifest.json', corpus), 'utf8')) as { file: string; guest: string; finalHash: string }[]).find((x) => x.guest === 'echo')!;
    const reader = LogReader.fromBytes(Uint8Array.from(readFileSync(new URL(seed.file, corpus))));
    expect(reader.meta.lockstep).toBeDefined();
    const views = [...reader.batches()];
    expect(views.some((v) => v.compact)).toBe(false);
    const b = await replay(guestElf('echo'), { memory: reader.meta.memory, clock: reader.meta.clock }, views.map((v) => v.bytes));
    expect(b.result.replay).toMatchObject({ ended: true, finalHash: true });
    expect(b.result.kind).not.toBe('divergence');
    expect(`0x${b.hash.toString(16).padStart(16, '0')}`).toBe(seed.finalHash);
  });

  it('a damaged batch is refused whole, with its sequence number', async () => {
    const elf = guestElf('echo');
    const a = await record(elf, REAL, {});
    const bad = a.batches.map((b) => b.slice());
    const victim = Math.floor(bad.length / 2);
    bad[victim]![bad[victim]!.length - 1]! ^= 0xff;
    const b = await replay(elf, REAL, bad);
    expect(b.result.kind).toBe('divergence');
    if (b.result.kind === 'divergence') expect(b.result.message).toMatch(new RegExp(`damaged: batch ${victim}, .*CRC32C`));
  });

  it('a synchronous event where the guest sleeps in WFI is a divergence, not an endless loop', async () => {
    // Input that arrives while echo waits in WFI is logged there; a clock read in its place can only be
    // consumed by an executing instruction, which a sleeping hart never reaches.
    const elf = guestElf('echo');
    const a = await record(elf, REAL, { input: [{ atMs: 30, bytes: 'late\nq', running: true }] });
    const all = events(a.batches);
    const rx = all.findIndex((e) => e.kind === EventKind.UartRx);
    expect(rx).toBeGreaterThanOrEqual(0);
    const altered = rewrite(a.batches, (e, i) => (i === rx ? { kind: EventKind.ClockRead, instret: e.instret, branches: e.branches, pc: e.pc, check: e.check, value: 1n } : e));
    const b = await replay(elf, REAL, altered);
    expect(b.result).toMatchObject({ kind: 'divergence', instret: all[rx]!.instret });
    if (b.result.kind === 'divergence') expect(b.result.message).toMatch(/waits for an interrupt at instret \d+ but the log has clock-read there/);
  });

  it('a synchronous event at the last possible instret is a divergence, not an endless loop', async () => {
    // Its position + 1 wraps to 0: the replayer once ran to 0 over and over.
    const elf = guestElf('echo');
    const a = await record(elf, REAL, {});
    const first = parseBatch(a.batches[0]!, 0, 0n).batch;
    const base = { instret: first.baseInstret, branches: first.baseBranches, pc: first.basePc, clock: first.baseClock };
    const last = (1n << 64n) - 1n;
    const log = [encodeBatch(0n, base, [{ kind: EventKind.ClockRead, instret: last, branches: 0n, pc: first.basePc, value: 5n }])];
    const b = await replay(elf, REAL, log);
    expect(b.result.kind).toBe('divergence');
    if (b.result.kind === 'divergence') expect(b.result.message).toMatch(new RegExp(`clock-read\\)? (is )?at instret ${last}`));
  });

  it('replay from the wrong starting state is refused before anything runs', async () => {
    const elf = guestElf('echo');
    const a = await record(elf, REAL, {});
    const m = new Machine(REAL);
    try {
      m.load(guestElf('hello'));
      const rep = new Replayer(m);
      for (const b of a.batches) rep.feed(b);
      rep.end();
      const r = await m.run();
      expect(r.kind).toBe('divergence');
      expect(r.instret).toBe(0n);
      if (r.kind === 'divergence') expect(r.message).toMatch(/starts at instret 0 .*replay needs the state the recording started from|log has|machine/);
    } finally {
      m.close();
    }
  });
});
